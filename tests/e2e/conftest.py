"""The walkthrough, set up once for the e2e tests on the shared consumer and provider clusters.

The connector runs in this process (``Manager``) with a one-hour poll interval, so every
behaviour a test observes arrived through a watch.
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
    RunningConnector,
    apply_file,
    client,
    eventually,
    get,
    install_connector_crds,
    reason_of,
)

CONSUMER_CLUSTER = "e2e-consumer"
CONNECTION = "provider-connection"


@dataclass
class World:
    consumer: KubeClient
    provider: KubeClient
    connector: RunningConnector
    consumer_cluster: str
    provider_kubeconfig: str


# Package scope: the connector stops when the e2e tests are done, so that its threads and
# logs do not run on into other test directories.
@pytest.fixture(scope="package")
def world(clusters: dict[str, Cluster]) -> Iterator[World]:
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
    running = RunningConnector(consumer.kubeconfig, consumer_cluster=CONSUMER_CLUSTER).start()
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
        )
    finally:
        running.stop()
