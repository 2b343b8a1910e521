"""Input and output of the binder stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.common.conditions import Condition
from functions.common.objects import Obj


@dataclass(frozen=True, kw_only=True)
class BoundResource:
    """One API a binding syncs."""

    crd_name: str  # <plural>.<group>
    group: str
    kind: str
    plural: str
    scope: str  # Namespaced | Cluster
    version: str  # the version the connector reads and writes (the storage version)

    def to_status(self) -> dict[str, Any]:
        return {
            "name": self.crd_name,
            "group": self.group,
            "kind": self.kind,
            "plural": self.plural,
            "scope": self.scope,
            "version": self.version,
        }

    @classmethod
    def from_status(cls, data: Mapping[str, Any]) -> BoundResource:
        """The inverse of :meth:`to_status`: an entry of a binding's ``status.boundResources``.

        Stored status may come from an older connector, so only ``name`` (``<plural>.<group>``)
        is required: a missing group or plural is read from it, a missing scope is
        ``Namespaced``, a missing kind or version is empty. Raises ``ValueError`` when the
        entry has no name.
        """
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("a bound resource needs a name")
        plural, _, group = name.partition(".")
        return cls(
            crd_name=name,
            group=str(data.get("group") or group),
            kind=str(data.get("kind") or ""),
            plural=str(data.get("plural") or plural),
            scope=str(data.get("scope") or "Namespaced"),
            version=str(data.get("version") or ""),
        )


@dataclass(frozen=True, kw_only=True)
class BindRequest:
    #: A ClusterAPIBinding or an APIBinding, as observed.
    binding: Obj
    #: The ClusterConnection it references, as observed (with status), or None if missing.
    connection: Obj | None
    now: str


@dataclass(frozen=True, kw_only=True)
class BindResult:
    connection_name: str
    resources: list[BoundResource]
    #: None: every namespace (ClusterAPIBinding); otherwise only these namespaces.
    namespaces: list[str] | None
    #: Whether cluster-scoped resources are synced (ClusterAPIBinding only).
    include_cluster_scoped: bool
    #: The binding's new ``status.conditions`` (Ready: Bound, NotOffered, ConnectionNotFound,
    #: ConnectionNotReady, InvalidBinding).
    conditions: list[Condition]


@dataclass(frozen=True, kw_only=True)
class AccessRequest:
    """The provider-side half: what one consumer may do on the provider."""

    consumer_name: str
    resources: list[BoundResource]
    #: Where the consumer's twins are placed (``functions.common.placement``): ``Default``
    #: grants the bound APIs cluster-wide; ``Isolated`` grants them (and Secrets) only in
    #: this consumer's own provider namespaces.
    placement: str = "Default"
    #: Default placement only: may the identity read Secrets (connection details)? Where the
    #: role reaches, i.e. in every namespace. The isolated placement always grants Secrets
    #: reads, in the consumer's own namespaces only.
    connection_secrets: bool = False


@dataclass(frozen=True, kw_only=True)
class AccessResult:
    #: Objects to apply on the provider, in order (Namespace, ServiceAccount, token Secret,
    #: ClusterRole, ClusterRoleBinding ...; the isolated placement adds the ClusterRole its
    #: per-namespace RoleBindings grant and the admission policy confining those).
    objects: list[Obj]
    namespace: str
    service_account: str
    token_secret: str
