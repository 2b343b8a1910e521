"""Status conditions as objects from users and servers carry them, well-formed or not."""

from __future__ import annotations

from typing import Any

import pytest

from functions.common import find_condition, object_conditions, set_condition, status_conditions

NOW = "2026-12-02T04:00:00Z"
EARLIER = "2026-12-01T04:00:00Z"
READY = {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": EARLIER}


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (None, []),
        ("Ready", []),
        ({}, []),
        ({"conditions": None}, []),
        ({"conditions": "Ready"}, []),
        ({"conditions": {"type": "Ready"}}, []),
        ({"conditions": [READY]}, [READY]),
    ],
)
def test_status_conditions_are_a_list_or_none(status: Any, want: list[Any]) -> None:
    assert status_conditions(status) == want
    assert object_conditions({"status": status}) == want


def test_the_conditions_read_are_the_objects_own_list() -> None:
    obj = {"status": {"conditions": [READY]}}
    object_conditions(obj).append({"type": "Synced"})
    assert [c["type"] for c in obj["status"]["conditions"]] == ["Ready", "Synced"]


@pytest.mark.parametrize("obj", [None, "x", {}, {"status": None}, {"status": []}])
def test_an_object_without_a_status_has_no_conditions(obj: Any) -> None:
    assert object_conditions(obj) == []


def test_find_condition_passes_over_entries_that_are_not_objects() -> None:
    conditions: list[Any] = ["Ready", 7, None, {"status": "True"}, READY]
    assert find_condition(conditions, "Ready") is READY
    assert find_condition(conditions, "Synced") is None


def test_set_condition_keeps_its_transition_time_until_the_status_changes() -> None:
    same = set_condition(
        [READY], type_="Ready", status="True", reason="Available", message="", now=NOW
    )
    assert same[0]["lastTransitionTime"] == EARLIER
    moved = set_condition(
        [READY], type_="Ready", status="False", reason="Unavailable", message="gone", now=NOW
    )
    assert moved == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Unavailable",
            "message": "gone",
            "lastTransitionTime": NOW,
        }
    ]


def test_set_condition_drops_entries_that_are_not_objects_and_keeps_the_order() -> None:
    untyped = {"status": "True"}
    conditions: list[Any] = ["junk", READY, untyped, {"type": "Synced", "status": "True"}]
    out = set_condition(
        conditions, type_="APIBound", status="True", reason="Bound", message="", now=NOW
    )
    assert [c.get("type") for c in out] == ["Ready", None, "Synced", "APIBound"]
    assert out[1] == untyped and out[1] is not untyped, "kept entries are copies"
