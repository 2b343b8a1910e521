"""The connector process dies without any cleanup (SIGKILL) in the middle of its work.

A restarted connector knows nothing but what is in the clusters: every test ends with the
provider holding exactly one twin per consumer object, with the right spec, and every
consumer object ``APIBound=True``. Twins that existed before a crash keep their uid (updated
in place, never deleted and re-created).

The kill moments are random; the seed is printed and ``FAULTS_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator

import pytest

from connector.kube.resources import LEASES
from tests.e2e.harness import NOP, eventually, get
from tests.faults.harness import (
    CONNECTION,
    ConnectorProcess,
    FaultWorld,
    create_objects,
    fault_world,
    nop,
    parallel,
    problems,
    running,
    twins,
    unique_namespace,
    wait_bound,
    wait_converged,
)

OBJECTS = 200


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    with fault_world(tmp_path_factory.mktemp("connector-crash")) as w:
        yield w


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"FAULTS_SEED={seed}")
    return random.Random(seed)


def connector(world: FaultWorld, identity: str, *, leader_elect: bool = False) -> ConnectorProcess:
    return ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / f"{identity}.log",
        identity=identity,
        leader_elect=leader_elect,
    )


@pytest.mark.timeout(300)
def test_a_connector_killed_at_five_random_moments_loses_and_duplicates_nothing(
    world: FaultWorld, rng: random.Random
) -> None:
    c = connector(world, "killed")
    ns = unique_namespace(world, "killed")
    wanted = {f"obj-{i:03d}": f"value-{i}" for i in range(OBJECTS)}
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        create_objects(world.consumer, ns, wanted)

        # Three kills while the objects are being created in the provider, each once the
        # sync has reached a random point (so never before it started nor after it ended).
        mid_sync: list[bool] = []

        def kill_and_restart() -> None:
            # Whether the sync was unfinished right before the kill: what the test is about.
            mid_sync.append(bool(problems(world, ns, wanted)))
            c.kill()
            c.start()

        for point in sorted(rng.sample(range(10, OBJECTS - 10), 3)):
            eventually(lambda p=point: len(twins(world, ns)) >= p, timeout=90)
            kill_and_restart()
        wait_converged(world, ns, wanted, timeout=120)
        uids = {name: t["metadata"]["uid"] for name, t in twins(world, ns).items()}

        # Two kills while changes and deletions are being made and synced.
        changed = rng.sample(sorted(wanted), 60)
        for name in changed:
            wanted[name] = "changed"
        deleted = rng.sample(sorted(set(wanted) - set(changed)), 40)
        for name in deleted:
            del wanted[name]

        def make_changes() -> None:
            parallel(
                lambda n: world.consumer.apply(NOP, nop(ns, n, "changed"), field_manager="f"),
                changed,
            )
            parallel(lambda n: world.consumer.delete(NOP, n, ns), deleted)

        changer = threading.Thread(target=make_changes)
        changer.start()
        try:
            # One kill while the changes are being made, one just after the restarted
            # connector got going on them.
            time.sleep(rng.uniform(0.05, 0.5))
            kill_and_restart()
        finally:
            changer.join()
        c.wait_ready()
        time.sleep(rng.uniform(0.0, 0.3))
        kill_and_restart()
        wait_converged(world, ns, wanted, timeout=120)
        assert c.running, c.log_tail()

    after = twins(world, ns)
    assert {n: after[n]["metadata"]["uid"] for n in wanted} == {n: uids[n] for n in wanted}
    assert all(get(world.consumer, NOP, n, ns) is None for n in deleted)
    assert c.starts == 6
    print(f"killed mid-sync: {mid_sync}")
    # A random moment may fall after a fast sync ended; most must not, or nothing was tested.
    assert sum(mid_sync) >= 4, mid_sync


#: Requests that change something, as ``api_connector_kube_api_requests_total`` names them.
WRITE_VERBS = {"create", "update", "patch", "apply", "delete"}


def sync_reconciles(c: ConnectorProcess) -> float:
    """Reconciles of the object syncers (controllers ``sync/<connection>/<crd>``)."""
    samples = c.metrics("api_connector_reconcile_total")
    return sum(v for labels, v in samples if labels["controller"].startswith("sync/"))


def requests(c: ConnectorProcess) -> dict[tuple[str, str], float]:
    """Requests the process made, as (cluster, verb) → count."""
    out: dict[tuple[str, str], float] = {}
    for labels, value in c.metrics("api_connector_kube_api_requests_total"):
        key = (labels["cluster"], labels["verb"])
        out[key] = out.get(key, 0.0) + value
    return out


@pytest.mark.timeout(240)
def test_a_restart_with_everything_in_sync_reconciles_each_object_once_and_writes_nothing(
    world: FaultWorld,
) -> None:
    c = connector(world, "restarted")
    ns = unique_namespace(world, "restart")
    wanted = {f"obj-{i:03d}": f"value-{i}" for i in range(OBJECTS)}
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        create_objects(world.consumer, ns, wanted)
        wait_converged(world, ns, wanted, timeout=120)
        c.stop()
        # Every object the syncer will see, other tests' included (the binding is
        # cluster-wide), all in sync.
        objects = len(world.consumer.list(NOP)[0])

        c.start().wait_ready()
        eventually(lambda: sync_reconciles(c) >= objects, timeout=60)
        time.sleep(3.0)  # anything that would follow (a second pass, a write) has happened
        reconciled = sync_reconciles(c)
        made = requests(c)
        assert c.running, c.log_tail()

    # Workers start once both caches (objects, twins) have listed: every key was queued by
    # both and is reconciled once, with its twin read from the cache, not the provider.
    assert reconciled == objects, f"{reconciled:.0f} reconciles for {objects} objects"
    assert {k: v for k, v in made.items() if k[1] in WRITE_VERBS} == {}
    # No read of the provider: twins come from the cache. (Its client is counted under the
    # connection's name; that it is counted at all is checked first.)
    assert any(cluster == CONNECTION for cluster, _ in made), made
    assert {k: v for k, v in made.items() if k[1] == "get" and k[0] != "consumer"} == {}, made


def lease_holder(world: FaultWorld) -> str:
    lease = get(world.consumer, LEASES, "api-connector", "upbound-system")
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


@pytest.mark.timeout(240)
def test_when_the_leader_is_killed_mid_sync_the_standby_takes_over_and_converges(
    world: FaultWorld,
) -> None:
    a = connector(world, "replica-a", leader_elect=True)
    b = connector(world, "replica-b", leader_elect=True)
    ns = unique_namespace(world, "failover")
    wanted = {f"obj-{i:03d}": f"value-{i}" for i in range(OBJECTS)}
    with running(a, b):
        a.start()
        b.start()
        holder = eventually(lambda: lease_holder(world), timeout=60)
        leader, standby = (a, b) if holder.startswith("replica-a_") else (b, a)
        leader.wait_ready()
        standby.wait_ready()  # a standby is ready: it is healthy and waiting to take over
        wait_bound(world)
        create_objects(world.consumer, ns, wanted)
        eventually(lambda: len(twins(world, ns)) >= OBJECTS // 5, timeout=90)
        synced = len(twins(world, ns))
        leader.kill()
        killed_at = time.monotonic()
        assert synced < OBJECTS, "the sync finished before the leader died"
        # Until now the standby has done no work at all: it never started its controllers.
        assert "The connector is running." not in standby.log_text()

        eventually(lambda: lease_holder(world).startswith(standby.identity + "_"), timeout=60)
        took_over = time.monotonic() - killed_at
        wait_converged(world, ns, wanted, timeout=120)
        assert standby.running, standby.log_tail()
        assert "The connector is running." in standby.log_text()
    # The Lease (15 s) bounds the hand-over after a crash; a released Lease would be faster.
    print(f"the standby took over {took_over:.1f} s after the leader was killed")
    assert took_over < 45
