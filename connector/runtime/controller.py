"""What every controller here shares: a keyed work queue with its worker pool, and the clock.

A reconcile returns a :class:`~connector.runtime.workqueue.Result`: ``Result()`` when done,
``Result(requeue_after=s)`` to look again later, ``Result(requeue=True)`` to retry with
backoff a failure already reported to the user (a condition, an Event); raising retries
with backoff and logs the error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from connector.kube.client import KubeClient
from connector.kube.metrics import Metrics
from connector.runtime.workqueue import Result, WorkerPool, WorkQueue, run_workers

K = TypeVar("K", bound=Hashable)


class Controller(Generic[K]):
    """A work queue of keys and the workers that reconcile them."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Result | None],
        *,
        workers: int,
        metrics: Metrics | None = None,
        clients: Sequence[KubeClient] = (),
    ) -> None:
        self.name = name
        self.queue: WorkQueue[K] = WorkQueue(name, metrics=metrics)
        self._reconcile = reconcile
        self._workers = workers
        self._metrics = metrics
        #: The clients its reconciles call: each keeps a connection per worker while it runs.
        self._clients = tuple(clients)
        self._pool: WorkerPool[K] | None = None

    def enqueue(self, key: K) -> None:
        self.queue.add(key)

    def start(self) -> None:
        if self._pool is None:
            for client in self._clients:
                client.reserve_connections(self._workers)
            self._pool = run_workers(
                self.queue, self._workers, self._reconcile, self.name, metrics=self._metrics
            )

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
            for client in self._clients:
                client.release_connections(self._workers)
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


#: String values up to this length are shared between cached objects (longer ones are
#: rarely repeated: messages, hashes of content, certificates).
_SHARED_VALUE_MAX = 64


def shared_strings(value: Any) -> Any:
    """``value`` (a decoded JSON object) with its keys and short strings interned.

    Each decoded object carries its own copy of every key ("apiVersion", "metadata",
    "connect.upbound.io/consumer-cluster", ...) and of values most objects share (the kind,
    the namespace, "True", a condition's reason, a second's timestamp): with thousands of
    objects cached twice, those copies are a third of the caches' memory. Interned, each
    distinct string is held once.
    """
    if isinstance(value, dict):
        return {sys.intern(k): shared_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shared_strings(v) for v in value]
    if isinstance(value, str) and len(value) <= _SHARED_VALUE_MAX:
        return sys.intern(value)
    return value


def cache_form(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as the controllers cache it: without managedFields, strings shared."""
    result: dict[str, Any] = shared_strings(without_managed_fields(obj))
    return result
