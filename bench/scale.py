"""Scale: the connector's memory and idle CPU with many bound objects.

The connector runs as its own process (``api-connector run --poll-interval 1h``), so that
``/proc/<pid>/status`` VmRSS and ``/proc/<pid>/stat`` utime+stime are its own. The floor is
the same process, in the same run, with the API bound and no objects: it is what the
runtime, the libraries and the connector's own caches cost before any object is synced.

1. bind the API, let the connector settle; read RSS, then CPU over ``--idle`` seconds;
2. create ``--objects`` NopResources in the consumer and wait until every one is
   ``APIBound=True`` (a watch in this process counts them);
3. wait until the connector stops reconciling, read RSS, then CPU over ``--idle`` seconds
   with no change anywhere.

Targets: RSS ≤ 200 MB with 10,000 bound objects; idle CPU ≤ 1 % of a core.

Run: ``.venv/bin/python bench/scale.py [--quick] [--objects N] [--idle S]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from _harness import (
    BOUND_NS,
    NOP,
    OUT,
    BenchError,
    ConnectorProcess,
    Figure,
    Report,
    clusters,
    condition_status,
    connect_and_bind,
    connector_process,
    counters_per,
    machine,
    nop,
    proc_cpu_seconds,
    proc_rss_mib,
    run_main,
    run_parallel,
)

from connector.kube import KubeClient
from connector.runtime import Informer

RSS_TARGET_MB = 200.0
IDLE_CPU_TARGET = 1.0  # percent of one core
CREATE_THREADS = 8


class BoundCounter:
    """A consumer watch counting objects that carry ``APIBound=True``."""

    def __init__(self, client: KubeClient, namespace: str, want: int) -> None:
        self.want = want
        self._bound: set[str] = set()
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.informer = Informer(
            client, NOP, namespace=namespace, handler=self._on_event, name="bench-bound"
        )

    def _on_event(self, event: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            if event != "DELETED" and condition_status(obj, "APIBound") == "True":
                self._bound.add(name)
            else:
                self._bound.discard(name)
            if len(self._bound) >= self.want:
                self.done.set()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._bound)


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """The process's CPU use over ``seconds``, in percent of one core."""
    before, start = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (proc_cpu_seconds(pid) - before) / (time.monotonic() - start)


def wait_quiet(connector: ConnectorProcess, *, quiet: float = 5.0, timeout: float = 120.0) -> None:
    """Until the connector's request and reconcile counters stop moving for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last = connector.counters()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = connector.counters()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise BenchError(f"The connector kept working for {timeout:.0f} s with nothing changing.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 objects, 10 s idle")
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--idle", type=float, default=None, help="idle CPU window (s)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    args = parser.parse_args()
    n = args.objects or (1000 if args.quick else 10000)
    idle = args.idle or (10.0 if args.quick else 60.0)

    report = Report("scale", args.quick)
    with clusters(OUT / "clusters-scale") as env, connector_process(env) as connector:
        report.details["machine"] = machine(env)
        connect_and_bind(env)
        wait_quiet(connector)
        rss_floor = proc_rss_mib(connector.pid)
        cpu_floor = idle_cpu_percent(connector.pid, idle)

        counter = BoundCounter(env.consumer, BOUND_NS, n)
        counter.informer.start()
        try:
            counter.informer.wait_synced(30)
            before = connector.counters()
            start = time.monotonic()
            errors = run_parallel(
                [f"scale-{i}" for i in range(n)],
                lambda name: env.consumer.create(NOP, nop(name, BOUND_NS, "scale")),
                threads=CREATE_THREADS,
                deadline=start + args.timeout,
            )
            if errors:
                raise BenchError(f"Creating the objects failed: {errors[0]}")
            created = time.monotonic() - start
            if not counter.done.wait(max(1.0, args.timeout - created)):
                raise BenchError(f"Only {counter.count} of {n} objects were bound in time.")
            bound = time.monotonic() - start
        finally:
            counter.informer.stop()
        wait_quiet(connector)
        per_object = counters_per(before, connector.counters(), n)
        rss = proc_rss_mib(connector.pid)
        idle_before = connector.counters()
        cpu = idle_cpu_percent(connector.pid, idle)
        idle_requests = counters_per(idle_before, connector.counters(), 1)

    report.details["scale"] = {
        "objects": n,
        "create_seconds": round(created, 1),
        "all_bound_seconds": round(bound, 1),
        "bound_per_s": round(n / bound, 1),
        "rss_mib_no_objects": round(rss_floor, 1),
        "rss_mib": round(rss, 1),
        "rss_kib_per_object": round((rss - rss_floor) * 1024 / n, 2),
        "idle_seconds": idle,
        "idle_cpu_percent_no_objects": round(cpu_floor, 3),
        "idle_cpu_percent": round(cpu, 3),
        "connector_per_object": per_object,
        "requests_while_idle": idle_requests,
    }
    report.add(
        Figure(
            f"RSS with {n} bound objects",
            "MiB",
            f"<= {RSS_TARGET_MB:.0f} MB",
            rss,
            rss_floor,
            passed=rss <= RSS_TARGET_MB,
            note=f"{(rss - rss_floor) * 1024 / n:.1f} KiB per object; all bound in {bound:.0f} s",
        )
    )
    report.add(
        Figure(
            f"idle CPU with {n} objects, {idle:.0f} s",
            "% core",
            f"<= {IDLE_CPU_TARGET:.0f}% of a core",
            cpu,
            cpu_floor,
            passed=cpu <= IDLE_CPU_TARGET,
            note=f"API requests while idle: {idle_requests or 'none'}",
        )
    )
    report.print_table()
    print(f"  report: {report.save()}")


if __name__ == "__main__":
    run_main(main)
