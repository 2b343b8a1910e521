"""What every load benchmark shares: two real local clusters, the bound API, the connector.

A benchmark run starts a consumer and a provider kube-apiserver on 127.0.0.1
(:func:`connector.envtest.start_clusters`), publishes the walkthrough's bindable
``nopresources.nop.example.org`` on the provider, installs the connector's CRDs in the
consumer, and runs the connector either in-process (:class:`connector.manager.Manager`, as
the demo does) or as its own ``api-connector run`` process (so that its RSS and CPU are its
own). The connection and the binding are the walkthrough's manifests; the binding is an
``APIBinding`` in one namespace, so the other namespaces stay free for the floors (plain
relays with the same client library) measured in the same run.

Figures come out as :class:`Figure` rows, printed as a table and saved as JSON; every
benchmark exits 0: it reports, it does not gate.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connector import logs
from connector.envtest import Cluster, eventually, start_clusters
from connector.envtest._process import spawn, terminate
from connector.kube import (
    CUSTOM_RESOURCE_DEFINITIONS,
    KubeClient,
    KubeError,
    NotFoundError,
    Resource,
    client_from_kubeconfig_file,
)
from connector.kube.config import CONSUMER_BURST, CONSUMER_QPS
from connector.kube.metrics import Metrics
from connector.kube.resources import API_BINDINGS, CLUSTER_CONNECTIONS, NAMESPACES, SECRETS
from connector.manager import Manager
from connector.stages import InProcessStages
from functions.common import find_condition

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "_out" / "bench"
WALKTHROUGH = REPO / "examples" / "walkthrough"
NOP = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", namespaced=True)
CONSUMER_CLUSTER = "bench"
#: The namespace the connector syncs (its APIBinding lives there).
BOUND_NS = "bench"
#: Where the floors' relays work: not bound, so the connector never sees it.
FLOOR_NS = "floor"
FIELD_MANAGER = "api-connector-bench"
CONNECTION = "provider-connection"
#: The connector's default (``run --workers``, ``Manager(workers=...)``).
CONNECTOR_WORKERS = 4


class BenchError(Exception):
    """A setup step of a benchmark failed; the message names it."""


# -- figures ------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure against its target and its floor (the same thing done by the
    simplest program using the same client library, in the same run)."""

    name: str
    unit: str
    target: str
    measured: float
    floor: float | None = None
    #: None: the target is not met or missed (a figure reported for context).
    passed: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.measured / self.floor


@dataclass
class Report:
    bench: str
    quick: bool
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "quick": self.quick,
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
            "details": self.details,
        }

    def print_table(self) -> None:
        rows = [("figure", "target", "measured", "floor", "ratio", "result")]
        for f in self.figures:
            verdict = "-" if f.passed is None else ("PASS" if f.passed else "FAIL")
            rows.append(
                (
                    f.name,
                    f.target,
                    f"{_num(f.measured)} {f.unit}",
                    "-" if f.floor is None else f"{_num(f.floor)} {f.unit}",
                    "-" if f.ratio is None else f"{f.ratio:.2f}",
                    verdict,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        print(f"\n{self.bench}{' (quick)' if self.quick else ''}")
        for i, row in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
        for f in self.figures:
            if f.note:
                print(f"  * {f.name}: {f.note}")

    def save(self, path: Path | None = None) -> Path:
        path = path or OUT / f"{self.bench}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def _num(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def percentile(samples: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation, like numpy's default."""
    if not samples:
        return float("nan")
    if len(samples) == 1:
        return samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[int(p) - 1] if 1 <= p <= 99 else (min(samples) if p < 1 else max(samples))


# -- waiting ------------------------------------------------------------------------------


def condition_status(obj: dict[str, Any], type_: str) -> str | None:
    cond = find_condition((obj.get("status") or {}).get("conditions"), type_)
    return None if cond is None else str(cond.get("status"))


# -- the environment ----------------------------------------------------------------------


@dataclass
class Env:
    consumer_cluster: Cluster
    provider_cluster: Cluster
    #: Unthrottled clients for the benchmark's own reads and writes (load generators and
    #: watchers must not be what limits a figure).
    consumer: KubeClient
    provider: KubeClient
    out_dir: Path

    def client(self, which: str, **kwargs: Any) -> KubeClient:
        """A client built like the connector builds its provider clients (same defaults:
        QPS, burst); its consumer client has higher limits (``CONSUMER_QPS``)."""
        cluster = self.consumer_cluster if which == "consumer" else self.provider_cluster
        return client_from_kubeconfig_file(cluster.kubeconfig, name=f"{which}-bench", **kwargs)


@contextlib.contextmanager
def clusters(out_dir: Path) -> Iterator[Env]:
    """A consumer and a provider on 127.0.0.1 with the NopResource API published and the
    connector's CRDs installed; both stopped when the block ends."""
    # The components' logs would drown the figures; failures show in the counters instead.
    logs.configure(level=logging.ERROR)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = start_clusters(["consumer", "provider"], out_dir)
    try:
        consumer_cluster, provider_cluster = started
        consumer = client_from_kubeconfig_file(consumer_cluster.kubeconfig, qps=None)
        provider = client_from_kubeconfig_file(provider_cluster.kubeconfig, qps=None)
        env = Env(consumer_cluster, provider_cluster, consumer, provider, out_dir)
        _publish_api(env)
        yield env
    finally:
        for cluster in reversed(started):
            cluster.stop()


def _apply_yaml(client: KubeClient, res: Resource, path: Path, **subst: str) -> dict[str, Any]:
    import yaml

    text = path.read_text()
    for name, value in subst.items():
        text = text.replace(f"${{{name}}}", value)
    doc = yaml.safe_load(text)
    return client.apply(res, doc, FIELD_MANAGER)


def _publish_api(env: Env) -> None:
    _apply_yaml(
        env.provider,
        CUSTOM_RESOURCE_DEFINITIONS,
        WALKTHROUGH / "provider" / "nopresources.nop.example.org.yaml",
    )
    eventually(lambda: env.provider.list(NOP)[1], what="the provider to serve NopResources")
    for path in sorted((REPO / "package" / "crds").glob("*.yaml")):
        _apply_yaml(env.consumer, CUSTOM_RESOURCE_DEFINITIONS, path)
    for name in ("clusterconnections", "apibindings", "clusterapibindings"):
        eventually(
            lambda n=name: condition_status(  # type: ignore[misc]
                env.consumer.get(CUSTOM_RESOURCE_DEFINITIONS, f"{n}.connect.upbound.io"),
                "Established",
            )
            == "True",
            what=f"the CRD {name}.connect.upbound.io to be established",
        )
    for client in (env.consumer, env.provider):
        for ns in ("upbound-system", BOUND_NS, FLOOR_NS):
            ensure_namespace(client, ns)


def ensure_namespace(client: KubeClient, name: str) -> None:
    with contextlib.suppress(KubeError):
        client.create(NAMESPACES, {"metadata": {"name": name}})


def connect_and_bind(env: Env, *, timeout: float = 120.0) -> None:
    """The walkthrough's Secret and ClusterConnection, then an APIBinding in ``BOUND_NS``;
    returns once the consumer serves NopResources (the connector pulled the CRD)."""
    consumer_dir = WALKTHROUGH / "consumer"
    kubeconfig = base64.b64encode(env.provider_cluster.kubeconfig.read_bytes()).decode()
    _apply_yaml(
        env.consumer,
        SECRETS,
        consumer_dir / "10-secret-kubeconfig.yaml",
        PROVIDER_KUBECONFIG_BASE64=kubeconfig,
    )
    _apply_yaml(env.consumer, CLUSTER_CONNECTIONS, consumer_dir / "20-clusterconnection.yaml")
    eventually(
        lambda: condition_status(env.consumer.get(CLUSTER_CONNECTIONS, CONNECTION), "Ready")
        == "True",
        what="the ClusterConnection to become Ready",
        timeout=timeout,
    )
    binding = {
        "apiVersion": API_BINDINGS.api_version,
        "kind": API_BINDINGS.kind,
        "metadata": {"name": NOP.group, "namespace": BOUND_NS},
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": CONNECTION}},
    }
    env.consumer.apply(API_BINDINGS, binding, FIELD_MANAGER)
    eventually(
        lambda: condition_status(env.consumer.get(API_BINDINGS, NOP.group, BOUND_NS), "Ready")
        == "True",
        what="the APIBinding to be Ready",
        timeout=timeout,
    )
    eventually(lambda: env.consumer.list(NOP)[1], what="the consumer to serve NopResources")


@contextlib.contextmanager
def connector_in_process(env: Env, *, workers: int = CONNECTOR_WORKERS) -> Iterator[Metrics]:
    """The connector's Manager in this process (as the demo runs it), watches only; yields
    its metrics (requests by cluster, verb and status; reconciles by outcome)."""
    metrics = Metrics()
    consumer = env.client("consumer", metrics=metrics, qps=CONSUMER_QPS, burst=CONSUMER_BURST)
    manager = Manager(
        consumer,
        stages=InProcessStages(),
        consumer_cluster=CONSUMER_CLUSTER,
        resync_period=3600.0,  # --poll-interval 1h: every change must come through watches
        workers=workers,
        metrics=metrics,
    )
    manager.start()
    try:
        yield metrics
    finally:
        manager.stop()


_COUNTED = (
    "api_connector_kube_api_requests",
    "api_connector_reconcile",
    "api_connector_reconcile_errors",
)


def counters(metrics: Metrics) -> dict[str, float]:
    """The connector's request and reconcile counters, flattened to ``name{labels}``."""
    out: dict[str, float] = {}
    for family in metrics.registry.collect():
        if family.name not in _COUNTED:
            continue
        for s in family.samples:
            if s.name.endswith("_total"):
                labels = ",".join(f"{v}" for _, v in sorted(s.labels.items()))
                out[f"{family.name.removeprefix('api_connector_')}{{{labels}}}"] = s.value
    return out


def counters_per(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """What the counters grew by between two snapshots, per unit of work (``n`` units)."""
    return {
        k: round((v - before.get(k, 0.0)) / max(1, n), 2)
        for k, v in sorted(after.items())
        if v - before.get(k, 0.0) > 0
    }


@dataclass
class ConnectorProcess:
    pid: int
    metrics_url: str

    def counters(self) -> dict[str, float]:
        """The process's request and reconcile counters (as :func:`counters` names them)."""
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            family = name.removesuffix("_total")
            if line.startswith("#") or not name.endswith("_total") or family not in _COUNTED:
                continue
            labels_text, _, value = rest.rpartition("} ")
            labels = dict(part.split("=", 1) for part in labels_text.split(",") if "=" in part)
            joined = ",".join(v.strip('"') for _, v in sorted(labels.items()))
            out[f"{family.removeprefix('api_connector_')}{{{joined}}}"] = float(value)
        return out


@contextlib.contextmanager
def connector_process(env: Env, *, workers: int = CONNECTOR_WORKERS) -> Iterator[ConnectorProcess]:
    """``api-connector run`` as its own process (its RSS and CPU are its own), with its
    metrics on a free loopback port. Its log goes to ``<out_dir>/connector.log``."""
    from connector.envtest._cluster import free_port

    port = free_port()
    exe = Path(sys.executable).with_name("api-connector")
    # Spawned as the clusters are: it dies with the benchmark, even a killed one.
    proc = spawn(
        [
            str(exe),
            "run",
            "--kubeconfig",
            str(env.consumer_cluster.kubeconfig),
            "--poll-interval",
            "1h",
            "--consumer-cluster-name",
            CONSUMER_CLUSTER,
            "--workers",
            str(workers),
            "--metrics-address",
            f"127.0.0.1:{port}",
        ],
        log_path=env.out_dir / "connector.log",
        cwd=REPO,
    )
    try:
        yield ConnectorProcess(proc.pid, f"http://127.0.0.1:{port}/metrics")
    finally:
        terminate(proc, timeout=30)


# -- objects ------------------------------------------------------------------------------


def nop(name: str, namespace: str, cool: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": meta,
        "spec": {"coolField": cool},
    }


def get_or_none(client: KubeClient, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return client.get(NOP, name, namespace)
    except NotFoundError:
        return None


def run_parallel(
    items: list[Any], work: Callable[[Any], object], *, threads: int, deadline: float
) -> list[BaseException]:
    """``work(item)`` for every item on ``threads`` threads; stops taking items at
    ``deadline`` (monotonic). Returns the errors (the first 20 kept)."""
    lock = threading.Lock()
    pending = list(reversed(items))
    errors: list[BaseException] = []

    def loop() -> None:
        while time.monotonic() < deadline:
            with lock:
                if not pending:
                    return
                item = pending.pop()
            try:
                work(item)
            except Exception as e:
                with lock:
                    if len(errors) < 20:
                        errors.append(e)

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    return errors


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's ``main``; a failure is printed, and the exit code stays 0 because
    benchmarks report, they do not gate (``run_all`` notices the missing figures)."""
    import traceback

    try:
        main()
    except Exception:
        traceback.print_exc()
        print("The benchmark could not finish; no figures were written.", file=sys.stderr)


# -- the machine --------------------------------------------------------------------------


def machine(env: Env | None = None) -> dict[str, Any]:
    """Cores, memory, Python and (given clusters) the kube-apiserver version."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if env is not None:
        with contextlib.suppress(KubeError):
            info["kube_apiserver"] = env.consumer.server_version().get("gitVersion")
    return info


def proc_rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"/proc/{pid}/status has no VmRSS.")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; the fields after its closing ")" are fixed.
    fields = text.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
