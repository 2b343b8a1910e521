"""What the user is told about a write that failed: the reason and message of
``APIBound=False`` for a twin write the provider refused (:func:`write_failure`), or a
finalizer the consumer refused (:func:`finalizer_failure`); the Warning Event of a status
write the consumer refused (:func:`status_failure`), which no condition can tell.

The table of reasons is docs/operate.md's "Refused twin writes". A failure the next attempt
settles without a word (a write based on a stale read, the object gone meanwhile) has no
reason: None.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.kube.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    KubeError,
    NotFoundError,
    ServerError,
    TLSError,
    TooManyRequestsError,
    UnauthorizedError,
    UnreachableError,
    is_namespace_terminating,
    is_rejection,
    is_stale_write,
)
from functions.common import FINALIZER

#: ``APIBound`` reasons of a twin write the provider refused (:func:`write_failure`).
REASON_REJECTED = "ProviderRejected"
REASON_UNAUTHORIZED = "ProviderUnauthorized"
REASON_FORBIDDEN = "ProviderForbidden"
REASON_NAMESPACE_TERMINATING = "ProviderNamespaceTerminating"
REASON_NAMESPACE_NOT_FOUND = "ProviderNamespaceNotFound"
REASON_API_NOT_SERVED = "ProviderAPINotServed"
REASON_WRITE_CONFLICT = "ProviderWriteConflict"
REASON_BAD_REQUEST = "ProviderBadRequest"
REASON_THROTTLED = "ProviderThrottled"
REASON_SERVER_ERROR = "ProviderServerError"
REASON_UNREACHABLE = "ProviderUnreachable"
REASON_TLS = "ProviderTLSError"
REASON_ERROR = "ProviderError"
FAILURE_REASONS = frozenset(
    {
        REASON_REJECTED,
        REASON_UNAUTHORIZED,
        REASON_FORBIDDEN,
        REASON_NAMESPACE_TERMINATING,
        REASON_NAMESPACE_NOT_FOUND,
        REASON_API_NOT_SERVED,
        REASON_WRITE_CONFLICT,
        REASON_BAD_REQUEST,
        REASON_THROTTLED,
        REASON_SERVER_ERROR,
        REASON_UNREACHABLE,
        REASON_TLS,
        REASON_ERROR,
    }
)

#: ``APIBound`` reason when the consumer cluster refuses the connector's finalizer
#: (:func:`finalizer_failure`): a consumer-side problem, so not among FAILURE_REASONS.
REASON_FINALIZER_REFUSED = "FinalizerRefused"

#: Warning Event reason when the consumer cluster refuses the object's status write
#: (:func:`status_failure`): the conditions that would say so are what cannot be written.
REASON_STATUS_REFUSED = "StatusRefused"
#: The Normal Event of the first status write that lands after a ``StatusRefused``.
REASON_STATUS_ACCEPTED = "StatusAccepted"
STATUS_ACCEPTED_MESSAGE = (
    "The consumer cluster accepts the connector's writes of this object's status again."
)

_LEADS = {
    "create": "Creating the object in the provider failed",
    "update": "Updating the object in the provider failed",
    "delete": "Deleting the object in the provider failed",
}


@dataclass(frozen=True)
class WriteFailure:
    """What the user is told about a twin write that failed: ``APIBound``'s reason and
    message (which carries the server's own message)."""

    reason: str
    message: str


def write_failure(error: BaseException, *, action: str) -> WriteFailure | None:
    """The reason and message for a failed twin ``action`` (create, update, delete); None
    for a failure the next attempt settles without a word (a write based on a stale read,
    the twin gone meanwhile) and for anything that is not an API answer (a bug: it is raised
    and logged with its traceback)."""
    if not isinstance(error, KubeError):
        return None
    if is_rejection(error):
        return WriteFailure(REASON_REJECTED, f"The provider rejected the object: {error}")
    lead = _LEADS[action]
    reason, why = _classified(error)
    if reason is None:
        return None
    return WriteFailure(reason, f"{lead}: {why}{error}")


def finalizer_failure(error: BaseException) -> WriteFailure | None:
    """The reason and message for a refused finalizer write on the consumer object; None
    for what the next attempt settles without a word (a stale read, the object gone) and
    for anything that is not an API answer (raised and logged with its traceback)."""
    if not isinstance(error, KubeError) or is_stale_write(error):
        return None
    if isinstance(error, NotFoundError) and error.object_missing:
        return None
    return WriteFailure(
        REASON_FINALIZER_REFUSED,
        f"The consumer cluster refused the finalizer {FINALIZER} on this object, retried "
        "with backoff; until it lands, deleting the object does not wait for its provider "
        f"twin, which the collector of orphaned twins deletes afterwards: {error}",
    )


def status_failure(error: BaseException) -> WriteFailure | None:
    """The reason and message for a refused write of the consumer object's status; None for
    what the next attempt settles without a word (a stale read, the object gone), for a
    consumer that did not answer (its Events could not be written either; the connection
    to it is what the logs and ``/readyz`` report), and for anything that is not an API
    answer (raised and logged with its traceback)."""
    if not isinstance(error, KubeError) or isinstance(error, UnreachableError | TLSError):
        return None
    if is_stale_write(error):
        return None
    if isinstance(error, NotFoundError) and error.object_missing:
        return None
    return WriteFailure(
        REASON_STATUS_REFUSED,
        "The consumer cluster refused the connector's write of this object's status, "
        "retried with backoff; until it lands, its conditions (APIBound among them) are out "
        f"of date: {error}",
    )


def _classified(error: KubeError) -> tuple[str | None, str]:  # noqa: PLR0911 - a table: one return per error class
    """The reason for ``error`` and what to say before the server's message."""
    if isinstance(error, UnauthorizedError):
        return REASON_UNAUTHORIZED, "the provider did not accept the connection's credentials: "
    if is_namespace_terminating(error):
        return REASON_NAMESPACE_TERMINATING, (
            "its namespace is being deleted in the provider (retried until it is gone, then "
            "created again): "
        )
    if isinstance(error, ForbiddenError):
        return REASON_FORBIDDEN, ""
    if isinstance(error, NotFoundError):
        namespace = error.missing_namespace
        if namespace is not None:
            return REASON_NAMESPACE_NOT_FOUND, (
                f"the namespace {namespace} does not exist in the provider (it is created "
                "again on the next attempt): "
            )
        if error.object_missing:
            return None, ""  # the twin went away meanwhile: the next pass sees it gone
        return REASON_API_NOT_SERVED, "the provider does not serve the object's API: "
    if isinstance(error, ConflictError):
        return (None, "") if is_stale_write(error) else (REASON_WRITE_CONFLICT, "")
    if isinstance(error, TooManyRequestsError):
        return REASON_THROTTLED, "the provider kept throttling the connector: "
    if isinstance(error, ServerError):
        return REASON_SERVER_ERROR, f"the provider answered HTTP {error.status}: "
    if isinstance(error, UnreachableError):
        return REASON_UNREACHABLE, f"no answer from the provider ({error.cause}): "
    if isinstance(error, TLSError):
        return REASON_TLS, ""
    if isinstance(error, BadRequestError):
        return REASON_BAD_REQUEST, ""
    return REASON_ERROR, ""
