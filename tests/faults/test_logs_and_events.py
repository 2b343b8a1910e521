"""What operators read while the connector works hard, and after it restarts.

- Under a 500-object burst with 16 workers, every line ``api-connector run`` writes is one
  JSON object (the libraries' warnings included), and no connection pool overflows
  (urllib3's "Connection pool is full, discarding connection", in plain text, used to show
  dozens of times per burst).
- A restarted connector does not repeat the Warning Events it gave for problems that are
  still there, and still reports new ones.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from connector.kube.errors import ConflictError
from connector.kube.resources import API_BINDINGS, NAMESPACES
from tests.e2e.harness import NOP, condition, eventually, get, warning_events
from tests.faults.harness import (
    CONNECTION,
    ConnectorProcess,
    FaultWorld,
    create_objects,
    fault_world,
    nop,
    running,
    unique_namespace,
    wait_bound,
    wait_converged,
)

BURST = 500
#: More workers than the client library's default pool (5 per core) holds connections, so
#: that only a pool sized to its workers and informers keeps them all.
WORKERS = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    with fault_world(tmp_path_factory.mktemp("logs-and-events")) as w:
        yield w


@pytest.fixture(scope="module")
def connector(world: FaultWorld) -> Iterator[ConnectorProcess]:
    c = ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / "connector.log",
        extra_args=["--workers", str(WORKERS)],
    )
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        yield c


def not_json(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("===== start"):  # the harness's own marker
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(record, dict) or not {"event", "level", "timestamp"} <= set(record):
            bad.append(line)
    return bad


@pytest.mark.timeout(420)
def test_a_500_object_burst_logs_only_json_lines_and_no_pool_overflows(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "burst")
    wanted = {f"obj-{i:03d}": f"value-{i}" for i in range(BURST)}
    create_objects(world.consumer, ns, wanted)
    wait_converged(world, ns, wanted, timeout=300)
    text = connector.log_text()
    assert "pool is full" not in text, [ln for ln in text.splitlines() if "pool is full" in ln]
    assert not_json(text) == []
    events = [json.loads(line).get("event") for line in text.splitlines() if line.startswith("{")]
    assert "Started syncing objects." in events


def reconciles(connector: ConnectorProcess) -> dict[str, float]:
    """``api_connector_reconcile_total`` per controller, from the process's /metrics."""
    out: dict[str, float] = {}
    for labels, value in connector.metrics("api_connector_reconcile_total"):
        out[labels["controller"]] = out.get(labels["controller"], 0.0) + value
    return out


def reasons(world: FaultWorld, namespace: str, name: str) -> list[str]:
    return sorted(e["reason"] for e in warning_events(world.consumer, namespace, name))


def taken_in_provider(world: FaultWorld, namespace: str, name: str) -> None:
    """An object of that name in the provider that belongs to nobody: a Conflict."""
    with contextlib.suppress(ConflictError):
        world.provider.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
    world.provider.create(NOP, nop(namespace, name, "someone else's"))


def conflicted(world: FaultWorld, namespace: str, name: str) -> bool:
    bound = condition(get(world.consumer, NOP, name, namespace), "APIBound")
    return (bound.get("status"), bound.get("reason")) == ("False", "Conflict")


@pytest.mark.timeout(300)
def test_a_restarted_connector_does_not_repeat_warnings_for_problems_that_remain(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "restart")
    taken_in_provider(world, ns, "taken")
    create_objects(world.consumer, ns, {"taken": "mine", "fine": "ok"})
    binding: dict[str, Any] = {
        "apiVersion": API_BINDINGS.api_version,
        "kind": API_BINDINGS.kind,
        "metadata": {"name": "nothing.example.org", "namespace": ns},
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": CONNECTION}},
    }
    world.consumer.create(API_BINDINGS, binding)
    eventually(lambda: conflicted(world, ns, "taken"), timeout=60)
    eventually(lambda: reasons(world, ns, "taken") == ["Conflict"], timeout=30)
    eventually(lambda: reasons(world, ns, "nothing.example.org") == ["NotOffered"], timeout=30)

    connector.stop()
    connector.start().wait_ready()
    objects = len(world.consumer.list(NOP)[0])
    sync = f"sync/{CONNECTION}/nopresources.nop.example.org"
    # Every object and binding has been reconciled by the new process at least once.
    eventually(
        lambda: reconciles(connector).get(sync, 0) >= objects
        and reconciles(connector).get("binding", 0) >= 2,
        timeout=120,
    )
    # A new problem is still told: the recorder works, and its key was queued after theirs.
    taken_in_provider(world, ns, "taken-later")
    create_objects(world.consumer, ns, {"taken-later": "mine too"})
    eventually(lambda: reasons(world, ns, "taken-later") == ["Conflict"], timeout=60)

    assert conflicted(world, ns, "taken")
    assert reasons(world, ns, "taken") == ["Conflict"]
    assert reasons(world, ns, "nothing.example.org") == ["NotOffered"]
    assert condition(get(world.consumer, NOP, "fine", ns), "APIBound")["status"] == "True"
