"""Helpers every test tier shares: bounded polling and the pinned Go tools."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from connector.kube.errors import NotFoundError

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


def eventually(fn: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``fn`` until it returns a truthy value without raising; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    value: T | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (AssertionError, NotFoundError, KeyError, IndexError, TypeError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s; last value {value!r}") from last


def go_tool(name: str) -> Path:
    """The path of a pinned Go tool (``tools/build.sh NAME``: built once, then cached).

    A failed build fails the calling test with the script's own message, never skips it.
    """
    proc = subprocess.run(
        [str(ROOT / "tools" / "build.sh"), name],
        capture_output=True,
        text=True,
        check=False,
        timeout=2700,
    )
    if proc.returncode != 0:
        raise AssertionError(f"tools/build.sh {name} failed:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        tool, _, path = line.partition(" ")
        if tool == name:
            return Path(path)
    raise AssertionError(f"tools/build.sh {name} printed no path: {proc.stdout!r}")
