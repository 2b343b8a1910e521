"""The local clusters are real Kubernetes clusters, and they fail and stop cleanly.

Everything here goes through the kubernetes Python client against real etcd,
kube-apiserver and kube-controller-manager processes; the CRD, watch, status, Secret, RBAC,
namespace, garbage collection and service-account tests run against both the consumer and
the provider cluster.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from connector.envtest import Cluster, ClusterStartError, EnvtestError, eventually
from connector.envtest._process import pid_alive

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / ".venv" / "bin" / "api-connector"
VERSION = "v1alpha1"
PLURAL = "widgets"
T = TypeVar("T")


@pytest.fixture(params=["consumer", "provider"])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """Each test that takes ``cluster`` runs once against each of the two clusters."""
    found: Cluster = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def api(cluster: Cluster) -> Iterator[ApiClient]:
    with cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def group(api: ApiClient, namespace: str) -> Iterator[str]:
    """A namespaced CRD ``widgets.<group>`` with a status subresource, established.

    The group is unique per test, so tests never share a cluster-scoped CRD.
    """
    group = f"{namespace}.envtest.example.org"
    crd = client.V1CustomResourceDefinition.from_dict(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{PLURAL}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {"color": {"type": "string"}},
                                    },
                                    "status": {
                                        "type": "object",
                                        "properties": {"phase": {"type": "string"}},
                                    },
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        got = extensions.read_custom_resource_definition(f"{PLURAL}.{group}")
        conditions = (got.status.conditions if got.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    eventually(established, what=f"CRD {PLURAL}.{group} established")
    try:
        yield group
    finally:
        extensions.delete_custom_resource_definition(f"{PLURAL}.{group}")


def widget(name: str, color: str) -> dict[str, Any]:
    return {"kind": "Widget", "metadata": {"name": name}, "spec": {"color": color}}


# -- the clusters are real ---------------------------------------------------------------


def test_custom_resource_of_a_new_crd_is_stored_and_served(
    api: ApiClient, group: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{group}/{VERSION}", **widget("blue", "blue")}
    objects.create_namespaced_custom_object(group, VERSION, namespace, PLURAL, body)

    got = objects.get_namespaced_custom_object(group, VERSION, namespace, PLURAL, "blue")

    assert got["spec"] == {"color": "blue"}
    assert got["metadata"]["uid"]
    assert got["metadata"]["generation"] == 1


def test_watch_from_a_list_resource_version_sees_a_later_update(
    api: ApiClient, group: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{group}/{VERSION}", **widget("w", "red")}
    objects.create_namespaced_custom_object(group, VERSION, namespace, PLURAL, body)
    listed = objects.list_namespaced_custom_object(group, VERSION, namespace, PLURAL)
    objects.patch_namespaced_custom_object(
        group, VERSION, namespace, PLURAL, "w", {"spec": {"color": "green"}}
    )

    # The update happened after the list, so a watch from the list's resourceVersion must
    # deliver it (and nothing from before the list).
    events: list[tuple[str, str]] = []
    stream = watch.Watch().stream(
        objects.list_namespaced_custom_object,
        group,
        VERSION,
        namespace,
        PLURAL,
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=10,
    )
    for event in stream:
        events.append((event["type"], event["object"]["spec"]["color"]))
        if event["type"] == "MODIFIED":
            break

    assert events == [("MODIFIED", "green")]


def test_status_subresource_is_written_apart_from_spec(
    api: ApiClient, group: str, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{group}/{VERSION}", **widget("s", "red"), "status": {"phase": "X"}}
    created = objects.create_namespaced_custom_object(group, VERSION, namespace, PLURAL, body)
    # With a status subresource, status in a create is dropped.
    assert "status" not in created

    objects.patch_namespaced_custom_object_status(
        group, VERSION, namespace, PLURAL, "s", {"status": {"phase": "Ready"}}
    )
    got = objects.get_namespaced_custom_object(group, VERSION, namespace, PLURAL, "s")

    assert got["status"] == {"phase": "Ready"}
    assert got["spec"] == {"color": "red"}
    assert got["metadata"]["generation"] == 1  # a status write is not a spec change


def test_secret_data_round_trips(api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"),
        type="Opaque",
        data={"kubeconfig": base64.b64encode(b"not really a kubeconfig").decode()},
    )
    core.create_namespaced_secret(namespace, secret)

    got = core.read_namespaced_secret("creds", namespace)

    assert got.data is not None
    assert base64.b64decode(got.data["kubeconfig"]) == b"not really a kubeconfig"


def test_restricted_identity_gets_only_what_rbac_grants(
    cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"))
    )
    kubeconfig = cluster.mint_kubeconfig("alice", groups=["envtest:testers"])

    with cluster.api_client(kubeconfig=kubeconfig) as alice_api:
        alice = client.CoreV1Api(alice_api)

        def status_of(call: Callable[[], object]) -> int:
            try:
                call()
            except ApiException as e:
                return int(e.status)
            return 200

        def get_settings() -> object:
            return alice.read_namespaced_config_map("settings", namespace)

        assert status_of(get_settings) == 403  # no grants at all yet

        rbac.create_namespaced_role(
            namespace,
            client.V1Role.from_dict(
                {
                    "metadata": {"name": "read-configmaps"},
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
                }
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding.from_dict(
                {
                    "metadata": {"name": "alice-reads-configmaps"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": "read-configmaps",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
                    ],
                }
            ),
        )

        # The RBAC authorizer reads from a cache: the grant takes effect within moments.
        eventually(lambda: status_of(get_settings) == 200, what="alice's get to be allowed")
        assert status_of(lambda: alice.list_namespaced_config_map(namespace)) == 403
        assert status_of(lambda: alice.read_namespaced_secret("creds", namespace)) == 403
        new = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other"))
        assert status_of(lambda: alice.create_namespaced_config_map(namespace, new)) == 403


def test_deleted_namespace_is_gone_with_its_objects(cluster: Cluster, api: ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"envtest-doomed-{uuid.uuid4().hex[:6]}"
    cluster.create_namespace(name)
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
    )

    # A plain delete, as a user would: the namespace controller does the rest.
    core.delete_namespace(name)

    def gone() -> bool:
        names = [ns.metadata.name for ns in core.list_namespace().items if ns.metadata]
        return name not in names

    eventually(gone, what=f"namespace {name} to be gone", timeout=60)
    leftovers = core.list_config_map_for_all_namespaces(field_selector="metadata.name=c").items
    assert [cm for cm in leftovers if cm.metadata and cm.metadata.namespace == name] == []


def test_foreground_deletion_through_an_owner_reference_completes(
    api: ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1",
        kind="ConfigMap",
        name="owner",
        uid=owner.metadata.uid,
        block_owner_deletion=True,
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )

    core.delete_namespaced_config_map(
        "owner", namespace, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )

    # The garbage collector deletes the dependent, then removes the owner's
    # foregroundDeletion finalizer; without it the owner would stay forever.
    def both_gone() -> bool:
        left = core.list_namespaced_config_map(namespace).items
        return not {cm.metadata.name for cm in left} & {"owner", "dependent"}

    eventually(both_gone, what="the owner and its dependent to be gone", timeout=60)


def test_service_accounts_get_a_default_and_token_secrets_a_working_token(
    cluster: Cluster, api: ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)

    def default_service_account() -> bool:
        try:
            core.read_namespaced_service_account("default", namespace)
        except ApiException as e:
            assert e.status == 404
            return False
        return True

    eventually(default_service_account, what=f"ServiceAccount {namespace}/default")
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="default-token",
                annotations={"kubernetes.io/service-account.name": "default"},
            ),
            type="kubernetes.io/service-account-token",
        ),
    )

    def token() -> str:
        data = core.read_namespaced_secret("default-token", namespace).data or {}
        return base64.b64decode(data["token"]).decode()

    found = eventually(token, what="the token controller to fill the Secret")

    # The token authenticates as the ServiceAccount (kube-apiserver verifies it with the key
    # kube-controller-manager signed it with).
    review = client.AuthenticationV1Api(api).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=found))
    )
    assert review.status.authenticated
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"


def test_cluster_without_controller_manager_leaves_a_deleted_namespace_terminating(
    tmp_path: Path,
) -> None:
    with Cluster("bare", tmp_path, controller_manager=False) as bare:
        assert set(bare.pids) == {"etcd", "kube-apiserver"}
        bare.create_namespace("stays")

        bare.delete_namespace("stays")

        with bare.api_client() as api:
            phase = client.CoreV1Api(api).read_namespace("stays").status.phase
        assert phase == "Terminating"
        with pytest.raises(EnvtestError, match="runs no kube-controller-manager"):
            bare.delete_namespace("stays", wait=True)


def test_a_deferred_controller_manager_starts_when_asked_and_then_collects(
    tmp_path: Path,
) -> None:
    with Cluster("later", tmp_path, defer_controller_manager=True) as later:
        assert set(later.pids) == {"etcd", "kube-apiserver"}
        assert later.running()
        later.create_namespace("waits")
        later.delete_namespace("waits")

        later.start_controller_manager()

        assert "kube-controller-manager" in later.pids
        assert later.running()
        # The namespace controller, started only now, finishes the deletion asked before.
        later.delete_namespace("waits", wait=True)
        with pytest.raises(EnvtestError, match="no deferred kube-controller-manager"):
            later.start_controller_manager()


# -- failures are fast, clear and leave nothing behind -----------------------------------


def test_apiserver_that_cannot_bind_its_port_fails_fast_naming_the_step(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = Cluster("busy", tmp_path, apiserver_port=port, startup_timeout=60)
        started = time.monotonic()

        with pytest.raises(ClusterStartError) as failure:
            cluster.start()

    assert time.monotonic() - started < 30
    message = str(failure.value)
    assert "start kube-apiserver for cluster 'busy'" in message
    assert "address already in use" in message
    assert failure.value.log_path == cluster.apiserver_log
    assert set(cluster.pids) == {"etcd", "kube-apiserver"}
    assert not [pid for pid in cluster.pids.values() if pid_alive(pid)]


def test_unknown_apiserver_flag_fails_with_the_flag_error(tmp_path: Path) -> None:
    cluster = Cluster("bogus", tmp_path, extra_apiserver_args=["--no-such-flag=1"])

    with pytest.raises(ClusterStartError) as failure:
        cluster.start()

    assert "start kube-apiserver for cluster 'bogus'" in str(failure.value)
    assert "unknown flag: --no-such-flag" in str(failure.value)
    assert not [pid for pid in cluster.pids.values() if pid_alive(pid)]


def test_cluster_processes_die_when_their_python_parent_is_killed(tmp_path: Path) -> None:
    # A parent that starts a cluster, reports its pids, then waits to be SIGKILLed: no
    # cleanup code of its runs, so only the parent-death signal can stop the children.
    script = (
        "import json, sys, time\n"
        "from connector.envtest import Cluster\n"
        f"c = Cluster('orphan', {str(tmp_path)!r}).start()\n"
        "print('PIDS', json.dumps(c.pids), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert parent.stdout is not None
        # Lines before ours may be log output.
        line = ""
        while not line.startswith("PIDS "):
            line = parent.stdout.readline()
            assert line, "the parent exited before it reported its cluster's pids"
        pids: dict[str, int] = json.loads(line.removeprefix("PIDS "))
        assert all(pid_alive(pid) for pid in pids.values())
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()

    eventually(
        lambda: not any(pid_alive(pid) for pid in pids.values()),
        what="etcd and kube-apiserver to die with their parent",
        timeout=10,
    )


# -- the CLI -------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "clusters", *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_cli_up_detach_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    directory = tmp_path / "clusters"
    up = run_cli("up", "--dir", str(directory), "--detach")
    try:
        assert up.returncode == 0, up.stderr
        assert f"kubectl --kubeconfig {directory / 'consumer.kubeconfig'} get ns" in up.stdout
        state = json.loads((directory / "clusters.json").read_text())
        pids = [state["supervisor_pid"]] + [
            pid for info in state["clusters"].values() for pid in info["pids"].values()
        ]
        for name in ("consumer", "provider"):
            with Cluster(name, directory).api_client(
                kubeconfig=directory / f"{name}.kubeconfig"
            ) as api:
                names = [ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items]
            assert "kube-system" in names

        again = run_cli("up", "--dir", str(directory), "--detach")
        assert again.returncode != 0
        assert "already running" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        down = run_cli("down", "--dir", str(directory))

    assert down.returncode == 0, down.stderr
    assert "Stopped clusters consumer, provider" in down.stdout
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not (directory / "consumer.kubeconfig").exists()
    assert not (directory / "clusters.json").exists()

    down_again = run_cli("down", "--dir", str(directory))
    assert down_again.returncode == 0
    assert "Nothing is running" in down_again.stdout


def test_cli_down_never_kills_a_recorded_pid_that_is_no_longer_a_cluster_process(
    tmp_path: Path,
) -> None:
    # A stale state file whose supervisor pid is dead and whose cluster pids belong to
    # processes that are not etcd or kube-apiserver: down must not touch them.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        tmp_path.joinpath("clusters.json").write_text(
            json.dumps(
                {
                    "supervisor_pid": 2**22 + 1,
                    "status": "ready",
                    "clusters": {"consumer": {"pids": {"etcd": bystander.pid}}},
                }
            )
        )

        down = run_cli("down", "--dir", str(tmp_path))

        assert down.returncode == 0, down.stderr
        assert "Nothing was running" in down.stdout
        assert bystander.poll() is None
        assert not tmp_path.joinpath("clusters.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_cli_up_failure_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    # Two API servers cannot be ready within a second: the start-up timeout trips.
    up = run_cli("up", "--dir", str(tmp_path), "--detach", "--timeout", "1")

    assert up.returncode != 0
    assert "Traceback" not in up.stderr
    assert "not ready within the start-up timeout" in up.stderr
    state = json.loads((tmp_path / "clusters.json").read_text())
    assert state["status"] == "failed"
    assert not pid_alive(state["supervisor_pid"])
    # The logs stay for reading; the kubeconfigs of clusters that never ran do not.
    assert not (tmp_path / "consumer.kubeconfig").exists()
    assert (tmp_path / "consumer" / "etcd.log").exists()


def test_cli_without_go_or_binaries_says_what_to_install(tmp_path: Path) -> None:
    # A PATH with only what tools/build.sh needs besides Go, and an empty binary cache.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "find", "sort", "xargs", "cat", "sha256sum", "cut"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed by tools/build.sh"
        (bin_dir / tool).symlink_to(found)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBEBUILDER_ASSETS", "API_CONNECTOR_CACHE")
    }
    env.update(PATH=str(bin_dir), API_CONNECTOR_CACHE=str(tmp_path / "cache"))

    up = subprocess.run(
        [str(CLI), "clusters", "up", "--dir", str(tmp_path / "clusters"), "--detach"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )

    assert up.returncode == 1
    assert "Traceback" not in up.stderr
    assert "find etcd, kube-apiserver and kube-controller-manager" in up.stderr
    assert "no Go toolchain on PATH" in up.stderr
    assert "KUBEBUILDER_ASSETS" in up.stderr
