"""More clusters: two providers for one consumer, two consumers for one provider, a robot
token through a Spaces-like endpoint, and the ``api-connector run`` command itself.

The extra clusters (a second provider and a second consumer) start once for this module.
The second consumer runs the connector as a subprocess, the way users run it, with leader
election and with its three stages as separate gRPC services (``api-connector serve``), as
the Helm chart's ServiceAccount with only the chart's rules (like the first one).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.envtest import Cluster, start_clusters
from connector.envtest._cluster import free_port
from connector.kube.client import KubeClient
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    Resource,
)
from tests.e2e.conftest import CONNECTION, World
from tests.e2e.harness import (
    NOP,
    ROOT,
    ChartIdentity,
    apply,
    apply_file,
    binding,
    client,
    condition,
    connection,
    consistently,
    crd,
    established,
    eventually,
    get,
    install_connector_crds,
    kubeconfig_secret,
    load,
    reason_of,
    unique,
    warning_events,
)
from tests.e2e.spaces_proxy import SpacesProxy
from tests.support import go_tool

SECOND_CONSUMER = "e2e-consumer-b"


@dataclass
class Extra:
    provider_b: Cluster
    consumer_b: Cluster
    provider_b_kube: KubeClient
    consumer_b_kube: KubeClient
    connector_b: subprocess.Popen[bytes]
    metrics_url: str
    log: Path


@pytest.fixture(scope="module")
def extra(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Extra]:
    base = tmp_path_factory.mktemp("extra-clusters")
    provider_b, consumer_b = start_clusters(["provider-b", "consumer-b"], base)
    consumer_b_kube = client(consumer_b.kubeconfig)
    install_connector_crds(consumer_b_kube)
    apply_file(consumer_b_kube, "consumer/00-namespace.yaml")  # the Lease lives there
    chart = ChartIdentity(
        consumer_b_kube,
        go_tool("helm"),
        server=consumer_b.server,
        ca_pem=consumer_b.ca_file.read_bytes(),
    )
    chart.allow("nop.example.org", "nopresources")
    kubeconfig_b = chart.kubeconfig(base / "connector-b.kubeconfig")
    cli = str(Path(sys.executable).parent / "api-connector")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    stage_flags: list[str] = []
    for stage in ("crd-puller", "binder", "object-syncer"):
        address = f"127.0.0.1:{free_port()}"
        with (base / f"{stage}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [cli, "serve", stage, "--address", address, "--insecure"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        stage_flags.append(f"--{stage}={address}")
    for flag in stage_flags:
        host, port_text = flag.split("=", 1)[1].split(":")
        eventually(lambda h=host, p=int(port_text): _listening(h, p), timeout=30)
    port = free_port()
    log = base / "connector-b.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                cli,
                "run",
                "--kubeconfig",
                str(kubeconfig_b),
                "--consumer-cluster-name",
                SECOND_CONSUMER,
                "--poll-interval",
                "1h",
                "--workers",
                "2",
                "--metrics-address",
                f"127.0.0.1:{port}",
                "--leader-elect",
                *stage_flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    try:
        yield Extra(
            provider_b=provider_b,
            consumer_b=consumer_b,
            provider_b_kube=client(provider_b.kubeconfig),
            consumer_b_kube=consumer_b_kube,
            connector_b=proc,
            metrics_url=f"http://127.0.0.1:{port}",
            log=log,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stage_proc in procs:
            stage_proc.terminate()
            stage_proc.wait(timeout=20)
        provider_b.stop()
        consumer_b.stop()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


def test_the_run_command_serves_health_readiness_and_metrics(extra: Extra) -> None:
    eventually(lambda: _http(extra.metrics_url + "/readyz")[0] == 200, timeout=60)
    assert _http(extra.metrics_url + "/healthz")[0] == 200
    status, body = _http(extra.metrics_url + "/metrics")
    assert status == 200
    assert "api_connector_informer_healthy" in body


def test_two_connections_to_two_providers_sync_each_api_to_its_own_provider(
    world: World, extra: Extra, namespace: str
) -> None:
    group = f"{unique('pb')}.example.org"
    apply(extra.provider_b_kube, crd(group, "Widget"))
    world.chart.allow(group, "widgets")
    name = unique("provider-b")
    apply(world.consumer, kubeconfig_secret(name, extra.provider_b.kubeconfig.read_text()))
    apply(world.consumer, connection(name, name))
    apply(world.consumer, binding(group, name))
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "Bound")
    assert reason_of(world.consumer, CLUSTER_CONNECTIONS, CONNECTION) == "Ready"
    offered_b = world.consumer.get(CLUSTER_CONNECTIONS, name)["status"]["offeredAPIs"]
    assert [o["name"] for o in offered_b] == [f"widgets.{group}"]

    widgets = Resource(group, "v1alpha1", "widgets", "Widget", True)
    apply(
        world.consumer,
        {
            "apiVersion": f"{group}/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": namespace},
            "spec": {"coolField": "to provider b"},
        },
        widgets,
    )
    (nop,) = load("consumer/40-nopresource.yaml")
    nop["metadata"]["namespace"] = namespace
    apply(world.consumer, nop)
    eventually(lambda: get(extra.provider_b_kube, widgets, "w", namespace))
    eventually(lambda: get(world.provider, NOP, "my-resource", namespace))
    assert get(world.provider, widgets, "w", namespace) is None
    assert get(extra.provider_b_kube, NAMESPACES, namespace) is not None

    # Deleting the connection stops its watches and syncers.
    world.consumer.delete(CLUSTER_API_BINDINGS, group)
    world.consumer.delete(CLUSTER_CONNECTIONS, name)
    eventually(lambda: all(c != name for c, _ in world.connector.manager.supervisor.syncer_keys()))
    eventually(lambda: world.connector.manager.connection_controller.provider_client(name) is None)


def _second_consumer_binds_nop(world: World, extra: Extra) -> None:
    kube = extra.consumer_b_kube
    apply_file(kube, "consumer/00-namespace.yaml")
    apply_file(
        kube,
        "consumer/10-secret-kubeconfig.yaml",
        PROVIDER_KUBECONFIG_BASE64=base64.b64encode(world.provider_kubeconfig.encode()).decode(),
    )
    apply_file(kube, "consumer/20-clusterconnection.yaml")
    apply_file(kube, "consumer/30-clusterapibinding-group.yaml")
    eventually(
        lambda: reason_of(kube, CLUSTER_API_BINDINGS, "nop.example.org") == "Bound", timeout=60
    )


def test_a_second_consumer_with_the_same_object_gets_a_conflict_and_the_first_is_untouched(
    world: World, extra: Extra, namespace: str
) -> None:
    _second_consumer_binds_nop(world, extra)
    (first,) = load("consumer/40-nopresource.yaml")
    first["metadata"]["namespace"] = namespace
    apply(world.consumer, first)
    eventually(
        lambda: condition(get(world.consumer, NOP, "my-resource", namespace), "APIBound").get(
            "status"
        )
        == "True"
    )

    kube_b = extra.consumer_b_kube
    kube_b.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    second: dict[str, Any] = {**first, "spec": {**first["spec"], "coolField": "from B"}}
    apply(kube_b, second)

    def conflicted() -> bool:
        bound = condition(get(kube_b, NOP, "my-resource", namespace), "APIBound")
        return (bound.get("status"), bound.get("reason")) == ("False", "Conflict")

    eventually(conflicted)
    assert [e["reason"] for e in warning_events(kube_b, namespace, "my-resource")] == ["Conflict"]
    twin = world.provider.get(NOP, "my-resource", namespace)
    assert twin["spec"]["coolField"] == "Synchronized resource"
    assert (
        twin["metadata"]["labels"]["connect.upbound.io/consumer-cluster"] == world.consumer_cluster
    )
    assert condition(world.consumer.get(NOP, "my-resource", namespace), "APIBound")["status"] == (
        "True"
    )


def test_a_robot_token_connection_reaches_the_provider_through_spaces(
    world: World, tmp_path: Path
) -> None:
    token = "robot-" + unique("token")
    proxy = SpacesProxy(
        provider_kubeconfig=world.provider_kubeconfig,
        token=token,
        group="e2e-group",
        name="e2e-ctp",
        directory=tmp_path,
    ).start()
    name = unique("spaces")
    data = {
        "token": token,
        "organization": "e2e-org",
        "spacesBaseURL": proxy.base_url,
        "controlPlaneGroupName": "e2e-group",
        "controlPlaneName": "e2e-ctp",
        "caData": proxy.ca_pem,
    }

    def secret(values: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "upbound-system"},
            "type": "Opaque",
            "stringData": values,
        }

    try:
        apply(world.consumer, secret(data))
        apply(world.consumer, connection(name, name, kind="UpboundRobotToken", pull="Manual"))
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
        offered = world.consumer.get(CLUSTER_CONNECTIONS, name)["status"]["offeredAPIs"]
        assert "nopresources.nop.example.org" in [o["name"] for o in offered]

        # A wrong token is named as such, and fixing it recovers; nothing is withdrawn.
        world.consumer.delete(SECRETS, name, "upbound-system")
        apply(world.consumer, secret({**data, "token": "wrong-token"}))
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Unauthorized")
        offered_now = world.consumer.get(CLUSTER_CONNECTIONS, name)["status"]["offeredAPIs"]
        assert offered_now == offered
        apply(world.consumer, secret(data))
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
    finally:
        world.consumer.delete(CLUSTER_CONNECTIONS, name)
        proxy.stop()


def test_the_run_command_refuses_a_cluster_without_the_connector_crds(extra: Extra) -> None:
    # provider-b has never had the connect.upbound.io CRDs installed.
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "api-connector"),
            "run",
            "--kubeconfig",
            str(extra.provider_b.kubeconfig),
            "--consumer-cluster-name",
            "no-crds",
            "--metrics-address",
            "",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "install the connector's CRDs" in result.stderr


def test_an_api_two_providers_offer_is_synced_through_the_first_binding_only(
    world: World, extra: Extra, namespace: str
) -> None:
    group = f"{unique('twice')}.example.org"
    gadgets = Resource(group, "v1alpha1", "gadgets", "Gadget", True)
    crd_name = f"gadgets.{group}"
    world.chart.allow(group, "gadgets")
    # Both providers offer a CRD of the same name; the shared connection installs it first.
    apply(world.provider, crd(group, "Gadget"))
    eventually(lambda: established(world.consumer, crd_name))
    apply(extra.provider_b_kube, crd(group, "Gadget"))
    name_b = unique("twice-b")
    apply(world.consumer, kubeconfig_secret(name_b, extra.provider_b.kubeconfig.read_text()))
    apply(world.consumer, connection(name_b, name_b))
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name_b) == "Ready")

    first = group  # a ClusterAPIBinding: every namespace
    apply(world.consumer, binding(first, CONNECTION))
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, first) == "Bound")
    second = crd_name  # an APIBinding in the test's namespace, through the other provider
    apply(world.consumer, binding(second, name_b, namespace=namespace))

    def ready_of_second() -> dict[str, Any]:
        return condition(get(world.consumer, API_BINDINGS, second, namespace), "Ready")

    # Pulled, the CRD belongs to the first connection: the second cannot even install it.
    eventually(lambda: ready_of_second().get("reason") == "Conflict")
    assert f"belongs to connection {CONNECTION}" in ready_of_second()["message"]

    # Not pulled, the second connection offers it too: the binding that came first keeps it.
    apply(world.consumer, connection(name_b, name_b, pull="Manual"))
    eventually(
        lambda: f"synced by ClusterAPIBinding {first}" in ready_of_second().get("message", "")
    )
    ready = ready_of_second()
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    assert f"through ClusterConnection {CONNECTION}" in ready["message"]
    assert f"not synced through ClusterConnection {name_b}" in ready["message"]
    assert "Conflict" in [e["reason"] for e in warning_events(world.consumer, namespace, second)]
    bound_second = get(world.consumer, API_BINDINGS, second, namespace)
    assert bound_second["status"].get("boundResources") == []
    syncers = world.connector.manager.supervisor.syncer_keys()
    assert (CONNECTION, crd_name) in syncers
    assert (name_b, crd_name) not in syncers

    gadget = {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "Gadget",
        "metadata": {"name": "g", "namespace": namespace},
        "spec": {"coolField": "one provider only"},
    }
    apply(world.consumer, gadget, gadgets)
    eventually(lambda: get(world.provider, gadgets, "g", namespace))
    consistently(lambda: get(extra.provider_b_kube, gadgets, "g", namespace) is None, duration=1.5)

    # The first binding goes: the second takes over, and at no moment do both sync.
    seen: list[list[tuple[str, str]]] = []
    stop = threading.Event()

    def watch_syncers() -> None:
        while not stop.is_set():
            seen.append(world.connector.manager.supervisor.syncer_keys())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_syncers, daemon=True)
    watcher.start()
    try:
        world.consumer.delete(CLUSTER_API_BINDINGS, first)
        eventually(lambda: ready_of_second().get("reason") == "Bound")
        eventually(lambda: get(extra.provider_b_kube, gadgets, "g", namespace))
    finally:
        stop.set()
        watcher.join()
    both = [keys for keys in seen if {(CONNECTION, crd_name), (name_b, crd_name)} <= set(keys)]
    assert both == [], "synced through both connections at once"
    eventually(
        lambda: condition(get(world.consumer, gadgets, "g", namespace), "APIBound").get("status")
        == "True"
    )

    world.consumer.delete(gadgets, "g", namespace)
    eventually(lambda: get(world.consumer, gadgets, "g", namespace) is None)
    world.consumer.delete(API_BINDINGS, second, namespace)
    world.consumer.delete(CLUSTER_CONNECTIONS, name_b)
    world.consumer.delete(SECRETS, name_b, "upbound-system")


def test_a_provider_that_goes_down_is_reported_unreachable_and_nothing_is_deleted(
    world: World, extra: Extra
) -> None:
    group = f"{unique('down')}.example.org"
    apply(extra.provider_b_kube, crd(group, "Gear"))
    name = unique("going-down")
    apply(world.consumer, kubeconfig_secret(name, extra.provider_b.kubeconfig.read_text()))
    apply(world.consumer, connection(name, name))
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
    offered = world.consumer.get(CLUSTER_CONNECTIONS, name)["status"]["offeredAPIs"]
    assert f"gears.{group}" in [o["name"] for o in offered]

    # A real outage: the provider's API server and etcd stop. No Secret changes, so only
    # the broken watch can tell the connector.
    extra.provider_b.stop()
    eventually(
        lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "ProviderUnreachable"
    )
    after = world.consumer.get(CLUSTER_CONNECTIONS, name)["status"]["offeredAPIs"]
    assert after == offered
    assert get(world.consumer, CUSTOM_RESOURCE_DEFINITIONS, f"gears.{group}") is not None
    world.consumer.delete(CLUSTER_CONNECTIONS, name)


def test_the_run_command_stops_cleanly_on_sigterm(extra: Extra) -> None:
    # Last in the module: the fixture's teardown would do the same, this asserts it.
    extra.connector_b.send_signal(signal.SIGTERM)
    assert extra.connector_b.wait(timeout=20) == 0, extra.log.read_text()[-3000:]
