"""Which binding syncs an API that bindings through different connections both bind.

A consumer object has one twin, in one provider. Two providers may offer a CRD of the same
name, and two bindings may bind it through their two ClusterConnections: each would run an
object syncer, writing the same objects to both providers and fighting over their status.
So each binding *claims* the APIs it binds, and only the claims it is granted become sync
targets.

Two claims *collide* when they are on the same API (CRD name), through different
connections, and cover some of the same objects: a ClusterAPIBinding covers every namespace,
an APIBinding its own, so two APIBindings in different namespaces never collide. Bindings
through the same connection share one syncer and never collide.

Who gets the API (:func:`blocker`, pure and deterministic):

1. a binding that *holds* it keeps it: its syncer runs (or is paused while its connection
   is not ready), or, for a binding this process has not reconciled yet, its
   ``status.boundResources`` lists the API (so a restart changes nothing);
2. else the oldest binding (``metadata.creationTimestamp``, then kind, namespace, name) of
   those that no holder blocks gets it.

:class:`APIClaims` keeps every binding's claims, grants or refuses them and sets the
binding's sync targets in one step, so that a syncer through one connection is stopped
before one through another starts: objects are never synced to two providers at once. When
a claim on an API changes (its holder lets go: deleted, no longer bound, another
connection), every binding waiting for that API is queued again, and the first in line takes
over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from connector.runtime.keys import BindingKey
from functions.binder import BoundResource
from functions.common.objects import Obj


@dataclass(frozen=True, kw_only=True)
class SyncTarget:
    """One binding's request to sync one resource of one connection."""

    connection: str
    resource: BoundResource
    #: None: every namespace; otherwise only these.
    namespaces: frozenset[str] | None
    include_cluster_scoped: bool


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One binding's claim on one API."""

    binding: BindingKey
    connection: str
    #: None: every namespace, and cluster-scoped objects (a ClusterAPIBinding).
    namespace: str | None
    #: The binding's ``metadata.creationTimestamp`` (RFC 3339; "" if unknown: last in line).
    created: str
    #: Whether the binding has the API (see the module docstring).
    holds: bool

    def collides(self, other: Claim) -> bool:
        """Whether the two would sync some of the same objects to different providers."""
        return (
            other.binding != self.binding
            and other.connection != self.connection
            and (
                self.namespace is None
                or other.namespace is None
                or self.namespace == other.namespace
            )
        )


def _rank(claim: Claim) -> tuple[bool, str, BindingKey]:
    """Older first; RFC 3339 times in UTC sort as strings; ties by kind, namespace, name."""
    return (not claim.created, claim.created, claim.binding)


def blocker(claim: Claim, others: Iterable[Claim]) -> Claim | None:
    """The claim that keeps ``claim``'s API from it, or None if ``claim`` gets it.

    ``others`` are the other bindings' claims on the same API.
    """
    others = list(others)
    rivals = [o for o in others if claim.collides(o)]
    holders = [o for o in rivals if o.holds]
    if holders:
        first = min(holders, key=_rank)
        # Two holders only come from statuses written before this rule existed (or by two
        # processes): the older binding keeps the API.
        if not claim.holds or _rank(first) < _rank(claim):
            return first
        return None
    if claim.holds:
        return None

    def free(rival: Claim) -> bool:
        return not any(h.holds and h.collides(rival) for h in others)

    # A rival that a holder blocks would never get the API: it must not block this one.
    contenders = [r for r in rivals if free(r)]
    if not contenders:
        return None
    first = min(contenders, key=_rank)
    return first if _rank(first) < _rank(claim) else None


@dataclass(frozen=True, kw_only=True)
class Want:
    """What a binding asks for at one reconcile."""

    connection: str
    namespace: str | None
    created: str
    #: The APIs it binds. None: its connection is not ready; it keeps the APIs it holds
    #: (their syncing pauses) and asks for nothing new.
    resources: Sequence[BoundResource] | None


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """An API a binding binds but may not sync: ``holder`` has it."""

    resource: BoundResource
    holder: Claim


@dataclass(frozen=True, kw_only=True)
class Settlement:
    #: The APIs the binding has, in the order asked for: synced through it (unless the
    #: connector lacks a grant for one, or its connection is not ready).
    held: list[BoundResource]
    refused: list[Refusal]


def stored_claims(key: BindingKey, binding: Obj) -> dict[str, tuple[Claim, BoundResource]]:
    """The claims a binding's stored status records: each API in ``status.boundResources``,
    held, through ``spec.connectionRef``. What a restarted connector starts from."""
    meta = binding.get("metadata") or {}
    ref = (binding.get("spec") or {}).get("connectionRef") or {}
    connection = ref.get("name")
    status = binding.get("status") or {}
    entries = status.get("boundResources") if isinstance(status, dict) else None
    if not isinstance(connection, str) or not connection or not isinstance(entries, list):
        return {}
    out: dict[str, tuple[Claim, BoundResource]] = {}
    for entry in entries:
        resource = _resource_from_status(entry)
        if resource is None:
            continue
        claim = Claim(
            binding=key,
            connection=connection,
            namespace=key.namespace or None,
            created=str(meta.get("creationTimestamp") or ""),
            holds=True,
        )
        out[resource.crd_name] = (claim, resource)
    return out


def _resource_from_status(entry: Any) -> BoundResource | None:
    """A ``status.boundResources`` entry, read by the binder's own conversion; None if it
    is not one."""
    if not isinstance(entry, Mapping):
        return None
    try:
        return BoundResource.from_status(entry)
    except ValueError:
        return None


_Claims = dict[str, tuple[Claim, BoundResource]]


class APIClaims:
    """Every binding's claims; grants them and sets the binding's sync targets together."""

    def __init__(
        self,
        *,
        set_targets: Callable[[BindingKey, list[SyncTarget]], None],
        stored_keys: Callable[[], Iterable[BindingKey]],
        stored: Callable[[BindingKey], Obj | None],
        wake: Callable[[BindingKey], None],
    ) -> None:
        """``set_targets`` replaces a binding's sync targets (the SyncSupervisor's);
        ``stored_keys`` lists every binding in the cache and ``stored`` reads one (for those
        not reconciled yet); ``wake`` queues a binding's reconcile."""
        self._set_targets = set_targets
        self._stored_keys = stored_keys
        self._stored = stored
        self._wake = wake
        self._claims: dict[BindingKey, _Claims] = {}
        self._lock = threading.Lock()

    def settle(
        self,
        key: BindingKey,
        want: Want | None,
        targets: Sequence[SyncTarget],
        *,
        gone: bool = False,
    ) -> Settlement:
        """Grant or refuse what the binding wants (None: nothing), and make its sync
        targets those of ``targets`` whose API it holds. ``gone``: the binding no longer
        exists; forget it."""
        with self._lock:
            unseen = self._unseen_claims()
            before = self._claims[key] if key in self._claims else unseen.pop(key, {})
            others: dict[str, list[Claim]] = {}
            for binding, claims in [*self._claims.items(), *unseen.items()]:
                if binding == key:
                    continue
                for name, (claim, _) in claims.items():
                    others.setdefault(name, []).append(claim)

            after: _Claims = {}
            held: list[BoundResource] = []
            refused: list[Refusal] = []
            for claim, resource in _asked(key, want, before):
                name = resource.crd_name
                holder = blocker(claim, others.get(name, []))
                if holder is None:
                    after[name] = (replace(claim, holds=True), resource)
                    held.append(resource)
                else:
                    after[name] = (replace(claim, holds=False), resource)
                    refused.append(Refusal(resource=resource, holder=holder))

            names = {r.crd_name for r in held}
            self._set_targets(key, [t for t in targets if t.resource.crd_name in names])
            if gone:
                self._claims.pop(key, None)
            else:
                self._claims[key] = after
            changed = {
                name
                for name in before.keys() | after.keys()
                if _claim_of(before, name) != _claim_of(after, name)
            }
            waiting = sorted(
                {
                    binding
                    for binding, claims in self._claims.items()
                    if binding != key
                    and any(n in claims and not claims[n][0].holds for n in changed)
                }
            )
        for binding in waiting:
            self._wake(binding)
        return Settlement(held=held, refused=refused)

    def _unseen_claims(self) -> dict[BindingKey, _Claims]:
        """Stored claims of the bindings not reconciled since this process started."""
        unseen: dict[BindingKey, _Claims] = {}
        for key in self._stored_keys():
            if key in self._claims:
                continue
            obj = self._stored(key)
            if obj is not None:
                unseen[key] = stored_claims(key, obj)
        return unseen


def _asked(
    key: BindingKey, want: Want | None, before: Mapping[str, tuple[Claim, BoundResource]]
) -> list[tuple[Claim, BoundResource]]:
    """The binding's claims for this reconcile, each holding if it held the API before
    through the same connection."""
    if want is None:
        return []
    if want.resources is not None:
        resources = list(want.resources)
    else:  # paused: keep what it holds through the same connection
        resources = [
            resource
            for _, (claim, resource) in sorted(before.items())
            if claim.holds and claim.connection == want.connection
        ]
    asked = []
    for resource in resources:
        previous = _claim_of(before, resource.crd_name)
        claim = Claim(
            binding=key,
            connection=want.connection,
            namespace=want.namespace,
            created=want.created,
            holds=previous is not None
            and previous.holds
            and previous.connection == want.connection,
        )
        asked.append((claim, resource))
    return asked


def _claim_of(claims: Mapping[str, tuple[Claim, BoundResource]], name: str) -> Claim | None:
    entry = claims.get(name)
    return entry[0] if entry is not None else None
