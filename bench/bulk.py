"""Bulk sync throughput: many objects created at once in the consumer → all in the provider.

The benchmark creates ``--objects`` NopResources in the bound namespace of the consumer, on
as many threads as the connector has workers, and times from the first create to the moment
its own watch on the provider has seen every twin. It also reports when every consumer
object showed ``APIBound=True`` (the connector writes spec to the provider before status
back to the consumer, so that comes later). The connector runs as its own process
(``api-connector run --poll-interval 1h``), as deployed.

Floor, in the same run: a raw create loop of the same number of objects straight into the
provider, with a client built as the connector builds its provider clients (same library,
same QPS limit) and the same concurrency. Targets: the connector's throughput (every twin in
the provider) ≥ 60 % of the floor's, and every consumer object ``APIBound=True`` within
1.5x the floor's time: that is when users see their objects bound.

Run: ``.venv/bin/python bench/bulk.py [--quick] [--objects N]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

from _harness import (
    BOUND_NS,
    CONNECTOR_WORKERS,
    FLOOR_NS,
    NOP,
    OUT,
    BenchError,
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
    run_main,
    run_parallel,
)

from connector.kube import KubeClient
from connector.runtime import Informer

TARGET_RATIO = 0.60
#: Every consumer object APIBound=True within this many times the raw loop's time.
BOUND_FACTOR = 1.5


class Counter:
    """A watch counting distinct objects (that pass ``accept``), noting when the count
    reaches ``want``."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        want: int,
        accept: Callable[[dict[str, Any]], bool] = lambda _obj: True,
    ) -> None:
        self.want = want
        self._accept = accept
        self._names: set[str] = set()
        self.done_at: float | None = None
        self.done = threading.Event()
        self.informer = Informer(
            client, NOP, namespace=namespace, handler=self._on_event, name=f"count-{namespace}"
        )

    def _on_event(self, event: str, obj: dict[str, Any]) -> None:
        if event == "DELETED" or self.done.is_set() or not self._accept(obj):
            return
        self._names.add(obj["metadata"]["name"])
        if len(self._names) >= self.want:
            self.done_at = time.perf_counter()
            self.done.set()

    @property
    def count(self) -> int:
        return len(self._names)


def create_all(client: KubeClient, namespace: str, n: int, prefix: str, threads: int) -> float:
    """Create ``n`` objects on ``threads`` threads; the seconds it took."""
    names = [f"{prefix}-{i}" for i in range(n)]
    start = time.perf_counter()
    errors = run_parallel(
        names,
        lambda name: client.create(NOP, nop(name, namespace, "bulk")),
        threads=threads,
        deadline=time.monotonic() + 600,
    )
    if errors:
        raise BenchError(f"Creating {n} objects failed: {errors[0]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 objects instead of 2,000")
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    args = parser.parse_args()
    n = args.objects or (200 if args.quick else 2000)
    threads = CONNECTOR_WORKERS

    report = Report("bulk", args.quick)
    with clusters(OUT / "clusters-bulk") as env:
        report.details["machine"] = machine(env)
        with connector_process(env) as connector:
            connect_and_bind(env)
            # Floor, with the connector up and idle: the raw create loop into the provider,
            # client built like the connector's.
            floor_client = env.client("provider")
            floor_seconds = create_all(floor_client, FLOOR_NS, n, "raw", threads)
            floor_rate = n / floor_seconds
            counter = Counter(env.provider, BOUND_NS, n)
            bound = Counter(
                env.consumer,
                BOUND_NS,
                n,
                accept=lambda obj: condition_status(obj, "APIBound") == "True",
            )
            counter.informer.start()
            bound.informer.start()
            try:
                counter.informer.wait_synced(30)
                bound.informer.wait_synced(30)
                before = connector.counters()
                cpu_before = proc_cpu_seconds(connector.pid)
                start = time.perf_counter()
                create_seconds = create_all(env.consumer, BOUND_NS, n, "bulk", threads)
                if not counter.done.wait(args.timeout):
                    raise BenchError(
                        f"Only {counter.count} of {n} twins reached the provider within "
                        f"{args.timeout:.0f} s."
                    )
                assert counter.done_at is not None
                seconds = counter.done_at - start
                if not bound.done.wait(args.timeout):
                    raise BenchError(
                        f"Only {bound.count} of {n} consumer objects showed APIBound=True "
                        f"within {args.timeout:.0f} s of their twins."
                    )
                assert bound.done_at is not None
                bound_seconds = bound.done_at - start
                per_object = counters_per(before, connector.counters(), n)
                cpu_seconds = proc_cpu_seconds(connector.pid) - cpu_before
            finally:
                counter.informer.stop()
                bound.informer.stop()
        rate = n / seconds
        report.details["bulk"] = {
            "objects": n,
            "concurrency": threads,
            "consumer_create_seconds": round(create_seconds, 2),
            "connector_seconds": round(seconds, 2),
            "connector_objects_per_s": round(rate, 1),
            "all_api_bound_seconds": round(bound_seconds, 2),
            "floor_seconds": round(floor_seconds, 2),
            "floor_objects_per_s": round(floor_rate, 1),
            "connector_per_object": per_object,
            # The connector's own CPU (utime+stime) until every object was bound: on a
            # loaded machine, what bounds its pace along with its workers' waiting.
            "connector_cpu_ms_per_object": round(1000 * cpu_seconds / n, 2),
        }
        report.add(
            Figure(
                f"bulk {n} objects: throughput",
                "obj/s",
                f">= {TARGET_RATIO:.0%} of floor",
                rate,
                floor_rate,
                passed=rate >= TARGET_RATIO * floor_rate,
                note=(
                    f"all twins in the provider {seconds:.1f} s after the first create "
                    f"(creates took {create_seconds:.1f} s), all APIBound=True after "
                    f"{bound_seconds:.1f} s; the raw loop took {floor_seconds:.1f} s"
                ),
            )
        )
        report.add(
            Figure(
                f"bulk {n} objects: all APIBound=True",
                "s",
                f"<= {BOUND_FACTOR}x floor time",
                bound_seconds,
                floor_seconds,
                passed=bound_seconds <= BOUND_FACTOR * floor_seconds,
                note="from the first create to the last consumer object showing APIBound=True",
            )
        )
    report.print_table()
    print(f"  connector CPU per object: {report.details['bulk']['connector_cpu_ms_per_object']} ms")
    print("  connector requests/reconciles per object:")
    for k, v in report.details["bulk"]["connector_per_object"].items():
        print(f"      {v:6.2f}  {k}")
    print(f"  report: {report.save()}")


if __name__ == "__main__":
    run_main(main)
