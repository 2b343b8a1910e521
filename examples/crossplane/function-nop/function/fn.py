"""The function's logic: one ConfigMap per composite resource, ready as soon as it exists.

A namespaced XR (Crossplane v2) gets the ConfigMap in its own namespace, where Crossplane
puts composed resources. A cluster-scoped XR (an ``apiextensions.crossplane.io/v1`` XRD,
whose claims are namespaced) gets it in its claim's namespace, named after the XR.

Connection details, when asked for (``spec.writeConnectionSecretToRef``), hold
``coolField`` (so that changing it rotates them):

- a cluster-scoped XR (a claim's) returns them as the composite's connection details;
  Crossplane writes them to the XR's Secret and copies them to the claim's;
- a namespaced XR composes its connection Secret itself, as Crossplane v2 asks: a Secret
  of the name its ref gives, typed ``connection.crossplane.io/v1alpha1`` (the convention
  the API connector follows, docs/semantics.md).
"""

from __future__ import annotations

import base64
from typing import Any

import grpc
from crossplane.function import logging, resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1

CONFIG_MAP = "configmap"
CONNECTION_SECRET = "connection-secret"
CONNECTION_SECRET_TYPE = "connection.crossplane.io/v1alpha1"
CLAIM_NAMESPACE_LABEL = "crossplane.io/claim-namespace"
# Where the ConfigMap of a cluster-scoped XR without a claim goes.
FALLBACK_NAMESPACE = "crossplane-system"


class FunctionRunner(grpcv1.FunctionRunnerServiceServicer):
    """Handles RunFunctionRequests."""

    def __init__(self) -> None:
        self.log = logging.get_logger()

    async def RunFunction(
        self, req: fnv1.RunFunctionRequest, _: grpc.aio.ServicerContext
    ) -> fnv1.RunFunctionResponse:
        rsp = response.to(req)
        xr = resource.struct_to_dict(req.observed.composite.resource)
        log = self.log.bind(xr=(xr.get("metadata") or {}).get("name"))
        cool_field = (xr.get("spec") or {}).get("coolField")
        if not isinstance(cool_field, str):
            response.fatal(rsp, "spec.coolField must be a string; the XRD's schema requires it.")
            return rsp
        resource.update(rsp.desired.resources[CONFIG_MAP], config_map(xr, cool_field))
        rsp.desired.resources[CONFIG_MAP].ready = fnv1.READY_TRUE
        log.debug("Composed the ConfigMap.")
        ref = (xr.get("spec") or {}).get("writeConnectionSecretToRef")
        if isinstance(ref, dict) and ref.get("name"):
            details = {"coolField": cool_field.encode()}
            if (xr.get("metadata") or {}).get("namespace"):
                secret = connection_secret(str(ref["name"]), details)
                resource.update(rsp.desired.resources[CONNECTION_SECRET], secret)
                rsp.desired.resources[CONNECTION_SECRET].ready = fnv1.READY_TRUE
            else:
                for key, value in details.items():
                    rsp.desired.composite.connection_details[key] = value
            log.debug("Wrote the connection details.")
        return rsp


def connection_secret(name: str, details: dict[str, bytes]) -> dict[str, Any]:
    """The connection Secret composed for a namespaced XR (Crossplane places it in the XR's
    namespace and makes the XR its controller)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": CONNECTION_SECRET_TYPE,
        "data": {key: base64.b64encode(value).decode() for key, value in details.items()},
    }


def config_map(xr: dict[str, Any], cool_field: str) -> dict[str, Any]:
    """The ConfigMap composed for ``xr``."""
    meta = xr.get("metadata") or {}
    metadata: dict[str, Any] = {}
    if not meta.get("namespace"):
        # Crossplane names and places the composed resources of a namespaced XR itself; a
        # cluster-scoped XR's namespaced resource must say where it goes.
        labels = meta.get("labels") or {}
        metadata["namespace"] = labels.get(CLAIM_NAMESPACE_LABEL) or FALLBACK_NAMESPACE
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"coolField": cool_field},
    }
