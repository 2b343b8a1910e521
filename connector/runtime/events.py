"""Kubernetes Events on consumer objects, deduplicated.

A failing reconcile runs again and again; each (reason, message) of an object is emitted
once, and again only after ``repeat_after`` seconds — also when an object has several
problems at once, reported in turn. ``resolved`` emits a Normal Event only for an object
with an unresolved Warning, so a recovery is visible, and a relapse into the same failure
is reported again.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog

from functions.common.clock import now_rfc3339
from functions.common.objects import Obj

log = structlog.get_logger(__name__)

COMPONENT = "api-connector"


class EventRecorder:
    """Emits core/v1 Events through ``create_event(namespace, event)``."""

    def __init__(
        self,
        create_event: Callable[[str, Obj], object],
        *,
        repeat_after: float = 3600.0,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._create = create_event
        self._repeat_after = repeat_after
        self._max = max_remembered
        self._clock = clock
        self._instance = socket.gethostname()
        #: Events emitted recently: (object, type, reason, message) -> when.
        self._seen: OrderedDict[tuple[str, str, str, str], float] = OrderedDict()
        #: Objects whose latest Event is a Warning that has not been resolved.
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def warning(self, obj: Obj, reason: str, message: str) -> None:
        self.record(obj, "Warning", reason, message)

    def normal(self, obj: Obj, reason: str, message: str) -> None:
        self.record(obj, "Normal", reason, message)

    def resolved(self, obj: Obj, reason: str, message: str) -> None:
        """A Normal Event, only if the object has an unresolved Warning; forgets the
        object's Warnings, so that a relapse into one of them is reported again."""
        ident = _ident(obj)
        with self._lock:
            if ident not in self._warned:
                return
            self._warned.discard(ident)
            for key in [k for k in self._seen if k[0] == ident]:
                del self._seen[key]
        self.record(obj, "Normal", reason, message)

    def record(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        ident = _ident(obj)
        key = (ident, type_, reason, message)
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self._repeat_after:
                return
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            if type_ == "Warning":
                self._warned.add(ident)
            else:
                self._warned.discard(ident)
        namespace = str(meta.get("namespace") or "default")
        stamp = now_rfc3339()
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
            "message": message[:1024],
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


def _ident(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
