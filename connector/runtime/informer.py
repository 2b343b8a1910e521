"""An informer: a cache of one resource kept current by list + watch, calling a handler.

The loop in :meth:`Informer._run` is thin; its two steps are public and testable:

- :meth:`Informer.list_and_replace` lists, replaces the cache, and calls the handler with
  the difference: ``ADDED`` for new objects, ``MODIFIED`` for changed ones (a different
  resourceVersion), ``DELETED`` (with the last known object) for ones that vanished. The
  first list therefore delivers ``ADDED`` for everything.
- :meth:`Informer.watch_once` runs one watch session from the cache's resourceVersion,
  applying ``ADDED``/``MODIFIED``/``DELETED`` to the cache and calling the handler, and
  recording bookmarks' resourceVersions. It returns when the server ends the session.

How the loop reacts: a session that ends normally (the server's ``timeoutSeconds``) is
followed by a new watch from the last resourceVersion. :class:`GoneError` (410: the version
was compacted away) makes it relist at once, delivering what changed meanwhile. Any other
failure (unreachable, 5xx, 429, 403, ...) is recorded in :attr:`Informer.last_error`,
logged once per change of error, and retried after a capped, jittered exponential backoff
(at least the server's ``Retry-After``); the retry re-watches from the last resourceVersion
if the cache is complete, and relists if it is not.

``resync_period`` re-delivers every cached object to the handler as ``MODIFIED``, as
client-go does with an update whose old and new objects are equal: a safety net for
handlers that dropped work. It makes no API call.

``on_health_change``, if given, is called when the informer's health changes: its first
list has been delivered, it starts failing (or fails differently), or it recovers. An
outage brings no object events, so a controller that reports it (or waits for the first
list) is woken by this rather than by polling :attr:`Informer.last_error`.

The handler runs on the informer's threads, one call at a time; it should be quick (queue a
key, don't reconcile) and must not block for long. It receives a copy of the object, as do
callers of :meth:`Informer.get` and :meth:`Informer.list`, so nobody can corrupt the cache.
``transform``, if given, trims each object before it is cached and delivered (e.g. drop
``managedFields``); it must keep ``metadata.name``, ``namespace`` and ``resourceVersion``.
"""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from connector.kube.client import DEFAULT_WATCH_TIMEOUT_SECONDS, KubeClient, WatchStream
from connector.kube.errors import GoneError, KubeError
from connector.kube.liveness import NOT_ANSWERING
from connector.kube.metrics import Metrics
from connector.kube.resources import Resource
from connector.runtime.keys import ObjectKey, key_of
from functions.common.objects import copy_json

__all__ = ["Backoff", "Handler", "Informer"]

log = structlog.get_logger(__name__)

Object = dict[str, Any]
Handler = Callable[[str, Object], None]
_Objects = builtins.list[Object]
# A watch session shorter than this that brought nothing is suspicious (see Informer.step).
_SHORT_WATCH = 0.1
# What tells one failure from another: the error's type, HTTP status and reason.
_ErrorSignature = tuple[str, int | None, str]


def _signature(error: Exception) -> _ErrorSignature:
    if isinstance(error, KubeError):
        return type(error).__name__, error.status, error.reason
    return type(error).__name__, None, str(error)


def _rv(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Backoff:
    """Capped exponential backoff with jitter: each delay is drawn from [d/2, d]."""

    def __init__(
        self,
        *,
        base: float = 0.2,
        cap: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng
        self._failures = 0

    def next(self, *, at_least: float = 0.0) -> float:
        """The delay before the next attempt; grows with each call until :meth:`reset`."""
        ceiling = min(self.cap, self.base * 2 ** min(self._failures, 30))
        self._failures += 1
        # Jitter keeps many informers that lost the same server from retrying in lockstep.
        delay = ceiling * (0.5 + 0.5 * self._rng())
        return float(max(delay, min(at_least, self.cap * 4)))

    def reset(self) -> None:
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures


class Informer:
    """Keeps a cache of ``res`` objects (optionally one namespace, a label selector and a
    field selector)."""

    def __init__(
        self,
        client: KubeClient,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        handler: Handler,
        resync_period: float | None = None,
        name: str,
        watch_timeout_seconds: int = DEFAULT_WATCH_TIMEOUT_SECONDS,
        backoff: Backoff | None = None,
        metrics: Metrics | None = None,
        transform: Callable[[Object], Object] | None = None,
        on_health_change: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.name = name
        self.resync_period = resync_period
        self.watch_timeout_seconds = watch_timeout_seconds
        self._handler = handler
        self._backoff = backoff or Backoff()
        self._metrics = metrics
        # Applied to every object before it is cached (like client-go's SetTransform): a
        # cache of thousands of objects need not keep what its users never read. It must
        # keep metadata.name, namespace and resourceVersion, which the cache relies on.
        self._transform = transform
        self._log = log.bind(informer=name, resource=res.group_resource, cluster=client.name)

        self._lock = threading.Lock()
        self._handler_lock = threading.Lock()
        self._cache: dict[ObjectKey, Object] = {}
        self._resource_version = ""
        self._needs_list = True
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._released = False
        self._resync_thread: threading.Thread | None = None
        self._last_error: BaseException | None = None
        self._logged_error: _ErrorSignature | None = None
        self._on_health_change = on_health_change
        #: Synced, and the signature of the error it fails with: what was last reported.
        self._health: tuple[bool, _ErrorSignature | None] = (False, None)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the list/watch thread (and the resync thread, if a period is set)."""
        if self._thread is not None:
            raise RuntimeError(f"The informer {self.name!r} was already started.")
        # Its list or watch holds one of the client's connections at any time.
        self.client.reserve_connections(1)
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        if self.resync_period:
            self._resync_thread = threading.Thread(
                target=self._resync_loop, name=f"informer-{self.name}-resync", daemon=True
            )
            self._resync_thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop promptly: the open watch is interrupted, not waited out."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        for thread in (self._thread, self._resync_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)
        if self._thread is not None and not self._released:
            self._released = True
            self.client.release_connections(1)
        self._set_health_metric()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the first list has filled the cache and its objects were delivered to
        the handler; ``False`` on timeout."""
        return self._synced.wait(timeout)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    @property
    def last_error(self) -> BaseException | None:
        """The error of the last failed list or watch, ``None`` once one succeeds again."""
        return self._last_error

    @property
    def settled(self) -> bool:
        """Listed, or failed trying: what a controller waits for before its workers start
        (a failing cache would otherwise hold them forever; its error is reported)."""
        return self.has_synced or self._last_error is not None

    @property
    def healthy(self) -> bool:
        """Synced, running, and the last list or watch succeeded."""
        return self.has_synced and self._last_error is None and not self._stop.is_set()

    @property
    def resource_version(self) -> str:
        """The resourceVersion the cache is current at (where the next watch starts)."""
        with self._lock:
            return self._resource_version

    # -- cache ---------------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> Object | None:
        """A copy of the cached object, or ``None``; ``namespace`` is ignored when the
        resource is cluster-scoped."""
        key = ObjectKey((namespace or "") if self.res.namespaced else "", name)
        with self._lock:
            obj = self._cache.get(key)
        return copy_json(obj) if obj is not None else None

    def list(self) -> _Objects:
        """Copies of every cached object."""
        with self._lock:
            objects = list(self._cache.values())
        return [copy_json(obj) for obj in objects]

    def keys(self) -> builtins.list[ObjectKey]:
        with self._lock:
            return list(self._cache)

    # -- the steps -----------------------------------------------------------------------

    def list_and_replace(self) -> None:
        """List, replace the cache, and deliver the difference to the handler."""
        # Transformed page by page: a cache of many objects never holds them all in full.
        items, resource_version = self.client.list(
            self.res,
            self.namespace,
            self.label_selector,
            field_selector=self.field_selector,
            transform=self._transform,
        )
        fresh = {key_of(obj): obj for obj in items}
        events: list[tuple[str, Object]] = []
        with self._lock:
            old = self._cache
            for key, obj in fresh.items():
                before = old.get(key)
                if before is None:
                    events.append(("ADDED", obj))
                elif _rv(before) != _rv(obj):
                    events.append(("MODIFIED", obj))
            events.extend(("DELETED", obj) for key, obj in old.items() if key not in fresh)
            self._cache = fresh
            self._resource_version = resource_version
            self._needs_list = False
        self._log.debug(
            "Listed the resource and replaced the cache.",
            objects=len(fresh),
            changes=len(events),
            resource_version=resource_version,
        )
        for event_type, obj in events:
            self._deliver(event_type, obj)
        if not self._synced.is_set():
            # Synced means the handler has seen every listed object, so a controller that
            # waits for it has a queue holding every key before its workers start.
            self._synced.set()
            self._log.info("The informer's cache is synced.", objects=len(fresh))

    def watch_once(self) -> int:
        """One watch session from the cache's resourceVersion, until the server ends it;
        returns the number of events (bookmarks included) it received.

        Raises :class:`GoneError` when the version is too old (the caller relists).
        """
        # Between 1x and 2x the configured timeout, as client-go's reflector does, so that
        # informers started together do not all re-watch in the same second.
        timeout = max(1, round(self.watch_timeout_seconds * (1 + random.random())))
        stream = self.client.watch(
            self.res,
            self.resource_version,
            self.namespace,
            self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout,
        )
        with self._lock:
            self._stream = stream
        if self._stop.is_set():
            stream.close()
        received = 0
        try:
            with stream:
                # The server accepted the watch: it answers again, although the first event
                # or bookmark of an idle resource may be a minute away.
                if stream.open():
                    self._recovered()
                for event in stream:
                    received += 1
                    self._apply(event.type, event.object)
                    # The session is evidently working; a later failure starts backing off
                    # from the bottom again.
                    self._recovered()
        finally:
            with self._lock:
                self._stream = None
        if stream.idle_expired:
            self._log.debug(
                "The watch received nothing, not even a bookmark, for its idle deadline; "
                "watching again on a new connection."
            )
        return received

    def _apply(self, event_type: str, obj: Object) -> None:
        rv = _rv(obj)
        if event_type == "BOOKMARK":
            if rv:
                with self._lock:
                    self._resource_version = rv
            return
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            self._log.warning("Ignoring a watch event of an unknown type.", event_type=event_type)
            return
        if self._transform is not None:
            obj = self._transform(obj)
        key = key_of(obj)
        with self._lock:
            if event_type == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
            if rv:
                self._resource_version = rv
        self._deliver(event_type, obj)

    def _deliver(self, event_type: str, obj: Object) -> None:
        try:
            with self._handler_lock:
                self._handler(event_type, copy_json(obj))
        except Exception:
            # A handler bug must not stop the cache from following the server.
            namespace, name = key_of(obj)
            self._log.exception(
                "The informer's handler raised; the event is dropped.",
                event_type=event_type,
                namespace=namespace,
                name=name,
            )

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        self._log.info("Starting the informer.", namespace=self.namespace or "(all)")
        while not self._stop.is_set():
            self.step()
        self._log.info("The informer stopped.")

    def step(self) -> float:  # noqa: PLR0911 - each return is the delay one outcome asks for
        """One turn of the loop: (re)list if needed, then watch; on failure sleep a backoff.

        Returns the backoff slept (0 when nothing failed).
        """
        try:
            if self._needs_list:
                self.list_and_replace()
                self._recovered()
            if self._stop.is_set():
                return 0.0
            started = time.monotonic()
            events = self.watch_once()
            self._recovered()
            if events == 0 and time.monotonic() - started < _SHORT_WATCH and not self.stopped:
                # A server or proxy that ends every watch at once would otherwise have us
                # re-watching in a tight loop.
                delay = self._backoff.next()
                self._log.debug("The watch ended at once; waiting before watching again.")
                self._stop.wait(delay)
                return delay
            return 0.0
        except GoneError as e:
            if self._stop.is_set():
                return 0.0
            self._log.info(
                "The watch's resourceVersion is too old; listing again.",
                resource_version=self.resource_version,
                detail=e.message,
            )
            with self._lock:
                self._needs_list = True
            return 0.0
        except Exception as e:
            if self._stop.is_set():
                return 0.0
            if isinstance(e, KubeError) and e.reason == NOT_ANSWERING:
                # The client's liveness monitor gave the watch up (the server stopped
                # answering): watch again at once; the new watch waits for the server's
                # answer, and the monitor's probes pace any further give-up.
                self._failed(e, 0.0)
                return 0.0
            delay = self._backoff.next(
                at_least=(e.retry_after or 0.0) if isinstance(e, KubeError) else 0.0
            )
            self._failed(e, delay)
            self._stop.wait(delay)
            return delay

    def _failed(self, error: Exception, delay: float) -> None:
        self._last_error = error
        self._set_health_metric()
        signature = _signature(error)
        self._report_health(signature)
        if signature == self._logged_error:
            self._log.debug("The informer is still failing.", error=str(error), retry_in=delay)
            return
        self._logged_error = signature
        self._log.warning(
            "The informer cannot list or watch; retrying with backoff.",
            error=str(error),
            error_type=type(error).__name__,
            retry_in=round(delay, 3),
            exc_info=not isinstance(error, KubeError),
        )

    def _recovered(self) -> None:
        self._backoff.reset()
        if self._last_error is not None:
            self._log.info("The informer recovered.", after_error=str(self._last_error))
            self._last_error = None
            self._logged_error = None
        self._set_health_metric()
        self._report_health(None)

    def _report_health(self, error: _ErrorSignature | None) -> None:
        health = (self._synced.is_set(), error)
        if health == self._health:
            return
        self._health = health
        if self._on_health_change is None or self._stop.is_set():
            return
        try:
            self._on_health_change()
        except Exception:
            self._log.exception("The informer's health callback raised.")

    def _resync_loop(self) -> None:
        assert self.resync_period is not None
        while not self._stop.wait(self.resync_period):
            self.resync()

    def resync(self) -> None:
        """Re-deliver every cached object to the handler as ``MODIFIED``."""
        if not self._synced.is_set():
            return
        with self._lock:
            objects = list(self._cache.values())
        self._log.debug("Resyncing the cached objects.", objects=len(objects))
        for obj in objects:
            if self._stop.is_set():
                return
            self._deliver("MODIFIED", obj)

    def _set_health_metric(self) -> None:
        if self._metrics is not None:
            self._metrics.informer_healthy.labels(self.name).set(1 if self.healthy else 0)

    def __repr__(self) -> str:
        return f"Informer(name={self.name!r}, resource={self.res.group_resource!r})"
