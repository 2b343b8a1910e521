"""CRD-puller stage: provider CRDs → consumer CRDs, offered APIs, connection conditions."""

from functions.crd_puller.logic import (
    READY_MESSAGE,
    REASON_CONFLICT,
    REASON_PULL_DISABLED,
    REASON_READY,
    REASON_SYNCED,
    XRDPart,
    crd_in_sync,
    desired_consumer_crd,
    pull,
    xrd_part,
)
from functions.crd_puller.types import (
    CRDConflict,
    OfferedAPI,
    ProviderError,
    PullRequest,
    PullResult,
    WithheldAPI,
)

__all__ = [
    "READY_MESSAGE",
    "REASON_CONFLICT",
    "REASON_PULL_DISABLED",
    "REASON_READY",
    "REASON_SYNCED",
    "CRDConflict",
    "OfferedAPI",
    "ProviderError",
    "PullRequest",
    "PullResult",
    "WithheldAPI",
    "XRDPart",
    "crd_in_sync",
    "desired_consumer_crd",
    "pull",
    "xrd_part",
]
