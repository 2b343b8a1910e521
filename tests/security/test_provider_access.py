"""What a consumer's provider credentials can do, answered by the real kube-apiserver.

The identity is the one ``api-connector install`` creates: the binder's ``provider_access``
objects (ServiceAccount, ClusterRole limited to the bound APIs) and a TokenRequest token.
RBAC confines it to the bound APIs and verbs. RBAC cannot tell consumers apart within one
API, so cross-consumer *writes* are stopped by the binder's ValidatingAdmissionPolicy
(``functions.binder.isolation``); cross-consumer *reads* are not stoppable this way, and
the test pins that limit down so docs/security.md stays true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connector.kube.errors import ForbiddenError
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    Resource,
)
from functions.binder.isolation import isolation_policy
from functions.common import LABEL_CONSUMER_CLUSTER, MANAGED_LABEL
from tests.e2e.harness import (
    NOP,
    apply,
    binding,
    connection,
    crd,
    established,
    eventually,
    get,
    kubeconfig_secret,
    reason_of,
)
from tests.faults.harness import (
    ConnectorProcess,
    FaultWorld,
    ensure_namespace,
    nop,
    wait_object_bound,
)
from tests.security.access import NOP_BOUND, ConsumerIdentity, provision, resource_of

SHARED = "shared"
NODES = Resource("", "v1", "nodes", "Node", False)
WIDGETS = Resource("other.example.org", "v1alpha1", "widgets", "Widget", True)


def twin(name: str, owner: str | None, cool: str = "v") -> dict[str, Any]:
    obj = nop(SHARED, name, cool)
    if owner is not None:
        obj["metadata"]["labels"] = {MANAGED_LABEL: "true", LABEL_CONSUMER_CLUSTER: owner}
    return obj


@pytest.fixture(scope="module")
def consumers(world: FaultWorld) -> Iterator[dict[str, ConsumerIdentity]]:
    ensure_namespace(world.provider, SHARED)
    ids = {
        name: provision(world.provider, world.provider_cluster, name, [NOP_BOUND])
        for name in ("consumer-a", "consumer-b")
    }
    yield ids


def forbidden(call: Callable[[], object]) -> str:
    """The 403 message of ``call``; fails if the API server allowed it."""
    with pytest.raises(ForbiddenError) as info:
        call()
    return str(info.value)


@pytest.mark.timeout(120)
def test_rbac_confines_a_consumer_to_its_bound_apis_and_verbs(
    world: FaultWorld, consumers: dict[str, ConsumerIdentity]
) -> None:
    apply(world.provider, crd("other.example.org", "Widget"))
    eventually(lambda: established(world.provider, "widgets.other.example.org"))
    with consumers["consumer-a"].client() as a:
        # What it needs works: the bound API, namespaces to create, CRDs to read.
        a.create(NOP, twin("a-own", "consumer-a"))
        assert [o["metadata"]["name"] for o in a.list(NOP, SHARED)[0]] == ["a-own"]
        assert a.get(CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org")
        ensure_namespace(a, "made-by-a")

        own_namespace = consumers["consumer-a"].access.namespace
        for call in [
            # Secrets: neither its own namespace's, nor anyone's.
            lambda: a.list(SECRETS, own_namespace),
            lambda: a.list(SECRETS),
            lambda: a.get(SECRETS, "anything", "kube-system"),
            # An API that is offered but not bound to it.
            lambda: a.list(WIDGETS, SHARED),
            # Other cluster-scoped resources, and writes to the ones it may read.
            lambda: a.list(NODES),
            lambda: a.list(CLUSTER_ROLES),
            lambda: a.delete(NAMESPACES, "default"),
            lambda: a.delete(CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org"),
            lambda: a.create(CUSTOM_RESOURCE_DEFINITIONS, crd("evil.example.org", "Evil")),
            # Verbs it was not granted: the provider's status is the provider's to write.
            lambda: a.patch(NOP, "a-own", SHARED, {"status": {"x": "y"}}, subresource="status"),
            # No way to grant itself more.
            lambda: a.create(
                CLUSTER_ROLE_BINDINGS,
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "escalate"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"kind": "User", "name": "consumer-a"}],
                },
            ),
        ]:
            assert "forbidden" in forbidden(call).lower()


@pytest.mark.timeout(120)
def test_the_isolation_policy_stops_one_consumer_writing_another_consumers_objects(
    world: FaultWorld, consumers: dict[str, ConsumerIdentity]
) -> None:
    admin = world.provider
    admin.create(NOP, twin("b-twin", "consumer-b", "B's spec"))
    admin.create(NOP, twin("nobodys", None))
    with consumers["consumer-a"].client() as a, consumers["consumer-b"].client() as b:
        # RBAC alone: both consumers have the same rules on nopresources, so A may read B's
        # twin and overwrite it. This is the gap the admission policy closes for writes.
        stolen = a.get(NOP, "b-twin", SHARED)
        stolen["spec"]["coolField"] = "A was here"
        a.update(NOP, stolen)
        admin.apply(NOP, twin("b-twin", "consumer-b", "B's spec"), field_manager="test")

        for name in consumers:
            for obj in isolation_policy(name, [NOP_BOUND]):
                apply(admin, obj, resource_of(obj["kind"]))

        def denied_update() -> bool:
            current = a.get(NOP, "b-twin", SHARED)
            current["spec"]["coolField"] = "A was here"
            try:
                a.update(NOP, current)
            except ForbiddenError:
                return True
            admin.apply(NOP, twin("b-twin", "consumer-b", "B's spec"), field_manager="test")
            return False

        # The API server loads a new policy within a second or so.
        eventually(denied_update, timeout=30)
        message = forbidden(lambda: a.delete(NOP, "b-twin", SHARED))
        assert "ValidatingAdmissionPolicy" in message and "another consumer" in message
        forbidden(lambda: a.apply(NOP, twin("b-twin", "consumer-a"), field_manager="a"))
        forbidden(lambda: a.delete(NOP, "nobodys", SHARED))
        # Nor can it plant objects in B's name or nobody's (a name B then could not use).
        forbidden(lambda: a.create(NOP, twin("planted", "consumer-b")))
        forbidden(lambda: a.create(NOP, twin("unlabelled", None)))
        # Nor give its own object away.
        forbidden(lambda: a.apply(NOP, twin("a-own", "consumer-b"), field_manager="a"))
        assert admin.get(NOP, "b-twin", SHARED)["spec"]["coolField"] == "B's spec"

        # Each still does all it needs with its own objects.
        a.apply(NOP, twin("a-own", "consumer-a", "changed"), field_manager="a")
        a.create(NOP, twin("a-new", "consumer-a"))
        a.delete(NOP, "a-new", SHARED)
        b.apply(NOP, twin("b-twin", "consumer-b", "B changed it"), field_manager="b")

        # The limit, precisely: reads are not admission requests. A can still read B's.
        assert a.get(NOP, "b-twin", SHARED)["spec"]["coolField"] == "B changed it"
        assert {o["metadata"]["name"] for o in a.list(NOP, SHARED)[0]} >= {"b-twin"}


@pytest.mark.timeout(180)
def test_the_connector_works_with_scoped_credentials_under_the_isolation_policy(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    # The policy admits only objects labelled with the connector's consumer-cluster name.
    scoped = provision(
        world.provider, world.provider_cluster, world.consumer_cluster_name, [NOP_BOUND]
    )
    for obj in isolation_policy(scoped.name, [NOP_BOUND]):
        apply(world.provider, obj, resource_of(obj["kind"]))
    ns = "scoped-objects"
    ensure_namespace(world.consumer, ns)
    # The walkthrough's connection name: the NopResource CRD in the consumer belongs to the
    # connection of that name, whichever credentials it uses (another name is a conflict).
    conn = "provider-connection"
    eventually(lambda: get(world.consumer, CLUSTER_CONNECTIONS, conn) is None, timeout=30)
    apply(world.consumer, kubeconfig_secret("scoped-a", scoped.kubeconfig))
    apply(world.consumer, connection(conn, "scoped-a"))
    apply(world.consumer, binding("nopresources.nop.example.org", conn, namespace=ns))
    try:
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, conn) == "Ready")
        eventually(lambda: world.consumer.list(NOP)[1] is not None, timeout=60)
        apply(world.consumer, nop(ns, "scoped", "through the policy"))

        wait_object_bound(world, connector, ns, "scoped")
        provider_twin = world.provider.get(NOP, "scoped", ns)
        assert provider_twin["metadata"]["labels"][LABEL_CONSUMER_CLUSTER] == scoped.name
        # Deleting goes through the policy too (the stored twin is this consumer's).
        world.consumer.delete(NOP, "scoped", ns)
        eventually(lambda: get(world.consumer, NOP, "scoped", ns) is None, timeout=60)
        assert get(world.provider, NOP, "scoped", ns) is None
    finally:
        world.consumer.delete(API_BINDINGS, "nopresources.nop.example.org", ns)
        world.consumer.delete(CLUSTER_CONNECTIONS, conn)
