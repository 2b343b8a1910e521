"""CRD delivery through real Crossplane: the crd-puller's Composition, provider-kubernetes and
a consumer cluster, as a platform team would run them.

The session's Crossplane (``crossplane_provider``) gets provider-kubernetes, installed from
its package through the External runtime and run as a local process; a consumer cluster of
this module's own is reached through the ProviderConfig ``consumer`` (an identity there that
may read, create and update CRDs, and nothing else). The provider publishes two bindable
CRDs of a group of this module's own; the consumer already holds a CRD of one of their
names that no connection owns. Then the examples' XRD, Composition and XR
(``examples/functions/crd-puller``) are applied unchanged, and everything after that is
Crossplane's, the function's and provider-kubernetes' doing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import (
    PROVIDER_KUBERNETES,
    Cluster,
    Crossplane,
    connect_cluster,
    start_clusters,
)
from connector.envtest._crossplane import NAMESPACE
from connector.kube import CUSTOM_RESOURCE_DEFINITIONS, KubeClient, NotFoundError, Resource
from connector.kube.resources import COMPOSITIONS, XRDS_V2
from tests.e2e.harness import client, condition, consistently, crd, established, eventually, get

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "functions" / "crd-puller"
CRD_PULLS = Resource("connector.example.org", "v1alpha1", "crdpulls", "CRDPull", False)
OBJECTS = Resource("kubernetes.crossplane.io", "v1alpha2", "objects", "Object", False)
CONNECTION_LABEL = "connect.upbound.io/connection"
#: Crossplane, the function and provider-kubernetes in a row, on 2 busy cores.
TIMEOUT = 90.0


@dataclass
class Delivery:
    provider: KubeClient
    consumer: KubeClient
    group: str
    xr: str

    @property
    def widgets(self) -> str:
        return f"widgets.{self.group}"

    @property
    def gadgets(self) -> str:
        return f"gadgets.{self.group}"

    def xr_object(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.provider.get(CRD_PULLS, self.xr)
        return obj

    def composed(self, crd_name: str) -> dict[str, Any] | None:
        """The provider-kubernetes Object the XR composed for ``crd_name``."""
        for ref in (self.xr_object().get("spec") or {}).get("crossplane", {}).get(
            "resourceRefs"
        ) or []:
            if ref.get("kind") != "Object":
                continue
            obj = get(self.provider, OBJECTS, ref["name"])
            manifest = ((obj or {}).get("spec") or {}).get("forProvider", {}).get("manifest")
            if (manifest or {}).get("metadata", {}).get("name") == crd_name:
                return dict(obj)
        return None


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLE / name).read_text())
    return loaded


def foreign_crd(group: str) -> dict[str, Any]:
    """The consumer's own CRD of the name of a provider one: no connection's label."""
    obj = crd(group, "Gadget", fields=("localField",), bindable=False)
    obj["metadata"]["labels"] = {"team": "payments"}
    return obj


@pytest.fixture(scope="module")
def crd_consumer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    [cluster] = start_clusters(
        ["consumer"], tmp_path_factory.mktemp("crd-consumer"), controller_manager=False
    )
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def delivery(crossplane_provider: Crossplane, crd_consumer: Cluster) -> Iterator[Delivery]:
    if not crossplane_provider.provider_packages:
        crossplane_provider.start_providers([PROVIDER_KUBERNETES])
    provider = client(crossplane_provider.cluster.kubeconfig)
    consumer = client(crd_consumer.kubeconfig)
    with crossplane_provider.cluster.kube_client(kubeconfig=crossplane_provider.kubeconfig) as kube:
        connect_cluster(kube, crd_consumer, namespace=NAMESPACE)
    world = Delivery(provider, consumer, f"delivery-{uuid.uuid4().hex[:6]}.example.org", "")
    provider.apply(CUSTOM_RESOURCE_DEFINITIONS, crd(world.group, "Widget"), "xp-test")
    provider.apply(CUSTOM_RESOURCE_DEFINITIONS, crd(world.group, "Gadget"), "xp-test")
    consumer.apply(CUSTOM_RESOURCE_DEFINITIONS, foreign_crd(world.group), "xp-test")
    # What a platform team applies: the examples, unchanged.
    provider.apply(XRDS_V2, load("xrd.yaml"), "xp-test")
    provider.apply(COMPOSITIONS, load("composition.yaml"), "xp-test")
    eventually(
        lambda: established(provider, "crdpulls.connector.example.org"),
        what="Crossplane to serve the CRDPull XRD",
        timeout=TIMEOUT,
    )
    xr = load("xr.yaml")
    provider.apply(CRD_PULLS, xr, "xp-test")
    world.xr = xr["metadata"]["name"]
    try:
        yield world
    finally:
        with contextlib.suppress(NotFoundError):
            provider.delete(CRD_PULLS, world.xr)
        for name in (world.widgets, world.gadgets):
            with contextlib.suppress(NotFoundError):
                provider.delete(CUSTOM_RESOURCE_DEFINITIONS, name)


def test_a_bindable_provider_crd_is_delivered_to_the_consumer(delivery: Delivery) -> None:
    def delivered() -> dict[str, Any] | None:
        got = get(delivery.consumer, CUSTOM_RESOURCE_DEFINITIONS, delivery.widgets)
        return got if established(delivery.consumer, delivery.widgets) else None

    got = eventually(delivered, what="the Widget CRD in the consumer", timeout=TIMEOUT)
    assert got["metadata"]["labels"][CONNECTION_LABEL] == "provider-connection"
    assert "connect.upbound.io/bindable" not in got["metadata"]["labels"]
    # The composed Object manages it, Synced and Ready (the consumer serves the API), and
    # never deletes it.
    obj = eventually(
        lambda: (
            o
            if (o := delivery.composed(delivery.widgets))
            and condition(o, "Ready").get("status") == "True"
            else None
        ),
        what="the Widget's Object Ready",
        timeout=TIMEOUT,
    )
    assert condition(obj, "Synced").get("status") == "True"
    assert obj["spec"]["managementPolicies"] == ["Observe", "Create", "Update"]
    assert obj["spec"]["deletionPolicy"] == "Orphan"
    offered = eventually(
        lambda: [
            a["name"]
            for a in (delivery.xr_object().get("status") or {}).get("offeredAPIs") or []
            if a["name"] == delivery.widgets
        ],
        what="the Widget API offered in the XR status",
        timeout=TIMEOUT,
    )
    assert offered == [delivery.widgets]


def test_a_conflicting_consumer_crd_is_reported_and_never_overwritten(delivery: Delivery) -> None:
    before = delivery.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, delivery.gadgets)

    def reported() -> dict[str, Any] | None:
        xr = delivery.xr_object()
        synced = condition(xr, "CRDsSynced")
        return xr if synced.get("reason") == "Conflict" else None

    xr = eventually(reported, what="the conflict on the XR", timeout=TIMEOUT)
    synced = condition(xr, "CRDsSynced")
    assert synced["status"] == "False"
    assert delivery.gadgets in synced["message"]
    conflicts = {c["name"]: c["message"] for c in xr["status"].get("conflicts") or []}
    assert conflicts[delivery.gadgets] == (
        f"CRD {delivery.gadgets} already exists in the consumer and is not managed by a connection"
    )
    assert delivery.gadgets not in [a["name"] for a in xr["status"].get("offeredAPIs") or []]
    # The XR is not Ready, and says which composed resource holds it back.
    ready = condition(xr, "Ready")
    assert ready.get("status") == "False"
    assert f"crd-{delivery.gadgets}" in ready.get("message", "")
    # Its Object only looks.
    obj = delivery.composed(delivery.gadgets)
    assert obj is not None
    assert obj["spec"]["managementPolicies"] == ["Observe"]
    # The consumer's CRD is untouched, then and a while later.
    consistently(
        lambda: delivery.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, delivery.gadgets)["metadata"][
            "resourceVersion"
        ]
        == before["metadata"]["resourceVersion"],
        duration=3.0,
        interval=0.5,
    )
    after = delivery.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, delivery.gadgets)
    assert CONNECTION_LABEL not in after["metadata"]["labels"]
    assert "localField" in str(after["spec"]["versions"])


def test_once_the_foreign_crd_is_gone_the_api_is_delivered_and_the_xr_is_ready(
    delivery: Delivery,
) -> None:
    eventually(
        lambda: condition(delivery.xr_object(), "CRDsSynced").get("reason") == "Conflict",
        what="the conflict on the XR",
        timeout=TIMEOUT,
    )
    delivery.consumer.delete(CUSTOM_RESOURCE_DEFINITIONS, delivery.gadgets)

    def taken_over() -> dict[str, Any] | None:
        got = get(delivery.consumer, CUSTOM_RESOURCE_DEFINITIONS, delivery.gadgets)
        labels = ((got or {}).get("metadata") or {}).get("labels") or {}
        if labels.get(CONNECTION_LABEL) != "provider-connection":
            return None
        return got if established(delivery.consumer, delivery.gadgets) else None

    got = eventually(taken_over, what="the connection's Gadget CRD", timeout=TIMEOUT)
    assert "localField" not in str(got["spec"]["versions"])
    # Every offered API is served in the consumer: the XR is Ready, with no conflict left.
    xr = eventually(
        lambda: (
            x if condition(x := delivery.xr_object(), "Ready").get("status") == "True" else None
        ),
        what="the XR Ready",
        timeout=TIMEOUT,
    )
    assert condition(xr, "CRDsSynced")["status"] == "True"
    assert xr["status"]["conflicts"] == []
    assert {delivery.widgets, delivery.gadgets} <= {a["name"] for a in xr["status"]["offeredAPIs"]}


def test_a_changed_provider_crd_reaches_the_consumer(delivery: Delivery) -> None:
    eventually(
        lambda: established(delivery.consumer, delivery.widgets),
        what="the Widget CRD in the consumer",
        timeout=TIMEOUT,
    )
    before = delivery.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, delivery.widgets)
    assert [v["name"] for v in before["spec"]["versions"]] == ["v1alpha1"]
    changed = crd(
        delivery.group, "Widget", versions=("v1alpha1", "v1beta1"), fields=("coolField", "size")
    )
    # Keep v1alpha1 the storage version: the consumer's copy stores what it stored.
    changed["spec"]["versions"][0]["storage"] = True
    changed["spec"]["versions"][1]["storage"] = False
    delivery.provider.apply(CUSTOM_RESOURCE_DEFINITIONS, changed, "xp-test")

    def updated() -> dict[str, Any] | None:
        got = get(delivery.consumer, CUSTOM_RESOURCE_DEFINITIONS, delivery.widgets)
        versions = {v["name"]: v for v in (got or {}).get("spec", {}).get("versions", [])}
        if "v1beta1" not in versions:
            return None
        return got

    # Crossplane runs the function again within the Composition's pollInterval (10 s).
    got = eventually(updated, what="the new version in the consumer's CRD", timeout=TIMEOUT)
    spec_fields = got["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec_fields["properties"]) == {"coolField", "size"}
    assert got["metadata"]["labels"][CONNECTION_LABEL] == "provider-connection"
    offered = eventually(
        lambda: [
            a
            for a in (delivery.xr_object().get("status") or {}).get("offeredAPIs") or []
            if a["name"] == delivery.widgets and a["versions"] == ["v1alpha1", "v1beta1"]
        ],
        what="both versions offered in the XR status",
        timeout=TIMEOUT,
    )
    assert offered[0]["storageVersion"] == "v1alpha1"


def test_deleting_the_xr_leaves_the_delivered_crds_in_the_consumer(delivery: Delivery) -> None:
    eventually(
        lambda: delivery.composed(delivery.widgets),
        what="the Widget's Object",
        timeout=TIMEOUT,
    )
    objects = [
        ref["name"]
        for ref in delivery.xr_object()["spec"]["crossplane"]["resourceRefs"]
        if ref.get("kind") == "Object"
    ]
    delivery.provider.delete(CRD_PULLS, delivery.xr)
    eventually(
        lambda: all(get(delivery.provider, OBJECTS, name) is None for name in objects),
        what="Crossplane to delete the composed Objects",
        timeout=TIMEOUT,
    )
    # Objects of a delivered API may exist in the consumer: its CRD stays, as does the one
    # the connection never owned.
    assert established(delivery.consumer, delivery.widgets)
    assert established(delivery.consumer, delivery.gadgets)


def test_bad_step_input_is_shown_on_the_xr_with_its_field(delivery: Delivery) -> None:
    composition = load("composition.yaml")
    composition["metadata"]["name"] = "crd-pull-bad-input"
    composition["spec"]["pipeline"][0]["input"]["pollInterval"] = "1h"
    xr = {
        "apiVersion": "connector.example.org/v1alpha1",
        "kind": "CRDPull",
        "metadata": {"name": "bad-input"},
        "spec": {"crossplane": {"compositionRef": {"name": "crd-pull-bad-input"}}},
    }
    delivery.provider.apply(COMPOSITIONS, composition, "xp-test")
    try:
        delivery.provider.apply(CRD_PULLS, xr, "xp-test")

        def failed() -> dict[str, Any] | None:
            # Synced=False first says the Composition has no revision yet, for a moment.
            synced = condition(get(delivery.provider, CRD_PULLS, "bad-input"), "Synced")
            failing = synced.get("status") == "False"
            return synced if failing and "pollInterval" in synced.get("message", "") else None

        synced = eventually(failed, what="the XR's Synced=False naming the field", timeout=TIMEOUT)
        assert "input.pollInterval: must be a number of seconds or minutes" in synced["message"]
        assert "'1h'" in synced["message"]
    finally:
        with contextlib.suppress(NotFoundError):
            delivery.provider.delete(CRD_PULLS, "bad-input")
        with contextlib.suppress(NotFoundError):
            delivery.provider.delete(COMPOSITIONS, "crd-pull-bad-input")
