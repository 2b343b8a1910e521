"""What a client has heard from its server: when it last answered, and how long requests wait.

:class:`connector.kube.client.KubeClient` records every answer (a response, any chunk of a
watch) and every request waiting for one; :class:`connector.kube.liveness.LivenessMonitor`
reads both to tell a server that stopped answering from one that is merely idle or slow.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator


class Traffic:
    """Thread-safe; ``clock`` is monotonic seconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_answer = clock()
        self._waiting: dict[int, float] = {}
        #: When the oldest request that ended without an answer (a timeout) was sent, if no
        #: answer has come since: it waited, and in vain.
        self._unanswered: float | None = None
        self._ids = itertools.count()

    def heard(self) -> None:
        """The server sent something: an answer to a request, or data on a watch."""
        # Plain stores, no lock on the path every watch chunk takes; a race with a request
        # ending at the same moment at worst keeps a stale mark until the next answer.
        self._last_answer = self._clock()
        self._unanswered = None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a request until its answer (the status line and headers) arrives; the
        caller calls :meth:`heard` inside it when the answer comes."""
        ident = next(self._ids)
        sent = self._clock()
        with self._lock:
            self._waiting[ident] = sent
        try:
            yield
        finally:
            with self._lock:
                del self._waiting[ident]
                if self._last_answer < sent and (
                    self._unanswered is None or sent < self._unanswered
                ):
                    self._unanswered = sent

    def silence(self) -> float:
        """Seconds since the server last sent anything (since creation if it never has)."""
        return max(0.0, self._clock() - self._last_answer)

    def unanswered_for(self) -> float:
        """Seconds since the oldest request without an answer was sent: one still waiting,
        or one that gave up waiting after the last answer; 0 if there is none."""
        with self._lock:
            sent = [t for t in (min(self._waiting.values(), default=None), self._unanswered)]
        oldest = min((t for t in sent if t is not None), default=None)
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)
