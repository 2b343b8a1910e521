"""Latency of one call of each stage, in-process and over loopback gRPC.

The object-syncer call is the steady state of a bound object: a ~2 KB consumer object and its
in-sync provider twin with status, so the stage compares, merges status and sets APIBound
(target: p50 ≤ 1 ms over gRPC). The CRD-puller call selects the bindable CRDs of a provider
offering ten CRDs (five bindable, shaped like the walkthrough's) and composes them for the
consumer; the binder calls bind a ClusterAPIBinding to an offered group and compute one
consumer's provider-side access. The gRPC figures include the codec on both sides
(dataclass → proto → JSON and back) and run against ``api-connector serve <stage>`` in its
own process, as deployed; the in-process call is each stage's floor.

Run: ``.venv/bin/python bench/stages_bench.py [--calls N] [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector.stages import GrpcStages, InProcessStages
from functions.binder.types import AccessRequest, BindRequest, BoundResource
from functions.crd_puller.types import PullRequest
from functions.object_syncer.logic import desired_twin
from functions.object_syncer.types import SyncRequest
from functions.proto.codec import encode_object

NOW = "2026-11-23T12:00:00Z"


def consumer_object() -> dict[str, Any]:
    return {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {
            "name": "my-resource",
            "namespace": "default",
            "uid": "0b5c3a52-5ad4-4a3f-8a1e-6f8f3f1c2b7d",
            "resourceVersion": "123456",
            "generation": 3,
            "labels": {f"team.example.org/label-{i}": f"value-{i}" for i in range(8)},
            "annotations": {
                "example.org/description": "A resource synced by the API connector. " * 28,
            },
            "finalizers": ["connect.upbound.io/finalizer"],
        },
        "spec": {
            "coolField": "Synchronized resource",
            "compositeDeletePolicy": "Foreground",
            "replicas": 3,
            "tags": [f"tag-{i}" for i in range(10)],
            "nested": {"level1": {"level2": {"values": list(range(20))}}},
        },
    }


def steady_state_request() -> SyncRequest:
    consumer = consumer_object()
    twin = desired_twin(consumer, consumer_cluster="consumer-a")
    twin["status"] = {
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": "Available",
                "message": "The resource is available and being reconciled.",
                "lastTransitionTime": NOW,
            }
            for t in ("Ready", "Synced")
        ]
    }
    return SyncRequest(consumer=consumer, provider=twin, consumer_cluster="consumer-a", now=NOW)


AnyStages = GrpcStages | InProcessStages
REPO = Path(__file__).resolve().parents[1]
NOP_CRD = REPO / "examples" / "walkthrough" / "provider" / "nopresources.nop.example.org.yaml"


def provider_crds(count: int = 10, bindable: int = 5) -> list[dict[str, Any]]:
    """``count`` CRDs shaped like the walkthrough's, the first ``bindable`` of them bindable."""
    base = yaml.safe_load(NOP_CRD.read_text())
    crds = []
    for i in range(count):
        crd = copy.deepcopy(base)
        group = f"g{i}.example.org"
        crd["metadata"] = {
            "name": f"nopresources.{group}",
            "uid": f"00000000-0000-0000-0000-{i:012d}",
            "resourceVersion": str(1000 + i),
            "labels": {"connect.upbound.io/bindable": "true"} if i < bindable else {},
        }
        crd["spec"]["group"] = group
        crds.append(crd)
    return crds


def pull_request() -> PullRequest:
    return PullRequest(
        connection_name="provider-connection",
        provider_crds=provider_crds(),
        consumer_crds=[],
        now=NOW,
    )


NOP_OFFERED = {
    "name": "nopresources.nop.example.org",
    "group": "nop.example.org",
    "kind": "NopResource",
    "plural": "nopresources",
    "scope": "Namespaced",
    "versions": ["v1alpha1"],
    "storageVersion": "v1alpha1",
}


def bind_request() -> BindRequest:
    connection = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterConnection",
        "metadata": {"name": "provider-connection"},
        "spec": {"secretRef": {"kind": "KubeConfig", "name": "provider-kubeconfig"}},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "Provider controlplane is available",
                    "lastTransitionTime": NOW,
                }
            ],
            "offeredAPIs": [NOP_OFFERED],
        },
    }
    binding = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterAPIBinding",
        "metadata": {"name": "nop.example.org", "generation": 1},
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": "provider-connection"}},
    }
    return BindRequest(binding=binding, connection=connection, now=NOW)


def access_request() -> AccessRequest:
    resource = BoundResource(
        crd_name="nopresources.nop.example.org",
        group="nop.example.org",
        kind="NopResource",
        plural="nopresources",
        scope="Namespaced",
        version="v1alpha1",
    )
    return AccessRequest(consumer_name="consumer-a", resources=[resource])


def percentiles(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    for _ in range(min(200, calls)):  # warm up: connections, caches
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] / 1e6, cuts[98] / 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def served_object_syncer() -> Iterator[str]:
    """``api-connector serve object-syncer`` on a free loopback port, until the block ends."""
    with served_stage("object-syncer") as address:
        yield address


@contextmanager
def served_stage(stage: str) -> Iterator[str]:
    """``api-connector serve <stage>`` on a free loopback port, until the block ends."""
    address = f"127.0.0.1:{_free_port()}"
    exe = Path(sys.executable).with_name("api-connector")
    proc = subprocess.Popen(
        [str(exe), "serve", stage, "--address", address, "--insecure"],
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=None, help="calls per figure")
    parser.add_argument("--quick", action="store_true", help="1,000 calls instead of 5,000")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    calls = args.calls or (1000 if args.quick else 5000)

    req = steady_state_request()
    size = len(encode_object(req.consumer))
    local = InProcessStages()
    pull_req, bind_req, access_req = pull_request(), bind_request(), access_request()

    def sync(st: AnyStages) -> object:
        return st.sync(req)

    def pull(st: AnyStages) -> object:
        return st.pull(pull_req)

    def bind(st: AnyStages) -> object:
        return st.bind(bind_req)

    def access(st: AnyStages) -> object:
        return st.provider_access(access_req)

    cases = [
        ("object-syncer", "Sync", sync),
        ("crd-puller", "Pull", pull),
        ("binder", "Bind", bind),
        ("binder", "ProviderAccess", access),
    ]
    print(f"each stage, {calls} calls per figure (object-syncer: {size}-byte consumer object)")
    print(f"{'stage/method':<28}{'in-process p50':>16}{'p99':>10}{'gRPC p50':>12}{'p99':>10}")
    figures: list[dict[str, Any]] = []
    for stage, method, call in cases:
        in_p50, in_p99 = percentiles(functools.partial(call, local), calls)
        with served_stage(stage) as address:
            remote = GrpcStages(
                crd_puller=address if stage == "crd-puller" else None,
                binder=address if stage == "binder" else None,
                object_syncer=address if stage == "object-syncer" else None,
            )
            with remote:
                assert call(remote) == call(local), "gRPC must return what the function returns"
                rpc_p50, rpc_p99 = percentiles(functools.partial(call, remote), calls)
        name = f"{stage}/{method}"
        print(f"{name:<28}{in_p50:13.3f} ms{in_p99:7.3f} ms{rpc_p50:9.3f} ms{rpc_p99:7.3f} ms")
        target = stage == "object-syncer"
        figures.append(
            {
                "name": f"{name} gRPC p50",
                "unit": "ms",
                "target": "<= 1 ms" if target else "-",
                "measured": rpc_p50,
                "floor": in_p50,
                "ratio": rpc_p50 / in_p50 if in_p50 else None,
                "passed": (rpc_p50 <= 1.0) if target else None,
                "note": "",
            }
        )
        figures.append(
            {
                "name": f"{name} gRPC p99",
                "unit": "ms",
                "target": "-",
                "measured": rpc_p99,
                "floor": in_p99,
                "ratio": rpc_p99 / in_p99 if in_p99 else None,
                "passed": None,
                "note": "",
            }
        )
    verdict = "meets" if figures[0]["passed"] else "misses"
    print(f"object-syncer over gRPC {verdict} p50 <= 1 ms")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"bench": "stages", "quick": args.quick, "figures": figures, "details": {}},
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
