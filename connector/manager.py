"""The connector's manager: shared consumer caches, the three controllers, start and stop.

Data flow::

    ClusterConnection ─┐                    ┌─ provider CRD informer (per connection)
    Secret ────────────┼─ connection ctrl ──┤
    consumer CRDs ─────┘        │           └─ stages.pull → consumer CRDs, status
                                │ provider client changed
    ClusterAPIBinding ─┐        ▼
    APIBinding ────────┴─ binding ctrl ── stages.bind → status, sync targets
                                                          │
                                 SyncSupervisor ◄─────────┘
                                   └─ ObjectSyncer per (connection, resource)
                                        consumer + provider informers → stages.sync
"""

from __future__ import annotations

import threading
import time

import structlog

from connector.controllers.binding_controller import BindingController
from connector.controllers.binding_reconcile import API_BINDING
from connector.controllers.connection_controller import ConnectionController
from connector.controllers.supervisor import SyncSupervisor
from connector.kube.client import KubeClient
from connector.kube.errors import NotFoundError
from connector.kube.metrics import Metrics
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    EVENTS,
    NAMESPACES,
)
from connector.runtime.controller import cache_form
from connector.runtime.events import EventRecorder
from connector.runtime.informer import Informer
from connector.runtime.keys import BindingKey
from connector.stages import Stages
from functions.common.objects import Obj
from functions.common.placement import PLACEMENT_DEFAULT, placement_of
from functions.object_syncer.types import Adoption

log = structlog.get_logger(__name__)


def default_consumer_cluster_name(consumer: KubeClient) -> str:
    """A stable identity for this consumer cluster: derived from kube-system's uid."""
    try:
        ns = consumer.get(NAMESPACES, "kube-system")
    except NotFoundError:
        ns = consumer.get(NAMESPACES, "default")
    return f"consumer-{str(ns['metadata']['uid'])[:8]}"


class Manager:
    """Everything the ``run`` command runs, startable and stoppable from a test."""

    def __init__(
        self,
        consumer: KubeClient,
        *,
        stages: Stages,
        consumer_cluster: str,
        resync_period: float = 600.0,
        workers: int = 4,
        metrics: Metrics | None = None,
        permission_check_interval: float = 30.0,
        connection_secrets: bool = True,
    ) -> None:
        """``connection_secrets`` False: no connection Secret is read or written (the Helm
        value ``connectionSecrets.enabled=false``, which leaves out the RBAC they need)."""
        self.consumer = consumer
        self.consumer_cluster = consumer_cluster
        self._started = False
        self._synced = threading.Event()
        #: Set by the consumer caches on a change of their health (their first list, a
        #: failure), which is what start() waits for.
        self._caches_changed = threading.Event()
        #: Each connection's adoption opt-in as last seen, to notice when it changes.
        self._adoptions: dict[str, Adoption | None] = {}
        #: Each connection's placement of twins as last seen, likewise.
        self._placements: dict[str, str] = {}
        self.recorder = EventRecorder(
            lambda _namespace, event: consumer.create(EVENTS, event),
            # What an earlier process (or leader) already told: not repeated after a restart.
            list_events=lambda namespace, uid: consumer.list(
                EVENTS, namespace, field_selector=f"involvedObject.uid={uid}"
            )[0],
        )
        #: What the collector of orphaned twins deleted, on bindings: a recorder of its own,
        #: so that these Normal Events never count as resolving a binding's Warning.
        self.notices = EventRecorder(lambda _namespace, event: consumer.create(EVENTS, event))
        self.connections = Informer(
            consumer,
            CLUSTER_CONNECTIONS,
            handler=self._on_connection,
            resync_period=resync_period,
            name="clusterconnections",
            metrics=metrics,
            on_health_change=self._caches_changed.set,
        )
        self.consumer_crds = Informer(
            consumer,
            CUSTOM_RESOURCE_DEFINITIONS,
            handler=self._on_consumer_crd,
            resync_period=resync_period,
            name="consumer-crds",
            metrics=metrics,
            on_health_change=self._caches_changed.set,
            # Every CRD in the consumer is cached; their managedFields are the bulk of them.
            transform=cache_form,
        )
        self.cluster_bindings = Informer(
            consumer,
            CLUSTER_API_BINDINGS,
            handler=self._on_binding,
            resync_period=resync_period,
            name="clusterapibindings",
            metrics=metrics,
            on_health_change=self._caches_changed.set,
        )
        self.bindings = Informer(
            consumer,
            API_BINDINGS,
            handler=self._on_binding,
            resync_period=resync_period,
            name="apibindings",
            metrics=metrics,
            on_health_change=self._caches_changed.set,
        )
        self.connection_controller = ConnectionController(
            consumer,
            stages=stages,
            recorder=self.recorder,
            connections=self.connections,
            consumer_crds=self.consumer_crds,
            resync_period=resync_period,
            workers=max(1, min(workers, 4)),
            on_provider_changed=self._on_provider_changed,
            on_conflicts_changed=self._on_crd_conflicts_changed,
            metrics=metrics,
        )
        self.supervisor = SyncSupervisor(
            consumer,
            stages=stages,
            recorder=self.recorder,
            consumer_cluster=consumer_cluster,
            provider_client=self.connection_controller.provider_client,
            resync_period=resync_period,
            workers=workers,
            metrics=metrics,
            adoption=lambda name: Adoption.of_connection(self.connections.get(None, name)),
            placement=lambda name: placement_of(self.connections.get(None, name)),
            get_binding=self._get_binding,
            notices=self.notices,
            connection_secrets=connection_secrets,
        )
        self.binding_controller = BindingController(
            consumer,
            stages=stages,
            recorder=self.recorder,
            connections=self.connections,
            cluster_bindings=self.cluster_bindings,
            bindings=self.bindings,
            supervisor=self.supervisor,
            workers=max(1, min(workers, 4)),
            metrics=metrics,
            permission_check_interval=permission_check_interval,
            crd_conflicts=self.connection_controller.crd_conflicts,
        )

    # Informer handlers run before the controllers exist only if an informer starts early;
    # start() creates everything first, so these always have their targets.
    def _on_connection(self, event: str, obj: Obj) -> None:
        self.connection_controller.on_connection(event, obj)
        self.binding_controller.on_connection(event, obj)
        name = str((obj.get("metadata") or {}).get("name"))
        adoption = None if event == "DELETED" else Adoption.of_connection(obj)
        if self._adoptions.get(name) != adoption:
            # Objects left in Conflict are looked at again under the new opt-in.
            self._adoptions[name] = adoption
            self.supervisor.resync(name)
        placement = placement_of(None if event == "DELETED" else obj)
        if self._placements.get(name, PLACEMENT_DEFAULT) != placement:
            # Twins go elsewhere: the connection's syncers start again with the new placement.
            self._placements[name] = placement
            self.supervisor.refresh(name)

    def _on_consumer_crd(self, event: str, obj: Obj) -> None:
        self.connection_controller.on_consumer_crd(event, obj)

    def _on_binding(self, event: str, obj: Obj) -> None:
        self.binding_controller.on_binding(event, obj)

    def _get_binding(self, key: BindingKey) -> Obj | None:
        if key.kind == API_BINDING:
            return self.bindings.get(key.namespace, key.name)
        return self.cluster_bindings.get(None, key.name)

    def _on_provider_changed(self, connection: str) -> None:
        self.supervisor.refresh(connection)
        self.binding_controller.enqueue_for_connection(connection)

    def _on_crd_conflicts_changed(self, connection: str) -> None:
        # The connection's bindings name the CRDs it cannot pull in their Conflict.
        self.binding_controller.enqueue_for_connection(connection)

    def _informers(self) -> list[Informer]:
        return [self.connections, self.consumer_crds, self.cluster_bindings, self.bindings]

    def start(self, *, sync_timeout: float = 60.0) -> None:
        """Start the caches, wait until they are filled, then start the controllers."""
        log.info("Starting the connector.", consumer_cluster=self.consumer_cluster)
        self._started = True
        for informer in self._informers():
            informer.start()
        deadline = time.monotonic() + sync_timeout
        while True:
            self._caches_changed.clear()
            if all(i.has_synced for i in self._informers()):
                break
            for informer in self._informers():
                if isinstance(informer.last_error, NotFoundError):
                    # Waiting cannot help: the API is not served at all.
                    raise RuntimeError(
                        f"The consumer does not serve {informer.res.group_resource}: install "
                        "the connector's CRDs (package/crds, or the Helm chart) first."
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                slow = [i for i in self._informers() if not i.has_synced]
                raise RuntimeError(
                    f"The consumer caches {', '.join(i.name for i in slow)} did not fill within "
                    f"{sync_timeout}s: {slow[0].last_error}"
                )
            self._caches_changed.wait(remaining)
        self.connection_controller.start()
        self.binding_controller.start()
        self._synced.set()
        log.info("The connector is running.")

    def ready(self) -> bool:
        """Ready: the consumer caches are filled and the controllers run."""
        return self._synced.is_set() and all(i.last_error is None for i in self._informers())

    def stop(self) -> None:
        if not self._started:
            return
        log.info("Stopping the connector.")
        self._synced.clear()
        self.binding_controller.stop()
        self.connection_controller.stop()
        self.supervisor.stop()
        for informer in self._informers():
            informer.stop()
        self._started = False
        log.info("The connector stopped.")
