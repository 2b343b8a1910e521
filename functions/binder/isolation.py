"""Cross-consumer write isolation on the provider: a ValidatingAdmissionPolicy per consumer.

RBAC cannot tell one consumer's twins from another's: every consumer bound to an API gets
the same rules on its resource, and RBAC does not look at labels. Admission can. The policy
built here is evaluated by kube-apiserver itself (``admissionregistration.k8s.io/v1``, GA in
Kubernetes 1.30; CEL, no webhook to run) for requests made with one consumer's provider
identity, and denies:

- creating or updating an object that does not carry
  ``connect.upbound.io/consumer-cluster=<this consumer>`` (so a consumer can neither write
  into another consumer's twins nor plant objects in their name, or nobody's);
- updating or deleting an object whose stored label names another consumer, or none.

Reads are not admission requests: one consumer can still *read* another's twins of a shared
API in a shared namespace. See docs/security.md.

Pure: :func:`isolation_policy` returns the objects to apply on the provider, next to
:func:`functions.binder.provider_access`'s.
"""

from __future__ import annotations

from functions.binder.placement import ADMISSION_API_VERSION, consumer_admission, owned_by
from functions.binder.types import BoundResource
from functions.common import (
    LABEL_CONSUMER_CLUSTER,
    MANAGED_BY,
    InvalidInputError,
    Obj,
    dns_label,
    label_value,
    require_str,
)

# ADMISSION_API_VERSION is re-exported: the installer checks that it is served.
__all__ = ["ADMISSION_API_VERSION", "isolation_policy", "policy_name"]

#: Writes whose target the policy checks; reads are not admitted, so cannot be checked.
OPERATIONS = ("CREATE", "UPDATE", "DELETE")


def policy_name(consumer_name: str) -> str:
    """The policy's (and its binding's) name for one consumer."""
    consumer = require_str(consumer_name, "consumer_name")
    return f"{MANAGED_BY}.consumer-isolation.{dns_label(consumer)}"


def isolation_policy(consumer_name: str, resources: list[BoundResource]) -> list[Obj]:
    """The ValidatingAdmissionPolicy and its binding confining ``consumer_name``'s writes.

    ``resources`` are the APIs bound for this consumer (as for ``provider_access``); the
    identity is the ServiceAccount ``provider_access`` creates for it.
    """
    consumer = require_str(consumer_name, "consumer_name")
    value = label_value(consumer)
    name = policy_name(consumer)
    plurals_by_group: dict[str, set[str]] = {}
    for i, resource in enumerate(resources):
        group = require_str(resource.group, f"resources[{i}].group")
        plural = require_str(resource.plural, f"resources[{i}].plural")
        for field, text in (("group", group), ("plural", plural)):
            # Values end up inside CEL strings and match rules: names only.
            if any(c in text for c in "*/'\"\\ "):
                raise InvalidInputError(f"resources[{i}].{field}", f"must be a name: {text}")
        plurals_by_group.setdefault(group, set()).add(plural)
    if not plurals_by_group:
        raise InvalidInputError("resources", "at least one bound resource is needed")
    rules: list[Obj] = [
        {
            "apiGroups": [group],
            "apiVersions": ["*"],
            "resources": sorted(plurals),
            "operations": list(OPERATIONS),
        }
        for group, plurals in sorted(plurals_by_group.items())
    ]
    validations: list[Obj] = [
        {
            "expression": f"request.operation == 'DELETE' || ({owned_by('object', consumer)})",
            "message": (
                f"consumer {consumer} may only write objects labelled "
                f"{LABEL_CONSUMER_CLUSTER}={value}"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": f"request.operation == 'CREATE' || ({owned_by('oldObject', consumer)})",
            "message": (
                f"consumer {consumer} may not change or delete an object of another "
                f"consumer, or of none (its {LABEL_CONSUMER_CLUSTER} is not {value})"
            ),
            "reason": "Forbidden",
        },
    ]
    return consumer_admission(consumer, name, rules, validations)
