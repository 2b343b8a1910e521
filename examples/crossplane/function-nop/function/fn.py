"""The function's logic: one ConfigMap per composite resource, ready as soon as it exists.

A namespaced XR (Crossplane v2) gets the ConfigMap in its own namespace, where Crossplane
puts composed resources. A cluster-scoped XR (an ``apiextensions.crossplane.io/v1`` XRD,
whose claims are namespaced) gets it in its claim's namespace, named after the XR.
"""

from __future__ import annotations

from typing import Any

import grpc
from crossplane.function import logging, resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1

CONFIG_MAP = "configmap"
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
        return rsp


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
