"""The CRD-puller as a Crossplane function: RunFunctionRequest in, RunFunctionResponse out."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from crossplane.function import resource
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from google.protobuf import json_format

from functions.crd_puller.fn import CRDPullerFunction
from functions.crd_puller.logic import desired_consumer_crd

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-23T12:00:00Z"
INPUT = {
    "apiVersion": "crdpuller.fn.connect.upbound.io/v1alpha1",
    "kind": "Input",
    "connectionName": "provider-connection",
    "providerConfigName": "consumer-cluster",
}
PROVIDER_CRD: dict[str, Any] = yaml.safe_load(
    (ROOT / "examples/walkthrough/provider/nopresources.nop.example.org.yaml").read_text()
)
CONSUMER_COPY = desired_consumer_crd(PROVIDER_CRD, connection_name="provider-connection")
FOREIGN_CRD = copy.deepcopy(PROVIDER_CRD)
FOREIGN_CRD["metadata"]["labels"] = {"team": "payments"}
CRD_REQUIREMENT = {
    "bindable-crds": {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "matchLabels": {"labels": {"connect.upbound.io/bindable": "true"}},
    }
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
READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Ready",
    "message": "Provider controlplane is available",
    "lastTransitionTime": NOW,
}


def request(
    *,
    fn_input: dict[str, Any] = INPUT,
    crds: list[Any] | None = None,
    consumer_crds: list[Any] | None = None,
    observed: dict[str, dict[str, Any]] | None = None,
) -> fnv1.RunFunctionRequest:
    xr: dict[str, Any] = {
        "apiVersion": "connect.example.org/v1alpha1",
        "kind": "XCRDPull",
        "metadata": {"name": "provider-connection"},
        "spec": {},
    }
    if consumer_crds is not None:
        xr["spec"]["consumerCRDs"] = consumer_crds
    req = fnv1.RunFunctionRequest(
        input=resource.dict_to_struct(fn_input),
        observed=fnv1.State(composite=fnv1.Resource(resource=resource.dict_to_struct(xr))),
    )
    for name, obj in (observed or {}).items():
        req.observed.resources[name].resource.CopyFrom(resource.dict_to_struct(obj))
    if crds is not None:
        req.required_resources["bindable-crds"].CopyFrom(
            fnv1.Resources(items=[fnv1.Resource(resource=resource.dict_to_struct(c)) for c in crds])
        )
    return req


def got_for(req: fnv1.RunFunctionRequest) -> dict[str, Any]:
    function = CRDPullerFunction(clock=lambda: NOW)
    got: dict[str, Any] = json_format.MessageToDict(asyncio.run(function.RunFunction(req, None)))
    return got


def fatal(message: str, **extra: Any) -> dict[str, Any]:
    return {
        "meta": {"ttl": "60s"},
        "desired": {},
        "context": {},
        "results": [{"severity": "SEVERITY_FATAL", "message": message}],
        **extra,
    }


@dataclasses.dataclass
class Case:
    reason: str
    req: fnv1.RunFunctionRequest
    want: dict[str, Any]


CASES = [
    Case(
        reason="Without the provider's CRDs, the function asks for the bindable ones and returns.",
        req=request(),
        want={
            "meta": {"ttl": "60s"},
            "desired": {},
            "context": {},
            "requirements": {"resources": CRD_REQUIREMENT},
        },
    ),
    Case(
        reason="No bindable CRD: nothing is composed, nothing is offered.",
        req=request(crds=[]),
        want={
            "meta": {"ttl": "60s"},
            "desired": {
                "composite": {
                    "resource": {
                        "status": {
                            "offeredAPIs": [],
                            "withheldAPIs": [],
                            "conflicts": [],
                            "connectionConditions": [
                                READY,
                                {
                                    "type": "CRDsSynced",
                                    "status": "True",
                                    "reason": "Synced",
                                    "message": "0 bindable CRDs installed in the consumer",
                                    "lastTransitionTime": NOW,
                                },
                            ],
                        }
                    }
                }
            },
            "context": {},
            "requirements": {"resources": CRD_REQUIREMENT},
            "conditions": [
                {
                    "type": "CRDsSynced",
                    "status": "STATUS_CONDITION_TRUE",
                    "reason": "Synced",
                    "message": "0 bindable CRDs installed in the consumer",
                }
            ],
        },
    ),
    Case(
        reason="A bad provider CRD is a Fatal result naming the required resource.",
        req=request(crds=[{"apiVersion": "apiextensions.k8s.io/v1", "kind": "Crd"}]),
        want=fatal(
            "requiredResources.bindable-crds[0].metadata: is required and must be an object",
            requirements={"resources": CRD_REQUIREMENT},
        ),
    ),
    Case(
        reason="A pollInterval that is not seconds or minutes is a Fatal result naming it.",
        req=request(fn_input={**INPUT, "pollInterval": "1h"}, crds=[]),
        want=fatal(
            "input.pollInterval: must be a number of seconds or minutes such as 30s or 2m, got '1h'"
        ),
    ),
    Case(
        reason="An input without connectionName is a Fatal result naming the input field.",
        req=request(fn_input={k: v for k, v in INPUT.items() if k != "connectionName"}),
        want=fatal("input.connectionName: is required and must be a non-empty string"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_run_function(case: Case) -> None:
    got = got_for(case.req)
    assert got == case.want, f"-want, +got:\n-{case.want}\n+{got}"


COMPOSED = "crd-nopresources.nop.example.org"


def observed_object(
    *, policies: list[str], seen: dict[str, Any] | None = None, condition: Any = None
) -> dict[str, Any]:
    """A composed Object as Crossplane reads it back: what provider-kubernetes saw."""
    status: dict[str, Any] = {}
    if seen is not None:
        status["atProvider"] = {"manifest": seen}
    if condition is not None:
        status["conditions"] = [condition]
    return {
        "apiVersion": "kubernetes.crossplane.io/v1alpha2",
        "kind": "Object",
        "metadata": {"name": "provider-connection-x7k2p"},
        "spec": {
            "forProvider": {"manifest": CONSUMER_COPY},
            "providerConfigRef": {"name": "consumer-cluster"},
            "managementPolicies": policies,
        },
        "status": status,
    }


NOT_FOUND = {
    "type": "Synced",
    "status": "False",
    "reason": "ReconcileError",
    "message": "cannot observe external resource: external resource does not exist",
}
UNREACHABLE = {**NOT_FOUND, "message": "cannot get object: connection refused"}


def composed_for(req: fnv1.RunFunctionRequest) -> dict[str, Any]:
    composed: dict[str, Any] = got_for(req)["desired"]["resources"][COMPOSED]
    return composed


def test_composes_each_offered_crd_for_the_consumer_cluster_without_status() -> None:
    got = got_for(request(crds=[{**PROVIDER_CRD, "status": {"acceptedNames": {}}}]))
    composed = got["desired"]["resources"]
    assert list(composed) == [COMPOSED]
    obj = composed[COMPOSED]["resource"]
    assert obj["apiVersion"] == "kubernetes.crossplane.io/v1alpha2"
    assert obj["spec"]["providerConfigRef"] == {"name": "consumer-cluster"}
    # Never deleted with its Object; Ready once the consumer serves the API.
    assert obj["spec"]["deletionPolicy"] == "Orphan"
    assert obj["spec"]["readiness"]["policy"] == "DeriveFromCelQuery"
    assert "Established" in obj["spec"]["readiness"]["celQuery"]
    manifest = obj["spec"]["forProvider"]["manifest"]
    assert manifest == CONSUMER_COPY
    assert "status" not in manifest
    assert manifest["metadata"]["labels"]["connect.upbound.io/connection"] == "provider-connection"
    assert got["desired"]["composite"]["resource"]["status"]["offeredAPIs"] == [OFFERED]


def test_an_object_only_looks_until_it_has_seen_the_consumer() -> None:
    first = composed_for(request(crds=[PROVIDER_CRD]))
    unreachable = composed_for(
        request(
            crds=[PROVIDER_CRD],
            observed={COMPOSED: observed_object(policies=["Observe"], condition=UNREACHABLE)},
        )
    )
    assert first["resource"]["spec"]["managementPolicies"] == ["Observe"]
    assert unreachable["resource"]["spec"]["managementPolicies"] == ["Observe"]


@pytest.mark.parametrize(
    "observed",
    [
        observed_object(policies=["Observe"], condition=NOT_FOUND),
        # provider-kubernetes keeps the last CRD it saw; Synced says it is gone.
        observed_object(policies=["Observe"], seen=FOREIGN_CRD, condition=NOT_FOUND),
        observed_object(policies=["Observe"], seen=CONSUMER_COPY),
        observed_object(policies=["Observe", "Create", "Update"]),
    ],
    ids=["saw-no-crd", "the-foreign-crd-is-gone", "saw-the-connections-crd", "manages-it-already"],
)
def test_an_object_creates_and_updates_but_never_deletes_once_the_crd_is_free_or_ours(
    observed: dict[str, Any],
) -> None:
    composed = composed_for(request(crds=[PROVIDER_CRD], observed={COMPOSED: observed}))
    assert composed["resource"]["spec"]["managementPolicies"] == ["Observe", "Create", "Update"]
    # Crossplane counts it ready only when the function says so: not before the Object is.
    assert composed["ready"] == "READY_FALSE"


def test_an_object_is_ready_once_provider_kubernetes_says_the_consumer_serves_the_api() -> None:
    observed = observed_object(
        policies=["Observe", "Create", "Update"],
        seen=CONSUMER_COPY,
        condition={"type": "Ready", "status": "True", "reason": "Available"},
    )
    composed = composed_for(request(crds=[PROVIDER_CRD], observed={COMPOSED: observed}))
    assert composed["ready"] == "READY_TRUE"


def test_a_foreign_crd_an_object_saw_is_reported_and_only_observed() -> None:
    # Even an Object that managed the CRD stops writing once it sees one that is not ours.
    observed = observed_object(policies=["Observe", "Create", "Update"], seen=FOREIGN_CRD)
    got = got_for(request(crds=[PROVIDER_CRD], observed={COMPOSED: observed}))
    composed = got["desired"]["resources"][COMPOSED]
    assert composed["resource"]["spec"]["managementPolicies"] == ["Observe"]
    assert composed["ready"] == "READY_FALSE"
    status = got["desired"]["composite"]["resource"]["status"]
    assert status["conflicts"] == [
        {
            "name": "nopresources.nop.example.org",
            "message": "CRD nopresources.nop.example.org already exists in the consumer and is "
            "not managed by a connection",
        }
    ]
    [synced] = got["conditions"]
    assert (synced["type"], synced["status"], synced["reason"]) == (
        "CRDsSynced",
        "STATUS_CONDITION_FALSE",
        "Conflict",
    )


def test_a_crd_already_in_sync_stays_composed() -> None:
    # The stage lists only CRDs that differ; Crossplane would delete one the function omits.
    got = got_for(request(crds=[PROVIDER_CRD], consumer_crds=[CONSUMER_COPY]))
    assert "crd-nopresources.nop.example.org" in got["desired"]["resources"]


def test_a_consumer_crd_owned_by_someone_else_is_only_observed_and_is_reported() -> None:
    got = got_for(request(crds=[PROVIDER_CRD], consumer_crds=[FOREIGN_CRD]))
    composed = got["desired"]["resources"][COMPOSED]
    assert composed["resource"]["spec"]["managementPolicies"] == ["Observe"]
    status = got["desired"]["composite"]["resource"]["status"]
    assert [c["name"] for c in status["conflicts"]] == ["nopresources.nop.example.org"]
    assert status["offeredAPIs"] == []
    assert got["results"][0]["severity"] == "SEVERITY_WARNING"


def test_pull_behavior_other_than_pull_composes_nothing_but_offers_the_apis() -> None:
    got = got_for(request(fn_input={**INPUT, "pullBehavior": "Manual"}, crds=[PROVIDER_CRD]))
    assert "resources" not in got["desired"]
    assert got["desired"]["composite"]["resource"]["status"]["offeredAPIs"] == [OFFERED]


def test_an_xrd_with_a_claim_composes_the_claim_crd_only_and_reports_the_withheld_xr() -> None:
    owner = {
        "apiVersion": "apiextensions.crossplane.io/v1",
        "kind": "CompositeResourceDefinition",
        "name": "xnopresources.nop.example.org",
        "uid": "1f0c3a8e-2b7d-4c0e-9a55-6d2e1f3b4c77",
        "controller": True,
    }
    claim = copy.deepcopy(PROVIDER_CRD)
    claim["metadata"]["ownerReferences"] = [owner]
    claim["spec"]["names"]["categories"] = ["claim"]
    xr = copy.deepcopy(PROVIDER_CRD)
    xr["metadata"].update(name="xnopresources.nop.example.org", ownerReferences=[owner])
    xr["spec"]["names"].update(
        kind="XNopResource",
        plural="xnopresources",
        singular="xnopresource",
        listKind="XNopResourceList",
    )
    xr["spec"].update(scope="Cluster")
    xr["spec"]["names"]["categories"] = ["composite"]

    got = got_for(request(crds=[xr, claim]))

    assert list(got["desired"]["resources"]) == ["crd-nopresources.nop.example.org"]
    status = got["desired"]["composite"]["resource"]["status"]
    assert [api["name"] for api in status["offeredAPIs"]] == ["nopresources.nop.example.org"]
    assert [w["name"] for w in status["withheldAPIs"]] == ["xnopresources.nop.example.org"]
    assert "connect.upbound.io/offer=both" in status["withheldAPIs"][0]["message"]


def test_poll_interval_is_the_responses_ttl() -> None:
    # Crossplane runs the function again after the TTL: how soon a provider CRD change shows.
    got = got_for(request(fn_input={**INPUT, "pollInterval": "10s"}, crds=[PROVIDER_CRD]))
    assert got["meta"] == {"ttl": "10s"}
    got = got_for(request(fn_input={**INPUT, "pollInterval": "2m"}, crds=[PROVIDER_CRD]))
    assert got["meta"] == {"ttl": "120s"}
