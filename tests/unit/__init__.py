"""Unit tests: table-driven tests of the stages' pure logic."""

from __future__ import annotations

import dataclasses
import difflib
import pprint
from typing import Any


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def want_got_diff(want: Any, got: Any) -> str:
    """A "-want, +got" diff of two values (dataclasses compared as dicts), for assertions."""
    want_lines = pprint.pformat(_plain(want), width=100).splitlines()
    got_lines = pprint.pformat(_plain(got), width=100).splitlines()
    diff = difflib.unified_diff(want_lines, got_lines, "want", "got", lineterm="", n=2)
    return "-want, +got:\n" + "\n".join(diff)


def assert_same(want: Any, got: Any, reason: str) -> None:
    """Fail with ``reason`` and a "-want, +got" diff unless ``want == got``."""
    assert _plain(want) == _plain(got), f"{reason}\n{want_got_diff(want, got)}"
