"""The development runtime's providers: what it writes into a ProviderRevision's status, and
when."""

from __future__ import annotations

from typing import Any

import pytest

from connector.envtest._functions import PARENT_LABEL
from connector.envtest._providers import provider_status_patch

SECRETS = {"provider-kubernetes": "provider-kubernetes-tls-server"}
NOW = "2026-12-01T12:00:00Z"
HEALTHY = {"type": "RuntimeHealthy", "status": "True", "reason": "HealthyPackageRevision"}
RUNTIME_HEALTHY = {
    **HEALTHY,
    "message": "Run as a local process by the development runtime.",
    "lastTransitionTime": NOW,
}


def revision(
    parent: str = "provider-kubernetes", *, secret: str | None = None, healthy: bool = False
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [HEALTHY] if healthy else []}
    if secret:
        status["tlsServerSecretName"] = secret
    return {"metadata": {"name": "rev", "labels": {PARENT_LABEL: parent}}, "status": status}


@pytest.mark.parametrize(
    ("reason", "rev", "running", "want"),
    [
        (
            "Before the process runs, only the TLS Secret is named: Crossplane needs it to "
            "install the provider's CRDs, which the process needs to start.",
            revision(),
            False,
            {"tlsServerSecretName": "provider-kubernetes-tls-server"},
        ),
        (
            "Once the process runs, the runtime is healthy.",
            revision(secret="provider-kubernetes-tls-server"),
            True,
            {
                "tlsServerSecretName": "provider-kubernetes-tls-server",
                "conditions": [RUNTIME_HEALTHY],
            },
        ),
        (
            "A revision that shows both already gets nothing.",
            revision(secret="provider-kubernetes-tls-server", healthy=True),
            True,
            None,
        ),
        (
            "Before the process runs, a named Secret is all there is to write.",
            revision(secret="provider-kubernetes-tls-server"),
            False,
            None,
        ),
        (
            "A revision of a provider the runtime does not run is left alone.",
            revision("provider-helm"),
            True,
            None,
        ),
    ],
)
def test_provider_status_patch(
    reason: str, rev: dict[str, Any], running: bool, want: dict[str, Any] | None
) -> None:
    assert provider_status_patch(rev, SECRETS, running=running, now=NOW) == want, reason
