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

from collections.abc import Mapping
from typing import Any

from connector.install.clusters import Cluster
from connector.install.options import InstallError, Report
from connector.install.permissions import check_permissions, provider_permissions
from connector.kube import ForbiddenError, KubeError, NotFoundError
from connector.kube.resources import VALIDATING_ADMISSION_POLICIES
from functions.binder import AccessRequest, AccessResult, BoundResource, provider_access
from functions.binder.isolation import ADMISSION_API_VERSION
from functions.binder.placement import placement_policy_name
from functions.common import InvalidInputError
from functions.common.placement import PLACEMENT_ISOLATED, check_placement, placement_of

__all__ = ["check_placement_served", "effective_placement", "placed_access", "placement_sentence"]


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
