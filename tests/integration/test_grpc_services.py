"""The stages served over real gRPC on 127.0.0.1: what a client of a stage microservice sees.

A call returns exactly what the plain function returns; bad input is INVALID_ARGUMENT naming
the field and leaves the server serving; an oversized message is RESOURCE_EXHAUSTED; health
and reflection work as Kubernetes probes and grpcurl expect; ``api-connector serve`` stops
gracefully on SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from connector.envtest._certs import CertificateAuthority
from connector.server import FUNCTION_RUNNER_V1, ServerOptions, serve_in_background
from connector.stages import GrpcStages, InProcessStages, StageCallError, StageInputError
from functions.adapters import StageService, UnaryMethod
from functions.binder.grpc_service import SERVICE as BINDER
from functions.binder.types import AccessRequest, BindRequest
from functions.common import InvalidInputError
from functions.crd_puller.grpc_service import SERVICE as CRD_PULLER
from functions.crd_puller.types import PullRequest
from functions.object_syncer.fn import ObjectSyncerFunction
from functions.object_syncer.grpc_service import SERVICE as OBJECT_SYNCER
from functions.object_syncer.types import Adoption, SyncRequest
from functions.proto.gen.apiconnector.stages.v1alpha1 import stages_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-23T12:00:00Z"
SMALL_LIMIT = 64 * 1024
SYNC_PATH = "/apiconnector.stages.v1alpha1.ObjectSyncer/Sync"


def provider_crd() -> dict[str, Any]:
    path = ROOT / "examples/walkthrough/provider/nopresources.nop.example.org.yaml"
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


def consumer_object() -> dict[str, Any]:
    return {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {"name": "my-resource", "namespace": "default", "uid": "uid-1"},
        "spec": {"coolField": "Synchronized resource", "compositeDeletePolicy": "Foreground"},
    }


def pull_request() -> PullRequest:
    return PullRequest(
        connection_name="provider-connection",
        provider_crds=[provider_crd()],
        consumer_crds=[],
        now=NOW,
    )


def bind_request() -> BindRequest:
    offered = InProcessStages().pull(pull_request()).offered
    connection = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterConnection",
        "metadata": {"name": "provider-connection"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
            "offeredAPIs": [api.to_status() for api in offered],
        },
    }
    binding = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterAPIBinding",
        "metadata": {"name": "nop.example.org", "generation": 1},
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": "provider-connection"}},
    }
    return BindRequest(binding=binding, connection=connection, now=NOW)


def sync_request() -> SyncRequest:
    return SyncRequest(
        consumer=consumer_object(), provider=None, consumer_cluster="consumer-a", now=NOW
    )


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    options = ServerOptions(address="127.0.0.1:0", max_message_bytes=SMALL_LIMIT)
    with serve_in_background(
        options,
        services=[CRD_PULLER, BINDER, OBJECT_SYNCER, _broken_service()],
        function_runner=ObjectSyncerFunction(),
    ) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture
def channel(address: str) -> Iterator[Any]:
    with grpc.insecure_channel(address) as ch:
        yield ch


@pytest.fixture
def stages(address: str) -> Iterator[GrpcStages]:
    with GrpcStages(
        crd_puller=address, binder=address, object_syncer=address, timeout_seconds=5
    ) as remote:
        yield remote


def _sync(channel: Any, request: pb.SyncRequest) -> pb.SyncResponse:
    call = channel.unary_unary(
        SYNC_PATH,
        request_serializer=pb.SyncRequest.SerializeToString,
        response_deserializer=pb.SyncResponse.FromString,
    )
    response: pb.SyncResponse = call(request, timeout=5)
    return response


def _broken_service() -> StageService:
    def fail(_request: pb.SyncRequest) -> pb.SyncResponse:
        raise RuntimeError("a bug with secret details")

    return StageService(
        full_name="apiconnector.test.Broken", methods=(UnaryMethod("Sync", pb.SyncRequest, fail),)
    )


# --- each method returns what the plain function returns ---------------------------------


def test_pull_over_grpc_returns_what_the_function_returns(stages: GrpcStages) -> None:
    want = InProcessStages().pull(pull_request())
    assert want.apply, "the sample must install a CRD"
    assert stages.pull(pull_request()) == want


def test_bind_over_grpc_returns_what_the_function_returns(stages: GrpcStages) -> None:
    want = InProcessStages().bind(bind_request())
    assert want.resources, "the sample must bind an API"
    assert stages.bind(bind_request()) == want


def test_provider_access_over_grpc_returns_what_the_function_returns(stages: GrpcStages) -> None:
    resources = InProcessStages().bind(bind_request()).resources
    req = AccessRequest(consumer_name="consumer-a", resources=resources)
    want = InProcessStages().provider_access(req)
    assert stages.provider_access(req) == want


def test_the_isolated_placement_travels_over_grpc(stages: GrpcStages) -> None:
    resources = InProcessStages().bind(bind_request()).resources
    access = AccessRequest(
        consumer_name="consumer-a",
        resources=resources,
        placement="Isolated",
        connection_secrets=True,
    )
    want_access = InProcessStages().provider_access(access)
    assert "ValidatingAdmissionPolicy" in [o["kind"] for o in want_access.objects]
    assert stages.provider_access(access) == want_access
    sync = dataclasses.replace(sync_request(), placement="Isolated")
    want = InProcessStages().sync(sync)
    assert want.provider_apply is not None
    assert (
        want.provider_apply["metadata"]["namespace"] != consumer_object()["metadata"]["namespace"]
    )
    assert stages.sync(sync) == want


def test_sync_over_grpc_returns_what_the_function_returns(stages: GrpcStages) -> None:
    want = InProcessStages().sync(sync_request())
    assert want.provider_apply is not None
    assert stages.sync(sync_request()) == want


def test_sync_of_an_existing_twin_over_grpc_returns_what_the_function_returns(
    stages: GrpcStages,
) -> None:
    twin = InProcessStages().sync(sync_request()).provider_apply
    assert twin is not None
    twin["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Available"}]}
    req = SyncRequest(
        consumer=consumer_object(), provider=twin, consumer_cluster="consumer-a", now=NOW
    )
    want = InProcessStages().sync(req)
    assert want.provider_apply is None  # in sync: nothing to write, status flows back
    assert stages.sync(req) == want


def test_an_adoption_over_grpc_carries_the_opt_in_and_the_outcome(stages: GrpcStages) -> None:
    twin = InProcessStages().sync(sync_request()).provider_apply
    assert twin is not None
    # What another connector left: managed, its own origin label, none of ours.
    twin["metadata"]["labels"] = {"connect.upbound.io/managed": "true", "old/origin": "a"}
    for adoption, adopted in (
        (Adoption(match_labels={"old/origin": "a"}), True),
        (Adoption(match_labels={"old/origin": "b"}), False),
        (None, False),
    ):
        req = SyncRequest(
            consumer=consumer_object(),
            provider=twin,
            consumer_cluster="consumer-a",
            now=NOW,
            adoption=adoption,
        )
        want = InProcessStages().sync(req)
        assert want.adopted is adopted
        assert stages.sync(req) == want


# --- errors ------------------------------------------------------------------------------


def test_bad_input_is_invalid_argument_naming_the_field(stages: GrpcStages) -> None:
    bad = {"apiVersion": "nop.example.org/v1alpha1", "kind": "NopResource", "metadata": {}}
    req = SyncRequest(consumer=bad, provider=None, consumer_cluster="consumer-a", now=NOW)
    with pytest.raises(StageInputError) as caught:
        stages.sync(req)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.field == "consumer.metadata.name"
    # The same error type as in-process, so callers handle bad input one way.
    assert isinstance(caught.value, InvalidInputError)
    with pytest.raises(InvalidInputError) as local:
        InProcessStages().sync(req)
    assert str(caught.value) == str(local.value)


def test_malformed_json_is_invalid_argument_naming_the_field(channel: Any) -> None:
    request = pb.SyncRequest(
        consumer=json.dumps(consumer_object()).encode(),
        provider=b'{"apiVersion": ',
        consumer_cluster="consumer-a",
        now=NOW,
    )
    with pytest.raises(grpc.RpcError) as caught:
        _sync(channel, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("provider: is not valid JSON")


def test_the_server_keeps_serving_after_bad_input(channel: Any) -> None:
    with pytest.raises(grpc.RpcError):
        _sync(channel, pb.SyncRequest(consumer=b"[]", consumer_cluster="c", now=NOW))
    good = pb.SyncRequest(
        consumer=json.dumps(consumer_object()).encode(), consumer_cluster="c", now=NOW
    )
    assert _sync(channel, good).HasField("provider_apply")


def test_a_bug_is_internal_with_a_short_message_and_the_server_keeps_serving(
    channel: Any,
) -> None:
    call = channel.unary_unary(
        "/apiconnector.test.Broken/Sync",
        request_serializer=pb.SyncRequest.SerializeToString,
        response_deserializer=pb.SyncResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(pb.SyncRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret details" not in caught.value.details()
    good = pb.SyncRequest(
        consumer=json.dumps(consumer_object()).encode(), consumer_cluster="c", now=NOW
    )
    assert _sync(channel, good).HasField("provider_apply")


def test_an_oversized_request_is_resource_exhausted(stages: GrpcStages) -> None:
    huge = consumer_object()
    huge["spec"]["blob"] = "x" * (SMALL_LIMIT + 1)
    req = SyncRequest(consumer=huge, provider=None, consumer_cluster="consumer-a", now=NOW)
    with pytest.raises(StageCallError) as caught:
        stages.sync(req)
    assert caught.value.code == "RESOURCE_EXHAUSTED"
    assert not caught.value.retryable
    assert stages.sync(sync_request()).provider_apply is not None


def test_an_unreachable_stage_is_a_retryable_unavailable_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = GrpcStages(object_syncer=f"127.0.0.1:{port}", timeout_seconds=2)
    with remote, pytest.raises(StageCallError) as caught:
        remote.sync(sync_request())
    assert caught.value.code == "UNAVAILABLE"
    assert caught.value.retryable


def _certs_dir(path: Path, ca: CertificateAuthority, cert_pem: bytes, key_pem: bytes) -> str:
    path.mkdir()
    (path / "ca.crt").write_bytes(ca.cert_pem)
    (path / "tls.crt").write_bytes(cert_pem)
    (path / "tls.key").write_bytes(key_pem)
    return str(path)


def test_mutual_tls_serves_clients_with_a_certificate_from_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("stages-ca")
    server = ca.issue_server("object-syncer", dns_names=["localhost"], ips=["127.0.0.1"])
    client = ca.issue_client("connector")
    server_dir = _certs_dir(tmp_path / "server", ca, server.cert_pem, server.key_pem)
    client_dir = _certs_dir(tmp_path / "client", ca, client.cert_pem, client.key_pem)
    stranger = CertificateAuthority.create("someone-else").issue_client("intruder")
    stranger_dir = _certs_dir(tmp_path / "stranger", ca, stranger.cert_pem, stranger.key_pem)
    options = ServerOptions(address="127.0.0.1:0", tls_certs_dir=server_dir)
    with serve_in_background(options, services=[OBJECT_SYNCER]) as port:
        address = f"127.0.0.1:{port}"
        with GrpcStages(object_syncer=address, tls_certs_dir=client_dir) as remote:
            assert remote.sync(sync_request()) == InProcessStages().sync(sync_request())
        refused = GrpcStages(object_syncer=address, tls_certs_dir=stranger_dir, timeout_seconds=5)
        with refused, pytest.raises(StageCallError) as caught:
            refused.sync(sync_request())
        assert caught.value.code == "UNAVAILABLE"
        with grpc.insecure_channel(address) as plaintext, pytest.raises(grpc.RpcError):
            _sync(plaintext, pb.SyncRequest(consumer=b"{}", consumer_cluster="c", now=NOW))


# --- health and reflection ---------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    [
        "",
        "apiconnector.stages.v1alpha1.CRDPuller",
        "apiconnector.stages.v1alpha1.Binder",
        "apiconnector.stages.v1alpha1.ObjectSyncer",
        "apiextensions.fn.proto.v1.FunctionRunnerService",
    ],
)
def test_health_reports_serving(channel: Any, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel: Any) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {
        "apiconnector.stages.v1alpha1.CRDPuller",
        "apiconnector.stages.v1alpha1.Binder",
        "apiconnector.stages.v1alpha1.ObjectSyncer",
        "apiextensions.fn.proto.v1.FunctionRunnerService",
        "apiextensions.fn.proto.v1beta1.FunctionRunnerService",
        "grpc.health.v1.Health",
    } <= services


def test_reflection_describes_the_request_messages(channel: Any) -> None:
    db = ProtoReflectionDescriptorDatabase(channel)
    found = db.FindFileContainingSymbol("apiconnector.stages.v1alpha1.SyncRequest")
    assert found.package == "apiconnector.stages.v1alpha1"


# --- the serve command -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_serving(address: str, deadline: float) -> None:
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing served health at {address}")
            time.sleep(0.1)


def test_serve_stops_gracefully_on_sigterm() -> None:
    address = f"127.0.0.1:{_free_port()}"
    exe = Path(sys.executable).with_name("api-connector")
    proc = subprocess.Popen(
        [str(exe), "serve", "object-syncer", "--address", address, "--insecure"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_serving(address, time.monotonic() + 30)
        # One port: the stage's own service and the Crossplane function service.
        with grpc.insecure_channel(address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for service in (OBJECT_SYNCER.full_name, FUNCTION_RUNNER_V1):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with GrpcStages(object_syncer=address, timeout_seconds=5) as remote:
            assert remote.sync(sync_request()) == InProcessStages().sync(sync_request())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Shutting down" in stderr and "Stopped" in stderr


def test_serve_refuses_to_start_without_tls_or_insecure() -> None:
    exe = Path(sys.executable).with_name("api-connector")
    env = {k: v for k, v in os.environ.items() if k != "TLS_SERVER_CERTS_DIR"}
    proc = subprocess.run(
        [str(exe), "serve", "binder", "--address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "--tls-certs-dir" in proc.stderr and "--insecure" in proc.stderr
