"""reconcile_connection with plain callables: what it writes, and what it never does."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pytest

from connector.controllers.connection_reconcile import (
    ConnectionDeps,
    Credentials,
    CredentialsError,
    NotSynced,
    crds_to_compare,
    credentials_from_secret,
    reconcile_connection,
)
from connector.kube.config import ConfigError
from connector.kube.errors import ForbiddenError, UnauthorizedError, UnreachableError
from connector.runtime.workqueue import Result
from functions.common import LABEL_CONNECTION, set_condition
from functions.crd_puller.types import (
    CRDConflict,
    OfferedAPI,
    PullRequest,
    PullResult,
    WithheldAPI,
)

NOW = "2026-01-01T00:00:00Z"
DONE = Result()
RETRY = Result(requeue=True)
OFFERED = OfferedAPI(
    name="nopresources.nop.example.org",
    group="nop.example.org",
    kind="NopResource",
    plural="nopresources",
    scope="Namespaced",
    versions=["v1alpha1"],
    storage_version="v1alpha1",
)


def crd(name: str, *, owner: str | None) -> dict[str, Any]:
    labels = {LABEL_CONNECTION: owner} if owner is not None else {}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": labels},
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def connection(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterConnection",
        "metadata": {"name": "c", "uid": "u1"},
        "spec": {"secretRef": {"kind": "KubeConfig", "name": "s", "namespace": "upbound-system"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


SECRET = {
    "metadata": {"name": "s", "namespace": "upbound-system"},
    "data": {"kubeconfig": b64("x")},
}


class View:
    def __init__(self, crds: list[dict[str, Any]] | None, error: Exception | None = None) -> None:
        self.crds = crds
        self.error = error

    def bindable_crds(self) -> list[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        if self.crds is None:
            raise NotSynced("not listed yet")
        return self.crds


@dataclass
class World:
    conn: dict[str, Any] | None
    secret: dict[str, Any] | None = None
    view: View | Exception = field(default_factory=lambda: View([]))
    #: What reading the Secret raises instead (its cache not listed yet, or failing).
    secret_error: Exception | None = None
    statuses: list[dict[str, Any]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    requests: list[PullRequest] = field(default_factory=list)
    conflicts: list[CRDConflict] = field(default_factory=list)
    withheld: list[WithheldAPI] = field(default_factory=list)
    recorded: list[tuple[str, list[CRDConflict]]] = field(default_factory=list)
    #: Consumer CRDs as the reconcile reads them (the cache, or our own newer writes).
    crds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What happens under the CRD write lock, in order.
    locked: list[str] = field(default_factory=list)

    def pull(self, req: PullRequest) -> PullResult:
        self.requests.append(req)
        if req.provider_error is not None:
            cond = set_condition(
                req.previous_conditions,
                type_="Ready",
                status="False",
                reason=req.provider_error.reason,
                message=req.provider_error.message,
                now=req.now,
            )
            return PullResult(apply=[], offered=[], conflicts=[], conditions=cond)
        cond = set_condition(
            req.previous_conditions,
            type_="Ready",
            status="True",
            reason="Ready",
            message="Provider controlplane is available",
            now=req.now,
        )
        apply = [crd(c["metadata"]["name"], owner="c") for c in req.provider_crds]
        offered = [OFFERED] if req.provider_crds else []
        return PullResult(
            apply=apply,
            offered=offered,
            conflicts=self.conflicts,
            conditions=cond,
            withheld=self.withheld,
        )

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.secret_error is not None:
            raise self.secret_error
        return self.secret

    def connect(self, name: str, creds: Credentials) -> View:
        if isinstance(self.view, Exception):
            raise self.view
        return self.view

    def apply_crd(self, obj: dict[str, Any]) -> None:
        self.locked.append(f"apply {obj['metadata']['name']}")
        self.applied.append(obj)
        self.crds[obj["metadata"]["name"]] = obj

    def consumer_crd(self, name: str) -> dict[str, Any] | None:
        self.locked.append(f"read {name}")
        return self.crds.get(name)

    def __enter__(self) -> None:  # the CRD write lock
        self.locked.append("lock")

    def __exit__(self, *_exc: object) -> None:
        self.locked.append("unlock")

    def deps(self) -> ConnectionDeps:
        return ConnectionDeps(
            get_connection=lambda name: self.conn,
            get_secret=self.get_secret,
            connect=self.connect,
            disconnect=self.disconnected.append,
            consumer_crds=lambda: list(self.crds.values()),
            consumer_crd=self.consumer_crd,
            apply_crd=self.apply_crd,
            crd_writes=self,
            write_status=lambda name, status: self.statuses.append(status),
            pull=self.pull,
            warn=lambda obj, reason, message: self.warnings.append((reason, message)),
            now=lambda: NOW,
            record_conflicts=lambda name, conflicts: self.recorded.append((name, conflicts)),
        )


def test_a_reachable_provider_installs_its_crds_and_offers_them() -> None:
    world = World(
        conn=connection(), secret=SECRET, view=View([{"metadata": {"name": OFFERED.name}}])
    )
    assert reconcile_connection("c", world.deps()) == Result()
    assert [c["metadata"]["name"] for c in world.applied] == [OFFERED.name]
    (status,) = world.statuses
    assert status["offeredAPIs"] == [OFFERED.to_status()]
    assert status["conditions"][0]["reason"] == "Ready"


WITHHELD = WithheldAPI(
    name="xnopresources.nop.example.org",
    group="nop.example.org",
    message="xnopresources.nop.example.org is the composite resource of XRD ...",
)


def test_the_apis_an_xrd_withholds_are_listed_with_why() -> None:
    world = World(
        conn=connection(),
        secret=SECRET,
        view=View([{"metadata": {"name": OFFERED.name}}]),
        withheld=[WITHHELD],
    )
    reconcile_connection("c", world.deps())
    (status,) = world.statuses
    assert status["offeredAPIs"] == [OFFERED.to_status()]
    assert status["withheldAPIs"] == [WITHHELD.to_status()]


def test_an_unchanged_status_is_not_written_again() -> None:
    world = World(
        conn=connection(), secret=SECRET, view=View([{"metadata": {"name": OFFERED.name}}])
    )
    reconcile_connection("c", world.deps())
    world.conn = connection(status=world.statuses[0])
    reconcile_connection("c", world.deps())
    assert len(world.statuses) == 1


@pytest.mark.parametrize(
    ("secret", "view", "reason", "outcome"),
    [
        (None, View([]), "SecretNotFound", DONE),
        ({"metadata": {"name": "s"}, "data": {"other": b64("x")}}, View([]), "InvalidSecret", DONE),
        (
            {"metadata": {"name": "s"}, "data": {"kubeconfig": "%%%"}},
            View([]),
            "InvalidSecret",
            Result(),
        ),
        (SECRET, ConfigError("no clusters"), "InvalidKubeconfig", DONE),
        (SECRET, View(None, UnauthorizedError("401")), "Unauthorized", RETRY),
        (SECRET, View(None, UnreachableError("refused")), "ProviderUnreachable", RETRY),
    ],
    ids=["missing", "no-key", "not-base64", "bad-kubeconfig", "unauthorized", "unreachable"],
)
def test_a_provider_error_names_its_reason_and_keeps_what_was_offered(
    secret: dict[str, Any] | None, view: View | Exception, reason: str, outcome: object
) -> None:
    before = {
        "conditions": [],
        "offeredAPIs": [OFFERED.to_status()],
        "withheldAPIs": [WITHHELD.to_status()],
    }
    world = World(conn=connection(status=before), secret=secret, view=view)
    assert reconcile_connection("c", world.deps()) == outcome
    (status,) = world.statuses
    assert status["conditions"][0]["reason"] == reason
    assert status["offeredAPIs"] == [OFFERED.to_status()]
    assert status["withheldAPIs"] == [WITHHELD.to_status()]
    assert world.applied == []
    assert world.warnings and world.warnings[0][0] == reason


def test_a_deleted_connection_stops_its_provider_watch() -> None:
    world = World(conn=None)
    assert reconcile_connection("c", world.deps()) == Result()
    assert world.disconnected == ["c"]
    assert world.statuses == []


def test_the_crds_another_connection_owns_are_recorded_for_the_bindings_to_name() -> None:
    taken = CRDConflict(name=OFFERED.name, message="belongs to connection a")
    world = World(
        conn=connection(),
        secret=SECRET,
        view=View([{"metadata": {"name": OFFERED.name}}]),
        conflicts=[taken],
    )
    reconcile_connection("c", world.deps())
    assert world.recorded == [("c", [taken])]
    assert world.warnings == [("CRDConflict", taken.message)]


def test_an_outage_keeps_the_recorded_conflicts_and_a_deletion_clears_them() -> None:
    world = World(conn=connection(), secret=SECRET, view=View(None, UnreachableError("down")))
    reconcile_connection("c", world.deps())
    assert world.recorded == [], "nothing is known about the provider"
    world.conn = None
    reconcile_connection("c", world.deps())
    assert world.recorded == [("c", [])]


@pytest.mark.parametrize(
    ("secret_error", "view"),
    [(NotSynced("secrets"), View([])), (None, View(None))],
    ids=["secrets", "provider-crds"],
)
def test_a_cache_not_listed_yet_gives_no_verdict_and_holds_no_worker(
    secret_error: Exception | None, view: View
) -> None:
    # No SecretNotFound before the Secrets are known, no status before the provider's CRDs
    # are: the cache's first list wakes the connection (no sleeping or polling here).
    world = World(conn=connection(), secret=SECRET, view=view, secret_error=secret_error)
    assert reconcile_connection("c", world.deps()) == Result()
    assert world.statuses == [] and world.warnings == [] and world.disconnected == []


def test_a_secret_cache_that_cannot_list_is_reported_with_its_error() -> None:
    world = World(
        conn=connection(),
        view=View([]),
        secret_error=ForbiddenError('cannot list resource "secrets"', status=403),
    )
    assert reconcile_connection("c", world.deps()) == DONE, "its recovery wakes the connection"
    (status,) = world.statuses
    ready = status["conditions"][0]
    assert (ready["reason"], ready["status"]) == ("SecretNotFound", "False")
    assert "cannot be read" in ready["message"] and "secrets" in ready["message"]


def test_robot_token_secrets_need_every_key() -> None:
    data = {
        "token": "s3cr3t-token",
        "organization": "o",
        "spacesBaseURL": "https://s",
        "controlPlaneGroupName": "g",
    }
    with pytest.raises(CredentialsError, match="controlPlaneName"):
        credentials_from_secret({"metadata": {}, "stringData": data}, "UpboundRobotToken")
    data["controlPlaneName"] = "n"
    creds = credentials_from_secret({"metadata": {}, "stringData": data}, "UpboundRobotToken")
    assert "s3cr3t" not in repr(creds)
    assert creds.data["controlPlaneName"] == "n"


def test_a_crd_is_checked_and_written_under_the_lock_every_connection_shares() -> None:
    world = World(
        conn=connection(), secret=SECRET, view=View([{"metadata": {"name": OFFERED.name}}])
    )
    reconcile_connection("c", world.deps())
    assert world.locked == ["lock", f"read {OFFERED.name}", f"apply {OFFERED.name}", "unlock"]


@pytest.mark.parametrize(
    ("owner", "want_applied"),
    [("provider-a", False), (None, False), ("c", True)],
    ids=["another-connection", "nobody", "its-own"],
)
def test_a_crd_installed_meanwhile_by_another_is_never_taken_over(
    owner: str | None, want_applied: bool
) -> None:
    world = World(
        conn=connection(), secret=SECRET, view=View([{"metadata": {"name": OFFERED.name}}])
    )
    # The pull read the consumer before another connection's reconcile wrote this CRD.
    world.crds[OFFERED.name] = crd(OFFERED.name, owner=owner)
    world.conflicts = []
    outcome = reconcile_connection("c", world.deps())
    assert bool(world.applied) is want_applied
    if want_applied:
        assert outcome == Result()
    else:
        # Retried: the next pull sees the CRD, and reports the conflict.
        assert outcome == RETRY
        assert world.statuses == [] and world.warnings == []


def test_the_puller_compares_crds_of_the_same_name_and_those_the_connection_owns() -> None:
    crds = [
        crd("b.example.org", owner="c"),
        crd("a.example.org", owner="provider-a"),
        crd("d.example.org", owner=None),
        crd("e.example.org", owner="provider-a"),
    ]
    got = crds_to_compare("c", {"a.example.org", "x.example.org"}, crds)
    assert [c["metadata"]["name"] for c in got] == ["a.example.org", "b.example.org"]
