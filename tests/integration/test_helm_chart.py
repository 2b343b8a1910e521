"""The Helm chart, rendered by the real helm and installed into the real consumer API server.

Rendering checks what a user configures (values reach the connector's arguments, bad values
fail early with a message naming them, no wildcard RBAC); installing checks that the API
server accepts every object and that the connector's ServiceAccount gets exactly the access
it needs: impersonating it, allowed requests succeed and everything else is forbidden.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "package" / "helm" / "api-connector"
PACKAGE_CRDS = ROOT / "package" / "crds"
RELEASE = "api-connector"
NAMESPACE = "upbound-system"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> Path:
    """The pinned helm binary (built once by tools/build.sh, then cached)."""
    out = subprocess.run(
        [str(ROOT / "tools" / "build.sh"), "helm"],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stdout
    for line in out.splitlines():
        tool, _, path = line.partition(" ")
        if tool == "helm":
            return Path(path)
    raise AssertionError(f"tools/build.sh helm printed no helm path: {out!r}")


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
    deployment = only(manifests, "Deployment", RELEASE)
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


def test_chart_passes_helm_lint_strict(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART)],
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


def test_empty_display_name_is_left_to_the_connector(helm: Path) -> None:
    assert flag(connector_args(render(helm)), "consumer-cluster-name") is None


def test_services_mode_with_two_replicas_elects_a_leader_and_calls_the_stage_services(
    helm: Path,
) -> None:
    manifests = render(helm, *SERVICES_MODE)
    args = connector_args(manifests)
    assert "--leader-elect" in args
    assert only(manifests, "Deployment", RELEASE)["spec"]["replicas"] == 2
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


def test_leader_election_can_be_forced_with_one_replica(helm: Path) -> None:
    args = connector_args(render(helm, "--set", "leaderElection.enabled=true"))
    assert "--leader-elect" in args


def test_stage_tls_serves_with_certificates_from_the_named_secret(helm: Path) -> None:
    manifests = render(
        helm,
        "--set",
        "stages.mode=services",
        "--set",
        "stages.tls.enabled=true",
        "--set",
        "stages.tls.secretName=stage-certs",
    )
    pod = only(manifests, "Deployment", f"{RELEASE}-binder")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--tls-certs-dir=/tls" in container["args"]
    assert "--insecure" not in container["args"]
    assert {"name": "tls", "secret": {"secretName": "stage-certs"}} in pod["volumes"]


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


def test_secrets_are_readable_only_through_a_role_in_the_release_namespace(helm: Path) -> None:
    manifests = render(helm)
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
