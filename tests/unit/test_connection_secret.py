"""Connection Secrets: which provider Secret is copied, what the consumer gets, and the
condition, decided by the object-syncer's pure plan; and the reconcile step that applies it
(with plain functions for its side effects)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.cli.demo import NOP
from connector.controllers.connection_secret_reconcile import SecretDeps, reconcile_secret
from connector.controllers.connection_secrets import ConnectionSecrets, RecentSecrets
from connector.controllers.sync_reconcile import _with_secret_condition
from connector.kube.errors import ConflictError, ForbiddenError
from functions.common import Obj
from functions.common.api import CONDITION_CONNECTION_SECRET, CONNECTION_SECRET_TYPE
from functions.object_syncer import desired_twin, sync
from functions.object_syncer.connection_secret import (
    REASON_CONFLICT,
    REASON_DISABLED,
    REASON_FORBIDDEN,
    REASON_NOT_CONTROLLED,
    REASON_SYNCED,
    REASON_WAITING,
    SecretPlan,
    SecretRef,
    SecretRequest,
    Verdict,
    plan,
    source_of,
)
from functions.object_syncer.types import SyncRequest

from . import assert_same

CLUSTER = "dev-cluster"
CRD = "nopresources.nop.example.org"
UID = "0c7a6f4e-5a3b-4b7e-9d3c-1f2e3d4c5b6a"
TWIN_UID = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
NOW = "2026-11-23T12:00:00Z"
#: base64 of "pw-7f3a9c", "db.internal.example"
DATA = {"password": "cHctN2YzYTlj", "endpoint": "ZGIuaW50ZXJuYWwuZXhhbXBsZQ=="}
PLAIN = ("pw-7f3a9c", "db.internal.example")


def consumer(
    *, ref: str | None = "db-conn", deleting: bool = False, status: Obj | None = None
) -> Obj:
    obj: Obj = {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {"name": "my-db", "namespace": "team-a", "uid": UID, "generation": 3},
        "spec": {"coolField": "x"},
    }
    if ref is not None:
        obj["spec"]["writeConnectionSecretToRef"] = {"name": ref}
    if deleting:
        obj["metadata"]["deletionTimestamp"] = NOW
    if status is not None:
        obj["status"] = status
    return obj


def twin(*, ref: str | None = "db-conn", namespace: str = "team-a", ours: bool = True) -> Obj:
    obj = desired_twin(consumer(ref=ref), consumer_cluster=CLUSTER if ours else "other")
    obj["metadata"]["namespace"] = namespace
    obj["metadata"]["uid"] = TWIN_UID
    return obj


def provider_secret(*, controller: str = TWIN_UID, type_: str = CONNECTION_SECRET_TYPE) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db-conn",
            "namespace": "team-a",
            "ownerReferences": [
                {
                    "apiVersion": "nop.example.org/v1alpha1",
                    "kind": "NopResource",
                    "name": "my-db",
                    "uid": controller,
                    "controller": True,
                }
            ],
        },
        "type": type_,
        "data": dict(DATA),
    }


def ours(
    name: str = "db-conn",
    *,
    data: dict[str, str] | None = None,
    type_: str = CONNECTION_SECRET_TYPE,
) -> Obj:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "resourceVersion": "17",
            "labels": {
                "app.kubernetes.io/managed-by": "api-connector",
                "connect.upbound.io/connection-secret-for": CRD,
            },
            "ownerReferences": [
                {
                    "apiVersion": "nop.example.org/v1alpha1",
                    "kind": "NopResource",
                    "name": "my-db",
                    "uid": UID,
                    "controller": True,
                }
            ],
        },
        "type": type_,
        "data": dict(DATA if data is None else data),
    }
    return secret


def theirs() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-conn", "namespace": "team-a", "resourceVersion": "3"},
        "type": "Opaque",
        "data": {"mine": "eA=="},
    }


def wanted() -> Obj:
    secret = ours()
    del secret["metadata"]["resourceVersion"]
    return secret


def synced() -> Verdict:
    return Verdict(
        "True", REASON_SYNCED, "The connection Secret db-conn is copied from the provider"
    )


def request(**kwargs: Any) -> SecretRequest:
    base: dict[str, Any] = {
        "consumer": consumer(),
        "twin": twin(),
        "consumer_cluster": CLUSTER,
        "crd_name": CRD,
        "source": provider_secret(),
    }
    base.update(kwargs)
    return SecretRequest(**base)


@dataclass(frozen=True)
class Case:
    reason: str
    req: SecretRequest
    want_write: Obj | None = None
    want_delete: list[str] = field(default_factory=list)
    want_reason: str | None = None
    want_replace: bool = False


CASES = [
    Case(
        "a new connection Secret is copied with its type and data",
        request(),
        wanted(),
        [],
        REASON_SYNCED,
    ),
    Case(
        "a copy that matches is not written again",
        request(existing=ours(), owned=[ours()]),
        None,
        [],
        REASON_SYNCED,
    ),
    Case(
        "a rotated provider Secret updates the copy",
        request(existing=ours(data={"password": "b2xk"}), owned=[ours()]),
        wanted(),
        [],
        REASON_SYNCED,
    ),
    Case(
        "a changed type replaces the copy (a Secret's type is immutable)",
        request(existing=ours(type_="Opaque"), owned=[ours()]),
        wanted(),
        [],
        REASON_SYNCED,
        want_replace=True,
    ),
    Case(
        "someone else's Secret of that name is never overwritten",
        request(existing=theirs()),
        None,
        [],
        REASON_CONFLICT,
    ),
    Case(
        "a Secret the connector wrote for another object of that name is not ours to write",
        request(
            existing={
                **ours(),
                "metadata": {**ours()["metadata"], "ownerReferences": [{"uid": "x"}]},
            }
        ),
        None,
        [],
        REASON_CONFLICT,
    ),
    Case("no twin yet: waiting", request(twin=None, source=None), None, [], REASON_WAITING),
    Case(
        "a twin that belongs to another consumer is never a source",
        request(twin=twin(ours=False)),
        None,
        [],
        REASON_WAITING,
    ),
    Case(
        "a twin that names no Secret yet: waiting",
        request(twin=twin(ref=None), source=None),
        None,
        [],
        REASON_WAITING,
    ),
    Case("the provider has not written it yet", request(source=None), None, [], REASON_WAITING),
    Case(
        "a provider identity that may not read Secrets is told, and the copy is kept",
        request(
            source=None, source_forbidden="secrets is forbidden", existing=ours(), owned=[ours()]
        ),
        None,
        [],
        REASON_FORBIDDEN,
    ),
    Case(
        "a provider Secret controlled by another object is not copied",
        request(source=provider_secret(controller="someone-else")),
        None,
        [],
        REASON_NOT_CONTROLLED,
    ),
    Case(
        "a renamed Secret: the new one is written, the old one deleted",
        request(owned=[ours("old-name")]),
        wanted(),
        ["old-name"],
        REASON_SYNCED,
    ),
    Case(
        "an object that stops asking: its Secret is deleted and the condition removed",
        request(consumer=consumer(ref=None), owned=[ours()]),
        None,
        ["db-conn"],
        None,
    ),
    Case(
        "a deleted object: its Secret is deleted",
        request(consumer=consumer(deleting=True), owned=[ours()]),
        None,
        ["db-conn"],
        None,
    ),
    Case(
        "connection Secrets turned off: told so, nothing read or written",
        request(enabled=False, source=None),
        None,
        [],
        REASON_DISABLED,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_plan(case: Case) -> None:
    got = plan(case.req)
    assert_same(case.want_write, got.write, case.reason)
    assert got.delete == case.want_delete, case.reason
    assert (got.verdict.reason if got.verdict else None) == case.want_reason, case.reason
    assert got.replace == case.want_replace, case.reason


def test_messages_never_carry_secret_data() -> None:
    for case in CASES:
        verdict = plan(case.req).verdict
        if verdict is None:
            continue
        for value in [*DATA.values(), *PLAIN, "eA==", "b2xk"]:
            assert value not in verdict.message, (case.reason, value)


@pytest.mark.parametrize(
    ("reason", "twin_obj", "want"),
    [
        (
            "a claim's Secret is in the twin's namespace",
            twin(namespace="p-ns"),
            SecretRef("p-ns", "db-conn"),
        ),
        ("no ref, no source", twin(ref=None), None),
        ("no twin, no source", None, None),
    ],
)
def test_source_of(reason: str, twin_obj: Obj | None, want: SecretRef | None) -> None:
    assert source_of(twin_obj) == want, reason


def test_the_syncer_keeps_the_connection_secret_condition_it_does_not_own() -> None:
    condition = {
        "type": CONDITION_CONNECTION_SECRET,
        "status": "True",
        "reason": REASON_SYNCED,
        "message": "copied",
        "lastTransitionTime": NOW,
    }
    obj = consumer(status={"conditions": [condition]})
    result = sync(SyncRequest(consumer=obj, provider=twin(), consumer_cluster=CLUSTER, now=NOW))
    status = result.consumer_status or obj["status"]
    assert condition in status["conditions"]


@pytest.mark.parametrize(
    ("reason", "verdict", "before", "want_types"),
    [
        ("a verdict is set", synced(), {}, [CONDITION_CONNECTION_SECRET]),
        (
            "no verdict removes the condition",
            None,
            {"conditions": [{"type": CONDITION_CONNECTION_SECRET, "status": "True"}]},
            [],
        ),
        ("no verdict and no condition: nothing to write", None, {}, None),
    ],
)
def test_the_condition_is_merged_into_the_status(
    reason: str, verdict: Verdict | None, before: Obj, want_types: list[str] | None
) -> None:
    obj = consumer(status=before)
    got = _with_secret_condition(obj, None, verdict, NOW)
    if want_types is None:
        assert got is None, reason
    else:
        assert got is not None, reason
        assert [c["type"] for c in got["conditions"]] == want_types, reason


# --- the reconcile step --------------------------------------------------------------


class Recorded:
    """Plain functions for ``SecretDeps`` that record what the step does."""

    def __init__(
        self,
        *,
        source: Obj | None = None,
        forbidden: bool = False,
        consumer_secrets: dict[str, Obj] | None = None,
        live: dict[str, Obj] | None = None,
    ) -> None:
        self.source = source
        self.forbidden = forbidden
        self.cached = consumer_secrets or {}
        self.live = live if live is not None else dict(self.cached)
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []

    def provider_secret(self, namespace: str, name: str) -> Obj | None:
        if self.forbidden:
            raise ForbiddenError(f'secrets "{name}" is forbidden', status=403, reason="Forbidden")
        return copy.deepcopy(self.source)

    def create(self, secret: Obj) -> None:
        name = secret["metadata"]["name"]
        if name in self.live:
            raise ConflictError(
                f'secrets "{name}" already exists', status=409, reason="AlreadyExists"
            )
        self.calls.append(("create", name))

    def deps(self, *, enabled: bool = True) -> SecretDeps:
        return SecretDeps(
            consumer_cluster=CLUSTER,
            crd_name=CRD,
            enabled=enabled,
            get_provider_secret=self.provider_secret,
            get_consumer_secret=lambda _ns, name: copy.deepcopy(self.cached.get(name)),
            read_consumer_secret=lambda _ns, name: copy.deepcopy(self.live.get(name)),
            owned_secrets=lambda _ns, _uid: [copy.deepcopy(s) for s in self.cached.values()],
            owns_secrets=lambda _ns, _uid: bool(self.cached),
            create_secret=self.create,
            update_secret=lambda s: self.calls.append(("update", s["metadata"]["name"])),
            delete_secret=lambda _ns, name: self.calls.append(("delete", name)),
            warn=lambda _obj, reason, message: self.events.append(("Warning", reason, message)),
            resolved=lambda _obj, reason, message: self.events.append(("Normal", reason, message)),
        )


def test_step_copies_a_new_secret() -> None:
    rec = Recorded(source=provider_secret())
    verdict = reconcile_secret(consumer(), twin(), rec.deps())
    assert verdict == synced()
    assert rec.calls == [("create", "db-conn")]
    assert rec.events == []


def test_step_reports_a_forbidden_read_once_per_pass_and_keeps_going() -> None:
    rec = Recorded(forbidden=True)
    verdict = reconcile_secret(consumer(), twin(), rec.deps())
    assert verdict is not None and verdict.reason == REASON_FORBIDDEN
    assert "get, list and watch on secrets in the namespace team-a" in verdict.message
    assert rec.calls == []
    assert [e[:2] for e in rec.events] == [("Warning", REASON_FORBIDDEN)]


def test_step_finds_a_foreign_secret_its_cache_does_not_hold_and_leaves_it() -> None:
    rec = Recorded(source=provider_secret(), live={"db-conn": theirs()})
    verdict = reconcile_secret(consumer(), twin(), rec.deps())
    assert verdict is not None and verdict.reason == REASON_CONFLICT
    assert rec.calls == []  # the create was refused; nothing else was written
    assert [e[:2] for e in rec.events] == [("Warning", REASON_CONFLICT)]


def test_step_updates_its_own_secret_found_by_a_create_before_its_cache_saw_it() -> None:
    rec = Recorded(source=provider_secret(), live={"db-conn": ours(data={"password": "b2xk"})})
    verdict = reconcile_secret(consumer(), twin(), rec.deps())
    assert verdict == synced()
    assert rec.calls == [("update", "db-conn")]


def test_step_does_nothing_for_an_object_that_never_asked() -> None:
    rec = Recorded()

    def never(*_args: Any) -> Any:
        raise AssertionError("no Secret cache is consulted")

    deps = rec.deps()
    deps = SecretDeps(**{**deps.__dict__, "owned_secrets": never, "get_provider_secret": never})
    assert reconcile_secret(consumer(ref=None), twin(), deps) is None


def test_step_deletes_a_secret_whose_condition_was_never_recorded_once_it_is_not_asked_for() -> (
    None
):
    # The Secret was written, the status write after it failed, and the object stopped
    # asking before the next pass: no condition says a Secret exists, its owner index does.
    rec = Recorded(consumer_secrets={"db-conn": ours()})
    assert reconcile_secret(consumer(ref=None), twin(), rec.deps()) is None
    assert rec.calls == [("delete", "db-conn")]
    assert rec.events == []
    # With connection Secrets turned off the connector manages none: nothing is looked up.
    off = Recorded(consumer_secrets={"db-conn": ours()})
    assert reconcile_secret(consumer(ref=None), twin(), off.deps(enabled=False)) is None
    assert off.calls == []


def test_step_turns_a_consumer_that_refuses_secrets_into_a_verdict() -> None:
    rec = Recorded(source=provider_secret())

    def refused(_secret: Obj) -> None:
        raise ForbiddenError("secrets is forbidden: cannot create", status=403, reason="Forbidden")

    deps = rec.deps()
    deps = SecretDeps(**{**deps.__dict__, "create_secret": refused})
    verdict = reconcile_secret(consumer(), twin(), deps)
    assert verdict is not None and verdict.reason == "ConsumerSecretForbidden"
    assert "namespace team-a" in verdict.message
    assert [e[:2] for e in rec.events] == [("Warning", "ConsumerSecretForbidden")]


def test_step_tells_the_recovery_from_a_warning() -> None:
    before = {
        "conditions": [
            {
                "type": CONDITION_CONNECTION_SECRET,
                "status": "False",
                "reason": REASON_FORBIDDEN,
                "message": "m",
            }
        ]
    }
    rec = Recorded(source=provider_secret())
    reconcile_secret(consumer(status=before), twin(), rec.deps())
    assert [e[0] for e in rec.events] == ["Normal"]


def test_plan_type_is_a_plain_dataclass() -> None:
    assert SecretPlan().verdict is None


def test_a_secret_written_a_moment_ago_counts_as_the_objects_until_the_cache_holds_it() -> None:
    # The object stops asking right after its Secret was written: the last pass that looks
    # must find it to delete it, though the cache has not seen it yet.
    clock = [0.0]
    recent = RecentSecrets(ttl=60, clock=lambda: clock[0])
    written = ours()
    recent.wrote(written)
    uid = written["metadata"]["ownerReferences"][0]["uid"]
    namespace = written["metadata"]["namespace"]
    assert [s["metadata"]["name"] for s in recent.with_recent(namespace, uid, [])] == ["db-conn"]
    rec = Recorded()
    deps = SecretDeps(
        **{**rec.deps().__dict__, "owned_secrets": lambda ns, u: recent.with_recent(ns, u, [])}
    )
    had = consumer(ref=None)
    had["status"] = {"conditions": [{"type": CONDITION_CONNECTION_SECRET, "status": "True"}]}
    assert reconcile_secret(had, twin(), deps) is None
    assert rec.calls == [("delete", "db-conn")]
    # Not another object's; not twice once the cache holds it; not after the TTL.
    assert recent.with_recent(namespace, "someone-else", []) == []
    assert recent.with_recent(namespace, uid, [written]) == [written]
    clock[0] = 61
    assert recent.with_recent(namespace, uid, []) == []
    recent.wrote(written)
    recent.forget(namespace, "db-conn")
    assert recent.with_recent(namespace, uid, []) == []


def test_the_owner_index_follows_the_consumer_secret_cache_and_recent_writes() -> None:
    clock = [0.0]
    secrets = ConnectionSecrets(
        name="probe",
        consumer=None,  # type: ignore[arg-type]  # the index makes no request
        provider=None,  # type: ignore[arg-type]
        resource=NOP,
        crd_name=CRD,
        consumer_scopes=[None],
        key_of_twin=lambda _ns, _name: None,
        enqueue=lambda _key: None,
        resync_period=None,
    )
    secrets._recent = RecentSecrets(ttl=60, clock=lambda: clock[0])
    secret = ours()
    namespace = secret["metadata"]["namespace"]
    uid = secret["metadata"]["ownerReferences"][0]["uid"]
    assert not secrets.owns(namespace, uid)
    secrets._on_consumer_secret("ADDED", copy.deepcopy(secret))
    assert secrets.owns(namespace, uid)
    moved = copy.deepcopy(secret)
    moved["metadata"]["ownerReferences"][0]["uid"] = "another-object"
    secrets._on_consumer_secret("MODIFIED", moved)
    assert not secrets.owns(namespace, uid)
    assert secrets.owns(namespace, "another-object")
    secrets._on_consumer_secret("DELETED", moved)
    assert not secrets.owns(namespace, "another-object")
    # Written a moment ago, not cached yet: its own until the write is a minute old.
    secrets._recent.wrote(secret)
    assert secrets.owns(namespace, uid)
    assert not secrets.owns("elsewhere", uid)
    clock[0] = 61
    assert not secrets.owns(namespace, uid)
