"""The binder as a Crossplane composition function (``function-connector-binder``).

It runs on the provider and composes the per-consumer access a binding needs there: the
consumer's namespace, ServiceAccount, token Secret, and a ClusterRole (with its binding)
that names exactly the bound APIs, never a wildcard.

Mapping, one XR per binding of a consumer:

- step input ``Input`` of ``binder.fn.connect.upbound.io/v1alpha1``: ``consumerName``
  (required), the consumer cluster's identity; ``placement`` (optional): ``Default``
  grants the bound APIs cluster-wide, ``Isolated`` only in the consumer's own provider
  namespaces (and composes the admission policy that confines which namespaces and
  RoleBindings the identity creates); ``connectionSecrets`` (optional, Default placement
  only): also grant reading Secrets, in every namespace (the isolated placement grants it
  in the consumer's own namespaces always);
- XR ``spec.binding``: the ClusterAPIBinding or APIBinding as observed in the consumer;
  ``spec.connection`` (optional): its ClusterConnection with ``status.offeredAPIs``; both
  live in the consumer cluster, so the XR carries them and no requirement is needed;
- desired composed resources ``<kind>-<name>``: the access objects, only while the binding
  binds something (a binding that binds nothing grants nothing); those in the consumer's
  namespace once Crossplane has created it (it applies in no order), the XR not ready
  meanwhile;
- desired XR status: ``bindingConditions``, ``boundResources``, ``namespaces`` (absent: all),
  ``includeClusterScoped`` and ``access`` (namespace, service account, token secret); the
  binding's Ready condition is reported on the XR as ``Bound`` (Crossplane owns Ready).
"""

from __future__ import annotations

from typing import Any

from crossplane.function.proto.v1 import run_function_pb2 as fnv1

from functions.adapters import (
    StageFunction,
    fields_renamed,
    function_input,
    observed_composite,
    report_condition,
    set_composed,
    set_composite_status,
)
from functions.binder import logic
from functions.binder.types import AccessRequest, BindRequest
from functions.common import (
    CONDITION_READY,
    InvalidInputError,
    find_condition,
    require_dict,
    require_str,
)
from functions.common.placement import check_placement

INPUT_API_VERSION = "binder.fn.connect.upbound.io/v1alpha1"
INPUT_KIND = "Input"
#: The XR condition that carries the binding's Ready condition.
CONDITION_BOUND = "Bound"
_FIELDS = {
    "binding": "composite.spec.binding",
    "connection": "composite.spec.connection",
    "consumer_name": "input.consumerName",
    "placement": "input.placement",
}


class BinderFunction(StageFunction):
    def run(self, req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse, *, now: str) -> None:
        fn_input = function_input(req, api_version=INPUT_API_VERSION, kind=INPUT_KIND)
        consumer_name = require_str(fn_input.get("consumerName"), "input.consumerName")
        placement = check_placement(fn_input.get("placement"), "input.placement")
        secrets = fn_input.get("connectionSecrets", False)
        if not isinstance(secrets, bool):
            raise InvalidInputError("input.connectionSecrets", "must be true or false")
        spec = require_dict(observed_composite(req).get("spec"), "composite.spec")
        binding = require_dict(spec.get("binding"), "composite.spec.binding")
        connection = spec.get("connection")
        if connection is not None:
            connection = require_dict(connection, "composite.spec.connection")

        with fields_renamed(_FIELDS):
            bound = logic.bind(BindRequest(binding=binding, connection=connection, now=now))
        status: dict[str, Any] = {
            "bindingConditions": bound.conditions,
            "boundResources": [r.to_status() for r in bound.resources],
            "includeClusterScoped": bound.include_cluster_scoped,
        }
        if bound.namespaces is not None:
            status["namespaces"] = bound.namespaces
        if bound.resources:
            with fields_renamed(_FIELDS):
                access = logic.provider_access(
                    AccessRequest(
                        consumer_name=consumer_name,
                        resources=bound.resources,
                        placement=placement,
                        connection_secrets=secrets,
                    )
                )
            observed = set(req.observed.resources.keys())
            namespaces = {o["metadata"]["name"] for o in access.objects if o["kind"] == "Namespace"}
            waiting = False
            for obj in access.objects:
                # Namespaces, identities and RBAC have no Ready condition: ready once applied.
                name = f"{obj['kind'].lower()}-{obj['metadata']['name']}"
                namespace = obj["metadata"].get("namespace")
                if namespace in namespaces and f"namespace-{namespace}" not in observed:
                    # Crossplane applies composed resources in no order and stops at the first
                    # failure: what lives in the namespace waits until Crossplane created it.
                    waiting = True
                    continue
                set_composed(rsp, name, obj, ready=True)
            if waiting:
                rsp.desired.composite.ready = fnv1.READY_FALSE
            status["access"] = {
                "namespace": access.namespace,
                "serviceAccount": access.service_account,
                "tokenSecret": access.token_secret,
            }
        set_composite_status(rsp, status)
        ready = find_condition(bound.conditions, CONDITION_READY)
        if ready is not None:
            report_condition(rsp, ready, type_=CONDITION_BOUND)
