"""Which binding syncs an API that bindings through two connections bind: the rule, and the
registry that applies it together with the bindings' sync targets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from connector.controllers.claims import (
    APIClaims,
    Claim,
    SyncTarget,
    Want,
    blocker,
    stored_claims,
)
from connector.runtime.keys import BindingKey
from tests.support import NOP_BOUND

OLD = "2026-01-01T00:00:00Z"
NEW = "2026-01-02T00:00:00Z"


def claim(
    name: str,
    connection: str,
    *,
    namespace: str | None = None,
    created: str = NEW,
    holds: bool = False,
) -> Claim:
    kind = "APIBinding" if namespace else "ClusterAPIBinding"
    return Claim(
        binding=BindingKey(kind, namespace or "", name),
        connection=connection,
        namespace=namespace,
        created=created,
        holds=holds,
    )


@dataclass(frozen=True)
class Case:
    reason: str
    claim: Claim
    others: list[Claim]
    #: The binding name of the claim that blocks it, or None: it gets the API.
    want: str | None


CASES = [
    Case("alone, it gets the API", claim("mine", "b"), [], None),
    Case(
        "a binding through another connection holds it: it keeps it, even if younger",
        claim("mine", "b", created=OLD),
        [claim("first", "a", holds=True)],
        "first",
    ),
    Case(
        "a binding through the same connection holds it: they share its syncer",
        claim("mine", "a"),
        [claim("first", "a", holds=True)],
        None,
    ),
    Case(
        "APIBindings in different namespaces sync different objects",
        claim("mine", "b", namespace="team-b"),
        [claim("first", "a", namespace="team-a", holds=True)],
        None,
    ),
    Case(
        "APIBindings in the same namespace collide",
        claim("mine", "b", namespace="team-a"),
        [claim("first", "a", namespace="team-a", holds=True)],
        "first",
    ),
    Case(
        "a ClusterAPIBinding covers every namespace",
        claim("mine", "b", namespace="team-b"),
        [claim("first", "a", holds=True)],
        "first",
    ),
    Case(
        "nobody holds it: the older binding goes first",
        claim("mine", "b", created=NEW),
        [claim("older", "a", created=OLD)],
        "older",
    ),
    Case(
        "nobody holds it: a younger binding waits",
        claim("mine", "b", created=OLD),
        [claim("younger", "a", created=NEW)],
        None,
    ),
    Case(
        "an older binding that a holder blocks does not block this one",
        claim("mine", "c", namespace="team-b", created=NEW),
        [
            claim("older", "b", created=OLD),
            claim("holder", "a", namespace="team-a", holds=True),
        ],
        None,
    ),
    Case(
        "created at the same second: kind, namespace, name decide",
        claim("b-binding", "b"),
        [claim("a-binding", "a")],
        "a-binding",
    ),
    Case(
        "an unknown creation time goes last",
        claim("mine", "b", created=""),
        [claim("other", "a", created=NEW)],
        "other",
    ),
    Case(
        "two holders (statuses of an older connector): the older one keeps it",
        claim("mine", "b", created=NEW, holds=True),
        [claim("older", "a", created=OLD, holds=True)],
        "older",
    ),
    Case(
        "two holders: the younger one does not take it from this one",
        claim("mine", "b", created=OLD, holds=True),
        [claim("younger", "a", created=NEW, holds=True)],
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_who_gets_an_api_that_two_connections_offer(case: Case) -> None:
    got = blocker(case.claim, case.others)
    got_name = got.binding.name if got is not None else None
    assert got_name == case.want, f"-want {case.want}, +got {got_name}"


def test_the_rule_does_not_depend_on_the_order_of_the_others() -> None:
    mine = claim("mine", "c", created=NEW)
    others = [claim("x", "a", created=OLD), claim("y", "b", created=OLD)]
    first = blocker(mine, others)
    assert first is not None
    assert blocker(mine, list(reversed(others))) == first


A = BindingKey("ClusterAPIBinding", "", "nop.example.org")
B = BindingKey("APIBinding", "team-a", "nopresources.nop.example.org")


def target(connection: str, namespace: str | None = None) -> SyncTarget:
    return SyncTarget(
        connection=connection,
        resource=NOP_BOUND,
        namespaces=None if namespace is None else frozenset({namespace}),
        include_cluster_scoped=namespace is None,
    )


def want(connection: str, *, namespace: str | None = None, created: str = NEW) -> Want:
    return Want(connection=connection, namespace=namespace, created=created, resources=[NOP_BOUND])


@dataclass
class Registry:
    """An APIClaims whose sync targets and wake-ups are recorded; checks after every change
    that no API is synced through two connections at once."""

    stored: list[tuple[BindingKey, dict[str, Any]]] = field(default_factory=list)
    targets: dict[BindingKey, list[SyncTarget]] = field(default_factory=dict)
    woken: list[BindingKey] = field(default_factory=list)
    claims: APIClaims = field(init=False)

    def __post_init__(self) -> None:
        self.claims = APIClaims(
            set_targets=self.set_targets,
            stored_keys=lambda: [key for key, _ in self.stored],
            stored=lambda key: dict(self.stored).get(key),
            wake=self.woken.append,
        )

    def set_targets(self, key: BindingKey, targets: list[SyncTarget]) -> None:
        self.targets[key] = targets
        connections = {t.connection for ts in self.targets.values() for t in ts}
        assert len(connections) <= 1, f"synced through {connections} at once"

    def synced(self, key: BindingKey) -> list[str]:
        return [t.connection for t in self.targets.get(key, [])]


def test_the_first_binding_keeps_the_api_and_the_second_takes_over_when_it_goes() -> None:
    reg = Registry()
    first = reg.claims.settle(A, want("a", created=NEW), [target("a")])
    assert first.held == [NOP_BOUND] and reg.synced(A) == ["a"]

    # Older, but second: it does not take the API away.
    second = reg.claims.settle(
        B, want("b", namespace="team-a", created=OLD), [target("b", "team-a")]
    )
    assert second.held == []
    (refusal,) = second.refused
    assert (refusal.holder.binding, refusal.holder.connection) == (A, "a")
    assert reg.synced(B) == []

    reg.claims.settle(A, None, [], gone=True)
    assert reg.synced(A) == [] and reg.woken == [B]
    taken = reg.claims.settle(
        B, want("b", namespace="team-a", created=OLD), [target("b", "team-a")]
    )
    assert taken.held == [NOP_BOUND] and reg.synced(B) == ["b"]


def test_a_binding_whose_connection_is_not_ready_keeps_the_api() -> None:
    reg = Registry()
    reg.claims.settle(A, want("a"), [target("a")])
    paused = reg.claims.settle(A, replace(want("a"), resources=None), [])
    assert paused.held == [NOP_BOUND] and reg.synced(A) == []
    waiting = reg.claims.settle(B, want("b", namespace="team-a"), [target("b", "team-a")])
    assert waiting.held == [] and waiting.refused[0].holder.binding == A


def test_a_binding_that_no_longer_binds_the_api_lets_the_waiting_one_take_it() -> None:
    reg = Registry()
    reg.claims.settle(A, want("a"), [target("a")])
    reg.claims.settle(B, want("b", namespace="team-a"), [target("b", "team-a")])
    reg.woken.clear()
    # Not offered any more: it wants nothing, but the binding still exists.
    reg.claims.settle(A, replace(want("a"), resources=[]), [])
    assert reg.woken == [B]
    assert reg.claims.settle(B, want("b", namespace="team-a"), [target("b", "team-a")]).held == [
        NOP_BOUND
    ]


def test_only_waiting_bindings_are_woken_and_an_unchanged_claim_wakes_nobody() -> None:
    reg = Registry()
    reg.claims.settle(A, want("a"), [target("a")])
    reg.claims.settle(B, want("b", namespace="team-a"), [target("b", "team-a")])
    assert reg.woken == []
    reg.claims.settle(A, want("a"), [target("a")])
    reg.claims.settle(B, want("b", namespace="team-a"), [target("b", "team-a")])
    assert reg.woken == []


def test_a_binding_moved_to_another_connection_claims_the_api_anew() -> None:
    reg = Registry()
    reg.claims.settle(A, want("a"), [target("a")])
    reg.claims.settle(B, want("b", namespace="team-a", created=OLD), [target("b", "team-a")])
    # A now points at connection c: its hold through a does not carry over, and the older
    # waiting binding goes first.
    moved = reg.claims.settle(A, want("c"), [target("c")])
    assert moved.held == [] and moved.refused[0].holder.binding == B
    assert reg.woken == [B]
    assert reg.claims.settle(
        B, want("b", namespace="team-a", created=OLD), [target("b", "team-a")]
    ).held


def binding_obj(key: BindingKey, connection: str, *, bound: bool, created: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": key.name, "creationTimestamp": created}
    if key.namespace:
        meta["namespace"] = key.namespace
    return {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": key.kind,
        "metadata": meta,
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": connection}},
        "status": {"boundResources": [NOP_BOUND.to_status()] if bound else []},
    }


def test_after_a_restart_the_binding_that_had_the_api_keeps_it_whoever_reconciles_first() -> None:
    for order in ([A, B], [B, A]):
        reg = Registry(
            stored=[
                (A, binding_obj(A, "a", bound=False, created=OLD)),
                (B, binding_obj(B, "b", bound=True, created=NEW)),
            ]
        )
        wants = {A: want("a", created=OLD), B: want("b", namespace="team-a", created=NEW)}
        targets = {A: [target("a")], B: [target("b", "team-a")]}
        held = {key: reg.claims.settle(key, wants[key], targets[key]).held for key in order}
        assert held == {A: [], B: [NOP_BOUND]}, order


def test_a_stored_status_reads_back_as_held_claims() -> None:
    claims = stored_claims(B, binding_obj(B, "b", bound=True, created=OLD))
    (got_claim, resource) = claims[NOP_BOUND.crd_name]
    assert resource == NOP_BOUND
    assert got_claim == Claim(
        binding=B, connection="b", namespace="team-a", created=OLD, holds=True
    )
    assert stored_claims(B, {"metadata": {"name": "x"}}) == {}


def test_a_stored_entry_with_only_a_name_reads_back_as_the_api_it_names() -> None:
    stored = binding_obj(B, "b", bound=True, created=OLD)
    stored["status"]["boundResources"] = [{"name": NOP_BOUND.crd_name}, {"group": "no-name"}]
    ((name, (_, resource)),) = stored_claims(B, stored).items()
    assert name == NOP_BOUND.crd_name
    assert (resource.group, resource.plural, resource.scope, resource.version) == (
        NOP_BOUND.group,
        NOP_BOUND.plural,
        "Namespaced",
        "",
    )
