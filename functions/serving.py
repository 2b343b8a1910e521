"""One gRPC server for a stage: its own service, the Crossplane function service, health and
reflection, optional mutual TLS, graceful shutdown; and the base of the function adapters.

A stage service is described by ``StageService``: its full proto name and, per method, the
request message type and a translator (request proto → response proto) that calls the
stage's plain function. The error mapping lives here, once, for every stage:

    InvalidInputError  →  INVALID_ARGUMENT, message "<field>: <what is wrong>"
    anything else      →  INTERNAL, short message; the traceback goes to the log only

A failing call never takes the server down. Oversized messages are refused by gRPC itself
(RESOURCE_EXHAUSTED) according to ``ServerOptions.max_message_bytes``.

``StageFunction`` is the same mapping for a stage served as a Crossplane composition
function: bad input becomes a Fatal result naming the field, never an exception.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from crossplane.function import resource, response
from crossplane.function import runtime as fn_runtime
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from crossplane.function.proto.v1beta1 import run_function_pb2 as fnv1beta1
from crossplane.function.proto.v1beta1 import run_function_pb2_grpc as grpcv1beta1
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from functions.common import InvalidInputError, Obj
from functions.common.clock import now_rfc3339

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "FUNCTION_RUNNER_V1",
    "FUNCTION_RUNNER_V1BETA1",
    "RunningServer",
    "ServerOptions",
    "StageFunction",
    "StageService",
    "UnaryMethod",
    "fields_renamed",
    "function_input",
    "observed_composite",
    "plain",
    "report_condition",
    "required_resources",
    "serve_forever",
    "serve_in_background",
    "set_composed",
    "set_composite_status",
    "start_server",
]

log = structlog.get_logger(__name__)

#: Large enough for a provider's full CRD list (CRDs with big schemas reach 1 MiB each).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: In-flight calls get this long to finish on SIGTERM (Kubernetes then waits 30 s).
DEFAULT_GRACE_SECONDS = 5.0

FUNCTION_RUNNER_V1 = fnv1.DESCRIPTOR.services_by_name["FunctionRunnerService"].full_name
FUNCTION_RUNNER_V1BETA1 = fnv1beta1.DESCRIPTOR.services_by_name["FunctionRunnerService"].full_name


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

    def generic_handler(self) -> Any:
        handlers = {
            m.name: grpc.unary_unary_rpc_method_handler(
                _guarded(f"/{self.full_name}/{m.name}", m.translate),
                request_deserializer=m.request_type.FromString,
                response_serializer=_serialize,
            )
            for m in self.methods
        }
        return grpc.method_handlers_generic_handler(self.full_name, handlers)


def _serialize(message: Message) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _guarded(method: str, translate: Callable[[Any], Message]) -> Callable[..., Awaitable[Any]]:
    """An aio handler that maps the stage's errors to gRPC status codes."""

    async def handle(request: Message, context: Any) -> Message | None:
        try:
            return translate(request)
        except InvalidInputError as e:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(e)
        except Exception as e:
            # A bug, not bad input: keep the details in the log, not in the caller's error.
            log.exception("A stage call failed unexpectedly.", method=method)
            code, message = grpc.StatusCode.INTERNAL, f"{method} failed: {type(e).__name__}"
        # abort() raises, so it stays outside the try above.
        await context.abort(code, message)
        return None

    return handle


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    #: ``HOST:PORT``; port 0 picks a free port (see ``RunningServer.port``).
    address: str
    #: A directory with tls.crt, tls.key and ca.crt (mutual TLS, as Crossplane runs
    #: functions); None serves plaintext.
    tls_certs_dir: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_seconds: float = DEFAULT_GRACE_SECONDS


@dataclass
class RunningServer:
    server: Any
    health: HealthServicer
    port: int
    grace_seconds: float

    async def stop(self) -> None:
        """Report NOT_SERVING, then let in-flight calls finish for the grace period."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace_seconds)


async def start_server(
    options: ServerOptions,
    *,
    services: Sequence[StageService],
    function_runner: grpcv1.FunctionRunnerServiceServicer | None = None,
) -> RunningServer:
    """Build and start the server; every registered service reports SERVING."""
    limit = options.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )
    names = [s.full_name for s in services]
    server.add_generic_rpc_handlers(tuple(s.generic_handler() for s in services))
    if function_runner is not None:
        # The SDK's generated registration helpers carry no annotations.
        grpcv1.add_FunctionRunnerServiceServicer_to_server(function_runner, server)  # type: ignore[no-untyped-call]
        beta = fn_runtime.BetaFunctionRunner(wrapped=function_runner)
        grpcv1beta1.add_FunctionRunnerServiceServicer_to_server(beta, server)  # type: ignore[no-untyped-call]
        names += [FUNCTION_RUNNER_V1, FUNCTION_RUNNER_V1BETA1]
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection([*names, health_name, reflection.SERVICE_NAME], server)

    if options.tls_certs_dir is None:
        port = server.add_insecure_port(options.address)
    else:
        creds = fn_runtime.load_credentials(options.tls_certs_dir)
        port = server.add_secure_port(options.address, creds)
    if not port:
        raise OSError(f"cannot listen on {options.address}")
    await server.start()
    for name in ["", *names]:  # "" is the whole server's status
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "Serving.",
        address=options.address,
        port=port,
        services=names,
        tls=options.tls_certs_dir is not None,
        max_message_bytes=limit,
    )
    return RunningServer(
        server=server, health=health, port=port, grace_seconds=options.grace_seconds
    )


async def serve_forever(
    options: ServerOptions,
    *,
    services: Sequence[StageService],
    function_runner: grpcv1.FunctionRunnerServiceServicer | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(options, services=services, function_runner=function_runner)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("Shutting down.", grace_seconds=options.grace_seconds)
    await running.stop()
    log.info("Stopped.")


@contextmanager
def serve_in_background(
    options: ServerOptions,
    *,
    services: Sequence[StageService],
    function_runner: grpcv1.FunctionRunnerServiceServicer | None = None,
) -> Iterator[int]:
    """Serve on an event loop in a daemon thread while the block runs; yields the port.

    For tests, benchmarks and embedding; a deployed stage runs ``serve_forever``.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stage-server", daemon=True)
    thread.start()
    try:
        running = asyncio.run_coroutine_threadsafe(
            start_server(options, services=services, function_runner=function_runner), loop
        ).result()
        try:
            yield running.port
        finally:
            asyncio.run_coroutine_threadsafe(running.stop(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


# --- Crossplane function adapters --------------------------------------------------------


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

    ``ready=True`` for objects that have no Ready condition to wait for (RBAC, namespaces);
    None leaves readiness to Crossplane, which reads the composed resource's Ready condition.
    """
    composed = rsp.desired.resources[name]
    composed.resource.Clear()
    resource.update(composed, obj)
    if ready is not None:
        composed.ready = fnv1.READY_TRUE if ready else fnv1.READY_FALSE


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
