"""The connection's placement of twins, as ``install`` sets it up (``--placement``).

``Isolated`` gives each consumer namespace a provider namespace of this consumer's alone, and
grants the identity its objects (and Secrets) there only: the binder's
:func:`~functions.binder.provider_access` output then includes a ClusterRole bound only by
per-namespace RoleBindings and the ValidatingAdmissionPolicy that confines which namespaces
and RoleBindings the identity creates (``functions.binder.placement``). Without that policy
the grant would not be confined, so the Isolated placement is refused, before anything is
written, by a provider that does not serve ValidatingAdmissionPolicy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from connector.install.clusters import Cluster
from connector.install.options import InstallError, Report
from connector.install.permissions import check_permissions, provider_permissions
from connector.kube import ForbiddenError, KubeClient, KubeError, NotFoundError
from connector.kube.resources import (
    CLUSTER_ROLES,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessRequest, AccessResult, BoundResource, provider_access
from functions.binder.isolation import ADMISSION_API_VERSION
from functions.binder.placement import consumer_labels, objects_role_name, placement_policy_name
from functions.common import (
    InvalidInputError,
)
from functions.common.placement import (
    PLACEMENT_DEFAULT,
    PLACEMENT_ISOLATED,
    check_placement,
    placement_of,
)

__all__ = [
    "check_placement_served",
    "effective_placement",
    "placed_access",
    "placement_sentence",
    "retire_isolated",
]


def effective_placement(wanted: str | None, connection: Mapping[str, Any] | None) -> str:
    """``--placement`` if given, else the connection's as it is (``Default`` for a new one)."""
    if wanted is not None:
        try:
            return check_placement(wanted, "--placement")
        except InvalidInputError as e:
            raise InstallError(str(e)) from e
    return placement_of(dict(connection) if connection is not None else None)


def placed_access(
    provider: Cluster,
    consumer_name: str,
    resources: list[BoundResource],
    placement: str,
    connection_secrets: bool,
    *,
    report: Report,
) -> AccessResult:
    """The consumer's provider access in ``placement``, once the provider is found able to
    enforce it and the installer allowed to create it."""
    access = provider_access(
        AccessRequest(
            consumer_name=consumer_name,
            resources=resources,
            placement=placement,
            connection_secrets=connection_secrets,
        )
    )
    check_placement_served(provider, placement, consumer_name)
    check_permissions(provider, provider_permissions(access))
    report(placement_sentence(placement, connection_secrets=connection_secrets))
    return access


def check_placement_served(provider: Cluster, placement: str, consumer_name: str) -> None:
    """Refuse the Isolated placement when the provider cannot enforce it (module doc)."""
    if placement != PLACEMENT_ISOLATED:
        return
    client = provider.client
    try:
        client.get_or_none(VALIDATING_ADMISSION_POLICIES, placement_policy_name(consumer_name))
    except NotFoundError:
        raise InstallError(
            f"the Isolated placement needs ValidatingAdmissionPolicy ({ADMISSION_API_VERSION}, "
            f"Kubernetes 1.30 or newer), which the provider cluster at {client.server} does "
            "not serve: it is what keeps this consumer's identity to its own namespaces. "
            "Upgrade the provider, or use --placement Default. Nothing was changed."
        ) from None
    except ForbiddenError:
        pass  # the permission check names what is missing
    except KubeError as e:
        raise InstallError(f"cannot read the provider's admission policies: {e.message}") from e


def retire_isolated(
    client: KubeClient, placement: str, consumer_name: str, *, report: Report
) -> None:
    """Back to the Default placement: remove what an earlier Isolated install created for
    this consumer (its objects role, and the placement policy, which would refuse the
    namespaces the connector now creates). The namespaces and their twins stay."""
    if placement != PLACEMENT_DEFAULT:
        return
    ours = consumer_labels(consumer_name)
    name = placement_policy_name(consumer_name)
    leftovers = [
        (VALIDATING_ADMISSION_POLICY_BINDINGS, name),
        (VALIDATING_ADMISSION_POLICIES, name),
        (CLUSTER_ROLES, objects_role_name(consumer_name)),
    ]
    try:
        for res, obj_name in leftovers:
            try:
                current = client.get_or_none(res, obj_name)
            except NotFoundError:
                continue  # the API is not served: nothing of the kind was created
            labels = ((current or {}).get("metadata") or {}).get("labels") or {}
            if current is None or any(labels.get(k) != v for k, v in ours.items()):
                continue
            with contextlib.suppress(NotFoundError):
                client.delete(res, obj_name)
            report(f"Provider: deleted {res.kind} {obj_name}, left by an Isolated install.")
    except KubeError as e:
        raise InstallError(
            f"cannot remove what the Isolated placement created in the provider: {e.message}"
        ) from e


def placement_sentence(placement: str, *, connection_secrets: bool) -> str:
    """What the identity may reach, for install's report."""
    if placement == PLACEMENT_ISOLATED:
        return (
            "Provider: Isolated placement: twins go to provider namespaces of this consumer's "
            "alone, the only namespaces where its identity may read and write objects and read "
            "Secrets; ValidatingAdmissionPolicy "
            "confines which namespaces and RoleBindings it creates."
        )
    if connection_secrets:
        return (
            "Provider: Default placement, with --connection-secrets: the identity may read "
            "Secrets in every namespace of the provider, other consumers' included."
        )
    return (
        "Provider: Default placement: twins keep their consumer namespace names; other "
        "consumers of the same APIs can read them (docs/security.md)."
    )
