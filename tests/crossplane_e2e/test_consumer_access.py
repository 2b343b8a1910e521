"""Consumer onboarding run by real Crossplane: the ``ConsumerAccess`` example
(``examples/functions/binder``) composes a consumer's access on the provider, and the
connector in the consumer works with exactly that identity.

On the session's Crossplane provider, Crossplane calls ``function-connector-binder``
(installed from its package, served by ``api-connector serve binder`` over mutual TLS) and
composes the consumer's Namespace, ServiceAccount, token Secret, ClusterRole and
ClusterRoleBinding. The token the cluster's token controller puts into that Secret is then
the provider credential of a ClusterConnection in a consumer cluster of this module's own,
where a connector runs in this process as the Helm chart's identity. Each test has its own
API group, consumer name and Composition (the Composition's input names the consumer).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import Crossplane, start_clusters
from connector.install.identity import scoped_kubeconfig
from connector.kube import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    ForbiddenError,
    KubeClient,
    NotFoundError,
    UnauthorizedError,
)
from connector.kube.config import client_from_kubeconfig
from connector.kube.resources import CLUSTER_API_BINDINGS, CLUSTER_CONNECTIONS, XRDS_V2, Resource
from functions.binder import AccessRequest, BoundResource, provider_access
from tests.crossplane_e2e.conftest import COMPOSITIONS, XP_TIMEOUT
from tests.e2e.harness import (
    ChartIdentity,
    RunningConnector,
    apply,
    apply_file,
    binding,
    client,
    condition,
    connection,
    crd,
    eventually,
    get,
    install_connector_crds,
    kubeconfig_secret,
)
from tests.support import go_tool

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "functions" / "binder"
CONSUMER_ACCESSES = Resource(
    "connector.example.org", "v1alpha1", "consumeraccesses", "ConsumerAccess", False
)


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def access_api(crossplane_provider: Crossplane) -> Iterator[KubeClient]:
    """The provider as its admin, serving the ConsumerAccess API (the example's XRD, applied
    as a platform team would)."""
    with crossplane_provider.cluster.kube_client() as provider:
        provider.apply(XRDS_V2, load(EXAMPLE / "xrd.yaml"), "xp-test")
        eventually(
            lambda: condition(
                get(
                    provider, CUSTOM_RESOURCE_DEFINITIONS, "consumeraccesses.connector.example.org"
                ),
                "Established",
            ).get("status")
            == "True",
            what="Crossplane to serve ConsumerAccess",
            timeout=XP_TIMEOUT,
        )
        yield provider


@dataclass
class Consumer:
    kube: KubeClient
    chart: ChartIdentity


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consumer]:
    """A consumer cluster of this module's own, with the connector running as the chart's
    identity and no connection yet: a connection with pullBehavior Pull installs every
    offered CRD, so the tier's shared consumer (whose connection sees the same provider)
    would own the test's CRDs first."""
    [cluster] = start_clusters(["consumer"], tmp_path_factory.mktemp("access-consumer"))
    kube = client(cluster.kubeconfig)
    chart = ChartIdentity(
        kube, go_tool("helm"), server=cluster.server, ca_pem=cluster.ca_file.read_bytes()
    )
    running = None
    try:
        install_connector_crds(kube)
        apply_file(kube, "consumer/00-namespace.yaml")
        path = chart.kubeconfig(tmp_path_factory.mktemp("access") / "connector.kubeconfig")
        running = RunningConnector(
            path, consumer_cluster="access-consumer", permission_check_interval=1.0
        ).start()
        yield Consumer(kube, chart)
    finally:
        if running is not None:
            running.stop()
        kube.close()
        cluster.stop()


@dataclass
class Onboarding:
    """One consumer's onboarding: its name, API group, Composition and XR."""

    provider: KubeClient
    uid: str
    consumer: str
    group: str
    composition: str
    xr: str

    def widgets(self) -> Resource:
        return Resource(self.group, "v1alpha1", "widgets", "Widget", True)

    def gadgets(self) -> Resource:
        return Resource(self.group, "v1alpha1", "gadgets", "Gadget", True)

    def api(self, plural: str, kind: str) -> dict[str, Any]:
        return {
            "name": f"{plural}.{self.group}",
            "group": self.group,
            "kind": kind,
            "plural": plural,
            "scope": "Namespaced",
            "versions": ["v1alpha1"],
            "storageVersion": "v1alpha1",
        }

    def apply_xr(self, binding_name: str) -> None:
        """The example XR for this consumer: its binding ``binding_name``, and a connection
        offering Widgets and Gadgets of the test's group."""
        xr = load(EXAMPLE / "xr.yaml")
        xr["metadata"]["name"] = self.xr
        xr["spec"]["crossplane"] = {"compositionRef": {"name": self.composition}}
        xr["spec"]["binding"]["metadata"]["name"] = binding_name
        status = xr["spec"]["connection"]["status"]
        status["offeredAPIs"] = [self.api("widgets", "Widget"), self.api("gadgets", "Gadget")]
        self.provider.apply(CONSUMER_ACCESSES, xr, "xp-test")

    def status(self) -> dict[str, Any]:
        got: dict[str, Any] = self.provider.get(CONSUMER_ACCESSES, self.xr).get("status") or {}
        return got

    def role(self) -> dict[str, Any] | None:
        role: dict[str, Any] | None = get(
            self.provider, CLUSTER_ROLES, f"api-connector:consumer:{self.consumer}"
        )
        return role


@pytest.fixture
def onboarding(access_api: KubeClient) -> Iterator[Onboarding]:
    uid = uuid.uuid4().hex[:6]
    consumer = f"consumer-{uid}"
    composition = load(EXAMPLE / "composition.yaml")
    composition["metadata"]["name"] = f"consumer-access-{uid}"
    composition["spec"]["pipeline"][0]["input"]["consumerName"] = consumer
    access_api.apply(COMPOSITIONS, composition, "xp-test")
    group = f"access-{uid}.example.org"
    for kind in ("Widget", "Gadget"):
        access_api.apply(CUSTOM_RESOURCE_DEFINITIONS, crd(group, kind), "xp-test")
    yield Onboarding(
        access_api, uid, consumer, group, f"consumer-access-{uid}", f"{consumer}-{group}"
    )
    with contextlib.suppress(NotFoundError):
        access_api.delete(CONSUMER_ACCESSES, f"{consumer}-{group}")
    for plural in ("widgets", "gadgets"):
        with contextlib.suppress(NotFoundError):
            access_api.delete(CUSTOM_RESOURCE_DEFINITIONS, f"{plural}.{group}")
    with contextlib.suppress(NotFoundError):
        access_api.delete(COMPOSITIONS, f"consumer-access-{uid}")


def ready_xr(onboarding: Onboarding) -> dict[str, Any]:
    xr: dict[str, Any] = onboarding.provider.get(CONSUMER_ACCESSES, onboarding.xr)
    # The XR's conditions are the message of a timeout.
    assert condition(xr, "Ready").get("status") == "True", xr.get("status", {}).get("conditions")
    return xr


def token_of(provider: KubeClient, access: dict[str, str]) -> str:
    secret = provider.get(SECRETS, access["tokenSecret"], access["namespace"])
    return base64.b64decode(secret["data"]["token"]).decode()


def widget(group: str, namespace: str, name: str, kind: str = "Widget") -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"coolField": "from the consumer"},
    }


def test_the_composed_identity_syncs_the_bound_api_and_nothing_else(
    crossplane_provider: Crossplane, consumer: Consumer, onboarding: Onboarding
) -> None:
    o = onboarding
    o.apply_xr(f"widgets.{o.group}")  # binds one API of the two offered
    xr = eventually(lambda: ready_xr(o), what="the ConsumerAccess to be Ready", timeout=XP_TIMEOUT)
    assert condition(xr, "Synced")["status"] == "True"
    assert condition(xr, "Bound")["reason"] == "Bound"
    access = xr["status"]["access"]
    assert access["namespace"] == f"connector-{o.consumer}"
    assert [r["name"] for r in xr["status"]["boundResources"]] == [f"widgets.{o.group}"]
    # What Crossplane composed, in the provider.
    assert o.provider.get(NAMESPACES, access["namespace"])
    assert o.provider.get(SERVICE_ACCOUNTS, access["serviceAccount"], access["namespace"])
    role = o.role()
    assert role is not None
    assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {
        o.group,
        "",
        "apiextensions.k8s.io",
    }
    assert not any("*" in v for rule in role["rules"] for v in rule["resources"] + rule["verbs"])
    [subject] = o.provider.get(CLUSTER_ROLE_BINDINGS, role["metadata"]["name"])["subjects"]
    assert subject["name"] == access["serviceAccount"]
    token = eventually(
        lambda: token_of(o.provider, access),
        what="the token controller to fill the composed token Secret",
    )

    # The consumer connects with that token only.
    cluster = crossplane_provider.cluster
    kubeconfig = scoped_kubeconfig(
        cluster={
            "server": cluster.server,
            "certificate-authority-data": base64.b64encode(cluster.ca_file.read_bytes()).decode(),
        },
        token=token,
        user=o.consumer,
        namespace=access["namespace"],
    )
    name = f"access-{o.uid}"
    xp_namespace = name
    apply(consumer.kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    apply(consumer.kube, kubeconfig_secret(name, kubeconfig))
    apply(consumer.kube, connection(name, name))
    consumer.chart.allow(o.group, "widgets")
    apply(consumer.kube, binding(f"widgets.{o.group}", name))
    try:

        def bound() -> bool:
            ready = condition(
                get(consumer.kube, CLUSTER_API_BINDINGS, f"widgets.{o.group}"), "Ready"
            )
            connected = condition(get(consumer.kube, CLUSTER_CONNECTIONS, name), "Ready")
            assert ready.get("reason") == "Bound", (ready, connected)
            return True

        eventually(
            bound,
            what="the consumer's binding to be Bound through the composed identity",
            timeout=XP_TIMEOUT,
        )
        eventually(lambda: get(consumer.kube, CUSTOM_RESOURCE_DEFINITIONS, f"widgets.{o.group}"))
        widgets = o.widgets()
        apply(consumer.kube, widget(o.group, xp_namespace, "w1"), widgets)
        twin = eventually(
            lambda: get(o.provider, widgets, "w1", xp_namespace),
            what="the Widget to sync to the provider",
        )
        assert twin["metadata"]["labels"]["connect.upbound.io/managed"] == "true"
        eventually(
            lambda: condition(get(consumer.kube, widgets, "w1", xp_namespace), "APIBound").get(
                "reason"
            )
            == "Bound",
            what="APIBound=True on the consumer's Widget",
        )

        # Outside the bound set: the provider's API server refuses the same identity.
        scoped = client_from_kubeconfig(kubeconfig, name=o.consumer, qps=None)
        gadget = widget(o.group, xp_namespace, "g1", kind="Gadget")
        with pytest.raises(ForbiddenError):
            scoped.create(o.gadgets(), gadget)
        assert consumer.kube.get(CLUSTER_CONNECTIONS, name)

        # Binding the whole group changes the role Crossplane composes.
        o.apply_xr(o.group)
        eventually(
            lambda: any("gadgets" in rule["resources"] for rule in (o.role() or {})["rules"]),
            what="the composed role to grant Gadgets",
            timeout=XP_TIMEOUT,
        )
        created = eventually(
            lambda: scoped.create(o.gadgets(), gadget),
            what="the identity to write a Gadget",
        )
        assert created["metadata"]["name"] == "g1"
        o.provider.delete(o.gadgets(), "g1", xp_namespace)
        consumer.kube.delete(widgets, "w1", xp_namespace)
        eventually(
            lambda: get(consumer.kube, widgets, "w1", xp_namespace) is None,
            what="the consumer's Widget (and its twin) to be deleted",
        )

        # Deleting the XR removes the access: what it composed, and so the token's validity.
        o.provider.delete(CONSUMER_ACCESSES, o.xr)

        def access_gone() -> bool:
            return (
                o.role() is None
                and get(o.provider, CLUSTER_ROLE_BINDINGS, role["metadata"]["name"]) is None
                and get(o.provider, NAMESPACES, access["namespace"]) is None
            )

        eventually(access_gone, what="the composed access to be deleted", timeout=XP_TIMEOUT)

        def refused() -> bool:
            try:
                scoped.list(widgets, xp_namespace)
            except UnauthorizedError:
                return True
            return False

        eventually(refused, what="the deleted identity's token to be refused")
        scoped.close()
    finally:
        for res, obj_name in (
            (CLUSTER_API_BINDINGS, f"widgets.{o.group}"),
            (CLUSTER_CONNECTIONS, name),
        ):
            with contextlib.suppress(NotFoundError):
                consumer.kube.delete(res, obj_name)
        with contextlib.suppress(NotFoundError):
            consumer.kube.delete(SECRETS, name, "upbound-system")
        with contextlib.suppress(NotFoundError):
            consumer.kube.delete(CUSTOM_RESOURCE_DEFINITIONS, f"widgets.{o.group}")


def test_a_binding_that_binds_nothing_has_its_access_deleted_by_crossplane(
    onboarding: Onboarding,
) -> None:
    o = onboarding
    o.apply_xr(f"widgets.{o.group}")
    xr = eventually(lambda: ready_xr(o), what="the ConsumerAccess to be Ready", timeout=XP_TIMEOUT)
    access = xr["status"]["access"]
    assert o.role() is not None
    # The binding now names an API the connection does not offer: no access is returned,
    # and Crossplane deletes what the function stopped returning.
    o.apply_xr(f"sprockets.{o.group}")
    eventually(
        lambda: o.role() is None and get(o.provider, NAMESPACES, access["namespace"]) is None,
        what="Crossplane to delete the access the function no longer returns",
        timeout=XP_TIMEOUT,
    )
    bound = condition(o.provider.get(CONSUMER_ACCESSES, o.xr), "Bound")
    assert (bound["status"], bound["reason"]) == ("False", "NotOffered")
    assert f"sprockets.{o.group}" in bound["message"]


def test_a_bad_binding_is_a_fatal_result_on_the_xrs_synced_condition(
    onboarding: Onboarding,
) -> None:
    o = onboarding
    o.apply_xr(f"widgets.{o.group}")
    eventually(lambda: ready_xr(o), what="the ConsumerAccess to be Ready", timeout=XP_TIMEOUT)
    xr = o.provider.get(CONSUMER_ACCESSES, o.xr)
    wrong = copy.deepcopy(xr["spec"]["binding"])
    wrong["kind"] = "Binding"
    o.provider.patch(CONSUMER_ACCESSES, o.xr, None, {"spec": {"binding": wrong}})

    def synced_false() -> dict[str, Any] | None:
        synced = condition(get(o.provider, CONSUMER_ACCESSES, o.xr), "Synced")
        fatal = synced.get("status") == "False" and "binding.kind" in synced.get("message", "")
        return synced if fatal else None

    synced = eventually(synced_false, what="Synced=False on the XR", timeout=XP_TIMEOUT)
    assert "composite.spec.binding.kind" in synced["message"], synced
    # A Fatal result composes nothing new and deletes nothing: the access stays as it was.
    assert o.role() is not None


def test_the_role_a_platform_team_grants_crossplane_suffices_to_compose_the_access(
    crossplane_provider: Crossplane, access_api: KubeClient, tmp_path: Path
) -> None:
    # The local provider runs Crossplane as system:masters; in a cluster it runs as a
    # ServiceAccount bound to a ClusterRole that aggregates every ClusterRole labelled
    # rbac.crossplane.io/aggregate-to-crossplane=true. Stand in for that identity, with that
    # aggregation, and show that examples/functions/binder/rbac.yaml is what it needs.
    uid = uuid.uuid4().hex[:6]
    user = f"crossplane-{uid}"
    aggregate = f"crossplane-{uid}"
    rbac = load(EXAMPLE / "rbac.yaml")
    selector = {"matchLabels": {"rbac.crossplane.io/aggregate-to-crossplane": "true"}}
    access_api.apply(
        CLUSTER_ROLES,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": aggregate},
            "aggregationRule": {"clusterRoleSelectors": [selector]},
        },
        "xp-test",
    )
    access_api.apply(
        CLUSTER_ROLE_BINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": aggregate},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": aggregate,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
        "xp-test",
    )
    kubeconfig = crossplane_provider.cluster.mint_kubeconfig(user, path=tmp_path / "xp.kubeconfig")
    as_crossplane = client_from_kubeconfig(kubeconfig.read_text(), name=user, qps=None)
    access = provider_access(
        AccessRequest(
            consumer_name=f"consumer-{uid}",
            resources=[
                BoundResource(
                    crd_name=f"widgets.access-{uid}.example.org",
                    group=f"access-{uid}.example.org",
                    kind="Widget",
                    plural="widgets",
                    scope="Namespaced",
                    version="v1alpha1",
                )
            ],
        )
    )
    kinds = {
        "Namespace": NAMESPACES,
        "ServiceAccount": SERVICE_ACCOUNTS,
        "Secret": SECRETS,
        "ClusterRole": CLUSTER_ROLES,
        "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
    }
    try:
        with pytest.raises(ForbiddenError):  # Crossplane's role aggregates nothing yet
            as_crossplane.apply(NAMESPACES, access.objects[0], "crossplane")
        access_api.apply(CLUSTER_ROLES, rbac, "xp-test")
        for obj in access.objects:  # in order: the namespace first
            eventually(
                lambda o=obj: as_crossplane.apply(kinds[o["kind"]], o, "crossplane"),  # type: ignore[misc]
                what=f"Crossplane's identity to apply the {obj['kind']}",
            )
    finally:
        as_crossplane.close()
        for obj in reversed(access.objects):
            with contextlib.suppress(NotFoundError):
                meta = obj["metadata"]
                access_api.delete(kinds[obj["kind"]], meta["name"], meta.get("namespace"))
        for res, name in (
            (CLUSTER_ROLE_BINDINGS, aggregate),
            (CLUSTER_ROLES, aggregate),
            (CLUSTER_ROLES, rbac["metadata"]["name"]),
        ):
            with contextlib.suppress(NotFoundError):
                access_api.delete(res, name)
