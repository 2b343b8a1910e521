"""install/uninstall logic that needs no cluster: names, API selection, the provider identity,
permissions, opening kubeconfigs, and the command line. Values and helm: test_install_values.py
and test_install_release.py."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from connector.cli.main import main
from connector.install import (
    ClusterAccess,
    InstallError,
    Permission,
    default_secret_name,
    isolation_permissions,
    resources_from_flags,
    revocation_order,
    revoke_permissions,
    scoped_kubeconfig,
    select_apis,
    token_claims,
)
from connector.install.adoption import adoption_spec
from connector.install.apis import connection_resources
from connector.install.clusters import open_cluster
from connector.install.takeover import CRDTakeover, PulledCRD, Removal, Takeover, describe
from connector.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    DEPLOYMENTS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessRequest, BoundResource, provider_access
from functions.binder.isolation import policy_name
from functions.crd_puller import OfferedAPI

from . import assert_same

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


@dataclass(frozen=True)
class FlagsCase:
    reason: str
    entries: list[str]
    want: list[BoundResource]


@pytest.mark.parametrize(
    "case",
    [
        FlagsCase("none", [], []),
        FlagsCase(
            "GROUP/PLURAL names a namespaced API of unknown kind and version",
            ["nop.example.org/nopresources"],
            [
                BoundResource(
                    crd_name="nopresources.nop.example.org",
                    group="nop.example.org",
                    kind="",
                    plural="nopresources",
                    scope="Namespaced",
                    version="",
                )
            ],
        ),
    ],
    ids=lambda c: c.reason,
)
def test_resources_from_flags(case: FlagsCase) -> None:
    assert_same(case.want, resources_from_flags(case.entries), case.reason)


@pytest.mark.parametrize(
    "entry", ["nop.example.org", "/nopresources", "a.org/xs/ys", "a.org/*", "*/xs"]
)
def test_resources_from_flags_want_group_slash_plural(entry: str) -> None:
    with pytest.raises(InstallError) as raised:
        resources_from_flags([entry])
    assert str(raised.value).startswith(f"--bound-api {entry}: expected GROUP/PLURAL")


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


# -- permissions ----------------------------------------------------------------------------


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

    def created(placement: str) -> set[tuple[str, str, str | None]]:
        access = provider_access(
            AccessRequest(consumer_name="team-a", resources=[], placement=placement)
        )
        return {
            (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
            for o in access.objects
        }

    policy = policy_name("team-a")
    # What install creates for this consumer in the isolated placement, which is a superset
    # of the default placement's, and nothing of anyone else's.
    assert created("Default") < created("Isolated")
    assert set(order) == created("Isolated") | {
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


# -- opening kubeconfigs --------------------------------------------------------------------


def write_kubeconfig(path: Path, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t0k"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_missing_context_names_the_available_ones_and_the_flag(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "k")
    with pytest.raises(InstallError) as raised:
        open_cluster(ClusterAccess(kubeconfig=path, context="nope"), "provider")
    assert str(raised.value) == (
        f"context 'nope' not found in {path}; available: ctx. Pass one of them to "
        "--provider-context."
    )


def test_a_missing_current_context_is_named_too(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "k", **{"current-context": "gone"})
    with pytest.raises(InstallError, match="context 'gone' not found in .*--consumer-context"):
        open_cluster(ClusterAccess(kubeconfig=path), "consumer")


def test_an_unusable_kubeconfig_names_the_file_and_why(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "k", clusters=[])
    with pytest.raises(InstallError) as raised:
        open_cluster(ClusterAccess(kubeconfig=path), "consumer")
    assert str(raised.value) == (
        f"the consumer kubeconfig {path} cannot be used: The kubeconfig defines no clusters."
    )


def test_a_ca_file_beside_the_kubeconfig_is_embedded_for_the_scoped_kubeconfig(
    tmp_path: Path,
) -> None:
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"}
    path = write_kubeconfig(tmp_path / "k", clusters=[{"name": "c", "cluster": cluster}])
    opened = open_cluster(ClusterAccess(kubeconfig=path), "provider")
    assert opened.cluster_entry == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": base64.b64encode(b"PEM").decode(),
    }


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": "missing.crt"}
    path = write_kubeconfig(tmp_path / "k", clusters=[{"name": "c", "cluster": cluster}])
    with pytest.raises(InstallError) as raised:
        open_cluster(ClusterAccess(kubeconfig=path), "provider")
    assert f"the provider kubeconfig {path} cannot be used: " in str(raised.value)
    assert f"{tmp_path / 'missing.crt'}" in str(raised.value)
    assert "No such file or directory" in str(raised.value)


# -- --skip-connection: the APIs of the connections already there --------------------------


def offered_by(*names: str) -> dict[str, Any]:
    return {"status": {"offeredAPIs": [{"name": n} for n in names]}}


@dataclass(frozen=True)
class ConnectionResourcesCase:
    reason: str
    connections: list[dict[str, Any]]
    flags: list[str]
    want: list[str]


@pytest.mark.parametrize(
    "case",
    [
        ConnectionResourcesCase(
            "every API the connections offer, each once",
            [offered_by("nopresources.nop.example.org", "zaps.a.org"), offered_by("zaps.a.org")],
            [],
            ["nopresources.nop.example.org", "zaps.a.org"],
        ),
        ConnectionResourcesCase(
            "a group flag narrows",
            [offered_by("nopresources.nop.example.org", "zaps.a.org")],
            ["a.org"],
            ["zaps.a.org"],
        ),
        ConnectionResourcesCase(
            "GROUP/PLURAL is taken as it is, offered or not",
            [offered_by("nopresources.nop.example.org")],
            ["b.org/things"],
            ["things.b.org"],
        ),
        ConnectionResourcesCase(
            "a connection without status (never reconciled) offers nothing",
            [{"spec": {}}, offered_by("not-a-crd-name")],
            [],
            [],
        ),
    ],
    ids=lambda c: c.reason,
)
def test_connection_resources(case: ConnectionResourcesCase) -> None:
    got = connection_resources(case.connections, case.flags, report=lambda _line: None)
    assert_same(case.want, [r.crd_name for r in got], case.reason)


def test_a_group_no_connection_offers_is_refused_with_what_is_offered() -> None:
    with pytest.raises(InstallError) as e:
        connection_resources([offered_by("zaps.a.org")], ["b.org"], report=lambda _line: None)
    assert "no ClusterConnection in the consumer offers an API of that group" in str(e.value)
    assert "a.org/zaps" in str(e.value)


# -- the adoption opt-in --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adopt", "current", "want"),
    [
        (True, None, {"policy": "AdoptManaged"}),
        (False, {"spec": {"adoption": {"policy": "AdoptManaged"}}}, {"policy": "Never"}),
        (None, None, None),
        (None, {"spec": {"adoption": {"policy": "Never"}}}, None),
        (
            None,
            {"spec": {"adoption": {"policy": "AdoptManaged", "matchLabels": {"a": "b"}}}},
            {"policy": "AdoptManaged", "matchLabels": {"a": "b"}},
        ),
    ],
    ids=["--adopt", "--no-adopt", "neither, new", "neither, off", "neither keeps it on"],
)
def test_adoption_spec(
    adopt: bool | None, current: dict[str, Any] | None, want: dict[str, Any] | None
) -> None:
    assert adoption_spec(adopt, current) == want


# -- taking over another chart's release (what --dry-run prints) ----------------------------


def test_a_takeover_is_described_step_by_step() -> None:
    takeover = Takeover(
        old_chart="api-connector-0.4.2",
        carried={"consumerClusterDisplayName": "team-a", "pollInterval": "1m"},
        dropped=["image"],
        removals=[
            Removal(
                res=DEPLOYMENTS,
                name="api-connector",
                namespace="upbound-system",
                why="it runs the old connector",
            )
        ],
        crds=[
            CRDTakeover(name="clusterconnections.connect.upbound.io", managers=("helm",), objects=2)
        ],
        protected=["clusterconnections.connect.upbound.io"],
        pulled=[
            PulledCRD(
                name="nopresources.nop.example.org",
                connection="spaces-connection",
                managers=("upbound",),
                objects=3,
            )
        ],
    )
    text = "\n".join(describe(takeover, "upbound-system"))
    for part in (
        "installed by another chart (api-connector-0.4.2)",
        "consumerClusterDisplayName=team-a, pollInterval=1m are kept",
        "Its other values (image) mean nothing to this chart",
        "Delete Deployment upbound-system/api-connector of the old release: it runs the old "
        "connector",
        "CRD clusterconnections.connect.upbound.io: take over the fields of helm and apply "
        "this project's schema in place, keeping its 2 objects",
        "annotate it helm.sh/resource-policy=keep",
        "CRD nopresources.nop.example.org, pulled by the old connector: label it "
        "connect.upbound.io/connection=spaces-connection",
        "keeping its 3 objects",
    ):
        assert part in text, f"{part!r} missing from:\n{text}"


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
        (["--robot-name", "r"], "--robot-name is not supported: api-connector cannot create"),
        (["--skip-connection", "--provider-kubeconfig", "p"], "drop --provider-kubeconfig"),
        (["--skip-connection", "--upbound-token", "t"], "drop --upbound-token"),
        (["--skip-connection", "--secret-name", "s"], "drop --secret-name"),
        (["--skip-connection", "--poll-interval", "soon"], "is not a duration"),
        (["--chart", "x", "--helm-directory", "/"], "pass one of --chart, --helm-directory"),
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


#: Every flag of ``up controlplane api-connector install`` in Upbound's CLI reference (the
#: last version, v0.49), with a value where it takes one.
UP_INSTALL_FLAGS = [
    ["--upgrade"],
    ["--version", "0.1.0"],
    ["--name", "provider-connection"],
    ["--upbound-token", "t"],
    ["--skip-connection"],
    ["--consumer-kubeconfig", "k"],
    ["--consumer-context", "c"],
    ["--helm-directory", "/"],
    ["--set", "a=b"],
    ["--file", "values.yaml"],
    ["-f", "values.yaml"],
    ["--bundle", __file__],
    ["--robot-name", "robot"],
]


@pytest.mark.parametrize("flag", UP_INSTALL_FLAGS, ids=lambda f: f[0])
def test_every_flag_upbound_documented_for_install_is_known(flag: list[str]) -> None:
    # --help after the flag: the command line is parsed (an unknown flag fails) and nothing
    # runs.
    result = CliRunner().invoke(main, ["install", *flag, "--help"])
    assert result.exit_code == 0, result.output


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
