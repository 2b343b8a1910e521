"""``api-connector serve <stage>``: run one stage as its own gRPC server.

One process serves, on one port, the stage's own service
(``apiconnector.stages.v1alpha1.<Stage>``), Crossplane's ``FunctionRunnerService`` (v1 and
v1beta1) for the same stage, ``grpc.health.v1.Health`` and server reflection. Default ports
match the Helm chart and docker compose: crd-puller 9443, binder 9444, object-syncer 9445.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import click

from connector.server import DEFAULT_GRACE_SECONDS, ServerOptions
from functions.adapters import StageFunction, StageService
from functions.proto.codec import DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class _Stage:
    name: str
    default_port: int
    # Loaded only when the stage is served, so that the CLI starts fast.
    load: Callable[[], tuple[StageService, StageFunction]]


def _crd_puller() -> tuple[StageService, StageFunction]:
    from functions.crd_puller.fn import CRDPullerFunction
    from functions.crd_puller.grpc_service import SERVICE

    return SERVICE, CRDPullerFunction()


def _binder() -> tuple[StageService, StageFunction]:
    from functions.binder.fn import BinderFunction
    from functions.binder.grpc_service import SERVICE

    return SERVICE, BinderFunction()


def _object_syncer() -> tuple[StageService, StageFunction]:
    from functions.object_syncer.fn import ObjectSyncerFunction
    from functions.object_syncer.grpc_service import SERVICE

    return SERVICE, ObjectSyncerFunction()


STAGES = (
    _Stage("crd-puller", 9443, _crd_puller),
    _Stage("binder", 9444, _binder),
    _Stage("object-syncer", 9445, _object_syncer),
)


@click.group()
def serve() -> None:
    """Serve one stage over gRPC: as a microservice and as a Crossplane function."""


def _command(stage: _Stage) -> click.Command:
    @click.command(
        stage.name,
        help=f"Serve the {stage.name} stage (its gRPC service and FunctionRunnerService).",
    )
    @click.option(
        "--address",
        default=f"0.0.0.0:{stage.default_port}",
        show_default=True,
        help="HOST:PORT to listen on; port 0 picks a free port.",
    )
    @click.option("--insecure", is_flag=True, help="Serve plaintext gRPC (no TLS).")
    @click.option(
        "--tls-certs-dir",
        envvar="TLS_SERVER_CERTS_DIR",
        type=click.Path(exists=True, file_okay=False),
        help="Directory with tls.crt, tls.key and ca.crt; clients must present a certificate "
        "signed by ca.crt (mutual TLS, as Crossplane calls functions). "
        "Env: TLS_SERVER_CERTS_DIR.",
    )
    @click.option(
        "--max-message-bytes",
        type=click.IntRange(min=4096),
        default=DEFAULT_MAX_MESSAGE_BYTES,
        show_default=True,
        help="Largest request or response; larger ones fail with RESOURCE_EXHAUSTED.",
    )
    @click.option(
        "--grace-period",
        type=click.FloatRange(min=0),
        default=DEFAULT_GRACE_SECONDS,
        show_default=True,
        help="Seconds in-flight calls get to finish on SIGTERM or SIGINT.",
    )
    def command(
        address: str,
        insecure: bool,
        tls_certs_dir: str | None,
        max_message_bytes: int,
        grace_period: float,
    ) -> None:
        if not insecure and tls_certs_dir is None:
            raise click.UsageError("Pass --tls-certs-dir DIR, or --insecure to serve plaintext.")
        # --insecure wins, as in Crossplane's function SDK: `crossplane render` runs functions
        # with --insecure even where TLS_SERVER_CERTS_DIR is set.
        options = ServerOptions(
            address=address,
            tls_certs_dir=None if insecure else tls_certs_dir,
            max_message_bytes=max_message_bytes,
            grace_seconds=grace_period,
        )
        from connector.server import serve_forever

        service, function = stage.load()
        asyncio.run(serve_forever(options, services=[service], function_runner=function))

    return command


for _stage in STAGES:
    serve.add_command(_command(_stage))
