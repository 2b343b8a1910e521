"""The isolated placement on the provider: one consumer's identity confined, reads included,
to provider namespaces of its own.

RBAC grants per namespace with RoleBindings, and a consumer's namespaces appear as its
objects do (a ClusterAPIBinding syncs every namespace). So the identity creates them itself,
within limits that RBAC and admission enforce together:

- RBAC (``functions.binder.logic``): cluster-wide, ``create`` on namespaces and
  rolebindings, and ``bind`` on one ClusterRole only, its own objects role (by
  ``resourceNames``). That role (the bound namespaced APIs, their status, and Secrets read)
  is bound by no ClusterRoleBinding: only by RoleBindings in the consumer's namespaces. No
  ``get``, ``list`` or ``watch`` on namespaces or rolebindings, and no update or delete.
- Admission (:func:`placement_policy`, a ValidatingAdmissionPolicy evaluated by
  kube-apiserver, ``failurePolicy: Fail``): for requests made with this consumer's identity,
  a namespace may be created only with this consumer's prefix
  (:func:`functions.common.placement.isolated_prefix`, which no other consumer's prefix
  starts with) and labelled as this consumer's; a RoleBinding may be created only in such
  a namespace (CEL ``namespaceObject``), naming the objects role and this identity alone.

So the identity cannot grant itself anything in a namespace that is not its own (another
consumer's, or any other), and cannot label one as its own. The connector creates the
namespace and its RoleBinding (:func:`namespace_objects`) before the first twin there.
"""

from __future__ import annotations

from functions.binder.types import BoundResource
from functions.common import (
    ANNOTATION_ORIGIN_NAMESPACE,
    LABEL_CONSUMER_CLUSTER,
    LABEL_CONSUMER_NAMESPACE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    Obj,
    dns_label,
    label_value,
    require_str,
)
from functions.common.placement import isolated_prefix, provider_namespace

__all__ = [
    "ADMISSION_API_VERSION",
    "HOME_PREFIX",
    "OBJECTS_ROLE_BINDING",
    "SERVICE_ACCOUNT",
    "consumer_admission",
    "consumer_id",
    "consumer_labels",
    "home_namespace",
    "identity_username",
    "namespace_objects",
    "objects_role_name",
    "owned_by",
    "placement_policy",
    "placement_policy_name",
]

ADMISSION_API_VERSION = "admissionregistration.k8s.io/v1"
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
#: The consumer's home namespace on the provider (its ServiceAccount and token) is
#: ``HOME_PREFIX + consumer_id``.
HOME_PREFIX = "connector-"
SERVICE_ACCOUNT = "consumer"
#: The RoleBinding, in each of a consumer's provider namespaces, that grants its objects role.
OBJECTS_ROLE_BINDING = f"{MANAGED_BY}:consumer-objects"


def consumer_id(consumer_name: str) -> str:
    """The consumer's name as it appears in provider object names (a DNS label)."""
    return dns_label(require_str(consumer_name, "consumer_name"), max_length=63 - len(HOME_PREFIX))


def home_namespace(consumer_name: str) -> str:
    """The consumer's home namespace on the provider: its ServiceAccount and token."""
    return HOME_PREFIX + consumer_id(consumer_name)


def identity_username(consumer_name: str) -> str:
    """The user name kube-apiserver gives the consumer's ServiceAccount."""
    return f"system:serviceaccount:{home_namespace(consumer_name)}:{SERVICE_ACCOUNT}"


def objects_role_name(consumer_name: str) -> str:
    """The ClusterRole with the consumer's namespaced objects (and Secrets read), granted only
    by RoleBindings in its own provider namespaces."""
    return f"{MANAGED_BY}:consumer-objects:{consumer_id(consumer_name)}"


def placement_policy_name(consumer_name: str) -> str:
    """The placement policy's (and its binding's) name for one consumer."""
    return f"{MANAGED_BY}.consumer-placement.{consumer_id(consumer_name)}"


def consumer_labels(consumer_name: str) -> dict[str, str]:
    """The labels of what is made in the provider for one consumer (and by whom)."""
    return {LABEL_CONSUMER_CLUSTER: label_value(consumer_name), LABEL_MANAGED_BY: MANAGED_BY}


def owned_by(var: str, consumer_name: str) -> str:
    """CEL: the object ``var`` is labelled as ``consumer_name``'s. ``has()`` first: a
    missing labels map or key must deny, not error (an error would also deny under
    failurePolicy Fail, but with a message that explains nothing)."""
    key, value = LABEL_CONSUMER_CLUSTER, label_value(consumer_name)
    return (
        f"has({var}.metadata.labels) && '{key}' in {var}.metadata.labels && "
        f"{var}.metadata.labels['{key}'] == '{value}'"
    )


def consumer_admission(
    consumer_name: str, name: str, rules: list[Obj], validations: list[Obj]
) -> list[Obj]:
    """A ValidatingAdmissionPolicy ``name`` that checks the writes of ``rules`` made with
    ``consumer_name``'s identity against ``validations``, failing closed, and its binding."""
    labels = consumer_labels(consumer_name)
    policy: Obj = {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            # Fail closed: if the policy cannot be evaluated, the consumer's write is refused.
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [
                {
                    "name": "made-with-this-consumers-identity",
                    "expression": (
                        f"request.userInfo.username == '{identity_username(consumer_name)}'"
                    ),
                }
            ],
            "validations": validations,
        },
    }
    binding: Obj = {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def namespace_objects(consumer_name: str, namespace: str) -> list[Obj]:
    """The provider Namespace of ``consumer_name``'s consumer ``namespace`` in the isolated
    placement, and the RoleBinding there that grants the consumer its objects; to create in
    this order, with the consumer's own identity."""
    consumer = require_str(consumer_name, "consumer_name")
    origin = require_str(namespace, "namespace")
    name = provider_namespace(consumer, origin, "Isolated")
    ns_labels = consumer_labels(consumer) | {LABEL_CONSUMER_NAMESPACE: label_value(origin)}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": ns_labels,
                "annotations": {ANNOTATION_ORIGIN_NAMESPACE: origin},
            },
        },
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "RoleBinding",
            "metadata": {
                "name": OBJECTS_ROLE_BINDING,
                "namespace": name,
                "labels": consumer_labels(consumer),
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": objects_role_name(consumer),
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": SERVICE_ACCOUNT,
                    "namespace": home_namespace(consumer),
                }
            ],
        },
    ]


def placement_policy(consumer_name: str) -> list[Obj]:
    """The ValidatingAdmissionPolicy and its binding that confine which namespaces and
    RoleBindings ``consumer_name``'s identity creates (module doc)."""
    consumer = require_str(consumer_name, "consumer_name")
    name = placement_policy_name(consumer)
    prefix = isolated_prefix(consumer)
    value = label_value(consumer)
    key = LABEL_CONSUMER_CLUSTER
    home = home_namespace(consumer)
    # Every value below is a DNS label, a label value or a fixed name: nothing that could
    # end a CEL string.

    def ours(var: str) -> str:
        return f"{owned_by(var, consumer)} && {var}.metadata.name.startsWith('{prefix}')"

    is_namespace = "request.resource.resource == 'namespaces'"
    rules: list[Obj] = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["namespaces"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "apiVersions": ["v1"],
            "resources": ["rolebindings"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
        },
    ]
    validations: list[Obj] = [
        {
            # RBAC grants create only; should it ever grant more, the policy still
            # confines the identity to creating.
            "expression": "request.operation == 'CREATE'",
            "message": f"consumer {consumer} may only create namespaces and RoleBindings",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({is_namespace}) || ({ours('object')})",
            "message": (
                f"consumer {consumer} may only create namespaces named {prefix}... "
                f"and labelled {key}={value}"
            ),
            "reason": "Forbidden",
        },
        {
            "expression": (
                f"{is_namespace} || ("
                + ours("namespaceObject")
                + f" && object.roleRef.kind == 'ClusterRole'"
                f" && object.roleRef.name == '{objects_role_name(consumer)}'"
                " && size(object.subjects) == 1"
                " && object.subjects[0].kind == 'ServiceAccount'"
                f" && object.subjects[0].name == '{SERVICE_ACCOUNT}'"
                f" && object.subjects[0].namespace == '{home}')"
            ),
            "message": (
                f"consumer {consumer} may only bind its objects role to itself, in "
                f"its own namespaces ({prefix}..., labelled {key}={value})"
            ),
            "reason": "Forbidden",
        },
    ]
    return consumer_admission(consumer, name, rules, validations)


def namespaced(resources: list[BoundResource]) -> list[BoundResource]:
    """The bound resources the isolated placement grants per namespace."""
    return [r for r in resources if r.scope == "Namespaced"]
