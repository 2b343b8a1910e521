"""The object-syncer as a Crossplane function: RunFunctionRequest in, RunFunctionResponse out."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from google.protobuf import json_format

from functions.object_syncer.fn import ObjectSyncerFunction
from functions.object_syncer.logic import desired_twin, sync
from functions.object_syncer.types import SyncRequest

NOW = "2026-11-23T12:00:00Z"
INPUT = {
    "apiVersion": "objectsyncer.fn.connect.upbound.io/v1alpha1",
    "kind": "Input",
    "consumerCluster": "consumer-a",
}
CONSUMER = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "NopResource",
    "metadata": {"name": "my-resource", "namespace": "default", "uid": "uid-1", "generation": 2},
    "spec": {"coolField": "Synchronized resource"},
}
TWIN = desired_twin(CONSUMER, consumer_cluster="consumer-a")
TWIN_OBSERVED = {
    **TWIN,
    "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Available"}]},
}
OTHERS_TWIN = {
    **TWIN,
    "metadata": {
        **TWIN["metadata"],
        "labels": {**TWIN["metadata"]["labels"], "connect.upbound.io/consumer-cluster": "b"},
    },
}
TWIN_REQUIREMENT = {
    "provider-twin": {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "matchName": "my-resource",
        "namespace": "default",
    }
}


def request(
    *, fn_input: dict[str, Any] = INPUT, consumer: Any = CONSUMER, twins: list[Any] | None = None
) -> fnv1.RunFunctionRequest:
    xr = {
        "apiVersion": "connect.example.org/v1alpha1",
        "kind": "XObjectSync",
        "metadata": {"name": "my-resource"},
        "spec": {"consumerObject": consumer},
    }
    req = fnv1.RunFunctionRequest(
        input=resource.dict_to_struct(fn_input),
        observed=fnv1.State(composite=fnv1.Resource(resource=resource.dict_to_struct(xr))),
    )
    if twins is not None:
        req.required_resources["provider-twin"].CopyFrom(
            fnv1.Resources(
                items=[fnv1.Resource(resource=resource.dict_to_struct(t)) for t in twins]
            )
        )
    return req


def api_bound(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "APIBound",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
        "observedGeneration": 2,
    }


def xr_condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": "APIBound",
        "status": f"STATUS_CONDITION_{status.upper()}",
        "reason": reason,
        "message": message,
    }


def sync_actions(*, add: bool, conflict: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"addFinalizer": add, "removeFinalizer": False, "deleteTwin": False}
    if conflict is not None:
        out["conflict"] = conflict
    return out


def fatal(message: str) -> dict[str, Any]:
    return {
        "meta": {"ttl": "60s"},
        "desired": {},
        "context": {},
        "results": [{"severity": "SEVERITY_FATAL", "message": message}],
    }


# The wording is the stage's (tested with the stage); here: that it reaches the XR.
CONFLICT = str(
    sync(
        SyncRequest(consumer=CONSUMER, provider=OTHERS_TWIN, consumer_cluster="consumer-a", now=NOW)
    ).conflict
)


@dataclasses.dataclass
class Case:
    reason: str
    req: fnv1.RunFunctionRequest
    want: dict[str, Any]


CASES = [
    Case(
        reason="Without the twin's observed state, the function asks for it and returns.",
        req=request(),
        want={
            "meta": {"ttl": "60s"},
            "desired": {},
            "context": {},
            "requirements": {"resources": TWIN_REQUIREMENT},
        },
    ),
    Case(
        reason="No twin yet: it composes the twin (not ready), labelled with its origin; Pending.",
        req=request(twins=[]),
        want={
            "meta": {"ttl": "60s"},
            "desired": {
                "composite": {
                    "resource": {
                        "status": {
                            "consumerStatus": {
                                "conditions": [
                                    api_bound(
                                        "False", "Pending", "Creating the object in the provider"
                                    )
                                ]
                            },
                            "sync": sync_actions(add=True),
                        }
                    }
                },
                "resources": {"twin": {"resource": TWIN, "ready": "READY_FALSE"}},
            },
            "context": {},
            "requirements": {"resources": TWIN_REQUIREMENT},
            "conditions": [xr_condition("False", "Pending", "Creating the object in the provider")],
        },
    ),
    Case(
        reason="A twin in sync is still composed in full, ready as its Ready says; Bound.",
        req=request(twins=[TWIN_OBSERVED]),
        want={
            "meta": {"ttl": "60s"},
            "desired": {
                "composite": {
                    "resource": {
                        "status": {
                            "consumerStatus": {
                                "conditions": [
                                    {"type": "Ready", "status": "True", "reason": "Available"},
                                    api_bound("True", "Bound", "Synced to the provider"),
                                ]
                            },
                            "sync": sync_actions(add=True),
                        }
                    }
                },
                "resources": {"twin": {"resource": TWIN, "ready": "READY_TRUE"}},
            },
            "context": {},
            "requirements": {"resources": TWIN_REQUIREMENT},
            "conditions": [xr_condition("True", "Bound", "Synced to the provider")],
        },
    ),
    Case(
        reason="A twin owned by another consumer cluster is never composed; a warning says why.",
        req=request(twins=[OTHERS_TWIN]),
        want={
            "meta": {"ttl": "60s"},
            "desired": {
                "composite": {
                    "resource": {
                        "status": {
                            "consumerStatus": {
                                "conditions": [api_bound("False", "Conflict", CONFLICT)]
                            },
                            "sync": sync_actions(add=False, conflict=CONFLICT),
                        }
                    }
                },
            },
            "context": {},
            "requirements": {"resources": TWIN_REQUIREMENT},
            "results": [{"severity": "SEVERITY_WARNING", "message": CONFLICT}],
            "conditions": [xr_condition("False", "Conflict", CONFLICT)],
        },
    ),
    Case(
        reason="A consumer object without a name is a Fatal result naming the XR field.",
        req=request(
            consumer={
                "apiVersion": "nop.example.org/v1alpha1",
                "kind": "NopResource",
                "metadata": {},
            }
        ),
        want=fatal(
            "composite.spec.consumerObject.metadata.name: is required and must be a non-empty "
            "string"
        ),
    ),
    Case(
        reason="A twin of another name is a Fatal result naming the required resource.",
        req=request(
            twins=[{**TWIN, "metadata": {**TWIN["metadata"], "name": "other"}}],
        ),
        want={
            **fatal(
                "requiredResources.provider-twin[0].metadata.name: must be the consumer's "
                "my-resource"
            ),
            "requirements": {"resources": TWIN_REQUIREMENT},
        },
    ),
    Case(
        reason="An input without consumerCluster is a Fatal result naming the input field.",
        req=request(fn_input={k: v for k, v in INPUT.items() if k != "consumerCluster"}),
        want=fatal("input.consumerCluster: is required and must be a non-empty string"),
    ),
    Case(
        reason="Another function's input is a Fatal result.",
        req=request(fn_input={**INPUT, "kind": "Other"}),
        want=fatal(
            "input: must be kind Input of apiVersion objectsyncer.fn.connect.upbound.io/v1alpha1, "
            "got kind Other of apiVersion objectsyncer.fn.connect.upbound.io/v1alpha1"
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_run_function(case: Case) -> None:
    function = ObjectSyncerFunction(clock=lambda: NOW)
    got = json_format.MessageToDict(asyncio.run(function.RunFunction(case.req, None)))
    assert got == case.want, f"-want, +got:\n-{case.want}\n+{got}"


def test_a_twin_being_deleted_is_not_composed_and_its_status_keeps_flowing() -> None:
    deleted = {
        **CONSUMER,
        "metadata": {
            **CONSUMER["metadata"],
            "deletionTimestamp": NOW,
            "finalizers": ["connect.upbound.io/finalizer"],
        },
    }
    terminating = {
        **TWIN_OBSERVED,
        "metadata": {
            **TWIN["metadata"],
            "deletionTimestamp": NOW,
            "finalizers": ["finalizer.apiextensions.crossplane.io"],
        },
    }
    function = ObjectSyncerFunction(clock=lambda: NOW)
    got = json_format.MessageToDict(
        asyncio.run(function.RunFunction(request(consumer=deleted, twins=[terminating]), None))
    )
    assert "resources" not in got["desired"]
    # No longer composed, so no watch tells Crossplane when it is gone: it is to call again.
    assert got["meta"]["ttl"] == "5s"
    status = got["desired"]["composite"]["resource"]["status"]
    assert status["consumerStatus"]["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "Available"},
        api_bound(
            "True",
            "Deleting",
            "Waiting for the provider object default/my-resource to be deleted; its finalizers: "
            "finalizer.apiextensions.crossplane.io",
        ),
    ]
    assert status["sync"] == {"addFinalizer": False, "removeFinalizer": False, "deleteTwin": False}


def test_a_deleted_object_whose_policy_is_orphan_keeps_its_twin_composed() -> None:
    # Crossplane deletes a composed resource a function stops returning: an Orphan twin must
    # stay in the desired state, carrying the policy, while the finalizer is released.
    policy = {"connect.upbound.io/deletion-policy": "Orphan"}
    deleted = {
        **CONSUMER,
        "metadata": {
            **CONSUMER["metadata"],
            "annotations": policy,
            "deletionTimestamp": NOW,
            "finalizers": ["connect.upbound.io/finalizer"],
        },
    }
    twin = desired_twin(
        {**CONSUMER, "metadata": {**CONSUMER["metadata"], "annotations": policy}},
        consumer_cluster="consumer-a",
    )
    function = ObjectSyncerFunction(clock=lambda: NOW)
    for observed in (TWIN, twin):  # before and after the twin carries the policy
        got = json_format.MessageToDict(
            asyncio.run(function.RunFunction(request(consumer=deleted, twins=[observed]), None))
        )
        composed = got["desired"]["resources"]["twin"]["resource"]
        assert composed["metadata"]["annotations"]["connect.upbound.io/deletion-policy"] == "Orphan"
        assert composed["metadata"]["labels"] == twin["metadata"]["labels"]
    assert got["desired"]["composite"]["resource"]["status"]["sync"]["removeFinalizer"] is True


def test_a_released_object_without_status_has_no_consumer_status_field() -> None:
    # An empty Struct reaches Crossplane as null, which the XR's schema refuses: the whole
    # status apply would fail, and removeFinalizer never reach the XR.
    deleted = {
        **CONSUMER,
        "metadata": {
            **CONSUMER["metadata"],
            "deletionTimestamp": NOW,
            "finalizers": ["connect.upbound.io/finalizer"],
        },
    }
    function = ObjectSyncerFunction(clock=lambda: NOW)
    got = json_format.MessageToDict(
        asyncio.run(function.RunFunction(request(consumer=deleted, twins=[]), None))
    )
    status = got["desired"]["composite"]["resource"]["status"]
    assert status == {"sync": {"addFinalizer": False, "removeFinalizer": True, "deleteTwin": False}}
    assert "resources" not in got["desired"]
