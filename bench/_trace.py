"""Timing logs for an in-process connector: where a sync's time goes, object by object.

Opt-in (``--trace``) and for diagnosis only: it wraps, in this process, the client's
request method, the object syncer's event handlers and its reconcile, and records for each
a monotonic timestamp (``time.perf_counter``, the clock the benchmarks use). Nothing in the
connector changes behaviour; each record costs a few microseconds.

:func:`breakdown` then splits each measured latency into phases:

- ``to_event``: the write returned → the connector's handler got the watch event;
- ``queued``: the event → a worker started the reconcile that applied the change;
- ``before_write``: reconcile start → start of the request that carried the change
  (the stage, the cache reads, any earlier request in the same reconcile);
- ``write``: that request's duration (including any wait for the client's QPS limiter);
- ``to_watch``: the request returned → the benchmark's watch saw the change.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.controllers import sync_controller
from connector.kube._ratelimit import TokenBucket
from connector.kube.client import KubeClient


@dataclass
class Request:
    start: float
    end: float
    client: str
    method: str
    path: str
    outcome: str


@dataclass
class Span:
    key: str
    start: float
    end: float


class Trace:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.events: list[tuple[float, str, str]] = []  # (time, "consumer"/"twin", name)
        self.reconciles: list[Span] = []
        #: Seconds each request spent waiting for the client's QPS limiter (when it did).
        self.limiter_waits: list[float] = []
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        with self._lock:
            self.requests, self.events, self.reconciles = [], [], []
            self.limiter_waits = []

    def install(self) -> None:
        trace = self
        original_open = KubeClient._open

        def traced_open(self: KubeClient, method: str, path: str, **kw: Any) -> Any:
            start = time.perf_counter()
            outcome = "ok"
            try:
                return original_open(self, method, path, **kw)
            except Exception as e:
                outcome = type(e).__name__
                raise
            finally:
                with trace._lock:
                    trace.requests.append(
                        Request(start, time.perf_counter(), self.name, method, path, outcome)
                    )

        KubeClient._open = traced_open  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(KubeClient, "_open", original_open))

        original_wait = TokenBucket.wait

        def traced_wait(self: TokenBucket) -> None:
            start = time.perf_counter()
            original_wait(self)
            waited = time.perf_counter() - start
            if waited > 0.0005:
                with trace._lock:
                    trace.limiter_waits.append(waited)

        TokenBucket.wait = traced_wait  # type: ignore[method-assign]
        self._undo.append(functools.partial(setattr, TokenBucket, "wait", original_wait))

        syncer = sync_controller.ObjectSyncer
        for attr, side in (("_on_consumer", "consumer"), ("_on_twin", "twin")):
            original = getattr(syncer, attr)

            def traced(
                self: Any,
                event: str,
                obj: dict[str, Any],
                *rest: Any,
                _o: Any = original,
                _s: str = side,
            ) -> None:
                now = time.perf_counter()
                with trace._lock:
                    trace.events.append((now, _s, str(obj["metadata"]["name"])))
                _o(self, event, obj, *rest)

            setattr(syncer, attr, traced)
            self._undo.append(functools.partial(setattr, syncer, attr, original))

        # The syncer calls the module's global at each reconcile, so rebinding it takes.
        original_reconcile = getattr(sync_controller, "reconcile_object")  # noqa: B009

        def traced_reconcile(key: Any, deps: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_reconcile(key, deps)
            finally:
                with trace._lock:
                    trace.reconciles.append(Span(key.name, start, time.perf_counter()))

        setattr(sync_controller, "reconcile_object", traced_reconcile)  # noqa: B010
        self._undo.append(
            functools.partial(setattr, sync_controller, "reconcile_object", original_reconcile)
        )

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def breakdown(
        self, samples: list[tuple[str, float, float]], *, carrier: Callable[[Request], bool]
    ) -> dict[str, Any]:
        """Split each ``(name, returned_at, seen_at)`` into phases (see the module doc);
        ``carrier`` picks the requests that can carry the change to the other side.

        Returns the median of every phase and, over all samples, how many requests and
        reconciles happened per sample, by outcome.
        """
        phases: dict[str, list[float]] = collections.defaultdict(list)
        # The slowest 5 % of the samples, phase by phase: where the tail's time goes.
        durations = sorted(seen - returned for _, returned, seen in samples)
        slow_cut = durations[int(len(durations) * 0.95)] if durations else 0.0
        tail: dict[str, list[float]] = collections.defaultdict(list)
        per_sample: collections.Counter[str] = collections.Counter()
        for name, returned, seen in samples:
            reqs = [
                r
                for r in self.requests
                if returned <= r.start <= seen and (f"/{name}" in r.path or f"/{name}/" in r.path)
            ]
            for r in reqs:
                per_sample[
                    f"{r.client} {r.method} {'status ' if 'status' in r.path else ''}{r.outcome}"
                ] += 1
            events = [t for t, _, n in self.events if n == name and returned - 0.05 <= t <= seen]
            spans = [s for s in self.reconciles if s.key == name and s.end >= returned - 0.05]
            per_sample["reconciles"] += len([s for s in spans if s.start <= seen])
            carriers = [r for r in reqs if carrier(r) and r.end <= seen]
            if not events or not carriers:
                continue
            last = carriers[-1]
            span = next((s for s in spans if s.start <= last.start <= s.end), None)
            if span is None:
                continue
            split = {
                "to_event": events[0] - returned,
                "queued": span.start - events[0],
                "before_write": last.start - span.start,
                "write": last.end - last.start,
                "to_watch": seen - last.end,
            }
            for phase, value in split.items():
                phases[phase].append(value)
                if seen - returned >= slow_cut:
                    tail[phase].append(value)
        n = max(1, len(samples))
        return {
            "median_ms": {
                k: round(sorted(v)[len(v) // 2] * 1000, 2) for k, v in phases.items() if v
            },
            "mean_ms": {k: round(sum(v) / len(v) * 1000, 2) for k, v in phases.items() if v},
            "slowest_5pct_mean_ms": {
                k: round(sum(v) / len(v) * 1000, 2) for k, v in tail.items() if v
            },
            "explained_samples": len(phases["write"]),
            "requests": len(self.requests),
            "requests_that_waited_for_the_qps_limiter": len(self.limiter_waits),
            "qps_limiter_wait_ms_median": round(
                sorted(self.limiter_waits)[len(self.limiter_waits) // 2] * 1000, 2
            )
            if self.limiter_waits
            else 0.0,
            "per_sample": {k: round(v / n, 2) for k, v in sorted(per_sample.items())},
        }
