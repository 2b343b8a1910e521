"""The wall clock in the forms Kubernetes objects carry it.

Stage logic never reads the clock: it takes ``now`` as an argument so that its tests are
deterministic. Callers (the orchestrator, the function adapters) pass one of these.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now_rfc3339() -> str:
    """Now as a Kubernetes ``Time`` (RFC 3339, seconds, UTC): conditions, Events."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro_time() -> str:
    """Now as a Kubernetes ``MicroTime`` (RFC 3339, microseconds, UTC): Leases."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
