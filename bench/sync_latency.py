"""Sync latency under a steady load, both directions, against a floor measured in the same run.

- **spec**: a consumer write (half creates of new objects, half spec updates of existing
  ones) → the provider twin carries the new spec.
- **status**: a write of the twin's status subresource in the provider → the consumer
  object carries the new status.

Each write puts a unique marker (``m-<n>``, n increasing) into ``spec.coolField`` or into
the ``Ready`` condition's message. The latency of a write is from the moment the write call
returned to the moment a watch, opened by this process on the other cluster, first shows
that object with that marker or a later one (a level-based syncer may fold two quick writes
of one object into one). Writes are paced at ``--rate`` per second, ``--seconds`` for each
program measured, which take turns of 10 s (floor, connector, floor, ...), so that what
the machine does meanwhile falls on both alike.

The connector runs as ``api-connector run`` in its own process, as in a cluster, with a 1 h
poll interval, so only watches move data. The floor is the smallest relay written with the
same client library (``_relay.py``: an Informer whose handler queues the key, the same
number of workers, one server-side apply per change), also in its own process, copying spec
consumer → provider (or status provider → consumer) in a namespace the connector does not
sync, with the same load, in the same run. ``--in-process`` runs both in the benchmark's
process instead (as ``api-connector demo`` runs the connector), where they share one
interpreter with the benchmark's watchers; ``--trace`` needs that.

Targets: p50 ≤ 30 ms, p99 ≤ 150 ms; against the floor's p99: spec ≤ 1.5x (creates alone
≤ 1.6x), status ≤ 1.2x.

Run: ``.venv/bin/python bench/sync_latency.py [--quick] [--direction spec|status|both]``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    BOUND_NS,
    CONNECTION,
    FLOOR_NS,
    NOP,
    OUT,
    BenchError,
    Env,
    Figure,
    Report,
    clusters,
    condition_status,
    connect_and_bind,
    connector_in_process,
    connector_process,
    counters,
    counters_per,
    ensure_namespace,
    machine,
    nop,
    percentile,
    proc_cpu_seconds,
    run_main,
    run_parallel,
    stop_process,
)
from _relay import SYNCED, relay
from _trace import Request, Trace

from connector.envtest import eventually
from connector.kube import KubeClient
from connector.runtime import Informer

P50_TARGET_MS = 30.0
P99_TARGET_MS = 150.0
#: The p99 against the floor's p99, by direction, and for the spec run's creates alone.
FLOOR_FACTOR = {"spec": 1.5, "status": 1.2}
CREATES_FLOOR_FACTOR = 1.6
#: Objects updated round-robin: at 20 writes/s each is written about once a second, so
#: writes to one object rarely overlap and most markers are seen individually.
POOL = 20
#: The floor and the connector take turns of this many seconds (``alternate``).
SLICE = 10.0
#: Where the write-back floor works (``--write-back-floor``).
WRITE_BACK_NS = "floor-write-back"


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


def alternate(sides: list[Side], args: argparse.Namespace) -> None:
    """Give each side ``args.seconds`` of paced writes, in turns of ``SLICE`` seconds, so
    that what the machine does meanwhile falls on the floor and the connector alike."""
    turns = max(1, round(args.seconds / SLICE))
    per_turn = args.seconds / turns
    for turn in range(turns):
        for side in sides:
            cpu = proc_cpu_seconds(side.pid) if side.pid is not None else 0.0
            paced_run(
                side.run.label,
                side.write,
                side.watch,
                rate=args.rate,
                seconds=per_turn,
                run=side.run,
                first_index=turn * int(per_turn * args.rate + 1),
            )
            if side.pid is not None:
                used = proc_cpu_seconds(side.pid) - cpu
                side.run.cpu_seconds = (side.run.cpu_seconds or 0.0) + used


@contextlib.contextmanager
def observed(run_label: str, probe: Probe, carrier: Callable[[Request], bool]) -> Iterator[Run]:
    """Snapshot the connector's counters (and trace it, if asked) around a run; the yielded
    run is filled in when the block ends."""
    holder = Run(run_label)
    before = probe.counters()
    if probe.trace is not None:
        probe.trace.reset()
    yield holder
    holder.per_write = counters_per(before, probe.counters(), len(holder.writes))
    if probe.trace is not None:
        samples = [(w.name, w.returned_at, w.returned_at + ms / 1000) for w, ms in holder.pairs]
        holder.phases = probe.trace.breakdown(samples, carrier=carrier)


@dataclass
class Probe:
    """The connector under measurement: its request and reconcile counters, its trace."""

    counters: Callable[[], dict[str, float]]
    trace: Trace | None
    #: Whether it runs in this process (the floor's relay then does too).
    in_process: bool
    #: Its own process, if it has one (its CPU is then measured).
    pid: int | None = None


# -- the floor: a minimal relay with the same client library --------------------------------


@contextlib.contextmanager
def floor_relay(
    env: Env,
    source: str,
    target: str,
    namespace: str,
    part: str,
    *,
    in_process: bool,
    write_back: bool = False,
) -> Iterator[int | None]:
    """The floor's relay (``_relay.py``) from cluster ``source`` to ``target`` in
    ``namespace``: in its own process (yields its pid), as the connector then runs, or in
    this one (yields None)."""
    if in_process:
        with relay(env.client(source), env.client(target), namespace, part, write_back=write_back):
            yield None
        return
    kubeconfig = {"consumer": env.consumer_cluster, "provider": env.provider_cluster}
    argv = [sys.executable, str(Path(__file__).with_name("_relay.py"))]
    argv += [str(kubeconfig[source].kubeconfig), str(kubeconfig[target].kubeconfig)]
    argv += [namespace, part, *(["--write-back"] if write_back else [])]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            said: list[str] = []
            while not said or said[-1] != SYNCED:  # until it has listed, or it exited
                line = proc.stdout.readline()
                if not line:
                    raise BenchError(f"The floor's relay did not start; it said: {said[-5:]}")
                said.append(line.strip())
            yield proc.pid
        finally:
            stop_process(proc)


# -- the workloads ------------------------------------------------------------------------


def spec_writer(client: KubeClient, namespace: str, prefix: str) -> Callable[[int, str], str]:
    """Even writes create a new object; odd writes update the spec of a pool object."""

    def write(index: int, marker: str) -> str:
        if index % 2 == 0:
            name = f"{prefix}-new-{index}"
            client.create(NOP, nop(name, namespace, marker))
        else:
            name = f"{prefix}-pool-{(index // 2) % POOL}"
            client.patch(NOP, name, namespace, {"spec": {"coolField": marker}})
        return name

    return write


def status_writer(client: KubeClient, namespace: str, prefix: str) -> Callable[[int, str], str]:
    """Each write replaces the twin's conditions (merge patch of the status subresource)."""

    def write(index: int, marker: str) -> str:
        name = f"{prefix}-pool-{index % POOL}"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": marker,
                "lastTransitionTime": now,
            },
            {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
        ]
        client.patch(
            NOP, name, namespace, {"status": {"conditions": conditions}}, subresource="status"
        )
        return name

    return write


def spec_carrier(r: Request) -> bool:
    """A request that can carry a spec to the provider: an apply of the twin."""
    return r.client == CONNECTION and r.method == "PATCH" and not r.path.endswith("/status")


def status_carrier(r: Request) -> bool:
    """A request that can carry a status to the consumer: a write of its status."""
    return (
        r.client == "consumer-bench" and r.method in ("PUT", "PATCH") and r.path.endswith("/status")
    )


def create_pool(client: KubeClient, namespace: str, prefix: str) -> list[str]:
    names = [f"{prefix}-pool-{i}" for i in range(POOL)]
    errors = run_parallel(
        names,
        lambda n: client.create(NOP, nop(n, namespace, "initial")),
        threads=4,
        deadline=time.monotonic() + 60,
    )
    if errors:
        raise BenchError(f"Creating the object pool failed: {errors[0]}")
    return names


def pool_copied(client: KubeClient, namespace: str, prefix: str) -> bool:
    names = {o["metadata"]["name"] for o in client.list(NOP, namespace)[0]}
    return all(f"{prefix}-pool-{i}" in names for i in range(POOL))


def measure_spec(env: Env, args: argparse.Namespace, report: Report, probe: Probe) -> None:
    # Floor: the relay copies consumer floor/* → provider floor/*; the connector consumer
    # bench/* → provider bench/*; the write-back floor floor-write-back/* the same way.
    create_pool(env.consumer, FLOOR_NS, "sf")
    pool = create_pool(env.consumer, BOUND_NS, "sc")
    if args.write_back_floor:
        for client in (env.consumer, env.provider):
            ensure_namespace(client, WRITE_BACK_NS)
        create_pool(env.consumer, WRITE_BACK_NS, "sw")
    with contextlib.ExitStack() as stack:
        floor_watch = stack.enter_context(
            MarkerWatch(env.provider, FLOOR_NS, spec_marker, "bench-provider-floor")
        )
        watch = stack.enter_context(
            MarkerWatch(env.provider, BOUND_NS, spec_marker, "bench-provider")
        )
        relay_pid = stack.enter_context(
            floor_relay(env, "consumer", "provider", FLOOR_NS, "spec", in_process=probe.in_process)
        )
        floor = Run("spec floor")
        sides = [Side(floor, spec_writer(env.consumer, FLOOR_NS, "sf"), floor_watch, relay_pid)]
        eventually(lambda: pool_copied(env.provider, FLOOR_NS, "sf"), what="the floor's pool")
        written_back: Run | None = None
        if args.write_back_floor:
            # For diagnosis: a floor that also writes a status back to each object it copies.
            back_watch = stack.enter_context(
                MarkerWatch(env.provider, WRITE_BACK_NS, spec_marker, "bench-provider-back")
            )
            back_pid = stack.enter_context(
                floor_relay(
                    env,
                    "consumer",
                    "provider",
                    WRITE_BACK_NS,
                    "spec",
                    in_process=probe.in_process,
                    write_back=True,
                )
            )
            written_back = Run("spec floor with write-back")
            writer = spec_writer(env.consumer, WRITE_BACK_NS, "sw")
            sides.append(Side(written_back, writer, back_watch, back_pid))
            eventually(
                lambda: pool_copied(env.provider, WRITE_BACK_NS, "sw"),
                what="the write-back floor's pool",
            )
        eventually(
            lambda: all(
                condition_status(o, "APIBound") == "True"
                for o in env.consumer.list(NOP, BOUND_NS)[0]
                if o["metadata"]["name"] in pool
            )
            and pool_copied(env.provider, BOUND_NS, "sc"),
            what="the connector to sync the pool",
            timeout=60,
        )
        with observed("spec connector", probe, spec_carrier) as measured:
            writer = spec_writer(env.consumer, BOUND_NS, "sc")
            sides.append(Side(measured, writer, watch, probe.pid))
            alternate(sides, args)
    add_figures(report, "spec", measured, floor)
    creates, updates = Run("creates"), Run("updates")
    for w, ms in measured.pairs:
        part = creates if w.index % 2 == 0 else updates
        part.writes.append(w)
        part.latencies_ms.append(ms)
    if written_back is not None:
        report.details["spec"]["floor_with_write_back"] = written_back.summary()
        report.add(
            Figure(
                "spec p99 vs write-back floor",
                "ms",
                "(context)",
                measured.p(99),
                written_back.p(99),
            )
        )
    report.details["spec"]["connector_creates"] = creates.summary()
    report.details["spec"]["connector_updates"] = updates.summary()
    # A create writes the twin and the consumer's finalizer at the same time: it should
    # reach the provider about as fast as an update.
    report.add(
        Figure(
            "spec creates p99 vs floor",
            "ms",
            f"<= {CREATES_FLOOR_FACTOR}x floor p99",
            creates.p(99),
            floor.p(99),
            passed=creates.p(99) <= CREATES_FLOOR_FACTOR * floor.p(99),
        )
    )


def measure_status(env: Env, args: argparse.Namespace, report: Report, probe: Probe) -> None:
    # Floor: objects exist on both sides; the relay copies provider floor/* status → consumer.
    # The connector: twin status in provider bench/* → consumer bench/*.
    floor_pool = create_pool(env.consumer, FLOOR_NS, "tf")
    for name in floor_pool:
        env.provider.create(NOP, nop(name, FLOOR_NS, "initial"))
    pool = create_pool(env.consumer, BOUND_NS, "tc")
    eventually(
        lambda: sum(
            1
            for o in env.consumer.list(NOP, BOUND_NS)[0]
            if o["metadata"]["name"] in pool and condition_status(o, "APIBound") == "True"
        )
        == len(pool),
        what="the connector to bind the status pool",
        timeout=60,
    )
    floor = Run("status floor")
    with (
        floor_relay(
            env, "provider", "consumer", FLOOR_NS, "status", in_process=probe.in_process
        ) as relay_pid,
        MarkerWatch(env.consumer, FLOOR_NS, status_marker, "bench-consumer-floor") as floor_watch,
        MarkerWatch(env.consumer, BOUND_NS, status_marker, "bench-consumer") as watch,
        observed("status connector", probe, status_carrier) as measured,
    ):
        floor_writer = status_writer(env.provider, FLOOR_NS, "tf")
        floor_side = Side(floor, floor_writer, floor_watch, relay_pid)
        side = Side(measured, status_writer(env.provider, BOUND_NS, "tc"), watch, probe.pid)
        alternate([floor_side, side], args)
    add_figures(report, "status", measured, floor)


def add_figures(report: Report, direction: str, measured: Run, floor: Run) -> None:
    report.details[direction] = {"connector": measured.summary(), "floor": floor.summary()}
    note = (
        f"{len(measured.writes)} writes at {measured.achieved_rate:.1f}/s, "
        f"{measured.missing} never seen, {len(measured.errors)} failed"
    )
    report.add(
        Figure(
            f"{direction} p50",
            "ms",
            f"<= {P50_TARGET_MS:.0f} ms",
            measured.p(50),
            floor.p(50),
            passed=measured.p(50) <= P50_TARGET_MS,
            note=note,
        )
    )
    report.add(
        Figure(
            f"{direction} p99",
            "ms",
            f"<= {P99_TARGET_MS:.0f} ms",
            measured.p(99),
            floor.p(99),
            passed=measured.p(99) <= P99_TARGET_MS and measured.missing == 0,
        )
    )
    factor = FLOOR_FACTOR[direction]
    report.add(
        Figure(
            f"{direction} p99 vs floor",
            "ms",
            f"<= {factor}x floor p99",
            measured.p(99),
            floor.p(99),
            passed=measured.p(99) <= factor * floor.p(99),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s per run instead of 60 s")
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=None, help="length of each run")
    parser.add_argument("--direction", choices=["spec", "status", "both"], default="both")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="time the connector's steps (diagnosis; implies --in-process)",
    )
    parser.add_argument(
        "--write-back-floor",
        action="store_true",
        help="also measure a spec floor that writes a status back to each object it copies",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the connector and the floor's relay in this process, not each in its own",
    )
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 10.0 if args.quick else 60.0
    in_process = args.in_process or args.trace

    report = Report("sync_latency", args.quick)
    with clusters(OUT / "clusters-latency") as env:
        report.details["machine"] = machine(env)
        report.details["load"] = {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "connector": "in the benchmark's process" if in_process else "its own process",
        }
        with connector_under_test(env, args.trace, in_process=in_process) as probe:
            connect_and_bind(env)
            if args.direction in ("spec", "both"):
                measure_spec(env, args, report, probe)
            if args.direction in ("status", "both"):
                measure_status(env, args, report, probe)
    report.print_table()
    print_details(report)
    print(f"  report: {report.save()}")


@contextlib.contextmanager
def connector_under_test(env: Env, trace: bool, *, in_process: bool) -> Iterator[Probe]:
    """The connector as ``api-connector run`` in its own process (as it runs in a cluster:
    the benchmark's watchers and writers do not share its interpreter), or in this one."""
    if not in_process:
        with connector_process(env) as proc:
            yield Probe(proc.counters, None, in_process=False, pid=proc.pid)
        return
    tracer = Trace() if trace else None
    if tracer is not None:
        # Before the connector starts: its informers bind their handlers at creation.
        tracer.install()
    with connector_in_process(env) as metrics:
        yield Probe(partial(counters, metrics), tracer, in_process=True)


def print_details(report: Report) -> None:
    for direction in ("spec", "status"):
        details = report.details.get(direction)
        if not details:
            continue
        for part in ("connector_creates", "connector_updates"):
            if part in details:
                d = details[part]
                print(f"  {direction} {part}: p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms")
        connector = details["connector"]
        cpu = {
            k: details[k]["cpu_ms_per_write"]
            for k in ("connector", "floor", "floor_with_write_back")
            if k in details and details[k]["cpu_ms_per_write"] is not None
        }
        if cpu:
            print(f"  {direction}: CPU per write (ms, own process): {cpu}")
        print(f"  {direction}: connector requests/reconciles per write:")
        for k, v in connector["connector_per_write"].items():
            print(f"      {v:6.2f}  {k}")
        if connector["phases"]:
            print(f"  {direction}: where the time goes: {connector['phases']}")


if __name__ == "__main__":
    run_main(main)
