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
≤ 1.6x), status ≤ 1.2x. For diagnosis, two more spec floors (each in its own namespace and
turns): ``--write-back-floor`` also writes a condition back to each object it copies, as
the connector writes ``APIBound``; ``--twin-floor`` does that and writes the whole twin the
object-syncer stage builds (origin labels and annotations): the connector's API writes
without its machinery.

Run: ``.venv/bin/python bench/sync_latency.py [--quick] [--direction spec|status|both]``.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

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
    run_main,
    run_parallel,
)
from _paced import MarkerWatch, Run, Side, alternate, spec_marker, status_marker
from _relay import SYNCED, relay
from _trace import Request, Trace

from connector.envtest import eventually
from connector.envtest._process import terminate
from connector.kube import KubeClient

P50_TARGET_MS = 30.0
P99_TARGET_MS = 150.0
#: The p99 against the floor's p99, by direction, and for the spec run's creates alone.
FLOOR_FACTOR = {"spec": 1.5, "status": 1.2}
CREATES_FLOOR_FACTOR = 1.6
#: Objects updated round-robin: at 20 writes/s each is written about once a second, so
#: writes to one object rarely overlap and most markers are seen individually.
POOL = 20


@dataclass(frozen=True)
class DiagnosticFloor:
    """A spec floor measured for context (no target), each in a namespace of its own."""

    label: str
    namespace: str
    prefix: str
    #: Its key in the report's spec details, and the figure comparing the connector to it.
    detail: str
    figure: str
    twin: bool = False


#: The diagnostic floors by the flag that asks for them; both write a status back.
DIAGNOSTIC_FLOORS = {
    "write_back_floor": DiagnosticFloor(
        "spec floor with write-back",
        "floor-write-back",
        "sw",
        "floor_with_write_back",
        "spec p99 vs write-back floor",
    ),
    "twin_floor": DiagnosticFloor(
        "spec floor writing twins",
        "floor-twin",
        "st",
        "floor_twin",
        "spec p99 vs twin floor",
        twin=True,
    ),
}


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
    #: Its own process; None when it runs in this one (the floor's relay then does too).
    pid: int | None

    @property
    def in_process(self) -> bool:
        return self.pid is None


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
    twin: bool = False,
) -> Iterator[int | None]:
    """The floor's relay (``_relay.py``) from cluster ``source`` to ``target`` in
    ``namespace``: in its own process (yields its pid), as the connector then runs, or in
    this one (yields None)."""
    if in_process:
        with relay(
            env.client(source),
            env.client(target),
            namespace,
            part,
            write_back=write_back,
            twin=twin,
        ):
            yield None
        return
    kubeconfig = {"consumer": env.consumer_cluster, "provider": env.provider_cluster}
    argv = [sys.executable, str(Path(__file__).with_name("_relay.py"))]
    argv += [str(kubeconfig[source].kubeconfig), str(kubeconfig[target].kubeconfig)]
    argv += [namespace, part, *(["--write-back"] if write_back else [])]
    argv += ["--twin"] if twin else []
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
            terminate(proc, timeout=30)


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


def spec_floor(
    stack: contextlib.ExitStack,
    env: Env,
    probe: Probe,
    run: Run,
    namespace: str,
    prefix: str,
    *,
    write_back: bool = False,
    twin: bool = False,
) -> Side:
    """A spec floor in ``namespace`` (its pool ``<prefix>-pool-*`` created and copied), its
    relay and watch kept open by ``stack``."""
    create_pool(env.consumer, namespace, prefix)
    watch = stack.enter_context(
        MarkerWatch(env.provider, namespace, spec_marker, f"bench-provider-{prefix}")
    )
    pid = stack.enter_context(
        floor_relay(
            env,
            "consumer",
            "provider",
            namespace,
            "spec",
            in_process=probe.in_process,
            write_back=write_back,
            twin=twin,
        )
    )
    eventually(lambda: pool_copied(env.provider, namespace, prefix), what=f"{run.label}'s pool")
    return Side(run, spec_writer(env.consumer, namespace, prefix), watch, pid)


def measure_spec(env: Env, args: argparse.Namespace, report: Report, probe: Probe) -> None:
    # Floor: the relay copies consumer floor/* → provider floor/*; the connector consumer
    # bench/* → provider bench/*; the write-back floor floor-write-back/* the same way.
    pool = create_pool(env.consumer, BOUND_NS, "sc")
    with contextlib.ExitStack() as stack:
        watch = stack.enter_context(
            MarkerWatch(env.provider, BOUND_NS, spec_marker, "bench-provider")
        )
        floor = Run("spec floor")
        sides = [spec_floor(stack, env, probe, floor, FLOOR_NS, "sf")]
        diagnostic: list[tuple[DiagnosticFloor, Run]] = []
        for flag, extra in DIAGNOSTIC_FLOORS.items():
            if not getattr(args, flag):
                continue
            for client in (env.consumer, env.provider):
                ensure_namespace(client, extra.namespace)
            run = Run(extra.label)
            side = spec_floor(
                stack,
                env,
                probe,
                run,
                extra.namespace,
                extra.prefix,
                write_back=True,
                twin=extra.twin,
            )
            sides.append(side)
            diagnostic.append((extra, run))
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
            alternate(sides, rate=args.rate, seconds=args.seconds)
    add_figures(report, "spec", measured, floor)
    creates, updates = Run("creates"), Run("updates")
    for w, ms in measured.pairs:
        part = creates if w.index % 2 == 0 else updates
        part.writes.append(w)
        part.latencies_ms.append(ms)
    for extra, run in diagnostic:
        report.details["spec"][extra.detail] = run.summary()
        report.add(Figure(extra.figure, "ms", "(context)", measured.p(99), run.p(99)))
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
        alternate([floor_side, side], rate=args.rate, seconds=args.seconds)
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
        "--twin-floor",
        action="store_true",
        help="also measure a spec floor that writes the whole twin (origin labels and "
        "annotations, as the object-syncer stage builds it) and a status back",
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
            yield Probe(proc.counters, None, proc.pid)
        return
    tracer = Trace() if trace else None
    if tracer is not None:
        # Before the connector starts: its informers bind their handlers at creation.
        tracer.install()
    with connector_in_process(env) as metrics:
        yield Probe(partial(counters, metrics), tracer, None)


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
            for k in ("connector", "floor", *(f.detail for f in DIAGNOSTIC_FLOORS.values()))
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
