"""The consumer's isolation policy in the provider: whether install applies it, and applying it.

The policy itself is the binder's :func:`~functions.binder.isolation.isolation_policy`: a
ValidatingAdmissionPolicy (and its binding) that lets this consumer's identity write only
objects labelled as its own. It needs ``admissionregistration.k8s.io/v1``
ValidatingAdmissionPolicy (Kubernetes 1.30+); whether the provider serves it is found out
while validating, before anything is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connector.install.clusters import Cluster
from connector.install.identity import PROVIDER_RESOURCES
from connector.install.options import FIELD_MANAGER, InstallError, Report
from connector.install.permissions import check_permissions, isolation_permissions
from connector.kube import ForbiddenError, KubeClient, KubeError, NotFoundError
from connector.kube.resources import (
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessResult, BoundResource
from functions.binder.isolation import ADMISSION_API_VERSION, isolation_policy, policy_name
from functions.common import LABEL_CONSUMER_CLUSTER, InvalidInputError, label_value

__all__ = ["Isolation", "apply_isolation", "plan_isolation"]


@dataclass(frozen=True, kw_only=True)
class Isolation:
    """The consumer's isolation policy as validation found it; the write phase applies it."""

    name: str
    #: The policy and its binding to apply; empty: no API is bound, remove them if they exist.
    objects: list[dict[str, Any]]
    exists: bool


def plan_isolation(
    provider: Cluster,
    wanted: bool | None,
    consumer_name: str,
    resources: Sequence[BoundResource],
    *,
    report: Report,
) -> Isolation | None:
    """Whether and what to apply of the consumer's isolation policy (``wanted`` as in
    :attr:`InstallOptions.isolation_policy`); refuses or warns if the provider lacks the API."""
    if wanted is False:
        report(
            "Provider: the isolation policy is neither applied nor changed (--no-isolation-policy)."
        )
        return None
    client = provider.client
    name = policy_name(consumer_name)
    try:
        existing = client.get_or_none(VALIDATING_ADMISSION_POLICIES, name)
    except NotFoundError:
        # Not the object, the API: the provider does not serve ValidatingAdmissionPolicy v1.
        what = (
            f"the provider cluster at {client.server} does not serve ValidatingAdmissionPolicy "
            f"({ADMISSION_API_VERSION}; Kubernetes 1.30 or newer)"
        )
        if wanted:
            raise InstallError(
                f"{what}, so --isolation-policy cannot be honoured. Upgrade the provider, or "
                "pass --no-isolation-policy to install without it. Nothing was changed."
            ) from None
        report(
            f"Warning: {what}; installing without the isolation policy. RBAC alone lets this "
            "consumer's provider identity overwrite other consumers' objects of the same APIs "
            "(see docs/security.md). Pass --isolation-policy to require the policy, or "
            "--no-isolation-policy to install without it and without this warning."
        )
        return None
    except ForbiddenError:
        existing = None  # the permission check below names what is missing
    except KubeError as e:
        raise InstallError(f"cannot read the provider's admission policies: {e.message}") from e
    try:
        objects = isolation_policy(consumer_name, list(resources)) if resources else []
    except InvalidInputError as e:
        raise InstallError(f"cannot build the isolation policy: {e}") from e
    verbs = ("get", "create", "patch") if objects else ("get", "delete")
    check_permissions(
        provider,
        isolation_permissions(verbs),
        hint="or pass --no-isolation-policy to install without the isolation policy",
    )
    return Isolation(name=name, objects=objects, exists=existing is not None)


def apply_isolation(
    client: KubeClient,
    isolation: Isolation | None,
    access: AccessResult,
    consumer_name: str,
    *,
    report: Report,
) -> None:
    """Apply (or, with nothing bound, remove) the policy :func:`plan_isolation` decided on."""
    if isolation is None:
        return
    try:
        if not isolation.objects:
            if isolation.exists:
                for res in (VALIDATING_ADMISSION_POLICY_BINDINGS, VALIDATING_ADMISSION_POLICIES):
                    with contextlib.suppress(NotFoundError):
                        client.delete(res, isolation.name)
                report(
                    f"Provider: removed the isolation policy {isolation.name}; no API is bound, "
                    "so there is nothing to confine."
                )
            return
        for obj in isolation.objects:
            client.apply(PROVIDER_RESOURCES[obj["kind"]], obj, FIELD_MANAGER)
    except KubeError as e:
        raise InstallError(
            f"cannot write the isolation policy {isolation.name} to the provider: {e.message}"
        ) from e
    report(
        f"Provider: ValidatingAdmissionPolicy {isolation.name} (and its binding) lets "
        f"ServiceAccount {access.namespace}/{access.service_account} write only objects "
        f"labelled {LABEL_CONSUMER_CLUSTER}={label_value(consumer_name)}."
    )
