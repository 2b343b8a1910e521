"""What the stages' adapters share: the description of a stage's gRPC service, and the base
and helpers of a stage served as a Crossplane composition function.

Adapters translate; they hold no stage logic and start no server. A stage's
``grpc_service.py`` describes its service with :class:`StageService` (the server in
:mod:`connector.server` turns that into handlers); its ``fn.py`` subclasses
:class:`StageFunction`, whose error mapping is the same for every stage: bad input
(``InvalidInputError``) becomes a Fatal result naming the field, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from crossplane.function import resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from google.protobuf.message import Message

from functions.common import InvalidInputError, Obj
from functions.common.clock import now_rfc3339

__all__ = [
    "StageFunction",
    "StageService",
    "UnaryMethod",
    "composed_ready",
    "fields_renamed",
    "function_input",
    "observed_composed",
    "observed_composite",
    "plain",
    "report_condition",
    "required_resources",
    "set_composed",
    "set_composite_status",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class UnaryMethod:
    """One unary RPC: ``translate`` turns the request message into the response message."""

    name: str
    request_type: type[Message]
    translate: Callable[[Any], Message]


@dataclass(frozen=True)
class StageService:
    """A stage's gRPC service, e.g. ``apiconnector.stages.v1alpha1.ObjectSyncer``."""

    full_name: str
    methods: tuple[UnaryMethod, ...]


def plain(value: Any) -> Any:
    """``value`` decoded from a protobuf Struct with integers restored.

    Struct numbers are doubles: ``generation: 3`` arrives as ``3.0``. Crossplane sends JSON
    numbers, so an integral double was an integer.
    """
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class StageFunction(grpcv1.FunctionRunnerServiceServicer):
    """A stage served as a Crossplane composition function.

    Subclasses implement ``run``, translating the request into the stage's dataclass, calling
    the stage, and writing desired state into the response. ``InvalidInputError`` becomes a
    Fatal result naming the field; any other exception is logged and becomes a short Fatal
    result, so that Crossplane reports it on the XR instead of seeing a failed call.
    """

    def __init__(self, *, clock: Callable[[], str] = now_rfc3339) -> None:
        self._clock = clock

    async def RunFunction(  # the gRPC method name
        self, req: fnv1.RunFunctionRequest, _context: Any
    ) -> fnv1.RunFunctionResponse:
        rsp = response.to(req)
        try:
            self.run(req, rsp, now=self._clock())
        except InvalidInputError as e:
            response.fatal(rsp, str(e))
        except Exception as e:
            log.exception("A stage function failed unexpectedly.", function=type(self).__name__)
            response.fatal(rsp, f"{type(self).__name__} failed: {type(e).__name__}")
        return rsp

    def run(self, req: fnv1.RunFunctionRequest, rsp: fnv1.RunFunctionResponse, *, now: str) -> None:
        raise NotImplementedError


@contextmanager
def fields_renamed(renames: dict[str, str]) -> Iterator[None]:
    """Name bad input after where the function's caller put it, not the stage's field.

    The stage says ``consumer.metadata.name``; the XR author needs to read
    ``composite.spec.consumerObject.metadata.name``.
    """
    try:
        yield
    except InvalidInputError as e:
        for stage_field, fn_field in renames.items():
            if e.field == stage_field or e.field.startswith((f"{stage_field}.", f"{stage_field}[")):
                field = fn_field + e.field[len(stage_field) :]
                raise InvalidInputError(field, e.message) from e
        raise


def function_input(req: fnv1.RunFunctionRequest, *, api_version: str, kind: str) -> Obj:
    """The step's input, checked to be ``kind`` of ``api_version``."""
    data = plain(resource.struct_to_dict(req.input)) if req.HasField("input") else {}
    if data.get("apiVersion") != api_version or data.get("kind") != kind:
        raise InvalidInputError(
            "input",
            f"must be kind {kind} of apiVersion {api_version}, got kind {data.get('kind')} "
            f"of apiVersion {data.get('apiVersion')}",
        )
    return dict(data)


def observed_composite(req: fnv1.RunFunctionRequest) -> Obj:
    """The observed composite resource (XR) as a plain dict."""
    return dict(plain(resource.struct_to_dict(req.observed.composite.resource)))


def observed_composed(req: fnv1.RunFunctionRequest) -> dict[str, Obj]:
    """The observed composed resources, by the names the function gave them, as plain
    dicts: what Crossplane read back of what the previous calls desired."""
    return {
        name: dict(plain(resource.struct_to_dict(composed.resource)))
        for name, composed in req.observed.resources.items()
    }


def required_resources(req: fnv1.RunFunctionRequest, name: str) -> list[Obj] | None:
    """The resources Crossplane fetched for requirement ``name``; None until it has tried."""
    if name not in req.required_resources:
        return None
    return [
        plain(resource.struct_to_dict(item.resource)) for item in req.required_resources[name].items
    ]


def set_composed(
    rsp: fnv1.RunFunctionResponse, name: str, obj: Obj, *, ready: bool | None = None
) -> None:
    """Make ``obj`` the desired composed resource ``name`` (replacing an earlier one).

    ``ready=True`` for objects that have no Ready condition to wait for (RBAC, namespaces).
    Crossplane counts a composed resource ready only when the function says so (``None``
    is not ready; it does not read the resource's conditions itself, which is why
    function-auto-ready exists): pass ``composed_ready(observed)`` to follow its ``Ready``
    condition.
    """
    composed = rsp.desired.resources[name]
    composed.resource.Clear()
    resource.update(composed, obj)
    if ready is not None:
        composed.ready = fnv1.READY_TRUE if ready else fnv1.READY_FALSE


def composed_ready(observed: Obj | None) -> bool:
    """Whether an observed composed resource says ``Ready=True`` (what function-auto-ready
    decides for each resource); False if it was not observed yet."""
    conditions = ((observed or {}).get("status") or {}).get("conditions") or []
    return any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )


def set_composite_status(rsp: fnv1.RunFunctionResponse, status: Obj) -> None:
    """Merge ``status`` into the desired composite resource's status."""
    current = resource.struct_to_dict(rsp.desired.composite.resource).get("status") or {}
    resource.update(rsp.desired.composite, {"status": {**current, **status}})


def report_condition(
    rsp: fnv1.RunFunctionResponse, condition: Obj, *, type_: str | None = None
) -> None:
    """Report one of the stage's conditions on the XR, optionally under another type."""
    response.set_conditions(
        rsp,
        resource.Condition(
            typ=type_ or str(condition.get("type")),
            status=str(condition.get("status", "Unknown")),
            reason=condition.get("reason"),
            message=condition.get("message"),
        ),
    )
