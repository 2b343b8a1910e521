"""The walkthrough, set up once for the e2e tests on the shared consumer and provider clusters.

The connector runs in this process (``Manager``) with a one-hour poll interval, so every
behaviour a test observes arrived through a watch. It runs as exactly the Helm chart's
identity: the chart, rendered by the real helm, gives its ServiceAccount its RBAC in the
consumer, and the connector uses a token of that ServiceAccount with RBAC enforced. Tests set
up their fixtures as the admin; a test that binds an API of its own first extends the
chart's ``boundAPIs`` with it (``world.chart.allow``), as a user would with `helm upgrade`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from connector.envtest import Cluster
from connector.kube.client import KubeClient
from connector.kube.resources import CLUSTER_CONNECTIONS, CUSTOM_RESOURCE_DEFINITIONS
from tests.e2e.harness import (
    ChartIdentity,
    RunningConnector,
    apply_file,
    client,
    eventually,
    get,
    install_connector_crds,
    reason_of,
)
from tests.support import go_tool

CONSUMER_CLUSTER = "e2e-consumer"
CONNECTION = "provider-connection"
#: How often a binding with a missing grant is re-checked (30 s in production): short, so
#: that a test granting a permission sees the recovery quickly.
PERMISSION_CHECK_INTERVAL = 1.0


@dataclass
class World:
    consumer: KubeClient
    provider: KubeClient
    connector: RunningConnector
    consumer_cluster: str
    provider_kubeconfig: str
    chart: ChartIdentity


# Package scope: the connector stops when the e2e tests are done, so that its threads and
# logs do not run on into other test directories.
@pytest.fixture(scope="package")
def world(
    clusters: dict[str, Cluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    consumer, provider = clusters["consumer"], clusters["provider"]
    consumer_kube = client(consumer.kubeconfig)
    provider_kube = client(provider.kubeconfig)
    provider_kubeconfig = provider.kubeconfig.read_text()
    install_connector_crds(consumer_kube)
    apply_file(provider_kube, "provider/nopresources.nop.example.org.yaml")
    apply_file(consumer_kube, "consumer/00-namespace.yaml")
    apply_file(
        consumer_kube,
        "consumer/10-secret-kubeconfig.yaml",
        PROVIDER_KUBECONFIG_BASE64=base64.b64encode(provider_kubeconfig.encode()).decode(),
    )
    apply_file(consumer_kube, "consumer/20-clusterconnection.yaml")
    apply_file(consumer_kube, "consumer/30-clusterapibinding-group.yaml")
    chart = ChartIdentity(
        consumer_kube, go_tool("helm"), server=consumer.server, ca_pem=consumer.ca_file.read_bytes()
    )
    chart.allow("nop.example.org", "nopresources")
    kubeconfig = chart.kubeconfig(tmp_path_factory.mktemp("connector") / "connector.kubeconfig")
    running = RunningConnector(
        kubeconfig,
        consumer_cluster=CONSUMER_CLUSTER,
        permission_check_interval=PERMISSION_CHECK_INTERVAL,
    ).start()
    try:
        eventually(lambda: reason_of(consumer_kube, CLUSTER_CONNECTIONS, CONNECTION) == "Ready")
        eventually(
            lambda: get(consumer_kube, CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org")
        )
        yield World(
            consumer=consumer_kube,
            provider=provider_kube,
            connector=running,
            consumer_cluster=CONSUMER_CLUSTER,
            provider_kubeconfig=provider_kubeconfig,
            chart=chart,
        )
    finally:
        running.stop()
        chart.remove()
