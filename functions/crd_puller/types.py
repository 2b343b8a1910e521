"""Input and output of the CRD-puller stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from functions.common.conditions import Condition
from functions.common.objects import Obj


@dataclass(frozen=True, kw_only=True)
class ProviderError:
    """Why the orchestrator could not read the provider; becomes the Ready condition."""

    #: e.g. ``SecretNotFound``, ``InvalidKubeconfig``, ``Unauthorized``, ``ProviderUnreachable``,
    #: ``TLSError``.
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class PullRequest:
    connection_name: str
    #: Every CRD observed in the provider; the stage selects the bindable ones.
    provider_crds: list[Obj]
    #: Consumer CRDs that share a name with a provider CRD or carry this connection's label.
    consumer_crds: list[Obj]
    #: ``spec.crdManagement.pullBehavior``: ``Pull`` installs CRDs in the consumer.
    pull_behavior: str = "Pull"
    #: Set when the provider could not be read; the other provider inputs are then ignored.
    provider_error: ProviderError | None = None
    #: The connection's current ``status.conditions``, so transition times are kept.
    previous_conditions: list[Condition] = field(default_factory=list)
    #: RFC 3339 time used for new condition transitions.
    now: str


@dataclass(frozen=True, kw_only=True)
class OfferedAPI:
    """One bindable API, as listed in ``ClusterConnection.status.offeredAPIs``."""

    name: str  # the CRD name, <plural>.<group>
    group: str
    kind: str
    plural: str
    scope: str  # Namespaced | Cluster
    versions: list[str]  # served versions
    storage_version: str

    def to_status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "kind": self.kind,
            "plural": self.plural,
            "scope": self.scope,
            "versions": list(self.versions),
            "storageVersion": self.storage_version,
        }

    @classmethod
    def from_status(cls, data: dict[str, Any]) -> OfferedAPI:
        return cls(
            name=str(data["name"]),
            group=str(data["group"]),
            kind=str(data["kind"]),
            plural=str(data["plural"]),
            scope=str(data.get("scope", "Namespaced")),
            versions=[str(v) for v in data.get("versions", [])],
            storage_version=str(data.get("storageVersion", "")),
        )


@dataclass(frozen=True, kw_only=True)
class WithheldAPI:
    """A bindable CRD that is not offered, as listed in ``status.withheldAPIs``: a CRD that
    Crossplane generated from an XRD whose offer (``connect.upbound.io/offer``, or the
    default) leaves it out, e.g. the composite resource of an XRD that offers its claim."""

    name: str  # the CRD name, <plural>.<group>
    group: str
    #: Why it is not offered, and how to offer it.
    message: str

    def to_status(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "message": self.message}

    @classmethod
    def from_status(cls, data: dict[str, Any]) -> WithheldAPI:
        return cls(
            name=str(data["name"]),
            group=str(data.get("group", "")),
            message=str(data.get("message", "")),
        )


@dataclass(frozen=True, kw_only=True)
class CRDConflict:
    name: str
    message: str


@dataclass(frozen=True, kw_only=True)
class PullResult:
    #: Consumer CRDs to create or update (full desired objects); only those that differ.
    apply: list[Obj]
    offered: list[OfferedAPI]
    #: Consumer CRDs of the same name that this connection does not own; never overwritten.
    conflicts: list[CRDConflict]
    #: The connection's new ``status.conditions``.
    conditions: list[Condition]
    #: Bindable CRDs that are not offered, and why; neither applied nor offered.
    withheld: list[WithheldAPI] = field(default_factory=list)
