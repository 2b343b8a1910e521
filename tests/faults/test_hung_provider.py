"""The provider hangs: it accepts connections and answers nothing, then wakes up.

The connector (``api-connector run``) reaches the provider through a loopback relay
(``tests/hang_proxy.py``) that can stop moving bytes while still accepting connections:
a kube-apiserver stuck in a long pause, or a load balancer that stopped forwarding. Before
``connector.kube.liveness`` such a hang left the ClusterConnection ``Ready=True``, logged
nothing, and syncing silently stopped. Now the connection turns ``Ready=False`` with reason
``ProviderNotAnswering`` within the documented bound (docs/operate.md), a Warning Event and
one log line say so, and everything resumes when the provider answers again.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from connector.kube.resources import CLUSTER_CONNECTIONS
from tests.e2e.harness import apply_file, condition, eventually, get, warning_events
from tests.faults.harness import (
    CONNECTION,
    ConnectorProcess,
    FaultWorld,
    create_objects,
    fault_world,
    running,
    unique_namespace,
    wait_bound,
    wait_converged,
)
from tests.hang_proxy import HangingProxy, kubeconfig_via

#: kube.liveness: a request waits 5 s (deadline), the next 1 s tick probes, the probe is
#: allowed 5 s; then the connection's reconcile writes the status.
ACTIVE_BOUND = 11.0
#: When nothing is asked of the provider: 30 s of silence, a tick, a 5 s probe.
IDLE_BOUND = 36.0
#: The machine is shared and has 2 cores: scheduling, the reconcile and the status write.
SLACK = 5.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    with fault_world(tmp_path_factory.mktemp("hung-provider"), connection=False) as w:
        yield w


@pytest.fixture(scope="module")
def relay(world: FaultWorld) -> Iterator[HangingProxy]:
    assert world.provider_cluster.port is not None
    proxy = HangingProxy(world.provider_cluster.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def connector(world: FaultWorld, relay: HangingProxy) -> Iterator[ConnectorProcess]:
    via_relay = kubeconfig_via(world.provider_cluster.kubeconfig.read_text(), relay)
    apply_file(
        world.consumer,
        "consumer/10-secret-kubeconfig.yaml",
        PROVIDER_KUBECONFIG_BASE64=base64.b64encode(via_relay.encode()).decode(),
    )
    apply_file(world.consumer, "consumer/20-clusterconnection.yaml")
    apply_file(world.consumer, "consumer/30-clusterapibinding-group.yaml")
    c = ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / "connector.log",
    )
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        yield c


def ready(world: FaultWorld) -> tuple[str, str]:
    cond = condition(get(world.consumer, CLUSTER_CONNECTIONS, CONNECTION), "Ready")
    return str(cond.get("status")), str(cond.get("reason"))


def log_records(connector: ConnectorProcess) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in connector.log_text().splitlines()
        if line.strip() and not line.startswith("=====")
    ]


def hang_until_not_ready(world: FaultWorld, relay: HangingProxy, *, bound: float) -> float:
    """Hang the relay; return the seconds until the connection said so (at most ``bound``)."""
    relay.hang()
    hung_at = time.monotonic()
    eventually(lambda: ready(world) == ("False", "ProviderNotAnswering"), timeout=bound)
    return time.monotonic() - hung_at


@pytest.mark.timeout(240)
def test_a_provider_that_hangs_while_objects_wait_turns_the_connection_not_ready_in_time(
    world: FaultWorld, relay: HangingProxy, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "hang")
    wanted = {f"obj-{i}": f"value-{i}" for i in range(5)}
    create_objects(world.consumer, ns, wanted)
    wait_converged(world, ns, wanted, timeout=60)

    relay.hang()
    hung_at = time.monotonic()
    # Work arrives while the provider hangs: its twin's write waits for an answer.
    late = {"late": "created-during-the-hang"}
    create_objects(world.consumer, ns, late)
    wanted.update(late)
    eventually(
        lambda: ready(world) == ("False", "ProviderNotAnswering"), timeout=ACTIVE_BOUND + SLACK
    )
    noticed = time.monotonic() - hung_at
    message = str(
        condition(get(world.consumer, CLUSTER_CONNECTIONS, CONNECTION), "Ready")["message"]
    )
    assert "stopped answering" in message, message
    events = eventually(
        lambda: [
            e
            for e in warning_events(world.consumer, "default", CONNECTION)
            if e["reason"] == "ProviderNotAnswering"
        ]
    )
    assert len(events) == 1
    # The monitor tells the watches before it logs: the line may follow the Event.
    warned = eventually(
        lambda: [r for r in log_records(connector) if r.get("reason") == "NotAnswering"],
        what="the NotAnswering log line",
        timeout=10,
    )
    assert len(warned) == 1, warned
    assert warned[0]["level"] == "warning" and warned[0]["cluster"] == CONNECTION

    relay.resume()
    resumed_at = time.monotonic()
    eventually(lambda: ready(world) == ("True", "Ready"), timeout=30)
    back = time.monotonic() - resumed_at
    took = wait_converged(world, ns, wanted, timeout=90)
    assert connector.running, connector.log_tail()
    eventually(
        lambda: [r["event"] for r in log_records(connector)].count("The API server answers again.")
        == 1,
        what="one 'answers again' log line",
        timeout=10,
    )
    print(
        f"not answering noticed {noticed:.1f} s after the hang (bound {ACTIVE_BOUND:.0f} s); "
        f"Ready again {back:.1f} s after it answered; converged {took:.1f} s after"
    )


@pytest.mark.timeout(240)
def test_a_provider_that_hangs_while_nothing_is_asked_of_it_is_noticed_in_time(
    world: FaultWorld, relay: HangingProxy, connector: ConnectorProcess
) -> None:
    eventually(lambda: ready(world) == ("True", "Ready"), timeout=60)
    ns = unique_namespace(world, "idle")
    wanted = {"quiet": "as-is"}
    create_objects(world.consumer, ns, wanted)
    wait_converged(world, ns, wanted, timeout=60)
    try:
        noticed = hang_until_not_ready(world, relay, bound=IDLE_BOUND + SLACK)
    finally:
        relay.resume()
    eventually(lambda: ready(world) == ("True", "Ready"), timeout=30)
    wait_converged(world, ns, wanted, timeout=60)
    print(f"an idle hang noticed after {noticed:.1f} s (bound {IDLE_BOUND:.0f} s)")
