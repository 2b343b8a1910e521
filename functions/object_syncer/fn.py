"""The object-syncer as a Crossplane composition function (``function-connector-object-syncer``).

Mapping, one XR per consumer object:

- step input ``Input`` of ``objectsyncer.fn.connect.upbound.io/v1alpha1``:
  ``consumerCluster`` (required), the consumer cluster's identity; ``placement``
  (optional, ``Default`` or ``Isolated``), where twins are placed (the twin is looked up
  in the namespace the placement maps the consumer object's to);
- XR ``spec.consumerObject``: the consumer object as observed;
- the provider twin: the required resource ``provider-twin`` (same apiVersion, kind,
  namespace and name); until Crossplane has looked it up the function only asks for it;
- desired composed resource ``twin``: the provider object, always in full, because
  Crossplane deletes a composed resource that a function stops returning. It is left out
  when the consumer object is being deleted (unless its deletion policy is Orphan: the twin
  stays composed, carrying the policy), or when the name is taken by someone else (conflict).
  It is marked ready when the observed twin says ``Ready=True``. While a deleted consumer
  object's twin is still there, the response asks to be called again within
  ``DELETION_RECHECK_SECONDS`` (the twin is no longer composed, so nothing else would);
- desired XR status: ``consumerStatus`` (the status to write back to the consumer, with
  ``APIBound``) and ``sync`` (finalizer and delete actions, conflict); the ``APIBound``
  condition is also reported on the XR.
"""

from __future__ import annotations

from typing import Any

from crossplane.function import response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from functions.adapters import (
    StageFunction,
    composed_ready,
    fields_renamed,
    function_input,
    observed_composite,
    report_condition,
    required_resources,
    set_composed,
    set_composite_status,
)
from functions.common import (
    CONDITION_API_BOUND,
    find_condition,
    metadata,
    require_dict,
    require_object,
    require_str,
)
from functions.common.placement import check_placement, provider_namespace
from functions.object_syncer import logic
from functions.object_syncer.types import SyncRequest

INPUT_API_VERSION = "objectsyncer.fn.connect.upbound.io/v1alpha1"
INPUT_KIND = "Input"
TWIN_REQUIREMENT = "provider-twin"
TWIN_RESOURCE = "twin"
#: How soon Crossplane calls again while a deleted consumer object's twin is going.
DELETION_RECHECK_SECONDS = 5
_FIELDS = {
    "consumer": "composite.spec.consumerObject",
    "provider": f"requiredResources.{TWIN_REQUIREMENT}[0]",
    "consumer_cluster": "input.consumerCluster",
    "placement": "input.placement",
}


class ObjectSyncerFunction(StageFunction):
    def run(self, req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse, *, now: str) -> None:
        fn_input = function_input(req, api_version=INPUT_API_VERSION, kind=INPUT_KIND)
        consumer_cluster = require_str(fn_input.get("consumerCluster"), "input.consumerCluster")
        placement = check_placement(fn_input.get("placement"), "input.placement")
        spec = require_dict(observed_composite(req).get("spec"), "composite.spec")
        # Checked before asking for the twin, which is looked up by its name.
        consumer = require_object(spec.get("consumerObject"), "composite.spec.consumerObject")
        meta = metadata(consumer)

        # Declared on every call: Crossplane stops asking once the requirements are stable.
        response.require_resources(
            rsp,
            TWIN_REQUIREMENT,
            consumer["apiVersion"],
            consumer["kind"],
            match_name=meta["name"],
            namespace=(
                provider_namespace(consumer_cluster, meta["namespace"], placement)
                if meta.get("namespace")
                else None
            ),
        )
        twins = required_resources(req, TWIN_REQUIREMENT)
        if twins is None:
            return  # asked for the twin; Crossplane calls again with it
        with fields_renamed(_FIELDS):
            result = logic.sync(
                SyncRequest(
                    consumer=consumer,
                    provider=twins[0] if twins else None,
                    consumer_cluster=consumer_cluster,
                    now=now,
                    placement=placement,
                )
            )

        # A deleted consumer object or a conflict: no desired twin (Crossplane deletes a twin
        # it composed; a conflicting one it never composed is left alone). A deleted object
        # whose policy is Orphan keeps its twin composed: leaving it out would make Crossplane
        # delete it.
        deleting = bool(meta.get("deletionTimestamp"))
        orphan = logic.orphaned(consumer)
        if result.conflict is None and (not deleting or orphan):
            # ``provider_apply`` is None when the twin is already in sync; Crossplane still
            # needs the full desired twin, or it would delete it.
            twin = result.provider_apply or logic.desired_twin(
                consumer, consumer_cluster=consumer_cluster, placement=placement
            )
            # Crossplane (v2.2) counts a composed resource ready only when the function says
            # so; it does not read the resource's conditions. The twin is ready when the
            # provider's controller says it is.
            set_composed(
                rsp, TWIN_RESOURCE, twin, ready=composed_ready(twins[0] if twins else None)
            )
        if result.conflict is not None:
            response.warning(rsp, result.conflict)
        if deleting and twins and not orphan:
            # Waiting for the twin to go: it is no longer composed, so no watch tells Crossplane
            # when it is gone. Ask to be called again soon, to release the finalizer then.
            rsp.meta.ttl.FromSeconds(DELETION_RECHECK_SECONDS)

        status = result.consumer_status
        if status is None:  # unchanged: the consumer's current status is the desired one
            current = consumer.get("status")
            status = current if isinstance(current, dict) else {}
        actions: dict[str, Any] = {
            "addFinalizer": result.add_finalizer,
            "removeFinalizer": result.remove_finalizer,
            "deleteTwin": result.provider_delete,
        }
        if result.conflict is not None:
            actions["conflict"] = result.conflict
        desired: dict[str, Any] = {"sync": actions}
        if status:
            # An empty Struct reaches Crossplane as null, which the XR's schema (an object)
            # refuses, failing the whole status apply: no status, no field.
            desired["consumerStatus"] = status
        set_composite_status(rsp, desired)
        bound = find_condition(status.get("conditions"), CONDITION_API_BOUND)
        if bound is not None:
            report_condition(rsp, bound)
