"""The Helm chart, rendered by the real helm and installed into the real consumer API server.

Rendering checks what a user configures (values reach the connector's arguments, bad values
fail early with a message naming them, no wildcard RBAC); installing checks that the API
server accepts every object and that the connector's ServiceAccount gets exactly the access
it needs: impersonating it, allowed requests succeed and everything else is forbidden.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from kubernetes.client import ApiClient

from connector.cli.run import parse_duration
from connector.envtest import Cluster, eventually
from connector.kube.client import KubeClient
from connector.kube.errors import ConflictError, ForbiddenError, NotFoundError
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    EVENTS,
    LEASES,
    NAMESPACES,
    PODS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    Resource,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "package" / "helm" / "api-connector"
PACKAGE_CRDS = ROOT / "package" / "crds"
# The console script of this virtualenv: the program the image's entrypoint runs.
API_CONNECTOR = Path(sys.executable).parent / "api-connector"
RELEASE = "api-connector"
NAMESPACE = "upbound-system"

Manifest = dict[str, Any]


def _template(
    helm: Path, *flags: str, release: str = RELEASE, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", release, str(CHART), "--namespace", namespace, *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def render(
    helm: Path, *flags: str, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[Manifest]:
    result = _template(helm, *flags, release=release, namespace=namespace)
    assert result.returncode == 0, f"helm template {' '.join(flags)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def connector_args(manifests: list[Manifest]) -> list[str]:
    [deployment] = [
        m
        for m in manifests
        if m["kind"] == "Deployment"
        and m["metadata"]["labels"]["app.kubernetes.io/component"] == "connector"
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["api-connector", "run"]
    args: list[str] = container["args"]
    return args


def flag(args: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) <= 1, f"--{name} given {len(values)} times: {args}"
    return values[0] if values else None


def rbac_rules(manifests: list[Manifest]) -> list[dict[str, list[str]]]:
    return [rule for m in manifests if m["kind"] in ("ClusterRole", "Role") for rule in m["rules"]]


SERVICES_MODE = (
    "--set",
    "stages.mode=services",
    "--set",
    "replicas=2",
    "--set",
    "boundAPIs[0].group=nop.example.org",
    "--set",
    "boundAPIs[0].resources={nopresources}",
)


# -- linting and rendering ------------------------------------------------------------------


@pytest.mark.parametrize("flags", [(), SERVICES_MODE], ids=["defaults", "services-mode"])
def test_chart_passes_helm_lint_strict(helm: Path, flags: tuple[str, ...]) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_crds_are_the_package_crds(helm: Path) -> None:
    # Helm's crds/ must hold real files; hack/sync-chart-crds.sh copies them. A drift would
    # install different CRDs through Helm than through the Crossplane package.
    chart_crds = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    package_crds = {p.name: p.read_bytes() for p in PACKAGE_CRDS.glob("*.yaml")}
    assert sorted(chart_crds) == sorted(package_crds), "run hack/sync-chart-crds.sh"
    for name, content in package_crds.items():
        assert chart_crds[name] == content, f"{name} differs; run hack/sync-chart-crds.sh"
    rendered = render(helm, "--include-crds")
    assert {m["metadata"]["name"] for m in rendered if m["kind"] == "CustomResourceDefinition"} == {
        "clusterconnections.connect.upbound.io",
        "clusterapibindings.connect.upbound.io",
        "apibindings.connect.upbound.io",
    }


@pytest.mark.parametrize("flags", [(), SERVICES_MODE], ids=["defaults", "services-mode"])
def test_no_rbac_rule_grants_a_wildcard(helm: Path, flags: tuple[str, ...]) -> None:
    rules = rbac_rules(render(helm, *flags))
    assert rules
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "nonResourceURLs", "resourceNames"):
            assert not any("*" in entry for entry in rule.get(field, [])), rule


def test_default_install_runs_one_connector_with_stages_in_process(helm: Path) -> None:
    manifests = render(
        helm,
        "--set",
        "pollInterval=90s",
        "--set",
        "consumerClusterDisplayName=team-a",
        "--set",
        "workers=7",
    )
    args = connector_args(manifests)
    assert flag(args, "poll-interval") == "90s"
    assert flag(args, "consumer-cluster-name") == "team-a"
    assert flag(args, "workers") == "7"
    assert flag(args, "metrics-address") == "0.0.0.0:8080"
    # One replica without leader election: it must not wait for a Lease it never gets.
    assert "--leader-elect" not in args
    for stage in ("crd-puller", "binder", "object-syncer"):
        assert flag(args, stage) is None, "in-process stages need no address"
    assert [m["metadata"]["name"] for m in manifests if m["kind"] == "Deployment"] == [RELEASE]


def test_display_name_reaches_the_connector_verbatim(helm: Path) -> None:
    # The connector turns any name into valid label values itself; the chart must not mangle
    # it on the way (": " and " #" would end a YAML value early if it were not quoted).
    name = "Team A: prod #1"
    args = connector_args(render(helm, "--set-string", f"consumerClusterDisplayName={name}"))
    assert flag(args, "consumer-cluster-name") == name


def test_empty_display_name_is_left_to_the_connector(helm: Path) -> None:
    assert flag(connector_args(render(helm)), "consumer-cluster-name") is None


def test_services_mode_with_two_replicas_elects_a_leader_and_calls_the_stage_services(
    helm: Path,
) -> None:
    manifests = render(helm, *SERVICES_MODE)
    args = connector_args(manifests)
    assert "--leader-elect" in args
    assert only(manifests, "Deployment", RELEASE)["spec"]["replicas"] == 2
    # The replicas campaign for one Lease, in the namespace whose Role lets them write it.
    assert flag(args, "leader-election-namespace") == NAMESPACE
    assert flag(args, "leader-election-id") == RELEASE
    role = only(manifests, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    } in role["rules"]
    for stage in ("crd-puller", "binder", "object-syncer"):
        service = only(manifests, "Service", f"{RELEASE}-{stage}")
        port = service["spec"]["ports"][0]["port"]
        # The connector dials the stage's Service by its cluster DNS name and port.
        assert flag(args, stage) == f"{RELEASE}-{stage}.{NAMESPACE}.svc:{port}"
        deployment = only(manifests, "Deployment", f"{RELEASE}-{stage}")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["command"] == ["api-connector", "serve", stage]
        assert container["args"] == [f"--address=0.0.0.0:{port}", "--insecure"]
        assert container["readinessProbe"]["grpc"]["port"] == port
        # Stages are pure: no Kubernetes credentials in their pods.
        assert pod["automountServiceAccountToken"] is False
        # ... and the Service routes to exactly that stage's pods.
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert labels["app.kubernetes.io/component"] == stage


def _accepted_options(*command: str) -> set[str]:
    """The long options `api-connector <command> --help` lists."""
    help_text = subprocess.run(
        [str(API_CONNECTOR), *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_text))


def test_every_rendered_flag_is_one_the_program_accepts(helm: Path) -> None:
    # A flag the program does not know makes the pod crash-loop after a "successful" install.
    manifests = render(helm, *SERVICES_MODE, "--set", "consumerClusterDisplayName=team-a")
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][0] == "api-connector"
        used = {arg.split("=", 1)[0] for arg in container["args"] if arg.startswith("--")}
        missing = used - _accepted_options(*container["command"][1:])
        assert not missing, f"{shlex.join(container['command'])} does not accept {sorted(missing)}"


def test_only_the_connector_may_reach_the_stage_services(helm: Path) -> None:
    manifests = render(helm, *SERVICES_MODE)
    connector_labels = only(manifests, "Deployment", RELEASE)["spec"]["template"]["metadata"][
        "labels"
    ]
    for stage in ("crd-puller", "binder", "object-syncer"):
        policy = only(manifests, "NetworkPolicy", f"{RELEASE}-{stage}")
        deployment = only(manifests, "Deployment", f"{RELEASE}-{stage}")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        [rule] = policy["spec"]["ingress"]
        [source] = rule["from"]
        assert source["podSelector"]["matchLabels"].items() <= connector_labels.items()
        assert rule["ports"] == [{"port": port["containerPort"], "protocol": "TCP"}]
    assert not [m for m in render(helm) if m["kind"] == "NetworkPolicy"]


def test_leader_election_can_be_forced_with_one_replica(helm: Path) -> None:
    args = connector_args(render(helm, "--set", "leaderElection.enabled=true"))
    assert "--leader-elect" in args


def test_stage_tls_gives_the_connector_the_client_certificate_the_stages_require(
    helm: Path,
) -> None:
    manifests = render(
        helm,
        *SERVICES_MODE,
        "--set",
        "stages.tls.enabled=true",
        "--set",
        "stages.tls.secretName=stage-certs",
    )
    args = connector_args(manifests)
    assert "--stages-tls-certs-dir=/tls/stages" in args
    (connector,) = [
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == RELEASE
    ]
    pod = connector["spec"]["template"]["spec"]
    (mount,) = [v for v in pod["containers"][0]["volumeMounts"] if v["mountPath"] == "/tls/stages"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "stage-certs"
    # The connector's flag is one the program accepts.
    help_text = subprocess.run(
        [str(API_CONNECTOR), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--stages-tls-certs-dir" in help_text


def test_scheduling_and_image_values_reach_every_pod_they_should(helm: Path) -> None:
    manifests = render(
        helm,
        *SERVICES_MODE,
        "--set",
        "nodeSelector.pool=control",
        "--set",
        "tolerations[0].key=dedicated",
        "--set",
        "tolerations[0].operator=Exists",
        "--set",
        "image.repository=registry.example/api-connector",
        "--set-string",
        "image.tag=1.2.3",
        "--set",
        "stages.binder.image.repository=registry.example/binder",
    )
    images = {}
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"pool": "control"}
        assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
        images[deployment["metadata"]["name"]] = pod["containers"][0]["image"]
    # A stage can run another image; an unset field falls back to the top-level image.
    assert images == {
        RELEASE: "registry.example/api-connector:1.2.3",
        f"{RELEASE}-crd-puller": "registry.example/api-connector:1.2.3",
        f"{RELEASE}-binder": "registry.example/binder:1.2.3",
        f"{RELEASE}-object-syncer": "registry.example/api-connector:1.2.3",
    }


def test_extra_args_are_appended_to_the_connector_command(helm: Path) -> None:
    args = connector_args(render(helm, "--set", "extraArgs={--example-flag=1}"))
    assert args[-1] == "--example-flag=1"


def test_bound_apis_become_rules_for_exactly_their_resources(helm: Path) -> None:
    rules = only(render(helm, *SERVICES_MODE), "ClusterRole")["rules"]
    bound = [r for r in rules if r["apiGroups"] == ["nop.example.org"]]
    assert bound == [
        {
            "apiGroups": ["nop.example.org"],
            "resources": ["nopresources"],
            "verbs": ["get", "list", "watch", "update", "patch"],
        },
        {
            "apiGroups": ["nop.example.org"],
            "resources": ["nopresources/status"],
            "verbs": ["update", "patch"],
        },
        {
            "apiGroups": ["nop.example.org"],
            "resources": ["nopresources/finalizers"],
            "verbs": ["update"],
        },
    ]


CONNECTION_SECRETS_RULE = {
    "apiGroups": [""],
    "resources": ["secrets"],
    "verbs": ["get", "list", "watch", "create", "update", "delete"],
}


def test_connection_secrets_get_one_cluster_wide_rule_that_a_value_turns_off(helm: Path) -> None:
    cluster_role = only(render(helm), "ClusterRole")
    assert [r for r in cluster_role["rules"] if "secrets" in r["resources"]] == [
        CONNECTION_SECRETS_RULE
    ]
    assert "--no-connection-secrets" not in connector_args(render(helm))
    manifests = render(helm, "--set", "connectionSecrets.enabled=false")
    assert "--no-connection-secrets" in connector_args(manifests)
    assert not any("secrets" in r["resources"] for r in only(manifests, "ClusterRole")["rules"])


def test_without_connection_secrets_secrets_are_readable_only_in_the_release_namespace(
    helm: Path,
) -> None:
    manifests = render(helm, "--set", "connectionSecrets.enabled=false")
    cluster_role = only(manifests, "ClusterRole")
    assert not any("secrets" in r["resources"] for r in cluster_role["rules"])
    role = only(manifests, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]} in role[
        "rules"
    ]


def test_pods_run_hardened(helm: Path) -> None:
    for deployment in (m for m in render(helm, *SERVICES_MODE) if m["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]


def test_connector_probes_use_the_metrics_port(helm: Path) -> None:
    manifests = render(helm, "--set", "metrics.port=9090")
    container = only(manifests, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]
    assert flag(container["args"], "metrics-address") == "0.0.0.0:9090"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert only(manifests, "Service", f"{RELEASE}-metrics")["spec"]["ports"][0]["port"] == 9090


def test_service_monitor_only_when_enabled_and_the_cluster_serves_its_api(helm: Path) -> None:
    enabled = ("--set", "metrics.serviceMonitor.enabled=true")
    has_api = ("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")

    def monitors(*flags: str) -> list[Manifest]:
        return [m for m in render(helm, *flags) if m["kind"] == "ServiceMonitor"]

    assert monitors(*has_api) == []
    # Without prometheus-operator the install must not fail on an unknown kind.
    assert monitors(*enabled) == []
    [monitor] = monitors(*enabled, *has_api)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--set", "pollInterval=soon"), "/pollInterval"),
        (("--set", "replicas=0"), "/replicas"),
        (("--set", "stages.mode=remote"), "/stages/mode"),
        (
            ("--set", "boundAPIs[0].group=*", "--set", "boundAPIs[0].resources={x}"),
            "/boundAPIs/0/group",
        ),
        (
            ("--set", "boundAPIs[0].group=a.b", "--set", "boundAPIs[0].resources={*}"),
            "/boundAPIs/0/resources/0",
        ),
        (("--set", "metrics.port=70000"), "/metrics/port"),
        (
            ("--set", "stages.mode=services", "--set", "stages.tls.enabled=true"),
            "/stages/tls/secretName",
        ),
        (("--set", "pollIntervall=10m"), "pollIntervall"),
    ],
    ids=[
        "poll-interval-not-a-duration",
        "zero-replicas",
        "unknown-stage-mode",
        "wildcard-group",
        "wildcard-resource",
        "port-out-of-range",
        "tls-without-secret",
        "misspelt-value",
    ],
)
def test_bad_values_fail_with_a_message_naming_the_value(
    helm: Path, flags: tuple[str, ...], message: str
) -> None:
    result = _template(helm, *flags)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["30s", "10m", "1h30m", "1.5h", "600", "500ms", "soon", "10 m"])
def test_chart_accepts_exactly_the_poll_intervals_the_connector_parses(
    helm: Path, value: str
) -> None:
    # Accepting more would crash-loop the pod; accepting less would reject what
    # `api-connector install --poll-interval` passes through.
    chart_accepts = _template(helm, "--set-string", f"pollInterval={value}").returncode == 0
    try:
        parse_duration(value)
        connector_accepts = True
    except click.BadParameter:
        connector_accepts = False
    assert chart_accepts == connector_accepts


# -- installed into the real consumer API server -------------------------------------------

BOUND = (
    "--set",
    "boundAPIs[0].group=nop.example.org",
    "--set",
    "boundAPIs[0].resources={nopresources}",
)
NO_CONNECTION_SECRETS = (*BOUND, "--set", "connectionSecrets.enabled=false")
# The kinds the chart renders by default, and their REST resources.
CHART_RESOURCES = {
    r.kind: r
    for r in (
        SERVICE_ACCOUNTS,
        CLUSTER_ROLES,
        CLUSTER_ROLE_BINDINGS,
        ROLES,
        ROLE_BINDINGS,
        Resource("", "v1", "services", "Service", True),
        Resource("apps", "v1", "deployments", "Deployment", True),
        Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True),
    )
}
NOP_RESOURCES = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", True)
UNBOUND = Resource("unbound.example.org", "v1", "widgets", "Widget", True)


@dataclass(frozen=True)
class Installed:
    """The chart's objects, created in the consumer; the ServiceAccount's identity."""

    manifests: list[Manifest]
    namespace: str
    service_account: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def _kube(api: ApiClient) -> KubeClient:
    # No client-side rate limit: a test's handful of requests should not wait.
    return KubeClient(api, name="consumer", qps=None)


def _ensure_chart_crds(admin: KubeClient) -> None:
    """The chart's CRDs, as `helm install` creates them; shared by every test in the session."""
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        with contextlib.suppress(ConflictError):
            admin.create(CUSTOM_RESOURCE_DEFINITIONS, crd)
        deadline = time.monotonic() + 30
        while not _established(admin.get(CUSTOM_RESOURCE_DEFINITIONS, crd["metadata"]["name"])):
            assert time.monotonic() < deadline, f"{path.name} not established within 30s"
            time.sleep(0.1)


def _established(crd: Manifest) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture
def installed(
    request: pytest.FixtureRequest, helm: Path, consumer: Cluster, namespace: str
) -> Iterator[Installed]:
    """The chart, rendered with a bound API (and the flags of an indirect parameter, if any),
    created object by object in the consumer.

    The release name is unique so that its cluster-scoped objects (ClusterRole,
    ClusterRoleBinding) cannot collide with another installation in the shared cluster.
    """
    release = f"ac-{uuid.uuid4().hex[:8]}"
    flags: tuple[str, ...] = getattr(request, "param", BOUND)
    manifests = render(helm, *flags, release=release, namespace=namespace)
    with consumer.api_client() as api:
        admin = _kube(api)
        _ensure_chart_crds(admin)
        created: list[Manifest] = []
        try:
            for manifest in manifests:
                admin.create(CHART_RESOURCES[manifest["kind"]], manifest)
                created.append(manifest)
            account = only(manifests, "ServiceAccount")["metadata"]["name"]
            installed = Installed(manifests=manifests, namespace=namespace, service_account=account)
            _wait_for_rbac(consumer, installed)
            yield installed
        finally:
            for manifest in created:
                resource = CHART_RESOURCES[manifest["kind"]]
                if not resource.namespaced:
                    admin.delete(resource, manifest["metadata"]["name"])


def _wait_for_rbac(consumer: Cluster, installed: Installed) -> None:
    """The API server's RBAC authorizer reads from a cache: wait until it has the chart's
    cluster-wide and namespaced grants, so that a test's first request sees them."""
    with impersonating(consumer, installed.user) as kube:
        eventually(
            lambda: kube.self_subject_access_review(
                "list", "connect.upbound.io", "clusterconnections"
            )
            and kube.self_subject_access_review("list", "", "secrets", installed.namespace),
            what="the chart's RBAC grants to take effect",
            timeout=30,
        )


@contextlib.contextmanager
def impersonating(consumer: Cluster, user: str) -> Iterator[KubeClient]:
    """An admin client acting as `user`: the API server authorizes every request as that user
    (with the groups of a ServiceAccount), so a 403 here is the real RBAC decision."""
    with consumer.api_client() as api:
        api.set_default_header("Impersonate-User", user)
        yield _kube(api)


def _forbidden(call: Callable[..., object], *args: Any) -> bool:
    try:
        call(*args)
    except ForbiddenError:
        return True
    return False


@pytest.mark.parametrize(
    "installed", [BOUND, SERVICES_MODE], ids=["in-process", "services-mode"], indirect=True
)
def test_api_server_accepts_every_object_the_chart_renders(
    consumer: Cluster, installed: Installed
) -> None:
    # Created for real, not a dry run: every object reads back as rendered.
    with consumer.api_client() as api:
        admin = _kube(api)
        for manifest in installed.manifests:
            resource = CHART_RESOURCES[manifest["kind"]]
            stored = admin.get(
                resource, manifest["metadata"]["name"], manifest["metadata"].get("namespace")
            )
            assert stored["metadata"]["labels"] == manifest["metadata"]["labels"]
        deployment = admin.get(
            CHART_RESOURCES["Deployment"], installed.service_account, installed.namespace
        )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == connector_args(installed.manifests)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == (
        installed.service_account
    )


def test_service_account_can_do_its_job(consumer: Cluster, installed: Installed) -> None:
    ns = installed.namespace
    with impersonating(consumer, installed.user) as connector:
        # Its own API, read for real.
        connector.list(CLUSTER_CONNECTIONS)
        connector.list(CLUSTER_API_BINDINGS)
        connector.list(API_BINDINGS, ns)
        # Credentials in its own namespace; the cluster's identity.
        connector.list(SECRETS, ns)
        connector.get(NAMESPACES, "kube-system")
        # Leader election and Events.
        lease = {"metadata": {"name": installed.service_account, "namespace": ns}}
        lease = connector.create(LEASES, lease)
        connector.update(LEASES, lease)
        connector.create(
            EVENTS,
            {
                "metadata": {"generateName": "probe-", "namespace": ns},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "namespace": ns,
                    "name": installed.service_account,
                },
                "reason": "Probe",
                "message": "The connector may record Events.",
            },
        )
        # A bound API: its objects, their status and finalizers.
        for verb in ("get", "list", "watch", "update", "patch"):
            assert connector.self_subject_access_review(
                verb, NOP_RESOURCES.group, NOP_RESOURCES.plural, "default"
            ), verb
        for verb, subresource in (
            ("patch", "status"),
            ("update", "status"),
            ("update", "finalizers"),
        ):
            assert connector.self_subject_access_review(
                verb, NOP_RESOURCES.group, NOP_RESOURCES.plural, "default", subresource=subresource
            ), f"{verb} {subresource}"


def test_service_account_can_install_pulled_crds_but_not_delete_them(
    consumer: Cluster, installed: Installed
) -> None:
    group = f"{installed.namespace}.example.org"
    crd = {
        "metadata": {"name": f"probes.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Probe", "plural": "probes"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    with consumer.api_client() as api:
        admin = _kube(api)
        try:
            with impersonating(consumer, installed.user) as connector:
                connector.create(CUSTOM_RESOURCE_DEFINITIONS, crd)
                assert _forbidden(connector.delete, CUSTOM_RESOURCE_DEFINITIONS, f"probes.{group}")
        finally:
            with contextlib.suppress(NotFoundError):
                admin.delete(CUSTOM_RESOURCE_DEFINITIONS, f"probes.{group}")


def test_service_account_may_write_connection_secrets_but_not_patch_them(
    consumer: Cluster, installed: Installed
) -> None:
    with impersonating(consumer, installed.user) as connector:
        for verb in ("get", "list", "watch", "create", "update", "delete"):
            assert connector.self_subject_access_review(verb, "", "secrets", "default"), verb
        for verb in ("patch", "deletecollection"):
            assert not connector.self_subject_access_review(verb, "", "secrets", "default"), verb


@pytest.mark.parametrize("installed", [NO_CONNECTION_SECRETS], indirect=True)
def test_service_account_is_denied_everything_else(consumer: Cluster, installed: Installed) -> None:
    ns = installed.namespace
    with impersonating(consumer, installed.user) as connector:
        # Without connection Secrets: Secrets only in its own namespace, and only to read.
        assert _forbidden(connector.list, SECRETS, "default")
        assert _forbidden(connector.list, SECRETS)
        assert _forbidden(connector.create, SECRETS, {"metadata": {"name": "x", "namespace": ns}})
        # An API group it is not bound to: refused before the server even looks the group up.
        assert _forbidden(connector.list, UNBOUND, "default")
        # A bound API, but users' objects are theirs to create and delete.
        for verb in ("create", "delete", "deletecollection"):
            assert not connector.self_subject_access_review(
                verb, NOP_RESOURCES.group, NOP_RESOURCES.plural, "default"
            ), verb
        # No granting itself more, no workloads, no deleting connections.
        assert _forbidden(
            connector.create,
            CLUSTER_ROLE_BINDINGS,
            {
                "metadata": {"name": f"{ns}-escalate"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "User", "name": installed.user}],
            },
        )
        assert _forbidden(connector.list, PODS, ns)
        assert _forbidden(connector.list, CONFIG_MAPS, ns)
        assert not connector.self_subject_access_review(
            "delete", CLUSTER_CONNECTIONS.group, CLUSTER_CONNECTIONS.plural
        )


def test_pods_pass_the_restricted_pod_security_standard(
    helm: Path, consumer: Cluster, namespace: str
) -> None:
    # The API server's PodSecurity admission, enforcing "restricted" on the namespace, judges
    # a Pod made from each Deployment's template (there is no controller to make them here).
    release = f"ac-{uuid.uuid4().hex[:8]}"
    manifests = render(helm, *SERVICES_MODE, release=release, namespace=namespace)
    with consumer.api_client() as api:
        admin = _kube(api)
        admin.patch(
            NAMESPACES,
            namespace,
            None,
            {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        )
        # The ServiceAccounts a Pod needs to be admitted: kube-controller-manager creates
        # "default", the chart the others.
        eventually(
            lambda: admin.get(SERVICE_ACCOUNTS, "default", namespace),
            what=f"ServiceAccount {namespace}/default",
        )
        admin.create(SERVICE_ACCOUNTS, only(manifests, "ServiceAccount"))
        privileged = {
            "metadata": {"name": "privileged", "namespace": namespace},
            "spec": {
                "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]
            },
        }

        # Guards the check: enforcement is really on (once admission's cache of namespaces
        # has the label).
        def enforced() -> bool:
            if _forbidden(admin.create, PODS, privileged):
                return True
            admin.delete(PODS, "privileged", namespace)
            return False

        eventually(enforced, what="the namespace's Pod Security enforcement", timeout=30)
        deployments = [m for m in manifests if m["kind"] == "Deployment"]
        assert len(deployments) == 4
        for deployment in deployments:
            template = deployment["spec"]["template"]
            pod = {
                "metadata": {**template["metadata"], "name": deployment["metadata"]["name"]},
                "spec": template["spec"],
            }
            pod["metadata"]["namespace"] = namespace
            admin.create(PODS, pod)
