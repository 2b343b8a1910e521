"""Moving from Upbound's API Connector, as docs/migrate-from-upbound.md says, on real API servers.

The module builds, on its own consumer and provider clusters, what a team that ran Upbound's
connector has: that chart's Helm release (``tests/data/upbound-api-connector``, a stand-in
with Upbound's release name, values and "root" ClusterRoleBinding, the connector CRDs as
templates), a kubeconfig Secret, a ClusterConnection with a namespace in its metadata and the
status the old connector wrote, a binding named after the API group, the CRD the old
connector pulled, users' objects, and in the provider their twins, labelled
``connect.upbound.io/managed=true`` with the old connector's own origin labels. Beside them:
a provider object another consumer's origin labels claim, and one without the managed label,
each with the namespace and name of a consumer object.

Then it runs the page's commands (``install --upgrade --skip-connection --adopt``, first
with ``--dry-run``) and starts the connector as the chart's Deployment would run it: with
that chart's ServiceAccount (RBAC enforced) and its ``consumerClusterDisplayName``. The local
clusters have no kubelet, so the Deployment itself never runs a pod.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from connector.cli.main import main
from connector.envtest import Cluster, start_clusters
from connector.install.options import FIELD_MANAGER as INSTALLER
from connector.kube.client import KubeClient
from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLE_BINDINGS,
    CUSTOM_RESOURCE_DEFINITIONS,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    SECRETS,
    Resource,
)
from functions.common import (
    FINALIZER,
    LABEL_ADOPTED,
    LABEL_CONNECTION,
    LABEL_CONSUMER_CLUSTER,
    MANAGED_LABEL,
)
from tests.e2e.harness import (
    NOP,
    RunningConnector,
    client,
    condition,
    eventually,
    get,
    kubeconfig_secret,
    service_account_kubeconfig,
)
from tests.support import go_tool

ROOT = Path(__file__).resolve().parents[2]
OLD_CHART = ROOT / "tests" / "data" / "upbound-api-connector"
OUR_CHART = ROOT / "package" / "helm" / "api-connector"
PROVIDER_CRD = ROOT / "examples" / "walkthrough" / "provider" / "nopresources.nop.example.org.yaml"
NOP_CRD = "nopresources.nop.example.org"
RELEASE_NAMESPACE = "upbound-system"
#: The old release's consumerClusterDisplayName, which the new one keeps.
CONSUMER_NAME = "team-a"
CONNECTION = "provider-connection"
APPS = "apps"
#: The old connector's field manager and origin labels. Upbound never documented them; these
#: stand in for "whatever it used" (docs/migrate-from-upbound.md, what was assumed).
OLD_MANAGER = "upbound-api-connector"
OLD_ORIGIN = {
    "connect.upbound.io/origin-cluster": "9f0c2a",
    "connect.upbound.io/origin-namespace": APPS,
}
#: Users' objects whose twins the old connector created.
ADOPTED = ("alpha", "beta")
#: A user object whose provider namesake another consumer's origin labels claim.
THEIRS = "claimed"
#: A user object whose provider namesake has no managed label.
UNMANAGED = "unmanaged"
OTHER_CONSUMER = "team-b"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}"
    return result.output


@dataclass(frozen=True)
class Seen:
    uid: str
    resource_version: str


Snapshot = dict[tuple[str, str, str], Seen]


def snapshot(kube: KubeClient, *resources: Resource) -> Snapshot:
    """Every object of ``resources``, by (kind, namespace, name): uid and resourceVersion
    (helm's release records left out)."""
    out: Snapshot = {}
    for res in resources:
        items, _ = kube.list(res)
        for item in items:
            meta = item["metadata"]
            if item.get("type") == "helm.sh/release.v1":
                continue  # helm's own record of a release, not the user's
            key = (res.kind, meta.get("namespace", ""), meta["name"])
            out[key] = Seen(meta["uid"], meta["resourceVersion"])
    return out


CONSUMER_KINDS = (
    CUSTOM_RESOURCE_DEFINITIONS,
    CLUSTER_CONNECTIONS,
    CLUSTER_API_BINDINGS,
    SECRETS,
    NOP,
)
PROVIDER_KINDS = (CUSTOM_RESOURCE_DEFINITIONS, NOP)


@dataclass
class Migration:
    consumer: KubeClient
    provider: KubeClient
    consumer_cluster: Cluster
    helm: str
    before_consumer: Snapshot
    before_provider: Snapshot
    dry_run: str = ""
    after_dry_run_consumer: Snapshot = field(default_factory=dict)
    after_dry_run_provider: Snapshot = field(default_factory=dict)
    output: str = ""
    connector: RunningConnector | None = None

    def install(self, *extra: str) -> Result:
        return cli(
            "install",
            "--consumer-kubeconfig",
            str(self.consumer_cluster.kubeconfig),
            "--helm",
            self.helm,
            *extra,
        )

    def helm_cmd(self, *args: str) -> str:
        import subprocess

        return subprocess.run(
            [self.helm, *args, "--kubeconfig", str(self.consumer_cluster.kubeconfig)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout


def nop(name: str, *, labels: dict[str, str] | None = None, cool: str = "") -> dict[str, Any]:
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": name, "namespace": APPS, "labels": dict(labels or {})},
        "spec": {"coolField": cool or f"{name}'s field"},
    }


def identity(obj: dict[str, Any]) -> dict[str, Any]:
    """Only what names ``obj``: what a status writer sends along with the status."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }


def ready_status() -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "lastTransitionTime": "2026-05-01T00:00:00Z",
            }
        ]
    }


def build_upbound_world(
    consumer_cluster: Cluster, provider_cluster: Cluster, helm: str
) -> tuple[KubeClient, KubeClient]:
    """What Upbound's connector left in both clusters (see the module docstring)."""
    consumer = client(consumer_cluster.kubeconfig)
    provider = client(provider_cluster.kubeconfig)
    # Provider: the published API, and the old connector's twins with their status.
    provider_crd = yaml.safe_load(PROVIDER_CRD.read_text())
    provider.apply(CUSTOM_RESOURCE_DEFINITIONS, provider_crd, "platform-team")
    eventually(lambda: _established(provider, NOP_CRD))
    for kube in (consumer, provider):
        kube.apply(
            NAMESPACES,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APPS}},
            "admin",
        )
    twin_labels = {MANAGED_LABEL: "true", **OLD_ORIGIN}
    for name in ADOPTED:
        twin = nop(name, labels={**twin_labels, "team": "a"})
        provider.apply(NOP, twin, OLD_MANAGER)
        provider.apply_status(NOP, {**identity(twin), "status": ready_status()}, "crossplane")
    provider.apply(
        NOP,
        nop(
            THEIRS,
            labels={MANAGED_LABEL: "true", LABEL_CONSUMER_CLUSTER: OTHER_CONSUMER},
            cool="theirs",
        ),
        "api-connector",
    )
    provider.apply(NOP, nop(UNMANAGED, cool="made by hand"), "platform-team")

    # Consumer: Upbound's chart, as `helm upgrade --install` with its documented values put it.
    import subprocess

    subprocess.run(
        [
            helm,
            "upgrade",
            "--install",
            "api-connector",
            str(OLD_CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--set",
            f"consumerClusterDisplayName={CONSUMER_NAME}",
            "--set",
            "pollInterval=1m",
            "--kubeconfig",
            str(consumer_cluster.kubeconfig),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for plural in ("clusterconnections", "clusterapibindings", "apibindings"):
        eventually(lambda p=plural: _established(consumer, f"{p}.connect.upbound.io"))
    consumer.apply(
        SECRETS,
        kubeconfig_secret("provider-kubeconfig", provider_cluster.kubeconfig.read_text()),
        "kubectl",
    )
    connection = {
        "apiVersion": CLUSTER_CONNECTIONS.api_version,
        "kind": CLUSTER_CONNECTIONS.kind,
        "metadata": {"name": CONNECTION, "namespace": RELEASE_NAMESPACE},
        "spec": {
            "secretRef": {
                "kind": "KubeConfig",
                "name": "provider-kubeconfig",
                "namespace": RELEASE_NAMESPACE,
            },
            "crdManagement": {"pullBehavior": "Pull"},
        },
    }
    consumer.apply(CLUSTER_CONNECTIONS, connection, "kubectl")
    consumer.apply_status(
        CLUSTER_CONNECTIONS,
        {
            "apiVersion": CLUSTER_CONNECTIONS.api_version,
            "kind": CLUSTER_CONNECTIONS.kind,
            "metadata": {"name": CONNECTION},
            "status": {**ready_status(), "offeredAPIs": [{"name": NOP_CRD}]},
        },
        OLD_MANAGER,
    )
    consumer.apply(
        CLUSTER_API_BINDINGS,
        {
            "apiVersion": CLUSTER_API_BINDINGS.api_version,
            "kind": CLUSTER_API_BINDINGS.kind,
            "metadata": {"name": "nop.example.org"},
            "spec": {"connectionRef": {"kind": "ClusterConnection", "name": CONNECTION}},
        },
        "kubectl",
    )
    # The CRD the old connector pulled: the provider's, without the bindable label.
    pulled = copy.deepcopy(provider_crd)
    pulled["metadata"] = {"name": NOP_CRD, "labels": {"connect.upbound.io/pulled": "true"}}
    consumer.apply(CUSTOM_RESOURCE_DEFINITIONS, pulled, OLD_MANAGER)
    eventually(lambda: _established(consumer, NOP_CRD))
    for name in (*ADOPTED, THEIRS, UNMANAGED):
        labels = {"team": "a"} if name in ADOPTED else {}
        consumer.apply(
            NOP, nop(name, labels=labels, cool="theirs" if name == THEIRS else ""), "kubectl"
        )
        bound = {
            "conditions": [
                *ready_status()["conditions"],
                {
                    "type": "APIBound",
                    "status": "True",
                    "reason": "Bound",
                    "lastTransitionTime": "2026-05-01T00:00:00Z",
                },
            ]
        }
        consumer.apply_status(NOP, {**identity(nop(name)), "status": bound}, OLD_MANAGER)
    return consumer, provider


def _established(kube: KubeClient, name: str) -> bool:
    return (
        condition(get(kube, CUSTOM_RESOURCE_DEFINITIONS, name), "Established").get("status")
        == "True"
    )


@pytest.fixture(scope="module")
def migration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Migration]:
    base = tmp_path_factory.mktemp("migrate")
    consumer_cluster, provider_cluster = start_clusters(("mig-consumer", "mig-provider"), base)
    helm = str(go_tool("helm"))
    state: Migration | None = None
    try:
        consumer, provider = build_upbound_world(consumer_cluster, provider_cluster, helm)
        state = Migration(
            consumer=consumer,
            provider=provider,
            consumer_cluster=consumer_cluster,
            helm=helm,
            before_consumer=snapshot(consumer, *CONSUMER_KINDS),
            before_provider=snapshot(provider, *PROVIDER_KINDS),
        )
        # The page's step 1: see what would change.
        state.dry_run = ok(state.install("--upgrade", "--skip-connection", "--adopt", "--dry-run"))
        state.after_dry_run_consumer = snapshot(consumer, *CONSUMER_KINDS)
        state.after_dry_run_provider = snapshot(provider, *PROVIDER_KINDS)
        # Step 2: do it. (--no-wait: no kubelet runs the chart's pod; the connector is
        # started below as that pod would run it.)
        state.output = ok(state.install("--upgrade", "--skip-connection", "--adopt", "--no-wait"))
        values = yaml.safe_load(
            state.helm_cmd("get", "values", "api-connector", "-n", RELEASE_NAMESPACE, "-o", "json")
        )
        kubeconfig = service_account_kubeconfig(
            consumer,
            base / "connector.kubeconfig",
            server=consumer_cluster.server,
            ca_pem=consumer_cluster.ca_file.read_bytes(),
        )
        state.connector = RunningConnector(
            kubeconfig, consumer_cluster=values["consumerClusterDisplayName"]
        ).start()
        yield state
    finally:
        if state is not None and state.connector is not None:
            state.connector.stop()
        consumer_cluster.stop()
        provider_cluster.stop()


# -- step 1: the dry run --------------------------------------------------------------------


def test_the_dry_run_says_what_would_change_and_changes_nothing(migration: Migration) -> None:
    out = " ".join(migration.dry_run.split())
    for part in (
        "installed by another chart (api-connector-0.4.2)",
        "consumerClusterDisplayName=team-a, pollInterval=1m are kept",
        "Delete Deployment upbound-system/api-connector of the old release",
        "Delete ClusterRoleBinding api-connector of the old release: its roleRef changes",
        "CRD clusterconnections.connect.upbound.io: take over the fields of helm",
        "annotate it helm.sh/resource-policy=keep",
        f"CRD {NOP_CRD}, pulled by the old connector: label it {LABEL_CONNECTION}={CONNECTION}",
        f"ClusterConnection {CONNECTION} adopts provider objects another connector created",
        "Dry run: nothing was changed in either cluster.",
    ):
        assert part in out, f"{part!r} not in the dry run's output:\n{migration.dry_run}"
    assert migration.after_dry_run_consumer == migration.before_consumer
    assert migration.after_dry_run_provider == migration.before_provider


# -- step 2: the release, the CRDs, the connections -----------------------------------------


def test_the_release_is_this_projects_chart_with_the_old_values(migration: Migration) -> None:
    assert "Helm release api-connector in namespace upbound-system replaced" in migration.output
    releases = yaml.safe_load(migration.helm_cmd("list", "-n", RELEASE_NAMESPACE, "-o", "json"))
    assert [(r["name"], r["chart"], r["status"]) for r in releases] == [
        ("api-connector", "api-connector-0.1.0", "deployed")
    ]
    values = yaml.safe_load(
        migration.helm_cmd("get", "values", "api-connector", "-n", RELEASE_NAMESPACE, "-o", "json")
    )
    assert values["consumerClusterDisplayName"] == CONSUMER_NAME
    assert values["pollInterval"] == "1m"
    assert values["boundAPIs"] == [{"group": "nop.example.org", "resources": ["nopresources"]}]


def test_the_old_connector_and_its_root_privileges_are_gone(migration: Migration) -> None:
    deployment = migration.consumer.get(DEPLOYMENTS, "api-connector", RELEASE_NAMESPACE)
    assert (
        deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "api-connector"
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert args == ["api-connector", "run"]
    binding = migration.consumer.get(CLUSTER_ROLE_BINDINGS, "api-connector")
    assert binding["roleRef"]["name"] == "api-connector"  # not cluster-admin


def test_the_connector_crds_have_this_projects_schema_and_were_never_recreated(
    migration: Migration,
) -> None:
    for path in sorted((OUR_CHART / "crds").glob("*.yaml")):
        want = yaml.safe_load(path.read_text())
        name = want["metadata"]["name"]
        crd = migration.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        assert (
            crd["metadata"]["uid"]
            == migration.before_consumer[("CustomResourceDefinition", "", name)].uid
        )
        assert crd["spec"]["versions"][0]["schema"] == want["spec"]["versions"][0]["schema"], name
        meta = crd["metadata"]
        # Nothing of the old chart's template is left: its label, helm's ownership, the keep.
        assert "app.kubernetes.io/name" not in (meta.get("labels") or {}), name
        assert not any(
            k.startswith(("meta.helm.sh/", "helm.sh/")) for k in meta.get("annotations") or {}
        ), name
        managers = {m["manager"] for m in meta["managedFields"] if not m.get("subresource")}
        assert managers == {INSTALLER}, name


def test_connections_and_bindings_are_kept_and_ready(migration: Migration) -> None:
    for res, name in ((CLUSTER_CONNECTIONS, CONNECTION), (CLUSTER_API_BINDINGS, "nop.example.org")):
        eventually(
            lambda r=res, n=name: condition(get(migration.consumer, r, n), "Ready").get("reason")
            in ("Ready", "Bound")
        )
        obj = migration.consumer.get(res, name)
        assert obj["metadata"]["uid"] == migration.before_consumer[(res.kind, "", name)].uid
        assert condition(obj, "Ready").get("status") == "True"
    connection = migration.consumer.get(CLUSTER_CONNECTIONS, CONNECTION)
    assert connection["spec"]["adoption"] == {"policy": "AdoptManaged"}


def test_the_pulled_crd_is_taken_over_in_place(migration: Migration) -> None:
    crd = migration.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, NOP_CRD)
    assert (
        crd["metadata"]["uid"]
        == migration.before_consumer[("CustomResourceDefinition", "", NOP_CRD)].uid
    )
    assert crd["metadata"]["labels"][LABEL_CONNECTION] == CONNECTION
    managers = {m["manager"] for m in crd["metadata"]["managedFields"] if not m.get("subresource")}
    assert OLD_MANAGER not in managers
    # The connection's CRD-puller owns it now: its applied-hash says it was brought up to date.
    eventually(
        lambda: "connect.upbound.io/applied-hash"
        in (
            get(migration.consumer, CUSTOM_RESOURCE_DEFINITIONS, NOP_CRD)["metadata"].get(
                "annotations"
            )
            or {}
        )
    )
    # The old connector's own label went with its fields.
    assert (
        "connect.upbound.io/pulled"
        not in migration.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, NOP_CRD)["metadata"]["labels"]
    )


# -- the objects: adopted twins sync again; others are left alone ---------------------------


def api_bound(kube: KubeClient, name: str) -> dict[str, Any]:
    return condition(get(kube, NOP, name, APPS), "APIBound")


def synced(migration: Migration, name: str) -> bool:
    """Bound by this connector (the old one left APIBound=True behind, without our message)
    and the twin labelled as this consumer's."""
    bound = api_bound(migration.consumer, name)
    twin = get(migration.provider, NOP, name, APPS) or {}
    return (
        bound.get("reason") == "Bound"
        and bound.get("message") == "Synced to the provider"
        and (twin.get("metadata", {}).get("labels") or {}).get(LABEL_CONSUMER_CLUSTER)
        == CONSUMER_NAME
    )


def test_every_adopted_object_is_bound_with_the_providers_status(migration: Migration) -> None:
    for name in ADOPTED:
        eventually(lambda n=name: synced(migration, n))
        obj = migration.consumer.get(NOP, name, APPS)
        assert condition(obj, "APIBound")["status"] == "True"
        assert condition(obj, "Ready")["status"] == "True"  # the provider's, come back


def test_an_adopted_twin_is_the_same_object_labelled_as_ours(migration: Migration) -> None:
    for name in ADOPTED:
        eventually(lambda n=name: synced(migration, n))
        twin = migration.provider.get(NOP, name, APPS)
        before = migration.before_provider[("NopResource", APPS, name)]
        assert twin["metadata"]["uid"] == before.uid  # never deleted or re-created
        labels = twin["metadata"]["labels"]
        assert labels[LABEL_CONSUMER_CLUSTER] == CONSUMER_NAME
        assert labels[MANAGED_LABEL] == "true"
        assert labels[LABEL_ADOPTED] == "true"
        for key, value in OLD_ORIGIN.items():
            assert labels[key] == value, "the old connector's origin labels stay"
        # Its fields were taken over; it keeps only its own origin labels. The provider's
        # status writer keeps its fields.
        owned = {m["manager"]: m["fieldsV1"] for m in twin["metadata"]["managedFields"]}
        assert owned[OLD_MANAGER] == {
            "f:metadata": {"f:labels": {f"f:{key}": {} for key in OLD_ORIGIN}}
        }
        assert "f:status" in owned["crossplane"]


def test_a_provider_object_another_consumer_claims_or_nobody_manages_is_left_alone(
    migration: Migration,
) -> None:
    for name, why in (
        (THEIRS, f"belongs to consumer cluster {OTHER_CONSUMER}"),
        (UNMANAGED, "is not managed by any consumer cluster"),
    ):
        eventually(lambda n=name: api_bound(migration.consumer, n).get("reason") == "Conflict")
        assert why in api_bound(migration.consumer, name)["message"]
        twin = migration.provider.get(NOP, name, APPS)
        before = migration.before_provider[("NopResource", APPS, name)]
        assert (twin["metadata"]["uid"], twin["metadata"]["resourceVersion"]) == (
            before.uid,
            before.resource_version,
        ), f"{name} was written"


def test_adoption_is_reported_per_object(migration: Migration) -> None:
    for name in ADOPTED:
        eventually(lambda n=name: _events(migration.consumer, n, "Adopted"))
        (event,) = _events(migration.consumer, name, "Adopted")
        assert event["type"] == "Normal"
        assert f"taken over from {OLD_MANAGER}" in event["message"]


def test_nothing_was_deleted_or_recreated_in_either_cluster(migration: Migration) -> None:
    for name in ADOPTED:
        eventually(lambda n=name: synced(migration, n))
    for kube, before, kinds in (
        (migration.consumer, migration.before_consumer, CONSUMER_KINDS),
        (migration.provider, migration.before_provider, PROVIDER_KINDS),
    ):
        after = snapshot(kube, *kinds)
        gone = sorted(k for k in before if k not in after)
        recreated = sorted(k for k in before if k in after and after[k].uid != before[k].uid)
        assert (gone, recreated) == ([], [])


def test_changes_flow_again_and_a_label_removed_goes_from_the_twin(migration: Migration) -> None:
    name = ADOPTED[0]
    eventually(lambda: synced(migration, name))
    # The label the old connector put on the twin (it owned it): ours now, so it goes when
    # the consumer drops it, and a spec change follows.
    migration.consumer.apply(NOP, nop(name, cool="changed after the move"), "kubectl")
    eventually(
        lambda: migration.provider.get(NOP, name, APPS)["spec"]["coolField"]
        == "changed after the move"
    )
    eventually(lambda: "team" not in migration.provider.get(NOP, name, APPS)["metadata"]["labels"])


def test_turning_adoption_off_keeps_what_was_adopted(migration: Migration) -> None:
    for name in ADOPTED:
        eventually(lambda n=name: synced(migration, n))
    out = ok(migration.install("--upgrade", "--skip-connection", "--no-adopt", "--no-wait"))
    assert f"ClusterConnection {CONNECTION} adopts nothing" in out
    connection = migration.consumer.get(CLUSTER_CONNECTIONS, CONNECTION)
    assert connection["spec"]["adoption"]["policy"] == "Never"
    # The rerun is no takeover any more: this chart's release is upgraded in place.
    assert "installed by another chart" not in out
    for name in ADOPTED:
        eventually(lambda n=name: synced(migration, n))
        labels = migration.provider.get(NOP, name, APPS)["metadata"]["labels"]
        assert labels[LABEL_CONSUMER_CLUSTER] == CONSUMER_NAME


def _events(kube: KubeClient, name: str, reason: str) -> list[dict[str, Any]]:
    items, _ = kube.list(EVENTS, APPS)
    return [
        e
        for e in items
        if e.get("involvedObject", {}).get("name") == name and e.get("reason") == reason
    ]


# -- going back (last: it undoes the move) --------------------------------------------------


def test_going_back_to_the_old_chart_keeps_everything(migration: Migration) -> None:
    for name in ADOPTED:
        eventually(lambda n=name: synced(migration, n))
    before_consumer = snapshot(migration.consumer, *CONSUMER_KINDS)
    before_provider = snapshot(migration.provider, *PROVIDER_KINDS)
    # The page's steps. The connector runs out of cluster here: stop it first, as uninstall
    # asks, or it would put its finalizer back.
    assert migration.connector is not None
    migration.connector.stop()
    migration.connector = None
    out = ok(
        cli(
            "uninstall",
            "--consumer-kubeconfig",
            str(migration.consumer_cluster.kubeconfig),
            "--helm",
            migration.helm,
        )
    )
    assert "Removed the connector's finalizer from" in out
    for plural in ("clusterconnections", "clusterapibindings", "apibindings"):
        name = f"{plural}.connect.upbound.io"
        migration.consumer.patch(
            CUSTOM_RESOURCE_DEFINITIONS,
            name,
            None,
            {
                "metadata": {
                    "annotations": {
                        "meta.helm.sh/release-name": "api-connector",
                        "meta.helm.sh/release-namespace": RELEASE_NAMESPACE,
                    },
                    "labels": {"app.kubernetes.io/managed-by": "Helm"},
                }
            },
        )
    migration.helm_cmd(
        "install",
        "api-connector",
        str(OLD_CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--set",
        f"consumerClusterDisplayName={CONSUMER_NAME}",
        "--set",
        "pollInterval=1m",
    )

    releases = yaml.safe_load(migration.helm_cmd("list", "-n", RELEASE_NAMESPACE, "-o", "json"))
    assert [(r["chart"], r["status"]) for r in releases] == [("api-connector-0.4.2", "deployed")]
    for kube, before, kinds in (
        (migration.consumer, before_consumer, CONSUMER_KINDS),
        (migration.provider, before_provider, PROVIDER_KINDS),
    ):
        after = snapshot(kube, *kinds)
        assert sorted(k for k in before if k not in after or after[k].uid != before[k].uid) == []
    for name in (*ADOPTED, THEIRS, UNMANAGED):
        meta = migration.consumer.get(NOP, name, APPS)["metadata"]
        assert FINALIZER not in (meta.get("finalizers") or []), name
        # The old connector's origin labels are still on its twins.
        if name in ADOPTED:
            labels = migration.provider.get(NOP, name, APPS)["metadata"]["labels"]
            assert {k: labels.get(k) for k in OLD_ORIGIN} == OLD_ORIGIN
