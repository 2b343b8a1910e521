"""The controller runtime: what every controller is built from, above the client layer.

- :mod:`~connector.runtime.informer` — list+watch caches that call a handler on changes;
- :mod:`~connector.runtime.workqueue` — controller-runtime style queue and worker pool;
- :mod:`~connector.runtime.controller` — a controller's queue, workers and metrics together;
- :mod:`~connector.runtime.fresh` — read-your-writes over an informer's cache;
- :mod:`~connector.runtime.events` — Kubernetes Events, de-duplicated per object and problem;
- :mod:`~connector.runtime.leader` — leader election on a Lease.

It talks to Kubernetes only through :mod:`connector.kube`.
"""

from __future__ import annotations

from connector.runtime.informer import Backoff, Informer
from connector.runtime.workqueue import (
    RateLimiter,
    Result,
    TerminalError,
    WorkerPool,
    WorkQueue,
    run_workers,
)

__all__ = [
    "Backoff",
    "Informer",
    "RateLimiter",
    "Result",
    "TerminalError",
    "WorkQueue",
    "WorkerPool",
    "run_workers",
]
