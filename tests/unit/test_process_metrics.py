"""What ``/metrics`` says about the process itself, and the heap ``run`` settles at start."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from connector.cli.run import settle_heap
from connector.kube.metrics import Metrics


def test_the_process_memory_cpu_and_collections_are_exported() -> None:
    registry = Metrics().registry
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert registry.get_sample_value("process_cpu_seconds_total") is not None
    assert registry.get_sample_value("python_gc_collections_total", {"generation": "2"}) is not None
    assert "python_info" in {family.name for family in registry.collect()}


def test_each_collection_is_timed_once_asked_and_no_longer_after_the_undo() -> None:
    metrics = Metrics()
    registry = metrics.registry

    def collections(generation: str) -> float:
        value = registry.get_sample_value(
            "api_connector_gc_pause_seconds_count", {"generation": generation}
        )
        return value or 0.0

    gc.collect()
    assert collections("2") == 0, "nothing recorded before it is asked"
    undo = metrics.time_gc_pauses()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        undo()
    assert collections("2") == 1
    assert collections("0") >= 1
    pause = registry.get_sample_value("api_connector_gc_pause_seconds_sum", {"generation": "2"})
    assert pause is not None and 0 < pause < 10
    gc.collect()
    assert collections("2") == 1


@pytest.fixture
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("_unfreeze")
def test_settling_the_heap_leaves_full_collections_only_what_came_after() -> None:
    gc.unfreeze()
    gc.collect()
    tracked_before = len(gc.get_objects())
    settle_heap()
    assert gc.get_freeze_count() >= tracked_before * 0.9
    later = [{"n": [i]} for i in range(1000)]
    assert len(gc.get_objects()) < tracked_before / 2, "frozen objects are out of sight"
    assert len(later) == 1000
