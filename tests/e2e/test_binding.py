"""ClusterAPIBinding and APIBinding: by group, by CRD name, per namespace, and failures."""

from __future__ import annotations

from connector.kube.resources import API_BINDINGS, CLUSTER_API_BINDINGS, Resource
from tests.e2e.conftest import CONNECTION, World
from tests.e2e.harness import (
    apply,
    apply_file,
    binding,
    condition,
    connection,
    consistently,
    crd,
    eventually,
    get,
    kubeconfig_secret,
    reason_of,
    unique,
    warning_events,
)


def test_cluster_api_binding_by_group_binds_every_offered_crd_of_the_group(world: World) -> None:
    eventually(
        lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, "nop.example.org") == "Bound"
    )
    obj = world.consumer.get(CLUSTER_API_BINDINGS, "nop.example.org")
    assert [r["name"] for r in obj["status"]["boundResources"]] == ["nopresources.nop.example.org"]


def test_cluster_api_binding_by_crd_name_binds_that_crd(world: World) -> None:
    apply_file(world.consumer, "consumer/31-clusterapibinding-crd.yaml")
    name = "nopresources.nop.example.org"
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, name) == "Bound")
    obj = world.consumer.get(CLUSTER_API_BINDINGS, name)
    assert obj["status"]["boundResources"][0]["kind"] == "NopResource"
    world.consumer.delete(CLUSTER_API_BINDINGS, name)


def test_the_walkthrough_api_binding_binds_in_its_namespace(world: World) -> None:
    apply_file(world.consumer, "consumer/32-apibinding.yaml")
    eventually(
        lambda: reason_of(world.consumer, API_BINDINGS, "nop.example.org", "default") == "Bound"
    )
    world.consumer.delete(API_BINDINGS, "nop.example.org", "default")


def test_an_api_binding_syncs_only_objects_of_its_own_namespace(
    world: World, namespace: str
) -> None:
    group = f"{unique('ns')}.example.org"
    apply(world.provider, crd(group, "Thing"))
    world.chart.allow(group, "things")
    res = Resource(group, "v1alpha1", "things", "Thing", True)
    other = unique("other")
    world.consumer.create(
        Resource("", "v1", "namespaces", "Namespace", False),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}},
    )
    apply(world.consumer, binding(group, CONNECTION, namespace=namespace))
    eventually(lambda: reason_of(world.consumer, API_BINDINGS, group, namespace) == "Bound")

    def thing(ns: str) -> dict[str, object]:
        return {
            "apiVersion": f"{group}/v1alpha1",
            "kind": "Thing",
            "metadata": {"name": "t", "namespace": ns},
            "spec": {"coolField": ns},
        }

    apply(world.consumer, thing(namespace), res)
    apply(world.consumer, thing(other), res)
    eventually(lambda: get(world.provider, res, "t", namespace))
    consistently(lambda: get(world.provider, res, "t", other) is None, duration=1.5)
    outside = world.consumer.get(res, "t", other)
    assert "connect.upbound.io/finalizer" not in (outside["metadata"].get("finalizers") or [])


def test_binding_an_api_that_is_not_offered_says_so_and_recovers_once_offered(
    world: World,
) -> None:
    group = f"{unique('late')}.example.org"
    world.chart.allow(group, "latecomers")
    apply(world.consumer, binding(group, CONNECTION))
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "NotOffered")
    apply(world.provider, crd(group, "Latecomer"))
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "Bound")
    world.consumer.delete(CLUSTER_API_BINDINGS, group)


def test_binding_to_a_missing_connection_says_so_and_recovers_when_it_exists(
    world: World,
) -> None:
    name = unique("later-connection")
    group = f"{unique('lc')}.example.org"
    apply(world.provider, crd(group, "Item"))
    world.chart.allow(group, "items")
    apply(world.consumer, binding(group, name))
    eventually(
        lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "ConnectionNotFound"
    )
    ready = condition(get(world.consumer, CLUSTER_API_BINDINGS, group), "Ready")
    assert name in ready["message"]
    apply(world.consumer, kubeconfig_secret(name, world.provider_kubeconfig))
    # Manual: the CRDs stay owned by the walkthrough's connection.
    apply(world.consumer, connection(name, name, pull="Manual"))
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "Bound")
    world.consumer.delete(CLUSTER_API_BINDINGS, group)


def test_the_connector_runs_as_the_charts_service_account_with_rbac_enforced(
    world: World,
) -> None:
    # Everything else in this directory passing under this identity is what proves the
    # chart's rules suffice; this proves the identity is not an admin in disguise.
    connector = world.connector.kube
    assert connector.self_subject_access_review("get", "", "secrets", "upbound-system")
    # Connection Secrets (on by default) grant Secrets everywhere, but only the verbs the
    # copies need (docs/install.md, "Least privilege"): no patch, no deletecollection.
    assert connector.self_subject_access_review("get", "", "secrets", "default")
    assert not connector.self_subject_access_review("patch", "", "secrets", "default")
    assert not connector.self_subject_access_review("deletecollection", "", "secrets", "default")
    assert not connector.self_subject_access_review("create", "nop.example.org", "nopresources")
    assert not connector.self_subject_access_review("create", "rbac.authorization.k8s.io", "roles")


def test_a_binding_without_the_grants_says_which_and_recovers_once_granted(
    world: World, namespace: str
) -> None:
    group = f"{unique('perm')}.example.org"
    apply(world.provider, crd(group, "Permit"))
    res = Resource(group, "v1alpha1", "permits", "Permit", True)
    apply(world.consumer, binding(group, CONNECTION, namespace=namespace))
    eventually(
        lambda: reason_of(world.consumer, API_BINDINGS, group, namespace) == "MissingPermission"
    )
    ready = condition(get(world.consumer, API_BINDINGS, group, namespace), "Ready")
    assert ready["status"] == "False"
    assert "get, list, watch, update, patch permits" in ready["message"]
    assert "update, patch permits/status" in ready["message"]
    assert f"of group {group} in namespace {namespace}" in ready["message"]
    assert f"{{group: {group}, resources: [permits]}}" in ready["message"]
    assert "boundAPIs" in ready["message"]
    # (NotOffered may come first, until the connection has pulled the new CRD.)
    eventually(
        lambda: "MissingPermission"
        in [e["reason"] for e in warning_events(world.consumer, namespace, group)]
    )
    # Objects wait: no syncer runs without the grants, so nothing reaches the provider.
    thing = {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "Permit",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"coolField": "granted later"},
    }
    apply(world.consumer, thing, res)
    consistently(lambda: get(world.provider, res, "p", namespace) is None, duration=1.5)

    # What `api-connector install --upgrade` / `helm upgrade` with the extended boundAPIs
    # does; nothing touches the binding, it re-checks on its own.
    world.chart.allow(group, "permits")
    eventually(lambda: reason_of(world.consumer, API_BINDINGS, group, namespace) == "Bound")
    twin = eventually(lambda: get(world.provider, res, "p", namespace))
    assert twin["spec"]["coolField"] == "granted later"
    eventually(
        lambda: condition(get(world.consumer, res, "p", namespace), "APIBound").get("status")
        == "True"
    )
