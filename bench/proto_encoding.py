"""How should a Kubernetes object travel in the stages' gRPC messages?

Measures encode + decode of a ~2 KB object (dict → wire bytes → dict) two ways:

* JSON bytes: ``json.dumps(obj).encode()`` into a ``bytes`` field, ``json.loads`` back;
* ``google.protobuf.Struct``: ``json_format.ParseDict`` into a Struct, serialized, parsed
  and turned back into a dict with ``json_format.MessageToDict``.

Run: ``.venv/bin/python bench/proto_encoding.py``. The decision and the figures are recorded
atop ``proto/apiconnector/stages/v1alpha1/stages.proto``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format, struct_pb2

ROUNDS = 5000


def sample_object() -> dict[str, Any]:
    """A namespaced custom resource of about 2 KB, shaped like a bound object with status."""
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
                "connect.upbound.io/applied-hash": "4f2a9c0d1e3b5a67",
                "example.org/description": "A resource synced by the API connector. " * 14,
            },
            "finalizers": ["connect.upbound.io/finalizer"],
        },
        "spec": {
            "coolField": "Synchronized resource",
            "compositeDeletePolicy": "Foreground",
            "replicas": 3,
            "enabled": True,
            "ratio": 0.75,
            "tags": [f"tag-{i}" for i in range(10)],
            "nested": {"level1": {"level2": {"values": list(range(20))}}},
        },
        "status": {
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": "Available",
                    "message": "The resource is available and being reconciled.",
                    "lastTransitionTime": "2026-11-23T21:00:00Z",
                }
                for t in ("Ready", "Synced", "APIBound")
            ]
        },
    }


def via_json(obj: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(obj, separators=(",", ":")).encode()
    decoded: dict[str, Any] = json.loads(data)
    return decoded


def via_struct(obj: dict[str, Any]) -> dict[str, Any]:
    data = json_format.ParseDict(obj, struct_pb2.Struct()).SerializeToString()
    parsed = struct_pb2.Struct()
    parsed.ParseFromString(data)
    decoded: dict[str, Any] = json_format.MessageToDict(parsed)
    return decoded


def measure(roundtrip: Callable[[dict[str, Any]], dict[str, Any]], obj: dict[str, Any]) -> float:
    """Median microseconds per encode + decode."""
    for _ in range(200):  # warm up
        roundtrip(obj)
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        roundtrip(obj)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    obj = sample_object()
    json_size = len(json.dumps(obj, separators=(",", ":")).encode())
    struct_size = len(json_format.ParseDict(obj, struct_pb2.Struct()).SerializeToString())
    json_us = measure(via_json, obj)
    struct_us = measure(via_struct, obj)
    # Struct has a single number type (double): integers come back as floats, which ``==``
    # does not notice but JSON (and ``isinstance(x, int)``) does.
    lossless = json.dumps(via_struct(obj)) == json.dumps(obj)
    print(f"object: {json_size} bytes as JSON, {struct_size} bytes as Struct")
    print(f"JSON bytes : {json_us:8.1f} µs per encode+decode (median of {ROUNDS})")
    print(f"Struct     : {struct_us:8.1f} µs per encode+decode (median of {ROUNDS})")
    print(f"Struct is {struct_us / json_us:.1f}x slower; Struct round-trip lossless: {lossless}")


if __name__ == "__main__":
    main()
