"""What the installer's identity must be allowed to do, and checking it before anything is written.

Each list is the exact set of verbs the matching phase uses; :func:`check_permissions` asks
the cluster with SelfSubjectAccessReviews and refuses with every missing permission named.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connector.install.clusters import Cluster
from connector.install.options import InstallError
from connector.kube import ForbiddenError, KubeError, UnauthorizedError
from connector.kube.resources import (
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessResult

__all__ = [
    "Permission",
    "check_permissions",
    "consumer_permissions",
    "forbidden",
    "isolation_permissions",
    "list_crds_permission",
    "missing_message",
    "provider_permissions",
    "revoke_permissions",
]

_RBAC = "rbac.authorization.k8s.io"
_CRDS = "customresourcedefinitions"
_APIEXTENSIONS = "apiextensions.k8s.io"


@dataclass(frozen=True, kw_only=True)
class Permission:
    """One thing the installer's identity must be allowed to do."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    subresource: str | None = None

    def describe(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{where}"


def consumer_permissions(namespace: str) -> list[Permission]:
    """What ``install`` does in the consumer (its own writes and the chart's objects)."""
    needs = [
        Permission(verb="get", resource="namespaces"),
        Permission(verb="get", group=_APIEXTENSIONS, resource=_CRDS),
        Permission(verb="create", group=_APIEXTENSIONS, resource=_CRDS),
        Permission(verb="patch", group=_APIEXTENSIONS, resource=_CRDS),
    ]
    for verb in ("get", "create", "patch"):
        needs.append(
            Permission(verb=verb, group="connect.upbound.io", resource="clusterconnections")
        )
    for resource in ("clusterroles", "clusterrolebindings"):
        for verb in ("create", "patch"):
            needs.append(Permission(verb=verb, group=_RBAC, resource=resource))
    namespaced = [
        ("", "secrets", ("get", "list", "create", "patch", "delete")),
        ("", "serviceaccounts", ("create", "patch")),
        ("", "services", ("create", "patch")),
        ("apps", "deployments", ("create", "patch")),
        (_RBAC, "roles", ("create", "patch")),
        (_RBAC, "rolebindings", ("create", "patch")),
    ]
    for group, resource, verbs in namespaced:
        for verb in verbs:
            needs.append(Permission(verb=verb, group=group, resource=resource, namespace=namespace))
    return needs


def list_crds_permission() -> Permission:
    """What reading the provider's offered APIs needs."""
    return Permission(verb="list", group=_APIEXTENSIONS, resource=_CRDS)


def provider_permissions(access: AccessResult) -> list[Permission]:
    """What ``install`` does in the provider with an admin's kubeconfig."""
    ns = access.namespace
    kinds = {str(obj["kind"]) for obj in access.objects}
    # The isolated placement's access includes an admission policy.
    policy = (
        isolation_permissions(("create", "patch")) if "ValidatingAdmissionPolicy" in kinds else []
    )
    return [
        *policy,
        list_crds_permission(),
        Permission(verb="create", resource="namespaces"),
        Permission(verb="patch", resource="namespaces"),
        Permission(verb="create", resource="serviceaccounts", namespace=ns),
        Permission(verb="patch", resource="serviceaccounts", namespace=ns),
        Permission(verb="create", resource="serviceaccounts", namespace=ns, subresource="token"),
        Permission(verb="get", resource="secrets", namespace=ns),
        Permission(verb="create", resource="secrets", namespace=ns),
        Permission(verb="patch", resource="secrets", namespace=ns),
        Permission(verb="create", group=_RBAC, resource="clusterroles"),
        Permission(verb="patch", group=_RBAC, resource="clusterroles"),
        Permission(verb="create", group=_RBAC, resource="clusterrolebindings"),
        Permission(verb="patch", group=_RBAC, resource="clusterrolebindings"),
    ]


def isolation_permissions(verbs: Iterable[str]) -> list[Permission]:
    """``verbs`` on the isolation policy's two kinds (cluster-scoped), in the provider."""
    group = VALIDATING_ADMISSION_POLICIES.group
    return [
        Permission(verb=verb, group=group, resource=res.plural)
        for res in (VALIDATING_ADMISSION_POLICIES, VALIDATING_ADMISSION_POLICY_BINDINGS)
        for verb in verbs
    ]


def revoke_permissions(access: AccessResult) -> list[Permission]:
    """What ``uninstall`` does in the provider: read and delete what install created there."""
    ns = access.namespace
    needs = isolation_permissions(("get", "delete"))
    # The RoleBindings the connector created in the consumer's own namespaces (isolated
    # placement) are found by their labels, wherever they are.
    needs += [
        Permission(verb="list", group=_RBAC, resource="rolebindings"),
        Permission(verb="delete", group=_RBAC, resource="rolebindings"),
    ]
    for verb in ("get", "delete"):
        needs += [
            Permission(verb=verb, group=_RBAC, resource="clusterrolebindings"),
            Permission(verb=verb, group=_RBAC, resource="clusterroles"),
            Permission(verb=verb, resource="serviceaccounts", namespace=ns),
            Permission(verb=verb, resource="secrets", namespace=ns),
            Permission(verb=verb, resource="namespaces"),
        ]
    return needs


def check_permissions(cluster: Cluster, needs: Sequence[Permission], *, hint: str = "") -> None:
    """Refuse with every missing permission named; ``hint`` is another way out, if any."""
    missing: list[Permission] = []
    for need in needs:
        try:
            allowed = cluster.client.self_subject_access_review(
                need.verb,
                need.group,
                need.resource,
                need.namespace,
                subresource=need.subresource,
            )
        except UnauthorizedError as e:
            raise InstallError(
                f"the {cluster.role} cluster at {cluster.client.server} rejected the "
                f"credentials in {cluster.access.kubeconfig} (401 Unauthorized)."
            ) from e
        except KubeError as e:
            raise InstallError(
                f"cannot check the installer's permissions in the {cluster.role} cluster: "
                f"{e.message}"
            ) from e
        if not allowed:
            missing.append(need)
    if missing:
        raise InstallError(missing_message(cluster.role, missing, hint=hint))


def missing_message(role: str, missing: Sequence[Permission], *, hint: str = "") -> str:
    """Refusing an install for lack of ``missing`` in the ``role`` cluster; nothing written."""
    described = [m.describe() for m in missing]
    listing = described[0] if len(described) == 1 else ", ".join(described)
    return (
        f"the installer lacks permission to {listing} in the {role} cluster; ask an "
        f"admin of the {role} cluster to grant it, or use an admin's kubeconfig "
        f"(--{role}-kubeconfig){'; ' + hint if hint else ''}. Nothing was changed."
    )


def forbidden(cluster: Cluster, what: str, e: ForbiddenError) -> InstallError:
    """The error for a request the cluster refused (403) although the checks passed."""
    return InstallError(
        f"the installer lacks permission to {what} in the {cluster.role} cluster: {e.message}"
    )
