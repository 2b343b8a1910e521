"""What every controller here shares: a keyed work queue with its worker pool, and the clock.

A reconcile returns a :class:`~connector.kube.workqueue.Result`: ``Result()`` when done,
``Result(requeue_after=s)`` to look again later, ``Result(requeue=True)`` to retry with
backoff a failure already reported to the user (a condition, an Event); raising retries
with backoff and logs the error.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from connector.kube.metrics import Metrics
from connector.kube.workqueue import Result, WorkerPool, WorkQueue, run_workers

K = TypeVar("K", bound=Hashable)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller(Generic[K]):
    """A work queue of keys and the workers that reconcile them."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Result | None],
        *,
        workers: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self.queue: WorkQueue[K] = WorkQueue(name, metrics=metrics)
        self._reconcile = reconcile
        self._workers = workers
        self._metrics = metrics
        self._pool: WorkerPool[K] | None = None

    def enqueue(self, key: K) -> None:
        self.queue.add(key)

    def start(self) -> None:
        if self._pool is None:
            self._pool = run_workers(
                self.queue, self._workers, self._reconcile, self.name, metrics=self._metrics
            )

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        else:
            self.queue.shutdown()


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without ``metadata.managedFields``, for the controllers' caches.

    Nothing the controllers do reads them (stages drop them, apply must not send them, and a
    status PUT without them leaves the server's as they are), yet they are a large part of
    every cached object: with 10,000 bound objects held twice (consumer and provider) they
    cost tens of MB, and CRDs, the largest objects, carry the largest entries.
    """
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj
