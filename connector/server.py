"""One gRPC server for the stages: their own services, the Crossplane function service,
health and reflection, optional mutual TLS, graceful shutdown.

A stage's service is described by :class:`functions.adapters.StageService`: its full proto
name and, per method, the request type and a translator that calls the stage's plain
function. The error mapping lives here, once, for every stage:

    InvalidInputError  →  INVALID_ARGUMENT, message "<field>: <what is wrong>"
    anything else      →  INTERNAL, short message; the traceback goes to the log only

A failing call never takes the server down. Oversized messages are refused by gRPC itself
(RESOURCE_EXHAUSTED) according to ``ServerOptions.max_message_bytes``.
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
from crossplane.function import runtime as fn_runtime
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from crossplane.function.proto.v1beta1 import run_function_pb2 as fnv1beta1
from crossplane.function.proto.v1beta1 import run_function_pb2_grpc as grpcv1beta1
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from functions.adapters import StageService
from functions.common import InvalidInputError
from functions.proto.codec import DEFAULT_MAX_MESSAGE_BYTES

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "FUNCTION_RUNNER_V1",
    "FUNCTION_RUNNER_V1BETA1",
    "RunningServer",
    "ServerOptions",
    "serve_forever",
    "serve_in_background",
    "start_server",
]

log = structlog.get_logger(__name__)

#: In-flight calls get this long to finish on SIGTERM (Kubernetes then waits 30 s).
DEFAULT_GRACE_SECONDS = 5.0

FUNCTION_RUNNER_V1 = fnv1.DESCRIPTOR.services_by_name["FunctionRunnerService"].full_name
FUNCTION_RUNNER_V1BETA1 = fnv1beta1.DESCRIPTOR.services_by_name["FunctionRunnerService"].full_name


def _generic_handler(service: StageService) -> Any:
    handlers = {
        m.name: grpc.unary_unary_rpc_method_handler(
            _guarded(f"/{service.full_name}/{m.name}", m.translate),
            request_deserializer=m.request_type.FromString,
            response_serializer=_serialize,
        )
        for m in service.methods
    }
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


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
    server.add_generic_rpc_handlers(tuple(_generic_handler(s) for s in services))
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
