"""Wires the connection reconcile: consumer caches, one provider session per connection.

A *provider session* is the provider client built from a connection's Secret plus an
informer on the provider's bindable CRDs (label ``connect.upbound.io/bindable=true``), so
that a new version, a new field or a removed label reaches the consumer without a restart,
and a liveness monitor (``kube.liveness``), so that a provider that accepts connections but
stopped answering turns the connection ``Ready=False`` instead of leaving it silently stuck.
Sessions are replaced when the Secret's content changes and stopped when the connection is
deleted or its Secret becomes unusable.

The consumer CRDs the reconcile reads are the cache's, or this process's own newer writes
(``fresh.FreshObjects``), and one lock serialises every connection's CRD writes, so that
``connection_reconcile.install_crd`` never takes over a CRD another connection has just
installed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from connector.controllers.connection_reconcile import (
    ROBOT_TOKEN,
    ROBOT_TOKEN_CA_KEY,
    ConnectionDeps,
    Credentials,
    NotSynced,
    reconcile_connection,
    secret_namespace,
)
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig, client_from_robot_token
from connector.kube.liveness import LivenessMonitor
from connector.kube.metrics import Metrics
from connector.kube.resources import CLUSTER_CONNECTIONS, CUSTOM_RESOURCE_DEFINITIONS, SECRETS
from connector.runtime.controller import (
    Controller,
    cache_form,
    without_managed_fields,
)
from connector.runtime.events import EventRecorder
from connector.runtime.fresh import FreshObjects
from connector.runtime.informer import Informer
from connector.runtime.workqueue import Result
from connector.stages import Stages
from functions.common import BINDABLE_LABEL, LABEL_CONNECTION
from functions.common.api import FIELD_MANAGER
from functions.common.clock import now_rfc3339
from functions.common.objects import Obj, label_value
from functions.crd_puller.types import CRDConflict

log = structlog.get_logger(__name__)


class ProviderSession:
    """A connection's provider client, its bindable-CRD informer and its liveness monitor,
    which wake the connection (``on_change``) on every change of a CRD and of their health."""

    def __init__(
        self,
        connection: str,
        client: KubeClient,
        fingerprint: str,
        *,
        on_change: Callable[[], None],
        resync_period: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.connection = connection
        self.client = client
        self.fingerprint = fingerprint
        self.informer = Informer(
            client,
            CUSTOM_RESOURCE_DEFINITIONS,
            label_selector=f"{BINDABLE_LABEL}=true",
            handler=lambda _event, _obj: on_change(),
            resync_period=resync_period,
            name=f"provider-crds/{connection}",
            metrics=metrics,
            transform=cache_form,
            # An outage brings no CRD events: the connection reports it when told.
            on_health_change=on_change,
        )
        self.liveness = LivenessMonitor(client, on_change=on_change)

    def start(self) -> None:
        self.informer.start()
        self.liveness.start()

    def stop(self) -> None:
        self.liveness.stop()
        self.informer.stop()

    def bindable_crds(self) -> list[Obj]:
        """The cached bindable CRDs; raises the liveness monitor's error while the provider
        does not answer, the informer's while it cannot list or watch, and NotSynced until
        its first list (whose end wakes the connection)."""
        error = self.liveness.error or self.informer.last_error
        if error is not None:
            raise error
        if not self.informer.has_synced:
            raise NotSynced(
                f"The provider's CRDs of connection {self.connection} are not listed yet."
            )
        return self.informer.list()


def client_for(
    connection: str, credentials: Credentials, *, metrics: Metrics | None = None
) -> KubeClient:
    """Build the provider client for ``credentials`` (raises ConfigError)."""
    if credentials.kind == ROBOT_TOKEN:
        d = credentials.data
        return client_from_robot_token(
            d["token"],
            d["organization"],
            d["spacesBaseURL"],
            d["controlPlaneGroupName"],
            d["controlPlaneName"],
            ca_data=d.get(ROBOT_TOKEN_CA_KEY),
            name=connection,
            metrics=metrics,
        )
    # The kubeconfig is data from a Secret: never let it run programs or read our files.
    return client_from_kubeconfig(
        credentials.data["kubeconfig"], name=connection, metrics=metrics, self_contained=True
    )


class CRDConflicts:
    """Per connection, the CRD conflicts of its last pull, for its bindings to name;
    ``on_change`` hears of each change once."""

    def __init__(self, *, on_change: Callable[[str], None]) -> None:
        self._on_change = on_change
        self._conflicts: dict[str, tuple[CRDConflict, ...]] = {}
        self._lock = threading.Lock()

    def record(self, connection: str, conflicts: Sequence[CRDConflict]) -> None:
        with self._lock:
            before = self._conflicts.get(connection, ())
            if conflicts:
                self._conflicts[connection] = tuple(conflicts)
            else:
                self._conflicts.pop(connection, None)
        if tuple(conflicts) != before:
            self._on_change(connection)

    def of(self, connection: str) -> list[CRDConflict]:
        with self._lock:
            return list(self._conflicts.get(connection, ()))


class ConnectionController:
    """Reconciles ClusterConnections; owns the provider sessions."""

    def __init__(
        self,
        consumer: KubeClient,
        *,
        stages: Stages,
        recorder: EventRecorder,
        connections: Informer,
        consumer_crds: Informer,
        resync_period: float,
        workers: int,
        on_provider_changed: Callable[[str], None],
        on_conflicts_changed: Callable[[str], None] = lambda _connection: None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._consumer = consumer
        self._stages = stages
        self._recorder = recorder
        self._connections = connections
        self._consumer_crds = consumer_crds
        self._resync = resync_period
        self._on_provider_changed = on_provider_changed
        self._conflicts = CRDConflicts(on_change=on_conflicts_changed)
        self._written_crds: FreshObjects[str] = FreshObjects()
        self._crd_write_lock = threading.Lock()
        self._sessions: dict[str, ProviderSession] = {}
        self._secret_informers: dict[str, Informer] = {}
        self._lock = threading.RLock()
        self.controller: Controller[str] = Controller(
            "connection", self._reconcile, workers=workers, metrics=metrics, clients=(consumer,)
        )

    # --- wiring --------------------------------------------------------------------------

    def on_connection(self, _event: str, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        ref = (obj.get("spec") or {}).get("secretRef") or {}
        self._ensure_secret_informer(secret_namespace(ref))
        self.controller.enqueue(str(meta.get("name")))

    def on_secret(self, _event: str, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        for conn in self._connections.list():
            ref = (conn.get("spec") or {}).get("secretRef") or {}
            if ref.get("name") == meta.get("name") and secret_namespace(ref) == meta.get(
                "namespace"
            ):
                self.controller.enqueue(str(conn["metadata"]["name"]))

    def on_consumer_crd(self, event: str, obj: Obj) -> None:
        """Wake the connection that owns this consumer CRD, and every connection whose
        provider offers a CRD of this name (a conflicting CRD may have been removed)."""
        meta = obj.get("metadata", {})
        owner = (meta.get("labels") or {}).get(LABEL_CONNECTION)
        name = str(meta.get("name"))
        self._written_crds.observe(name, event, obj)
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            if session.informer.get(None, name) is not None:
                self.controller.enqueue(session.connection)
        if owner is None:
            return
        for conn in self._connections.list():
            conn_name = str(conn["metadata"]["name"])
            if label_value(conn_name) == owner:
                self.controller.enqueue(conn_name)

    def crd_conflicts(self, connection: str) -> list[CRDConflict]:
        """The provider CRDs the connection offers but did not pull at its last reconcile,
        because a consumer CRD of that name belongs to another connection (or to none)."""
        return self._conflicts.of(connection)

    def provider_client(self, connection: str) -> KubeClient | None:
        with self._lock:
            session = self._sessions.get(connection)
            return session.client if session is not None else None

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            secret_informers = list(self._secret_informers.values())
            self._secret_informers.clear()
        for session in sessions:
            session.stop()
        for informer in secret_informers:
            informer.stop()

    # --- side effects of the reconcile ---------------------------------------------------

    def _ensure_secret_informer(self, namespace: str) -> Informer:
        with self._lock:
            informer = self._secret_informers.get(namespace)
            if informer is None:
                informer = Informer(
                    self._consumer,
                    SECRETS,
                    namespace=namespace,
                    handler=self.on_secret,
                    resync_period=self._resync,
                    name=f"secrets/{namespace}",
                    metrics=self._metrics,
                    on_health_change=lambda: self._wake_connections_in(namespace),
                )
                self._secret_informers[namespace] = informer
                informer.start()
            return informer

    def _get_secret(self, namespace: str, name: str) -> Obj | None:
        informer = self._ensure_secret_informer(namespace)
        if not informer.has_synced:
            # Its first list (or failure) wakes the connections of that namespace.
            error = informer.last_error
            if error is not None:
                raise error
            raise NotSynced(f"The Secrets of namespace {namespace} are not listed yet.")
        return informer.get(namespace, name)

    def _wake_connections_in(self, namespace: str) -> None:
        for conn in self._connections.list():
            if secret_namespace((conn.get("spec") or {}).get("secretRef") or {}) == namespace:
                self.controller.enqueue(str(conn["metadata"]["name"]))

    def _connect(self, name: str, credentials: Credentials) -> ProviderSession:
        fingerprint = credentials.fingerprint()
        with self._lock:
            session = self._sessions.get(name)
            if session is not None and session.fingerprint == fingerprint:
                return session
        client = client_for(name, credentials, metrics=self._metrics)
        new = ProviderSession(
            name,
            client,
            fingerprint,
            on_change=lambda: self.controller.enqueue(name),
            resync_period=self._resync,
            metrics=self._metrics,
        )
        with self._lock:
            old = self._sessions.get(name)
            self._sessions[name] = new
        if old is not None:
            old.stop()
        new.start()
        log.info("Started watching the provider's bindable CRDs.", connection=name)
        self._on_provider_changed(name)
        return new

    def _disconnect(self, name: str) -> None:
        with self._lock:
            session = self._sessions.pop(name, None)
        if session is not None:
            session.stop()
            log.info("Stopped watching the provider.", connection=name)
            self._on_provider_changed(name)

    def _newest_consumer_crds(self) -> list[Obj]:
        cached = {str(crd["metadata"]["name"]): crd for crd in self._consumer_crds.list()}
        names = sorted(cached.keys() | set(self._written_crds.keys()))
        newest = (self._written_crds.newest(name, cached.get(name)) for name in names)
        return [crd for crd in newest if crd is not None]

    def _newest_consumer_crd(self, name: str) -> Obj | None:
        return self._written_crds.newest(name, self._consumer_crds.get(None, name))

    def _apply_crd(self, crd: Obj) -> None:
        name = str(crd["metadata"]["name"])
        written = self._consumer.apply(
            CUSTOM_RESOURCE_DEFINITIONS, crd, field_manager=FIELD_MANAGER
        )
        self._written_crds.record(name, without_managed_fields(written))
        log.info("Applied a CRD pulled from the provider.", crd=name)

    def _write_status(self, name: str, status: dict[str, Any]) -> None:
        self._consumer.apply_status(
            CLUSTER_CONNECTIONS,
            {
                "apiVersion": CLUSTER_CONNECTIONS.api_version,
                "kind": CLUSTER_CONNECTIONS.kind,
                "metadata": {"name": name},
                "status": status,
            },
            field_manager=FIELD_MANAGER,
        )

    def _reconcile(self, name: str) -> Result:
        deps = ConnectionDeps(
            get_connection=lambda n: self._connections.get(None, n),
            get_secret=self._get_secret,
            connect=self._connect,
            disconnect=self._disconnect,
            consumer_crds=self._newest_consumer_crds,
            consumer_crd=self._newest_consumer_crd,
            apply_crd=self._apply_crd,
            crd_writes=self._crd_write_lock,
            write_status=self._write_status,
            pull=self._stages.pull,
            warn=self._recorder.warning,
            resolved=self._recorder.resolved,
            now=now_rfc3339,
            record_conflicts=self._conflicts.record,
        )
        return reconcile_connection(name, deps)
