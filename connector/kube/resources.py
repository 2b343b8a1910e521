"""Which API a request is about: group, version, plural, kind and scope, and its URL paths.

A :class:`Resource` is all the client needs to build a request, so it never asks the server
for discovery. The well-known resources the connector uses are constants here; the APIs it
binds at run time are built from their CRDs with :meth:`Resource.from_crd`.

Scope rules for the path builders: for a namespaced resource, ``namespace=None`` means "all
namespaces" on collections (list, watch) and is an error on single objects; for a
cluster-scoped resource the namespace is ignored, because Kubernetes ignores
``metadata.namespace`` on cluster-scoped objects too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = [
    "API_BINDINGS",
    "CLUSTER_API_BINDINGS",
    "CLUSTER_CONNECTIONS",
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
    "COMPOSITIONS",
    "CONFIG_MAPS",
    "CONNECT_GROUP",
    "CUSTOM_RESOURCE_DEFINITIONS",
    "DAEMON_SETS",
    "DEPLOYMENTS",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "PODS",
    "ROLES",
    "ROLE_BINDINGS",
    "SECRETS",
    "SELF_SUBJECT_ACCESS_REVIEWS",
    "SERVICE_ACCOUNTS",
    "STATEFUL_SETS",
    "VALIDATING_ADMISSION_POLICIES",
    "VALIDATING_ADMISSION_POLICY_BINDINGS",
    "XRDS",
    "XRDS_V2",
    "Resource",
]

from functions.common.api import CONNECT_GROUP


def _segment(value: str) -> str:
    # Names are DNS labels/subdomains in practice, but quoting keeps a hostile or malformed
    # name from changing the path of the request.
    return quote(value, safe="")


@dataclass(frozen=True)
class Resource:
    """One REST resource: ``group`` is ``""`` for the core API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` of the objects: ``v1`` for core, ``<group>/<version>`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``<plural>.<group>`` (just ``<plural>`` for core), as in RBAC and CRD names."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def base_path(self) -> str:
        """``/api/v1`` for core, ``/apis/<group>/<version>`` otherwise."""
        if self.group:
            return f"/apis/{_segment(self.group)}/{_segment(self.version)}"
        return f"/api/{_segment(self.version)}"

    def collection_path(self, namespace: str | None = None) -> str:
        """The list/watch/create path; ``namespace=None`` on a namespaced resource means all."""
        if self.namespaced and namespace:
            return f"{self.base_path}/namespaces/{_segment(namespace)}/{_segment(self.plural)}"
        return f"{self.base_path}/{_segment(self.plural)}"

    def object_path(
        self, name: str, namespace: str | None = None, *, subresource: str | None = None
    ) -> str:
        """The path of one object (and optionally one of its subresources, e.g. ``status``)."""
        if not name:
            raise ValueError(f"An object of {self.group_resource} needs a name.")
        if self.namespaced and not namespace:
            raise ValueError(
                f"{self.kind} {name!r} is namespaced ({self.group_resource}); a namespace is "
                "required."
            )
        path = f"{self.collection_path(namespace)}/{_segment(name)}"
        if subresource:
            path = f"{path}/{_segment(subresource)}"
        return path

    def with_type(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with ``apiVersion`` and ``kind`` filled in when missing (in place).

        Items of a list come without them; every object the client hands out carries them,
        so stages and appliers never have to guess.
        """
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        return obj

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any], version: str | None = None) -> Resource:
        """The resource a CustomResourceDefinition serves, at ``version`` or its storage version.

        Raises ``ValueError`` when the CRD does not serve the requested version.
        """
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        versions = [v for v in spec.get("versions") or [] if isinstance(v, Mapping)]
        if version is None:
            storage = [v for v in versions if v.get("storage")]
            served = [v for v in versions if v.get("served")]
            chosen = (storage or served or versions or [{}])[0]
            version = str(chosen.get("name") or "")
        elif not any(v.get("name") == version and v.get("served") for v in versions):
            raise ValueError(
                f"The CRD {crd.get('metadata', {}).get('name')!r} does not serve version "
                f"{version!r}."
            )
        if not version or not spec.get("group") or not names.get("plural"):
            raise ValueError(
                f"The CRD {crd.get('metadata', {}).get('name')!r} has no group, plural or version."
            )
        return cls(
            group=str(spec["group"]),
            version=version,
            plural=str(names["plural"]),
            kind=str(names.get("kind") or ""),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        )


CUSTOM_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
SECRETS = Resource("", "v1", "secrets", "Secret", True)
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", True)
PODS = Resource("", "v1", "pods", "Pod", True)
# Core v1 Events: what `kubectl describe` shows, and writable by every apiserver version.
EVENTS = Resource("", "v1", "events", "Event", True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
# Workloads of a Helm release that install takes over (connector/install/takeover.py).
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", True)
STATEFUL_SETS = Resource("apps", "v1", "statefulsets", "StatefulSet", True)
DAEMON_SETS = Resource("apps", "v1", "daemonsets", "DaemonSet", True)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True)
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False)
CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
)
VALIDATING_ADMISSION_POLICIES = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicies",
    "ValidatingAdmissionPolicy",
    False,
)
VALIDATING_ADMISSION_POLICY_BINDINGS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicybindings",
    "ValidatingAdmissionPolicyBinding",
    False,
)
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False
)
CLUSTER_CONNECTIONS = Resource(
    CONNECT_GROUP, "v1alpha1", "clusterconnections", "ClusterConnection", False
)
CLUSTER_API_BINDINGS = Resource(
    CONNECT_GROUP, "v1alpha1", "clusterapibindings", "ClusterAPIBinding", False
)
API_BINDINGS = Resource(CONNECT_GROUP, "v1alpha1", "apibindings", "APIBinding", True)

# Crossplane's, as the demo and the Crossplane tier publish APIs with them: an XRD
# (``apiextensions.crossplane.io/v1`` claims and cluster XRs, ``v2`` namespaced XRs too)
# and its Composition.
XRDS = Resource(
    "apiextensions.crossplane.io",
    "v1",
    "compositeresourcedefinitions",
    "CompositeResourceDefinition",
    False,
)
XRDS_V2 = Resource(
    "apiextensions.crossplane.io",
    "v2",
    "compositeresourcedefinitions",
    "CompositeResourceDefinition",
    False,
)
COMPOSITIONS = Resource("apiextensions.crossplane.io", "v1", "compositions", "Composition", False)
