"""is_rejection: which answers of the API server refuse the object itself.

The bodies are what kube-apiserver sends (its ``Status`` for validation, for RBAC, for a
namespace being deleted, and the wording of ``webhook/errors.ToStatusErr`` and of the
ValidatingAdmissionPolicy dispatcher), decoded by the client's own ``error_from_response``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from connector.kube.errors import UnreachableError, error_from_response, is_rejection

OBJ = 'nopresources.nop.example.org "x"'
POLICY = "ValidatingAdmissionPolicy 'no-forbidden' with binding 'no-forbidden' denied request"


def status(code: int, reason: str, message: str, **details: Any) -> bytes:
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "code": code}
    body.update(reason=reason, message=message)
    if details:
        body["details"] = details
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Case:
    reason: str
    code: int
    body: bytes
    want: bool


CASES = [
    Case(
        "the API's schema refuses a field",
        422,
        status(
            422,
            "Invalid",
            f"{OBJ} is invalid: spec.size: Invalid value: 11: must be <= 10",
            causes=[{"reason": "FieldValueInvalid", "field": "spec.size", "message": "..."}],
        ),
        True,
    ),
    Case(
        "an admission policy denies with its default reason (Invalid)",
        422,
        status(
            422,
            "Invalid",
            f"{OBJ} is forbidden: {POLICY}: coolField must not be 'forbidden'",
            causes=[{"message": f"{POLICY}: coolField must not be 'forbidden'"}],
        ),
        True,
    ),
    Case(
        "an admission policy denies with reason Forbidden",
        403,
        status(
            403,
            "Forbidden",
            f"{OBJ} is forbidden: {POLICY}: coolField must not be 'forbidden'",
            name="x",
            group="nop.example.org",
            kind="nopresources",
            causes=[{"message": f"{POLICY}: coolField must not be 'forbidden'"}],
        ),
        True,
    ),
    Case(
        "a webhook denies without a code: 400, no reason",
        400,
        status(400, "", 'admission webhook "owners.example.com" denied the request: no owner'),
        True,
    ),
    Case(
        "a webhook denies with 403",
        403,
        status(403, "Forbidden", 'admission webhook "owners.example.com" denied the request: no'),
        True,
    ),
    Case(
        "a webhook denies without explanation",
        400,
        status(400, "", 'admission webhook "w.example.com" denied the request without explanation'),
        True,
    ),
    Case(
        "RBAC denies the identity, even in a namespace named like admission",
        403,
        status(
            403,
            "Forbidden",
            f'{OBJ} is forbidden: User "consumer" cannot create resource "nopresources" in API '
            'group "nop.example.org" in the namespace "admission-webhook-denied-the-request"',
            name="x",
            group="nop.example.org",
            kind="nopresources",
        ),
        False,
    ),
    Case(
        "the namespace is being deleted",
        403,
        status(
            403,
            "Forbidden",
            f"{OBJ} is forbidden: unable to create new content in namespace team-a because it is "
            "being terminated",
            causes=[
                {
                    "reason": "NamespaceTerminating",
                    "field": "metadata.namespace",
                    "message": "namespace team-a is being terminated",
                }
            ],
        ),
        False,
    ),
    Case(
        "a malformed request is our bug, not the object's",
        400,
        status(400, "BadRequest", "the body of the request was in an unknown format"),
        False,
    ),
    Case(
        "a webhook that cannot be called fails the request, not the object",
        500,
        status(
            500,
            "InternalError",
            'Internal error occurred: failed calling webhook "owners.example.com": connection '
            "refused",
        ),
        False,
    ),
    Case(
        "an object of that name exists",
        409,
        status(409, "AlreadyExists", f"{OBJ} already exists"),
        False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_a_rejection_is_told_by_status_reason_and_details(case: Case) -> None:
    error = error_from_response(case.code, case.body)
    assert is_rejection(error) is case.want, f"-want {case.want}, +got {not case.want}: {error!r}"


def test_no_answer_is_no_rejection() -> None:
    assert not is_rejection(UnreachableError("connection refused"))
    assert not is_rejection(ValueError('admission webhook "w" denied the request'))
