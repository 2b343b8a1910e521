"""Reconcile one ClusterAPIBinding or APIBinding: binder stage → status and sync targets.

A binding contributes *sync targets*: (connection, bound resource, namespaces). The
controller merges the targets of every binding and runs one object syncer per
(connection, resource); this module only computes one binding's share.

Before a bound resource becomes a target, the connector asks the consumer whether its own
identity holds the grants the Helm chart gives per ``boundAPIs`` entry (SelfSubjectAccess
Reviews, passed in as ``BindingDeps.may``). A resource that lacks one is not synced, since
its syncer would only fail with 403s; the binding reports ``Ready=False``,
``MissingPermission``, naming what is missing and how to grant it, and is re-checked every
``recheck_after`` seconds so that granting the permission recovers it.

An API is synced through one connection only. A bound resource that another binding
already syncs through another connection (``claims``), or whose CRD in the consumer belongs
to another connection (the CRD-puller's conflicts), is not synced either; the binding
reports ``Ready=False``, ``Conflict``, naming the other binding or connection, and takes the
API over when the other binding lets it go.

Who owns ``Ready``: this reconcile alone (:func:`binding_ready`). The binder stage gives
its verdict on what the binding names (``Bound``, ``NotOffered``, ``ConnectionNotFound``,
``ConnectionNotReady``, ``InvalidBinding``, with its message); the reconcile keeps that
unless something only the connector knows keeps an API from syncing (``Conflict``,
``MissingPermission``), and sets the one condition against the stored ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import structlog

from connector.controllers.claims import Refusal, Settlement, SyncTarget, Want
from connector.runtime.keys import BindingKey
from connector.runtime.workqueue import Result
from functions.binder.logic import REASON_BOUND, REASON_CONNECTION_NOT_READY, REASON_NOT_OFFERED
from functions.binder.types import BindRequest, BindResult, BoundResource
from functions.common import find_condition, set_condition
from functions.common.objects import Obj
from functions.crd_puller.types import CRDConflict

log = structlog.get_logger(__name__)

CLUSTER_API_BINDING = "ClusterAPIBinding"
API_BINDING = "APIBinding"

#: ``Ready`` reason of a binding whose bound resources the connector may not (all) sync.
REASON_MISSING_PERMISSION = "MissingPermission"
#: ``Ready`` reason of a binding with an API that is synced through another connection.
REASON_CONFLICT = "Conflict"

#: What the Helm chart grants per ``boundAPIs`` entry (templates/clusterrole.yaml), as
#: (subresource, verbs). Checked exactly, so that ``Bound`` means the chart's rules for the
#: API are in place, and a missing one is named as the chart would grant it.
REQUIRED_ACCESS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("get", "list", "watch", "update", "patch")),
    ("status", ("update", "patch")),
    ("finalizers", ("update",)),
)


@dataclass(frozen=True, order=True)
class AccessCheck:
    """May the connector ``verb`` ``resource[/subresource]`` of ``group`` in ``namespace``?"""

    verb: str
    group: str
    resource: str  # the plural
    subresource: str  # "" for the resource itself
    namespace: str  # "": cluster-wide (every namespace, or a cluster-scoped resource)

    @property
    def path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def access_checks(resource: BoundResource, namespace: str | None) -> list[AccessCheck]:
    """The checks for one bound resource, in ``namespace`` (None: cluster-wide)."""
    where = namespace if namespace and resource.scope == "Namespaced" else ""
    return [
        AccessCheck(verb, resource.group, resource.plural, subresource, where)
        for subresource, verbs in REQUIRED_ACCESS
        for verb in verbs
    ]


def missing_access(
    resources: Iterable[BoundResource],
    namespaces: Iterable[str] | None,
    may: Callable[[AccessCheck], bool],
) -> dict[BoundResource, list[AccessCheck]]:
    """The denied checks of each resource that lacks one (resources with all grants left out)."""
    scopes: list[str | None] = [None] if namespaces is None else [*sorted(namespaces)]
    missing: dict[BoundResource, list[AccessCheck]] = {}
    for resource in resources:
        denied = [
            check for scope in scopes for check in access_checks(resource, scope) if not may(check)
        ]
        if denied:
            missing[resource] = sorted(set(denied), key=_check_order)
    return missing


_ACCESS_ORDER = [(sub, verb) for sub, verbs in REQUIRED_ACCESS for verb in verbs]


def _check_order(check: AccessCheck) -> tuple[str, int]:
    """The chart's order (verbs of the resource, then status, then finalizers)."""
    return (check.namespace, _ACCESS_ORDER.index((check.subresource, check.verb)))


def missing_permission_message(missing: Mapping[BoundResource, list[AccessCheck]]) -> str:
    """Names every denied verb, resource and group, and how to grant them."""
    parts = []
    for resource, checks in sorted(missing.items(), key=lambda item: item[0].crd_name):
        by_scope: dict[str, dict[str, list[str]]] = {}
        for check in checks:
            by_scope.setdefault(check.namespace, {}).setdefault(check.path, []).append(check.verb)
        for namespace, paths in by_scope.items():
            where = f"in namespace {namespace}" if namespace else "cluster-wide"
            what = "; ".join(f"{', '.join(verbs)} {path}" for path, verbs in paths.items())
            parts.append(f"{what} of group {resource.group} {where}")
    groups: dict[str, list[str]] = {}
    for resource in missing:
        groups.setdefault(resource.group, []).append(resource.plural)
    entries = ", ".join(
        f"{{group: {group}, resources: [{', '.join(sorted(plurals))}]}}"
        for group, plurals in sorted(groups.items())
    )
    names = ", ".join(sorted(r.crd_name for r in missing))
    is_are = "is" if len(missing) == 1 else "are"
    return (
        f"The connector may not {' and '.join(parts)}, so {names} {is_are} not synced. "
        "Grant it: "
        f"add {entries} to the Helm chart's boundAPIs value (`api-connector install --upgrade` "
        "computes it, or `helm upgrade api-connector --reuse-values -f values.yaml` with the "
        "extended list); the binding re-checks and recovers on its own."
    )


class AccessCache:
    """Answers of ``review`` kept for ``ttl`` seconds, so that reconciles of many bindings
    do not each ask the API server the same questions; short enough that a grant added (or
    taken away) with `helm upgrade` is noticed within ``ttl``."""

    def __init__(
        self,
        review: Callable[[AccessCheck], bool],
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._review = review
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[AccessCheck, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def __call__(self, check: AccessCheck) -> bool:
        now = self._clock()
        with self._lock:
            cached = self._answers.get(check)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        # Asked outside the lock: two workers may ask the same question at once, which is
        # cheaper than serialising every review.
        allowed = self._review(check)
        with self._lock:
            for key in [k for k, (at, _) in self._answers.items() if now - at >= self._ttl]:
                del self._answers[key]
            self._answers[check] = (now, allowed)
        return allowed


class Settle(Protocol):
    """Grants or refuses a binding's APIs and sets its sync targets to those it was granted,
    in one step (:meth:`connector.controllers.claims.APIClaims.settle`)."""

    def __call__(
        self,
        key: BindingKey,
        want: Want | None,
        targets: Sequence[SyncTarget],
        *,
        gone: bool = False,
    ) -> Settlement: ...


@dataclass(frozen=True, kw_only=True)
class BindingDeps:
    get_binding: Callable[[BindingKey], Obj | None]
    get_connection: Callable[[str], Obj | None]
    bind: Callable[[BindRequest], BindResult]
    write_status: Callable[[BindingKey, dict[str, Any]], None]
    settle: Settle
    warn: Callable[[Obj, str, str], None]
    now: Callable[[], str]
    #: Whether the connector's own identity holds one grant (a SelfSubjectAccessReview).
    may: Callable[[AccessCheck], bool]
    #: Seconds until a binding with a missing grant is checked again.
    recheck_after: float = 30.0
    #: Tells the user that an earlier warning no longer applies (a Normal Event).
    resolved: Callable[[Obj, str, str], None] = lambda _obj, _reason, _message: None
    #: The provider CRDs a connection offers but does not pull, because a consumer CRD of
    #: that name belongs to another connection (from its last pull).
    crd_conflicts: Callable[[str], Sequence[CRDConflict]] = lambda _connection: ()


def targets_of(result: BindResult, *, leave_out: Iterable[BoundResource] = ()) -> list[SyncTarget]:
    namespaces = None if result.namespaces is None else frozenset(result.namespaces)
    excluded = set(leave_out)
    return [
        SyncTarget(
            connection=result.connection_name,
            resource=r,
            namespaces=namespaces,
            include_cluster_scoped=result.include_cluster_scoped,
        )
        for r in result.resources
        if r not in excluded
    ]


def conflict_message(
    connection: str, refused: Sequence[Refusal], taken: Sequence[CRDConflict]
) -> str:
    """Names each API synced elsewhere, who has it, and what makes it come here."""
    parts = [
        f"{r.resource.crd_name} is synced by {r.holder.binding} through ClusterConnection "
        f"{r.holder.connection}"
        for r in sorted(refused, key=lambda r: r.resource.crd_name)
    ]
    parts += [c.message for c in sorted(taken, key=lambda c: c.name)]
    names = sorted({r.resource.crd_name for r in refused} | {c.name for c in taken})
    is_are = "is" if len(names) == 1 else "are"
    message = (
        f"{'; '.join(parts)}. An object is synced to one provider only, so {', '.join(names)} "
        f"{is_are} not synced through ClusterConnection {connection}."
    )
    if refused:
        message += " This binding takes over when the other one is deleted or no longer binds it."
    if taken:
        message += (
            " A CRD that belongs to another connection is handed over by labelling it "
            f"connect.upbound.io/connection={connection}."
        )
    return message


def _names_api(binding_name: str, crd_name: str) -> bool:
    """Whether a binding of that name binds the CRD: its name, or its group."""
    return binding_name in (crd_name, crd_name.partition(".")[2])


class Ready(NamedTuple):
    """The binding's ``Ready`` condition, before its times."""

    status: str
    reason: str
    message: str


def binding_ready(
    verdict: Mapping[str, Any],
    *,
    connection: str,
    refused: Sequence[Refusal],
    taken: Sequence[CRDConflict],
    missing: Mapping[BoundResource, list[AccessCheck]],
) -> Ready:
    """The one place the binding's ``Ready`` is decided (module doc): the binder's
    ``verdict`` (its Ready condition), unless APIs it binds are synced elsewhere
    (``refused``, ``taken``: Conflict) or lack a grant (``missing``: MissingPermission)."""
    if refused or taken:
        message = conflict_message(connection, refused, taken)
        if missing:
            message += " " + missing_permission_message(missing)
        return Ready("False", REASON_CONFLICT, message)
    if missing:
        return Ready("False", REASON_MISSING_PERMISSION, missing_permission_message(missing))
    return Ready(
        "True" if verdict.get("status") == "True" else "False",
        str(verdict.get("reason") or ""),
        str(verdict.get("message") or ""),
    )


def reconcile_binding(key: BindingKey, deps: BindingDeps) -> Result:
    binding = deps.get_binding(key)
    if binding is None or binding.get("metadata", {}).get("deletionTimestamp"):
        deps.settle(key, None, [], gone=binding is None)
        return Result()
    ref = (binding.get("spec") or {}).get("connectionRef") or {}
    connection = deps.get_connection(str(ref.get("name") or ""))
    now = deps.now()
    result = deps.bind(BindRequest(binding=binding, connection=connection, now=now))
    status = binding.get("status") or {}
    # The binder's verdict on what the binding names; Ready is decided below (module doc).
    verdict = find_condition(result.conditions, "Ready") or {}
    missing: dict[BoundResource, list[AccessCheck]] = {}
    if verdict.get("status") == "True":
        missing = missing_access(result.resources, result.namespaces, deps.may)
    settled = deps.settle(
        key,
        Want(
            connection=result.connection_name,
            namespace=key.namespace or None,
            created=str(binding.get("metadata", {}).get("creationTimestamp") or ""),
            # While the connection is not ready, keep what it holds: an outage of its
            # provider must not move the objects to another one.
            resources=None
            if verdict.get("reason") == REASON_CONNECTION_NOT_READY
            else result.resources,
        ),
        targets_of(result, leave_out=missing),
    )
    missing = {r: checks for r, checks in missing.items() if r in settled.held}
    taken: list[CRDConflict] = []
    if verdict.get("reason") in (REASON_BOUND, REASON_NOT_OFFERED):
        taken = [
            c for c in deps.crd_conflicts(result.connection_name) if _names_api(key.name, c.name)
        ]

    ready = binding_ready(
        verdict,
        connection=result.connection_name,
        refused=settled.refused,
        taken=taken,
        missing=missing,
    )
    generation = binding.get("metadata", {}).get("generation")
    stored = status.get("conditions")
    # Against the stored conditions, so that lastTransitionTime stays while Ready does.
    conditions = set_condition(
        stored if isinstance(stored, list) else [],
        type_="Ready",
        status=ready.status,
        reason=ready.reason,
        message=ready.message,
        now=now,
        observed_generation=generation if isinstance(generation, int) else None,
    )

    desired = {
        "conditions": conditions,
        "boundResources": [r.to_status() for r in settled.held],
    }
    current = {
        "conditions": status.get("conditions") or [],
        "boundResources": status.get("boundResources") or [],
    }
    if ready.status == "True":
        deps.resolved(binding, ready.reason, ready.message)
    else:
        deps.warn(binding, ready.reason or "NotBound", ready.message)
    if desired != current:
        deps.write_status(key, desired)
        log.info(
            "The binding's status changed.",
            binding=str(key),
            ready=ready.status,
            reason=ready.reason,
            resources=[r.crd_name for r in settled.held],
        )
    if missing:
        # Nothing tells the connector that its RBAC changed (it may not read RBAC), so look
        # again: `helm upgrade` with the extended boundAPIs recovers the binding by itself.
        return Result(requeue_after=deps.recheck_after)
    return Result()
