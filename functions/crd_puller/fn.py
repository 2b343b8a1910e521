"""The CRD-puller as a Crossplane composition function (``function-connector-crd-puller``).

It runs on the provider, where the bindable CRDs are, and composes their consumer copies as
provider-kubernetes ``Object`` resources, which apply them to the consumer cluster through a
ProviderConfig (composing the CRDs directly would write them into the provider itself).

Mapping, one XR per connection:

- step input ``Input`` of ``crdpuller.fn.connect.upbound.io/v1alpha1``: ``connectionName``
  (required), ``pullBehavior`` (default ``Pull``), ``providerConfigName`` (the
  provider-kubernetes ProviderConfig of the consumer cluster, default ``consumer``);
- the provider CRDs: required resource ``bindable-crds`` (CRDs labelled
  ``connect.upbound.io/bindable=true``); until Crossplane has looked them up the function
  only asks for them;
- XR ``spec.consumerCRDs`` (optional): consumer CRDs already there, to detect conflicts;
- desired composed resources ``crd-<name>``: every offered CRD, in full (Crossplane deletes
  what a function stops returning, and the stage's ``apply`` lists only what changed);
- desired XR status: ``offeredAPIs``, ``withheldAPIs`` (bindable CRDs an XRD's offer leaves
  out, and why), ``conflicts``, ``connectionConditions`` (Ready and CRDsSynced; kept in the
  status because Crossplane owns the XR's Ready condition), and the ``CRDsSynced``
  condition on the XR.
"""

from __future__ import annotations

from typing import Any

from crossplane.function import response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from functions.adapters import (
    StageFunction,
    fields_renamed,
    function_input,
    observed_composite,
    report_condition,
    required_resources,
    set_composed,
    set_composite_status,
)
from functions.common import (
    BINDABLE_LABEL,
    CONDITION_READY,
    Obj,
    metadata,
    require_list,
    require_str,
)
from functions.crd_puller import logic
from functions.crd_puller.types import PullRequest

INPUT_API_VERSION = "crdpuller.fn.connect.upbound.io/v1alpha1"
INPUT_KIND = "Input"
CRDS_REQUIREMENT = "bindable-crds"
DEFAULT_PROVIDER_CONFIG = "consumer"
#: provider-kubernetes' cluster-scoped Object: a manifest applied to another cluster.
OBJECT_API_VERSION = "kubernetes.crossplane.io/v1alpha2"
OBJECT_KIND = "Object"
_FIELDS = {
    "connection_name": "input.connectionName",
    "pull_behavior": "input.pullBehavior",
    "provider_crds": f"requiredResources.{CRDS_REQUIREMENT}",
    "consumer_crds": "composite.spec.consumerCRDs",
    "previous_conditions": "composite.status.connectionConditions",
}


class CRDPullerFunction(StageFunction):
    def run(self, req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse, *, now: str) -> None:
        fn_input = function_input(req, api_version=INPUT_API_VERSION, kind=INPUT_KIND)
        connection_name = require_str(fn_input.get("connectionName"), "input.connectionName")
        pull_behavior = require_str(fn_input.get("pullBehavior", "Pull"), "input.pullBehavior")
        provider_config = require_str(
            fn_input.get("providerConfigName", DEFAULT_PROVIDER_CONFIG), "input.providerConfigName"
        )
        composite = observed_composite(req)
        spec = composite.get("spec") or {}
        consumer_crds = require_list(spec.get("consumerCRDs", []), "composite.spec.consumerCRDs")
        status = composite.get("status") or {}
        previous = require_list(
            status.get("connectionConditions", []), "composite.status.connectionConditions"
        )

        response.require_resources(
            rsp,
            CRDS_REQUIREMENT,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            match_labels={BINDABLE_LABEL: "true"},
        )
        provider_crds = required_resources(req, CRDS_REQUIREMENT)
        if provider_crds is None:
            return  # asked for the CRDs; Crossplane calls again with them

        with fields_renamed(_FIELDS):
            result = logic.pull(
                PullRequest(
                    connection_name=connection_name,
                    provider_crds=provider_crds,
                    consumer_crds=consumer_crds,
                    pull_behavior=pull_behavior,
                    previous_conditions=previous,
                    now=now,
                )
            )

        if pull_behavior == "Pull":
            offered = {api.name for api in result.offered}
            for crd in provider_crds:
                name = str(metadata(crd)["name"])
                if name in offered:
                    desired = logic.desired_consumer_crd(crd, connection_name=connection_name)
                    set_composed(rsp, f"crd-{name}", _object(desired, provider_config))
        for conflict in result.conflicts:
            response.warning(rsp, f"CRD {conflict.name}: {conflict.message}")

        set_composite_status(
            rsp,
            {
                "offeredAPIs": [api.to_status() for api in result.offered],
                "withheldAPIs": [w.to_status() for w in result.withheld],
                "conflicts": [{"name": c.name, "message": c.message} for c in result.conflicts],
                "connectionConditions": result.conditions,
            },
        )
        for condition in result.conditions:
            if condition.get("type") != CONDITION_READY:
                report_condition(rsp, condition)


def _object(manifest: Obj, provider_config: str) -> dict[str, Any]:
    """``manifest`` wrapped for provider-kubernetes, applied to the consumer cluster."""
    return {
        "apiVersion": OBJECT_API_VERSION,
        "kind": OBJECT_KIND,
        "spec": {
            "forProvider": {"manifest": manifest},
            "providerConfigRef": {"name": provider_config},
        },
    }
