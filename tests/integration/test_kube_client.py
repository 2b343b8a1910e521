"""KubeClient against real kube-apiservers: reads, writes, errors, watches, TLS, outages."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from connector.controllers import ownership
from connector.envtest import Cluster, eventually
from connector.kube.client import KubeClient, WatchEvent
from connector.kube.config import (
    client_from_kubeconfig,
    client_from_kubeconfig_file,
    client_from_robot_token,
)
from connector.kube.errors import (
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    ServerError,
    TLSError,
    UnauthorizedError,
    UnreachableError,
    is_rejection,
)
from connector.kube.metrics import Metrics
from connector.kube.resources import (
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
    Resource,
)


def kube(cluster: Cluster, **kwargs: Any) -> KubeClient:
    return client_from_kubeconfig_file(cluster.kubeconfig, name=cluster.name, **kwargs)


def kubeconfig_dict(cluster: Cluster) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    return config


def widget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer", "maximum": 10},
                                        "color": {"type": "string"},
                                    },
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


def install_crd(client: KubeClient, crd: dict[str, Any]) -> Resource:
    """Apply a CRD and wait until its API is served."""
    client.apply(CUSTOM_RESOURCE_DEFINITIONS, crd, "test")
    res = Resource.from_crd(crd)

    def served() -> bool:
        try:
            client.list(res, "default")
        except NotFoundError:
            return False
        return True

    eventually(served)
    return res


@pytest.fixture
def client(provider: Cluster) -> Iterator[KubeClient]:
    with kube(provider) as c:
        yield c


@pytest.fixture
def widgets(client: KubeClient, namespace: str) -> Iterator[Resource]:
    """A CRD of its own for the test (CRDs are cluster-wide; the clusters are shared)."""
    crd = widget_crd(f"{namespace}.test.example.org")
    res = install_crd(client, crd)
    yield res
    client.delete(CUSTOM_RESOURCE_DEFINITIONS, crd["metadata"]["name"])


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


# -- reads ----------------------------------------------------------------------------------


def test_get_returns_the_object_with_its_api_version_and_kind(
    client: KubeClient, namespace: str
) -> None:
    ns = client.get(NAMESPACES, namespace)
    assert ns["apiVersion"] == "v1"
    assert ns["kind"] == "Namespace"
    assert ns["metadata"]["name"] == namespace


def test_server_version_names_the_kubernetes_release(client: KubeClient) -> None:
    assert client.server_version()["gitVersion"].startswith("v1.")


def test_list_follows_pagination_and_returns_every_item_with_its_type(
    client: KubeClient, namespace: str
) -> None:
    names = {f"cm-{i}" for i in range(7)}
    for name in names:
        client.create(
            CONFIG_MAPS,
            {"metadata": {"name": name, "namespace": namespace, "labels": {"set": "a"}}},
        )
    client.create(CONFIG_MAPS, {"metadata": {"name": "other", "namespace": namespace}})
    items, resource_version = client.list(CONFIG_MAPS, namespace, "set=a", page_size=3)
    assert {i["metadata"]["name"] for i in items} == names
    assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in items)
    assert int(resource_version) > 0


def test_list_transforms_each_item_as_its_page_arrives(client: KubeClient, namespace: str) -> None:
    for i in range(5):
        client.create(CONFIG_MAPS, {"metadata": {"name": f"cm-{i}", "namespace": namespace}})
    seen_with_type: list[bool] = []

    def trim(obj: dict[str, Any]) -> dict[str, Any]:
        seen_with_type.append(obj.get("kind") == "ConfigMap")
        return {"metadata": {"name": obj["metadata"]["name"]}}

    items, _ = client.list(CONFIG_MAPS, namespace, page_size=2, transform=trim)
    assert sorted(i["metadata"]["name"] for i in items) == [f"cm-{i}" for i in range(5)]
    assert items[0] == {"metadata": {"name": "cm-0"}}
    assert seen_with_type == [True] * 5


def test_list_across_all_namespaces_includes_every_namespace(
    client: KubeClient, namespace: str
) -> None:
    client.create(CONFIG_MAPS, {"metadata": {"name": "here", "namespace": namespace}})
    items, _ = client.list(CONFIG_MAPS)
    assert ("here", namespace) in {
        (i["metadata"]["name"], i["metadata"]["namespace"]) for i in items
    }


def test_the_client_can_be_shared_by_threads(client: KubeClient, namespace: str) -> None:
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(20):
                assert client.get(NAMESPACES, namespace)["metadata"]["name"] == namespace
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


# -- writes ---------------------------------------------------------------------------------


def test_create_returns_the_stored_object_and_a_second_create_conflicts(
    client: KubeClient, namespace: str
) -> None:
    created = client.create(
        CONFIG_MAPS, {"metadata": {"name": "c", "namespace": namespace}, "data": {"k": "v"}}
    )
    assert created["metadata"]["uid"]
    assert created["data"] == {"k": "v"}
    with pytest.raises(ConflictError) as raised:
        client.create(CONFIG_MAPS, {"metadata": {"name": "c", "namespace": namespace}})
    assert raised.value.status == 409
    assert raised.value.reason == "AlreadyExists"


def test_apply_creates_and_an_identical_apply_does_not_write(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    first = client.apply(widgets, widget("w", namespace, size=3), "connector")
    second = client.apply(widgets, widget("w", namespace, size=3), "connector")
    assert first["spec"] == {"size": 3}
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = client.apply(widgets, widget("w", namespace, size=4), "connector")
    assert third["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]


def test_an_object_read_back_can_be_applied_as_is(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    stored = client.apply(widgets, widget("w", namespace, size=3), "connector")
    assert stored["metadata"]["managedFields"]
    again = client.apply(widgets, stored, "connector")
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_apply_without_force_conflicts_on_a_field_another_manager_owns(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    client.apply(widgets, widget("w", namespace, size=3), "alice")
    with pytest.raises(ConflictError) as raised:
        client.apply(widgets, widget("w", namespace, size=5), "bob", force=False)
    assert "size" in raised.value.message
    taken = client.apply(widgets, widget("w", namespace, size=5), "bob", force=True)
    assert taken["spec"]["size"] == 5


def test_fields_a_create_set_are_removed_by_a_later_apply_only_after_the_hand_over(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    """What ``connector.controllers.ownership`` relies on, on the real server."""
    client.create(widgets, widget("plain", namespace, size=3, color="red"), field_manager="c")
    client.apply(widgets, widget("plain", namespace, size=3), "c")
    # Without the hand-over the Update entry still owns color: the apply cannot remove it.
    assert client.get(widgets, "plain", namespace)["spec"] == {"size": 3, "color": "red"}

    created = client.create(
        widgets, widget("handed", namespace, size=3, color="red"), field_manager="c"
    )
    summary = ownership.summarize(created, "c")
    patch = ownership.upgrade_patch(summary, "c")
    assert patch is not None
    client.patch(widgets, "handed", namespace, patch, "json")
    applied = client.apply(widgets, widget("handed", namespace, size=3), "c")
    assert applied["spec"] == {"size": 3}
    assert [(e["manager"], e["operation"]) for e in applied["metadata"]["managedFields"]] == [
        ("c", "Apply")
    ]


def test_a_stale_hand_over_patch_is_refused_and_the_merged_entries_apply(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    created = client.create(widgets, widget("w", namespace, size=3, color="red"), field_manager="c")
    stale = ownership.upgrade_patch(ownership.summarize(created, "c"), "c")
    assert stale is not None
    # Since then our apply has added an Apply entry next to the Update one.
    client.apply(widgets, widget("w", namespace, size=4), "c")
    client.patch(widgets, "w", namespace, {"metadata": {"labels": {"x": "y"}}}, field_manager="o")
    live = client.get(widgets, "w", namespace)
    entries = [(e["manager"], e["operation"]) for e in live["metadata"]["managedFields"]]
    assert ("c", "Update") in entries and ("c", "Apply") in entries
    assert entries[0] == ("c", "Apply")  # where the Update entry was when created
    with pytest.raises((ConflictError, InvalidError)):
        client.patch(widgets, "w", namespace, stale, "json")

    merged = ownership.merged_entries(live, "c")
    assert merged is not None
    rv = live["metadata"]["resourceVersion"]
    client.patch(
        widgets, "w", namespace, {"metadata": {"resourceVersion": rv, "managedFields": merged}}
    )
    applied = client.apply(widgets, widget("w", namespace, size=4), "c")
    assert applied["spec"] == {"size": 4}
    assert applied["metadata"]["labels"] == {"x": "y"}


def test_apply_status_writes_only_the_status_subresource(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    client.apply(widgets, widget("w", namespace, size=1), "spec-owner")
    # Status in a main-resource apply is ignored when the status subresource is enabled.
    ignored = client.apply(
        widgets, {**widget("w", namespace, size=1), "status": {"phase": "Fake"}}, "spec-owner"
    )
    assert "status" not in ignored
    out = client.apply_status(
        widgets,
        {"metadata": {"name": "w", "namespace": namespace}, "status": {"phase": "Ready"}},
        "status-owner",
    )
    assert out["status"] == {"phase": "Ready"}
    assert out["spec"] == {"size": 1}


def test_update_status_replaces_the_status(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    obj = client.apply(widgets, widget("w", namespace, size=1), "connector")
    obj["status"] = {"phase": "Synced"}
    out = client.update_status(widgets, obj)
    assert client.get(widgets, "w", namespace)["status"] == {"phase": "Synced"}
    stale = {**obj, "status": {"phase": "Stale"}}
    assert stale["metadata"]["resourceVersion"] != out["metadata"]["resourceVersion"]
    with pytest.raises(ConflictError):
        client.update_status(widgets, stale)


def test_merge_and_json_patches_change_the_object(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    client.apply(widgets, widget("w", namespace, size=1), "connector")
    merged = client.patch(widgets, "w", namespace, {"spec": {"color": "red"}})
    assert merged["spec"] == {"size": 1, "color": "red"}
    patched = client.patch(
        widgets,
        "w",
        namespace,
        [{"op": "replace", "path": "/spec/size", "value": 2}],
        "json",
    )
    assert patched["spec"] == {"size": 2, "color": "red"}


def test_delete_removes_the_object_and_a_second_delete_is_not_found(
    client: KubeClient, namespace: str
) -> None:
    client.create(CONFIG_MAPS, {"metadata": {"name": "d", "namespace": namespace}})
    client.delete(CONFIG_MAPS, "d", namespace, propagation="Background")
    with pytest.raises(NotFoundError):
        client.get(CONFIG_MAPS, "d", namespace)
    with pytest.raises(NotFoundError) as raised:
        client.delete(CONFIG_MAPS, "d", namespace)
    assert raised.value.status == 404


def test_delete_with_the_uid_of_an_older_object_is_a_conflict(
    client: KubeClient, namespace: str
) -> None:
    old = client.create(CONFIG_MAPS, {"metadata": {"name": "u", "namespace": namespace}})
    client.delete(CONFIG_MAPS, "u", namespace)
    client.create(CONFIG_MAPS, {"metadata": {"name": "u", "namespace": namespace}})
    with pytest.raises(ConflictError):
        client.delete(CONFIG_MAPS, "u", namespace, preconditions_uid=old["metadata"]["uid"])
    assert client.get(CONFIG_MAPS, "u", namespace)


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_object_is_not_found(client: KubeClient, namespace: str) -> None:
    with pytest.raises(NotFoundError) as raised:
        client.get(CONFIG_MAPS, "missing", namespace)
    assert raised.value.reason == "NotFound"
    assert '"missing" not found' in raised.value.message


def test_a_missing_object_is_none_but_an_api_not_served_is_an_error(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    assert client.get_or_none(CONFIG_MAPS, "missing", namespace) is None
    assert client.get_or_none(widgets, "missing", namespace) is None
    assert client.get_or_none(NAMESPACES, f"{namespace}-missing") is None
    # A resource its group version does not serve, and a group nobody serves: the answer is
    # about the API, not the object, so it is raised.
    unserved = [
        Resource("", "v1", "nosuchthings", "NoSuchThing", True),
        Resource("nosuch.example.org", "v1", "things", "Thing", True),
        Resource(widgets.group, "v9", widgets.plural, widgets.kind, True),
    ]
    for res in unserved:
        with pytest.raises(NotFoundError) as raised:
            client.get_or_none(res, "x", namespace)
        assert not raised.value.object_missing, (res, raised.value)


def test_an_object_violating_the_crd_schema_is_invalid_with_the_field_named(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    with pytest.raises(InvalidError) as raised:
        client.apply(widgets, widget("w", namespace, size=11), "connector")
    error = raised.value
    assert error.status == 422
    assert "spec.size" in error.message
    assert any(c.get("field") == "spec.size" for c in error.causes)


def test_an_identity_without_rbac_is_forbidden(provider: Cluster, namespace: str) -> None:
    with client_from_kubeconfig_file(provider.mint_kubeconfig("nobody")) as nobody:
        with pytest.raises(ForbiddenError) as raised:
            nobody.list(SECRETS, namespace)
        assert raised.value.status == 403
        assert 'User "nobody" cannot list resource "secrets"' in raised.value.message
        assert nobody.self_subject_access_review("list", "", "secrets", namespace) is False
        assert not is_rejection(raised.value), "the identity is refused, not an object"


def test_an_admission_policy_that_forbids_an_object_is_a_rejection(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    # A policy may answer 403 Forbidden, like RBAC: the Status' causes tell them apart.
    name = f"no-red-{namespace}"
    client.apply(
        VALIDATING_ADMISSION_POLICIES,
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [widgets.group],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": [widgets.plural],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.color != 'red'",
                        "message": "red widgets are not allowed",
                        "reason": "Forbidden",
                    }
                ],
            },
        },
        "test",
    )
    client.apply(
        VALIDATING_ADMISSION_POLICY_BINDINGS,
        {
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        },
        "test",
    )
    try:

        def denied() -> ForbiddenError | None:
            try:
                client.create(widgets, widget("red", namespace, color="red"))
            except ForbiddenError as exc:
                return exc
            client.delete(widgets, "red", namespace)
            return None

        error = eventually(denied)
        assert error.status == 403 and error.reason == "Forbidden"
        assert "red widgets are not allowed" in error.message
        assert is_rejection(error)
    finally:
        client.delete(VALIDATING_ADMISSION_POLICY_BINDINGS, name)
        client.delete(VALIDATING_ADMISSION_POLICIES, name)


def test_the_admin_is_allowed_by_an_access_review(client: KubeClient, namespace: str) -> None:
    assert client.self_subject_access_review("list", "", "secrets", namespace) is True


def test_a_token_the_server_does_not_know_is_unauthorized(provider: Cluster) -> None:
    config = kubeconfig_dict(provider)
    config["users"][0]["user"] = {"token": "not-a-real-token"}
    with (
        client_from_kubeconfig(yaml.safe_dump(config)) as stranger,
        pytest.raises(UnauthorizedError) as raised,
    ):
        stranger.get(NAMESPACES, "default")
    assert "not-a-real-token" not in str(raised.value)


def test_a_server_certificate_from_another_ca_is_a_tls_error(
    provider: Cluster, consumer: Cluster
) -> None:
    config = kubeconfig_dict(provider)
    other_ca = base64.b64encode(consumer.ca_file.read_bytes()).decode()
    config["clusters"][0]["cluster"]["certificate-authority-data"] = other_ca
    with (
        client_from_kubeconfig(yaml.safe_dump(config)) as wrong_ca,
        pytest.raises(TLSError) as raised,
    ):
        wrong_ca.get(NAMESPACES, "default")
    message = str(raised.value)
    assert provider.server in message
    assert "verification" in message
    assert "certificate verify failed" in message
    assert raised.value.__cause__ is not None


def test_a_closed_port_is_unreachable_quickly(provider: Cluster) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = kubeconfig_dict(provider)
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    with client_from_kubeconfig(yaml.safe_dump(config)) as nowhere:
        started = time.monotonic()
        with pytest.raises(UnreachableError) as raised:
            nowhere.get(NAMESPACES, "default")
    assert time.monotonic() - started < 2
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert raised.value.status is None


def service_account_token(client: KubeClient, namespace: str, name: str) -> str:
    client.create(SERVICE_ACCOUNTS, {"metadata": {"name": name, "namespace": namespace}})
    review = client.create_subresource(
        SERVICE_ACCOUNTS,
        name,
        namespace,
        "token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    token: str = review["status"]["token"]
    return token


def test_a_robot_token_client_sends_its_token_to_the_spaces_path_over_verified_tls(
    client: KubeClient, provider: Cluster, namespace: str
) -> None:
    # The provider plays the Spaces endpoint: it authenticates the token and authorizes the
    # request for the control plane's path, which proves the URL, the TLS trust and the
    # bearer token without a Spaces installation.
    token = service_account_token(client, namespace, "robot")
    ca = provider.ca_file.read_text()
    base = provider.server.removeprefix("https://") + "/"
    with (
        client_from_robot_token(token, "acme", base, "group-a", "ctp-1", ca_data=ca) as robot,
        pytest.raises(ForbiddenError) as raised,
    ):
        robot.server_version()
    message = raised.value.message
    assert f'User "system:serviceaccount:{namespace}:robot"' in message
    assert '"controlplanes/k8s"' in message
    assert 'in the namespace "group-a"' in message
    assert token not in message


def test_a_robot_token_client_rejects_a_server_its_cas_do_not_trust(
    provider: Cluster, consumer: Cluster
) -> None:
    with (
        client_from_robot_token(
            "token", "acme", provider.server, "g", "c", ca_data=consumer.ca_file.read_text()
        ) as robot,
        pytest.raises(TLSError),
    ):
        robot.server_version()


def test_failed_requests_are_counted_by_status(provider: Cluster, namespace: str) -> None:
    registry = CollectorRegistry()
    with kube(provider, metrics=Metrics(registry)) as counted:
        with pytest.raises(NotFoundError):
            counted.get(CONFIG_MAPS, "missing", namespace)
        counted.get(NAMESPACES, namespace)
    labels = {"cluster": "provider", "status": "404"}
    assert registry.get_sample_value("api_connector_kube_api_request_errors_total", labels) == 1
    ok = {"cluster": "provider", "verb": "get", "status": "200"}
    assert registry.get_sample_value("api_connector_kube_api_requests_total", ok) == 1


def test_an_answer_with_retry_after_is_retried_before_the_error_is_raised(
    provider: Cluster, namespace: str
) -> None:
    # A version from the future makes the API server wait about 3 s, then answer 504 with
    # Retry-After: 1: the one real answer that asks a client to come back.
    registry = CollectorRegistry()
    with kube(provider, metrics=Metrics(registry), max_retries=1) as patient:
        started = time.monotonic()
        with pytest.raises(ServerError) as raised:
            patient.list(
                CONFIG_MAPS,
                namespace,
                resource_version="999999999",
                resource_version_match="NotOlderThan",
            )
    assert raised.value.status == 504
    assert raised.value.retry_after == 1.0
    assert "Too large resource version" in raised.value.message
    assert time.monotonic() - started >= 1.0
    labels = {"cluster": "provider", "verb": "list", "status": "504"}
    assert registry.get_sample_value("api_connector_kube_api_requests_total", labels) == 2


# -- watches --------------------------------------------------------------------------------


def collect(stream: Iterator[WatchEvent], into: list[WatchEvent]) -> threading.Thread:
    def run() -> None:
        for event in stream:
            into.append(event)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_watch_from_the_list_version_sees_later_changes_in_order(
    client: KubeClient, namespace: str
) -> None:
    client.create(CONFIG_MAPS, {"metadata": {"name": "before", "namespace": namespace}})
    _, resource_version = client.list(CONFIG_MAPS, namespace)
    events: list[WatchEvent] = []
    with client.watch(CONFIG_MAPS, resource_version, namespace, timeout_seconds=30) as stream:
        thread = collect(stream, events)
        client.create(CONFIG_MAPS, {"metadata": {"name": "a", "namespace": namespace}})
        client.patch(CONFIG_MAPS, "a", namespace, {"data": {"k": "v"}})
        client.delete(CONFIG_MAPS, "a", namespace)

        def changes() -> list[tuple[str, str]]:
            return [(e.type, e.object["metadata"]["name"]) for e in events if e.type != "BOOKMARK"]

        eventually(lambda: len(changes()) >= 3)
    thread.join(5)
    assert changes() == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert events[-1].object["kind"] == "ConfigMap"
    assert stream.resource_version == events[-1].resource_version


def test_a_watch_from_a_version_older_than_the_servers_window_raises_gone(
    client: KubeClient, widgets: Resource, namespace: str
) -> None:
    # The CRD's watch cache starts at the version the CRD was served from, so "1" is too old.
    with pytest.raises(GoneError) as raised:
        for _ in client.watch(widgets, "1", namespace, timeout_seconds=5):
            pass
    assert raised.value.status == 410
    assert "too old resource version" in raised.value.message


def test_a_watch_ends_normally_when_the_server_timeout_passes(
    client: KubeClient, namespace: str
) -> None:
    _, resource_version = client.list(CONFIG_MAPS, namespace)
    started = time.monotonic()
    events = list(client.watch(CONFIG_MAPS, resource_version, namespace, timeout_seconds=1))
    assert time.monotonic() - started < 10
    assert all(e.type == "BOOKMARK" for e in events)


def test_closing_a_watch_from_another_thread_ends_it_promptly(
    client: KubeClient, namespace: str
) -> None:
    _, resource_version = client.list(CONFIG_MAPS, namespace)
    events: list[WatchEvent] = []
    stream = client.watch(CONFIG_MAPS, resource_version, namespace, timeout_seconds=300)
    thread = collect(stream, events)
    time.sleep(0.3)
    started = time.monotonic()
    stream.close()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1
    # The client stays usable: the interrupted connection is not reused.
    assert client.get(NAMESPACES, namespace)


def test_a_forbidden_watch_raises_before_any_event(provider: Cluster, namespace: str) -> None:
    with (
        client_from_kubeconfig_file(provider.mint_kubeconfig("watcher")) as watcher,
        pytest.raises(ForbiddenError),
    ):
        next(iter(watcher.watch(SECRETS, "", namespace, timeout_seconds=5)))
