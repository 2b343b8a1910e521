"""reconcile_object with plain callables: the stage's effects, in order, and failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.controllers.sync_reconcile import SyncDeps, reconcile_object
from connector.kube.errors import InvalidError
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.object_syncer.types import SyncRequest, SyncResult

NOW = "2026-01-01T00:00:00Z"
KEY = ObjectKey("default", "my-resource")
CONSUMER: dict[str, Any] = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "NopResource",
    "metadata": {"name": "my-resource", "namespace": "default", "uid": "u", "generation": 1},
    "spec": {"coolField": "x"},
}
TWIN: dict[str, Any] = {**CONSUMER, "metadata": {"name": "my-resource", "namespace": "default"}}


@dataclass
class World:
    result: SyncResult
    consumer: dict[str, Any] | None = field(default_factory=lambda: dict(CONSUMER))
    twin: dict[str, Any] | None = None
    apply_error: Exception | None = None
    calls: list[str] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    requests: list[SyncRequest] = field(default_factory=list)

    def sync(self, req: SyncRequest) -> SyncResult:
        self.requests.append(req)
        return self.result

    #: What the write returns: the twin as written (None: a create found one there).
    written: dict[str, Any] | None = field(
        default_factory=lambda: {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "2"}}
    )

    def apply(self, obj: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any] | None:
        self.calls.append("apply" if current is not None else "create")
        if self.apply_error is not None:
            raise self.apply_error
        return self.written

    def deps(self) -> SyncDeps:
        return SyncDeps(
            consumer_cluster="consumer-1",
            get_consumer=lambda key: self.consumer,
            get_twin=lambda key: self.twin,
            sync=self.sync,
            add_finalizer=lambda obj: self.calls.append("add_finalizer"),
            ensure_provider_namespace=lambda ns: self.calls.append(f"namespace {ns}"),
            apply_twin=self.apply,
            delete_twin=lambda key: self.calls.append("delete"),
            write_consumer_status=lambda obj, st: (
                self.calls.append("status"),
                self.statuses.append(st),
            ),
            remove_finalizer=lambda obj: self.calls.append("remove_finalizer"),
            warn=lambda obj, reason, message: self.warnings.append((reason, message)),
            now=lambda: NOW,
        )


def test_a_new_object_gets_its_finalizer_then_its_namespace_then_its_twin() -> None:
    world = World(
        SyncResult(add_finalizer=True, provider_apply=TWIN, consumer_status={"conditions": []})
    )
    # The status waits for the next pass, asked for at once, which sees the twin as written.
    assert reconcile_object(KEY, world.deps()) == Result(requeue_after=0.0)
    assert world.calls == ["add_finalizer", "namespace default", "create"]
    assert world.requests[0].consumer_cluster == "consumer-1"


def test_a_twin_found_by_the_create_is_looked_at_by_the_next_pass() -> None:
    world = World(SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}))
    world.written = None
    assert reconcile_object(KEY, world.deps()) == Result(requeue_after=0.0)
    assert world.calls == ["namespace default", "create"]


def test_an_existing_twin_is_applied_and_the_status_left_to_the_next_pass() -> None:
    current = {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "1"}}
    world = World(SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}))
    world.twin = current
    assert reconcile_object(KEY, world.deps()) == Result(requeue_after=0.0)
    assert world.calls == ["namespace default", "apply"]
    assert world.requests[0].provider is current


def test_a_write_that_changes_nothing_reports_the_status_instead_of_looping() -> None:
    # A provider webhook that keeps rewriting a field: applying again would change nothing.
    current = {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "2"}}
    world = World(SyncResult(provider_apply=TWIN, consumer_status={"conditions": [{"x": 1}]}))
    world.twin = current
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


def test_a_rejected_twin_is_reported_as_provider_rejected_and_retried() -> None:
    world = World(
        SyncResult(provider_apply=TWIN, consumer_status={"conditions": []}),
        apply_error=InvalidError("spec.coolField: Invalid value"),
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
