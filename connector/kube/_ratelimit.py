"""A thread-safe token bucket, shared by the client's QPS limit and the work queue's limiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``qps`` tokens per second, at most ``burst`` saved up.

    :meth:`reserve` takes a token now or in the future and says how long to wait for it, like
    Go's ``rate.Limiter.Reserve``: callers that must not block (a queue scheduling a retry)
    use the delay, callers that may block (an HTTP request) sleep it.
    """

    def __init__(
        self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("A token bucket needs qps > 0 and burst >= 1.")
        self._qps = float(qps)
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take one token; return the seconds until it is really available (0 if now)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            # A negative balance is a queue of reservations: each waits for its own token.
            return -self._tokens / self._qps

    def wait(self) -> None:
        """Take one token, sleeping until it is available."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)
