"""The connection controller's CRD writes: two connections never take each other's CRD,
even before the consumer cache shows the first one's."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from connector.controllers.connection_controller import ConnectionController
from connector.kube.client import KubeClient
from connector.kube.errors import ConflictError
from connector.kube.resources import Resource
from connector.runtime.events import EventRecorder
from connector.runtime.informer import Informer
from connector.stages import InProcessStages
from functions.common import LABEL_CONNECTION
from functions.crd_puller.types import CRDConflict

NAME = "nopresources.nop.example.org"


class Cache:
    """An informer cache that has seen nothing yet."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def get(self, _namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    def list(self) -> list[dict[str, Any]]:
        return list(self.objects.values())


class Consumer:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def apply(self, _res: Resource, obj: dict[str, Any], field_manager: str) -> dict[str, Any]:
        self.applied.append(obj)
        written = copy.deepcopy(obj)
        written["metadata"]["resourceVersion"] = str(len(self.applied))
        return written


def crd(owner: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME, "labels": {LABEL_CONNECTION: owner}},
        "spec": {},
    }


@pytest.fixture
def parts() -> tuple[ConnectionController, Consumer, Cache]:
    consumer, cache = Consumer(), Cache()
    controller = ConnectionController(
        cast(KubeClient, consumer),
        stages=InProcessStages(),
        recorder=EventRecorder(lambda _namespace, _event: None),
        connections=cast(Informer, Cache()),
        consumer_crds=cast(Informer, cache),
        resync_period=600.0,
        workers=1,
        on_provider_changed=lambda _name: None,
    )
    return controller, consumer, cache


def test_a_crd_just_installed_by_one_connection_is_not_overwritten_by_another(
    parts: tuple[ConnectionController, Consumer, Cache],
) -> None:
    controller, consumer, _cache = parts
    controller._apply_crd(crd("provider-a"))
    with pytest.raises(ConflictError, match="provider-a"):
        controller._apply_crd(crd("provider-b"))
    assert [c["metadata"]["labels"][LABEL_CONNECTION] for c in consumer.applied] == ["provider-a"]
    # The next pull of provider-b sees the CRD as provider-a's: a conflict, reported.
    (seen,) = controller._consumer_crds_for("provider-b", {NAME})
    assert seen["metadata"]["labels"][LABEL_CONNECTION] == "provider-a"


def test_the_owner_updates_its_own_crd(
    parts: tuple[ConnectionController, Consumer, Cache],
) -> None:
    controller, consumer, cache = parts
    cached = crd("provider-a")
    cached["metadata"]["resourceVersion"] = "1"
    cache.objects[NAME] = cached
    controller._apply_crd(crd("provider-a"))
    controller._apply_crd(crd("provider-a"))
    assert len(consumer.applied) == 2


def test_crd_conflicts_are_remembered_per_connection_and_changes_wake_the_bindings() -> None:
    woken: list[str] = []
    controller = ConnectionController(
        cast(KubeClient, Consumer()),
        stages=InProcessStages(),
        recorder=EventRecorder(lambda _namespace, _event: None),
        connections=cast(Informer, Cache()),
        consumer_crds=cast(Informer, Cache()),
        resync_period=600.0,
        workers=1,
        on_provider_changed=lambda _name: None,
        on_conflicts_changed=woken.append,
    )
    taken = CRDConflict(name=NAME, message="belongs to connection provider-a")
    controller._record_conflicts("provider-b", [taken])
    controller._record_conflicts("provider-b", [taken])
    assert controller.crd_conflicts("provider-b") == [taken]
    assert controller.crd_conflicts("provider-a") == []
    controller._record_conflicts("provider-b", [])
    assert woken == ["provider-b", "provider-b"], "once per change"
