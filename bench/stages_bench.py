"""Latency of one object-syncer call, in-process and over loopback gRPC.

The call is the steady state of a bound object: a ~2 KB consumer object and its in-sync
provider twin with status, so the stage compares, merges status and sets APIBound. The gRPC
figures include the codec on both sides (dataclass → proto → JSON and back) and run against
``api-connector serve object-syncer`` in its own process, as deployed. Target: p50 ≤ 1 ms.

Run: ``.venv/bin/python bench/stages_bench.py [--calls N]``.
"""

from __future__ import annotations

import argparse
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

import grpc  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from connector.stages import GrpcStages, InProcessStages
from functions.object_syncer.logic import desired_twin
from functions.object_syncer.types import SyncRequest, SyncResult
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


def percentiles(call: Callable[[], SyncResult], calls: int) -> tuple[float, float]:
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
    address = f"127.0.0.1:{_free_port()}"
    exe = Path(sys.executable).with_name("api-connector")
    proc = subprocess.Popen(
        [str(exe), "serve", "object-syncer", "--address", address, "--insecure"],
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
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()

    req = steady_state_request()
    size = len(encode_object(req.consumer))
    local = InProcessStages()
    want = local.sync(req)
    p50, p99 = percentiles(lambda: local.sync(req), args.calls)
    print(f"object-syncer, {size}-byte consumer object + twin, {args.calls} calls")
    print(f"in-process       p50 {p50:6.3f} ms   p99 {p99:6.3f} ms")
    with served_object_syncer() as address, GrpcStages(object_syncer=address) as remote:
        assert remote.sync(req) == want, "gRPC must return what the function returns"
        p50, p99 = percentiles(lambda: remote.sync(req), args.calls)
    verdict = "meets" if p50 <= 1.0 else "misses"
    print(f"loopback gRPC    p50 {p50:6.3f} ms   p99 {p99:6.3f} ms   ({verdict} p50 ≤ 1 ms)")


if __name__ == "__main__":
    main()
