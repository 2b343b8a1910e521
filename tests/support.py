"""Helpers every test tier shares: bounded polling and the pinned Go tools."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TypeVar

from functions.binder.types import BoundResource

ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")

#: The walkthrough's NopResource (``nopresources.nop.example.org``) as a binding binds it.
NOP_BOUND = BoundResource(
    crd_name="nopresources.nop.example.org",
    group="nop.example.org",
    kind="NopResource",
    plural="nopresources",
    scope="Namespaced",
    version="v1alpha1",
)


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
