"""Provider identities as ``api-connector install`` creates them: the binder's
``provider_access`` objects applied on the provider, and a TokenRequest token for them."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from connector.envtest import Cluster
from connector.install import request_token, scoped_kubeconfig
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
    Resource,
)
from functions.binder import AccessRequest, AccessResult, BoundResource, provider_access
from functions.binder.isolation import isolation_policy
from functions.binder.placement import placement_policy
from functions.common.placement import PLACEMENT_ISOLATED, provider_namespace
from tests.e2e.harness import apply, binding, connection, eventually, get, kubeconfig_secret
from tests.faults.harness import FaultWorld, ensure_namespace
from tests.support import NOP_BOUND

_RESOURCES = {
    r.kind: r
    for r in (
        NAMESPACES,
        SERVICE_ACCOUNTS,
        SECRETS,
        CLUSTER_ROLES,
        CLUSTER_ROLE_BINDINGS,
        VALIDATING_ADMISSION_POLICIES,
        VALIDATING_ADMISSION_POLICY_BINDINGS,
    )
}


def resource_of(kind: str) -> Resource:
    return _RESOURCES[kind]


@dataclass
class ConsumerIdentity:
    name: str
    access: AccessResult
    token: str
    kubeconfig: str

    def client(self) -> KubeClient:
        return client_from_kubeconfig(self.kubeconfig, name=self.name, qps=None)


def provision(
    admin: KubeClient,
    cluster: Cluster,
    consumer: str,
    resources: list[BoundResource],
    *,
    placement: str = "Default",
) -> ConsumerIdentity:
    """Apply ``provider_access`` for ``consumer`` and issue a token for its ServiceAccount."""
    access = provider_access(
        AccessRequest(consumer_name=consumer, resources=resources, placement=placement)
    )
    for obj in access.objects:
        apply(admin, obj, resource_of(obj["kind"]))
    token, _expires = request_token(admin, access)
    server = {
        "server": cluster.server,
        "certificate-authority-data": base64.b64encode(cluster.ca_file.read_bytes()).decode(),
    }
    kubeconfig = scoped_kubeconfig(
        cluster=server, token=token, user=consumer, namespace=access.namespace
    )
    return ConsumerIdentity(consumer, access, token, kubeconfig)


#: The ClusterConnection the security tests connect as.
CONNECTION = "provider-connection"


@contextlib.contextmanager
def isolated_connection(
    world: FaultWorld, namespace: str, secret: str
) -> Iterator[tuple[ConsumerIdentity, str]]:
    """The world's consumer connected in the Isolated placement, as
    ``api-connector install --placement Isolated`` connects it: the identity (with its
    isolation policy), its kubeconfig in the Secret ``secret``, the ClusterConnection
    ``CONNECTION`` with ``placement: Isolated``, and an APIBinding of NopResources in
    ``namespace``. Yields the identity and the provider namespace the twins of
    ``namespace`` go to; takes the connection, the binding and the placement policy back
    (later tests provision the same consumer in the Default placement, whose namespaces
    that policy would refuse)."""
    scoped = provision(
        world.provider,
        world.provider_cluster,
        world.consumer_cluster_name,
        [NOP_BOUND],
        placement=PLACEMENT_ISOLATED,
    )
    for obj in isolation_policy(scoped.name, [NOP_BOUND]):
        apply(world.provider, obj, resource_of(obj["kind"]))
    ensure_namespace(world.consumer, namespace)
    eventually(lambda: get(world.consumer, CLUSTER_CONNECTIONS, CONNECTION) is None, timeout=30)
    apply(world.consumer, kubeconfig_secret(secret, scoped.kubeconfig))
    isolated = connection(CONNECTION, secret)
    isolated["spec"]["placement"] = PLACEMENT_ISOLATED
    apply(world.consumer, isolated)
    apply(world.consumer, binding(NOP_BOUND.crd_name, CONNECTION, namespace=namespace))
    try:
        yield scoped, provider_namespace(scoped.name, namespace, PLACEMENT_ISOLATED)
    finally:
        world.consumer.delete(API_BINDINGS, NOP_BOUND.crd_name, namespace)
        world.consumer.delete(CLUSTER_CONNECTIONS, CONNECTION)
        for obj in placement_policy(scoped.name):
            world.provider.delete(resource_of(obj["kind"]), obj["metadata"]["name"])
