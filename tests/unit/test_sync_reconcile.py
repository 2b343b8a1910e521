"""reconcile_object with plain callables: the stage's effects, in order, failures, and how a
twin is written (create, AlreadyExists, the hand-over to server-side apply)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from connector.controllers.sync_reconcile import SyncDeps, reconcile_object, write_twin
from connector.kube.errors import ConflictError, ForbiddenError, InvalidError, UnreachableError
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.common.api import FIELD_MANAGER
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult

NOW = "2026-01-01T00:00:00Z"
KEY = ObjectKey("default", "my-resource")
CONSUMER: dict[str, Any] = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "NopResource",
    "metadata": {"name": "my-resource", "namespace": "default", "uid": "u", "generation": 1},
    "spec": {"coolField": "x"},
}
TWIN: dict[str, Any] = {**CONSUMER, "metadata": {"name": "my-resource", "namespace": "default"}}


#: What a write returns: the twin as written.
WRITTEN: dict[str, Any] = {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "2"}}
ALREADY_EXISTS = ConflictError('nopresources "my-resource" already exists', reason="AlreadyExists")
FORBIDDEN = ForbiddenError(
    'nopresources.nop.example.org "my-resource" is forbidden: User "consumer" cannot create '
    'resource "nopresources"',
    status=403,
    reason="Forbidden",
)


def managed_by(*entries: tuple[str, str]) -> dict[str, Any]:
    """The twin as cached, with a summary of its managedFields (``ownership``)."""
    summary = [{"manager": manager, "operation": op} for manager, op in entries]
    return {
        **TWIN,
        "metadata": {**TWIN["metadata"], "resourceVersion": "1", "managedFields": summary},
    }


@dataclass
class World:
    result: SyncResult = field(default_factory=SyncResult)
    consumer: dict[str, Any] | None = field(default_factory=lambda: dict(CONSUMER))
    twin: dict[str, Any] | None = None
    create_error: Exception | None = None
    apply_error: Exception | None = None
    calls: list[str] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    requests: list[SyncRequest] = field(default_factory=list)
    written: dict[str, Any] = field(default_factory=lambda: dict(WRITTEN))
    finalizer_error: Exception | None = None
    delete_error: Exception | None = None
    resolved: list[str] = field(default_factory=list)

    def sync(self, req: SyncRequest) -> SyncResult:
        self.requests.append(req)
        return self.result

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.create_error is not None:
            raise self.create_error
        return self.written

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("apply")
        if self.apply_error is not None:
            raise self.apply_error
        return self.written

    def read(self, key: ObjectKey) -> dict[str, Any]:
        self.calls.append("read")
        return self.written

    def add_finalizer(self, obj: dict[str, Any]) -> None:
        self.calls.append("add_finalizer")
        if self.finalizer_error is not None:
            raise self.finalizer_error

    def delete(self, key: ObjectKey) -> None:
        self.calls.append("delete")
        if self.delete_error is not None:
            raise self.delete_error

    def background_deps(self) -> SyncDeps:
        """``deps()`` whose background work runs only when waited for: what it shows is
        that nothing waited for it before then."""

        def in_background(work: Callable[[], None]) -> Callable[[], None]:
            return work

        return replace(self.deps(), in_background=in_background)

    def deps(self) -> SyncDeps:
        return SyncDeps(
            consumer_cluster="consumer-1",
            get_consumer=lambda key: self.consumer,
            get_twin=lambda key: self.twin,
            sync=self.sync,
            add_finalizer=self.add_finalizer,
            ensure_provider_namespace=lambda ns: self.calls.append(f"namespace {ns}"),
            create_twin=self.create,
            read_twin=self.read,
            hand_over_ownership=lambda key, twin: self.calls.append("hand over"),
            apply_twin=self.apply,
            delete_twin=self.delete,
            write_consumer_status=lambda obj, st: (
                self.calls.append("status"),
                self.statuses.append(st),
            ),
            remove_finalizer=lambda obj: self.calls.append("remove_finalizer"),
            warn=lambda obj, reason, message: self.warnings.append((reason, message)),
            resolved=lambda obj, reason, message: self.resolved.append(reason),
            now=lambda: NOW,
        )


@dataclass(frozen=True)
class WriteCase:
    reason: str
    twin: dict[str, Any] | None
    want_calls: list[str]
    #: The twin as written, or None: a create found one there.
    want: dict[str, Any] | None = None
    create_error: Exception | None = None
    want_raised: type[Exception] | None = None


WRITE_CASES = [
    WriteCase("a twin missing from the cache is created with one POST", None, ["create"], WRITTEN),
    WriteCase(
        "an object of that name exists: it is read for the next pass, never overwritten",
        None,
        ["create", "read"],
        None,
        create_error=ALREADY_EXISTS,
    ),
    WriteCase(
        "a create refused for another reason fails the pass",
        None,
        ["create"],
        create_error=ForbiddenError("forbidden", status=403, reason="Forbidden"),
        want_raised=ForbiddenError,
    ),
    WriteCase(
        "a twin our create made is handed over to server-side apply before the first apply",
        managed_by(("kubectl", "Update"), (FIELD_MANAGER, "Update")),
        ["hand over", "apply"],
        WRITTEN,
    ),
    WriteCase(
        "a twin we applied before is applied",
        managed_by(),
        ["apply"],
        WRITTEN,
    ),
    WriteCase(
        "fields someone else wrote are not ours to hand over",
        managed_by(("kubectl", "Update")),
        ["apply"],
        WRITTEN,
    ),
]


@pytest.mark.parametrize("case", WRITE_CASES, ids=[c.reason for c in WRITE_CASES])
def test_how_a_twin_is_written(case: WriteCase) -> None:
    world = World(twin=case.twin, create_error=case.create_error)
    if case.want_raised is not None:
        with pytest.raises(case.want_raised):
            write_twin(KEY, TWIN, case.twin, world.deps())
    else:
        assert write_twin(KEY, TWIN, case.twin, world.deps()) == case.want
    assert world.calls == case.want_calls, f"-want {case.want_calls}, +got {world.calls}"


def test_a_new_object_gets_its_twin_without_waiting_for_its_finalizer() -> None:
    world = World(
        SyncResult(add_finalizer=True, provider_apply=TWIN, consumer_status={"conditions": []})
    )
    # The status waits for the next pass, asked for at once, which sees the twin as written.
    assert reconcile_object(KEY, world.background_deps()) == Result(requeue_after=0.0)
    # The finalizer write started first but was still running while the twin was written;
    # the pass waited for it before ending.
    assert world.calls == ["namespace default", "create", "add_finalizer"]
    assert world.requests[0].consumer_cluster == "consumer-1"


def test_a_failed_finalizer_fails_the_pass_after_the_twin_is_written() -> None:
    world = World(
        SyncResult(add_finalizer=True, provider_apply=TWIN, consumer_status={"conditions": []})
    )
    world.finalizer_error = ConflictError("the object has been modified", reason="Conflict")
    with pytest.raises(ConflictError):
        reconcile_object(KEY, world.background_deps())
    assert world.calls == ["namespace default", "create", "add_finalizer"]


def test_a_failed_finalizer_wins_over_a_refused_twin_so_no_status_is_written_stale() -> None:
    # The status PUT carries the resourceVersion the finalizer write would have moved on.
    world = World(
        SyncResult(add_finalizer=True, provider_apply=TWIN, consumer_status={"conditions": []}),
        create_error=FORBIDDEN,
    )
    world.finalizer_error = ConflictError("the object has been modified", reason="Conflict")
    with pytest.raises(ConflictError):
        reconcile_object(KEY, world.background_deps())
    assert world.statuses == []


def test_a_twin_found_by_the_create_is_looked_at_by_the_next_pass() -> None:
    world = World(SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}))
    world.create_error = ALREADY_EXISTS
    assert reconcile_object(KEY, world.deps()) == Result(requeue_after=0.0)
    assert world.calls == ["namespace default", "create", "read"]
    assert world.statuses == [], "the next pass tells whether it is ours or a conflict"


def test_an_existing_twin_is_applied_and_the_status_left_to_the_next_pass() -> None:
    current = {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "1"}}
    world = World(SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}))
    world.twin = current
    assert reconcile_object(KEY, world.deps()) == Result(requeue_after=0.0)
    assert world.calls == ["namespace default", "apply"]
    assert world.requests[0].provider is current


def test_a_write_that_changes_nothing_reports_the_status_instead_of_looping() -> None:
    # A provider webhook that keeps rewriting a field: applying again would change nothing.
    world = World(SyncResult(provider_apply=TWIN, consumer_status={"conditions": [{"x": 1}]}))
    world.twin = dict(WRITTEN)
    assert reconcile_object(KEY, world.deps()) == Result()
    assert world.calls == ["namespace default", "apply", "status"]


def test_a_deleted_object_deletes_the_twin_before_releasing_the_finalizer() -> None:
    world = World(SyncResult(provider_delete=True, remove_finalizer=True))
    reconcile_object(KEY, world.deps())
    assert world.calls == ["delete", "remove_finalizer"]


def test_an_object_gone_from_the_cache_is_left_alone() -> None:
    world = World(SyncResult(provider_apply=TWIN), consumer=None)
    assert reconcile_object(KEY, world.deps()) == Result()
    assert world.calls == [] and world.requests == []


def test_a_status_equal_to_the_current_one_is_not_written() -> None:
    world = World(SyncResult(consumer_status={"conditions": []}))
    world.consumer = {**CONSUMER, "status": {"conditions": []}}
    reconcile_object(KEY, world.deps())
    assert world.calls == []


@pytest.mark.parametrize(
    ("error", "warned"),
    [
        (InvalidError("ValidatingAdmissionPolicy 'no-status' denied request"), True),
        (ForbiddenError("cannot update nopresources/status", status=403, reason="Forbidden"), True),
        (ConflictError("the object has been modified", status=409, reason="Conflict"), False),
        (UnreachableError("connection refused", reason="ConnectionFailed"), False),
    ],
    ids=["admission", "rbac", "a stale read says nothing", "no answer is not a refusal"],
)
def test_a_refused_status_write_is_a_warning_event_and_the_pass_is_retried(
    error: Exception, warned: bool
) -> None:
    world = World(SyncResult(consumer_status={"conditions": [{"type": "APIBound"}]}))
    deps = world.deps()

    def refuse(obj: dict[str, Any], status: dict[str, Any]) -> None:
        raise error

    accepted: list[Any] = []
    deps = replace(deps, status_accepted=accepted.append)
    with pytest.raises(type(error)):
        reconcile_object(KEY, replace(deps, write_consumer_status=refuse))
    assert accepted == []
    reconcile_object(KEY, deps)
    assert accepted == [CONSUMER], "a status write that lands may resolve the Warning"
    if warned:
        [(reason, message)] = world.warnings
        assert reason == "StatusRefused"
        assert str(error) in message and "retried with backoff" in message
    else:
        assert world.warnings == []


def test_a_rejected_twin_is_reported_as_provider_rejected_and_retried() -> None:
    world = World(
        SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}),
        create_error=InvalidError("spec.coolField: Invalid value"),
    )
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    cond = world.statuses[-1]["conditions"][-1]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "APIBound",
        "False",
        "ProviderRejected",
    )
    assert "spec.coolField" in cond["message"]
    assert world.warnings[0][0] == "ProviderRejected"


def test_a_conflict_is_a_warning_event_and_the_twin_is_not_touched() -> None:
    world = World(
        SyncResult(conflict="owned by consumer-2", consumer_status={"conditions": [{"x": 1}]})
    )
    reconcile_object(KEY, world.deps())
    assert world.warnings == [("Conflict", "owned by consumer-2")]
    assert "apply" not in world.calls and "delete" not in world.calls


def test_a_bound_object_resolves_an_earlier_warning_and_a_conflict_does_not() -> None:
    bound = {"conditions": [{"type": "APIBound", "status": "True", "reason": "Bound"}]}
    resolved: list[str] = []
    world = World(SyncResult(consumer_status=bound))
    deps = world.deps()
    deps = SyncDeps(**{**deps.__dict__, "resolved": lambda obj, r, m: resolved.append(r)})
    reconcile_object(KEY, deps)
    assert resolved == ["Bound"]
    world = World(SyncResult(conflict="theirs", consumer_status=bound))
    deps = SyncDeps(**{**world.deps().__dict__, "resolved": lambda obj, r, m: resolved.append(r)})
    reconcile_object(KEY, deps)
    assert resolved == ["Bound"]


# -- adoption -------------------------------------------------------------------------------


def adopting_world(*, apply_error: Exception | None = None) -> tuple[World, SyncDeps, list[Any]]:
    """A twin another connector created, which the stage adopts; records what is reported."""
    current = {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "1"}}
    world = World(
        SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}, adopted=True),
        twin=current,
        apply_error=apply_error,
    )
    reported: list[Any] = []

    def take_over(key: ObjectKey, wanted: dict[str, Any]) -> list[str]:
        world.calls.append("take over")
        assert wanted is TWIN, "labels and annotations are taken as the wanted twin sets them"
        return ["upbound-api-connector"]

    deps = SyncDeps(
        **{
            **world.deps().__dict__,
            "adoption": lambda: Adoption(match_labels={"a": "b"}),
            "take_over_twin": take_over,
            "adopted": lambda obj, message: reported.append((obj["metadata"]["name"], message)),
        }
    )
    return world, deps, reported


def test_an_adopted_twin_has_its_fields_taken_over_before_the_apply_and_is_reported() -> None:
    world, deps, reported = adopting_world()
    assert reconcile_object(KEY, deps) == Result(requeue_after=0.0)
    assert world.calls == ["namespace default", "take over", "apply"]
    assert world.requests[0].adoption == Adoption(match_labels={"a": "b"})
    assert reported == [
        (
            "my-resource",
            "Adopted the object another connector created in the provider; its fields are "
            "taken over from upbound-api-connector.",
        )
    ]


def test_an_adoption_the_provider_rejects_is_reported_as_rejected_not_adopted() -> None:
    denied = InvalidError("spec.coolField: Invalid value")
    world, deps, reported = adopting_world(apply_error=denied)
    assert reconcile_object(KEY, deps) == Result(requeue=True)
    assert reported == []
    assert world.warnings[0][0] == "ProviderRejected"


def test_without_the_opt_in_wired_no_adoption_is_asked_for() -> None:
    world = World(SyncResult())
    reconcile_object(KEY, world.deps())
    assert world.requests[0].adoption is None
