"""Paced writes and the watches that see them: how ``sync_latency.py`` measures latency.

A writer puts a unique marker (``m-<n>``) into each write; a :class:`MarkerWatch` (an
Informer on the other cluster) records when each object first showed each marker; a
:class:`Run` holds the writes, their latencies and what the program measured used.
:func:`paced_run` writes at a steady rate and then waits for the markers;
:func:`alternate` gives several programs (floors, the connector) their writes in turns.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _harness import NOP, BenchError, percentile, proc_cpu_seconds

from connector.kube import KubeClient
from connector.runtime import Informer

#: The programs measured take turns of this many seconds (``alternate``).
SLICE = 10.0


# -- observing markers --------------------------------------------------------------------


def marker_index(value: object) -> int | None:
    if isinstance(value, str) and value.startswith("m-"):
        with contextlib.suppress(ValueError):
            return int(value[2:])
    return None


def spec_marker(obj: dict[str, Any]) -> int | None:
    return marker_index((obj.get("spec") or {}).get("coolField"))


def status_marker(obj: dict[str, Any]) -> int | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return marker_index(cond.get("message"))
    return None


class MarkerWatch:
    """A watch (an Informer) on one namespace that records, per object, when each marker
    was first seen."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        extract: Callable[[dict[str, Any]], int | None],
        name: str,
    ) -> None:
        self._extract = extract
        self._lock = threading.Lock()
        self.seen: dict[str, list[tuple[int, float]]] = {}
        self.informer = Informer(
            client, NOP, namespace=namespace, handler=self._on_event, name=name
        )

    def _on_event(self, event: str, obj: dict[str, Any]) -> None:
        now = time.perf_counter()
        if event == "DELETED":
            return
        index = self._extract(obj)
        if index is None:
            return
        with self._lock:
            self.seen.setdefault(obj["metadata"]["name"], []).append((index, now))

    def first_at_or_after(self, name: str, index: int) -> float | None:
        """When the object first showed marker ``index`` or a later one."""
        with self._lock:
            times = [t for i, t in self.seen.get(name, ()) if i >= index]
        return min(times) if times else None

    def __enter__(self) -> MarkerWatch:
        self.informer.start()
        if not self.informer.wait_synced(30):
            raise BenchError(f"The watch {self.informer.name} did not sync.")
        return self

    def __exit__(self, *exc: object) -> None:
        self.informer.stop()


@dataclass
class Write:
    name: str
    index: int
    returned_at: float


@dataclass
class Run:
    """The outcome of one paced run."""

    label: str
    writes: list[Write] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    #: Each seen write with its latency.
    pairs: list[tuple[Write, float]] = field(default_factory=list)
    #: What the connector's request and reconcile counters grew by, per write.
    per_write: dict[str, float] = field(default_factory=dict)
    #: Where the time went (``--trace``).
    phases: dict[str, Any] = field(default_factory=dict)
    missing: int = 0
    achieved_rate: float = 0.0
    #: Seconds spent writing (the sum of its turns).
    elapsed: float = 0.0
    #: CPU (utime + stime) its process used in its turns, if it has a process of its own.
    cpu_seconds: float | None = None

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "writes": len(self.writes),
            "achieved_rate_per_s": round(self.achieved_rate, 2),
            "missing": self.missing,
            "errors": self.errors[:5],
            "p50_ms": round(self.p(50), 2),
            "p90_ms": round(self.p(90), 2),
            "p99_ms": round(self.p(99), 2),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else None,
            "connector_per_write": self.per_write,
            "cpu_ms_per_write": (
                round(self.cpu_seconds * 1000 / len(self.writes), 2)
                if self.cpu_seconds is not None and self.writes
                else None
            ),
            "phases": self.phases,
        }


def paced_run(
    label: str,
    write: Callable[[int, str], str],
    watch: MarkerWatch,
    *,
    rate: float,
    seconds: float,
    settle: float = 15.0,
    run: Run | None = None,
    first_index: int = 0,
) -> Run:
    """``write(index, marker)`` (returning the object's name) ``rate`` times a second for
    ``seconds``, indexes from ``first_index``; then wait up to ``settle`` s for the watch to
    show every marker. Adds to ``run`` (a new one if not given) and returns it."""
    run = run or Run(label)
    first_write = len(run.writes)
    start = time.perf_counter()
    end = start + seconds
    n = 0
    while True:
        due = start + n / rate
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        index = first_index + n
        try:
            name = write(index, f"m-{index}")
            run.writes.append(Write(name, index, time.perf_counter()))
        except Exception as e:  # a failed write is reported, the run goes on
            run.errors.append(f"{type(e).__name__}: {e}")
        n += 1
    run.elapsed += time.perf_counter() - start
    run.achieved_rate = len(run.writes) / max(1e-9, run.elapsed)
    written = run.writes[first_write:]
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if all(watch.first_at_or_after(w.name, w.index) is not None for w in written):
            break
        time.sleep(0.1)
    for w in written:
        seen = watch.first_at_or_after(w.name, w.index)
        if seen is None:
            run.missing += 1
        else:
            run.latencies_ms.append((seen - w.returned_at) * 1000)
            run.pairs.append((w, (seen - w.returned_at) * 1000))
    return run


@dataclass
class Side:
    """One of the programs measured side by side: its writes, and the watch that sees them."""

    run: Run
    write: Callable[[int, str], str]
    watch: MarkerWatch
    #: Its process, if it has one of its own: its CPU is measured over its turns.
    pid: int | None = None


def alternate(sides: list[Side], *, rate: float, seconds: float) -> None:
    """Give each side ``seconds`` of paced writes, ``rate`` a second, in turns of ``SLICE``
    seconds, so that what the machine does meanwhile falls on the floor and the connector
    alike."""
    turns = max(1, round(seconds / SLICE))
    per_turn = seconds / turns
    for turn in range(turns):
        for side in sides:
            cpu = proc_cpu_seconds(side.pid) if side.pid is not None else 0.0
            paced_run(
                side.run.label,
                side.write,
                side.watch,
                rate=rate,
                seconds=per_turn,
                run=side.run,
                first_index=turn * int(per_turn * rate + 1),
            )
            if side.pid is not None:
                used = proc_cpu_seconds(side.pid) - cpu
                side.run.cpu_seconds = (side.run.cpu_seconds or 0.0) + used
