"""Scale: the connector's memory, idle CPU and restart with many bound objects.

The connector runs as its own process (``api-connector run --poll-interval 1h``), so that
``/proc/<pid>/status`` VmRSS and ``/proc/<pid>/stat`` utime+stime are its own. The floor is
the same process, in the same run, with the API bound and no objects: it is what the
runtime, the libraries and the connector's own caches cost before any object is synced.

1. bind the API, let the connector settle; read RSS, then CPU over ``--idle`` seconds;
2. create ``--objects`` NopResources in the consumer and wait until every one is
   ``APIBound=True`` (a watch in this process counts them);
3. wait until the connector stops reconciling, read RSS, then CPU over ``--idle`` seconds
   with no change anywhere;
4. **restart**: stop the connector (SIGTERM) and start a new one with every object in
   sync; measure the time from starting it until every object has been reconciled once
   (both of its syncer's caches have listed, so every key was queued, its queue is empty
   and it has done at least one reconcile per object: read from its ``/metrics``), and
   the writes it makes (create, update, patch, apply and delete requests on either
   cluster, until it is quiet);
5. **many objects** (``--big-objects``, 100,000): bringing real clusters to 100,000
   objects costs three writes each, over an hour on a shared 2-core machine, so by default
   one object syncer — the connector's own ``ObjectSyncer``, its informers, queue, workers
   and stage — holds them in a process of its own, its lists served from memory with
   copies of a real object and twin (``_syncer_probe.py`` says exactly what runs). The
   figure is the connector's floor (step 1) plus that syncer's growth; the same probe at
   ``--objects`` is set against the whole connector's RSS after step 4, as a check.
   ``--big-connector`` also does it for real: with the connector stopped, it brings the
   namespace to ``--big-objects`` objects in sync as the connector leaves them (the
   consumer object with the finalizer and status it gave the first one, written as it
   writes status; the twin the object-syncer stage wants, server-side applied with its
   field manager), starts the connector again, waits as in 4, and reads its RSS.

Targets: RSS ≤ 200 MB with 10,000 bound objects; idle CPU ≤ 1 % of a core; a restart with
10,000 objects in sync writes nothing and reconciles every object within 30 s; RSS ≤ 1 GiB
with 100,000 bound objects. Each figure notes the machine's load average when it was taken
(the machine is shared). The report is saved after every step.

Run: ``.venv/bin/python bench/scale.py [--quick] [--objects N] [--big-objects N]
[--big-connector] [--skip-big] [--idle S]`` (or ``hack/bench.sh --only scale``);
``--quick``: 1,000 objects, 5,000 for step 5, 10 s idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    BOUND_NS,
    CONSUMER_CLUSTER,
    NOP,
    OUT,
    BenchError,
    ConnectorProcess,
    Env,
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
from prometheus_client.parser import text_string_to_metric_families

from connector.kube import CUSTOM_RESOURCE_DEFINITIONS, KubeClient
from connector.runtime import Informer
from functions.common.api import FIELD_MANAGER as CONNECTOR_FIELD_MANAGER
from functions.object_syncer.logic import desired_twin

RSS_TARGET_MB = 200.0
IDLE_CPU_TARGET = 1.0  # percent of one core
RESTART_SECONDS_TARGET = 30.0
BIG_RSS_TARGET_MIB = 1024.0
CREATE_THREADS = 8
WRITE_VERBS = ("create", "update", "patch", "apply", "delete")
HERE = Path(__file__).resolve().parent


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


def load() -> str:
    """The machine's load average (1, 5, 15 min), as ``uptime`` prints it."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def idle_cpu_percent(pid: int, seconds: float) -> float:
    """The process's CPU use over ``seconds``, in percent of one core."""
    before, start = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (proc_cpu_seconds(pid) - before) / (time.monotonic() - start)


def wait_quiet(connector: ConnectorProcess, *, quiet: float = 5.0, timeout: float = 120.0) -> None:
    """Until the connector's request and reconcile counters stop moving for ``quiet`` s.

    Liveness probes (verb ``ping``, sent to a provider silent for 30 s) are not work."""
    deadline = time.monotonic() + timeout
    last = _working(connector.counters())
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _working(connector.counters())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise BenchError(f"The connector kept working for {timeout:.0f} s with nothing changing.")


def _working(counters: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counters.items() if not k.endswith(",ping}")}


def writes(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Write requests between two counter snapshots, as ``<cluster> <verb>`` → count."""
    out: dict[str, float] = {}
    for key, value in after.items():
        name, _, labels = key.partition("{")
        if name != "kube_api_requests":
            continue
        cluster, _status, verb = labels.rstrip("}").split(",")
        grew = value - before.get(key, 0.0)
        if verb in WRITE_VERBS and grew > 0:
            out[f"{cluster} {verb}"] = out.get(f"{cluster} {verb}", 0.0) + grew
    return out


@dataclass
class Progress:
    """The object syncers as their process's /metrics shows them."""

    reconciles: float = 0.0
    #: Keys waiting in their queues; None before a syncer exists.
    depth: float | None = None
    #: Their informers (consumer objects, twins) that have listed and are healthy, of all.
    synced: int = 0
    informers: int = 0

    def all_reconciled(self, objects: int) -> bool:
        """Both caches listed (so every key was queued), nothing waiting, and at least a
        reconcile per object (the last few may still be running: milliseconds)."""
        return (
            self.informers >= 2
            and self.synced == self.informers
            and self.depth == 0
            and self.reconciles >= objects
        )


_OWNER_LABEL = {
    "api_connector_reconcile_total": "controller",
    "api_connector_workqueue_depth": "queue",
    "api_connector_informer_healthy": "informer",
}


def sync_progress(connector: ConnectorProcess) -> Progress:
    """The object syncers' progress; empty while the metrics endpoint is not up."""
    progress = Progress()
    try:
        with urllib.request.urlopen(connector.metrics_url, timeout=10) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return progress
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # The syncers' own: controllers and queues "sync/...", informers "consumer/..."
            # and "provider/...".
            label = _OWNER_LABEL.get(sample.name, "")
            owner = sample.labels.get(label, "")
            if sample.name == "api_connector_reconcile_total" and owner.startswith("sync/"):
                progress.reconciles += sample.value
            elif sample.name == "api_connector_workqueue_depth" and owner.startswith("sync/"):
                progress.depth = (progress.depth or 0.0) + sample.value
            elif sample.name == "api_connector_informer_healthy" and owner.startswith(
                ("consumer/", "provider/")
            ):
                progress.informers += 1
                progress.synced += int(sample.value == 1)
    return progress


@dataclass
class Restart:
    objects: int
    #: From starting the process until every object was reconciled once.
    reconciled_seconds: float
    reconciles: float
    writes: dict[str, float]
    requests: dict[str, float]
    rss_mib: float
    load: str

    @property
    def total_writes(self) -> float:
        return sum(self.writes.values())

    def details(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "all_reconciled_seconds": round(self.reconciled_seconds, 1),
            "reconciles": self.reconciles,
            "writes": self.writes,
            "requests": self.requests,
            "rss_mib": round(self.rss_mib, 1),
            "load_average": self.load,
        }


def restart(env: Env, objects: int, *, timeout: float) -> Restart:
    """Start a connector with ``objects`` bound objects in sync; see the module doc, 4."""
    started = time.monotonic()
    with connector_process(env) as connector:
        deadline = started + timeout
        while not (progress := sync_progress(connector)).all_reconciled(objects):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"After {timeout:.0f} s the restarted connector's syncers were not done "
                    f"with {objects} objects: {progress}."
                )
            time.sleep(0.25)
        reconciled = time.monotonic() - started
        load_then = load()
        wait_quiet(connector, timeout=max(120.0, timeout / 4))
        counters = connector.counters()
        rss = proc_rss_mib(connector.pid)
    return Restart(
        objects=objects,
        reconciled_seconds=reconciled,
        reconciles=sync_progress_total(counters),
        writes=writes({}, counters),
        requests=counters_per({}, counters, 1),
        rss_mib=rss,
        load=load_then,
    )


def sync_progress_total(counters: dict[str, float]) -> float:
    """Reconciles of the object syncers (``reconcile{<controller>,<result>}``)."""
    return sum(v for k, v in counters.items() if k.startswith("reconcile{sync/"))


def clone_in_sync(env: Env, template: str, names: list[str], *, deadline: float) -> None:
    """Create ``names`` in the bound namespace as the connector leaves an object in sync:
    the consumer object with the finalizers and status the connector gave ``template`` (a
    status PUT with its field manager, as it writes status), and its twin as the
    object-syncer stage wants it (``desired_twin``), server-side applied with the
    connector's field manager."""
    obj = env.consumer.get(NOP, template, BOUND_NS)
    meta = obj["metadata"]

    def one(name: str) -> None:
        created = env.consumer.create(
            NOP,
            {
                "apiVersion": NOP.api_version,
                "kind": NOP.kind,
                "metadata": {
                    "name": name,
                    "namespace": BOUND_NS,
                    "labels": meta.get("labels") or {},
                    "finalizers": meta.get("finalizers") or [],
                },
                "spec": obj["spec"],
            },
        )
        created["status"] = obj["status"]
        env.consumer.update_status(NOP, created, field_manager=CONNECTOR_FIELD_MANAGER)
        twin = desired_twin(created, consumer_cluster=CONSUMER_CLUSTER)
        env.provider.apply(NOP, twin, field_manager=CONNECTOR_FIELD_MANAGER)

    errors = run_parallel(names, one, threads=CREATE_THREADS, deadline=deadline)
    if errors:
        raise BenchError(f"Cloning objects in sync failed: {errors[0]}")


def probe_syncer(env: Env, objects: int, templates: Path, *, timeout: float) -> dict[str, Any]:
    """One object syncer holding ``objects`` objects, in a process of its own, without API
    servers (``_syncer_probe.py``)."""
    done = subprocess.run(
        [sys.executable, str(HERE / "_syncer_probe.py"), str(templates), str(objects)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"The syncer probe failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = load()
    return result


def save_templates(env: Env, name: str, path: Path) -> None:
    """A bound object and its twin as the API servers serve them, for the syncer probe."""
    crd = env.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, f"{NOP.plural}.{NOP.group}")
    path.write_text(
        json.dumps(
            {
                "consumer": env.consumer.get(NOP, name, BOUND_NS),
                "twin": env.provider.get(NOP, name, BOUND_NS),
                "consumer_cluster": CONSUMER_CLUSTER,
                "resource": {
                    "crd_name": crd["metadata"]["name"],
                    "group": NOP.group,
                    "kind": NOP.kind,
                    "plural": NOP.plural,
                    "scope": crd["spec"]["scope"],
                    "version": NOP.version,
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 objects (5,000 for step 5), 10 s idle"
    )
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--big-objects", type=int, default=None, help="step 5's object count")
    parser.add_argument(
        "--big-connector",
        action="store_true",
        help="step 5 with the whole connector and real clusters (slow: see the module doc)",
    )
    parser.add_argument("--skip-big", action="store_true", help="leave out step 5")
    parser.add_argument("--idle", type=float, default=None, help="idle CPU window (s)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up a step after (s)")
    args = parser.parse_args()
    n = args.objects or (1000 if args.quick else 10000)
    big = args.big_objects or (5000 if args.quick else 100000)
    idle = args.idle or (10.0 if args.quick else 60.0)

    report = Report("scale", args.quick)
    with clusters(OUT / "clusters-scale") as env:
        report.details["machine"] = machine(env)
        with connector_process(env) as connector:
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
            rss_load = load()
            idle_before = connector.counters()
            cpu = idle_cpu_percent(connector.pid, idle)
            cpu_load = load()
            idle_requests = counters_per(idle_before, _working(connector.counters()), 1)
        steady(report, n, bound, created, rss_floor, rss, rss_load)
        idle_figure(report, n, idle, cpu_floor, cpu, cpu_load, idle_requests)
        report.details["scale"]["connector_per_object"] = per_object
        report.save()

        restarted = restart(env, n, timeout=args.timeout)
        restart_figures(report, restarted)
        report.save()

        if not args.skip_big:
            templates = OUT / "scale-templates.json"
            save_templates(env, "scale-0", templates)
            small = probe_syncer(env, n, templates, timeout=args.timeout)
            many = probe_syncer(env, big, templates, timeout=args.timeout)
            big_figures(report, big, rss_floor, restarted, small, many)
            report.save()
            if args.big_connector and big > n:
                start = time.monotonic()
                clone_in_sync(
                    env,
                    "scale-0",
                    [f"scale-{i}" for i in range(n, big)],
                    deadline=start + args.timeout,
                )
                cloned = time.monotonic() - start
                whole = restart(env, big, timeout=args.timeout)
                whole_figures(report, big, rss_floor, whole, cloned)
                report.save()
    report.print_table()
    print(f"  report: {report.save()}")


def steady(
    report: Report,
    n: int,
    bound: float,
    created: float,
    rss_floor: float,
    rss: float,
    rss_load: str,
) -> None:
    report.details["scale"] = {
        "objects": n,
        "create_seconds": round(created, 1),
        "all_bound_seconds": round(bound, 1),
        "bound_per_s": round(n / bound, 1),
        "rss_mib_no_objects": round(rss_floor, 1),
        "rss_mib": round(rss, 1),
        "rss_kib_per_object": round((rss - rss_floor) * 1024 / n, 2),
        "rss_load_average": rss_load,
    }
    report.add(
        Figure(
            f"RSS with {n} bound objects",
            "MiB",
            f"<= {RSS_TARGET_MB:.0f} MB",
            rss,
            rss_floor,
            passed=rss <= RSS_TARGET_MB,
            note=f"{(rss - rss_floor) * 1024 / n:.1f} KiB per object; all bound in {bound:.0f} s; "
            f"load {rss_load}",
        )
    )


def idle_figure(
    report: Report,
    n: int,
    idle: float,
    cpu_floor: float,
    cpu: float,
    cpu_load: str,
    idle_requests: dict[str, float],
) -> None:
    report.details["scale"].update(
        idle_seconds=idle,
        idle_cpu_percent_no_objects=round(cpu_floor, 3),
        idle_cpu_percent=round(cpu, 3),
        idle_load_average=cpu_load,
        requests_while_idle=idle_requests,
    )
    report.add(
        Figure(
            f"idle CPU with {n} objects, {idle:.0f} s",
            "% core",
            f"<= {IDLE_CPU_TARGET:.0f}% of a core",
            cpu,
            cpu_floor,
            passed=cpu <= IDLE_CPU_TARGET,
            note=f"API requests while idle, liveness probes aside: {idle_requests or 'none'}; "
            f"load {cpu_load}",
        )
    )


def restart_figures(report: Report, restarted: Restart) -> None:
    n = restarted.objects
    report.details["restart"] = restarted.details()
    report.add(
        Figure(
            f"restart with {n} objects in sync: writes",
            "requests",
            "0",
            restarted.total_writes,
            passed=restarted.total_writes == 0,
            note=f"{restarted.writes or 'none'}; load {restarted.load}",
        )
    )
    report.add(
        Figure(
            f"restart with {n} objects in sync: every object reconciled",
            "s",
            f"<= {RESTART_SECONDS_TARGET:.0f} s",
            restarted.reconciled_seconds,
            passed=restarted.reconciled_seconds <= RESTART_SECONDS_TARGET,
            note=f"from starting the process; {restarted.reconciles:.0f} reconciles; "
            f"RSS then {restarted.rss_mib:.1f} MiB; load {restarted.load}",
        )
    )


def big_figures(
    report: Report,
    big: int,
    rss_floor: float,
    restarted: Restart,
    small: dict[str, Any],
    many: dict[str, Any],
) -> None:
    n = restarted.objects
    small_delta = small["rss_mib"] - small["rss_mib_before"]
    many_delta = many["rss_mib"] - many["rss_mib_before"]
    projected = rss_floor + many_delta
    report.details["syncer_probe"] = {"small": small, "many": many}
    report.add(
        Figure(
            f"RSS with {big} bound objects (projected)",
            "MiB",
            f"<= {BIG_RSS_TARGET_MIB:.0f} MiB",
            projected,
            rss_floor,
            passed=projected <= BIG_RSS_TARGET_MIB,
            note=f"the connector's floor + one object syncer holding {big} objects in a "
            f"process of its own (bench/_syncer_probe.py): {many_delta * 1024 / big:.1f} KiB "
            f"per object, reconciled in {many['reconcile_seconds']:.0f} s, "
            f"{many['writes_attempted']} writes, a full garbage collection "
            f"{many.get('full_collection_ms')} ms; check at {n}: projected "
            f"{rss_floor + small_delta:.1f} MiB, the whole connector after its restart "
            f"{restarted.rss_mib:.1f} MiB; load {many['load_average']}",
        )
    )


def whole_figures(
    report: Report, big: int, rss_floor: float, whole: Restart, cloned: float
) -> None:
    report.details["many"] = {**whole.details(), "clone_seconds": round(cloned, 1)}
    report.add(
        Figure(
            f"RSS with {big} bound objects (whole connector)",
            "MiB",
            f"<= {BIG_RSS_TARGET_MIB:.0f} MiB",
            whole.rss_mib,
            rss_floor,
            passed=whole.rss_mib <= BIG_RSS_TARGET_MIB,
            note=f"{(whole.rss_mib - rss_floor) * 1024 / big:.1f} KiB per object; after a "
            f"restart, every object reconciled once in {whole.reconciled_seconds:.0f} s; "
            f"writes: {whole.writes or 'none'}; load {whole.load}",
        )
    )


if __name__ == "__main__":
    run_main(main)
