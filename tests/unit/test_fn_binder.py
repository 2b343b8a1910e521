"""The binder as a Crossplane function: RunFunctionRequest in, RunFunctionResponse out."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from google.protobuf import json_format

from functions.binder.fn import BinderFunction
from functions.binder.logic import bind
from functions.binder.types import BindRequest

NOW = "2026-11-23T12:00:00Z"
INPUT = {
    "apiVersion": "binder.fn.connect.upbound.io/v1alpha1",
    "kind": "Input",
    "consumerName": "consumer-a",
}
OFFERED = {
    "name": "nopresources.nop.example.org",
    "group": "nop.example.org",
    "kind": "NopResource",
    "plural": "nopresources",
    "scope": "Namespaced",
    "versions": ["v1alpha1"],
    "storageVersion": "v1alpha1",
}
CONNECTION = {
    "apiVersion": "connect.upbound.io/v1alpha1",
    "kind": "ClusterConnection",
    "metadata": {"name": "provider-connection"},
    "status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
        "offeredAPIs": [OFFERED],
    },
}
BINDING = {
    "apiVersion": "connect.upbound.io/v1alpha1",
    "kind": "ClusterAPIBinding",
    "metadata": {"name": "nop.example.org"},
    "spec": {"connectionRef": {"kind": "ClusterConnection", "name": "provider-connection"}},
}


def request(
    *,
    fn_input: dict[str, Any] = INPUT,
    binding: Any = BINDING,
    connection: Any = CONNECTION,
    observed: tuple[str, ...] = (),
) -> fnv1.RunFunctionRequest:
    spec: dict[str, Any] = {"binding": binding}
    if connection is not None:
        spec["connection"] = connection
    xr = {
        "apiVersion": "connect.example.org/v1alpha1",
        "kind": "XConsumerAccess",
        "metadata": {"name": "consumer-a-nop"},
        "spec": spec,
    }
    req = fnv1.RunFunctionRequest(
        input=resource.dict_to_struct(fn_input),
        observed=fnv1.State(composite=fnv1.Resource(resource=resource.dict_to_struct(xr))),
    )
    for name in observed:  # composed resources Crossplane has applied
        req.observed.resources[name].resource.CopyFrom(resource.dict_to_struct({"kind": name}))
    return req


def got_for(req: fnv1.RunFunctionRequest) -> dict[str, Any]:
    function = BinderFunction(clock=lambda: NOW)
    got: dict[str, Any] = json_format.MessageToDict(asyncio.run(function.RunFunction(req, None)))
    return got


def fatal(message: str) -> dict[str, Any]:
    return {
        "meta": {"ttl": "60s"},
        "desired": {},
        "context": {},
        "results": [{"severity": "SEVERITY_FATAL", "message": message}],
    }


def not_bound(
    reason: str, *, binding: Any = BINDING, connection: Any = CONNECTION
) -> dict[str, Any]:
    # The wording is the stage's (tested with the stage); here: that it reaches the XR.
    conditions = bind(BindRequest(binding=binding, connection=connection, now=NOW)).conditions
    message = conditions[0]["message"]
    return {
        "meta": {"ttl": "60s"},
        "desired": {
            "composite": {
                "resource": {
                    "status": {
                        "bindingConditions": [
                            {
                                "type": "Ready",
                                "status": "False",
                                "reason": reason,
                                "message": message,
                                "lastTransitionTime": NOW,
                            }
                        ],
                        "boundResources": [],
                        "includeClusterScoped": True,
                    }
                }
            }
        },
        "context": {},
        "conditions": [
            {
                "type": "Bound",
                "status": "STATUS_CONDITION_FALSE",
                "reason": reason,
                "message": message,
            }
        ],
    }


@dataclasses.dataclass
class Case:
    reason: str
    req: fnv1.RunFunctionRequest
    want: dict[str, Any]


CASES = [
    Case(
        reason="Without its connection a binding binds nothing, and nothing is composed.",
        req=request(connection=None),
        want=not_bound("ConnectionNotFound", connection=None),
    ),
    Case(
        reason="A group that is not offered binds nothing, and nothing is composed.",
        req=request(binding={**BINDING, "metadata": {"name": "other.example.org"}}),
        want=not_bound(
            "NotOffered", binding={**BINDING, "metadata": {"name": "other.example.org"}}
        ),
    ),
    Case(
        reason="A binding of another kind is a Fatal result naming the XR field.",
        req=request(binding={**BINDING, "kind": "Binding"}),
        want=fatal(
            "composite.spec.binding.kind: must be ClusterAPIBinding or APIBinding of "
            "connect.upbound.io, got Binding of connect.upbound.io/v1alpha1"
        ),
    ),
    Case(
        reason="An XR without a binding is a Fatal result naming the XR field.",
        req=request(binding=None),
        want=fatal("composite.spec.binding: is required and must be an object"),
    ),
    Case(
        reason="An input without consumerName is a Fatal result naming the input field.",
        req=request(fn_input={k: v for k, v in INPUT.items() if k != "consumerName"}),
        want=fatal("input.consumerName: is required and must be a non-empty string"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_run_function(case: Case) -> None:
    got = got_for(case.req)
    assert got == case.want, f"-want, +got:\n-{case.want}\n+{got}"


def test_the_namespaced_access_waits_for_the_namespace_crossplane_creates() -> None:
    # Crossplane applies in no order and stops at the first failure; a Secret applied before
    # its namespace exists would fail the whole pass.
    got = got_for(request())
    kinds = sorted(r["resource"]["kind"] for r in got["desired"]["resources"].values())
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Namespace"]
    assert got["desired"]["composite"]["ready"] == "READY_FALSE"


def test_a_bound_binding_composes_least_privilege_access_for_the_consumer() -> None:
    got = got_for(request(observed=("namespace-connector-consumer-a",)))
    assert "ready" not in got["desired"]["composite"]
    composed = {
        (r["resource"]["kind"], r["resource"]["metadata"]["name"])
        for r in got["desired"]["resources"].values()
    }
    role = "api-connector:consumer:consumer-a"
    assert composed == {
        ("Namespace", "connector-consumer-a"),
        ("ServiceAccount", "consumer"),
        ("Secret", "consumer-token"),
        ("ClusterRole", role),
        ("ClusterRoleBinding", role),
    }
    cluster_role = got["desired"]["resources"][f"clusterrole-{role}"]["resource"]
    for rule in cluster_role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    assert {
        "apiGroups": ["nop.example.org"],
        "resources": ["nopresources"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    } in cluster_role["rules"]
    status = got["desired"]["composite"]["resource"]["status"]
    assert status["access"] == {
        "namespace": "connector-consumer-a",
        "serviceAccount": "consumer",
        "tokenSecret": "consumer-token",
    }
    assert [r["name"] for r in status["boundResources"]] == ["nopresources.nop.example.org"]
    assert got["conditions"][0]["type"] == "Bound"
    assert got["conditions"][0]["status"] == "STATUS_CONDITION_TRUE"


def test_the_isolated_placement_composes_its_admission_policy_and_objects_role() -> None:
    got = got_for(request(fn_input={**INPUT, "placement": "Isolated"}))
    composed = {
        (r["resource"]["kind"], r["resource"]["metadata"]["name"])
        for r in got["desired"]["resources"].values()
    }
    assert ("ClusterRole", "api-connector:consumer-objects:consumer-a") in composed
    assert (
        "ValidatingAdmissionPolicy",
        "api-connector.consumer-placement.consumer-a",
    ) in composed
    role = got["desired"]["resources"]["clusterrole-api-connector:consumer:consumer-a"]
    # Cluster-wide, the identity reaches no object of the namespaced bound API.
    assert all("nopresources" not in r["resources"] for r in role["resource"]["rules"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "placement",
            "isolated",
            "input.placement: must be one of Default, Isolated, got isolated",
        ),
        ("connectionSecrets", "yes", "input.connectionSecrets: must be true or false"),
    ],
)
def test_a_bad_placement_input_is_a_fatal_result(field: str, value: str, message: str) -> None:
    got = got_for(request(fn_input={**INPUT, field: value}))
    assert got["results"][0]["severity"] == "SEVERITY_FATAL"
    assert got["results"][0]["message"] == message
