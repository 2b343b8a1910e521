"""The development function runtime's decisions: which FunctionRevision gets which endpoint
and TLS Secret, and when a Function counts as healthy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from connector.envtest._functions import PARENT_LABEL, function_health, status_patch

ENDPOINTS = {"function-nop": "127.0.0.1:4000"}


SECRET = "function-nop-tls-server"


NOW = "2026-12-01T12:00:00Z"
HEALTHY = {"type": "RuntimeHealthy", "status": "True", "reason": "HealthyPackageRevision"}
UNKNOWN = {"type": "RuntimeHealthy", "status": "Unknown", "reason": "UnknownPackageRevisionHealth"}
REVISION_HEALTHY = {"type": "RevisionHealthy", "status": "True", "reason": "HealthyPackageRevision"}


def revision(
    parent: str | None,
    endpoint: str | None = None,
    secret: str | None = SECRET,
    conditions: tuple[dict[str, str], ...] = (REVISION_HEALTHY, HEALTHY),
) -> dict[str, Any]:
    labels = {PARENT_LABEL: parent} if parent else {}
    status: dict[str, Any] = {"conditions": list(conditions)}
    if endpoint:
        status.update(endpoint=endpoint, tlsServerSecretName=secret)
    return {
        "metadata": {"name": "rev", "labels": labels},
        "spec": {"tlsServerSecretName": SECRET},
        "status": status,
    }


WANT = {
    "endpoint": "127.0.0.1:4000",
    "tlsServerSecretName": SECRET,
    "conditions": [
        {
            **HEALTHY,
            "message": "Served by the development function runtime at 127.0.0.1:4000.",
            "lastTransitionTime": NOW,
        }
    ],
}


@dataclass(frozen=True)
class PatchCase:
    reason: str
    revision: dict[str, Any]
    want: dict[str, Any] | None


@pytest.mark.parametrize(
    "case",
    [
        PatchCase(
            "a served function's revision without an endpoint gets it",
            revision("function-nop"),
            WANT,
        ),
        PatchCase(
            "a stale endpoint (a restarted server's old port) is replaced",
            revision("function-nop", "127.0.0.1:3999"),
            WANT,
        ),
        PatchCase(
            "a revision without the TLS Secret named gets it (Crossplane waits for it)",
            revision("function-nop", "127.0.0.1:4000", secret=None),
            WANT,
        ),
        PatchCase(
            "a runtime health Crossplane reset to Unknown is made True again",
            revision("function-nop", "127.0.0.1:4000", conditions=(REVISION_HEALTHY, UNKNOWN)),
            WANT,
        ),
        PatchCase(
            "the right endpoint is not written again",
            revision("function-nop", "127.0.0.1:4000"),
            None,
        ),
        PatchCase("a function that is not served is left alone", revision("function-other"), None),
        PatchCase("a revision without a parent label is left alone", revision(None), None),
    ],
    ids=lambda c: c.reason,
)
def test_status_patch(case: PatchCase) -> None:
    assert status_patch(case.revision, ENDPOINTS, now=NOW) == case.want


def test_function_health_is_the_healthy_condition_and_says_why_not() -> None:
    healthy = {"status": {"conditions": [{"type": "Healthy", "status": "True"}]}}
    unhealthy = {
        "status": {
            "conditions": [
                {"type": "Installed", "status": "True", "reason": "ActivePackageRevision"},
                {
                    "type": "Healthy",
                    "status": "False",
                    "reason": "UnhealthyPackageRevision",
                    "message": "cannot pull",
                },
            ]
        }
    }

    assert function_health(healthy) == (True, "")
    ok, why = function_health(unhealthy)
    assert not ok
    assert "Healthy=False (UnhealthyPackageRevision: cannot pull)" in why
    assert function_health({}) == (False, "no conditions yet")
