"""Input and output of the binder stage."""

from __future__ import annotations

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


@dataclass(frozen=True, kw_only=True)
class AccessResult:
    #: Objects to apply on the provider, in order (Namespace, ServiceAccount, token Secret,
    #: ClusterRole, ClusterRoleBinding ...).
    objects: list[Obj]
    namespace: str
    service_account: str
    token_secret: str
