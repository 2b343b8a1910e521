"""Helpers of the fault and security tests: a dedicated consumer/provider pair, the connector
as a real ``api-connector run`` process, and the convergence check every fault test ends with.

Fault tests kill and restart things, so they never use the session's shared clusters: each
module starts its own pair with :func:`fault_world` (a module-scoped fixture).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from connector.envtest import Cluster, find_binaries
from connector.envtest._cluster import free_port
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig_file
from connector.kube.errors import ConflictError, NotFoundError
from connector.kube.resources import CLUSTER_API_BINDINGS, CLUSTER_CONNECTIONS, NAMESPACES
from functions.common import FINALIZER, LABEL_CONSUMER_CLUSTER, LABEL_CONSUMER_UID, MANAGED_LABEL
from tests.e2e.harness import (
    NOP,
    ROOT,
    apply_file,
    condition,
    eventually,
    get,
    install_connector_crds,
    reason_of,
)

CONNECTION = "provider-connection"
BINDING = "nop.example.org"
CLI = str(Path(sys.executable).parent / "api-connector")


@dataclass
class FaultWorld:
    """A consumer and a provider of one's own, the walkthrough applied, no connector yet."""

    consumer_cluster: Cluster
    provider_cluster: Cluster
    #: Admin clients without a client-side rate limit: tests create hundreds of objects.
    consumer: KubeClient
    provider: KubeClient
    base: Path
    consumer_cluster_name: str = "fault-consumer"


def admin_client(kubeconfig: Path) -> KubeClient:
    return client_from_kubeconfig_file(kubeconfig, qps=None)


@contextlib.contextmanager
def fault_world(
    base: Path,
    *,
    apiserver_args: Sequence[str] = (),
    connection: bool = True,
) -> Iterator[FaultWorld]:
    """Start a consumer and a provider, publish the NopResource API, and (unless
    ``connection`` is False) apply the walkthrough's Secret, ClusterConnection and
    ClusterAPIBinding in the consumer. Everything is stopped on exit."""
    binaries = find_binaries()
    clusters = [
        Cluster(name, base, binaries=binaries, extra_apiserver_args=apiserver_args)
        for name in ("consumer", "provider")
    ]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(c.start) for c in clusters]:
                future.result()
        consumer_cluster, provider_cluster = clusters
        consumer = admin_client(consumer_cluster.kubeconfig)
        provider = admin_client(provider_cluster.kubeconfig)
        world = FaultWorld(consumer_cluster, provider_cluster, consumer, provider, base)
        install_connector_crds(consumer)
        apply_file(provider, "provider/nopresources.nop.example.org.yaml")
        apply_file(consumer, "consumer/00-namespace.yaml")
        if connection:
            kubeconfig = provider_cluster.kubeconfig.read_bytes()
            apply_file(
                consumer,
                "consumer/10-secret-kubeconfig.yaml",
                PROVIDER_KUBECONFIG_BASE64=base64.b64encode(kubeconfig).decode(),
            )
            apply_file(consumer, "consumer/20-clusterconnection.yaml")
            apply_file(consumer, "consumer/30-clusterapibinding-group.yaml")
        yield world
    finally:
        for cluster in clusters:
            cluster.stop()


def wait_bound(world: FaultWorld, *, timeout: float = 60.0) -> None:
    """Wait until the connection is Ready, the API bound and its CRD served in the consumer."""
    eventually(
        lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, CONNECTION) == "Ready",
        timeout=timeout,
    )
    eventually(
        lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, BINDING) == "Bound",
        timeout=timeout,
    )
    eventually(lambda: world.consumer.list(NOP)[1] is not None, timeout=timeout)


def wait_object_bound(
    world: FaultWorld, connector: ConnectorProcess, namespace: str, name: str
) -> None:
    """Wait until the consumer object shows ``APIBound=True``; if it does not within 60 s,
    fail with the object and the tail of the connector's log."""

    def bound() -> bool:
        obj = get(world.consumer, NOP, name, namespace)
        return condition(obj, "APIBound").get("status") == "True"

    try:
        eventually(bound, timeout=60)
    except AssertionError as e:
        raise AssertionError(
            f"{get(world.consumer, NOP, name, namespace)}\n{connector.log_tail()}"
        ) from e


@dataclass
class ConnectorProcess:
    """``api-connector run`` as users run it, as a child process; ``stop()`` always ends it.

    Every start appends to the same log file, so a test reads what all incarnations wrote.
    """

    kubeconfig: Path
    consumer_cluster: str
    log: Path
    debug: bool = False
    leader_elect: bool = False
    identity: str = "connector"
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = field(default_factory=free_port)
    starts: int = 0

    def start(self) -> ConnectorProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("The connector is running already.")
        argv = [CLI, *(["--debug"] if self.debug else []), "run"]
        argv += ["--kubeconfig", str(self.kubeconfig)]
        argv += ["--consumer-cluster-name", self.consumer_cluster, "--poll-interval", "1h"]
        argv += ["--metrics-address", f"127.0.0.1:{self.metrics_port}"]
        argv += ["--leader-elect"] if self.leader_elect else []
        argv += list(self.extra_args)
        # POD_NAME prefixes the leader-election identity, so a test can tell who leads.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "POD_NAME": self.identity}
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} of {self.identity} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        eventually(lambda: self._alive_or_fail() and self.ready(), timeout=timeout)

    def _alive_or_fail(self) -> bool:
        if not self.running:
            raise RuntimeError(f"The connector exited; its log:\n{self.log_tail()}")
        return True

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the connector."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def metrics(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The samples of the metric ``name`` on the process's /metrics: (labels, value)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]


@contextlib.contextmanager
def running(*connectors: ConnectorProcess) -> Iterator[None]:
    """Stop (and finally kill) every connector on exit, whatever the test did."""
    try:
        yield
    finally:
        for c in connectors:
            c.stop()


def nop(namespace: str, name: str, cool: str) -> dict[str, Any]:
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"coolField": cool, "compositeDeletePolicy": "Foreground"},
    }


def ensure_namespace(kube: KubeClient, name: str) -> None:
    with contextlib.suppress(ConflictError):
        kube.create(
            NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )


def parallel(fn: Callable[[Any], object], items: Iterable[Any], *, threads: int = 8) -> None:
    """Run ``fn`` over ``items`` on a few threads; re-raise the first failure."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def create_objects(kube: KubeClient, namespace: str, wanted: dict[str, str]) -> None:
    """Create one NopResource per name with ``coolField`` set as given."""
    parallel(lambda name: kube.create(NOP, nop(namespace, name, wanted[name])), sorted(wanted))


def twins(world: FaultWorld, namespace: str) -> dict[str, dict[str, Any]]:
    """Every NopResource in the provider namespace, ours or not, by name."""
    try:
        items, _ = world.provider.list(NOP, namespace)
    except NotFoundError:
        return {}
    return {t["metadata"]["name"]: t for t in items}


def problems(
    world: FaultWorld,
    namespace: str,
    wanted: dict[str, str],
    *,
    edited_in_provider: Iterable[str] = (),
) -> list[str]:
    """What stands between now and convergence; empty when converged.

    Converged means: the consumer holds exactly ``wanted`` (name → coolField), none of them
    being deleted; the provider holds exactly one twin per consumer object and nothing
    else; each twin has the consumer object's spec, its uid in the origin labels (not an
    earlier incarnation's) and no more ``generation``s than its object (a twin written more
    often than its object changed would show more); each consumer object holds the finalizer and
    ``APIBound=True`` for its current generation. Twins in ``edited_in_provider`` were
    changed out of band (and put back), so their generations are not compared.
    """
    edited = set(edited_in_provider)
    out: list[str] = []
    items, _ = world.consumer.list(NOP, namespace)
    objects = {o["metadata"]["name"]: o for o in items}
    provider_twins = twins(world, namespace)
    if set(objects) != set(wanted):
        out.append(
            f"consumer: missing {sorted(set(wanted) - set(objects))[:5]}, "
            f"unexpected {sorted(set(objects) - set(wanted))[:5]}"
        )
    if set(provider_twins) != set(wanted):
        out.append(
            f"provider: {len(provider_twins)} twins; missing "
            f"{sorted(set(wanted) - set(provider_twins))[:5]}, extra "
            f"{sorted(set(provider_twins) - set(wanted))[:5]}"
        )
    for name in sorted(set(wanted) & set(objects) & set(provider_twins)):
        obj, twin = objects[name], provider_twins[name]
        meta, tmeta = obj["metadata"], twin["metadata"]
        labels = tmeta.get("labels") or {}
        bound = condition(obj, "APIBound")
        checks = {
            "being deleted": meta.get("deletionTimestamp") is not None,
            "no finalizer": FINALIZER not in (meta.get("finalizers") or []),
            "twin spec differs": twin.get("spec", {}).get("coolField") != wanted[name],
            "twin not managed": labels.get(MANAGED_LABEL) != "true",
            "twin of another cluster": labels.get(LABEL_CONSUMER_CLUSTER)
            != world.consumer_cluster_name,
            "twin of another uid": labels.get(LABEL_CONSUMER_UID) != meta["uid"],
            # A twin is written once per spec change of its object at most (it may skip
            # intermediate ones): more generations than its object means duplicate writes.
            "twin has more generations": name not in edited
            and int(tmeta.get("generation") or 0) > int(meta.get("generation") or 0),
            f"APIBound {bound.get('status')}/{bound.get('reason')}": bound.get("status") != "True",
            "APIBound for an old generation": bound.get("observedGeneration")
            != meta.get("generation"),
        }
        out.extend(f"{name}: {what}" for what, failed in checks.items() if failed)
        if len(out) > 20:
            break
    return out


def wait_converged(
    world: FaultWorld,
    namespace: str,
    wanted: dict[str, str],
    *,
    timeout: float = 120.0,
    edited_in_provider: Iterable[str] = (),
) -> float:
    """Wait until :func:`problems` finds none; return the seconds it took."""
    start = time.monotonic()
    last: list[str] = []
    while time.monotonic() - start < timeout:
        try:
            last = problems(world, namespace, wanted, edited_in_provider=edited_in_provider)
        except Exception as exc:  # an API server restarting answers with errors for a while
            last = [f"error: {exc}"]
        if not last:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"not converged within {timeout} s: " + json.dumps(last, indent=1))


@contextlib.contextmanager
def apiserver_down(cluster: Cluster) -> Iterator[None]:
    """Stop ``cluster``'s kube-apiserver (etcd keeps the data); start it again on exit."""
    cluster.stop_apiserver()
    try:
        yield
    finally:
        cluster.start_apiserver()


def unique_namespace(world: FaultWorld, stem: str) -> str:
    """A fresh namespace in the consumer only: the connector creates it in the provider."""
    name = f"{stem}-{os.urandom(3).hex()}"
    ensure_namespace(world.consumer, name)
    return name
