"""Prometheus metrics of the client layer and the controllers, and the ``/metrics`` server.

Every collector lives on a :class:`Metrics` object bound to one ``CollectorRegistry``. The
process creates one (``Metrics()`` makes its own registry) and hands it to clients, queues
and worker pools; tests create their own, so two tests never register the same name twice.
Components given no ``Metrics`` record nothing.

The HTTP server (:func:`serve`) answers ``/metrics`` (that registry, text format),
``/healthz`` (liveness: the process answers, plus an optional check) and ``/readyz``
(readiness from a callable, e.g. "informers synced and the provider reachable").
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["LATENCY_BUCKETS", "Metrics", "MetricsServer", "serve"]

log = structlog.get_logger(__name__)

# Watches make a sync take milliseconds; the tail covers throttling and retries.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

#: A cyclic collection of a few cached objects takes well under a millisecond; one of the
#: whole heap of a connector holding 100,000 objects takes seconds.
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The connector's collectors, registered on ``registry`` (a fresh one if not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "api_connector_workqueue_depth",
            "Keys waiting in a work queue (ready now, not counting delayed retries).",
            ["queue"],
            registry=r,
        )
        self.queue_adds = Counter(
            "api_connector_workqueue_adds_total",
            "Keys added to a work queue (after de-duplication).",
            ["queue"],
            registry=r,
        )
        self.queue_retries = Counter(
            "api_connector_workqueue_retries_total",
            "Keys re-queued with rate-limited backoff after a failed reconcile.",
            ["queue"],
            registry=r,
        )
        self.reconcile_total = Counter(
            "api_connector_reconcile_total",
            "Reconciles by outcome: success, requeue_after, error, terminal.",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "api_connector_reconcile_errors_total",
            "Failed reconciles, by reason (the error's reason or class).",
            ["controller", "reason"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "api_connector_reconcile_duration_seconds",
            "Time spent in one reconcile call.",
            ["controller"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.sync_latency = Histogram(
            "api_connector_sync_latency_seconds",
            "From a key being queued to the end of the successful reconcile that handled it.",
            ["controller"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            "api_connector_kube_api_requests_total",
            "Kubernetes API requests by cluster, verb and HTTP status (or transport failure).",
            ["cluster", "verb", "status"],
            registry=r,
        )
        self.api_request_errors = Counter(
            "api_connector_kube_api_request_errors_total",
            "Failed Kubernetes API requests by cluster and status (code, unreachable, tls).",
            ["cluster", "status"],
            registry=r,
        )
        self.twins_collected = Counter(
            "api_connector_orphaned_twins_deleted_total",
            "Provider twins deleted because their consumer object no longer exists.",
            ["controller"],
            registry=r,
        )
        self.informer_healthy = Gauge(
            "api_connector_informer_healthy",
            "1 when an informer is synced and its last list/watch succeeded, else 0.",
            ["informer"],
            registry=r,
        )
        self.adopted_objects = Counter(
            "api_connector_adopted_objects_total",
            "Provider objects another connector created, adopted (spec.adoption).",
            ["connection", "resource"],
            registry=r,
        )
        self.gc_pause = Histogram(
            "api_connector_gc_pause_seconds",
            "How long each of Python's cyclic garbage collections took, by generation (every "
            "thread waits meanwhile); recorded once time_gc_pauses() is called.",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS,
            registry=r,
        )
        # What every Prometheus client exports about its process: memory, CPU time, open
        # files (process_*), the interpreter (python_info) and its collections (python_gc_*).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def time_gc_pauses(self) -> Callable[[], None]:
        """Record each garbage collection of this process in ``gc_pause``; returns the undo.

        Process-wide (Python has one collector), so only the process's own ``Metrics``
        should do it: ``api-connector run`` does.
        """

        started = [0.0]  # collections never overlap: the interpreter is held throughout

        def on_collection(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pause = time.perf_counter() - started[0]
                self.gc_pause.labels(str(info.get("generation", ""))).observe(pause)

        gc.callbacks.append(on_collection)
        return lambda: gc.callbacks.remove(on_collection)


class MetricsServer:
    """A running metrics/health server; :meth:`shutdown` stops it."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); useful when serving on port 0."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"The metrics address {address!r} is not of the form host:port.")
    # ":8080" means every interface, as in Go's net.Listen (what a Pod's probes need).
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(
    address: str,
    *,
    registry: CollectorRegistry,
    ready: Callable[[], bool] = lambda: True,
    healthy: Callable[[], bool] = lambda: True,
) -> MetricsServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``address`` in a daemon thread.

    A check that raises counts as failing, so a bug in a check cannot crash the server.
    """
    host, port = _parse_address(address)

    def check(fn: Callable[[], bool]) -> bool:
        try:
            return bool(fn())
        except Exception:
            log.exception("A health check raised; reporting it as failing.")
            return False

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = check(healthy)
                self._reply(200 if ok else 500, b"ok\n" if ok else b"unhealthy\n")
            elif path == "/readyz":
                ok = check(ready)
                self._reply(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes hit these endpoints every few seconds; access logs would drown real logs.
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    running = MetricsServer(server, thread)
    bound_host, bound_port = running.address
    log.info("The metrics and health server is listening.", address=f"{bound_host}:{bound_port}")
    return running
