"""Every manifest shape Upbound documented for its API Connector applies unchanged and works.

One row per shape, from each version of Upbound's docs and from what its ``up`` CLI wrote:
the manifests are applied as a user would (``kubectl apply``: server-side, as they are,
placeholders filled in), and each row must end with the connection Ready, the binding
Ready, and the walkthrough's ``NopResource`` synced to the provider with ``APIBound=True``.
Between rows, everything a row created is deleted again, the pulled CRD too, so that each
row starts from an empty consumer.

The clusters are this module's own: the rows reuse the documented names
(``provider-connection``, ``spaces-secret``...), which the shared e2e world uses too.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from connector.envtest import start_clusters
from connector.kube.client import KubeClient
from connector.kube.errors import NotFoundError
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    Resource,
)
from functions.common import MANAGED_LABEL, is_subset
from tests.e2e.harness import (
    NOP,
    ChartIdentity,
    RunningConnector,
    apply_file,
    client,
    condition,
    eventually,
    get,
    install_connector_crds,
    load,
    resource_for,
)
from tests.e2e.spaces_proxy import SpacesProxy
from tests.support import go_tool

CONSUMER_CLUSTER = "docs-consumer"
SPACES_TOKEN = "docs-robot-token"
SPACES_GROUP = "docs-group"
SPACES_CONTROL_PLANE = "docs-ctp"


@dataclass(frozen=True)
class Row:
    reason: str
    #: The manifests, as the docs show them, with ``${...}`` where a user fills a value in.
    manifests: str
    connection: str
    #: (kind, name, namespace) of the binding the row creates.
    binding: tuple[Resource, str, str | None]


KUBECONFIG_SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: provider-kubeconfig
  namespace: upbound-system
type: Opaque
data:
  kubeconfig: ${KUBECONFIG_BASE64}
"""
KUBECONFIG_CONNECTION = """
apiVersion: connect.upbound.io/v1alpha1
kind: ClusterConnection
metadata:
  name: provider-connection
  namespace: upbound-system
spec:
  secretRef:
    kind: KubeConfig
    name: provider-kubeconfig
    namespace: upbound-system
  crdManagement:
    pullBehavior: Pull
"""


def cluster_binding(name: str, connection: str) -> str:
    return f"""
apiVersion: connect.upbound.io/v1alpha1
kind: ClusterAPIBinding
metadata:
  name: {name}
spec:
  connectionRef:
    kind: ClusterConnection
    name: {connection}
"""


ROWS = [
    Row(
        "early docs: kubeconfig Secret, a connection with a namespace, a binding named after "
        "the API group",
        "---".join(
            [
                KUBECONFIG_SECRET,
                KUBECONFIG_CONNECTION,
                cluster_binding("nop.example.org", "provider-connection"),
            ]
        ),
        "provider-connection",
        (CLUSTER_API_BINDINGS, "nop.example.org", None),
    ),
    Row(
        "later docs: a binding named after the CRD, <resource>.<group>",
        "---".join(
            [
                KUBECONFIG_SECRET,
                KUBECONFIG_CONNECTION,
                cluster_binding("nopresources.nop.example.org", "provider-connection"),
            ]
        ),
        "provider-connection",
        (CLUSTER_API_BINDINGS, "nopresources.nop.example.org", None),
    ),
    Row(
        "the robot-token Secret (stringData, its five keys) and spaces-connection",
        # caData is the one addition: the test's Spaces endpoint has its own CA, where a
        # real one has a certificate the system trusts.
        """
apiVersion: v1
kind: Secret
metadata:
  name: spaces-secret
  namespace: upbound-system
type: Opaque
stringData:
  token: ${SPACES_TOKEN}
  organization: docs-org
  spacesBaseURL: ${SPACES_BASE_URL}
  controlPlaneGroupName: ${SPACES_GROUP}
  controlPlaneName: ${SPACES_CONTROL_PLANE}
  caData: ${SPACES_CA}
---
apiVersion: connect.upbound.io/v1alpha1
kind: ClusterConnection
metadata:
  name: spaces-connection
  namespace: upbound-system
spec:
  secretRef:
    kind: UpboundRobotToken
    name: spaces-secret
    namespace: upbound-system
  crdManagement:
    pullBehavior: Pull
---"""
        + cluster_binding("nop.example.org", "spaces-connection"),
        "spaces-connection",
        (CLUSTER_API_BINDINGS, "nop.example.org", None),
    ),
    Row(
        "what `up controlplane api-connector install` wrote: Secret and connection named after "
        "the control plane, labelled connect.upbound.io/connector-secret, base64 data",
        """
apiVersion: v1
kind: Secret
metadata:
  name: api-connector-docs-ctp
  namespace: upbound-system
  labels:
    connect.upbound.io/connector-secret: "true"
data:
  token: ${SPACES_TOKEN_BASE64}
  controlPlaneGroupName: ${SPACES_GROUP_BASE64}
  controlPlaneName: ${SPACES_CONTROL_PLANE_BASE64}
  organization: ZG9jcy1vcmc=
  spacesBaseURL: ${SPACES_BASE_URL_BASE64}
  caData: ${SPACES_CA_BASE64}
---
apiVersion: connect.upbound.io/v1alpha1
kind: ClusterConnection
metadata:
  name: api-connector-docs-ctp
  namespace: upbound-system
  labels:
    connect.upbound.io/connector-secret: "true"
spec:
  secretRef:
    kind: UpboundRobotToken
    name: api-connector-docs-ctp
    namespace: upbound-system
  crdManagement:
    pullBehavior: Pull
---"""
        + cluster_binding("nopresources.nop.example.org", "api-connector-docs-ctp"),
        "api-connector-docs-ctp",
        (CLUSTER_API_BINDINGS, "nopresources.nop.example.org", None),
    ),
    Row(
        "an APIBinding, namespaced, named after the API group",
        "---".join(
            [
                KUBECONFIG_SECRET,
                KUBECONFIG_CONNECTION,
                """
apiVersion: connect.upbound.io/v1alpha1
kind: APIBinding
metadata:
  name: nop.example.org
  namespace: default
spec:
  connectionRef:
    kind: ClusterConnection
    name: provider-connection
""",
            ]
        ),
        "provider-connection",
        (API_BINDINGS, "nop.example.org", "default"),
    ),
]


@dataclass
class Docs:
    consumer: KubeClient
    provider: KubeClient
    values: dict[str, str]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    base = tmp_path_factory.mktemp("docs")
    consumer_cluster, provider_cluster = start_clusters(("docs-consumer", "docs-provider"), base)
    connector: RunningConnector | None = None
    proxy: SpacesProxy | None = None
    chart: ChartIdentity | None = None
    try:
        consumer, provider = (
            client(consumer_cluster.kubeconfig),
            client(provider_cluster.kubeconfig),
        )
        apply_file(provider, "provider/nopresources.nop.example.org.yaml")
        install_connector_crds(consumer)
        apply_file(consumer, "consumer/00-namespace.yaml")
        provider_kubeconfig = provider_cluster.kubeconfig.read_text()
        proxy = SpacesProxy(
            provider_kubeconfig=provider_kubeconfig,
            token=SPACES_TOKEN,
            group=SPACES_GROUP,
            name=SPACES_CONTROL_PLANE,
            directory=base,
        ).start()
        plain = {
            "KUBECONFIG": provider_kubeconfig,
            "SPACES_TOKEN": SPACES_TOKEN,
            "SPACES_BASE_URL": proxy.base_url,
            "SPACES_GROUP": SPACES_GROUP,
            "SPACES_CONTROL_PLANE": SPACES_CONTROL_PLANE,
            "SPACES_CA": proxy.ca_pem,
        }
        values = {k: v for k, v in plain.items() if k not in {"KUBECONFIG", "SPACES_CA"}}
        # A JSON string is a YAML double-quoted scalar: the PEM's newlines survive.
        values["SPACES_CA"] = json.dumps(proxy.ca_pem)
        values.update(
            {f"{k}_BASE64": base64.b64encode(v.encode()).decode() for k, v in plain.items()}
        )
        chart = ChartIdentity(
            consumer,
            go_tool("helm"),
            server=consumer_cluster.server,
            ca_pem=consumer_cluster.ca_file.read_bytes(),
        )
        chart.allow("nop.example.org", "nopresources")
        connector = RunningConnector(
            chart.kubeconfig(base / "connector.kubeconfig"), consumer_cluster=CONSUMER_CLUSTER
        ).start()
        yield Docs(consumer=consumer, provider=provider, values=values)
    finally:
        if connector is not None:
            connector.stop()
        if proxy is not None:
            proxy.stop()
        consumer_cluster.stop()
        provider_cluster.stop()


def documents(row: Row, values: dict[str, str]) -> list[dict[str, Any]]:
    text = string.Template(row.manifests).substitute(values)
    return [d for d in yaml.safe_load_all(text) if d]


def ready(kube: KubeClient, res: Resource, name: str, namespace: str | None = None) -> bool:
    return condition(get(kube, res, name, namespace), "Ready").get("status") == "True"


def gone(kube: KubeClient, res: Resource, name: str, namespace: str | None = None) -> bool:
    return get(kube, res, name, namespace) is None


def delete(kube: KubeClient, res: Resource, name: str, namespace: str | None = None) -> None:
    try:
        kube.delete(res, name, namespace)
    except NotFoundError:
        return
    eventually(lambda: gone(kube, res, name, namespace), timeout=30)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.reason)
def test_a_documented_manifest_applies_unchanged_and_works(docs: Docs, row: Row) -> None:
    manifests = documents(row, docs.values)
    walkthrough_object = load("consumer/40-nopresource.yaml")[0]
    try:
        for doc in manifests:
            applied = docs.consumer.apply(resource_for(doc), doc, field_manager="kubectl")
            # Accepted as it is: the server kept every field of the spec it was given.
            assert is_subset(doc.get("spec") or {}, applied.get("spec") or {}), applied
        eventually(lambda: ready(docs.consumer, CLUSTER_CONNECTIONS, row.connection))
        eventually(
            lambda: get(docs.consumer, CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org")
        )
        res, name, namespace = row.binding
        eventually(lambda: ready(docs.consumer, res, name, namespace))

        docs.consumer.apply(NOP, walkthrough_object, field_manager="kubectl")
        eventually(
            lambda: condition(get(docs.consumer, NOP, "my-resource", "default"), "APIBound").get(
                "status"
            )
            == "True"
        )
        twin = docs.provider.get(NOP, "my-resource", "default")
        assert twin["metadata"]["labels"][MANAGED_LABEL] == "true"
        assert twin["spec"]["coolField"] == "Synchronized resource"
    finally:
        # The object first, while its binding still syncs (its twin goes with it).
        delete(docs.consumer, NOP, "my-resource", "default")
        for doc in reversed(manifests):
            meta = doc["metadata"]
            namespaced = resource_for(doc).namespaced
            delete(
                docs.consumer,
                resource_for(doc),
                meta["name"],
                meta.get("namespace") if namespaced else None,
            )
        delete(docs.consumer, CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org")
