"""How the orchestrator calls the three stages: in-process, or over gRPC, same results.

    Stages                the protocol the controllers use
    ├── InProcessStages   plain function calls (the single-binary default)
    └── GrpcStages        per-stage gRPC addresses; a stage without one runs in-process

Errors over gRPC::

    StageCallError        the call failed: ``code`` (e.g. "UNAVAILABLE") and ``message``
    └── StageInputError   INVALID_ARGUMENT; also a ``functions.common.InvalidInputError``
                          with the same ``field``, so bad input is handled the same way
                          wherever the stage runs
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from functions.binder.types import AccessRequest, AccessResult, BindRequest, BindResult
from functions.common import InvalidInputError
from functions.crd_puller.types import PullRequest, PullResult
from functions.object_syncer.types import SyncRequest, SyncResult

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "GrpcStages",
    "InProcessStages",
    "StageCallError",
    "StageInputError",
    "Stages",
]

#: Per call. A stage is pure computation on one object or one CRD list: milliseconds.
DEFAULT_TIMEOUT_SECONDS = 10.0

#: Codes after which the same call may succeed: the orchestrator retries with backoff.
_RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED"})


class Stages(Protocol):
    def pull(self, req: PullRequest) -> PullResult: ...

    def bind(self, req: BindRequest) -> BindResult: ...

    def provider_access(self, req: AccessRequest) -> AccessResult: ...

    def sync(self, req: SyncRequest) -> SyncResult: ...


class InProcessStages:
    """The stages as plain function calls. The logic modules load on first use."""

    def pull(self, req: PullRequest) -> PullResult:
        from functions.crd_puller.logic import pull

        return pull(req)

    def bind(self, req: BindRequest) -> BindResult:
        from functions.binder.logic import bind

        return bind(req)

    def provider_access(self, req: AccessRequest) -> AccessResult:
        from functions.binder.logic import provider_access

        return provider_access(req)

    def sync(self, req: SyncRequest) -> SyncResult:
        from functions.object_syncer.logic import sync

        return sync(req)

    def close(self) -> None:
        """Nothing to release; here so that both implementations close the same way."""


class StageCallError(Exception):
    """A stage call over gRPC failed. ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str, *, method: str) -> None:
        # Not super(): in StageInputError the next class is InvalidInputError.
        Exception.__init__(self, f"{method}: {code}: {message}")
        self.code = code
        self.message = message
        self.method = method

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later (the stage was unreachable or slow)."""
        return self.code in _RETRYABLE


class StageInputError(StageCallError, InvalidInputError):
    """The stage rejected the input (INVALID_ARGUMENT); ``field`` names the bad field."""

    def __init__(self, message: str, *, method: str) -> None:
        field, _, detail = message.partition(": ")
        StageCallError.__init__(self, "INVALID_ARGUMENT", message, method=method)
        self.field = field if detail else ""
        self.message = detail or message
        # str() reads like the in-process InvalidInputError: "<field>: <message>".
        self.args = (message,)


Req = TypeVar("Req")
Res = TypeVar("Res")

_PACKAGE = "apiconnector.stages.v1alpha1"


class GrpcStages:
    """Stages served by ``api-connector serve <stage>``, reached over gRPC.

    A stage whose address is None runs in-process. Stages at the same address share a
    channel; channels are made once and reused by every call (they are thread-safe). With
    ``tls_certs_dir`` (tls.crt, tls.key, ca.crt) the client presents tls.crt and trusts only
    ca.crt, matching the servers' mutual TLS; without it the channels are plaintext.
    Every call has a deadline of ``timeout_seconds``.
    """

    def __init__(
        self,
        *,
        crd_puller: str | None = None,
        binder: str | None = None,
        object_syncer: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        tls_certs_dir: str | None = None,
        max_message_bytes: int | None = None,
    ) -> None:
        import grpc

        from functions.proto import codec
        from functions.proto.codec import DEFAULT_MAX_MESSAGE_BYTES
        from functions.proto.gen.apiconnector.stages.v1alpha1 import stages_pb2 as pb

        self._grpc = grpc
        self._local = InProcessStages()
        limit = max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
        self._channel_options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        self._credentials = _client_credentials(grpc, tls_certs_dir) if tls_certs_dir else None
        self._channels: dict[str, Any] = {}
        self._lock = threading.Lock()

        def rpc(address: str, method: str, response: Any) -> Callable[[Any], Any]:
            path = f"/{_PACKAGE}.{method}"
            call = self._channel(address).unary_unary(
                path,
                request_serializer=_serialize,
                response_deserializer=response.FromString,
            )

            def invoke(request: Any) -> Any:
                try:
                    return call(request, timeout=timeout_seconds)
                except grpc.RpcError as e:
                    code, details = e.code().name, e.details() or ""
                    if code == "INVALID_ARGUMENT":
                        raise StageInputError(details, method=path) from e
                    raise StageCallError(code, details, method=path) from e

            return invoke

        local = self._local
        self._pull: Callable[[PullRequest], PullResult] = (
            _Remote(
                rpc(crd_puller, "CRDPuller/Pull", pb.PullResponse),
                codec.pull_request_to_proto,
                codec.pull_result_from_proto,
            )
            if crd_puller
            else local.pull
        )
        self._bind: Callable[[BindRequest], BindResult] = (
            _Remote(
                rpc(binder, "Binder/Bind", pb.BindResponse),
                codec.bind_request_to_proto,
                codec.bind_result_from_proto,
            )
            if binder
            else local.bind
        )
        self._access: Callable[[AccessRequest], AccessResult] = (
            _Remote(
                rpc(binder, "Binder/ProviderAccess", pb.AccessResponse),
                codec.access_request_to_proto,
                codec.access_result_from_proto,
            )
            if binder
            else local.provider_access
        )
        self._sync: Callable[[SyncRequest], SyncResult] = (
            _Remote(
                rpc(object_syncer, "ObjectSyncer/Sync", pb.SyncResponse),
                codec.sync_request_to_proto,
                codec.sync_result_from_proto,
            )
            if object_syncer
            else local.sync
        )

    def pull(self, req: PullRequest) -> PullResult:
        return self._pull(req)

    def bind(self, req: BindRequest) -> BindResult:
        return self._bind(req)

    def provider_access(self, req: AccessRequest) -> AccessResult:
        return self._access(req)

    def sync(self, req: SyncRequest) -> SyncResult:
        return self._sync(req)

    def close(self) -> None:
        """Close every channel; remote calls after this fail."""
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def __enter__(self) -> GrpcStages:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _channel(self, address: str) -> Any:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                if self._credentials is None:
                    channel = self._grpc.insecure_channel(address, options=self._channel_options)
                else:
                    channel = self._grpc.secure_channel(
                        address, self._credentials, options=self._channel_options
                    )
                self._channels[address] = channel
            return channel


class _Remote(Generic[Req, Res]):
    """One remote method: dataclass → proto → call → proto → dataclass."""

    def __init__(
        self,
        invoke: Callable[[Any], Any],
        encode: Callable[[Req], Any],
        decode: Callable[[Any], Res],
    ) -> None:
        self._invoke = invoke
        self._encode = encode
        self._decode = decode

    def __call__(self, req: Req) -> Res:
        return self._decode(self._invoke(self._encode(req)))


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _client_credentials(grpc: Any, tls_certs_dir: str) -> Any:
    """Mutual TLS: present tls.crt/tls.key, trust only ca.crt."""
    directory = Path(tls_certs_dir)
    return grpc.ssl_channel_credentials(
        root_certificates=(directory / "ca.crt").read_bytes(),
        private_key=(directory / "tls.key").read_bytes(),
        certificate_chain=(directory / "tls.crt").read_bytes(),
    )
