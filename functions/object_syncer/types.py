"""Input and output of the object-syncer stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.common.api import ADOPTION_ADOPT_MANAGED
from functions.common.objects import Obj


@dataclass(frozen=True, kw_only=True)
class Adoption:
    """A connection's opt-in (``spec.adoption.policy: AdoptManaged``) to adopt provider
    objects another connector created: labelled ``connect.upbound.io/managed=true``, claimed
    by no consumer cluster's origin labels."""

    #: Labels an adoptable object must carry as well (``spec.adoption.matchLabels``).
    match_labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_connection(cls, connection: Obj | None) -> Adoption | None:
        """A ClusterConnection's opt-in; None unless ``spec.adoption.policy`` is
        ``AdoptManaged`` (the default is ``Never``)."""
        spec = (connection or {}).get("spec")
        adoption = spec.get("adoption") if isinstance(spec, dict) else None
        if not isinstance(adoption, dict) or adoption.get("policy") != ADOPTION_ADOPT_MANAGED:
            return None
        labels = adoption.get("matchLabels")
        return cls(
            match_labels={
                str(k): str(v) for k, v in (labels.items() if isinstance(labels, dict) else ())
            }
        )


@dataclass(frozen=True, kw_only=True)
class SyncRequest:
    #: The consumer object as observed.
    consumer: Obj
    #: Its provider twin as observed (same apiVersion, kind, namespace, name), or None.
    provider: Obj | None
    #: This consumer cluster's identity (``consumerClusterDisplayName``).
    consumer_cluster: str
    now: str
    #: The connection's adoption opt-in; None: a twin that is not ours is never written.
    adoption: Adoption | None = None
    #: The connection's placement of twins (``functions.common.placement``): ``Default``
    #: (the consumer object's namespace) or ``Isolated`` (a namespace of this consumer's).
    placement: str = "Default"


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    #: The desired twin, for server-side apply; None: nothing to write.
    provider_apply: Obj | None = None
    #: Delete the twin (the consumer object is being deleted and not orphaned).
    provider_delete: bool = False
    #: The whole status to write to the consumer's status subresource; None: unchanged.
    consumer_status: Obj | None = None
    add_finalizer: bool = False
    remove_finalizer: bool = False
    #: Set when the twin belongs to another consumer or to nobody; it is never overwritten.
    conflict: str | None = None
    #: The twin is another connector's and is adopted: ``provider_apply`` labels it as ours.
    #: The orchestrator first hands the fields that connector owns over to our apply.
    adopted: bool = False
