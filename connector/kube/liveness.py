"""Liveness of an API server: notice one that accepts connections but stopped answering.

A hung server (or a proxy or load balancer in front of it that stopped forwarding) accepts
TCP connections and then says nothing. Requests time out only after their read timeout
(30 s), and a watch hears nothing at all: the server is silent while idle anyway, so the
watch cannot tell. The monitor closes that gap with what the client records
(``_traffic.Traffic``): when the server last sent anything, and how long requests have
been waiting for an answer.

The rule, checked every ``tick`` (1 s):

- a request has waited ``deadline`` (5 s) for its answer (still waiting, or given up
  waiting) and the server has sent nothing else for as long, or the server has sent
  nothing at all for ``idle`` (30 s; bookmarks and answers count) → probe it:
  ``GET /livez``, exempt from API Priority and Fairness, any answer counts, allowed
  ``probe_timeout`` (5 s) to connect and answer;
- the probe gets no answer, and nothing else arrived meanwhile → the server is **not
  answering**: :attr:`LivenessMonitor.error` says so (reason ``NotAnswering``), one warning
  is logged, every watch open on the client is given up with that error (its informer
  reports it and watches again), and ``on_change`` is called;
- while it is not answering, it is probed again ``deadline`` after the last probe ended;
  the first answer (to the probe, or anything on any request or watch) ends it: one info
  line, ``on_change``.

So a server that stops answering is reported at most ``deadline + tick + probe_timeout``
(11 s) after a request started waiting on it, and at most ``idle + tick + probe_timeout``
(36 s) after it went silent while nothing was asked of it. A busy client (answers keep
coming) is never probed; an idle one about once every 30 s.

A probe that fails fast (connection refused, DNS) makes :attr:`error` that failure as it
is (the server is unreachable rather than hung); a TLS failure is an answer: the server is
there, and the client's requests report the certificate problem themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from connector.kube.client import PING_PATH, KubeClient
from connector.kube.errors import KubeError, TLSError, UnreachableError

__all__ = ["NOT_ANSWERING", "LivenessMonitor"]

log = structlog.get_logger(__name__)

#: The reason of the error of a server that accepts connections but does not answer.
NOT_ANSWERING = "NotAnswering"


class LivenessMonitor:
    """Watches one client's server; :meth:`start` runs :meth:`check` every ``tick``."""

    def __init__(
        self,
        client: KubeClient,
        *,
        on_change: Callable[[], None] = lambda: None,
        deadline: float = 5.0,
        idle: float = 30.0,
        probe_timeout: float = 5.0,
        tick: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.deadline = deadline
        self.idle = idle
        self.probe_timeout = probe_timeout
        self.tick = tick
        self._on_change = on_change
        self._clock = clock
        self._error: UnreachableError | None = None
        self._failed_at = 0.0
        self._probed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log.bind(cluster=client.name)

    @property
    def error(self) -> UnreachableError | None:
        """Why the server is considered not answering (or unreachable); None while it answers."""
        return self._error

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("The liveness monitor was already started.")
        self.client.reserve_connections(1)
        self._thread = threading.Thread(
            target=self._run, name=f"liveness-{self.client.name}", daemon=True
        )
        self._thread.start()

    def stop(self, *, timeout: float = 2.0) -> None:
        """Stop checking; waits up to ``timeout`` for a probe in flight (it is a daemon
        thread, and a probe ends within ``probe_timeout`` anyway)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread is not threading.current_thread():
            thread.join(timeout)
        self.client.release_connections(1)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.check()
            except Exception:
                self._log.exception("The liveness check failed unexpectedly.")

    def check(self) -> bool:
        """One look at the client's traffic, probing if it is due; returns whether it probed."""
        silence = self.client.traffic.silence()
        if self._error is not None:
            if silence < self._clock() - self._failed_at:
                # Something arrived since the failure: the server answers again.
                self._recovered()
                return False
            if self._clock() - self._probed_at < self.deadline:
                return False
        else:
            waited = self.client.traffic.unanswered_for()
            stuck = waited >= self.deadline and silence >= self.deadline
            if not stuck and silence < self.idle:
                return False
        self._probe()
        return True

    def _probe(self) -> None:
        started = self._clock()
        try:
            self.client.ping(timeout=self.probe_timeout)
        except TLSError:
            pass  # the server is there; its certificate is the requests' problem to report
        except UnreachableError as e:
            if self.client.traffic.silence() < self._clock() - started:
                return  # something else got an answer meanwhile: slow, not hung
            self._failed(self._explain(e))
            return
        finally:
            self._probed_at = self._clock()
        self._recovered()

    def _explain(self, error: UnreachableError) -> UnreachableError:
        if error.reason != "Timeout":
            return error
        # The same words every time it fails, so that the condition and Event stay put.
        return UnreachableError(
            f"The API server {self.client.server} accepts connections but stopped answering: "
            f"a health probe (GET {PING_PATH}) got no answer within {self.probe_timeout:g} s, "
            "and nothing else came back meanwhile.",
            reason=NOT_ANSWERING,
            cause="not answering",
        )

    def _failed(self, error: UnreachableError) -> None:
        before = self._error
        self._error = error
        self._failed_at = self._clock()
        interrupted = self.client.interrupt_watches(error)
        if before is not None and _same(before, error):
            self._log.debug("The API server still does not answer.", watches=interrupted)
            return
        self._log.warning(
            "The API server does not answer; its watches were given up and are retried.",
            error=error.message,
            reason=error.reason,
            silent_seconds=round(self.client.traffic.silence(), 1),
            watches=interrupted,
        )
        self._notify()

    def _recovered(self) -> None:
        if self._error is None:
            return
        down = self._clock() - self._failed_at
        self._error = None
        self._log.info("The API server answers again.", not_answering_for_seconds=round(down, 1))
        self._notify()

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            self._log.exception("The liveness callback raised.")


def _same(a: KubeError, b: KubeError) -> bool:
    return (type(a), a.reason) == (type(b), b.reason)
