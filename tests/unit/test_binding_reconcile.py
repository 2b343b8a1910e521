"""reconcile_binding with plain callables: status and sync targets follow the binder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.controllers.binding_reconcile import (
    AccessCache,
    AccessCheck,
    BindingDeps,
    Ready,
    binding_ready,
    reconcile_binding,
)
from connector.controllers.claims import APIClaims, Claim, Refusal, SyncTarget, Want
from connector.runtime.keys import BindingKey
from connector.runtime.workqueue import Result
from functions.binder.types import BindRequest, BindResult, BoundResource
from functions.common import set_condition
from functions.crd_puller.types import CRDConflict
from tests.support import NOP_BOUND

NOW = "2026-01-01T00:00:00Z"
OTHER = BoundResource(
    crd_name="others.nop.example.org",
    group="nop.example.org",
    kind="Other",
    plural="others",
    scope="Namespaced",
    version="v1alpha1",
)
KEY = BindingKey("APIBinding", "team-a", "nop.example.org")


def allow_all(_check: AccessCheck) -> bool:
    return True


def binding(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "APIBinding",
        "metadata": {"name": "nop.example.org", "namespace": "team-a"},
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": "c"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


@dataclass
class World:
    binding: dict[str, Any] | None
    offered: bool = True
    resources: tuple[BoundResource, ...] = (NOP_BOUND,)
    namespaces: list[str] | None = field(default_factory=lambda: ["team-a"])
    may: Callable[[AccessCheck], bool] = allow_all
    statuses: list[dict[str, Any]] = field(default_factory=list)
    targets: dict[BindingKey, list[SyncTarget]] = field(default_factory=dict)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    asked: list[AccessCheck] = field(default_factory=list)
    #: The binder's Ready reason when the API is not bound.
    unbound_reason: str = "NotOffered"
    crd_conflicts: list[CRDConflict] = field(default_factory=list)
    woken: list[BindingKey] = field(default_factory=list)
    now: str = NOW
    claims: APIClaims = field(init=False)

    def __post_init__(self) -> None:
        self.claims = APIClaims(
            set_targets=self.targets.__setitem__,
            stored_keys=lambda: [],
            stored=lambda key: None,
            wake=self.woken.append,
        )

    def review(self, check: AccessCheck) -> bool:
        self.asked.append(check)
        return self.may(check)

    def bind(self, req: BindRequest) -> BindResult:
        ok = self.offered and req.connection is not None
        cond = set_condition(
            (req.binding.get("status") or {}).get("conditions"),
            type_="Ready",
            status="True" if ok else "False",
            reason="Bound" if ok else self.unbound_reason,
            message="ok" if ok else "not offered",
            now=req.now,
        )
        return BindResult(
            connection_name="c",
            resources=list(self.resources) if ok else [],
            namespaces=self.namespaces,
            include_cluster_scoped=self.namespaces is None,
            conditions=cond,
        )

    def deps(self) -> BindingDeps:
        return BindingDeps(
            get_binding=lambda key: self.binding,
            get_connection=lambda name: {"metadata": {"name": name}},
            bind=self.bind,
            write_status=lambda key, status: self.statuses.append(status),
            settle=self.claims.settle,
            warn=lambda obj, reason, message: self.warnings.append((reason, message)),
            now=lambda: self.now,
            may=self.review,
            recheck_after=30.0,
            crd_conflicts=lambda connection: self.crd_conflicts if connection == "c" else [],
        )

    def ready(self) -> dict[str, Any]:
        (ready,) = [c for c in self.statuses[-1]["conditions"] if c["type"] == "Ready"]
        return dict(ready)


def test_a_bound_api_becomes_a_sync_target_limited_to_the_namespace() -> None:
    world = World(binding=binding())
    reconcile_binding(KEY, world.deps())
    (target,) = world.targets[KEY]
    assert target.resource == NOP_BOUND
    assert target.namespaces == frozenset({"team-a"})
    assert world.statuses[0]["boundResources"] == [NOP_BOUND.to_status()]


def test_an_api_no_longer_offered_stops_syncing_and_says_so() -> None:
    world = World(binding=binding(), offered=False)
    reconcile_binding(KEY, world.deps())
    assert world.targets[KEY] == []
    assert world.statuses[0]["conditions"][0]["reason"] == "NotOffered"


def test_an_unchanged_status_is_not_written_again() -> None:
    world = World(binding=binding())
    reconcile_binding(KEY, world.deps())
    world.binding = binding(status=world.statuses[0])
    reconcile_binding(KEY, world.deps())
    assert len(world.statuses) == 1


def test_a_deleted_binding_removes_its_targets() -> None:
    world = World(binding=None)
    world.targets[KEY] = [
        SyncTarget(connection="c", resource=NOP_BOUND, namespaces=None, include_cluster_scoped=True)
    ]
    reconcile_binding(KEY, world.deps())
    assert world.targets[KEY] == []


def denying(*denied: tuple[str, str, str]) -> Callable[[AccessCheck], bool]:
    """Allows everything but these (verb, resource[/subresource], namespace)."""
    return lambda check: (check.verb, check.path, check.namespace) not in denied


@dataclass(frozen=True)
class PermissionCase:
    reason: str
    may: Callable[[AccessCheck], bool]
    namespaces: list[str] | None
    want_synced: list[str]
    want_reason: str
    #: Parts the Ready message must name (verb, resource, group, where, the fix).
    want_in_message: tuple[str, ...] = ()


PERMISSION_CASES = [
    PermissionCase(
        reason="every grant the chart gives: both resources sync",
        may=allow_all,
        namespaces=["team-a"],
        want_synced=[NOP_BOUND.crd_name, OTHER.crd_name],
        want_reason="Bound",
    ),
    PermissionCase(
        reason="no status update in the binding's namespace: that resource is left out",
        may=denying(("update", "nopresources/status", "team-a")),
        namespaces=["team-a"],
        want_synced=[OTHER.crd_name],
        want_reason="MissingPermission",
        want_in_message=(
            "update nopresources/status of group nop.example.org in namespace team-a",
            "nopresources.nop.example.org is not synced",
            "{group: nop.example.org, resources: [nopresources]}",
            "boundAPIs",
            "api-connector install --upgrade",
        ),
    ),
    PermissionCase(
        reason="a ClusterAPIBinding is checked cluster-wide",
        may=denying(("watch", "others", ""), ("update", "others/finalizers", "")),
        namespaces=None,
        want_synced=[NOP_BOUND.crd_name],
        want_reason="MissingPermission",
        want_in_message=(
            "watch others; update others/finalizers of group nop.example.org cluster-wide",
        ),
    ),
    PermissionCase(
        reason="a grant in another namespace does not count",
        may=lambda check: check.namespace == "team-b",
        namespaces=["team-a"],
        want_synced=[],
        want_reason="MissingPermission",
        want_in_message=(
            "get, list, watch, update, patch nopresources; update, patch nopresources/status; "
            "update nopresources/finalizers of group nop.example.org in namespace team-a",
            "{group: nop.example.org, resources: [nopresources, others]}",
            "are not synced",
        ),
    ),
]


@pytest.mark.parametrize("case", PERMISSION_CASES, ids=[c.reason for c in PERMISSION_CASES])
def test_only_resources_whose_grants_the_connector_holds_are_synced(case: PermissionCase) -> None:
    world = World(
        binding=binding(), resources=(NOP_BOUND, OTHER), namespaces=case.namespaces, may=case.may
    )
    result = reconcile_binding(KEY, world.deps())
    synced = sorted(t.resource.crd_name for t in world.targets[KEY])
    assert synced == case.want_synced, f"-want {case.want_synced}, +got {synced}"
    ready = world.ready()
    assert ready["reason"] == case.want_reason
    assert ready["status"] == ("True" if case.want_reason == "Bound" else "False")
    for part in case.want_in_message:
        assert part in ready["message"], f"{part!r} not in {ready['message']!r}"
    if case.want_reason == "MissingPermission":
        assert world.warnings == [("MissingPermission", ready["message"])]
        assert result == Result(requeue_after=30.0), "a missing grant is checked again"
    else:
        assert world.warnings == []
        assert result == Result()


def test_the_checks_are_exactly_what_the_chart_grants_per_bound_api() -> None:
    world = World(binding=binding())
    reconcile_binding(KEY, world.deps())
    assert sorted((c.verb, c.group, c.path, c.namespace) for c in world.asked) == sorted(
        [(v, "nop.example.org", "nopresources", "team-a") for v in ("get", "list", "watch")]
        + [(v, "nop.example.org", "nopresources", "team-a") for v in ("update", "patch")]
        + [(v, "nop.example.org", "nopresources/status", "team-a") for v in ("update", "patch")]
        + [("update", "nop.example.org", "nopresources/finalizers", "team-a")]
    )


def test_an_unbound_binding_asks_nothing() -> None:
    world = World(binding=binding(), offered=False)
    reconcile_binding(KEY, world.deps())
    assert world.asked == []


def test_granting_the_permission_recovers_the_binding() -> None:
    world = World(binding=binding(), may=denying(("list", "nopresources", "team-a")))
    reconcile_binding(KEY, world.deps())
    assert world.targets[KEY] == []
    missing = world.ready()
    world.binding = binding(status=world.statuses[-1])
    world.may = allow_all
    assert reconcile_binding(KEY, world.deps()) == Result()
    assert [t.resource for t in world.targets[KEY]] == [NOP_BOUND]
    assert (world.ready()["reason"], world.ready()["status"]) == ("Bound", "True")
    assert missing["status"] == "False"


def test_an_unchanged_missing_permission_is_not_written_again() -> None:
    world = World(binding=binding(), may=denying(("patch", "nopresources", "team-a")))
    reconcile_binding(KEY, world.deps())
    world.binding = binding(status=world.statuses[-1])
    reconcile_binding(KEY, world.deps())
    assert len(world.statuses) == 1


def test_access_answers_are_cached_for_the_ttl_only() -> None:
    now = [0.0]
    answers: list[AccessCheck] = []

    def review(check: AccessCheck) -> bool:
        answers.append(check)
        return False

    cache = AccessCache(review, ttl=30.0, clock=lambda: now[0])
    check = AccessCheck("list", "nop.example.org", "nopresources", "", "team-a")
    assert cache(check) is False
    now[0] = 29.0
    assert cache(check) is False
    assert len(answers) == 1
    now[0] = 30.0
    cache(check)
    assert len(answers) == 2


OTHER_BINDING = BindingKey("ClusterAPIBinding", "", "nop.example.org")


def bind_elsewhere(world: World) -> None:
    """Another binding syncs NOP_BOUND through ClusterConnection provider-a (it came first)."""
    world.claims.settle(
        OTHER_BINDING,
        Want(connection="provider-a", namespace=None, created=NOW, resources=[NOP_BOUND]),
        [
            SyncTarget(
                connection="provider-a",
                resource=NOP_BOUND,
                namespaces=None,
                include_cluster_scoped=True,
            )
        ],
    )


def test_an_api_synced_through_another_connection_is_a_conflict_and_not_synced_here() -> None:
    world = World(binding=binding())
    bind_elsewhere(world)
    assert reconcile_binding(KEY, world.deps()) == Result()
    assert world.targets[KEY] == []
    ready = world.ready()
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    for part in (
        "nopresources.nop.example.org is synced by ClusterAPIBinding nop.example.org through "
        "ClusterConnection provider-a",
        "not synced through ClusterConnection c",
        "takes over when the other one is deleted",
    ):
        assert part in ready["message"], f"{part!r} not in {ready['message']!r}"
    assert world.warnings == [("Conflict", ready["message"])]
    assert world.statuses[-1]["boundResources"] == [], "it binds nothing"


def test_the_waiting_binding_takes_over_when_the_first_one_is_deleted() -> None:
    world = World(binding=binding())
    bind_elsewhere(world)
    reconcile_binding(KEY, world.deps())
    world.claims.settle(OTHER_BINDING, None, [], gone=True)
    assert world.woken == [KEY], "queued again at once"
    world.binding = binding(status=world.statuses[-1])
    reconcile_binding(KEY, world.deps())
    assert [t.connection for t in world.targets[KEY]] == ["c"]
    assert world.targets[OTHER_BINDING] == []
    assert (world.ready()["status"], world.ready()["reason"]) == ("True", "Bound")
    assert world.statuses[-1]["boundResources"] == [NOP_BOUND.to_status()]


def test_a_crd_that_belongs_to_another_connection_is_a_conflict_naming_it() -> None:
    taken = CRDConflict(
        name=NOP_BOUND.crd_name,
        message=f"CRD {NOP_BOUND.crd_name} already exists in the consumer and belongs to "
        "connection provider-a",
    )
    world = World(binding=binding(), offered=False, crd_conflicts=[taken])
    reconcile_binding(KEY, world.deps())
    ready = world.ready()
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    assert taken.message in ready["message"]
    assert "connect.upbound.io/connection=c" in ready["message"], "how to hand it over"
    assert world.targets[KEY] == []


def test_a_crd_conflict_of_another_group_is_not_this_bindings_business() -> None:
    other = CRDConflict(name="widgets.other.example.org", message="taken")
    world = World(binding=binding(), offered=False, crd_conflicts=[other])
    reconcile_binding(KEY, world.deps())
    assert world.ready()["reason"] == "NotOffered"


def test_a_binding_whose_connection_is_not_ready_keeps_its_api_for_when_it_recovers() -> None:
    world = World(binding=binding(), unbound_reason="ConnectionNotReady")
    reconcile_binding(KEY, world.deps())
    world.binding = binding(status=world.statuses[-1])
    world.offered = False
    reconcile_binding(KEY, world.deps())
    assert world.targets[KEY] == [], "syncing pauses"
    assert world.ready()["reason"] == "ConnectionNotReady"
    assert world.statuses[-1]["boundResources"] == [NOP_BOUND.to_status()], "still bound here"
    # Meanwhile a binding through another connection does not get it.
    refused = world.claims.settle(
        OTHER_BINDING,
        Want(connection="provider-a", namespace=None, created=NOW, resources=[NOP_BOUND]),
        [],
    )
    assert refused.held == [] and refused.refused[0].holder.binding == KEY


BOUND = {"type": "Ready", "status": "True", "reason": "Bound", "message": "Bound nop"}
HELD_ELSEWHERE = Refusal(
    resource=NOP_BOUND,
    holder=Claim(
        binding=OTHER_BINDING, connection="provider-a", namespace=None, created=NOW, holds=True
    ),
)
TAKEN = CRDConflict(name=NOP_BOUND.crd_name, message="CRD belongs to connection provider-a")
NO_LIST = {NOP_BOUND: [AccessCheck("list", NOP_BOUND.group, NOP_BOUND.plural, "", "team-a")]}


@dataclass(frozen=True)
class ReadyCase:
    reason: str
    verdict: dict[str, Any]
    want: tuple[str, str]
    refused: tuple[Refusal, ...] = ()
    taken: tuple[CRDConflict, ...] = ()
    missing: dict[BoundResource, list[AccessCheck]] = field(default_factory=dict)
    #: Parts the message must contain.
    want_in_message: tuple[str, ...] = ()


READY_CASES = [
    ReadyCase("the binder's verdict stands when nothing else applies", BOUND, ("True", "Bound")),
    ReadyCase(
        "a verdict of not ready stands as well",
        {"type": "Ready", "status": "False", "reason": "ConnectionNotReady", "message": "down"},
        ("False", "ConnectionNotReady"),
        want_in_message=("down",),
    ),
    ReadyCase(
        "an API another binding syncs is a conflict",
        BOUND,
        ("False", "Conflict"),
        refused=(HELD_ELSEWHERE,),
        want_in_message=("through ClusterConnection provider-a", "takes over"),
    ),
    ReadyCase(
        "a CRD another connection owns is a conflict, even if the binder found nothing",
        {"type": "Ready", "status": "False", "reason": "NotOffered", "message": "not offered"},
        ("False", "Conflict"),
        taken=(TAKEN,),
        want_in_message=(TAKEN.message, "connect.upbound.io/connection=c"),
    ),
    ReadyCase(
        "a missing grant",
        BOUND,
        ("False", "MissingPermission"),
        missing=NO_LIST,
        want_in_message=("list nopresources", "boundAPIs"),
    ),
    ReadyCase(
        "a conflict names a missing grant too",
        BOUND,
        ("False", "Conflict"),
        refused=(HELD_ELSEWHERE,),
        missing=NO_LIST,
        want_in_message=("provider-a", "list nopresources"),
    ),
]


@pytest.mark.parametrize("case", READY_CASES, ids=[c.reason for c in READY_CASES])
def test_ready_is_decided_in_one_place(case: ReadyCase) -> None:
    got = binding_ready(
        case.verdict, connection="c", refused=case.refused, taken=case.taken, missing=case.missing
    )
    assert isinstance(got, Ready)
    assert (got.status, got.reason) == case.want, f"-want {case.want}, +got {got}"
    for part in case.want_in_message:
        assert part in got.message, f"{part!r} not in {got.message!r}"


def test_ready_keeps_its_transition_time_while_only_its_reason_changes() -> None:
    world = World(binding=binding(), may=denying(("list", "nopresources", "team-a")))
    reconcile_binding(KEY, world.deps())
    missing = world.ready()
    world.binding = binding(status=world.statuses[-1])
    world.now = "2026-01-02T00:00:00Z"
    world.crd_conflicts = [TAKEN]
    reconcile_binding(KEY, world.deps())
    conflict = world.ready()
    assert (missing["reason"], conflict["reason"]) == ("MissingPermission", "Conflict")
    assert conflict["lastTransitionTime"] == missing["lastTransitionTime"] == NOW
    assert [c["type"] for c in world.statuses[-1]["conditions"]] == ["Ready"], "one Ready"
