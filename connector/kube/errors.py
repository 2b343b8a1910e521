"""The client layer's errors: one class per HTTP status a caller acts on differently.

Long because the tree and its classifications (by status, reason and the Status details,
never by message text) are one vocabulary that every caller matches against.

The tree::

    KubeError                   base: .status (HTTP code or None), .reason, .message, .details
    ├── BadRequestError         400  malformed request (a bug on our side, or a bad patch)
    ├── UnauthorizedError       401  credentials missing, wrong or expired
    ├── ForbiddenError          403  the identity lacks RBAC for the verb
    ├── NotFoundError           404  the object does not exist, or its API is not served
    │                                (.object_missing tells which)
    ├── ConflictError           409  already exists, or a stale resourceVersion/uid
    ├── GoneError               410  resourceVersion (or continue token) too old: relist
    ├── InvalidError            422  rejected by validation; .causes, and the causes in .message
    ├── TooManyRequestsError    429  throttled by the server; .retry_after seconds (or None)
    ├── ServerError             5xx  the server failed; retry with backoff
    ├── UnreachableError        no HTTP answer: connection refused, timeout, DNS, reset;
    │                           .cause says which in a few words
    ├── TLSError                the server's certificate failed verification (never bypassed)
    └── ConfigError             a kubeconfig or robot-token credential cannot be used
                                (defined in ``connector.kube.config``)

``is_rejection(error)`` tells a refusal of the object itself (validation, admission) from a
refusal of the request or of the identity making it; ``is_namespace_terminating(error)`` a
write refused because its namespace is being deleted; ``is_stale_write(error)`` a write
conditional on a resourceVersion (or uid) that another write overtook, which a retry from a
fresh read settles; ``NotFoundError.missing_namespace`` names a namespace that does not exist.

Every error raised by the client is chained (``raise ... from e``) to the exception of the
underlying library, so tracebacks keep the transport detail while callers only catch ours.
Messages never contain credentials.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

__all__ = [
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "KubeError",
    "NotFoundError",
    "ServerError",
    "TLSError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnreachableError",
    "error_from_api_exception",
    "error_from_response",
    "error_from_status",
    "error_from_transport",
    "is_namespace_terminating",
    "is_rejection",
    "is_stale_write",
]


class KubeError(Exception):
    """Base of every error the client layer raises.

    ``status`` is the HTTP status code (``None`` when no HTTP answer was received),
    ``reason`` the machine-readable reason of the server's ``Status`` (e.g. ``NotFound``,
    ``AlreadyExists``, ``Expired``) or of the transport failure, ``message`` a sentence a
    user can read. ``retry_after`` is the server's ``Retry-After`` in seconds, if it sent one.
    ``details`` is the ``details`` of the server's ``Status`` (``kind``, ``name``, ``group``,
    ``causes``), empty when the answer carried none.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.details: Mapping[str, Any] = details or {}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )


class BadRequestError(KubeError):
    """400: the server could not understand the request."""


class UnauthorizedError(KubeError):
    """401: the credentials were not accepted."""


class ForbiddenError(KubeError):
    """403: the identity is not allowed to do this."""


class NotFoundError(KubeError):
    """404: the object, its namespace or its API does not exist.

    :attr:`object_missing` tells "this object does not exist" from "this URL is not served".
    """

    @property
    def object_missing(self) -> bool:
        """Whether the server said that a named object does not exist.

        The API server answers a missing object with a ``Status`` of reason ``NotFound`` whose
        ``details`` name the object (and its resource). A group, version or resource it does not
        serve (a CRD not installed, an API switched off) is a 404 that names no object: a
        ``Status`` without ``details.name``, or no ``Status`` at all. So is a list of such a
        resource. The answer is about the request's URL only: creating an object in a missing
        namespace names the namespace, which is missing too.
        """
        return self.reason == "NotFound" and bool(self.details.get("name"))

    @property
    def missing_namespace(self) -> str | None:
        """The namespace the server said does not exist, if that is what it said.

        Writing an object into a namespace that does not exist is answered with the
        namespace's own ``NotFound`` (``details.kind`` ``namespaces``), not the object's.
        """
        if self.object_missing and self.details.get("kind") == "namespaces":
            return str(self.details["name"])
        return None


class ConflictError(KubeError):
    """409: the object already exists, or the write was based on a stale version."""


#: The Status cause of a write into a namespace being deleted (``v1.NamespaceTerminatingCause``).
_NAMESPACE_TERMINATING = "NamespaceTerminating"
#: The Status cause of a server-side apply that conflicts with another field manager.
_FIELD_MANAGER_CONFLICT = "FieldManagerConflict"


def _cause_reasons(error: KubeError) -> set[str]:
    causes = error.details.get("causes")
    if not isinstance(causes, list):
        return set()
    return {str(c.get("reason") or "") for c in causes if isinstance(c, Mapping)}


def is_namespace_terminating(error: BaseException) -> bool:
    """Whether a write was refused because its namespace is being deleted: a 403 whose
    Status names the cause ``NamespaceTerminating`` (the NamespaceLifecycle admission)."""
    return isinstance(error, ForbiddenError) and _NAMESPACE_TERMINATING in _cause_reasons(error)


def is_stale_write(error: BaseException) -> bool:
    """Whether a write was refused only because it was based on an older version of the
    object: a 409 of reason ``Conflict`` ("the object has been modified") to a write
    conditional on a resourceVersion or uid. A retry from a fresh read settles it.

    Not stale: ``AlreadyExists``, and a server-side apply's conflict with another field
    manager (a cause ``FieldManagerConflict``), which a retry repeats.
    """
    return (
        isinstance(error, ConflictError)
        and error.reason == "Conflict"
        and _FIELD_MANAGER_CONFLICT not in _cause_reasons(error)
    )


class GoneError(KubeError):
    """410: the requested resourceVersion is no longer available; list again."""


class InvalidError(KubeError):
    """422: the object failed validation. ``causes`` lists the server's field errors."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 422,
        reason: str = "Invalid",
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
        causes: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            message, status=status, reason=reason, retry_after=retry_after, details=details
        )
        self.causes: list[dict[str, Any]] = causes or []


#: How the API server words a denial by an admission webhook (``webhook/errors.ToStatusErr``
#: in k8s.io/apiserver). The webhook chooses the code (400 when it gives none) and the
#: reason, so the message is the one mark such a denial always carries.
_WEBHOOK_DENIAL = re.compile(r'admission webhook "[^"]*" denied the request')
#: How it words a ValidatingAdmissionPolicy's denial, which it also lists as a cause.
_POLICY_DENIAL = re.compile(r"ValidatingAdmissionPolicy '[^']*' (with binding '[^']*' )?denied")


def is_rejection(error: BaseException) -> bool:
    """Whether the server refused the object itself, for its content, rather than the
    request or the identity making it: writing the same object again cannot succeed.

    - 422 ``Invalid``: the schema or a validation rule of the API, or an admission policy or
      webhook that answered so;
    - 400 or 403 from an admission webhook (the message the server gives every webhook
      denial);
    - 403 from a ValidatingAdmissionPolicy whose reason is not ``Invalid``: the Status'
      ``details.causes`` carry the policy's message. An RBAC denial is a 403 too, but
      without causes, and a namespace being deleted names its own cause
      (``NamespaceTerminating``): neither is a rejection.
    """
    if isinstance(error, InvalidError):
        return True
    if not isinstance(error, BadRequestError | ForbiddenError):
        return False
    if _WEBHOOK_DENIAL.match(error.message):
        return True
    causes = error.details.get("causes")
    return (
        isinstance(error, ForbiddenError)
        and isinstance(causes, list)
        and any(
            isinstance(cause, Mapping) and _POLICY_DENIAL.match(str(cause.get("message") or ""))
            for cause in causes
        )
    )


class TooManyRequestsError(KubeError):
    """429: the server throttled us; wait ``retry_after`` seconds (if given) before retrying."""


class ServerError(KubeError):
    """5xx: the server failed to handle the request."""


class UnreachableError(KubeError):
    """No HTTP answer: the connection was refused, timed out, reset, or the name did not resolve.

    ``cause`` says which in a few words a user can act on: ``connection refused``, ``the host
    name does not resolve``, ``timed out``, or else the message.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(
            message, status=status, reason=reason, retry_after=retry_after, details=details
        )
        self.cause = cause or message.rstrip(".")


class TLSError(KubeError):
    """The server's TLS certificate could not be verified. The client never retries insecurely."""


_BY_STATUS: dict[int, type[KubeError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
    429: TooManyRequestsError,
}


def _parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP date is allowed by RFC 9110 but the API server only ever sends seconds.
        return None


def error_from_status(
    status_obj: Mapping[str, Any],
    *,
    http_status: int | None = None,
    retry_after: float | None = None,
) -> KubeError:
    """Build the error for a Kubernetes ``Status`` object (a response body or a watch ERROR).

    ``http_status`` wins over the Status' own ``code`` when both are known.
    """
    code_value = status_obj.get("code")
    code = http_status if http_status is not None else code_value
    if not isinstance(code, int):
        code = None
    reason = str(status_obj.get("reason") or "")
    message = str(status_obj.get("message") or "") or (
        f"The API server answered HTTP {code} ({reason or 'no reason given'})."
    )
    raw_details = status_obj.get("details")
    details: Mapping[str, Any] = raw_details if isinstance(raw_details, Mapping) else {}
    causes: list[dict[str, Any]] = []
    if details:
        raw_causes = details.get("causes")
        if isinstance(raw_causes, list):
            causes = [c for c in raw_causes if isinstance(c, dict)]
    if causes:
        # The API server usually folds the causes into the message already; add the ones it
        # did not, so a user sees every field error in one line.
        missing = [
            f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
            for c in causes
            if str(c.get("message", "")) not in message
        ]
        if missing:
            message = f"{message} ({'; '.join(missing)})"
    cls: type[KubeError]
    if code is None:
        cls = KubeError
    elif code in _BY_STATUS:
        cls = _BY_STATUS[code]
    elif code >= 500:
        cls = ServerError
    else:
        cls = KubeError
    if cls is InvalidError:
        return InvalidError(
            message,
            status=code,
            reason=reason,
            retry_after=retry_after,
            details=details,
            causes=causes,
        )
    return cls(message, status=code, reason=reason, retry_after=retry_after, details=details)


def error_from_response(
    http_status: int,
    body: bytes | str | None,
    *,
    headers: Mapping[str, str] | None = None,
    http_reason: str | None = None,
) -> KubeError:
    """Build the error for a non-2xx HTTP response whose body may be a ``Status``."""
    retry_after = _parse_retry_after(headers)
    status_obj: Any = None
    if body:
        try:
            status_obj = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            status_obj = None
    if not isinstance(status_obj, Mapping):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
        text = text.strip()[:300]
        reason_text = http_reason or "no reason given"
        message = f"The API server answered HTTP {http_status} ({reason_text})"
        message = f"{message}: {text}" if text else f"{message}."
        status_obj = {"reason": http_reason or "", "message": message}
    return error_from_status(status_obj, http_status=http_status, retry_after=retry_after)


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and what it wraps: causes, contexts, and the reason of a ``MaxRetryError``."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        else:
            exc = exc.__cause__ or exc.__context__
    return chain


def _is_certificate_failure(exc: BaseException | None) -> bool:
    return any(isinstance(e, ssl.SSLError | urllib3.exceptions.SSLError) for e in _chain(exc))


def _short_cause(exc: BaseException) -> str:
    """Why no answer came, in a few words; empty when the chain does not say."""
    chain = _chain(exc)
    # urllib3's NewConnectionError is also a ConnectTimeoutError: look for the OS error first.
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
        return "the host name does not resolve"
    if any(isinstance(e, TimeoutError | urllib3.exceptions.TimeoutError) for e in chain):
        return "timed out"
    return ""


_VERIFY_FAILED = re.compile(r"certificate verify failed: (.+?)(?:\.?\s*\(_ssl\.c:\d+\)|\"\)|'\)|$)")


def _tls_message(server: str, detail: str) -> str:
    # urllib3 nests the SSL error inside its own message; keep the innermost reason.
    match = _VERIFY_FAILED.search(detail)
    if match:
        detail = f"certificate verify failed: {match.group(1).strip()}"
    return (
        f"TLS verification of the API server {server} failed: {detail}. The server's "
        "certificate is not trusted by the configured certificate authority (check the "
        "connection's CA data and server address); the connector never falls back to an "
        "insecure connection."
    )


def error_from_transport(exc: BaseException, *, server: str) -> KubeError:
    """Build the error for a request that got no HTTP answer (``server`` names the target)."""
    if _is_certificate_failure(exc):
        detail = _first_line(exc)
        return TLSError(_tls_message(server, detail), reason="CertificateVerificationFailed")
    cause = _short_cause(exc)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return UnreachableError(
            f"The API server {server} did not answer in time: {_first_line(exc)}.",
            reason="Timeout",
            cause=cause,
        )
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return UnreachableError(
            f"The API server {server} could not be resolved: {_first_line(exc)}.",
            reason="NameResolution",
            cause=cause,
        )
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return UnreachableError(
            f"The API server {server} could not be reached: {_first_line(exc)}.",
            reason="ConnectionFailed",
            cause=cause,
        )
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return UnreachableError(
            f"Connecting to the API server {server} timed out: {_first_line(exc)}.",
            reason="Timeout",
            cause=cause,
        )
    return UnreachableError(
        f"The connection to the API server {server} failed: {_first_line(exc)}.",
        reason="ConnectionFailed",
        cause=cause,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return _tidy(text.splitlines()[0])


def _tidy(detail: str) -> str:
    # Library messages wrap the useful part: "HTTPSConnection(host=..., port=...): Failed to
    # establish a new connection: [Errno 111] Connection refused", "[SSL: X] reason (_ssl.c:1)".
    detail = re.sub(r"^\[SSL: [A-Z_]+\] ", "", detail.strip())
    detail = re.sub(r" \(_ssl\.c:\d+\)", "", detail)
    detail = re.sub(r"^\w+Connection\(host=[^)]*\): ", "", detail)
    return detail.rstrip(".")


def error_from_api_exception(e: ApiException, *, server: str = "") -> KubeError:
    """Translate a ``kubernetes.client`` ``ApiException`` into our tree.

    The generated client reports a TLS failure as status 0 with an ``SSLError`` reason; that
    becomes a :class:`TLSError`. Callers should ``raise error_from_api_exception(e) from e``.
    """
    status = e.status
    if not status:
        reason_text = str(e.reason or "")
        server_name = server or "(unknown server)"
        if "SSLError" in reason_text or _is_certificate_failure(e):
            lines = [line for line in reason_text.splitlines() if line.strip() != "SSLError"]
            detail = _tidy(lines[0]) if lines else "certificate not trusted"
            return TLSError(
                _tls_message(server_name, detail),
                reason="CertificateVerificationFailed",
            )
        return UnreachableError(
            f"The API server {server_name} gave no answer: {reason_text or 'unknown error'}.",
            reason="ConnectionFailed",
            cause=_short_cause(e),
        )
    headers = e.headers if isinstance(e.headers, Mapping) else None
    return error_from_response(status, e.body, headers=headers, http_reason=e.reason)
