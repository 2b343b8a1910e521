"""Binder stage: a binding + offered APIs → what to sync; per-consumer access on the provider."""

from functions.binder.logic import (
    REASON_BOUND,
    REASON_CONNECTION_NOT_FOUND,
    REASON_CONNECTION_NOT_READY,
    REASON_INVALID_BINDING,
    REASON_NOT_OFFERED,
    bind,
    bound_resource,
    provider_access,
)
from functions.binder.types import (
    AccessRequest,
    AccessResult,
    BindRequest,
    BindResult,
    BoundResource,
)

__all__ = [
    "REASON_BOUND",
    "REASON_CONNECTION_NOT_FOUND",
    "REASON_CONNECTION_NOT_READY",
    "REASON_INVALID_BINDING",
    "REASON_NOT_OFFERED",
    "AccessRequest",
    "AccessResult",
    "BindRequest",
    "BindResult",
    "BoundResource",
    "bind",
    "bound_resource",
    "provider_access",
]
