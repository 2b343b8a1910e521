"""The client layer's error classification: which class, and what a caller can tell from it."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import pytest
import urllib3.exceptions

from connector.kube.errors import (
    ConflictError,
    InvalidError,
    KubeError,
    NotFoundError,
    ServerError,
    UnreachableError,
    error_from_response,
    error_from_transport,
    is_namespace_terminating,
    is_stale_write,
)


def status(code: int, reason: str, message: str, **details: Any) -> bytes:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return json.dumps(body).encode()


@dataclass(frozen=True)
class NotFoundCase:
    reason: str
    body: bytes
    http_reason: str
    object_missing: bool


@pytest.mark.parametrize(
    "case",
    [
        NotFoundCase(
            "a missing object: the Status names it",
            status(404, "NotFound", 'secrets "x" not found', name="x", kind="secrets"),
            "Not Found",
            True,
        ),
        NotFoundCase(
            "a missing custom object names its group too",
            status(
                404,
                "NotFound",
                'clusterconnections.connect.upbound.io "c" not found',
                name="c",
                group="connect.upbound.io",
                kind="clusterconnections",
            ),
            "Not Found",
            True,
        ),
        NotFoundCase(
            "a resource the group version does not serve: a Status without a name",
            status(404, "NotFound", "the server could not find the requested resource"),
            "Not Found",
            False,
        ),
        NotFoundCase(
            "a group or version not served at all: no Status, a plain-text page",
            b"404 page not found\n",
            "Not Found",
            False,
        ),
        NotFoundCase(
            "the same message text is not taken for a name",
            status(404, "NotFound", 'the object "x" could not be found'),
            "Not Found",
            False,
        ),
    ],
    ids=lambda c: c.reason,
)
def test_not_found_tells_a_missing_object_from_an_api_not_served(case: NotFoundCase) -> None:
    error = error_from_response(404, case.body, http_reason=case.http_reason)
    assert isinstance(error, NotFoundError), case.reason
    assert error.object_missing is case.object_missing, case.reason


@dataclass(frozen=True)
class ClassCase:
    reason: str
    code: int
    body: bytes
    want: type[KubeError]


@pytest.mark.parametrize(
    "case",
    [
        ClassCase(
            "409 AlreadyExists",
            409,
            status(409, "AlreadyExists", 'secrets "x" already exists', name="x", kind="secrets"),
            ConflictError,
        ),
        ClassCase("422 with causes", 422, status(422, "Invalid", "bad", causes=[]), InvalidError),
        ClassCase("503 without a body", 503, b"", ServerError),
    ],
    ids=lambda c: c.reason,
)
def test_the_class_follows_the_http_status_and_keeps_the_details(case: ClassCase) -> None:
    error = error_from_response(case.code, case.body)
    assert type(error) is case.want, case.reason
    if case.body:
        assert error.details == json.loads(case.body).get("details", {}), case.reason


def refused() -> BaseException:
    wrapped = urllib3.exceptions.NewConnectionError(None, "Failed to establish")  # type: ignore[arg-type]
    wrapped.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return wrapped


@dataclass(frozen=True)
class CauseCase:
    reason: str
    exc: BaseException
    want: str


@pytest.mark.parametrize(
    "case",
    [
        CauseCase(
            "a refused connection, although urllib3's class is also a connect timeout",
            refused(),
            "connection refused",
        ),
        CauseCase(
            "behind urllib3's retry error",
            urllib3.exceptions.MaxRetryError(None, "/", refused()),  # type: ignore[arg-type]
            "connection refused",
        ),
        CauseCase(
            "a name that does not resolve",
            urllib3.exceptions.NameResolutionError(
                "nowhere.invalid",
                None,  # type: ignore[arg-type]
                socket.gaierror(-2, "Name or service not known"),
            ),
            "the host name does not resolve",
        ),
        CauseCase(
            "a read timeout",
            urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."),  # type: ignore[arg-type]
            "timed out",
        ),
        CauseCase(
            "anything else: the message",
            urllib3.exceptions.ProtocolError("Connection aborted."),
            "The connection to the API server https://k failed: Connection aborted",
        ),
    ],
    ids=lambda c: c.reason,
)
def test_unreachable_says_why_in_a_few_words(case: CauseCase) -> None:
    error = error_from_transport(case.exc, server="https://k")
    assert isinstance(error, UnreachableError), case.reason
    assert error.cause == case.want, case.reason


@dataclass(frozen=True)
class WriteErrorCase:
    reason: str
    code: int
    body: bytes
    terminating: bool = False
    stale: bool = False
    missing_namespace: str | None = None


WRITE_ERROR_CASES = [
    WriteErrorCase(
        "a namespace being deleted names its cause",
        403,
        status(
            403,
            "Forbidden",
            'nopresources "x" is forbidden: unable to create new content in namespace team-a '
            "because it is being terminated",
            causes=[{"reason": "NamespaceTerminating", "field": "metadata.namespace"}],
        ),
        terminating=True,
    ),
    WriteErrorCase(
        "RBAC's 403 has no such cause, whatever its message says",
        403,
        status(
            403,
            "Forbidden",
            'User "u" cannot create resource "x" in the namespace "because it is being terminated"',
        ),
    ),
    WriteErrorCase(
        "a write based on a stale resourceVersion",
        409,
        status(409, "Conflict", "Operation cannot be fulfilled: the object has been modified"),
        stale=True,
    ),
    WriteErrorCase(
        "a server-side apply conflict with another manager is not stale: a retry repeats it",
        409,
        status(
            409,
            "Conflict",
            "Apply failed with 1 conflict",
            causes=[{"reason": "FieldManagerConflict", "field": ".spec.x"}],
        ),
    ),
    WriteErrorCase(
        "an object that exists already is not stale",
        409,
        status(409, "AlreadyExists", 'nopresources "x" already exists', name="x"),
    ),
    WriteErrorCase(
        "a write into a missing namespace names the namespace",
        404,
        status(404, "NotFound", 'namespaces "team-a" not found', name="team-a", kind="namespaces"),
        missing_namespace="team-a",
    ),
    WriteErrorCase(
        "a missing object is not a missing namespace",
        404,
        status(404, "NotFound", 'nopresources "x" not found', name="x", kind="nopresources"),
    ),
    WriteErrorCase(
        "an API not served names nothing",
        404,
        status(404, "NotFound", "the server could not find the requested resource"),
    ),
]


@pytest.mark.parametrize("case", WRITE_ERROR_CASES, ids=[c.reason for c in WRITE_ERROR_CASES])
def test_why_a_write_failed_is_told_by_status_reason_and_causes(case: WriteErrorCase) -> None:
    error = error_from_response(case.code, case.body)
    got = (
        is_namespace_terminating(error),
        is_stale_write(error),
        error.missing_namespace if isinstance(error, NotFoundError) else None,
    )
    want = (case.terminating, case.stale, case.missing_namespace)
    assert got == want, f"-want {want}, +got {got}"
