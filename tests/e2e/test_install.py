"""``api-connector install`` / ``uninstall`` against real clusters, with the real helm.

These tests hold their own consumer and provider clusters (started once for the module)
instead of the session's shared ones: the Helm release and its cluster-scoped objects are one
per cluster, ``uninstall`` removes the connector's finalizer from every bound object, and the
connector started here to prove Ready reconciles every ClusterConnection in its consumer. On
the shared clusters all three would reach into other tests' objects.

The local clusters have no kubelet, so the chart's Deployment never runs a pod; to see the
connection become Ready, ``api-connector run`` runs out of cluster against the consumer with
the credentials install stored, exactly what the pod would do.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from connector.cli.main import main
from connector.envtest import Cluster, start_clusters
from connector.envtest._cluster import free_port
from connector.install import FIELD_MANAGER
from connector.kube import (
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    ForbiddenError,
    KubeClient,
    NotFoundError,
    Resource,
    UnauthorizedError,
    client_from_kubeconfig,
)
from connector.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    SERVICE_ACCOUNTS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder.isolation import isolation_policy, policy_name
from functions.binder.placement import (
    namespace_objects,
    objects_role_name,
    placement_policy_name,
)
from functions.common import (
    FINALIZER,
    LABEL_CONSUMER_CLUSTER,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    MANAGED_LABEL,
)
from functions.crd_puller import desired_consumer_crd
from tests.e2e.harness import NOP, crd, eventually
from tests.support import NOP_BOUND

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_CRD = ROOT / "examples" / "walkthrough" / "provider" / "nopresources.nop.example.org.yaml"
CONSUMER_NAME = "install-e2e"
PROVIDER_NAMESPACE = f"connector-{CONSUMER_NAME}"
RELEASE_NAMESPACE = "upbound-system"
#: A provider API that is not bindable: the scoped identity must not reach it.
HIDDEN = Resource("hidden.example.org", "v1alpha1", "secretthings", "SecretThing", True)
#: The installed consumer's isolation policy (and its binding's) name in the provider.
POLICY = policy_name(CONSUMER_NAME)
#: Another consumer of the same provider, whose twins the installed identity must not write.
OTHER_CONSUMER = "other-consumer"
#: Where the isolation tests put twins in the provider.
TWINS_NAMESPACE = "isolation"
#: kube-apiserver flags for a provider that does not serve ValidatingAdmissionPolicy, as one
#: older than Kubernetes 1.30 (or with the API switched off) would not. The admission plugin
#: goes too: it waits for the policies it can no longer list, and the server never gets ready.
WITHOUT_ADMISSION_POLICIES = (
    "--runtime-config="
    "admissionregistration.k8s.io/v1/validatingadmissionpolicies=false,"
    "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings=false",
    "--disable-admission-plugins=ValidatingAdmissionPolicy",
)


@dataclass
class Env:
    consumer: Cluster
    provider: Cluster
    consumer_kube: KubeClient
    provider_kube: KubeClient
    helm: str
    connection: str

    @property
    def secret_name(self) -> str:
        return f"{self.connection}-kubeconfig"

    def install_args(self, *extra: str) -> list[str]:
        return [
            "install",
            "--consumer-kubeconfig",
            str(self.consumer.kubeconfig),
            "--provider-kubeconfig",
            str(self.provider.kubeconfig),
            "--name",
            self.connection,
            "--consumer-cluster-name",
            CONSUMER_NAME,
            "--poll-interval",
            "1h",
            "--helm",
            self.helm,
            *extra,
        ]

    def helm_cmd(self, *args: str) -> str:
        out = subprocess.run(
            [self.helm, *args, "--kubeconfig", str(self.consumer.kubeconfig)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}:\n{result.output}"
    return result.output


def failed(result: Result) -> str:
    assert result.exit_code != 0, f"expected a failure, got:\n{result.output}"
    return " ".join(result.output.split())  # click wraps nothing, but be safe about newlines


def exists(kube: KubeClient, res: Resource, name: str, namespace: str | None = None) -> bool:
    try:
        kube.get(res, name, namespace)
    except NotFoundError:
        return False
    return True


def stored_kubeconfig(env: Env) -> dict[str, Any]:
    secret = env.consumer_kube.get(SECRETS, env.secret_name, RELEASE_NAMESPACE)
    loaded: dict[str, Any] = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    return loaded


def scoped_client(env: Env) -> KubeClient:
    return client_from_kubeconfig(yaml.safe_dump(stored_kubeconfig(env)), name="scoped")


def provider_objects(provider: KubeClient) -> list[str]:
    """Everything install created in the provider, as kind/namespace/name."""
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    names = []
    for res in (
        NAMESPACES,
        SERVICE_ACCOUNTS,
        SECRETS,
        CLUSTER_ROLES,
        CLUSTER_ROLE_BINDINGS,
        VALIDATING_ADMISSION_POLICIES,
        VALIDATING_ADMISSION_POLICY_BINDINGS,
    ):
        items, _ = provider.list(res, label_selector=selector)
        names += [
            f"{res.kind}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}"
            for i in items
        ]
    return sorted(names)


@pytest.fixture(scope="module")
def helm() -> str:
    out = subprocess.run(
        [str(ROOT / "tools" / "build.sh"), "helm"],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    ).stdout
    return next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("helm "))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, helm: str) -> Iterator[Env]:
    started = start_clusters(("inst-consumer", "inst-provider"), tmp_path_factory.mktemp("inst"))
    try:
        consumer, provider = started
        consumer_kube = client_from_kubeconfig(consumer.kubeconfig.read_text(), name="consumer")
        provider_kube = client_from_kubeconfig(provider.kubeconfig.read_text(), name="provider")
        for doc in (
            yaml.safe_load(PROVIDER_CRD.read_text()),
            crd("hidden.example.org", "SecretThing", bindable=False),
        ):
            provider_kube.apply(CUSTOM_RESOURCE_DEFINITIONS, doc, "install-test")
        for name in ("nopresources.nop.example.org", "secretthings.hidden.example.org"):
            eventually(lambda name=name: _established(provider_kube, name))
        yield Env(
            consumer=consumer,
            provider=provider,
            consumer_kube=consumer_kube,
            provider_kube=provider_kube,
            helm=helm,
            connection=f"inst-{uuid.uuid4().hex[:6]}",
        )
    finally:
        for cluster in started:
            cluster.stop()


def _established(kube: KubeClient, name: str) -> bool:
    conditions = (kube.get(CUSTOM_RESOURCE_DEFINITIONS, name).get("status") or {}).get(
        "conditions"
    ) or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def installed(env: Env) -> str:
    """install --no-wait has run once; its output."""
    return ok(cli(*env.install_args("--no-wait")))


class Connector:
    """``api-connector run`` as a subprocess, out of cluster, against the consumer."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "api-connector"),
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--consumer-cluster-name",
                CONSUMER_NAME,
                "--poll-interval",
                "1h",
                "--metrics-address",
                "",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


# -- install with an admin's provider kubeconfig ------------------------------------------


def test_install_creates_secret_release_and_connection(env: Env, installed: str) -> None:
    assert "Helm release api-connector installed" in installed
    assert exists(env.consumer_kube, SECRETS, env.secret_name, RELEASE_NAMESPACE)
    connection = env.consumer_kube.get(CLUSTER_CONNECTIONS, env.connection)
    assert connection["spec"]["secretRef"] == {
        "kind": "KubeConfig",
        "name": env.secret_name,
        "namespace": RELEASE_NAMESPACE,
    }
    assert connection["spec"]["crdManagement"] == {"pullBehavior": "Pull"}
    assert connection["metadata"]["labels"][LABEL_MANAGED_BY] == MANAGED_BY
    releases = yaml.safe_load(env.helm_cmd("list", "-n", RELEASE_NAMESPACE, "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("api-connector", "deployed")]
    values = yaml.safe_load(
        env.helm_cmd("get", "values", "api-connector", "-n", RELEASE_NAMESPACE, "-o", "json")
    )
    assert values == {
        "consumerClusterDisplayName": CONSUMER_NAME,
        "pollInterval": "1h",
        "boundAPIs": [{"group": "nop.example.org", "resources": ["nopresources"]}],
    }


def test_stored_kubeconfig_holds_a_token_not_the_admin_certificate(
    env: Env, installed: str
) -> None:
    config = stored_kubeconfig(env)
    (user,) = config["users"]
    assert set(user["user"]) == {"token"}
    admin = yaml.safe_load(env.provider.kubeconfig.read_text())
    admin_user = admin["users"][0]["user"]
    secret = env.consumer_kube.get(SECRETS, env.secret_name, RELEASE_NAMESPACE)
    raw = base64.b64decode(secret["data"]["kubeconfig"]).decode()
    assert admin_user["client-certificate-data"] not in raw
    assert admin_user["client-key-data"] not in raw
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == admin["clusters"][0]["cluster"]["server"]


def test_scoped_identity_reaches_the_bound_api_and_nothing_else(env: Env, installed: str) -> None:
    scoped = scoped_client(env)
    scoped.list(NOP)  # allowed: the bound API
    scoped.list(CUSTOM_RESOURCE_DEFINITIONS)  # allowed: the connector pulls CRDs
    with pytest.raises(ForbiddenError):
        scoped.list(SECRETS)
    with pytest.raises(ForbiddenError):
        scoped.list(HIDDEN)
    with pytest.raises(ForbiddenError):
        scoped.list(CLUSTER_ROLES)


def twins_namespace(admin: KubeClient) -> None:
    """TWINS_NAMESPACE in the provider (each test that writes twins there makes sure)."""
    admin.apply(
        NAMESPACES,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TWINS_NAMESPACE}},
        "install-test",
    )


def twin(name: str, owner: str | None, cool: str = "v") -> dict[str, Any]:
    """A provider twin in TWINS_NAMESPACE, owned by consumer ``owner`` (None: by nobody)."""
    labels = {MANAGED_LABEL: "true", LABEL_CONSUMER_CLUSTER: owner} if owner else {}
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": name, "namespace": TWINS_NAMESPACE, "labels": labels},
        "spec": {"coolField": cool},
    }


def forbidden(call: Callable[[], object]) -> str:
    """The 403 message of ``call()``; fails if the provider allowed it."""
    with pytest.raises(ForbiddenError) as info:
        call()
    return str(info.value)


def test_install_confines_the_identity_with_an_isolation_policy_for_the_bound_apis(
    env: Env, installed: str
) -> None:
    assert f"ValidatingAdmissionPolicy {POLICY} (and its binding)" in installed
    policy = env.provider_kube.get(VALIDATING_ADMISSION_POLICIES, POLICY)
    # Exactly the APIs the identity was given (not the hidden one), every write verb.
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert [{k: v for k, v in r.items() if k != "scope"} for r in rules] == [
        {
            "apiGroups": ["nop.example.org"],
            "apiVersions": ["*"],
            "resources": ["nopresources"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
        }
    ]
    (condition,) = policy["spec"]["matchConditions"]
    identity = f"system:serviceaccount:{PROVIDER_NAMESPACE}:consumer"
    assert condition["expression"] == f"request.userInfo.username == '{identity}'"
    binding = env.provider_kube.get(VALIDATING_ADMISSION_POLICY_BINDINGS, POLICY)
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}
    for obj in (policy, binding):
        assert {m["manager"] for m in obj["metadata"]["managedFields"]} == {FIELD_MANAGER}
        assert obj["metadata"]["labels"][LABEL_CONSUMER_CLUSTER] == CONSUMER_NAME


def test_installed_identity_writes_its_own_twins_but_not_another_consumers(
    env: Env, installed: str
) -> None:
    admin = env.provider_kube
    twins_namespace(admin)
    theirs = twin("theirs", OTHER_CONSUMER, "their spec")
    admin.apply(NOP, theirs, "install-test")
    admin.apply(NOP, twin("nobodys", None), "install-test")
    with scoped_client(env) as scoped:

        def overwrite_denied() -> str:
            current = scoped.get(NOP, "theirs", TWINS_NAMESPACE)
            current["spec"]["coolField"] = "overwritten"
            try:
                scoped.update(NOP, current)
            except ForbiddenError as e:
                return str(e)
            admin.apply(NOP, theirs, "install-test")  # the policy was not loaded yet
            return ""

        # The API server loads a new policy within about a second.
        message = eventually(overwrite_denied, timeout=30)
        assert f"ValidatingAdmissionPolicy '{POLICY}'" in message, message
        assert f"denied request: consumer {CONSUMER_NAME} may only write objects labelled" in (
            message
        )
        assert "another consumer" in forbidden(
            lambda: scoped.delete(NOP, "theirs", TWINS_NAMESPACE)
        )
        assert "another consumer" in forbidden(
            lambda: scoped.delete(NOP, "nobodys", TWINS_NAMESPACE)
        )
        planted = forbidden(lambda: scoped.create(NOP, twin("planted", OTHER_CONSUMER)))
        assert f"may only write objects labelled {LABEL_CONSUMER_CLUSTER}={CONSUMER_NAME}" in (
            planted
        )
        assert admin.get(NOP, "theirs", TWINS_NAMESPACE)["spec"]["coolField"] == "their spec"

        # Its own twins: create, change, delete, as the connector does.
        scoped.create(NOP, twin("mine", CONSUMER_NAME))
        scoped.apply(NOP, twin("mine", CONSUMER_NAME, "changed"), "install-test")
        assert admin.get(NOP, "mine", TWINS_NAMESPACE)["spec"]["coolField"] == "changed"
        scoped.delete(NOP, "mine", TWINS_NAMESPACE)
        assert not exists(admin, NOP, "mine", TWINS_NAMESPACE)


def test_rerun_with_the_same_arguments_changes_nothing(env: Env, installed: str) -> None:
    def current() -> dict[str, dict[str, Any]]:
        provider = env.provider_kube
        return {
            "secret": env.consumer_kube.get(SECRETS, env.secret_name, RELEASE_NAMESPACE),
            "connection": env.consumer_kube.get(CLUSTER_CONNECTIONS, env.connection),
            "policy": provider.get(VALIDATING_ADMISSION_POLICIES, POLICY),
            "policy binding": provider.get(VALIDATING_ADMISSION_POLICY_BINDINGS, POLICY),
        }

    before = current()
    out = ok(cli(*env.install_args("--no-wait")))
    assert "already installed with these values" in out
    after = current()
    for what in before:
        assert (
            after[what]["metadata"]["resourceVersion"]
            == before[what]["metadata"]["resourceVersion"]
        ), f"the rerun rewrote the {what}"
    # One policy for this consumer, updated in place, never a second one.
    assert _policies_of(env.provider_kube, CONSUMER_NAME) == [POLICY]


def _policies_of(provider: KubeClient, consumer: str) -> list[str]:
    items, _ = provider.list(
        VALIDATING_ADMISSION_POLICIES, label_selector=f"{LABEL_CONSUMER_CLUSTER}={consumer}"
    )
    return [i["metadata"]["name"] for i in items]


def test_changed_values_need_upgrade(env: Env, installed: str) -> None:
    out = failed(cli(*env.install_args("--no-wait", "--set", "workers=2")))
    assert "already exists in namespace upbound-system" in out
    assert "--upgrade" in out

    revision = _revision(env)
    ok(cli(*env.install_args("--no-wait", "--upgrade", "--set", "workers=2")))
    assert _revision(env) == revision + 1
    values = yaml.safe_load(
        env.helm_cmd("get", "values", "api-connector", "-n", RELEASE_NAMESPACE, "-o", "json")
    )
    assert values["workers"] == 2
    assert values["boundAPIs"] == [{"group": "nop.example.org", "resources": ["nopresources"]}]


def test_a_dry_run_names_each_step_and_writes_nothing(env: Env, installed: str) -> None:
    revision = _revision(env)
    secret = env.consumer_kube.get(SECRETS, env.secret_name, RELEASE_NAMESPACE)
    out = " ".join(
        ok(
            cli(*env.install_args("--no-wait", "--upgrade", "--set", "workers=3", "--dry-run"))
        ).split()
    )
    for step in (
        "Would: Provider https://",
        f"Would: Update Secret {RELEASE_NAMESPACE}/{env.secret_name} with the credentials.",
        "Would: Upgrade Helm release api-connector in namespace upbound-system",
        '"workers": 3',
        f"Would: Update ClusterConnection {env.connection}.",
        "Dry run: nothing was changed in either cluster.",
    ):
        assert step in out, f"{step!r} not in:\n{out}"
    assert _revision(env) == revision
    after = env.consumer_kube.get(SECRETS, env.secret_name, RELEASE_NAMESPACE)
    assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]


def _revision(env: Env) -> int:
    releases = yaml.safe_load(env.helm_cmd("list", "-n", RELEASE_NAMESPACE, "-o", "json"))
    return int(releases[0]["revision"])


def test_connection_becomes_ready_with_the_stored_credentials(
    env: Env, installed: str, tmp_path: Path
) -> None:
    connector = Connector(env.consumer.kubeconfig, tmp_path / "connector.log")
    try:
        out = ok(cli(*env.install_args("--upgrade", "--set", "workers=2", "--timeout", "60s")))
    finally:
        connector.stop()
    assert f"ClusterConnection {env.connection} is Ready" in out, (
        out + (tmp_path / "connector.log").read_text()[-3000:]
    )


def test_wait_times_out_with_the_condition_when_no_connector_runs(env: Env, installed: str) -> None:
    # A second connection (to the same provider) that no connector ever reports on.
    args = env.install_args("--set", "workers=2", "--timeout", "2s")
    args[args.index("--name") + 1] = f"{env.connection}-late"
    out = failed(cli(*args))
    assert f"waiting for ClusterConnection {env.connection}-late to become Ready" in out
    assert "did not become Ready within 2s: no status yet" in out
    assert "rerun install" in out
    # Nothing is rolled back: the connection and its Secret stay for the rerun.
    assert exists(env.consumer_kube, CLUSTER_CONNECTIONS, f"{env.connection}-late")
    assert exists(env.consumer_kube, SECRETS, f"{env.connection}-late-kubeconfig", "upbound-system")


# -- the isolation policy as the bound APIs change, opted out of, or not served ------------


def test_binding_another_api_updates_the_one_policy_unless_opted_out(
    env: Env, installed: str
) -> None:
    provider = env.provider_kube
    provider.apply(CUSTOM_RESOURCE_DEFINITIONS, crd("extra.example.org", "Widget"), "install-test")
    eventually(lambda: _established(provider, "widgets.extra.example.org"))
    before = provider.get(VALIDATING_ADMISSION_POLICIES, POLICY)["metadata"]

    out = ok(cli(*env.install_args("--no-wait", "--upgrade", "--no-isolation-policy")))
    assert "isolation policy is neither applied nor changed (--no-isolation-policy)" in out
    unchanged = provider.get(VALIDATING_ADMISSION_POLICIES, POLICY)["metadata"]
    assert unchanged["resourceVersion"] == before["resourceVersion"]

    ok(cli(*env.install_args("--no-wait", "--upgrade")))
    policy = provider.get(VALIDATING_ADMISSION_POLICIES, POLICY)
    assert policy["metadata"]["uid"] == before["uid"]
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert [(r["apiGroups"], r["resources"]) for r in rules] == [
        (["extra.example.org"], ["widgets"]),
        (["nop.example.org"], ["nopresources"]),
    ]
    assert _policies_of(provider, CONSUMER_NAME) == [POLICY]


@pytest.fixture(scope="module")
def old_provider(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A provider that does not serve ValidatingAdmissionPolicy, offering the walkthrough API."""
    cluster = Cluster(
        "inst-old-provider",
        tmp_path_factory.mktemp("old"),
        extra_apiserver_args=WITHOUT_ADMISSION_POLICIES,
    ).start()
    try:
        kube = client_from_kubeconfig(cluster.kubeconfig.read_text(), name="old-provider")
        kube.apply(
            CUSTOM_RESOURCE_DEFINITIONS, yaml.safe_load(PROVIDER_CRD.read_text()), "install-test"
        )
        eventually(lambda: _established(kube, "nopresources.nop.example.org"))
        yield cluster
    finally:
        cluster.stop()


def old_provider_args(env: Env, old: Cluster, connection: str, *extra: str) -> list[str]:
    args = env.install_args("--no-wait", "--upgrade", *extra)
    args[args.index("--provider-kubeconfig") + 1] = str(old.kubeconfig)
    args[args.index("--name") + 1] = connection
    return args


def test_isolation_policy_asked_for_but_not_served_is_refused_before_writing(
    env: Env, installed: str, old_provider: Cluster
) -> None:
    connection = f"{env.connection}-old"
    out = failed(cli(*old_provider_args(env, old_provider, connection, "--isolation-policy")))
    assert (
        f"the provider cluster at {old_provider.server} does not serve ValidatingAdmissionPolicy "
        "(admissionregistration.k8s.io/v1; Kubernetes 1.30 or newer), so --isolation-policy "
        "cannot be honoured" in out
    )
    assert "pass --no-isolation-policy" in out and "Nothing was changed" in out
    assert not exists(env.consumer_kube, CLUSTER_CONNECTIONS, connection)
    old = client_from_kubeconfig(old_provider.kubeconfig.read_text(), name="old-provider")
    assert not exists(old, NAMESPACES, PROVIDER_NAMESPACE)


def test_provider_without_admission_policies_gets_a_warning_and_the_rest_of_the_install(
    env: Env, installed: str, old_provider: Cluster
) -> None:
    connection = f"{env.connection}-old"
    out = ok(cli(*old_provider_args(env, old_provider, connection)))
    assert (
        f"Warning: the provider cluster at {old_provider.server} does not serve "
        "ValidatingAdmissionPolicy" in out
    )
    assert "installing without the isolation policy" in out
    assert exists(env.consumer_kube, CLUSTER_CONNECTIONS, connection)
    old = client_from_kubeconfig(old_provider.kubeconfig.read_text(), name="old-provider")
    assert exists(old, CLUSTER_ROLE_BINDINGS, f"api-connector:consumer:{CONSUMER_NAME}")


def test_isolated_placement_on_a_provider_that_cannot_enforce_it_is_refused_before_writing(
    env: Env, installed: str, old_provider: Cluster
) -> None:
    connection = f"{env.connection}-old-isolated"
    out = failed(cli(*old_provider_args(env, old_provider, connection, "--placement", "Isolated")))
    assert "the Isolated placement needs ValidatingAdmissionPolicy" in out
    assert "Nothing was changed" in out
    assert not exists(env.consumer_kube, CLUSTER_CONNECTIONS, connection)


# -- install with an Upbound robot token -------------------------------------------------


def robot_args(env: Env, connection: str, *extra: str) -> list[str]:
    return [
        "install",
        "--consumer-kubeconfig",
        str(env.consumer.kubeconfig),
        "--name",
        connection,
        "--upbound-token",
        "robot-s3cr3t",
        "--organization",
        "acme",
        "--control-plane-group",
        "default",
        "--control-plane",
        "ctp",
        "--consumer-cluster-name",
        CONSUMER_NAME,
        "--poll-interval",
        "1h",
        "--helm",
        env.helm,
        "--no-wait",
        *extra,
    ]


def test_robot_token_install_stores_the_spaces_secret(env: Env, installed: str) -> None:
    connection = f"{env.connection}-robot"
    out = ok(
        cli(
            *robot_args(env, connection, "--spaces-base-url", "spaces.example.org"),
            "--bound-api",
            "nop.example.org/nopresources",
            "--upgrade",
            "--set",
            "workers=2",
        )
    )
    assert "robot-s3cr3t" not in out
    secret = env.consumer_kube.get(SECRETS, f"{connection}-robot-token", RELEASE_NAMESPACE)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "token": "robot-s3cr3t",
        "organization": "acme",
        "spacesBaseURL": "spaces.example.org",
        "controlPlaneGroupName": "default",
        "controlPlaneName": "ctp",
    }
    spec = env.consumer_kube.get(CLUSTER_CONNECTIONS, connection)["spec"]
    assert spec["secretRef"] == {
        "kind": "UpboundRobotToken",
        "name": f"{connection}-robot-token",
        "namespace": RELEASE_NAMESPACE,
    }


def test_robot_token_without_bound_apis_needs_a_reachable_provider(
    env: Env, installed: str
) -> None:
    connection = f"c-{uuid.uuid4().hex[:6]}"
    port = free_port()
    out = failed(cli(*robot_args(env, connection, "--spaces-base-url", f"127.0.0.1:{port}")))
    assert "cannot list the provider's APIs through the robot token" in out
    assert "connection refused" in out
    assert "--bound-api GROUP/PLURAL" in out
    assert "robot-s3cr3t" not in out
    assert not exists(env.consumer_kube, CLUSTER_CONNECTIONS, connection)


# -- bad input: a message naming what to fix, and nothing written -------------------------


def assert_nothing_written(env: Env, namespace: str, connection: str) -> None:
    assert not exists(env.consumer_kube, NAMESPACES, namespace)
    assert not exists(env.consumer_kube, CLUSTER_CONNECTIONS, connection)


def bad_input_args(env: Env, namespace: str, connection: str, *extra: str) -> list[str]:
    return [
        "install",
        "--namespace",
        namespace,
        "--name",
        connection,
        "--helm",
        env.helm,
        "--no-wait",
        *extra,
    ]


def test_wrong_context_is_named_with_the_available_ones(env: Env, installed: str) -> None:
    namespace, connection = f"ns-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:6]}"
    out = failed(
        cli(
            *bad_input_args(env, namespace, connection),
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--consumer-context",
            "no-such-context",
            "--provider-kubeconfig",
            str(env.provider.kubeconfig),
        )
    )
    assert f"context 'no-such-context' not found in {env.consumer.kubeconfig}" in out
    assert "available: inst-consumer" in out
    assert_nothing_written(env, namespace, connection)


def test_unreachable_provider_is_named(env: Env, installed: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = yaml.safe_load(env.provider.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text(yaml.safe_dump(config))
    namespace, connection = f"ns-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:6]}"
    out = failed(
        cli(
            *bad_input_args(env, namespace, connection),
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--provider-kubeconfig",
            str(closed),
        )
    )
    assert f"cannot reach the provider cluster at https://127.0.0.1:{port}: connection refused" in (
        out
    )
    assert_nothing_written(env, namespace, connection)


def test_installer_without_permissions_is_told_which_and_nothing_is_written(
    env: Env, installed: str
) -> None:
    restricted = env.consumer.mint_kubeconfig(f"nobody-{uuid.uuid4().hex[:6]}")
    namespace, connection = f"ns-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:6]}"
    out = failed(
        cli(
            *bad_input_args(env, namespace, connection),
            "--consumer-kubeconfig",
            str(restricted),
            "--provider-kubeconfig",
            str(env.provider.kubeconfig),
        )
    )
    assert "the installer lacks permission to" in out
    assert "create clusterroles" in out
    assert "in the consumer cluster; ask an admin" in out
    assert_nothing_written(env, namespace, connection)


def test_provider_user_without_permissions_changes_nothing_in_either_cluster(
    env: Env, installed: str
) -> None:
    restricted = env.provider.mint_kubeconfig(f"reader-{uuid.uuid4().hex[:6]}")
    namespace, connection = f"ns-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:6]}"
    before = provider_objects(env.provider_kube)
    out = failed(
        cli(
            *bad_input_args(env, namespace, connection),
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--provider-kubeconfig",
            str(restricted),
        )
    )
    assert "lacks permission to list customresourcedefinitions in the provider cluster" in out
    assert provider_objects(env.provider_kube) == before
    assert_nothing_written(env, namespace, connection)


# -- uninstall (last: it removes what the tests above share) ------------------------------


def test_uninstall_all_removes_the_connector_and_frees_bound_objects(
    env: Env, installed: str
) -> None:
    consumer = env.consumer_kube
    # A bound object deleted while the connector holds its finalizer: stuck until uninstall.
    provider_crd = env.provider_kube.get(
        CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org"
    )
    consumer.apply(
        CUSTOM_RESOURCE_DEFINITIONS,
        desired_consumer_crd(provider_crd, connection_name=env.connection),
        "install-test",
    )
    eventually(lambda: _established(consumer, "nopresources.nop.example.org"))
    stuck = {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": "stuck", "namespace": "default", "finalizers": [FINALIZER]},
        "spec": {"coolField": "x"},
    }
    consumer.apply(NOP, stuck, "install-test")
    consumer.delete(NOP, "stuck", "default")
    assert consumer.get(NOP, "stuck", "default")["metadata"]["deletionTimestamp"]
    provider_before = provider_objects(env.provider_kube)
    assert provider_before, "install created nothing in the provider?"

    out = ok(
        cli(
            "uninstall",
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--all",
            "--helm",
            env.helm,
        )
    )

    assert "Uninstalled Helm release api-connector" in out
    assert yaml.safe_load(env.helm_cmd("list", "-n", RELEASE_NAMESPACE, "-o", "json")) == []
    assert not exists(consumer, CLUSTER_CONNECTIONS, env.connection)
    assert not exists(consumer, SECRETS, env.secret_name, RELEASE_NAMESPACE)
    managed = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    assert consumer.list(CLUSTER_CONNECTIONS, label_selector=managed)[0] == []
    assert consumer.list(SECRETS, RELEASE_NAMESPACE, managed)[0] == []
    eventually(lambda: not exists(consumer, NOP, "stuck", "default"), timeout=10)
    assert provider_objects(env.provider_kube) == provider_before
    # The CRDs stay: objects of those APIs may still exist.
    assert exists(consumer, CUSTOM_RESOURCE_DEFINITIONS, "clusterconnections.connect.upbound.io")

    again = ok(
        cli(
            "uninstall",
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--all",
            "--helm",
            env.helm,
        )
    )
    assert "Nothing to uninstall" in again


def _created(kube: KubeClient, res: Resource, obj: dict[str, Any]) -> bool:
    try:
        kube.create(res, obj)
    except ForbiddenError:
        return False
    return True


def test_uninstall_with_the_provider_kubeconfig_removes_the_consumers_policy_and_identity(
    env: Env, installed: str
) -> None:
    provider = env.provider_kube
    # The test above uninstalled; install again, so that uninstall reads the consumer's name
    # from the release. In the isolated placement, whose extra objects uninstall removes too.
    out = ok(cli(*env.install_args("--no-wait", "--placement", "Isolated")))
    assert "Isolated placement" in out
    assert exists(provider, VALIDATING_ADMISSION_POLICIES, POLICY)
    placement = placement_policy_name(CONSUMER_NAME)
    assert exists(provider, VALIDATING_ADMISSION_POLICIES, placement)
    assert exists(provider, CLUSTER_ROLES, objects_role_name(CONSUMER_NAME))
    connection = env.consumer_kube.get(CLUSTER_CONNECTIONS, env.connection)
    assert connection["spec"]["placement"] == "Isolated"
    scoped = scoped_client(env)  # before --all deletes the stored kubeconfig
    # What the connector does before its first twin in a consumer namespace.
    own_namespace, grant = namespace_objects(CONSUMER_NAME, "team")
    for res, obj in ((NAMESPACES, own_namespace), (ROLE_BINDINGS, grant)):
        # RBAC's authorizer learns of the new grants within moments.
        eventually(lambda res=res, obj=obj: _created(scoped, res, obj), timeout=10)
    # Back to the Default placement: the objects role goes, and the placement policy, which
    # would refuse the namespaces a Default-placement connector creates.
    out = ok(cli(*env.install_args("--no-wait", "--placement", "Default")))
    assert f"deleted ValidatingAdmissionPolicy {placement}, left by an Isolated install" in out
    assert not exists(provider, CLUSTER_ROLES, objects_role_name(CONSUMER_NAME))
    ensure_made = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "made-by-default"}}
    eventually(lambda: _created(scoped, NAMESPACES, ensure_made), timeout=10)
    out = ok(cli(*env.install_args("--no-wait", "--placement", "Isolated")))
    assert exists(provider, VALIDATING_ADMISSION_POLICIES, placement)
    policy, binding = isolation_policy(OTHER_CONSUMER, [NOP_BOUND])
    provider.apply(VALIDATING_ADMISSION_POLICIES, policy, "install-test")
    provider.apply(VALIDATING_ADMISSION_POLICY_BINDINGS, binding, "install-test")
    twins_namespace(provider)
    provider.apply(NOP, twin("ours", CONSUMER_NAME), "install-test")
    provider.apply(NOP, twin("theirs", OTHER_CONSUMER, "their spec"), "install-test")

    out = ok(
        cli(
            "uninstall",
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--all",
            "--provider-kubeconfig",
            str(env.provider.kubeconfig),
            "--helm",
            env.helm,
        )
    )

    assert f"Provider: deleted ValidatingAdmissionPolicy {POLICY}." in out
    assert "its objects in the provider stay" in out
    role = f"api-connector:consumer:{CONSUMER_NAME}"
    own = own_namespace["metadata"]["name"]
    for res, name, namespace in [
        (ROLE_BINDINGS, grant["metadata"]["name"], own),
        (CLUSTER_ROLES, objects_role_name(CONSUMER_NAME), None),
        (VALIDATING_ADMISSION_POLICIES, placement, None),
        (VALIDATING_ADMISSION_POLICIES, POLICY, None),
        (VALIDATING_ADMISSION_POLICY_BINDINGS, POLICY, None),
        (CLUSTER_ROLE_BINDINGS, role, None),
        (CLUSTER_ROLES, role, None),
        (SERVICE_ACCOUNTS, "consumer", PROVIDER_NAMESPACE),
    ]:
        assert not exists(provider, res, name, namespace), f"{res.kind} {name} is still there"

    # The identity no longer works at all; the other consumer's policy and every twin stay.
    # The API server's authenticator and authorizer read from caches: it may take a moment.
    def refused() -> bool:
        try:
            scoped.list(NOP)
        except (UnauthorizedError, ForbiddenError):
            return True
        return False

    eventually(refused, what="the uninstalled identity to be refused", timeout=30)
    assert _policies_of(provider, OTHER_CONSUMER) == [policy_name(OTHER_CONSUMER)]
    assert exists(provider, NOP, "ours", TWINS_NAMESPACE)
    assert exists(provider, NOP, "theirs", TWINS_NAMESPACE)
    assert exists(provider, NAMESPACES, own)  # it may hold twins

    # Without the release (and without --consumer-cluster-name) the name is derived, and
    # the command says where to look if that is not the one install used.
    again = ok(
        cli(
            "uninstall",
            "--consumer-kubeconfig",
            str(env.consumer.kubeconfig),
            "--provider-kubeconfig",
            str(env.provider.kubeconfig),
            "--helm",
            env.helm,
        )
    )
    assert "Provider: no identity or isolation policy of consumer consumer-" in again
    assert "pass the same name to uninstall" in again
