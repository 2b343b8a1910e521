"""collect_orphan with plain callables: a twin is deleted only when its consumer object is
confirmed gone by a live read, the twin is ours with origin labels, and it did not ask for
Orphan; the delete is conditional on the twin as looked at, and what was deleted is told."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.controllers.gc_reconcile import CollectDeps, collect_orphan, collected_message
from connector.controllers.sync_reconcile import SyncDeps, reconcile_object
from connector.kube.errors import ConflictError, NotFoundError
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.object_syncer import SyncResult, desired_twin

CLUSTER = "consumer-1"
KEY = ObjectKey("team-a", "db")
CONSUMER: dict[str, Any] = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "NopResource",
    "metadata": {"name": "db", "namespace": "team-a", "uid": "consumer-uid", "generation": 1},
    "spec": {"coolField": "x"},
}


def twin(*, annotations: dict[str, str] | None = None, cluster: str = CLUSTER, **meta: Any) -> Any:
    consumer = copy.deepcopy(CONSUMER)
    if annotations:
        consumer["metadata"]["annotations"] = annotations
    out = desired_twin(consumer, consumer_cluster=cluster)
    out["metadata"].update(uid="twin-uid", resourceVersion="41", **meta)
    return out


OURS = twin()
ORPHAN = twin(annotations={"connect.upbound.io/deletion-policy": "Orphan"})
THEIRS = twin(cluster="consumer-2")
NO_ORIGIN = {
    **OURS,
    "metadata": {
        "name": "db",
        "namespace": "team-a",
        "uid": "twin-uid",
        "labels": {
            "connect.upbound.io/managed": "true",
            "connect.upbound.io/consumer-cluster": CLUSTER,
        },
    },
}
GONE = NotFoundError('nopresources "db" not found', reason="NotFound", details={"name": "db"})
CHANGED = ConflictError("Precondition failed: UID in precondition: twin-uid", reason="Conflict")


@dataclass
class World:
    twin: dict[str, Any] | None = field(default_factory=lambda: copy.deepcopy(OURS))
    synced: bool = True
    live: dict[str, Any] | None = None
    delete_error: Exception | None = None
    calls: list[str] = field(default_factory=list)
    deleted: list[tuple[ObjectKey, str, str]] = field(default_factory=list)
    collected: list[str] = field(default_factory=list)

    def read(self, key: ObjectKey) -> dict[str, Any] | None:
        self.calls.append("live read")
        return self.live

    def delete(self, key: ObjectKey, obj: dict[str, Any]) -> None:
        self.calls.append("delete")
        if self.delete_error is not None:
            raise self.delete_error
        meta = obj["metadata"]
        self.deleted.append((key, meta["uid"], meta["resourceVersion"]))

    def deps(self) -> CollectDeps:
        return CollectDeps(
            consumer_cluster=CLUSTER,
            consumer_synced=lambda key: self.synced,
            get_twin=lambda key: self.twin,
            read_consumer=self.read,
            delete_twin=self.delete,
            collected=lambda key, obj: self.collected.append(collected_message(key, obj)),
        )


@dataclass(frozen=True)
class Case:
    reason: str
    world: World
    want_calls: list[str]
    want_collected: bool = False
    want: Result = field(default_factory=Result)


CASES = [
    Case(
        "our twin, its object gone (live read): deleted exactly as looked at, and told",
        World(),
        ["live read", "delete"],
        want_collected=True,
    ),
    Case(
        "the consumer cache has not listed: a missing object says nothing, nothing is read",
        World(synced=False),
        [],
    ),
    Case("no twin: nothing to do", World(twin=None), []),
    Case(
        "the object exists after all (the cache is behind): kept",
        World(live=copy.deepcopy(CONSUMER)),
        ["live read"],
    ),
    Case(
        "a new object of that name (another uid) adopts the twin: kept",
        World(live={**CONSUMER, "metadata": {**CONSUMER["metadata"], "uid": "new-uid"}}),
        ["live read"],
    ),
    Case("its object asked for Orphan (the twin carries it): kept", World(twin=ORPHAN), []),
    Case("another consumer cluster's twin: never touched", World(twin=THEIRS), []),
    Case("no origin labels: never touched", World(twin=NO_ORIGIN), []),
    Case(
        "already being deleted: nothing to do",
        World(twin=twin(deletionTimestamp="2026-01-01T00:00:00Z")),
        [],
    ),
    Case(
        "deleted by someone else meanwhile: nothing to tell",
        World(delete_error=GONE),
        ["live read", "delete"],
    ),
    Case(
        "the twin changed since it was looked at (preconditions): looked at again",
        World(delete_error=CHANGED),
        ["live read", "delete"],
        want=Result(requeue=True),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_collect_orphan(case: Case) -> None:
    world = case.world
    assert collect_orphan(KEY, world.deps()) == case.want
    assert world.calls == case.want_calls, f"-want {case.want_calls}, +got {world.calls}"
    assert bool(world.collected) is case.want_collected
    if case.want_collected:
        assert world.deleted == [(KEY, "twin-uid", "41")], "preconditions: uid, resourceVersion"
        assert world.collected == [
            "Deleted NopResource team-a/db in the provider: its consumer object (uid "
            "consumer-uid) no longer exists, and it had not asked for the Orphan deletion "
            "policy."
        ]


def test_an_object_gone_from_the_cache_goes_to_the_collector() -> None:
    world = World()
    deps = SyncDeps(
        consumer_cluster=CLUSTER,
        get_consumer=lambda key: None,
        get_twin=lambda key: world.twin,
        sync=lambda req: pytest.fail("a gone object has nothing to sync") or SyncResult(),
        add_finalizer=lambda obj: None,
        ensure_provider_namespace=lambda ns: None,
        create_twin=lambda obj: obj,
        read_twin=lambda key: OURS,
        hand_over_ownership=lambda key, obj: None,
        apply_twin=lambda obj: obj,
        delete_twin=lambda key: pytest.fail("not the deletion of a consumer object"),
        write_consumer_status=lambda obj, st: None,
        remove_finalizer=lambda obj: None,
        warn=lambda obj, reason, message: None,
        now=lambda: "2026-01-01T00:00:00Z",
        collect=world.deps(),
    )
    assert reconcile_object(KEY, deps) == Result()
    assert world.calls == ["live read", "delete"]
