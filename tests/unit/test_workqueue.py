"""The work queue keeps controller-runtime's promises, checked with real threads and clocks."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter

import pytest
import structlog
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from connector.kube.errors import ConflictError, ServerError
from connector.kube.metrics import Metrics
from connector.runtime.workqueue import (
    RateLimiter,
    Result,
    TerminalError,
    WorkQueue,
    process_next,
    run_workers,
)


class FakeClock:
    """A clock the test moves by hand, so delays are checked exactly and instantly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_adding_a_waiting_key_again_does_not_queue_it_twice() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    for _ in range(3):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert q.get(0) == "a"
    assert q.get(0) == "b"
    assert q.get(0) is None


def test_keys_come_out_in_the_order_they_were_added() -> None:
    q: WorkQueue[int] = WorkQueue("t")
    for i in range(5):
        q.add(i)
    assert [q.get(0) for _ in range(5)] == [0, 1, 2, 3, 4]


def test_a_key_added_while_processing_is_not_handed_out_until_done() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")
    assert q.get(0) is None, "a second worker must not get a key that is being processed"
    q.done("a")
    assert q.get(0) == "a", "the change made during processing must be reconciled afterwards"
    q.done("a")
    assert q.get(0) is None


def test_done_without_a_new_add_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")
    assert q.get(0) == "a"
    q.done("a")
    assert len(q) == 0


def test_workers_never_reconcile_the_same_key_concurrently() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    active: Counter[str] = Counter()
    overlaps: list[str] = []
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def reconcile(key: str) -> None:
        with lock:
            active[key] += 1
            calls[key] += 1
            if active[key] > 1:
                overlaps.append(key)
        time.sleep(0.002)
        with lock:
            active[key] -= 1

    pool = run_workers(q, 8, reconcile, "serial")
    try:
        for _ in range(200):
            for key in ("a", "b", "c"):
                q.add(key)
            time.sleep(0.0005)
        deadline = time.monotonic() + 5
        while (len(q) or any(active.values())) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        pool.stop()
    assert not overlaps
    assert set(calls) == {"a", "b", "c"}
    # De-duplication: far fewer reconciles than the 200 adds per key.
    assert all(n < 200 for n in calls.values())


def test_the_latest_add_is_always_reconciled_even_under_contention() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    seen: list[int] = []
    state = {"version": 0}
    lock = threading.Lock()

    def reconcile(key: str) -> None:
        with lock:
            seen.append(state["version"])
        time.sleep(0.001)

    pool = run_workers(q, 4, reconcile, "latest")
    try:
        for v in range(1, 101):
            with lock:
                state["version"] = v
            q.add("obj")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if seen and seen[-1] == 100:
                    break
            time.sleep(0.005)
    finally:
        pool.stop()
    assert seen[-1] == 100


def test_rate_limited_backoff_doubles_per_key_up_to_the_cap_and_forget_resets_it() -> None:
    limiter: RateLimiter[str] = RateLimiter(base_delay=0.005, max_delay=1.0, qps=1e6, burst=10**6)
    delays = [limiter.when("a") for _ in range(10)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert limiter.when("b") == pytest.approx(0.005), "keys back off independently"
    assert limiter.num_requeues("a") == 10
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)


def test_the_overall_bucket_spaces_out_a_flood_of_failures() -> None:
    limiter: RateLimiter[int] = RateLimiter(base_delay=0.001, max_delay=60, qps=10, burst=5)
    delays = [limiter.when(i) for i in range(15)]
    assert delays[:5] == pytest.approx([0.001] * 5), "the burst is served at once"
    # After the burst, distinct keys still wait for the bucket: 0.1 s apart at 10 qps.
    assert delays[5] == pytest.approx(0.1, abs=0.02)
    assert delays[14] == pytest.approx(1.0, abs=0.05)


def test_add_rate_limited_makes_the_key_ready_only_after_its_backoff() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(
        "t", rate_limiter=RateLimiter(base_delay=1.0, max_delay=100, qps=1e6), clock=clock
    )
    q.add_rate_limited("a")
    assert q.get(0) is None
    clock.now += 0.99
    assert q.get(0) is None
    clock.now += 0.02
    assert q.get(0) == "a"
    q.done("a")
    q.add_rate_limited("a")
    clock.now += 1.5
    assert q.get(0) is None, "the second failure waits twice as long"
    clock.now += 0.6
    assert q.get(0) == "a"


def test_add_after_delays_and_the_earliest_delay_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue("t", clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 2)
    q.add_after("a", 5)
    assert len(q) == 0
    clock.now += 2
    assert q.get(0) == "a"
    q.done("a")
    clock.now += 10
    assert q.get(0) is None, "superseded delays must not deliver the key again"


def test_add_after_a_delay_that_already_passed_queues_at_once() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add_after("a", 0)
    assert q.get(0) == "a"


def test_a_blocked_get_wakes_up_when_a_delayed_key_becomes_ready() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    started = time.monotonic()
    q.add_after("a", 0.15)
    assert q.get(timeout=2) == "a"
    elapsed = time.monotonic() - started
    assert 0.14 <= elapsed < 1.0


def test_a_blocked_get_wakes_up_when_a_key_is_added_from_another_thread() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    threading.Timer(0.05, q.add, args=("a",)).start()
    assert q.get(timeout=2) == "a"


def test_get_returns_none_after_its_timeout() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    started = time.monotonic()
    assert q.get(timeout=0.05) is None
    assert time.monotonic() - started >= 0.05


def test_shutdown_wakes_blocked_getters_and_refuses_new_keys() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    results: list[str | None] = []
    getters = [threading.Thread(target=lambda: results.append(q.get())) for _ in range(3)]
    for t in getters:
        t.start()
    time.sleep(0.05)
    q.shutdown()
    for t in getters:
        t.join(2)
    assert results == [None, None, None]
    q.add("a")
    q.add_after("b", 0.01)
    assert q.get(0) is None
    assert q.shutting_down


def test_a_worker_pool_stops_promptly_on_shutdown() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    pool = run_workers(q, 4, lambda key: None, "idle")
    started = time.monotonic()
    pool.stop(timeout=5)
    assert time.monotonic() - started < 1
    assert not any(t.is_alive() for t in pool.threads)


def _one(q: WorkQueue[str], reconcile: object, metrics: Metrics | None = None) -> None:
    assert process_next(q, reconcile, "c", metrics=metrics, timeout=0)  # type: ignore[arg-type]


def test_success_forgets_the_backoff() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 2
    assert q.get(timeout=1) == "a"
    q.done("a")
    q.add("a")
    _one(q, lambda key: Result())
    assert q.num_requeues("a") == 0


def test_an_error_retries_with_backoff() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")

    def fail(key: str) -> None:
        raise ServerError("the provider is down", status=503, reason="ServiceUnavailable")

    _one(q, fail)
    assert q.num_requeues("a") == 1
    assert q.get(timeout=1) == "a", "the failed key comes back after its (5 ms) backoff"


def test_a_terminal_error_is_not_retried() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")

    def give_up(key: str) -> None:
        raise TerminalError("the spec names an API that is not offered", reason="NotOffered")

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    _one(q, give_up, metrics)
    assert q.num_requeues("a") == 0
    assert q.get(timeout=0.1) is None
    assert (
        registry.get_sample_value(
            "api_connector_reconcile_errors_total", {"controller": "c", "reason": "NotOffered"}
        )
        == 1
    )


def test_requeue_after_comes_back_after_that_delay_without_backoff() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")
    _one(q, lambda key: Result(requeue_after=0.1))
    assert q.num_requeues("a") == 0
    assert q.get(timeout=0.05) is None
    assert q.get(timeout=1) == "a"


def test_result_requeue_retries_with_backoff() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")
    _one(q, lambda key: Result(requeue=True))
    assert q.num_requeues("a") == 1


def test_metrics_report_depth_outcomes_and_sync_latency() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    q: WorkQueue[str] = WorkQueue("sync", metrics=metrics)
    q.add("a")
    q.add("b")
    assert registry.get_sample_value("api_connector_workqueue_depth", {"queue": "sync"}) == 2
    _one(q, lambda key: None, metrics)
    _one(q, lambda key: None, metrics)
    assert registry.get_sample_value("api_connector_workqueue_depth", {"queue": "sync"}) == 0
    assert (
        registry.get_sample_value(
            "api_connector_reconcile_total", {"controller": "c", "result": "success"}
        )
        == 2
    )
    assert (
        registry.get_sample_value("api_connector_sync_latency_seconds_count", {"controller": "c"})
        == 2
    )


def test_a_separate_registry_per_metrics_object_lets_components_coexist() -> None:
    first, second = Metrics(), Metrics()
    first.queue_depth.labels("x").set(3)
    assert second.registry.get_sample_value("api_connector_workqueue_depth", {"queue": "x"}) is None


def test_a_reconcile_returning_something_else_than_a_result_is_retried_as_an_error() -> None:
    q: WorkQueue[str] = WorkQueue("t")
    q.add("a")
    _one(q, lambda key: True)
    assert q.num_requeues("a") == 1


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (ConflictError("the object has been modified", status=409), "debug"),
        (ServerError("etcdserver: request timed out", status=500), "warning"),
    ],
    ids=["conflict", "server-error"],
)
def test_a_write_conflict_is_retried_quietly_and_other_failures_warn(
    error: Exception, level: str
) -> None:
    q: WorkQueue[str] = WorkQueue("c")
    q.add("k")

    def reconcile(_key: str) -> None:
        raise error

    # Whatever an earlier test configured (the CLI filters at INFO), see debug entries too.
    config = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            assert process_next(q, reconcile, "c", timeout=0)
    finally:
        structlog.configure(**config)
    # Retried either way: the key comes back after its backoff.
    assert q.num_requeues("k") == 1
    (entry,) = [e for e in logs if e["event"] == "Reconcile failed; retrying with backoff."]
    assert entry["log_level"] == level
