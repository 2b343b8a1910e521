"""The example function (examples/crossplane/function-nop): a ConfigMap from the XR's spec,
ready at once, in the right namespace for a claim's XR and for a namespaced XR."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from google.protobuf import json_format

ROOT = Path(__file__).resolve().parents[2]
FN = ROOT / "examples" / "crossplane" / "function-nop" / "function" / "fn.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_nop_fn", FN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fn = _load()


@dataclasses.dataclass(frozen=True)
class Case:
    reason: str
    xr: dict[str, Any]
    want_resources: dict[str, Any]
    want_fatal: str = ""
    #: The composite's connection details, base64 as protobuf's JSON form has them.
    want_details: dict[str, str] = dataclasses.field(default_factory=dict)


CLAIMED_XR = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "XNopResource",
    "metadata": {"name": "my-resource-x1", "labels": {"crossplane.io/claim-namespace": "team-a"}},
    "spec": {"coolField": "cool"},
}
NAMESPACED_XR = {
    "apiVersion": "app.example.org/v1alpha1",
    "kind": "NopApp",
    "metadata": {"name": "my-app", "namespace": "team-b"},
    "spec": {"coolField": "cooler"},
}


@pytest.mark.parametrize(
    "case",
    [
        Case(
            "a claim's XR gets a ConfigMap in the claim's namespace, ready",
            CLAIMED_XR,
            {
                "configmap": {
                    "resource": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"namespace": "team-a"},
                        "data": {"coolField": "cool"},
                    },
                    "ready": "READY_TRUE",
                }
            },
        ),
        Case(
            "a namespaced XR's ConfigMap is placed by Crossplane (no namespace of ours)",
            NAMESPACED_XR,
            {
                "configmap": {
                    "resource": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {},
                        "data": {"coolField": "cooler"},
                    },
                    "ready": "READY_TRUE",
                }
            },
        ),
        Case(
            "a claim's XR that asks for connection details returns them for Crossplane",
            {
                **CLAIMED_XR,
                "spec": {
                    "coolField": "cool",
                    "writeConnectionSecretToRef": {"name": "uid", "namespace": "crossplane-system"},
                },
            },
            {
                "configmap": {
                    "resource": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"namespace": "team-a"},
                        "data": {"coolField": "cool"},
                    },
                    "ready": "READY_TRUE",
                }
            },
            want_details={"coolField": "Y29vbA=="},
        ),
        Case(
            "a cluster-scoped XR without a claim goes to crossplane-system",
            {**CLAIMED_XR, "metadata": {"name": "lonely"}},
            {
                "configmap": {
                    "resource": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"namespace": "crossplane-system"},
                        "data": {"coolField": "cool"},
                    },
                    "ready": "READY_TRUE",
                }
            },
        ),
        Case(
            "a namespaced XR that asks for connection details composes its Secret",
            {
                **NAMESPACED_XR,
                "spec": {"coolField": "c", "writeConnectionSecretToRef": {"name": "s"}},
            },
            {
                "configmap": {
                    "resource": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {},
                        "data": {"coolField": "c"},
                    },
                    "ready": "READY_TRUE",
                },
                "connection-secret": {
                    "resource": {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "s"},
                        "type": "connection.crossplane.io/v1alpha1",
                        "data": {"coolField": "Yw=="},
                    },
                    "ready": "READY_TRUE",
                },
            },
        ),
        Case(
            "no coolField is a fatal result, not a crash",
            {**NAMESPACED_XR, "spec": {}},
            {},
            want_fatal="spec.coolField must be a string",
        ),
    ],
    ids=lambda c: c.reason,
)
def test_run_function(case: Case) -> None:
    req = fnv1.RunFunctionRequest(
        observed=fnv1.State(composite=fnv1.Resource(resource=resource.dict_to_struct(case.xr)))
    )

    rsp = asyncio.run(fn.FunctionRunner().RunFunction(req, None))

    got = json_format.MessageToDict(rsp)
    resources = (got.get("desired") or {}).get("resources") or {}
    assert resources == case.want_resources, f"-want, +got:\n{case.want_resources}\n{resources}"
    fatal = [r["message"] for r in got.get("results", []) if r["severity"] == "SEVERITY_FATAL"]
    details = ((got.get("desired") or {}).get("composite") or {}).get("connectionDetails") or {}
    assert details == case.want_details
    if case.want_fatal:
        assert len(fatal) == 1 and case.want_fatal in fatal[0]
    else:
        assert fatal == []
