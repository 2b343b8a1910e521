"""Helpers every test tier shares: bounded polling and the pinned Go tools."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


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
