"""``api-connector run``: the connector controller, against a consumer cluster."""

from __future__ import annotations

import gc
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
import structlog

from functions.common.api import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from connector.manager import Manager

log = structlog.get_logger(__name__)

#: How long a thread may hold the interpreter while another waits for it (Python's default
#: is 5 ms). The connector's threads mostly wait on the network; a watch or a worker woken by
#: an answer should not wait 5 ms behind a thread decoding JSON: 1 ms took the spec sync
#: p99 from 1.61-1.75x its floor's to 1.52-1.62x, at no measurable CPU cost
#: (docs/performance.md, finding 23).
GIL_SWITCH_INTERVAL = 0.001

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``10m``, ``1h``, ``30s``, ``1h30m``) or a number."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not text or m is None or not any(m.groups()):
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m or 1h.")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


@click.command("run")
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Kubeconfig of the consumer cluster (default: the in-cluster service account).",
)
@click.option("--context", help="Context in --kubeconfig (default: its current context).")
@click.option(
    "--consumer-cluster-name",
    help="This consumer's identity in the provider (consumerClusterDisplayName). "
    "Default: derived from the uid of the kube-system namespace.",
)
@click.option(
    "--poll-interval",
    default="10m",
    show_default=True,
    help="Safety-net resync of every cache; changes arrive through watches regardless.",
)
@click.option(
    "--workers",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Concurrent reconciles per object syncer.",
)
# Defaults: connector.kube.config.CONSUMER_QPS and CONSUMER_BURST (why, there; the module is
# not imported before a command runs, to keep the CLI quick to start).
@click.option(
    "--consumer-qps",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Client-side rate limit of requests to the consumer cluster, per second.",
)
@click.option(
    "--consumer-burst",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests to the consumer that may go at once after a quiet spell.",
)
@click.option(
    "--crd-puller",
    metavar="ADDR",
    help="gRPC address of the CRD-puller stage (default: in-process).",
)
@click.option(
    "--binder", metavar="ADDR", help="gRPC address of the binder stage (default: in-process)."
)
@click.option(
    "--object-syncer",
    metavar="ADDR",
    help="gRPC address of the object-syncer stage (default: in-process).",
)
@click.option(
    "--metrics-address",
    default=":8080",
    show_default=True,
    help="host:port serving /metrics, /healthz and /readyz; empty disables it.",
)
@click.option(
    "--stages-tls-certs-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="STAGES_TLS_CERTS_DIR",
    help="Call the stage services over mutual TLS with tls.crt, tls.key and ca.crt from "
    "this folder (the layout Crossplane functions use). Default: plaintext.",
)
@click.option(
    "--leader-elect",
    is_flag=True,
    help="Reconcile only while holding a Lease, so that replicas never both write.",
)
@click.option(
    "--leader-election-namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Namespace of the leader-election Lease.",
)
@click.option(
    "--leader-election-id",
    default="api-connector",
    show_default=True,
    help="Name of the leader-election Lease.",
)
@click.option(
    "--connection-secrets/--no-connection-secrets",
    default=True,
    show_default=True,
    help="Copy the provider's connection Secrets of objects that ask for one "
    "(spec.writeConnectionSecretToRef) into their namespace. Off: they are told so in a "
    "condition, and the connector needs no access to Secrets outside its own namespace.",
)
def run(  # noqa: PLR0915 - one statement per flag wired into the manager; flat on purpose
    kubeconfig: Path | None,
    context: str | None,
    consumer_cluster_name: str | None,
    poll_interval: str,
    workers: int,
    consumer_qps: float,
    consumer_burst: int,
    crd_puller: str | None,
    binder: str | None,
    object_syncer: str | None,
    metrics_address: str,
    stages_tls_certs_dir: Path | None,
    leader_elect: bool,
    leader_election_namespace: str,
    leader_election_id: str,
    connection_secrets: bool,
) -> None:
    """Run the connector: pull bindable CRDs, bind APIs, sync objects both ways."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    from connector.kube.client import KubeClient
    from connector.kube.config import ConfigError, client_from_kubeconfig_file, client_in_cluster
    from connector.kube.metrics import Metrics, serve
    from connector.manager import Manager, default_consumer_cluster_name
    from connector.runtime.leader import LeaderElector, default_identity
    from connector.stages import GrpcStages, InProcessStages

    resync = parse_duration(poll_interval)
    metrics = Metrics()
    if context and kubeconfig is None:
        raise click.UsageError("--context needs --kubeconfig.")
    remote_stages = bool(crd_puller or binder or object_syncer)
    if stages_tls_certs_dir is not None and not remote_stages:
        raise click.UsageError(
            "--stages-tls-certs-dir needs a stage address (--crd-puller, --binder or "
            "--object-syncer); in-process stages use no network."
        )

    def consumer_client(
        name: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0
    ) -> KubeClient:
        try:
            if kubeconfig is not None:
                return client_from_kubeconfig_file(
                    kubeconfig,
                    context,
                    name=name,
                    metrics=metrics,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    qps=consumer_qps,
                    burst=consumer_burst,
                )
            return client_in_cluster(
                name=name,
                metrics=metrics,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                qps=consumer_qps,
                burst=consumer_burst,
            )
        except ConfigError as exc:
            raise click.ClickException(f"Cannot use the consumer's credentials: {exc}") from exc

    consumer = consumer_client("consumer")

    stages: InProcessStages | GrpcStages
    if remote_stages:
        stages = GrpcStages(
            crd_puller=crd_puller,
            binder=binder,
            object_syncer=object_syncer,
            tls_certs_dir=str(stages_tls_certs_dir) if stages_tls_certs_dir else None,
        )
    else:
        stages = InProcessStages()
    cluster = consumer_cluster_name or default_consumer_cluster_name(consumer)
    manager = Manager(
        consumer,
        stages=stages,
        consumer_cluster=cluster,
        resync_period=resync,
        workers=workers,
        metrics=metrics,
        connection_secrets=connection_secrets,
    )
    stop = threading.Event()
    #: Set when the process must exit non-zero: lost leadership, or the manager failed to start.
    failed = threading.Event()
    elector: LeaderElector | None = None
    if leader_elect:

        def start_leading() -> None:
            # The elector's callback must return promptly: start in a thread of our own.
            threading.Thread(
                target=_start_or_stop, args=(manager, stop, failed), daemon=True
            ).start()

        def stop_leading() -> None:
            if not stop.is_set():
                log.error("Lost the leader election; exiting so that another replica leads.")
                failed.set()
                stop.set()

        elector = LeaderElector(
            # A client of its own: short timeouts (a renewal must fail well inside the
            # renew deadline, not after the 30 s read timeout) and no rate limiter shared
            # with busy controllers that could delay a renewal.
            consumer_client("leader-election", connect_timeout=2.0, read_timeout=4.0),
            namespace=leader_election_namespace,
            name=leader_election_id,
            identity=default_identity(),
            on_started_leading=start_leading,
            on_stopped_leading=stop_leading,
        )

    def ready() -> bool:
        # A standby replica is healthy and ready to take over; only a leader has caches.
        if elector is not None and not elector.is_leader:
            return True
        return manager.ready()

    server = (
        serve(metrics_address, registry=metrics.registry, ready=ready) if metrics_address else None
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("Received a signal; shutting down.", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics.time_gc_pauses()
    settle_heap()
    try:
        if elector is not None:
            threading.Thread(target=elector.run, name="leader-election", daemon=True).start()
        else:
            _start_or_stop(manager, stop, failed)
        stop.wait()
    finally:
        manager.stop()
        if elector is not None:
            elector.stop()
        stages.close()
        if server is not None:
            server.shutdown()
    if failed.is_set():
        sys.exit(1)


def settle_heap() -> None:
    """Collect what starting up left behind, then take what is left out of the cyclic
    collector's sight (``gc.freeze``).

    Every full collection walks every object the collector tracks. What exists at this point
    (modules, the Kubernetes client's model classes, clients, the manager: about 47,000
    objects) lives as long as the process, and walking it cost ~40 ms of each full
    collection on the benchmark machine, every thread waiting (docs/performance.md, finding
    25). What is created later (caches, syncers that come and go with bindings) is collected
    as before. A frozen object is still freed when its last reference goes; only one that
    became part of a garbage cycle would never be, which is why nothing short-lived may be
    alive here.
    """
    gc.collect()
    gc.freeze()


def _start_or_stop(manager: Manager, stop: threading.Event, failed: threading.Event) -> None:
    """Start the manager; if it cannot start, log why and stop the process (exit status 1)."""
    try:
        manager.start()
    except Exception as exc:
        log.error("The connector could not start.", error=str(exc))
        failed.set()
        stop.set()
