"""Reconcile one ClusterAPIBinding or APIBinding: binder stage → status and sync targets.

A binding contributes *sync targets*: (connection, bound resource, namespaces). The
controller merges the targets of every binding and runs one object syncer per
(connection, resource); this module only computes one binding's share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from connector.kube.workqueue import Result
from functions.binder.types import BindRequest, BindResult, BoundResource
from functions.common import find_condition
from functions.common.objects import Obj

log = structlog.get_logger(__name__)

CLUSTER_API_BINDING = "ClusterAPIBinding"
API_BINDING = "APIBinding"


@dataclass(frozen=True, order=True)
class BindingKey:
    kind: str  # ClusterAPIBinding | APIBinding
    namespace: str  # "" for a ClusterAPIBinding
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True, kw_only=True)
class SyncTarget:
    """One binding's request to sync one resource of one connection."""

    connection: str
    resource: BoundResource
    #: None: every namespace; otherwise only these.
    namespaces: frozenset[str] | None
    include_cluster_scoped: bool


@dataclass(frozen=True, kw_only=True)
class BindingDeps:
    get_binding: Callable[[BindingKey], Obj | None]
    get_connection: Callable[[str], Obj | None]
    bind: Callable[[BindRequest], BindResult]
    write_status: Callable[[BindingKey, dict[str, Any]], None]
    #: Replaces the binding's sync targets (an empty list removes them).
    set_targets: Callable[[BindingKey, list[SyncTarget]], None]
    warn: Callable[[Obj, str, str], None]
    now: Callable[[], str]
    #: Tells the user that an earlier warning no longer applies (a Normal Event).
    resolved: Callable[[Obj, str, str], None] = lambda _obj, _reason, _message: None


def targets_of(result: BindResult) -> list[SyncTarget]:
    namespaces = None if result.namespaces is None else frozenset(result.namespaces)
    return [
        SyncTarget(
            connection=result.connection_name,
            resource=r,
            namespaces=namespaces,
            include_cluster_scoped=result.include_cluster_scoped,
        )
        for r in result.resources
    ]


def reconcile_binding(key: BindingKey, deps: BindingDeps) -> Result:
    binding = deps.get_binding(key)
    if binding is None or binding.get("metadata", {}).get("deletionTimestamp"):
        deps.set_targets(key, [])
        return Result()
    ref = (binding.get("spec") or {}).get("connectionRef") or {}
    connection = deps.get_connection(str(ref.get("name") or ""))
    result = deps.bind(BindRequest(binding=binding, connection=connection, now=deps.now()))
    deps.set_targets(key, targets_of(result))

    status = binding.get("status") or {}
    desired = {
        "conditions": result.conditions,
        "boundResources": [r.to_status() for r in result.resources],
    }
    current = {
        "conditions": status.get("conditions") or [],
        "boundResources": status.get("boundResources") or [],
    }
    ready = find_condition(result.conditions, "Ready") or {}
    if ready.get("status") == "True":
        deps.resolved(binding, str(ready.get("reason")), str(ready.get("message")))
    else:
        deps.warn(binding, str(ready.get("reason") or "NotBound"), str(ready.get("message") or ""))
    if desired != current:
        deps.write_status(key, desired)
        log.info(
            "The binding's status changed.",
            binding=str(key),
            ready=ready.get("status"),
            reason=ready.get("reason"),
            resources=[r.crd_name for r in result.resources],
        )
    return Result()
