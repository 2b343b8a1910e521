"""Object-syncer stage: a consumer object + its provider twin → writes, status, finalizer."""

from functions.object_syncer.logic import (
    REASON_ADOPTING,
    REASON_BOUND,
    REASON_CONFLICT,
    REASON_DELETING,
    REASON_PENDING,
    REASON_SYNCING,
    consumer_generation,
    consumer_terms,
    desired_twin,
    sync,
)
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult

__all__ = [
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
    "sync",
]
