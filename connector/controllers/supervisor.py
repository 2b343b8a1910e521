"""Runs exactly the object syncers the bindings ask for.

``SyncSupervisor`` merges the sync targets of every binding (``claims.SyncTarget``), and
starts, restarts or stops one ``ObjectSyncer`` per (connection, bound resource) so that
exactly the wanted ones run with the connection's current provider client and placement
(a changed ``spec.placement`` restarts them; ``refresh``). Each syncer reads its
connection's adoption opt-in (``adoption``) at every reconcile; when it changes,
:meth:`SyncSupervisor.resync` has the connection's syncers look at every object again. It
also tells a syncer which binding covers a namespace, for the Events of the collector of
orphaned twins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import partial

from connector.controllers.binding_reconcile import API_BINDING
from connector.controllers.claims import SyncTarget
from connector.controllers.sync_controller import ObjectSyncer, SyncSpec
from connector.kube.client import KubeClient
from connector.kube.metrics import Metrics
from connector.runtime.events import EventRecorder
from connector.runtime.keys import BindingKey
from connector.stages import Stages
from functions.binder.types import BoundResource
from functions.common.objects import Obj
from functions.common.placement import PLACEMENT_DEFAULT
from functions.object_syncer.types import Adoption


class SyncSupervisor:
    """Runs exactly the syncers the bindings ask for."""

    def __init__(
        self,
        consumer: KubeClient,
        *,
        stages: Stages,
        recorder: EventRecorder,
        consumer_cluster: str,
        provider_client: Callable[[str], KubeClient | None],
        resync_period: float,
        workers: int,
        metrics: Metrics | None = None,
        adoption: Callable[[str], Adoption | None] = lambda _connection: None,
        placement: Callable[[str], str] = lambda _connection: PLACEMENT_DEFAULT,
        get_binding: Callable[[BindingKey], Obj | None] = lambda _key: None,
        notices: EventRecorder | None = None,
        connection_secrets: bool = True,
    ) -> None:
        """``get_binding`` reads a binding from the cache; ``notices`` records the Events
        of the collector of orphaned twins on it (a recorder of their own, so that they
        never count as resolving a binding's Warning). ``connection_secrets``: whether
        objects' connection Secrets are copied (``ObjectSyncer``)."""
        self._connection_secrets = connection_secrets
        self._metrics = metrics
        self._adoption = adoption
        self._placement = placement
        self._get_binding = get_binding
        self._notices = notices
        self._consumer = consumer
        self._stages = stages
        self._recorder = recorder
        self._cluster = consumer_cluster
        self._provider_client = provider_client
        self._resync = resync_period
        self._workers = workers
        self._targets: dict[BindingKey, list[SyncTarget]] = {}
        #: A copy of ``_targets`` replaced whole on every change, read without the lock by
        #: syncer workers (the lock is held while a syncer stops and waits for them).
        self._targets_seen: Mapping[BindingKey, list[SyncTarget]] = {}
        self._syncers: dict[tuple[str, str], ObjectSyncer] = {}
        self._lock = threading.RLock()
        self._stopped = False

    def set_targets(self, key: BindingKey, targets: list[SyncTarget]) -> None:
        with self._lock:
            if targets:
                self._targets[key] = list(targets)
            else:
                self._targets.pop(key, None)
            self._targets_seen = dict(self._targets)
            self._converge()

    def refresh(self, _connection: str = "") -> None:
        """Re-check after a provider client changed (or went away)."""
        with self._lock:
            self._converge()

    def resync(self, connection: str) -> None:
        """Have ``connection``'s syncers look at every object again (only enqueues)."""
        with self._lock:
            syncers = [s for (c, _), s in self._syncers.items() if c == connection]
        for syncer in syncers:
            syncer.resync()

    def binding_for(self, connection: str, crd: str, namespace: str) -> Obj | None:
        """The binding that syncs ``crd`` through ``connection`` in ``namespace`` (``""``:
        a cluster-scoped object): the namespace's APIBinding, else a ClusterAPIBinding."""
        covering = sorted(
            (key.kind != API_BINDING, key)
            for key, targets in self._targets_seen.items()
            if any(
                t.connection == connection
                and t.resource.crd_name == crd
                and (t.namespaces is None or namespace in t.namespaces)
                for t in targets
            )
        )
        for _, key in covering:
            binding = self._get_binding(key)
            if binding is not None:
                return binding
        return None

    def syncer_keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._syncers)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            syncers = list(self._syncers.values())
            self._syncers.clear()
        for syncer in syncers:
            syncer.stop()

    def _desired(self) -> dict[tuple[str, str], SyncSpec]:
        merged: dict[tuple[str, str], tuple[BoundResource, frozenset[str] | None]] = {}
        for targets in self._targets.values():
            for t in targets:
                if t.resource.scope != "Namespaced" and not t.include_cluster_scoped:
                    continue
                key = (t.connection, t.resource.crd_name)
                if key not in merged:
                    merged[key] = (t.resource, t.namespaces)
                    continue
                resource, namespaces = merged[key]
                if namespaces is None or t.namespaces is None:
                    merged[key] = (resource, None)
                else:
                    merged[key] = (resource, namespaces | t.namespaces)
        desired: dict[tuple[str, str], SyncSpec] = {}
        for (connection, crd), (resource, namespaces) in merged.items():
            provider = self._provider_client(connection)
            if provider is None:
                continue
            desired[(connection, crd)] = SyncSpec(
                connection=connection,
                resource=resource,
                namespaces=None if resource.scope != "Namespaced" else namespaces,
                provider=provider,
                placement=self._placement(connection),
            )
        return desired

    def _converge(self) -> None:
        if self._stopped:
            return
        desired = self._desired()
        for key in list(self._syncers):
            syncer = self._syncers[key]
            want = desired.get(key)
            if want is None or not want.same_as(syncer.spec):
                del self._syncers[key]
                syncer.stop()
        for key, spec in desired.items():
            if key in self._syncers:
                continue
            syncer = ObjectSyncer(
                spec,
                consumer=self._consumer,
                stages=self._stages,
                recorder=self._recorder,
                consumer_cluster=self._cluster,
                resync_period=self._resync,
                workers=self._workers,
                metrics=self._metrics,
                adoption=partial(self._adoption, spec.connection),
                binding_for=partial(self.binding_for, *key),
                notices=self._notices,
                connection_secrets=self._connection_secrets,
            )
            self._syncers[key] = syncer
            syncer.start()
