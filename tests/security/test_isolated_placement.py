"""The isolated placement on a real kube-apiserver: one consumer's identity confined, reads
included, to provider namespaces of its own.

Two identities are provisioned as ``api-connector install --placement Isolated`` does (the
binder's ``provider_access`` with ``placement=Isolated``, TokenRequest tokens). Each creates
its own namespace and RoleBinding there (``functions.binder.placement.namespace_objects``),
as the connector does before its first twin. Then neither can read, list or watch the
other's objects or Secrets, nor grant itself anything in the other's namespaces (or any
other), while each still does everything it needs in its own; and a connector with such an
identity syncs an object (create, status back, delete) into its own namespace, collects an
orphaned twin there and reports a Conflict for an object there that is not its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connector.kube.client import KubeClient
from connector.kube.errors import ForbiddenError
from connector.kube.resources import (
    CLUSTER_CONNECTIONS,
    NAMESPACES,
    ROLE_BINDINGS,
    SECRETS,
)
from functions.binder.isolation import isolation_policy
from functions.binder.placement import namespace_objects, objects_role_name
from functions.common import LABEL_CONSUMER_CLUSTER, MANAGED_LABEL
from functions.common.placement import PLACEMENT_ISOLATED, isolated_prefix, provider_namespace
from functions.object_syncer.logic import desired_twin
from tests.e2e.harness import (
    NOP,
    apply,
    condition,
    eventually,
    get,
    reason_of,
)
from tests.faults.harness import ConnectorProcess, FaultWorld, nop, wait_object_bound
from tests.security.access import (
    CONNECTION,
    NOP_BOUND,
    ConsumerIdentity,
    isolated_connection,
    provision,
    resource_of,
)

#: The same consumer namespace name in both consumer clusters.
TEAM = "team"


def _ns(consumer: str) -> str:
    return provider_namespace(consumer, TEAM, PLACEMENT_ISOLATED)


def _twin(consumer: str, name: str) -> dict[str, Any]:
    obj = nop(_ns(consumer), name, f"{consumer}'s spec")
    obj["metadata"]["labels"] = {MANAGED_LABEL: "true", LABEL_CONSUMER_CLUSTER: consumer}
    return obj


def _secret(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"password": "s3cr3t"},
    }


def forbidden(call: Callable[[], object]) -> str:
    """The 403 message of ``call``; fails if the API server allowed it."""
    with pytest.raises(ForbiddenError) as info:
        call()
    return str(info.value)


def _watch(client: KubeClient, namespace: str | None, res: Any = NOP) -> None:
    with client.watch(res, "", namespace, timeout_seconds=1) as stream:
        for _ in stream:
            break


def _granted(client: KubeClient, consumer: str) -> None:
    """Wait until RBAC's authorizer has seen the consumer's new RoleBinding."""
    eventually(
        lambda: client.self_subject_access_review("create", NOP.group, NOP.plural, _ns(consumer)),
        timeout=10,
    )


def _claim_namespace(client: KubeClient, consumer: str) -> None:
    """What the connector does before its first twin in ``TEAM``."""
    ns_obj, grant = namespace_objects(consumer, TEAM)
    client.create(NAMESPACES, ns_obj)
    client.create(ROLE_BINDINGS, grant)


@pytest.fixture(scope="module")
def isolated(world: FaultWorld) -> Iterator[dict[str, ConsumerIdentity]]:
    ids = {
        name: provision(
            world.provider,
            world.provider_cluster,
            name,
            [NOP_BOUND],
            placement=PLACEMENT_ISOLATED,
        )
        for name in ("iso-a", "iso-b")
    }
    for name in ids:
        for obj in isolation_policy(name, [NOP_BOUND]):
            apply(world.provider, obj, resource_of(obj["kind"]))
    yield ids


@pytest.mark.timeout(120)
def test_a_consumer_in_the_isolated_placement_reads_nothing_of_another(
    world: FaultWorld, isolated: dict[str, ConsumerIdentity]
) -> None:
    admin = world.provider
    with isolated["iso-a"].client() as a, isolated["iso-b"].client() as b:
        # The placement policy is loaded within a second or so: until then the namespace
        # could be created without the label, so wait for the refusal first.
        tries = iter(range(1000))

        def policy_loaded() -> bool:
            name = f"{isolated_prefix('iso-a')}unlabelled-{next(tries)}"
            try:
                a.create(
                    NAMESPACES,
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                )
            except ForbiddenError as e:
                return "ValidatingAdmissionPolicy" in str(e)
            admin.delete(NAMESPACES, name)
            return False

        eventually(policy_loaded, timeout=30)
        for client, name in ((a, "iso-a"), (b, "iso-b")):
            _claim_namespace(client, name)
        for client, name in ((a, "iso-a"), (b, "iso-b")):
            _granted(client, name)
            client.create(NOP, _twin(name, "db"))
            # Crossplane writes the connection Secret next to the claim.
            admin.create(SECRETS, _secret(_ns(name), f"{name}-db-conn"))

        # A does all it needs in its own namespace: objects, their status, its Secrets.
        assert a.get(NOP, "db", _ns("iso-a"))["metadata"]["namespace"] == _ns("iso-a")
        assert [o["metadata"]["name"] for o in a.list(NOP, _ns("iso-a"))[0]] == ["db"]
        _watch(a, _ns("iso-a"))
        assert a.get(NOP, "db", _ns("iso-a"))["spec"]["coolField"] == "iso-a's spec"
        assert a.get(SECRETS, "iso-a-db-conn", _ns("iso-a"))["data"]["password"]
        _watch(a, _ns("iso-a"), SECRETS)
        a.delete(NOP, "db", _ns("iso-a"))

        # Nothing of B's: not its objects, not its Secrets, not by get, list or watch.
        b_ns = _ns("iso-b")
        for call in [
            lambda: a.get(NOP, "db", b_ns),
            lambda: a.list(NOP, b_ns),
            lambda: _watch(a, b_ns),
            lambda: a.get(SECRETS, "iso-b-db-conn", b_ns),
            lambda: a.list(SECRETS, b_ns),
            lambda: _watch(a, b_ns, SECRETS),
            # Nor cluster-wide, which would include B's.
            lambda: a.list(NOP),
            lambda: _watch(a, None),
            lambda: a.list(SECRETS),
            lambda: _watch(a, None, SECRETS),
            # Nor the namespaces (whose names and labels tell B's namespaces).
            lambda: a.list(NAMESPACES),
            lambda: a.get(NAMESPACES, b_ns),
        ]:
            assert "forbidden" in forbidden(call).lower()

        # Nor can A make B's namespaces, or any other, its own.
        b_ns_obj = namespace_objects("iso-b", "later")[0]
        b_grant = namespace_objects("iso-b", TEAM)[1]
        b_grant["metadata"]["name"] = "b-grant-by-a"
        a_grant_in_b = namespace_objects("iso-a", TEAM)[1]
        a_grant_in_b["metadata"]["namespace"] = b_ns
        a_grant_in_default = namespace_objects("iso-a", TEAM)[1]
        a_grant_in_default["metadata"]["namespace"] = "default"
        a_ns_for_b = namespace_objects("iso-a", "for-b")[0]
        a_ns_for_b["metadata"]["labels"][LABEL_CONSUMER_CLUSTER] = "iso-b"
        to_cluster_admin = namespace_objects("iso-a", TEAM)[1]
        to_cluster_admin["metadata"]["name"] = "admin-here"
        to_cluster_admin["roleRef"]["name"] = "cluster-admin"
        to_someone_else = namespace_objects("iso-a", TEAM)[1]
        to_someone_else["metadata"]["name"] = "someone-else"
        to_someone_else["subjects"] = namespace_objects("iso-b", TEAM)[1]["subjects"]
        for call in [
            lambda: a.create(NAMESPACES, b_ns_obj),  # B's name (B's prefix)
            lambda: a.create(NAMESPACES, a_ns_for_b),  # its prefix, B's label
            lambda: a.create(ROLE_BINDINGS, b_grant),  # B's grant, in B's namespace
            lambda: a.create(ROLE_BINDINGS, a_grant_in_b),  # itself, in B's namespace
            lambda: a.create(ROLE_BINDINGS, a_grant_in_default),  # itself, elsewhere
            lambda: a.create(ROLE_BINDINGS, to_cluster_admin),  # another role, in its own
            lambda: a.create(ROLE_BINDINGS, to_someone_else),  # another subject, in its own
            lambda: a.delete(ROLE_BINDINGS, b_grant["metadata"]["name"], b_ns),
            lambda: a.delete(NAMESPACES, b_ns),
        ]:
            assert "forbidden" in forbidden(call).lower()
        assert get(admin, NAMESPACES, b_ns_obj["metadata"]["name"]) is None
        # B's own are untouched, and B still reads them.
        assert b.get(NOP, "db", b_ns)["spec"]["coolField"] == "iso-b's spec"
        assert b.get(SECRETS, "iso-b-db-conn", b_ns)
        assert objects_role_name("iso-a") != objects_role_name("iso-b")


@pytest.mark.timeout(180)
def test_the_connector_syncs_in_the_isolated_placement(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = "isolated-objects"
    with isolated_connection(world, ns, "scoped-isolated") as (scoped, twin_ns):
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, CONNECTION) == "Ready")
        eventually(lambda: world.consumer.list(NOP)[1] is not None, timeout=60)
        apply(world.consumer, nop(ns, "placed", "in a namespace of its own"))

        wait_object_bound(world, connector, ns, "placed")
        # The twin is in the consumer's own namespace, never in the consumer's namespace name.
        assert get(world.provider, NOP, "placed", ns) is None
        twin = world.provider.get(NOP, "placed", twin_ns)
        assert twin["metadata"]["labels"][LABEL_CONSUMER_CLUSTER] == scoped.name
        assert twin["metadata"]["annotations"]["connect.upbound.io/consumer-namespace"] == ns
        namespace = world.provider.get(NAMESPACES, twin_ns)
        assert namespace["metadata"]["labels"][LABEL_CONSUMER_CLUSTER] == scoped.name

        # Status flows back from there.
        ready = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Available",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
        world.provider.apply_status(
            NOP, {**_identity(twin), "status": ready}, "crossplane", force=True
        )
        eventually(
            lambda: condition(get(world.consumer, NOP, "placed", ns), "Ready").get("status")
            == "True",
            timeout=30,
        )

        # Orphaned twins are collected there: one whose consumer object does not exist.
        gone = {**nop(ns, "gone", "v"), "metadata": {"name": "gone", "namespace": ns, "uid": "u"}}
        orphan = desired_twin(gone, consumer_cluster=scoped.name, placement=PLACEMENT_ISOLATED)
        world.provider.create(NOP, orphan)
        eventually(lambda: get(world.provider, NOP, "gone", twin_ns) is None, timeout=30)
        # Conflicts are found there: an object of that name that is not this consumer's.
        world.provider.create(NOP, nop(twin_ns, "taken", "someone else's"))
        apply(world.consumer, nop(ns, "taken", "mine"))
        eventually(
            lambda: condition(get(world.consumer, NOP, "taken", ns), "APIBound").get("reason")
            == "Conflict",
            timeout=30,
        )
        assert world.provider.get(NOP, "taken", twin_ns)["spec"]["coolField"] == "someone else's"
        world.consumer.delete(NOP, "taken", ns)

        # Deleting goes there too.
        world.consumer.delete(NOP, "placed", ns)
        eventually(lambda: get(world.consumer, NOP, "placed", ns) is None, timeout=60)
        assert get(world.provider, NOP, "placed", twin_ns) is None


def _identity(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }
