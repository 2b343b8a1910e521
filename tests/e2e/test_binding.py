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
