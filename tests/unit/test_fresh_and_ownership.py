"""Read-your-writes overlay (``fresh``) and the Update → Apply hand-over (``ownership``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.controllers import ownership
from connector.kube.errors import InvalidError, KubeError, is_rejection
from connector.runtime.fresh import FreshObjects


def obj(rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": "a", "resourceVersion": rv}, **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("cached_rv", "want"),
    [
        (None, "written"),  # the cache has not seen the create yet
        ("4", "written"),  # the cache is behind our write
        ("5", "cached"),  # caught up
        ("9", "cached"),  # newer than our write
    ],
)
def test_the_newer_of_the_cache_and_our_write_is_read(cached_rv: str | None, want: str) -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.record("k", obj("5", spec="written"))
    cached = None if cached_rv is None else obj(cached_rv, spec="cached")
    assert (fresh.newest("k", cached) or {}).get("spec") == want


def test_an_event_as_new_as_our_write_ends_the_overlay() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.record("k", obj("5"))
    fresh.observe("k", "MODIFIED", obj("4"))
    assert len(fresh) == 1
    fresh.observe("k", "MODIFIED", obj("5"))
    assert len(fresh) == 0


def test_only_what_our_own_write_already_holds_is_told_apart() -> None:
    clock = Clock()
    fresh: FreshObjects[str] = FreshObjects(ttl=10, clock=clock)
    fresh.record("k", obj("5"))
    # Older than our write: an earlier write of ours, or a change our write's answer holds.
    assert fresh.observe("k", "MODIFIED", obj("4")) is True
    assert fresh.observe("k", "MODIFIED", obj("5")) is True  # our write coming back
    assert fresh.observe("k", "MODIFIED", obj("5")) is False  # once only (a resync)
    fresh.record("k", obj("7"))
    assert fresh.observe("k", "MODIFIED", obj("8")) is False  # a change on top of ours
    fresh.record("k", obj("9"))
    assert fresh.observe("k", "DELETED", obj("9")) is False  # a deletion always counts
    fresh.record("k", obj("12"))
    clock.now = 11  # a recorded copy past its ttl tells nothing
    assert fresh.observe("k", "MODIFIED", obj("11")) is False
    assert fresh.observe("k", "MODIFIED", obj("12")) is False


def test_a_deletion_always_ends_the_overlay() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.record("k", obj("5"))
    fresh.observe("k", "DELETED", obj("3"))
    assert fresh.newest("k", None) is None


def test_a_write_answered_after_the_deletion_event_is_not_recorded() -> None:
    clock = Clock()
    fresh: FreshObjects[str] = FreshObjects(ttl=10, clock=clock)
    fresh.observe("k", "DELETED", obj("8"))  # the watch was quicker than the create's answer
    fresh.record("k", obj("7"))
    assert fresh.newest("k", None) is None
    fresh.record("k", obj("9"))  # created again after the deletion
    assert fresh.newest("k", None) is not None
    clock.now = 11  # tombstones expire too
    fresh.record("k", obj("5"))
    assert (fresh.newest("k", None) or {})["metadata"]["resourceVersion"] == "5"


def test_an_entry_expires_so_a_missed_event_cannot_keep_it_alive() -> None:
    clock = Clock()
    fresh: FreshObjects[str] = FreshObjects(ttl=10, clock=clock)
    fresh.record("k", obj("5"))
    clock.now = 11
    assert fresh.newest("k", None) is None
    assert len(fresh) == 0


def test_an_older_write_does_not_replace_a_newer_one_and_reads_are_copies() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.record("k", obj("7", spec="new"))
    fresh.record("k", obj("6", spec="old"))
    got = fresh.newest("k", None)
    assert got is not None and got["spec"] == "new"
    got["spec"] = "mutated"
    assert (fresh.newest("k", None) or {})["spec"] == "new"


def test_the_keys_are_those_of_unexpired_writes() -> None:
    clock = Clock()
    fresh: FreshObjects[str] = FreshObjects(ttl=10, clock=clock)
    fresh.record("a", obj("5"))
    clock.now = 5
    fresh.record("b", obj("6"))
    assert sorted(fresh.keys()) == ["a", "b"]
    clock.now = 12
    assert fresh.keys() == ["b"]


def test_a_resource_version_that_is_not_a_number_is_never_taken_as_newer() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.record("k", obj("abc"))
    assert len(fresh) == 0


MANAGER = "api-connector"


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **extra,
    }


def twin(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "a", "managedFields": list(entries)}, "spec": {"x": 1}}


def test_the_cache_keeps_a_summary_only_for_twins_our_create_owns() -> None:
    created = ownership.summarize(
        twin(entry("kubectl", "Update", {"f:a": {}}), entry(MANAGER, "Update", {"f:b": {}})),
        MANAGER,
    )
    assert created["metadata"]["managedFields"] == [
        {"manager": "kubectl", "operation": "Update"},
        {"manager": MANAGER, "operation": "Update"},
    ]
    applied = ownership.summarize(twin(entry(MANAGER, "Apply", {"f:b": {}})), MANAGER)
    assert "managedFields" not in applied["metadata"]
    status_only = ownership.summarize(
        twin(entry(MANAGER, "Update", {"f:status": {}}, subresource="status")), MANAGER
    )
    assert not ownership.needs_upgrade(status_only, MANAGER)


def test_the_update_entry_becomes_the_apply_entry_guarded_by_tests() -> None:
    summary = ownership.summarize(
        twin(entry("kubectl", "Update", {}), entry(MANAGER, "Update", {})), MANAGER
    )
    assert ownership.needs_upgrade(summary, MANAGER)
    assert ownership.upgrade_patch(summary, MANAGER) == [
        {"op": "test", "path": "/metadata/managedFields/1/manager", "value": MANAGER},
        {"op": "test", "path": "/metadata/managedFields/1/operation", "value": "Update"},
        {"op": "replace", "path": "/metadata/managedFields/1/operation", "value": "Apply"},
    ]


def test_with_an_apply_entry_too_the_field_sets_are_merged() -> None:
    full = twin(
        entry(MANAGER, "Apply", {"f:spec": {"f:x": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}),
        entry("other", "Update", {"f:spec": {"f:z": {}}}),
        entry(MANAGER, "Update", {"f:spec": {"f:y": {}}, "f:metadata": {"f:labels": {"f:b": {}}}}),
    )
    assert ownership.upgrade_patch(full, MANAGER) is None
    merged = ownership.merged_entries(full, MANAGER)
    assert merged is not None
    assert [(e["manager"], e["operation"]) for e in merged] == [
        (MANAGER, "Apply"),
        ("other", "Update"),
    ]
    assert merged[0]["fieldsV1"] == {
        "f:spec": {"f:x": {}, "f:y": {}},
        "f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}},
    }
    assert ownership.merged_entries(twin(entry(MANAGER, "Apply", {})), MANAGER) is None


#: What another connector's twin carries: it set the managed label, its own origin label, a
#: user label and the spec; Crossplane wrote a spec field of its own and the status.
OLD = "upbound-api-connector"
ADOPTABLE = twin(
    entry(
        OLD,
        "Update",
        {
            "f:metadata": {
                "f:labels": {
                    ".": {},
                    "f:connect.upbound.io/managed": {},
                    "f:old/origin": {},
                    "f:team": {},
                }
            },
            "f:spec": {"f:x": {}},
        },
        time="2026-05-01T00:00:00Z",
    ),
    entry("crossplane", "Apply", {"f:spec": {"f:resourceRef": {}}}),
    entry("crossplane", "Update", {"f:status": {}}, subresource="status"),
)


def test_the_connector_that_created_a_twin_owns_its_managed_label() -> None:
    assert ownership.label_owners(ADOPTABLE, "connect.upbound.io/managed") == [OLD]
    assert ownership.label_owners(ADOPTABLE, "absent") == []


def test_taking_over_moves_the_other_managers_fields_into_our_apply_entry() -> None:
    before = copy.deepcopy(ADOPTABLE)
    entries = ownership.take_over(
        ADOPTABLE, MANAGER, [OLD], labels={"connect.upbound.io/managed", "team"}
    )
    assert entries is not None
    assert [(e["manager"], e["operation"], e.get("subresource")) for e in entries] == [
        (MANAGER, "Apply", None),
        (OLD, "Update", None),
        ("crossplane", "Apply", None),
        ("crossplane", "Update", "status"),
    ]
    assert entries[0]["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:connect.upbound.io/managed": {}, "f:team": {}}},
        "f:spec": {"f:x": {}},
    }
    # Its origin label stays its own (and so stays on the object); Crossplane's fields too.
    assert entries[1]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:old/origin": {}}}}
    assert entries[0]["time"] == "2026-05-01T00:00:00Z"
    assert before == ADOPTABLE, "the object read is not changed"


def test_taking_over_joins_an_apply_entry_of_ours_and_is_idempotent() -> None:
    ours = entry(MANAGER, "Apply", {"f:spec": {"f:y": {}}})
    entries = ownership.take_over(
        twin(ours, *ADOPTABLE["metadata"]["managedFields"]), MANAGER, [OLD]
    )
    assert entries is not None
    assert entries[0]["manager"] == MANAGER
    assert entries[0]["fieldsV1"]["f:spec"] == {"f:x": {}, "f:y": {}}
    assert entries[0]["fieldsV1"]["f:metadata"]["f:labels"]["f:old/origin"] == {}
    assert ownership.take_over(twin(*entries), MANAGER, [OLD]) is None


@dataclass
class Provider:
    """The three requests of a hand-over, recorded; ``refuse`` makes one fail."""

    live: dict[str, Any]
    refuse: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def request(self, name: str, body: Any = None) -> Any:
        self.calls.append((name, body))
        if name in self.refuse:
            raise self.refuse[name]
        return self.live

    def hand_over(self, cached: dict[str, Any]) -> None:
        ownership.hand_over(
            cached,
            MANAGER,
            json_patch=lambda patch: self.request("json", patch),
            read_live=lambda: self.request("read"),
            merge_patch=lambda patch: self.request("merge", patch),
        )


def created_twin(*entries: dict[str, Any]) -> dict[str, Any]:
    live = twin(*entries)
    live["metadata"]["resourceVersion"] = "7"
    return live


def cached(live: dict[str, Any]) -> dict[str, Any]:
    return ownership.summarize(copy.deepcopy(live), MANAGER)


def test_a_hand_over_is_one_guarded_json_patch_from_the_cached_summary() -> None:
    live = created_twin(entry(MANAGER, "Update", {"f:spec": {}}))
    provider = Provider(live)
    provider.hand_over(cached(live))
    assert [name for name, _ in provider.calls] == ["json"]


def test_a_stale_summary_hands_over_from_the_live_object_conditionally() -> None:
    live = created_twin(entry("other", "Update", {}), entry(MANAGER, "Update", {"f:spec": {}}))
    stale = ownership.summarize(created_twin(entry(MANAGER, "Update", {})), MANAGER)
    provider = Provider(live, refuse={"json": InvalidError("the test operation failed")})
    provider.hand_over(stale)
    assert [name for name, _ in provider.calls] == ["json", "read", "merge"]
    merge = provider.calls[-1][1]
    assert merge["metadata"]["resourceVersion"] == "7", "no other write in between"
    assert [(e["manager"], e["operation"]) for e in merge["metadata"]["managedFields"]] == [
        ("other", "Update"),
        (MANAGER, "Apply"),
    ]


def test_a_hand_over_the_server_refuses_is_no_rejected_object() -> None:
    live = created_twin(entry(MANAGER, "Apply", {}), entry(MANAGER, "Update", {"f:spec": {}}))
    provider = Provider(live, refuse={"merge": InvalidError("managedFields: Invalid value")})
    with pytest.raises(KubeError, match="Handing field ownership") as raised:
        provider.hand_over(cached(live))
    assert not is_rejection(raised.value)
    assert [name for name, _ in provider.calls] == ["read", "merge"], "merged: no JSON patch"


def test_cached_objects_share_their_keys_and_short_strings() -> None:
    import json

    from connector.runtime.controller import cache_form

    text = json.dumps(
        {
            "metadata": {"name": "a", "managedFields": [{"manager": "m"}], "labels": {"k": "v"}},
            "spec": {"long": "x" * 100, "items": [{"type": "Ready", "status": "True"}]},
        }
    )
    one, two = cache_form(json.loads(text)), cache_form(json.loads(text))
    assert one == two and "managedFields" not in one["metadata"]
    key_one = next(k for k in one["metadata"]["labels"])
    key_two = next(k for k in two["metadata"]["labels"])
    assert key_one is key_two
    assert one["spec"]["items"][0]["status"] is two["spec"]["items"][0]["status"]
    assert one["spec"]["long"] == two["spec"]["long"]


def test_an_echo_that_comes_before_the_writes_answer_is_told_apart() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.expect("k")
    assert fresh.observe("k", "MODIFIED", obj("5")) is True  # held: the answer is not in
    fresh.record("k", obj("5"))
    assert fresh.settle("k") is False  # it was our write's echo


def test_a_change_held_during_a_write_is_news_when_it_is_newer_or_the_write_failed() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.expect("k")
    fresh.observe("k", "MODIFIED", obj("5"))
    fresh.observe("k", "MODIFIED", obj("6"))  # someone else's, after our write
    fresh.record("k", obj("5"))
    assert fresh.settle("k") is True
    fresh.expect("other")
    fresh.observe("other", "MODIFIED", obj("3"))
    assert fresh.settle("other") is True  # the write failed: nothing recorded to compare
    fresh.expect("plain")
    assert fresh.settle("plain") is False  # nothing held


def test_events_are_held_until_the_last_of_overlapping_writes_settles() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.expect("k")  # a finalizer patch
    fresh.expect("k")  # a status update
    fresh.observe("k", "MODIFIED", obj("5"))
    fresh.record("k", obj("5"))
    assert fresh.settle("k") is False  # one still under way
    fresh.observe("k", "MODIFIED", obj("6"))
    fresh.record("k", obj("6"))
    assert fresh.settle("k") is False
    # Afterwards events are looked at as they come.
    assert fresh.observe("k", "MODIFIED", obj("7")) is False


def test_a_deletion_during_a_write_is_never_held() -> None:
    fresh: FreshObjects[str] = FreshObjects()
    fresh.expect("k")
    assert fresh.observe("k", "DELETED", obj("5")) is False
    assert fresh.settle("k") is False
