"""reconcile_binding with plain callables: status and sync targets follow the binder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.controllers.binding_reconcile import (
    BindingDeps,
    BindingKey,
    SyncTarget,
    reconcile_binding,
)
from functions.binder.types import BindRequest, BindResult, BoundResource
from functions.common import set_condition

NOW = "2026-01-01T00:00:00Z"
NOP = BoundResource(
    crd_name="nopresources.nop.example.org",
    group="nop.example.org",
    kind="NopResource",
    plural="nopresources",
    scope="Namespaced",
    version="v1alpha1",
)
KEY = BindingKey("APIBinding", "team-a", "nop.example.org")


def binding(status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "APIBinding",
        "metadata": {"name": "nop.example.org", "namespace": "team-a"},
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": "c"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


@dataclass
class World:
    binding: dict[str, Any] | None
    offered: bool = True
    statuses: list[dict[str, Any]] = field(default_factory=list)
    targets: dict[BindingKey, list[SyncTarget]] = field(default_factory=dict)

    def bind(self, req: BindRequest) -> BindResult:
        ok = self.offered and req.connection is not None
        cond = set_condition(
            (req.binding.get("status") or {}).get("conditions"),
            type_="Ready",
            status="True" if ok else "False",
            reason="Bound" if ok else "NotOffered",
            message="ok" if ok else "not offered",
            now=req.now,
        )
        return BindResult(
            connection_name="c",
            resources=[NOP] if ok else [],
            namespaces=["team-a"],
            include_cluster_scoped=False,
            conditions=cond,
        )

    def deps(self) -> BindingDeps:
        return BindingDeps(
            get_binding=lambda key: self.binding,
            get_connection=lambda name: {"metadata": {"name": name}},
            bind=self.bind,
            write_status=lambda key, status: self.statuses.append(status),
            set_targets=self.targets.__setitem__,
            warn=lambda obj, reason, message: None,
            now=lambda: NOW,
        )


def test_a_bound_api_becomes_a_sync_target_limited_to_the_namespace() -> None:
    world = World(binding=binding())
    reconcile_binding(KEY, world.deps())
    (target,) = world.targets[KEY]
    assert target.resource == NOP
    assert target.namespaces == frozenset({"team-a"})
    assert world.statuses[0]["boundResources"] == [NOP.to_status()]


def test_an_api_no_longer_offered_stops_syncing_and_says_so() -> None:
    world = World(binding=binding(), offered=False)
    reconcile_binding(KEY, world.deps())
    assert world.targets[KEY] == []
    assert world.statuses[0]["conditions"][0]["reason"] == "NotOffered"


def test_an_unchanged_status_is_not_written_again() -> None:
    world = World(binding=binding())
    reconcile_binding(KEY, world.deps())
    world.binding = binding(status=world.statuses[0])
    reconcile_binding(KEY, world.deps())
    assert len(world.statuses) == 1


def test_a_deleted_binding_removes_its_targets() -> None:
    world = World(binding=None)
    world.targets[KEY] = [
        SyncTarget(connection="c", resource=NOP, namespaces=None, include_cluster_scoped=True)
    ]
    reconcile_binding(KEY, world.deps())
    assert world.targets[KEY] == []
