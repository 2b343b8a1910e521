"""Twins whose consumer object went away without the connector are collected, and nothing else.

The way it happens in real clusters: an operator force-removes the finalizer of an object
while the connector is down (``kubectl patch ... -p '{"metadata":{"finalizers":null}}'``).
The connector runs as ``api-connector run`` with a one-hour poll interval, so what a
restarted connector collects it collects at start.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from connector.kube.resources import (
    EVENTS,
)
from functions.common import (
    ANNOTATION_DELETION_POLICY,
    FINALIZER,
    LABEL_CONSUMER_CLUSTER,
    MANAGED_LABEL,
)
from tests.e2e.harness import NOP, condition, consistently, eventually, get
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


def collected_count(c: ConnectorProcess) -> float:
    url = f"http://127.0.0.1:{c.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    found = re.findall(r"^api_connector_orphaned_twins_deleted_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


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
        events = eventually(lambda: collected_events(world), timeout=30)
        assert [e for e in events if f"{ns}/gone" in e["message"]], events
        assert not [e for e in events if f"{ns}/keep-me" in e["message"]]
        assert "Deleted an orphaned provider twin" in c.log_text()
        assert collected_count(c) >= 1
