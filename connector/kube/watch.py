"""Watch streams: one open watch request, read event by event, closable from any thread.

:meth:`connector.kube.client.KubeClient.watch` opens them; the rules for callers (bookmarks
surfaced, 410 → :class:`GoneError`, a normal end after the server's timeout) are in its
docstring and in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3

from connector.kube.errors import GoneError, KubeError, UnreachableError, error_from_status
from connector.kube.resources import Resource

Object = dict[str, Any]


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: Object

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


class WatchStream:
    """An open watch: iterate for :class:`WatchEvent`; :meth:`close` stops it from any thread.

    The request is sent by :meth:`open` or the first iteration. ``resource_version`` is the
    version of the last event or bookmark seen (the one passed to ``watch`` until then).

    ``read_timeout`` is also the stream's idle deadline: a stream that receives nothing, not
    even a bookmark, for that long ends as if the server had ended the session
    (:attr:`idle_expired` is then True), so that a connection that died without a word is
    replaced by the caller's next watch instead of blocking it for the whole session.
    ``on_data`` is called whenever the server sends something (its answer, any chunk).
    """

    def __init__(
        self,
        *,
        open_stream: Callable[[float], urllib3.BaseHTTPResponse],
        transport_error: Callable[[BaseException, str], KubeError],
        server: str,
        res: Resource,
        resource_version: str,
        read_timeout: float,
        on_data: Callable[[], None] = lambda: None,
    ) -> None:
        self._open_stream = open_stream
        self._transport_error = transport_error
        self._server = server
        self._res = res
        self._read_timeout = read_timeout
        self._on_data = on_data
        self.resource_version = resource_version
        self.idle_expired = False
        self._lock = threading.Lock()
        self._opened = False
        self._closed = False
        self._abort_error: KubeError | None = None
        self._response: urllib3.BaseHTTPResponse | None = None
        self._events: Iterator[WatchEvent] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> WatchEvent:
        if self._events is None:
            self.open()
            self._events = self._read()
        return next(self._events)

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._release()

    def open(self) -> bool:
        """Send the request and wait for the server's answer (its headers), once; returns
        whether the server accepted the watch (False: the stream was closed first).

        Iterating opens the stream too; a caller that opens it first learns that the server
        accepted the watch before any event arrives (on an idle resource, the first
        bookmark may be a minute away).
        """
        with self._lock:
            if self._opened or self._closed:
                return self._response is not None
            self._opened = True
        response = self._open_stream(self._read_timeout)
        self._on_data()
        with self._lock:
            self._response = response
            closed = self._closed
        if closed:
            _interrupt(response)
        return True

    def close(self) -> None:
        """End the stream: a blocked iteration returns promptly, later ones stop at once."""
        with self._lock:
            self._closed = True
            response = self._response
        if response is not None:
            _interrupt(response)

    def abort(self, error: KubeError) -> None:
        """Like :meth:`close`, but the iteration raises ``error`` instead of ending normally:
        the stream is given up because of a failure seen elsewhere (the server stopped
        answering), and its reader must treat it as one."""
        with self._lock:
            if self._closed:
                return
            self._abort_error = error
        self.close()

    def _ended_by_us(self) -> None:
        """The stream was closed or aborted on purpose: end, or raise the abort's error."""
        if self._abort_error is not None:
            raise self._abort_error

    def _read(self) -> Iterator[WatchEvent]:
        response = self._response
        try:
            if response is None or self._closed:
                self._ended_by_us()
                return
            yield from self._events_of(response)
        finally:
            self._release()

    def _release(self) -> None:
        # Only the reading thread releases: the connection goes back to the pool (closed,
        # so it is never reused mid-stream) once nobody reads from it.
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            response.close()
            response.release_conn()

    def _events_of(self, response: urllib3.BaseHTTPResponse) -> Iterator[WatchEvent]:
        buffer = b""
        try:
            for chunk in response.stream(amt=None, decode_content=True):
                if self._closed:
                    self._ended_by_us()
                    return
                self._on_data()
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield self._event(line)
            if buffer.strip() and not self._closed:
                yield self._event(buffer)
        except urllib3.exceptions.ReadTimeoutError:
            # Nothing for the whole idle deadline: the caller watches again, on a new
            # connection; if the server itself is hung, that watch is what shows it.
            if self._closed:
                self._ended_by_us()
                return
            self.idle_expired = True
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            # An interrupted read surfaces as a protocol, SSL or socket error (or a read on a
            # closed file): when we closed the stream ourselves, that is a normal end.
            if self._closed:
                self._ended_by_us()
                return
            if isinstance(e, urllib3.exceptions.HTTPError):
                raise self._transport_error(e, "watch") from e
            raise UnreachableError(
                f"The watch connection to {self._server} failed: {e}.",
                reason="ConnectionFailed",
            ) from e

    def _event(self, line: bytes) -> WatchEvent:
        try:
            raw = json.loads(line)
        except ValueError as e:
            raise KubeError(
                f"The API server {self._server} sent a watch event that is not JSON.",
                reason="InvalidResponse",
            ) from e
        event_type = str(raw.get("type") or "")
        obj = raw.get("object") or {}
        if event_type == "ERROR":
            error = error_from_status(obj)
            if error.status == 410 or error.reason in ("Expired", "Gone"):
                raise GoneError(error.message, status=410, reason=error.reason or "Expired")
            raise error
        if not isinstance(obj, dict):
            raise KubeError(
                f"The API server {self._server} sent a watch event without an object.",
                reason="InvalidResponse",
            )
        if event_type != "BOOKMARK":
            self._res.with_type(obj)
        event = WatchEvent(event_type, obj)
        if event.resource_version:
            self.resource_version = event.resource_version
        return event


def _interrupt(response: urllib3.BaseHTTPResponse) -> None:
    # shutdown() wakes a read blocked in another thread (close() alone would not on Linux);
    # close() then drops the connection so it is never reused mid-stream.
    with contextlib.suppress(ValueError, RuntimeError, OSError, AttributeError):
        response.shutdown()
    with contextlib.suppress(OSError, AttributeError):
        response.close()
