"""The provider's kube-apiserver goes away (etcd keeps the data) and comes back.

The connector runs as ``api-connector run`` against a consumer and provider of this module's
own, so that stopping the provider never disturbs the session's shared clusters.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Iterator

import pytest

from connector.kube.errors import NotFoundError, UnreachableError
from connector.kube.resources import CONFIG_MAPS
from functions.common import FINALIZER
from tests.e2e.harness import NOP, condition, eventually, get
from tests.faults.harness import (
    ConnectorProcess,
    FaultWorld,
    admin_client,
    apiserver_down,
    create_objects,
    fault_world,
    nop,
    parallel,
    running,
    twins,
    unique_namespace,
    wait_bound,
    wait_converged,
)

OUTAGE_SECONDS = 20.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    with fault_world(tmp_path_factory.mktemp("provider-outage")) as w:
        yield w


@pytest.fixture(scope="module")
def connector(world: FaultWorld) -> Iterator[ConnectorProcess]:
    c = ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / "connector.log",
    )
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        yield c


@pytest.mark.timeout(120)
def test_a_restarted_apiserver_serves_the_same_data_on_the_same_address(
    world: FaultWorld,
) -> None:
    # The fault tests below rely on this: the connector's kubeconfig stays valid and every
    # object keeps its uid and resourceVersion across the restart.
    cluster = world.provider_cluster
    before = world.provider.create(
        CONFIG_MAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "survives-restart", "namespace": "default"},
            "data": {"k": "v"},
        },
    )
    server, etcd_pid = cluster.server, cluster.pids["etcd"]
    with apiserver_down(cluster):
        assert not cluster.running()
        with pytest.raises(UnreachableError):
            world.provider.get(CONFIG_MAPS, "survives-restart", "default")
        with pytest.raises(ConnectionRefusedError):
            conn = http.client.HTTPSConnection(
                "127.0.0.1", cluster.port, context=ssl.create_default_context(), timeout=2
            )
            conn.request("GET", "/readyz")
    assert cluster.running()
    assert cluster.server == server and cluster.pids["etcd"] == etcd_pid
    with admin_client(cluster.kubeconfig) as fresh:
        after = fresh.get(CONFIG_MAPS, "survives-restart", "default")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == {"k": "v"}


@pytest.mark.timeout(240)
def test_a_500_object_sync_survives_the_provider_apiserver_stopping_for_20_seconds(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "outage")
    wanted = {f"obj-{i:03d}": f"value-{i}" for i in range(450)}
    create_objects(world.consumer, ns, wanted)
    # Stop the provider once the sync is well under way, not before and not after it.
    eventually(lambda: len(twins(world, ns)) >= 50, timeout=60)
    synced_before = twins(world, ns)
    with apiserver_down(world.provider_cluster):
        stopped_at = time.monotonic()
        assert len(synced_before) < len(wanted), "the sync finished before the outage"
        # While the provider is down users keep working: new objects, changes, deletions.
        late = {f"obj-{i:03d}": f"value-{i}" for i in range(450, 500)}
        create_objects(world.consumer, ns, late)
        wanted.update(late)
        changed = [f"obj-{i:03d}" for i in range(0, 100, 2)]
        for name in changed:
            wanted[name] = "changed-during-outage"
        parallel(
            lambda n: world.consumer.apply(NOP, nop(ns, n, wanted[n]), field_manager="faults"),
            changed,
        )
        deleted = [f"obj-{i:03d}" for i in range(1, 100, 4)]
        parallel(lambda n: world.consumer.delete(NOP, n, ns), deleted)
        for name in deleted:
            del wanted[name]
        assert connector.running
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))

    took = wait_converged(world, ns, wanted, timeout=180)
    assert connector.running, connector.log_tail()
    # Twins created before the outage were updated in place, never deleted and re-created.
    after = twins(world, ns)
    for name, twin in synced_before.items():
        if name in wanted:
            assert after[name]["metadata"]["uid"] == twin["metadata"]["uid"], name
    print(f"converged {took:.1f} s after the provider came back")


@pytest.mark.timeout(120)
def test_an_object_deleted_while_the_provider_is_down_is_released_only_after_its_twin_is_gone(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "delete-down")
    wanted = {"doomed": "bye", "kept": "stays"}
    create_objects(world.consumer, ns, wanted)
    wait_converged(world, ns, wanted, timeout=60)

    with apiserver_down(world.provider_cluster):
        world.consumer.delete(NOP, "doomed", ns)
        # However long the provider stays away, the consumer object waits for its twin.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            obj = world.consumer.get(NOP, "doomed", ns)
            assert obj["metadata"].get("deletionTimestamp")
            assert FINALIZER in obj["metadata"]["finalizers"]
            time.sleep(0.2)

    def released() -> bool:
        # Read the consumer first: if its object is gone, the twin must be gone already.
        if get(world.consumer, NOP, "doomed", ns) is not None:
            return False
        with pytest.raises(NotFoundError):
            world.provider.get(NOP, "doomed", ns)
        return True

    eventually(released, timeout=60)
    del wanted["doomed"]
    wait_converged(world, ns, wanted, timeout=30)
    assert condition(world.consumer.get(NOP, "kept", ns), "APIBound")["status"] == "True"
