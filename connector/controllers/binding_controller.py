"""Wires the binding reconcile: ClusterAPIBindings and APIBindings → sync targets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from connector.controllers.binding_reconcile import (
    API_BINDING,
    CLUSTER_API_BINDING,
    AccessCache,
    AccessCheck,
    BindingDeps,
    reconcile_binding,
)
from connector.controllers.claims import APIClaims
from connector.controllers.supervisor import SyncSupervisor
from connector.kube.client import KubeClient
from connector.kube.metrics import Metrics
from connector.kube.resources import API_BINDINGS, CLUSTER_API_BINDINGS
from connector.runtime.controller import Controller
from connector.runtime.events import EventRecorder
from connector.runtime.informer import Informer
from connector.runtime.keys import BindingKey
from connector.runtime.workqueue import Result
from connector.stages import Stages
from functions.common.api import FIELD_MANAGER
from functions.common.clock import now_rfc3339
from functions.common.objects import Obj
from functions.crd_puller.types import CRDConflict


class BindingController:
    def __init__(
        self,
        consumer: KubeClient,
        *,
        stages: Stages,
        recorder: EventRecorder,
        connections: Informer,
        cluster_bindings: Informer,
        bindings: Informer,
        supervisor: SyncSupervisor,
        workers: int,
        metrics: Metrics | None = None,
        permission_check_interval: float = 30.0,
        crd_conflicts: Callable[[str], Sequence[CRDConflict]] = lambda _connection: (),
    ) -> None:
        self._consumer = consumer
        self._permission_check_interval = permission_check_interval
        self._may = AccessCache(self._review, ttl=permission_check_interval)
        self._stages = stages
        self._recorder = recorder
        self._connections = connections
        self._cluster_bindings = cluster_bindings
        self._bindings = bindings
        self._crd_conflicts = crd_conflicts
        self.controller: Controller[BindingKey] = Controller(
            "binding", self._reconcile, workers=workers, metrics=metrics, clients=(consumer,)
        )
        self._claims = APIClaims(
            set_targets=supervisor.set_targets,
            stored_keys=self._binding_keys,
            stored=self._get,
            wake=self.controller.enqueue,
        )

    def on_binding(self, _event: str, obj: Obj) -> None:
        self.controller.enqueue(_key(obj))

    def on_connection(self, _event: str, obj: Obj) -> None:
        self.enqueue_for_connection(str(obj.get("metadata", {}).get("name")))

    def enqueue_for_connection(self, connection: str) -> None:
        for informer in (self._cluster_bindings, self._bindings):
            for binding in informer.list():
                ref = (binding.get("spec") or {}).get("connectionRef") or {}
                if ref.get("name") == connection:
                    self.controller.enqueue(_key(binding))

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def _get(self, key: BindingKey) -> Obj | None:
        if key.kind == CLUSTER_API_BINDING:
            return self._cluster_bindings.get(None, key.name)
        return self._bindings.get(key.namespace, key.name)

    def _binding_keys(self) -> Iterator[BindingKey]:
        # The informers' keys, not their objects: listing copies every object.
        cluster_keys, keys = self._cluster_bindings.keys(), self._bindings.keys()
        for _, name in cluster_keys:
            yield BindingKey(CLUSTER_API_BINDING, "", name)
        for namespace, name in keys:
            yield BindingKey(API_BINDING, namespace, name)

    def _write_status(self, key: BindingKey, status: dict[str, Any]) -> None:
        res = CLUSTER_API_BINDINGS if key.kind == CLUSTER_API_BINDING else API_BINDINGS
        meta: dict[str, Any] = {"name": key.name}
        if key.namespace:
            meta["namespace"] = key.namespace
        self._consumer.apply_status(
            res,
            {"apiVersion": res.api_version, "kind": res.kind, "metadata": meta, "status": status},
            field_manager=FIELD_MANAGER,
        )

    def _review(self, check: AccessCheck) -> bool:
        return self._consumer.self_subject_access_review(
            check.verb,
            check.group,
            check.resource,
            check.namespace or None,
            subresource=check.subresource or None,
        )

    def _reconcile(self, key: BindingKey) -> Result:
        deps = BindingDeps(
            get_binding=self._get,
            get_connection=lambda name: self._connections.get(None, name),
            bind=self._stages.bind,
            write_status=self._write_status,
            settle=self._claims.settle,
            warn=self._recorder.warning,
            resolved=self._recorder.resolved,
            now=now_rfc3339,
            may=self._may,
            recheck_after=self._permission_check_interval,
            crd_conflicts=self._crd_conflicts,
        )
        return reconcile_binding(key, deps)


def _key(obj: Obj) -> BindingKey:
    meta = obj.get("metadata", {})
    if obj.get("kind") == API_BINDING or meta.get("namespace"):
        return BindingKey(API_BINDING, str(meta.get("namespace") or ""), str(meta.get("name")))
    return BindingKey(CLUSTER_API_BINDING, "", str(meta.get("name")))
