"""The development runtime's providers: what it writes into a ProviderRevision's status, and
when."""

from __future__ import annotations

from pathlib import Path
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


def test_two_packages_of_one_name_are_refused_before_anything_starts(tmp_path: Path) -> None:
    from connector.envtest._functions import FunctionRuntime, FunctionSource
    from connector.envtest._providers import ProviderRuntime, ProviderSource

    def no_client() -> Any:
        raise AssertionError("nothing may be written")

    function = FunctionSource(name="fn", package_root=tmp_path, command=("true",))
    with pytest.raises(ValueError, match=r"function names must be unique, got \['fn', 'fn'\]"):
        FunctionRuntime(
            directory=tmp_path,
            kube_factory=no_client,
            functions=[function, function],
            tools={},
            stop_timeout=1,
            namespace="crossplane-system",
        )
    provider = ProviderSource(name="pk", tool="provider-kubernetes", crds=())
    with pytest.raises(ValueError, match=r"provider names must be unique, got \['pk', 'pk'\]"):
        ProviderRuntime(
            directory=tmp_path,
            cluster=None,  # type: ignore[arg-type]
            kube_factory=no_client,
            providers=[provider, provider],
            tools={},
            registry="127.0.0.1:5000",
            stop_timeout=1,
            namespace="crossplane-system",
        )
    assert list(tmp_path.iterdir()) == [], "nothing was written"
