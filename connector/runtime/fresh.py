"""Objects known to be newer than an informer's cache: read your own writes.

A controller that writes an object and reconciles it again before the write's watch event
has reached its cache reads the older copy. It then acts on stale facts: a status PUT
carrying the old resourceVersion is refused with 409 and retried; a twin it has just
created looks missing. controller-runtime meets this with "expectations"; this is the
same idea keyed by object: :meth:`FreshObjects.record` keeps what a write returned (or a
live read found), :meth:`FreshObjects.newest` prefers it to the cached copy until the cache
has caught up, and :meth:`FreshObjects.observe`, called from the informer's handler, drops
it as soon as an event at least as new arrives.

The watch can deliver a write's echo before the write's answer is parsed and recorded: a
writer announces a write with :meth:`FreshObjects.expect`, events for that key are held
meanwhile (still applied to the cache, only not acted on), and :meth:`FreshObjects.settle`
says whether one of them was news (newer than what is recorded, or any event at all when
nothing is), which the writer then acts on.

Resource versions are compared as integers, which is what every etcd-backed API server
hands out; one that is not an integer is never taken as newer than the cache. A DELETED
event always drops the entry, and leaves a tombstone for ``ttl`` seconds so that a write's
answer that arrives after the deletion's event (the watch can be quicker than the HTTP
response) is not recorded. Every entry expires after ``ttl`` seconds, so a missed event can
only leave the cache in charge again (the state before this overlay existed), never keep a
stale object alive for long.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from functions.common.objects import Obj, copy_json

K = TypeVar("K", bound=Hashable)

#: How long a recorded object may stand in for the cache without a newer event.
DEFAULT_TTL = 60.0
#: A held event whose resourceVersion does not compare: always news.
_UNKNOWN = -1


def _rv(obj: Obj | None) -> int | None:
    if obj is None:
        return None
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


class FreshObjects(Generic[K]):
    """Per key, an object newer than the informer's copy, until the informer catches up."""

    def __init__(
        self, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._objects: dict[K, tuple[Obj, int, float]] = {}
        #: Deleted keys: the deletion's resourceVersion, and when to forget it; the deque
        #: holds them in expiry order, so pruning is cheap.
        self._deleted: dict[K, tuple[int, float]] = {}
        self._deleted_order: deque[tuple[float, K]] = deque()
        #: Keys with writes under way (how many), and the newest resourceVersion of the
        #: events held for them meanwhile (``_UNKNOWN`` when one had none that compares).
        self._pending: dict[K, int] = {}
        self._held: dict[K, int] = {}

    def expect(self, key: K) -> None:
        """A write of ``key`` is about to be sent: hold its events until :meth:`settle`."""
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1

    def settle(self, key: K) -> bool:
        """The write :meth:`expect` announced is over: answered (and recorded) or failed.

        Returns whether an event held meanwhile said something the writer has not seen:
        newer than the recorded copy, or anything at all when none is recorded (the write
        failed). The caller acts on it as on an event (queues the key)."""
        with self._lock:
            count = self._pending.get(key, 0) - 1
            if count > 0:
                self._pending[key] = count
                return False  # held on, for the last write under way to settle
            self._pending.pop(key, None)
            held = self._held.pop(key, None)
            if held is None:
                return False
            current = self._objects.get(key)
            if current is None or current[2] <= self._clock():
                return True
            return held == _UNKNOWN or held > current[1]

    def record(self, key: K, obj: Obj) -> None:
        """Remember ``obj`` (a write's answer, or a live read) as the newest known copy."""
        rv = _rv(obj)
        if rv is None:
            return
        with self._lock:
            self._prune_deleted()
            tombstone = self._deleted.get(key)
            if tombstone is not None and rv <= tombstone[0]:
                return  # the object was deleted after this write
            current = self._objects.get(key)
            now = self._clock()
            if current is None or current[1] <= rv or current[2] <= now:
                self._objects[key] = (copy_json(obj), rv, now + self._ttl)

    def forget(self, key: K) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def observe(self, key: K, event: str, obj: Obj) -> bool:
        """An informer event for ``key``: the cache now holds ``obj`` (or nothing).

        Returns whether the event says nothing the controller has not acted on: the echo
        of the recorded copy itself (the same resourceVersion: a write of ours coming
        back), or a copy older than it (an earlier write of ours, or a change the recorded
        copy already contains; the pass after the write reads the recorded copy, see
        :meth:`newest`). A recorded copy whose ``ttl`` has run out tells nothing.
        """
        with self._lock:
            rv = _rv(obj)
            if event == "DELETED":
                self._objects.pop(key, None)
                if rv is not None:
                    expires = self._clock() + self._ttl
                    self._deleted[key] = (rv, expires)
                    self._deleted_order.append((expires, key))
                self._prune_deleted()
                return False
            if key in self._pending:
                held = self._held.get(key)
                if rv is None or held == _UNKNOWN:
                    self._held[key] = _UNKNOWN
                elif held is None or rv > held:
                    self._held[key] = rv
                return True
            current = self._objects.get(key)
            if current is None or rv is None:
                return False
            if rv >= current[1]:
                del self._objects[key]
                return rv == current[1] and current[2] > self._clock()
            return current[2] > self._clock()

    def newest(self, key: K, cached: Obj | None) -> Obj | None:
        """``cached``, unless a recorded copy is newer (then a copy of that)."""
        with self._lock:
            current = self._objects.get(key)
            if current is None:
                return cached
            obj, rv, expires = current
            cached_rv = _rv(cached)
            if self._clock() >= expires or (cached_rv is not None and cached_rv >= rv):
                del self._objects[key]
                return cached
            return copy_json(obj)

    def keys(self) -> list[K]:
        """The keys with a recorded copy (which :meth:`newest` may still find older than
        the cache)."""
        now = self._clock()
        with self._lock:
            return [key for key, (_, _, expires) in self._objects.items() if expires > now]

    def _prune_deleted(self) -> None:
        now = self._clock()
        while self._deleted_order and self._deleted_order[0][0] <= now:
            expires, key = self._deleted_order.popleft()
            entry = self._deleted.get(key)
            if entry is not None and entry[1] <= expires:
                del self._deleted[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)
