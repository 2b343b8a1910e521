"""ClusterConnection: Ready, offered APIs, CRDs kept up to date, errors named and recovered."""

from __future__ import annotations

import json
from typing import Any

from connector.envtest import Cluster
from connector.kube.resources import CLUSTER_CONNECTIONS, CUSTOM_RESOURCE_DEFINITIONS, SECRETS
from tests.e2e.conftest import CONNECTION, World
from tests.e2e.harness import (
    apply,
    condition,
    connection,
    crd,
    eventually,
    get,
    kubeconfig_secret,
    reason_of,
    unique,
    warning_events,
)


def offered_names(world: World, name: str = CONNECTION) -> list[str]:
    conn = get(world.consumer, CLUSTER_CONNECTIONS, name) or {}
    return [o["name"] for o in (conn.get("status") or {}).get("offeredAPIs") or []]


def consumer_crd(world: World, name: str) -> Any:
    return get(world.consumer, CUSTOM_RESOURCE_DEFINITIONS, name)


def test_connection_is_ready_offers_the_bindable_api_and_installs_its_crd(world: World) -> None:
    conn = world.consumer.get(CLUSTER_CONNECTIONS, CONNECTION)
    ready = condition(conn, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")
    assert ready["message"] == "Provider controlplane is available"
    assert "nopresources.nop.example.org" in offered_names(world)
    installed = consumer_crd(world, "nopresources.nop.example.org")
    assert installed["metadata"]["labels"]["connect.upbound.io/connection"] == CONNECTION


def test_a_crd_changed_in_the_provider_is_updated_in_the_consumer(world: World) -> None:
    group = f"{unique('upd')}.example.org"
    name = f"gadgets.{group}"
    apply(world.provider, crd(group, "Gadget"))
    eventually(lambda: name in offered_names(world))
    eventually(lambda: consumer_crd(world, name))

    # A new field.
    apply(world.provider, crd(group, "Gadget", fields=("coolField", "newField")))

    def has_new_field() -> bool:
        schema = consumer_crd(world, name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        return "newField" in schema["properties"]["spec"]["properties"]

    eventually(has_new_field)

    # A new version, which becomes the storage version.
    apply(world.provider, crd(group, "Gadget", versions=("v1alpha1", "v1beta1")))
    eventually(
        lambda: [v["name"] for v in consumer_crd(world, name)["spec"]["versions"]]
        == ["v1alpha1", "v1beta1"]
    )

    def offered_versions() -> Any:
        conn = world.consumer.get(CLUSTER_CONNECTIONS, CONNECTION)
        for api in conn["status"]["offeredAPIs"]:
            if api["name"] == name:
                return api["storageVersion"] == "v1beta1" and api["versions"]
        return None

    eventually(offered_versions)


def test_a_crd_whose_bindable_label_is_removed_is_no_longer_offered_but_stays(
    world: World,
) -> None:
    group = f"{unique('unl')}.example.org"
    name = f"gizmos.{group}"
    apply(world.provider, crd(group, "Gizmo"))
    eventually(lambda: name in offered_names(world))
    world.provider.patch(
        CUSTOM_RESOURCE_DEFINITIONS,
        name,
        None,
        {"metadata": {"labels": {"connect.upbound.io/bindable": None}}},
    )
    eventually(lambda: name not in offered_names(world))
    assert consumer_crd(world, name) is not None


def _secret(world: World, name: str, content: str) -> None:
    apply(world.consumer, kubeconfig_secret(name, content))


def test_a_missing_secret_is_reported_and_the_connection_recovers_when_it_appears(
    world: World,
) -> None:
    name = unique("missing-secret")
    apply(world.consumer, connection(name, name, pull="Manual"))
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "SecretNotFound")
    events = eventually(lambda: warning_events(world.consumer, "default", name))
    assert [e["reason"] for e in events] == ["SecretNotFound"]
    _secret(world, name, world.provider_kubeconfig)
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
    world.consumer.delete(CLUSTER_CONNECTIONS, name)
    world.consumer.delete(SECRETS, name, "upbound-system")


def test_a_malformed_kubeconfig_is_reported_and_fixing_it_recovers(world: World) -> None:
    name = unique("bad-kubeconfig")
    _secret(world, name, "this: [is not a kubeconfig")
    apply(world.consumer, connection(name, name, pull="Manual"))
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "InvalidKubeconfig")
    _secret(world, name, world.provider_kubeconfig)
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
    world.consumer.delete(CLUSTER_CONNECTIONS, name)


def test_an_unreachable_provider_is_reported_and_nothing_is_deleted(world: World) -> None:
    name = unique("unreachable")
    _secret(world, name, world.provider_kubeconfig)
    apply(world.consumer, connection(name, name, pull="Manual"))
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
    offered = offered_names(world, name)
    assert offered
    # Port 9 on loopback: nothing listens there.
    server = world.provider.server
    broken = world.provider_kubeconfig.replace(server, "https://127.0.0.1:9")
    _secret(world, name, broken)
    eventually(
        lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "ProviderUnreachable"
    )
    assert offered_names(world, name) == offered
    assert consumer_crd(world, "nopresources.nop.example.org") is not None
    _secret(world, name, world.provider_kubeconfig)
    eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
    world.consumer.delete(CLUSTER_CONNECTIONS, name)


def test_kubectl_get_shows_status_and_message_columns(
    world: World, clusters: dict[str, Cluster]
) -> None:
    # What `kubectl get clusterconnection` prints: the server renders the CRD's printer
    # columns as a Table.
    with clusters["consumer"].api_client() as api:
        response = api.call_api(
            "GET",
            f"{api.configuration.host}/apis/connect.upbound.io/v1alpha1/clusterconnections/"
            f"{CONNECTION}",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        )
        response.read()
        table = json.loads(response.data)
    columns = [c["name"] for c in table["columnDefinitions"] if c.get("priority", 0) == 0]
    assert columns == ["Name", "STATUS", "MESSAGE"]
    assert table["rows"][0]["cells"][:3] == [
        CONNECTION,
        "Ready",
        "Provider controlplane is available",
    ]


def test_a_consumer_crd_the_connection_does_not_own_is_never_overwritten(world: World) -> None:
    group = f"{unique('own')}.example.org"
    name = f"trinkets.{group}"
    theirs = crd(group, "Trinket", fields=("localField",), bindable=False)
    apply(world.consumer, theirs)
    apply(world.provider, crd(group, "Trinket"))

    def conflict_reported() -> bool:
        conn = world.consumer.get(CLUSTER_CONNECTIONS, CONNECTION)
        synced = condition(conn, "CRDsSynced")
        return synced.get("reason") == "Conflict" and name in synced.get("message", "")

    eventually(conflict_reported)
    assert name not in offered_names(world)
    schema = consumer_crd(world, name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert list(schema["properties"]["spec"]["properties"]) == ["localField"]
    events = eventually(lambda: warning_events(world.consumer, "default", CONNECTION))
    assert "CRDConflict" in [e["reason"] for e in events]
    # Handing it over ends the conflict.
    world.consumer.delete(CUSTOM_RESOURCE_DEFINITIONS, name)
    eventually(lambda: name in offered_names(world))
    eventually(
        lambda: condition(world.consumer.get(CLUSTER_CONNECTIONS, CONNECTION), "CRDsSynced").get(
            "reason"
        )
        == "Synced"
    )
