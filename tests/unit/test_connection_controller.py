"""What the connection controller keeps between reconciles: each connection's CRD conflicts,
for its bindings to name."""

from __future__ import annotations

from connector.controllers.connection_controller import CRDConflicts
from functions.crd_puller.types import CRDConflict

NAME = "nopresources.nop.example.org"


def test_crd_conflicts_are_remembered_per_connection_and_changes_wake_the_bindings() -> None:
    woken: list[str] = []
    conflicts = CRDConflicts(on_change=woken.append)
    taken = CRDConflict(name=NAME, message="belongs to connection provider-a")
    conflicts.record("provider-b", [taken])
    conflicts.record("provider-b", [taken])
    assert conflicts.of("provider-b") == [taken]
    assert conflicts.of("provider-a") == []
    conflicts.record("provider-b", [])
    assert woken == ["provider-b", "provider-b"], "once per change"
