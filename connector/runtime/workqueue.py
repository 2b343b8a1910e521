"""A work queue and worker pool with controller-runtime's semantics.

:class:`WorkQueue` holds keys, not events: reconciles are level-based, so ten changes to one
object before a worker gets to it are one reconcile.

- ``add(key)`` de-duplicates: a key waiting in the queue is not added twice.
- A key is handed to one worker at a time. Added again while being processed, it is queued
  again when that worker calls ``done(key)``, so the newest state is always reconciled.
- ``add_after(key, delay)`` makes a key ready later (the earliest of several delays wins).
- ``add_rate_limited(key)`` makes it ready after a per-key exponential backoff (5 ms
  doubling up to 60 s by default), and no sooner than an overall token bucket allows, so
  a flood of failures cannot spin the CPU or hammer an API server; ``forget(key)`` resets
  the key's backoff after a success.
- ``get(timeout)`` returns the next ready key, or ``None`` on timeout or after
  ``shutdown()``; keys still queued at shutdown are dropped (the next process relists).

:func:`run_workers` runs ``reconcile(key)`` on a pool of threads and maps its outcome:

=======================================  ==============================================
reconcile ...                            the queue ...
=======================================  ==============================================
returns ``None`` or ``Result()``         forgets the key's backoff (success)
returns ``Result(requeue_after=s)``      forgets the backoff, reconciles again after s
returns ``Result(requeue=True)``         retries with backoff, without logging an error
raises :class:`TerminalError`            forgets the key: retrying cannot help; the
                                         error is logged and counted, a new change
                                         (``add``) will reconcile it again
raises any other exception               retries with backoff (``add_rate_limited``)
=======================================  ==============================================
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from connector.kube._ratelimit import TokenBucket
from connector.kube.errors import ConflictError, KubeError
from connector.kube.metrics import Metrics

__all__ = [
    "RateLimiter",
    "Result",
    "TerminalError",
    "WorkQueue",
    "WorkerPool",
    "run_workers",
]

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)


class RateLimiter(Generic[K]):
    """Per-key exponential backoff combined with an overall token bucket (the max of both).

    The defaults are controller-runtime's, with the per-key cap lowered to 60 s so that a
    recovered provider is noticed within a minute.
    """

    def __init__(
        self,
        *,
        base_delay: float = 0.005,
        max_delay: float = 60.0,
        qps: float = 10.0,
        burst: int = 100,
    ) -> None:
        self._base = base_delay
        self._max = max_delay
        self._bucket = TokenBucket(qps, burst)
        self._failures: dict[K, int] = {}
        self._lock = threading.Lock()

    def when(self, key: K) -> float:
        """Record a failure of ``key``; return how long to wait before retrying it."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        # 2**failures overflows a float long before the cap matters; stop doubling early.
        backoff = self._max if failures > 60 else min(self._max, self._base * 2**failures)
        return max(backoff, self._bucket.reserve())

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """A thread-safe, de-duplicating, delaying, rate-limited queue of keys (see module doc).

    ``len(queue)`` is the number of keys ready now (the queue-depth metric).
    """

    def __init__(
        self,
        name: str,
        *,
        rate_limiter: RateLimiter[K] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._limiter: RateLimiter[K] = rate_limiter or RateLimiter()
        self._metrics = metrics
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # Delayed keys: the heap may hold stale entries; _waiting has the one that counts.
        self._waiting: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        # When a change was first queued for a key (for the sync-latency metric).
        self._queued_since: dict[K, float] = {}
        self._active_since: dict[K, float] = {}
        self._shutting_down = False

    # -- adding --------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue ``key`` now, unless it is already waiting."""
        with self._cond:
            if not self._shutting_down:
                self._queued_since.setdefault(key, self.clock())
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if self._metrics is not None:
            self._metrics.queue_adds.labels(self.name).inc()
        if key in self._processing:
            # done(key) queues it again; a second worker must not get it meanwhile.
            return
        self._queue.append(key)
        self._update_depth()
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (at once if ``delay <= 0``)."""
        if delay <= 0:
            with self._cond:
                self._add_locked(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            ready_at = self.clock() + delay
            current = self._waiting.get(key)
            if current is not None and current <= ready_at:
                return
            self._waiting[key] = ready_at
            heapq.heappush(self._heap, (ready_at, next(self._seq), key))
            # A sleeping get() may now have an earlier deadline to wake up for.
            self._cond.notify()

    def add_rate_limited(self, key: K) -> None:
        """Queue ``key`` after its backoff (which grows with each call until ``forget``)."""
        delay = self._limiter.when(key)
        if self._metrics is not None:
            self._metrics.queue_retries.labels(self.name).inc()
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff (call after a successful reconcile)."""
        self._limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """How many rate-limited retries ``key`` has had since it was last forgotten."""
        return self._limiter.num_requeues(key)

    # -- taking --------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> K | None:
        """The next ready key, marked as processing; ``None`` on timeout or shutdown.

        Every key returned must be handed back with :meth:`done`.
        """
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                if self._shutting_down:
                    return None
                now = self.clock()
                self._promote_due_locked(now)
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    since = self._queued_since.pop(key, None)
                    if since is not None:
                        self._active_since[key] = since
                    self._update_depth()
                    return key
                wait = None if deadline is None else deadline - now
                if wait is not None and wait <= 0:
                    return None
                if self._heap:
                    until_due = self._heap[0][0] - now
                    wait = until_due if wait is None else min(wait, until_due)
                self._cond.wait(wait)

    def _promote_due_locked(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            ready_at, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) != ready_at:
                continue  # superseded by an earlier add_after
            del self._waiting[key]
            self._add_locked(key)

    def done(self, key: K) -> None:
        """Mark ``key`` as no longer processing; queue it again if it was added meanwhile."""
        with self._cond:
            self._processing.discard(key)
            self._active_since.pop(key, None)
            if key in self._dirty and not self._shutting_down:
                self._queue.append(key)
                self._update_depth()
                self._cond.notify()

    def processing_since(self, key: K) -> float | None:
        """When the change being processed for ``key`` was first queued (monotonic clock)."""
        with self._cond:
            return self._active_since.get(key)

    def _carry_since(self, key: K) -> None:
        # A failed reconcile has not synced the change yet: keep measuring from its first add.
        with self._cond:
            since = self._active_since.get(key)
            if since is not None:
                current = self._queued_since.get(key)
                self._queued_since[key] = since if current is None else min(current, since)

    # -- lifecycle -----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop handing out keys: blocked and future ``get`` calls return ``None``."""
        with self._cond:
            self._shutting_down = True
            self._queue.clear()
            self._dirty.clear()
            self._heap.clear()
            self._waiting.clear()
            self._queued_since.clear()
            self._update_depth()
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        with self._cond:
            self._promote_due_locked(self.clock())
            return len(self._queue)

    def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(len(self._queue))


class TerminalError(Exception):
    """Raised by a reconcile when retrying cannot help (e.g. an invalid spec): the key is
    forgotten, the error is logged and counted, and only a new change reconciles it again.
    ``reason`` labels the error metric."""

    def __init__(self, message: str, *, reason: str = "Terminal") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Result:
    """What a successful reconcile asks for next: nothing (default), to be reconciled again
    after ``requeue_after`` seconds, or (``requeue=True``) again with backoff."""

    requeue_after: float | None = None
    requeue: bool = False


class WorkerPool(Generic[K]):
    """The threads started by :func:`run_workers`."""

    def __init__(self, queue: WorkQueue[K], threads: list[threading.Thread]) -> None:
        self.queue = queue
        self.threads = threads

    def stop(self, *, timeout: float | None = 10.0) -> None:
        """Shut the queue down and wait for running reconciles to return."""
        self.queue.shutdown()
        self.join(timeout=timeout)

    def join(self, *, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)


def _error_reason(exc: BaseException) -> str:
    if isinstance(exc, TerminalError):
        return exc.reason
    if isinstance(exc, KubeError) and exc.reason:
        return exc.reason
    return type(exc).__name__


def process_next(
    queue: WorkQueue[K],
    reconcile: Callable[[K], Result | None],
    name: str,
    *,
    metrics: Metrics | None = None,
    timeout: float | None = None,
) -> bool:
    """Take one key, reconcile it and apply the outcome; ``False`` when the queue is shut
    down (or ``timeout`` passed). This is the whole body of a worker's loop."""
    key = queue.get(timeout)
    if key is None:
        return not queue.shutting_down
    started = time.monotonic()
    outcome = "success"
    try:
        result = reconcile(key)
        if result is not None and not isinstance(result, Result):
            raise TypeError(f"A reconcile returned {result!r}; return a Result or None.")
    except TerminalError as e:
        outcome = "terminal"
        queue.forget(key)
        log.error(
            "Reconcile failed with a terminal error; not retrying until the object changes.",
            controller=name,
            key=repr(key),
            error=str(e),
            reason=e.reason,
        )
        _count_error(metrics, name, e)
    except Exception as e:
        outcome = "error"
        queue._carry_since(key)
        queue.add_rate_limited(key)
        # A 409 on a write means the object changed after it was read (often by our own
        # previous write, not yet in the cache): an expected race that the retry settles,
        # so it is counted but not shouted about. Anything else is worth a warning.
        report = log.debug if isinstance(e, ConflictError) else log.warning
        report(
            "Reconcile failed; retrying with backoff.",
            controller=name,
            key=repr(key),
            error=str(e),
            error_type=type(e).__name__,
            retries=queue.num_requeues(key),
            exc_info=not isinstance(e, KubeError),
        )
        _count_error(metrics, name, e)
    else:
        if result is not None and result.requeue:
            outcome = "requeue"
            queue._carry_since(key)
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
            if result is not None and result.requeue_after is not None:
                outcome = "requeue_after"
                queue.add_after(key, result.requeue_after)
            since = queue.processing_since(key)
            if metrics is not None and since is not None:
                metrics.sync_latency.labels(name).observe(queue.clock() - since)
    finally:
        queue.done(key)
        if metrics is not None:
            metrics.reconcile_duration.labels(name).observe(time.monotonic() - started)
            metrics.reconcile_total.labels(name, outcome).inc()
    return True


def _count_error(metrics: Metrics | None, name: str, exc: BaseException) -> None:
    if metrics is not None:
        metrics.reconcile_errors.labels(name, _error_reason(exc)).inc()


def run_workers(
    queue: WorkQueue[K],
    n: int,
    reconcile: Callable[[K], Result | None],
    name: str,
    *,
    metrics: Metrics | None = None,
) -> WorkerPool[K]:
    """Start ``n`` daemon threads reconciling keys from ``queue`` until it is shut down."""
    if n < 1:
        raise ValueError("A worker pool needs at least one worker.")

    def work() -> None:
        while True:
            try:
                if not process_next(queue, reconcile, name, metrics=metrics):
                    return
            except Exception:
                # Only a bug outside reconcile gets here (reconcile's own errors are
                # handled); a worker thread that died would silently shrink the pool.
                log.exception("A worker hit an unexpected error; it carries on.", controller=name)

    threads = [
        threading.Thread(target=work, name=f"{name}-worker-{i}", daemon=True) for i in range(n)
    ]
    for thread in threads:
        thread.start()
    log.info("Started the workers.", controller=name, workers=n)
    return WorkerPool(queue, threads)
