"""etcd compaction makes the connector's watches resume from a version that no longer exists.

Both API servers run with ``--watch-cache=false``, so a watch is served by etcd itself and a
resourceVersion older than etcd's compaction is answered with 410 Gone — as a real cluster
answers one older than its watch cache's window. The connector is frozen (SIGSTOP) while
users and the provider's controllers keep writing, and etcd is compacted past everything it
had seen, so that its watches must be re-established from versions that are gone; then it
resumes (SIGCONT). It must relist, and converge on what changed while it was away.

The API servers restart first, while the connector is frozen, so that its watches are gone
before anything changes: an open watch would otherwise receive the changes into its
socket's buffer and deliver them on resume, sparing that informer the 410.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from connector.envtest import Cluster
from tests.e2e.harness import NOP, condition, eventually, get
from tests.faults.harness import (
    ConnectorProcess,
    FaultWorld,
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

RELIST = "The watch's resourceVersion is too old; listing again."


def etcd(cluster: Cluster, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call to etcd's v3 JSON gateway (plain HTTP on 127.0.0.1)."""
    request = urllib.request.Request(
        cluster.etcd_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as e:
        return {"http_status": e.code, **json.loads(e.read() or b"{}")}


def current_revision(cluster: Cluster) -> int:
    key = base64.b64encode(b"/registry/").decode()
    return int(etcd(cluster, "/v3/kv/range", {"key": key, "limit": 1})["header"]["revision"])


def compact(cluster: Cluster) -> int:
    """Compact etcd's history up to its current revision; return that revision."""
    revision = current_revision(cluster)
    etcd(cluster, "/v3/kv/compaction", {"revision": str(revision), "physical": True})
    # Proof that history before it is gone: reading at an older revision is refused.
    key = base64.b64encode(b"/registry/").decode()
    old = etcd(cluster, "/v3/kv/range", {"key": key, "revision": str(revision - 1)})
    assert "compacted" in json.dumps(old), old
    return revision


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    base = tmp_path_factory.mktemp("compaction")
    with fault_world(base, apiserver_args=["--watch-cache=false"]) as w:
        yield w


@pytest.mark.timeout(240)
def test_after_etcd_compaction_the_connector_relists_and_converges_on_what_it_missed(
    world: FaultWorld,
) -> None:
    c = ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / "connector.log",
    )
    ns = unique_namespace(world, "compaction")
    wanted = {f"obj-{i:02d}": f"value-{i}" for i in range(40)}
    with running(c):
        c.start().wait_ready()
        wait_bound(world)
        create_objects(world.consumer, ns, wanted)
        wait_converged(world, ns, wanted, timeout=90)
        assert c.proc is not None
        c.proc.send_signal(signal.SIGSTOP)
        try:
            # First drop its watches, so that nothing that follows reaches it through them
            # (an open stream would buffer the events in the kernel until it resumes).
            restart_apiservers(world)
            # Users change, delete and create; the provider's controllers report status and
            # someone edits a twin out of band. The connector sees none of it happen.
            changed = [f"obj-{i:02d}" for i in range(0, 10)]
            for name in changed:
                wanted[name] = "changed-while-away"
            parallel(
                lambda n: world.consumer.apply(NOP, nop(ns, n, wanted[n]), field_manager="f"),
                changed,
            )
            deleted = [f"obj-{i:02d}" for i in range(10, 15)]
            parallel(lambda n: world.consumer.delete(NOP, n, ns), deleted)
            for name in deleted:
                del wanted[name]
            new = {f"new-{i:02d}": f"new-{i}" for i in range(5)}
            create_objects(world.consumer, ns, new)
            wanted.update(new)
            ready = [f"obj-{i:02d}" for i in range(20, 30)]
            parallel(lambda n: mark_ready(world, ns, n), ready)
            drifted = world.provider.get(NOP, "obj-35", ns)
            drifted["spec"]["coolField"] = "edited in the provider"
            world.provider.update(NOP, drifted)

            revisions = [compact(cl) for cl in (world.consumer_cluster, world.provider_cluster)]
            print(f"compacted etcd at revisions {revisions}")
        finally:
            c.proc.send_signal(signal.SIGCONT)

        wait_converged(world, ns, wanted, timeout=120, edited_in_provider=["obj-35"])
        for name in ready:
            eventually(
                lambda n=name: condition(get(world.consumer, NOP, n, ns), "Ready").get("status")
                == "True",
                timeout=30,
            )
        assert all(get(world.consumer, NOP, n, ns) is None for n in deleted)
        assert c.running, c.log_tail()
    # The watches could not resume: every version they knew had been compacted away, so the
    # connector relisted, in both clusters. (A syncer's own informers may instead start
    # afresh: the connection notices the outage and its syncers are restarted.)
    long_lived = {"clusterconnections", "clusterapibindings", "provider-crds/provider-connection"}

    def relisted() -> set[str]:
        return {str(line.get("informer")) for line in log_lines(c) if line.get("event") == RELIST}

    # Each informer relists on its own schedule, independent of the objects waited for.
    eventually(lambda: long_lived <= relisted(), what=f"{long_lived} to relist", timeout=30)
    assert len(twins(world, ns)) == len(wanted)


def log_lines(c: ConnectorProcess) -> list[dict[str, Any]]:
    """The connector's JSON log lines (it logs JSON unless run with --debug)."""
    lines = []
    for text in c.log_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(text))
    return [line for line in lines if isinstance(line, dict)]


def mark_ready(world: FaultWorld, namespace: str, name: str) -> None:
    """Write ``Ready=True`` on a twin, as the provider's controller (Crossplane) would."""
    world.provider.apply_status(
        NOP,
        {
            "apiVersion": NOP.api_version,
            "kind": NOP.kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Available",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            },
        },
        field_manager="provider-controller",
    )


def restart_apiservers(world: FaultWorld) -> None:
    # Restarting drops every open watch, so the connector must start new ones from the
    # versions it last saw — which compaction has removed.
    clusters = (world.consumer_cluster, world.provider_cluster)
    for cluster in clusters:
        cluster.stop_apiserver()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(cl.start_apiserver) for cl in clusters]:
            future.result()
