"""Object-syncer stage: a consumer object + its provider twin → writes, status, finalizer."""

from functions.object_syncer.generations import consumer_generation, consumer_terms
from functions.object_syncer.logic import (
    ORPHAN_COLLECT,
    ORPHAN_DELETING,
    ORPHAN_KEEP,
    ORPHAN_NO_ORIGIN,
    ORPHAN_NOT_OURS,
    REASON_ADOPTING,
    REASON_BOUND,
    REASON_CONFLICT,
    REASON_DELETING,
    REASON_PENDING,
    REASON_SYNCING,
    desired_twin,
    orphan_verdict,
    sync,
)
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult

__all__ = [
    "ORPHAN_COLLECT",
    "ORPHAN_DELETING",
    "ORPHAN_KEEP",
    "ORPHAN_NOT_OURS",
    "ORPHAN_NO_ORIGIN",
    "REASON_ADOPTING",
    "REASON_BOUND",
    "REASON_CONFLICT",
    "REASON_DELETING",
    "REASON_PENDING",
    "REASON_SYNCING",
    "Adoption",
    "SyncRequest",
    "SyncResult",
    "consumer_generation",
    "consumer_terms",
    "desired_twin",
    "orphan_verdict",
    "sync",
]
