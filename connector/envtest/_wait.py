"""Waiting for a condition on the local clusters: one bounded poll for the demo, the
benchmarks and the tests alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from connector.kube.errors import KubeError

T = TypeVar("T")

#: What a check may raise while the state it waits for is still on its way: an object not
#: there yet (a Kubernetes error), or a part of it missing (an assertion, a key, an index).
TRANSIENT = (AssertionError, KubeError, KeyError, IndexError, TypeError)


class WaitTimeout(AssertionError):
    """A condition did not hold in time; the message names it and the last value or error.

    An ``AssertionError``, so that a test that waits fails rather than errors.
    """


def eventually(
    check: Callable[[], T | None],
    *,
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy without raising; return that.

    Errors in :data:`TRANSIENT` are retried; after ``timeout`` seconds :class:`WaitTimeout`
    is raised, chained to the last such error.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    value: T | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except TRANSIENT as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    detail = f"last error: {last}" if last is not None else f"last value: {value!r}"
    raise WaitTimeout(f"Timed out after {timeout:g} s waiting for {what} ({detail}).") from last
