"""Twins whose consumer object went away without the connector are collected, and nothing else.

The ways it happens in real clusters: an operator force-removes the finalizer of an object
while the connector is down (``kubectl patch ... -p '{"metadata":{"finalizers":null}}'``),
or the object is deleted before its finalizer landed (the connector writes the finalizer and
the twin at the same time) and the connector dies, or is running. The connector runs as
``api-connector run`` with a one-hour poll interval, so what a restarted connector collects
it collects at start.

"Before its finalizer landed" is made deterministic with a ValidatingAdmissionPolicy in the
consumer that refuses the connector's finalizer in one namespace: the twin is written, the
finalizer never lands, exactly the state a connector killed between the two writes leaves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from connector.kube.resources import EVENTS
from functions.common import (
    ANNOTATION_DELETION_POLICY,
    FINALIZER,
    LABEL_CONSUMER_CLUSTER,
    MANAGED_LABEL,
)
from tests.e2e.harness import (
    NOP,
    condition,
    consistently,
    eventually,
    get,
    nop_admission,
)
from tests.faults.harness import (
    BINDING,
    ConnectorProcess,
    FaultWorld,
    fault_world,
    nop,
    problems,
    running,
    twins,
    unique_namespace,
    wait_bound,
)

ORPHAN = {ANNOTATION_DELETION_POLICY: "Orphan"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    with fault_world(tmp_path_factory.mktemp("orphans")) as w:
        yield w


def connector(world: FaultWorld, name: str) -> ConnectorProcess:
    return ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / f"{name}.log",
    )


def force_delete(world: FaultWorld, namespace: str, name: str) -> None:
    """Delete a consumer object and remove its finalizers, as an operator 'fixes' it."""
    world.consumer.delete(NOP, name, namespace)
    world.consumer.patch(NOP, name, namespace, {"metadata": {"finalizers": None}})
    eventually(lambda: get(world.consumer, NOP, name, namespace) is None)


def collected_events(world: FaultWorld) -> list[dict[str, Any]]:
    """The collector's Events: on the walkthrough's ClusterAPIBinding (namespace default)."""
    items, _ = world.consumer.list(EVENTS, "default")
    return [
        e
        for e in items
        if e.get("reason") == "OrphanedTwinDeleted"
        and e.get("involvedObject", {}).get("kind") == "ClusterAPIBinding"
        and e.get("involvedObject", {}).get("name") == BINDING
    ]


def told(world: FaultWorld, what: str) -> bool:
    """Whether the binding has a collector's Event naming ``what`` (namespace/name)."""
    return any(f"{what} in the provider" in e["message"] for e in collected_events(world))


def collected_count(c: ConnectorProcess) -> float:
    return sum(value for _, value in c.metrics("api_connector_orphaned_twins_deleted_total"))


def provider_object(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    obj = nop(namespace, name, "made in the provider")
    obj["metadata"]["labels"] = labels
    return obj


@pytest.mark.timeout(240)
def test_twins_of_objects_force_deleted_while_the_connector_was_down_are_collected(
    world: FaultWorld,
) -> None:
    c = connector(world, "force-deleted")
    ns = unique_namespace(world, "forced")
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        keep = nop(ns, "keep-me", "orphan policy")
        keep["metadata"]["annotations"] = ORPHAN
        for obj in (nop(ns, "gone", "v"), nop(ns, "stays", "v"), keep):
            world.consumer.create(NOP, obj)
        wanted = {"gone": "v", "stays": "v", "keep-me": "orphan policy"}
        eventually(lambda: not problems(world, ns, wanted), timeout=60)
        assert (
            twins(world, ns)["keep-me"]["metadata"]["annotations"][ANNOTATION_DELETION_POLICY]
            == "Orphan"
        ), "the twin carries the Orphan choice"
        # Objects in the provider that the collector must never touch: another consumer
        # cluster's, one of ours without origin labels, one of nobody.
        foreign = {
            "other-consumers": {MANAGED_LABEL: "true", LABEL_CONSUMER_CLUSTER: "someone-else"},
            "no-origin": {
                MANAGED_LABEL: "true",
                LABEL_CONSUMER_CLUSTER: world.consumer_cluster_name,
            },
            "nobodys": {},
        }
        for name, labels in foreign.items():
            world.provider.create(NOP, provider_object(ns, name, labels))
        c.kill()

        # While it is down: two objects lose their finalizer and go.
        force_delete(world, ns, "gone")
        force_delete(world, ns, "keep-me")
        before = {n: t["metadata"]["uid"] for n, t in twins(world, ns).items()}
        assert {"gone", "keep-me"} <= set(before)

        c.start().wait_ready()
        eventually(lambda: "gone" not in twins(world, ns), timeout=60)
        # Kept: the Orphan twin, the twin of the object that still exists, and everything
        # that is not ours; none of them re-created either.
        consistently(
            lambda: {n: t["metadata"]["uid"] for n, t in twins(world, ns).items()}
            == {n: u for n, u in before.items() if n != "gone"},
            duration=3.0,
        )
        stays = get(world.consumer, NOP, "stays", ns)
        assert FINALIZER in stays["metadata"]["finalizers"]
        assert condition(stays, "APIBound").get("status") == "True"

        # Said three ways: an Event on the binding, a log line, a counter.
        eventually(lambda: told(world, f"{ns}/gone"), timeout=30)
        assert not told(world, f"{ns}/keep-me")
        assert "Deleted an orphaned provider twin" in c.log_text()
        assert collected_count(c) >= 1


@contextlib.contextmanager
def finalizer_refused(world: FaultWorld, namespace: str) -> Iterator[None]:
    """The consumer refuses NopResources that carry the connector's finalizer in
    ``namespace`` (a ValidatingAdmissionPolicy), until the block ends."""
    with nop_admission(
        world.consumer,
        f"no-finalizer-{namespace}",
        namespace,
        expression="!has(object.metadata.finalizers) || "
        f"!object.metadata.finalizers.exists(f, f == '{FINALIZER}')",
        message="the connector's finalizer is refused here (test)",
    ):
        probe = nop(namespace, "probe", "v")
        probe["metadata"]["finalizers"] = [FINALIZER]

        def active() -> bool:
            try:
                world.consumer.create(NOP, probe)
            except Exception as exc:
                return "finalizer is refused" in str(exc)
            # Not yet: the connector syncs the probe like any object; deleting it the usual
            # way (the policy lets a finalizer go) leaves nothing behind.
            world.consumer.delete(NOP, "probe", namespace)
            eventually(lambda: get(world.consumer, NOP, "probe", namespace) is None, timeout=30)
            return False

        eventually(active, timeout=30)
        yield


@pytest.mark.timeout(240)
def test_a_twin_written_before_its_finalizer_landed_is_collected_whether_or_not_the_connector_died(
    world: FaultWorld,
) -> None:
    c = connector(world, "no-finalizer")
    ns = unique_namespace(world, "early")
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        with finalizer_refused(world, ns):
            # The twin does not wait for the finalizer: it reaches the provider although
            # the finalizer never lands.
            world.consumer.create(NOP, nop(ns, "while-running", "v"))
            world.consumer.create(NOP, nop(ns, "while-down", "v"))
            eventually(lambda: {"while-running", "while-down"} <= set(twins(world, ns)), timeout=60)
            for name in ("while-running", "while-down"):
                obj = world.consumer.get(NOP, name, ns)
                assert FINALIZER not in (obj["metadata"].get("finalizers") or [])

            # Deleted while the connector runs: it goes at once (no finalizer), and its twin
            # is collected as soon as the connector sees it gone.
            world.consumer.delete(NOP, "while-running", ns)
            eventually(lambda: "while-running" not in twins(world, ns), timeout=30)
            # (Its Event follows the delete: wait for it, or the kill below could beat it.)
            eventually(lambda: told(world, f"{ns}/while-running"), timeout=30)

            # Deleted while the connector is dead: collected when it starts again.
            c.kill()
            world.consumer.delete(NOP, "while-down", ns)
            eventually(lambda: get(world.consumer, NOP, "while-down", ns) is None)
        c.start().wait_ready()
        eventually(lambda: "while-down" not in twins(world, ns), timeout=60)
        assert twins(world, ns) == {}
        eventually(lambda: told(world, f"{ns}/while-down"), timeout=30)

        # Once the finalizer is allowed, a new object in that namespace syncs as usual.
        world.consumer.create(NOP, nop(ns, "after", "v"))
        eventually(lambda: not problems(world, ns, {"after": "v"}), timeout=60)
