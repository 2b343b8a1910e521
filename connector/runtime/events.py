"""Kubernetes Events on consumer objects, deduplicated.

A failing reconcile runs again and again; each (reason, message) of an object is emitted
once, and again only after ``repeat_after`` seconds — also when an object has several
problems at once, reported in turn. ``resolved`` emits a Normal Event only for an object
with an unresolved Warning, so a recovery is visible, and a relapse into the same failure
is reported again.

Across restarts: the first time a process is about to emit a Warning for an object, it
reads the Events already on that object (``list_events``, one request) and stays silent if
this connector already emitted the same (reason, message) less than ``repeat_after`` ago
and no Normal Event of its own came after it (the problem was not resolved since). So a
restart, or a new leader, does not repeat what the user has been told. A problem that
went away while no connector ran gets no Normal Event (finding that out would cost a read
per healthy object at every start); its condition shows the recovery.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import datetime

import structlog

from connector.kube.errors import ForbiddenError
from functions.common.clock import now_rfc3339
from functions.common.objects import Obj

log = structlog.get_logger(__name__)

COMPONENT = "api-connector"


class EventRecorder:
    """Emits core/v1 Events through ``create_event(namespace, event)``.

    ``list_events(namespace, uid)`` returns the Events of the object with that uid (None:
    remember only what this process emitted). ``now`` is the wall clock Events carry.
    """

    def __init__(
        self,
        create_event: Callable[[str, Obj], object],
        *,
        list_events: Callable[[str, str], list[Obj]] | None = None,
        repeat_after: float = 3600.0,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = now_rfc3339,
    ) -> None:
        self._create = create_event
        self._list_events = list_events
        self._repeat_after = repeat_after
        self._max = max_remembered
        self._clock = clock
        self._now = now
        self._instance = socket.gethostname()
        #: Events emitted recently: (object, type, reason, message) -> when.
        self._seen: OrderedDict[tuple[str, str, str, str], float] = OrderedDict()
        #: Objects with Warnings that have not been resolved, and those Warnings' reasons.
        self._warned: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def warning(self, obj: Obj, reason: str, message: str) -> None:
        self.record(obj, "Warning", reason, message)

    def normal(self, obj: Obj, reason: str, message: str) -> None:
        self.record(obj, "Normal", reason, message)

    def resolved(
        self, obj: Obj, reason: str, message: str, *, of: Collection[str] | None = None
    ) -> None:
        """A Normal Event, only if the object has an unresolved Warning; forgets the
        object's Warnings, so that a relapse into one of them is reported again.

        ``of`` limits both to Warnings of those reasons: an object can have two problems
        of its own (its twin, its connection Secret), and one recovering must neither be
        told as the other's recovery nor make the other's Warning be emitted again."""
        ident = _ident(obj)
        with self._lock:
            warned = self._warned.get(ident)
            if not warned:
                return  # every healthy pass of every object: nothing was warned
            gone = set(warned) if of is None else warned.intersection(of)
            if not gone:
                return
            warned -= gone
            if not warned:
                self._warned.pop(ident, None)
            for key in [
                k
                for k in self._seen
                if k[0] == ident and (k[2] in gone or (k[1] == "Normal" and k[2] == reason))
            ]:
                del self._seen[key]
        self._record(obj, "Normal", reason, message, resolving=True)

    def record(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        self._record(obj, type_, reason, message, resolving=False)

    def _record(self, obj: Obj, type_: str, reason: str, message: str, *, resolving: bool) -> None:
        meta = obj.get("metadata", {})
        ident = _ident(obj)
        message = message[:1024]
        key = (ident, type_, reason, message)
        now = self._clock()
        namespace = str(meta.get("namespace") or "default")
        with self._lock:
            last = self._seen.get(key)
        if last is not None and now - last < self._repeat_after:
            return
        if last is None and type_ == "Warning":
            age = self._told_before(namespace, obj, reason, message)
            if age is not None and age < self._repeat_after:
                # Said already by an earlier process: remember it as said then.
                self._remember(key, type_, now - age, resolving=resolving)
                return
        self._remember(key, type_, now, resolving=resolving)
        stamp = self._now()
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._create(namespace, event)
        except Exception as exc:  # an Event is best effort; never fail a reconcile for it
            log.warning(
                "Could not record an Event.",
                object=f"{namespace}/{meta.get('name')}",
                reason=reason,
                error=str(exc),
            )

    def _remember(
        self, key: tuple[str, str, str, str], type_: str, when: float, *, resolving: bool
    ) -> None:
        ident, reason = key[0], key[2]
        with self._lock:
            self._seen[key] = when
            self._seen.move_to_end(key)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            if type_ == "Warning":
                self._warned.setdefault(ident, set()).add(reason)
            elif not resolving:
                # A Normal Event of another kind (Adopted, say) ends every Warning's story.
                self._warned.pop(ident, None)

    def _told_before(self, namespace: str, obj: Obj, reason: str, message: str) -> float | None:
        """Seconds since this connector last emitted this Warning on the object, if no Normal
        Event of its own came after it; None if it did not (or the Events cannot be read)."""
        uid = str(obj.get("metadata", {}).get("uid") or "")
        list_events = self._list_events
        if not uid or list_events is None:
            return None
        try:
            events = list_events(namespace, uid)
        except ForbiddenError as exc:
            self._list_events = None
            log.warning(
                "Cannot read Events, so Warnings emitted before a restart may be repeated; "
                "grant the connector list on events to avoid it.",
                error=str(exc),
            )
            return None
        except Exception as exc:  # best effort, like emitting: repeat rather than fail
            log.debug("Could not read an object's Events.", error=str(exc))
            return None
        ours = [e for e in events if _source(e) == COMPONENT]
        said = [
            _when(e)
            for e in ours
            if e.get("type") == "Warning"
            and e.get("reason") == reason
            and e.get("message") == message
        ]
        last_said = max((t for t in said if t is not None), default=None)
        if last_said is None:
            return None
        if any(e.get("type") == "Normal" and (_when(e) or last_said) >= last_said for e in ours):
            return None  # resolved since: a relapse is news
        now = _parse_time(self._now())
        return None if now is None else max(0.0, (now - last_said).total_seconds())


def _source(event: Obj) -> str:
    return str(
        event.get("reportingComponent") or (event.get("source") or {}).get("component") or ""
    )


def _when(event: Obj) -> datetime | None:
    series = event.get("series") or {}
    return _parse_time(
        event.get("lastTimestamp")
        or series.get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _ident(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
