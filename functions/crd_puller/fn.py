"""The CRD-puller as a Crossplane composition function (``function-connector-crd-puller``).

It runs on the provider, where the bindable CRDs are, and composes their consumer copies as
provider-kubernetes ``Object`` resources, which apply them to the consumer cluster through a
ProviderConfig (composing the CRDs directly would write them into the provider itself).

Mapping, one XR per connection:

- step input ``Input`` of ``crdpuller.fn.connect.upbound.io/v1alpha1``: ``connectionName``
  (required), ``pullBehavior`` (default ``Pull``), ``providerConfigName`` (the
  provider-kubernetes ProviderConfig of the consumer cluster, default ``consumer``),
  ``pollInterval`` (the response's TTL, default ``60s``: Crossplane watches the composed
  Objects but not the provider's CRDs, so this is how soon a changed provider CRD is seen);
- the provider CRDs: required resource ``bindable-crds`` (CRDs labelled
  ``connect.upbound.io/bindable=true``); until Crossplane has looked them up the function
  only asks for them;
- the consumer CRDs: what each composed ``Object`` observed in the consumer
  (``status.atProvider.manifest``), and XR ``spec.consumerCRDs`` (optional, for
  ``crossplane render``, where nothing is observed);
- desired composed resources ``crd-<name>``: every offered CRD, in full (Crossplane deletes
  what a function stops returning, and the stage's ``apply`` lists only what changed), and
  every conflicting one;
- look before writing: a consumer CRD of the same name that the connection does not own is
  never overwritten, so an ``Object`` starts observe-only (``managementPolicies:
  [Observe]``) and manages the CRD (``Observe, Create, Update``) only once it has seen that
  there is none, or that it is the connection's; a conflicting one stays observed, reported,
  and unready. Never ``Delete``, and ``deletionPolicy: Orphan``: a consumer CRD stays when
  its Object goes (objects of the API may exist);
- readiness: an ``Object`` is Ready once the consumer's CRD is ``Established``
  (provider-kubernetes' ``DeriveFromCelQuery``); the function marks each composed Object
  ready when it observed it so (Crossplane does not read composed resources' conditions
  itself), so the XR is Ready once every offered API is served in the consumer;
- desired XR status: ``offeredAPIs``, ``withheldAPIs`` (bindable CRDs an XRD's offer leaves
  out, and why), ``conflicts``, ``connectionConditions`` (Ready and CRDsSynced; kept in the
  status because Crossplane owns the XR's Ready condition), and the ``CRDsSynced``
  condition on the XR.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from crossplane.function import response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from functions.adapters import (
    StageFunction,
    composed_ready,
    fields_renamed,
    function_input,
    observed_composed,
    observed_composite,
    report_condition,
    required_resources,
    set_composed,
    set_composite_status,
)
from functions.common import (
    BINDABLE_LABEL,
    CONDITION_READY,
    InvalidInputError,
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
#: The composed resource of a CRD: ``crd-<name>``.
COMPOSED_PREFIX = "crd-"
#: Management policies: look only, or create and update; never delete.
OBSERVE = ("Observe",)
MANAGE = ("Observe", "Create", "Update")
#: Ready once the consumer serves the API.
READINESS = {
    "policy": "DeriveFromCelQuery",
    "celQuery": "object.status.conditions.exists(c, c.type == 'Established' && c.status == 'True')",
}
DEFAULT_POLL_INTERVAL = "60s"
_DURATION = re.compile(r"^([1-9][0-9]*)(s|m)$")
#: What an observe-only Object's Synced condition says when its object does not exist
#: (crossplane-runtime's managed reconciler, which provider-kubernetes runs).
NOT_FOUND_MESSAGE = "external resource does not exist"
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
        poll = require_str(
            fn_input.get("pollInterval", DEFAULT_POLL_INTERVAL), "input.pollInterval"
        )
        rsp.meta.ttl.FromTimedelta(_duration(poll, "input.pollInterval"))
        composite = observed_composite(req)
        spec = composite.get("spec") or {}
        consumer_crds = require_list(spec.get("consumerCRDs", []), "composite.spec.consumerCRDs")
        objects = {
            name.removeprefix(COMPOSED_PREFIX): obj
            for name, obj in observed_composed(req).items()
            if name.startswith(COMPOSED_PREFIX)
        }
        seen = {name: crd for name, obj in objects.items() if (crd := _seen_crd(obj)) is not None}
        # What the Objects saw wins over what the XR says: it is the consumer as it is.
        consumer_crds = [
            *(c for c in consumer_crds if not (isinstance(c, dict) and _name_of(c) in seen)),
            *seen.values(),
        ]
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
            conflicting = {c.name for c in result.conflicts}
            for crd in provider_crds:
                name = str(metadata(crd)["name"])
                if name not in offered and name not in conflicting:
                    continue
                desired = logic.desired_consumer_crd(crd, connection_name=connection_name)
                if name in conflicting:
                    # Kept observed, so that the conflict stays seen (and ends when the
                    # foreign CRD goes); unready, so that the XR says which API is missing.
                    obj = _object(desired, provider_config, OBSERVE)
                    set_composed(rsp, COMPOSED_PREFIX + name, obj, ready=False)
                    continue
                observed = objects.get(name)
                policies = MANAGE if _may_manage(observed, name in seen) else OBSERVE
                obj = _object(desired, provider_config, policies)
                # Ready when provider-kubernetes says the consumer serves the API.
                ready = policies == MANAGE and composed_ready(observed)
                set_composed(rsp, COMPOSED_PREFIX + name, obj, ready=ready)
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


def _object(manifest: Obj, provider_config: str, policies: tuple[str, ...]) -> dict[str, Any]:
    """``manifest`` wrapped for provider-kubernetes, for the consumer cluster."""
    return {
        "apiVersion": OBJECT_API_VERSION,
        "kind": OBJECT_KIND,
        "spec": {
            "forProvider": {"manifest": manifest},
            "providerConfigRef": {"name": provider_config},
            "managementPolicies": list(policies),
            "deletionPolicy": "Orphan",
            "readiness": dict(READINESS),
        },
    }


def _duration(value: str, field: str) -> datetime.timedelta:
    match = _DURATION.match(value)
    if match is None:
        raise InvalidInputError(
            field, f"must be a number of seconds or minutes such as 30s or 2m, got {value!r}"
        )
    amount, unit = int(match.group(1)), match.group(2)
    return datetime.timedelta(seconds=amount if unit == "s" else amount * 60)


def _name_of(obj: Obj) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name") or "") if isinstance(meta, dict) else ""


def _seen_crd(obj: Obj) -> Obj | None:
    """The consumer CRD an observed Object saw (``status.atProvider.manifest``), if any.
    provider-kubernetes keeps the last one it saw after the CRD is gone; its Synced
    condition then says so."""
    if _saw_none(obj):
        return None
    at_provider = (obj.get("status") or {}).get("atProvider") or {}
    manifest = at_provider.get("manifest") if isinstance(at_provider, dict) else None
    if isinstance(manifest, dict) and _name_of(manifest):
        return manifest
    return None


def _may_manage(obj: Obj | None, exists: bool) -> bool:
    """Whether the Object of an offered (not conflicting) CRD may create and update it: it
    saw the connection's own CRD (``exists``), manages it already, or saw that there is
    none. Until one of those, it only looks."""
    if obj is None:
        return False
    if exists:
        return True
    policies = (obj.get("spec") or {}).get("managementPolicies") or []
    if "Create" in policies or "*" in policies:
        return True
    return _saw_none(obj)


def _saw_none(obj: Obj) -> bool:
    """Whether an observe-only Object's last look found no object in the consumer."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "Synced"
        and c.get("status") == "False"
        and NOT_FOUND_MESSAGE in str(c.get("message") or "")
        for c in conditions
        if isinstance(c, dict)
    )
