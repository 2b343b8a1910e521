"""install/uninstall logic that needs no cluster: values, names, API selection, helm calls."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import urllib3.exceptions
import yaml
from click.testing import CliRunner

from connector.cli.main import main
from connector.helm import Helm, HelmError
from connector.install import (
    ClusterAccess,
    InstallError,
    InstallOptions,
    Permission,
    _plan_release,
    _reason_of,
    default_secret_name,
    find_chart,
    isolation_permissions,
    parse_set,
    revocation_order,
    revoke_permissions,
    scoped_kubeconfig,
    select_apis,
    token_claims,
    union_bound_apis,
)
from connector.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessRequest, BoundResource, provider_access
from functions.binder.isolation import policy_name
from functions.crd_puller import OfferedAPI

from . import assert_same

ROOT = Path(__file__).resolve().parents[2]


# -- --set ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetCase:
    reason: str
    args: list[str]
    want: dict[str, Any]


@pytest.mark.parametrize(
    "case",
    [
        SetCase("a dotted key nests", ["a.b.c=x"], {"a": {"b": {"c": "x"}}}),
        SetCase(
            "helm's types: bool, int, null; the rest stays a string",
            ["t=true,f=False,n=null,i=42,s=1.5,w=10m"],
            {"t": True, "f": False, "n": None, "i": 42, "s": "1.5", "w": "10m"},
        ),
        SetCase("a later assignment wins", ["a=1", "a=2"], {"a": 2}),
        SetCase("braces make a list", ["l={x,y,3}"], {"l": ["x", "y", 3]}),
        SetCase(
            "escaped dots and commas are literal",
            [r"podAnnotations.example\.com/team=a\,b"],
            {"podAnnotations": {"example.com/team": "a,b"}},
        ),
        SetCase("an empty value is an empty string", ["a="], {"a": ""}),
        SetCase("assignments merge into one tree", ["a.b=1", "a.c=2"], {"a": {"b": 1, "c": 2}}),
    ],
    ids=lambda c: c.reason,
)
def test_parse_set(case: SetCase) -> None:
    assert_same(case.want, parse_set(case.args), case.reason)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("novalue", "expected key=value"),
        ("a..b=1", "empty part"),
        ("list[0]=x", "list indexes are not supported"),
    ],
)
def test_parse_set_rejects_what_it_cannot_express(arg: str, message: str) -> None:
    with pytest.raises(InstallError, match=message):
        parse_set([arg])


# -- names and APIs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "robot", "want"),
    [
        ("provider-connection", False, "provider-kubeconfig"),
        ("provider-connection", True, "provider-robot-token"),
        ("team-a", False, "team-a-kubeconfig"),
        ("-connection", False, "-connection-kubeconfig"),
    ],
)
def test_default_secret_name(connection: str, robot: bool, want: str) -> None:
    assert default_secret_name(connection, robot=robot) == want


def api(plural: str, group: str = "nop.example.org") -> OfferedAPI:
    return OfferedAPI(
        name=f"{plural}.{group}",
        group=group,
        kind=plural.title(),
        plural=plural,
        scope="Namespaced",
        versions=["v1alpha1"],
        storage_version="v1alpha1",
    )


OFFERED = [api("nopresources"), api("zaps"), api("widgets", "example.org")]


@dataclass(frozen=True)
class SelectCase:
    reason: str
    wanted: list[str]
    want: list[str]


@pytest.mark.parametrize(
    "case",
    [
        SelectCase(
            "no flag binds everything offered",
            [],
            ["nopresources.nop.example.org", "zaps.nop.example.org", "widgets.example.org"],
        ),
        SelectCase(
            "a group binds its APIs",
            ["nop.example.org"],
            ["nopresources.nop.example.org", "zaps.nop.example.org"],
        ),
        SelectCase("group/plural binds one API", ["example.org/widgets"], ["widgets.example.org"]),
        SelectCase(
            "overlapping flags bind each API once",
            ["nop.example.org/zaps", "nop.example.org"],
            ["zaps.nop.example.org", "nopresources.nop.example.org"],
        ),
    ],
    ids=lambda c: c.reason,
)
def test_select_apis(case: SelectCase) -> None:
    assert_same(case.want, [a.name for a in select_apis(OFFERED, case.wanted)], case.reason)


def test_select_apis_names_what_is_offered_when_a_flag_matches_nothing() -> None:
    with pytest.raises(InstallError) as e:
        select_apis(OFFERED, ["nop.example.org/gone"])
    assert "--bound-api nop.example.org/gone: the provider does not offer it" in str(e.value)
    assert "nop.example.org/nopresources" in str(e.value)


def test_union_of_bound_apis_keeps_every_group_and_plural_once() -> None:
    got = union_bound_apis(
        [{"group": "b.org", "resources": ["ys"]}, {"group": "a.org", "resources": ["xs"]}],
        [{"group": "b.org", "resources": ["zs", "ys"]}, "junk", {"resources": ["orphans"]}],
        None,
    )
    assert_same(
        [{"group": "a.org", "resources": ["xs"]}, {"group": "b.org", "resources": ["ys", "zs"]}],
        got,
        "union",
    )


# -- the scoped kubeconfig ------------------------------------------------------------------


def test_scoped_kubeconfig_keeps_the_address_and_ca_and_nothing_of_the_admin() -> None:
    admin_cluster = {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": "Q0E=",
        "tls-server-name": "kubernetes",
        "extensions": [{"name": "x", "extension": {}}],
    }
    text = scoped_kubeconfig(cluster=admin_cluster, token="t0k", user="u", namespace="ns")
    config = yaml.safe_load(text)
    assert config["clusters"] == [
        {
            "name": "provider",
            "cluster": {
                "server": "https://127.0.0.1:6443",
                "certificate-authority-data": "Q0E=",
                "tls-server-name": "kubernetes",
            },
        }
    ]
    assert config["users"] == [{"name": "u", "user": {"token": "t0k"}}]
    assert config["current-context"] == "provider"
    assert config["contexts"][0]["context"]["namespace"] == "ns"
    # Deterministic, so that a rerun with the same token writes nothing.
    assert text == scoped_kubeconfig(cluster=admin_cluster, token="t0k", user="u", namespace="ns")


def _jwt(claims: dict[str, Any]) -> str:
    import base64

    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln"


@pytest.mark.parametrize(
    ("token", "want"),
    [
        (
            _jwt({"sub": "system:serviceaccount:ns:sa", "exp": 5}),
            {"sub": "system:serviceaccount:ns:sa", "exp": 5},
        ),
        ("not-a-jwt", {}),
        ("a.!!!.c", {}),
        (_jwt({"x": 1}).replace(".c2ln", ""), {}),
    ],
)
def test_token_claims(token: str, want: dict[str, Any]) -> None:
    assert token_claims(token) == want


# -- messages -------------------------------------------------------------------------------


def test_refused_connection_is_reported_as_such_although_urllib3_calls_it_a_timeout() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    wrapped = urllib3.exceptions.NewConnectionError(None, "Failed to establish")  # type: ignore[arg-type]
    wrapped.__cause__ = refused
    outer = RuntimeError("unreachable")
    outer.__cause__ = wrapped
    assert _reason_of(outer) == "connection refused"
    assert _reason_of(TimeoutError("read timed out")) == "timed out"


def test_permission_description_names_verb_resource_and_namespace() -> None:
    assert Permission(verb="create", resource="clusterroles").describe() == "create clusterroles"
    assert (
        Permission(
            verb="create", resource="serviceaccounts", namespace="ns", subresource="token"
        ).describe()
        == "create serviceaccounts/token in namespace ns"
    )


# -- the provider identity's isolation policy, and taking both back ---------------------


def test_the_isolation_policy_needs_rights_on_both_of_its_kinds() -> None:
    assert [p.describe() for p in isolation_permissions(("create", "patch"))] == [
        "create validatingadmissionpolicies",
        "patch validatingadmissionpolicies",
        "create validatingadmissionpolicybindings",
        "patch validatingadmissionpolicybindings",
    ]
    assert {p.group for p in isolation_permissions(("get",))} == {"admissionregistration.k8s.io"}


def test_uninstall_revokes_the_identity_before_it_removes_the_policy_that_confines_it() -> None:
    order = [(res.kind, name, namespace) for res, name, namespace in revocation_order("team-a")]
    access = provider_access(AccessRequest(consumer_name="team-a", resources=[]))
    created = {
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in access.objects
    }
    policy = policy_name("team-a")
    # Exactly what install creates for this consumer, and nothing of anyone else's.
    assert set(order) == created | {
        (VALIDATING_ADMISSION_POLICY_BINDINGS.kind, policy, None),
        (VALIDATING_ADMISSION_POLICIES.kind, policy, None),
    }
    # The grant goes first, so access ends at once; the policy goes last, so there is never
    # a working identity without it.
    assert order[0][0] == CLUSTER_ROLE_BINDINGS.kind
    assert [kind for kind, _, _ in order[-2:]] == [
        VALIDATING_ADMISSION_POLICY_BINDINGS.kind,
        VALIDATING_ADMISSION_POLICIES.kind,
    ]
    kinds = [kind for kind, _, _ in order]
    assert kinds.index("ServiceAccount") < kinds.index("Namespace")


def test_uninstall_checks_it_may_read_and_delete_each_kind_it_removes() -> None:
    access = provider_access(AccessRequest(consumer_name="team-a", resources=[]))
    needs = {(p.verb, p.resource, p.namespace) for p in revoke_permissions(access)}
    for res, _name, namespace in revocation_order("team-a"):
        for verb in ("get", "delete"):
            assert (verb, res.plural, namespace) in needs, (verb, res.plural)


# -- the chart ------------------------------------------------------------------------------


def test_default_chart_is_the_one_in_the_repository() -> None:
    chart, directory = find_chart(None, None)
    assert directory == ROOT / "package" / "helm" / "api-connector"
    assert chart == str(directory)


def test_chart_version_must_match_a_local_chart() -> None:
    with pytest.raises(InstallError, match=r"--version 9\.9\.9: the chart in .* is version 0\."):
        find_chart(None, "9.9.9")


def test_chart_reference_is_passed_to_helm_as_is() -> None:
    assert find_chart("oci://registry.example.org/charts/api-connector", "1.2.3") == (
        "oci://registry.example.org/charts/api-connector",
        None,
    )


def test_chart_directory_without_chart_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="no Chart.yaml"):
        find_chart(str(tmp_path), None)


# -- helm -----------------------------------------------------------------------------------


@dataclass
class FakeHelm:
    """Answers helm commands from canned outputs and records every argv."""

    release: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)
    fail: str = ""
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if self.fail and self.fail in argv:
            return subprocess.CompletedProcess(argv, 1, "", "Error: boom\nsecond line")
        if argv[1] == "list":
            return subprocess.CompletedProcess(
                argv, 0, json.dumps([self.release] if self.release else []), ""
            )
        if argv[1:3] == ["get", "values"]:
            return subprocess.CompletedProcess(argv, 0, json.dumps(self.values), "")
        return subprocess.CompletedProcess(argv, 0, "", "")


def helm_with(fake: FakeHelm) -> Helm:
    return Helm("helm", kubeconfig=Path("/k"), context="ctx", run=fake, timeout=60)


def test_helm_install_passes_cluster_values_file_and_skips_crds() -> None:
    fake = FakeHelm()
    helm_with(fake).install("api-connector", "/chart", "upbound-system", {"a": 1})
    (argv,) = fake.calls
    assert argv[:4] == ["helm", "install", "api-connector", "/chart"]
    assert argv[-4:] == ["--kubeconfig", "/k", "--kube-context", "ctx"]
    assert "--skip-crds" in argv
    assert argv[argv.index("--namespace") + 1] == "upbound-system"
    assert "--values" in argv


def test_helm_upgrade_installs_if_missing_and_passes_the_version() -> None:
    fake = FakeHelm()
    helm_with(fake).install(
        "api-connector", "oci://x/c", "ns", {}, upgrade=True, version="1.0.0", skip_crds=False
    )
    (argv,) = fake.calls
    assert argv[1:3] == ["upgrade", "--install"]
    assert argv[argv.index("--version") + 1] == "1.0.0"
    assert "--skip-crds" not in argv


def test_helm_failure_carries_the_end_of_its_output() -> None:
    fake = FakeHelm(fail="uninstall")
    with pytest.raises(
        HelmError, match="helm uninstall api-connector failed: Error: boom second line"
    ):
        helm_with(fake).uninstall("api-connector", "ns")


def test_helm_release_lists_all_states_and_matches_the_name_exactly() -> None:
    fake = FakeHelm(
        release={
            "name": "api-connector",
            "namespace": "ns",
            "status": "failed",
            "chart": "api-connector-0.1.0",
            "revision": "3",
        }
    )
    release = helm_with(fake).release("api-connector", "ns")
    assert release is not None
    assert (release.status, release.revision) == ("failed", "3")
    argv = fake.calls[0]
    assert "--all" in argv
    assert argv[argv.index("--filter") + 1] == "^api-connector$"


# -- whether and how helm runs --------------------------------------------------------------

NOP_RESOURCE = BoundResource(
    crd_name="nopresources.nop.example.org",
    group="nop.example.org",
    kind="NopResource",
    plural="nopresources",
    scope="Namespaced",
    version="v1alpha1",
)
COMPUTED = {
    "consumerClusterDisplayName": "team-a",
    "pollInterval": "10m",
    "boundAPIs": [{"group": "nop.example.org", "resources": ["nopresources"]}],
}
DEPLOYED = {"name": "api-connector", "status": "deployed", "chart": "api-connector-0.1.0"}
CHART_DIR = ROOT / "package" / "helm" / "api-connector"


def options(*, upgrade: bool = False, values: dict[str, Any] | None = None) -> InstallOptions:
    return InstallOptions(
        consumer=ClusterAccess(kubeconfig=Path("/k")),
        provider=ClusterAccess(kubeconfig=Path("/p")),
        upgrade=upgrade,
        values=values or {},
    )


@dataclass(frozen=True)
class ReleaseCase:
    reason: str
    opts: InstallOptions
    release: dict[str, Any] | None
    current: dict[str, Any]
    want_run: bool
    want_values: dict[str, Any]


@pytest.mark.parametrize(
    "case",
    [
        ReleaseCase("no release: install", options(), None, {}, True, COMPUTED),
        ReleaseCase(
            "same values, deployed: leave it (a rerun resumes)",
            options(),
            DEPLOYED,
            COMPUTED,
            False,
            COMPUTED,
        ),
        ReleaseCase(
            "--set values go over the computed ones",
            options(values={"workers": 2, "pollInterval": "1h"}),
            None,
            {},
            True,
            {**COMPUTED, "workers": 2, "pollInterval": "1h"},
        ),
        ReleaseCase(
            "upgrade keeps APIs another connection bound",
            options(upgrade=True),
            DEPLOYED,
            {**COMPUTED, "boundAPIs": [{"group": "a.org", "resources": ["xs"]}]},
            True,
            {
                **COMPUTED,
                "boundAPIs": [
                    {"group": "a.org", "resources": ["xs"]},
                    {"group": "nop.example.org", "resources": ["nopresources"]},
                ],
            },
        ),
        ReleaseCase(
            "upgrade with boundAPIs given explicitly replaces them",
            options(upgrade=True, values={"boundAPIs": []}),
            DEPLOYED,
            {**COMPUTED, "boundAPIs": [{"group": "a.org", "resources": ["xs"]}]},
            True,
            {**COMPUTED, "boundAPIs": []},
        ),
    ],
    ids=lambda c: c.reason,
)
def test_plan_release(case: ReleaseCase) -> None:
    fake = FakeHelm(release=case.release, values=case.current)
    _, values, run = _plan_release(case.opts, helm_with(fake), CHART_DIR, "team-a", [NOP_RESOURCE])
    assert run == case.want_run, case.reason
    assert_same(case.want_values, values, case.reason)


@pytest.mark.parametrize(
    ("release", "current"),
    [
        (DEPLOYED, {**COMPUTED, "pollInterval": "1h"}),
        ({**DEPLOYED, "status": "failed"}, COMPUTED),
        ({**DEPLOYED, "chart": "api-connector-0.0.1"}, COMPUTED),
    ],
    ids=["other values", "failed release", "other chart version"],
)
def test_existing_release_without_upgrade_is_refused(
    release: dict[str, Any], current: dict[str, Any]
) -> None:
    fake = FakeHelm(release=release, values=current)
    with pytest.raises(InstallError) as e:
        _plan_release(options(), helm_with(fake), CHART_DIR, "team-a", [NOP_RESOURCE])
    assert "the Helm release api-connector already exists in namespace upbound-system" in str(
        e.value
    )
    assert "rerun with --upgrade" in str(e.value)


# -- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "pass --provider-kubeconfig"),
        (
            ["--provider-kubeconfig", "p", "--upbound-token", "t"],
            "either --provider-kubeconfig or --upbound-token",
        ),
        (
            ["--upbound-token", "t", "--organization", "o"],
            "--upbound-token needs --spaces-base-url",
        ),
        (["--provider-kubeconfig", "p", "--organization", "o"], "only go with --upbound-token"),
        (["--provider-context", "c", "--upbound-token", "t"], "--provider-context needs"),
        (["--provider-kubeconfig", "p", "--set", "a[0]=1"], "list indexes are not supported"),
        (["--provider-kubeconfig", "p", "--timeout", "soon"], "is not a duration"),
        (
            ["--upbound-token", "t", "--isolation-policy"],
            "--isolation-policy needs --provider-kubeconfig",
        ),
    ],
)
def test_install_usage_errors_exit_before_touching_a_cluster(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["install", "--consumer-kubeconfig", "/nonexistent", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider-context", "c"], "--provider-context needs --provider-kubeconfig"),
        (["--consumer-cluster-name", "x"], "--consumer-cluster-name needs --provider-kubeconfig"),
    ],
)
def test_uninstall_usage_errors_exit_before_touching_a_cluster(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["uninstall", "--consumer-kubeconfig", "/nonexistent", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_the_isolation_policy_is_on_by_default_with_a_flag_to_opt_out() -> None:
    result = CliRunner().invoke(main, ["install", "--help"])
    assert "--isolation-policy / --no-isolation-policy" in result.output


def test_unreadable_kubeconfig_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.kubeconfig"
    result = CliRunner().invoke(
        main,
        ["install", "--consumer-kubeconfig", str(missing), "--provider-kubeconfig", "p"],
    )
    assert result.exit_code == 1
    assert f"cannot read the consumer kubeconfig {missing}: No such file or directory" in (
        result.output
    )


def test_robot_token_is_never_echoed(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "k"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    result = CliRunner().invoke(
        main,
        [
            "install",
            "--consumer-kubeconfig",
            str(kubeconfig),
            "--upbound-token",
            "s3cr3t-token-value",
            "--organization",
            "o",
            "--spaces-base-url",
            "spaces.example.org",
            "--control-plane-group",
            "g",
            "--control-plane",
            "cp",
        ],
    )
    assert result.exit_code != 0
    assert "s3cr3t-token-value" not in result.output
