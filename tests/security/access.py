"""Provider identities as ``api-connector install`` creates them: the binder's
``provider_access`` objects applied on the provider, and a TokenRequest token for them."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from connector.envtest import Cluster
from connector.install import request_token, scoped_kubeconfig
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig
from connector.kube.resources import (
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
from tests.e2e.harness import apply

NOP_BOUND = BoundResource(
    crd_name="nopresources.nop.example.org",
    group="nop.example.org",
    kind="NopResource",
    plural="nopresources",
    scope="Namespaced",
    version="v1alpha1",
)

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
