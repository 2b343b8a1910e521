"""The Crossplane tier: the connector against a provider that runs real Crossplane.

One Crossplane for the whole session (``crossplane_provider``, shared with
``tests/integration/test_crossplane.py``), a consumer cluster of this tier's own (the shared
consumer holds the hand-made ``nopresources.nop.example.org`` of the e2e tier, a CRD of the
same name), and the connector in this process as the Helm chart's identity, as in
``tests/e2e``. The provider publishes the walkthrough's APIs from ``examples/crossplane/``:
the claim XRD ``xnopresources.nop.example.org`` and the v2 namespaced XRD
``nopapps.app.example.org``; the consumer binds the group ``nop.example.org``. Each test
works in a fresh namespace (``xp_namespace``).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import Cluster, Crossplane, start_clusters
from connector.kube.client import KubeClient
from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    COMPOSITIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    XRDS,
    XRDS_V2,
    Resource,
)
from tests.e2e.harness import (
    ChartIdentity,
    RunningConnector,
    apply,
    apply_file,
    client,
    condition,
    eventually,
    get,
    install_connector_crds,
    reason_of,
)
from tests.support import go_tool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "crossplane"
CONSUMER_CLUSTER = "xp-consumer"
CONNECTION = "provider-connection"
NOP = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", True)
XNOP = Resource("nop.example.org", "v1alpha1", "xnopresources", "XNopResource", False)
NOP_APPS = Resource("app.example.org", "v1alpha1", "nopapps", "NopApp", True)
#: Crossplane composing through a function is slower than a bare apiserver.
XP_TIMEOUT = 90.0


@dataclass
class XpWorld:
    consumer: KubeClient
    provider: KubeClient
    crossplane: Crossplane
    connector: RunningConnector
    chart: ChartIdentity


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def publish(provider: KubeClient) -> None:
    """Apply the examples' XRDs and Compositions and wait until Crossplane serves them."""
    for res, path in (
        (XRDS, EXAMPLES / "nop" / "xrd.yaml"),
        (COMPOSITIONS, EXAMPLES / "nop" / "composition.yaml"),
        (XRDS_V2, EXAMPLES / "namespaced" / "xrd.yaml"),
        (COMPOSITIONS, EXAMPLES / "namespaced" / "composition.yaml"),
    ):
        provider.apply(res, load(path), "xp-test")
    for crd in ("nopresources.nop.example.org", "nopapps.app.example.org"):
        eventually(
            lambda c=crd: condition(  # type: ignore[misc]
                get(provider, CUSTOM_RESOURCE_DEFINITIONS, c), "Established"
            ).get("status")
            == "True",
            what=f"Crossplane to serve {crd}",
            timeout=XP_TIMEOUT,
        )


@pytest.fixture(scope="package")
def xp_consumer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    [cluster] = start_clusters(["consumer"], tmp_path_factory.mktemp("xp-consumer"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="package")
def xp(
    crossplane_provider: Crossplane,
    xp_consumer: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[XpWorld]:
    consumer = client(xp_consumer.kubeconfig)
    provider = client(crossplane_provider.cluster.kubeconfig)
    publish(provider)
    install_connector_crds(consumer)
    apply_file(consumer, "consumer/00-namespace.yaml")
    kubeconfig = crossplane_provider.cluster.kubeconfig.read_bytes()
    apply_file(
        consumer,
        "consumer/10-secret-kubeconfig.yaml",
        PROVIDER_KUBECONFIG_BASE64=base64.b64encode(kubeconfig).decode(),
    )
    apply_file(consumer, "consumer/20-clusterconnection.yaml")
    apply_file(consumer, "consumer/30-clusterapibinding-group.yaml")
    chart = ChartIdentity(
        consumer,
        go_tool("helm"),
        server=xp_consumer.server,
        ca_pem=xp_consumer.ca_file.read_bytes(),
    )
    chart.allow("nop.example.org", "nopresources")
    chart.allow("app.example.org", "nopapps")
    connector_kubeconfig = chart.kubeconfig(tmp_path_factory.mktemp("xp") / "connector.kubeconfig")
    running = RunningConnector(
        connector_kubeconfig, consumer_cluster=CONSUMER_CLUSTER, permission_check_interval=1.0
    ).start()
    try:
        eventually(lambda: reason_of(consumer, CLUSTER_CONNECTIONS, CONNECTION) == "Ready")
        eventually(
            lambda: reason_of(consumer, CLUSTER_API_BINDINGS, "nop.example.org") == "Bound",
            timeout=XP_TIMEOUT,
        )
        yield XpWorld(consumer, provider, crossplane_provider, running, chart)
    finally:
        running.stop()
        chart.remove()


@pytest.fixture
def xp_namespace(request: pytest.FixtureRequest, xp: XpWorld) -> Iterator[str]:
    """A fresh namespace in the consumer (the connector creates it in the provider)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 'xp'}-{uuid.uuid4().hex[:6]}"
    apply(xp.consumer, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    xp.consumer.delete(NAMESPACES, name)
