"""EventRecorder: one Event per problem, in one process and across restarts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.kube.errors import ForbiddenError
from connector.runtime.events import COMPONENT, EventRecorder

NOW = "2026-12-01T12:00:00Z"
OBJ: dict[str, Any] = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "NopResource",
    "metadata": {"name": "obj", "namespace": "ns", "uid": "uid-1", "resourceVersion": "7"},
}


def event(
    type_: str,
    reason: str,
    message: str,
    last: str,
    *,
    component: str = COMPONENT,
    uid: str = "uid-1",
) -> dict[str, Any]:
    return {
        "involvedObject": {"uid": uid, "name": "obj", "namespace": "ns"},
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "lastTimestamp": last,
    }


class World:
    """What the recorder talks to: the Events on the object, and the ones it creates."""

    def __init__(self, existing: list[dict[str, Any]], *, forbidden: bool = False) -> None:
        self.existing = existing
        self.forbidden = forbidden
        self.created: list[dict[str, Any]] = []
        self.lists = 0
        self.time = 1000.0

    def recorder(self) -> EventRecorder:
        return EventRecorder(
            lambda _ns, ev: self.created.append(ev),
            list_events=self.list_events,
            clock=lambda: self.time,
            now=lambda: NOW,
        )

    def list_events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        self.lists += 1
        if self.forbidden:
            raise ForbiddenError("events is forbidden", status=403, reason="Forbidden")
        assert namespace == "ns"
        return [e for e in self.existing if e["involvedObject"]["uid"] == uid]

    def said(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.created]


@dataclass
class Case:
    reason: str
    existing: list[dict[str, Any]]
    want: list[tuple[str, str]]
    warnings: list[tuple[str, str]] = field(default_factory=lambda: [("Conflict", "taken")])


CASES = [
    Case("no earlier Event: told", [], [("Warning", "Conflict")]),
    Case(
        "told by an earlier process 10 minutes ago: silent",
        [event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z")],
        [],
    ),
    Case(
        "told more than an hour ago: told again",
        [event("Warning", "Conflict", "taken", "2026-12-01T10:30:00Z")],
        [("Warning", "Conflict")],
    ),
    Case(
        "resolved since (a Normal Event after it): a relapse is told",
        [
            event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z"),
            event("Normal", "Bound", "ok", "2026-12-01T11:55:00Z"),
        ],
        [("Warning", "Conflict")],
    ),
    Case(
        "a Normal Event before it does not count",
        [
            event("Normal", "Bound", "ok", "2026-12-01T11:40:00Z"),
            event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z"),
        ],
        [],
    ),
    Case(
        "another component's Event does not count",
        [event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z", component="kubelet")],
        [("Warning", "Conflict")],
    ),
    Case(
        "another message is another problem",
        [event("Warning", "Conflict", "taken by b", "2026-12-01T11:50:00Z")],
        [("Warning", "Conflict")],
    ),
    Case(
        "another object's Event does not count",
        [event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z", uid="uid-2")],
        [("Warning", "Conflict")],
    ),
    Case(
        "two problems told in turn before the restart: both silent",
        [
            event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z"),
            event("Warning", "ProviderRejected", "no", "2026-12-01T11:51:00Z"),
        ],
        [],
        warnings=[("Conflict", "taken"), ("ProviderRejected", "no"), ("Conflict", "taken")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_a_warning_is_told_once_across_restarts(case: Case) -> None:
    world = World(case.existing)
    recorder = world.recorder()
    for reason, message in case.warnings:
        recorder.warning(OBJ, reason, message)
    recorder.warning(OBJ, *case.warnings[0])  # the reconcile fails again: still once
    assert world.said() == case.want, f"-want +got: {case.want} {world.said()}"


def test_the_events_are_read_once_per_problem_and_process() -> None:
    world = World([event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z")])
    recorder = world.recorder()
    for _ in range(5):
        recorder.warning(OBJ, "Conflict", "taken")
    assert world.lists == 1
    assert world.created == []


def test_a_warning_told_before_the_restart_is_resolved_by_this_process() -> None:
    world = World([event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z")])
    recorder = world.recorder()
    recorder.warning(OBJ, "Conflict", "taken")
    recorder.resolved(OBJ, "Bound", "The object is in sync.")
    assert world.said() == [("Normal", "Bound")]


def test_a_warning_told_before_the_restart_is_repeated_an_hour_after_it_was_told() -> None:
    world = World([event("Warning", "Conflict", "taken", "2026-12-01T11:50:00Z")])
    recorder = world.recorder()
    recorder.warning(OBJ, "Conflict", "taken")
    world.time += 49 * 60  # 11:59 on the Event's clock: not an hour yet
    recorder.warning(OBJ, "Conflict", "taken")
    assert world.created == []
    world.time += 2 * 60  # 12:01: an hour and a minute after the earlier process told it
    recorder.warning(OBJ, "Conflict", "taken")
    assert world.said() == [("Warning", "Conflict")]


def test_events_that_cannot_be_read_are_not_read_again_and_warnings_still_go_out() -> None:
    world = World([], forbidden=True)
    recorder = world.recorder()
    recorder.warning(OBJ, "Conflict", "taken")
    recorder.warning(OBJ, "ProviderRejected", "no")
    assert world.said() == [("Warning", "Conflict"), ("Warning", "ProviderRejected")]
    assert world.lists == 1


def test_without_a_uid_or_a_reader_only_this_process_remembers() -> None:
    created: list[dict[str, Any]] = []
    recorder = EventRecorder(lambda _ns, ev: created.append(ev))
    no_uid = {"metadata": {"name": "obj", "namespace": "ns"}}
    recorder.warning(no_uid, "Conflict", "taken")
    recorder.warning(no_uid, "Conflict", "taken")
    assert [e["reason"] for e in created] == ["Conflict"]
    assert created[0]["involvedObject"]["name"] == "obj"


def test_resolving_one_problem_keeps_another_problems_warning_told_once() -> None:
    world = World([])
    recorder = world.recorder()
    recorder.warning(OBJ, "ProviderSecretForbidden", "may not read the Secret")
    recorder.warning(OBJ, "ProviderRejected", "the provider rejected it")
    # The twin's problem goes: told, and only its Warning is forgotten.
    recorder.resolved(OBJ, "Bound", "in sync", of={"ProviderRejected"})
    recorder.resolved(OBJ, "Bound", "in sync", of={"ProviderRejected"})
    # The Secret's problem persists: still said once.
    recorder.warning(OBJ, "ProviderSecretForbidden", "may not read the Secret")
    # A relapse of the resolved one is told again.
    recorder.warning(OBJ, "ProviderRejected", "the provider rejected it")
    assert [(e["type"], e["reason"]) for e in world.created] == [
        ("Warning", "ProviderSecretForbidden"),
        ("Warning", "ProviderRejected"),
        ("Normal", "Bound"),
        ("Warning", "ProviderRejected"),
    ]
