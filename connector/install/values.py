"""The Helm values install passes: ``--set`` parsing, merging, and the chart's ``boundAPIs``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connector.install.options import InstallError
from functions.binder import BoundResource

__all__ = ["bound_apis_value", "merge_values", "parse_set", "union_bound_apis"]


def parse_set(assignments: Iterable[str]) -> dict[str, Any]:
    """Helm-style ``--set`` assignments as nested values.

    Supported: ``a.b.c=value``, several assignments separated by commas, lists as
    ``{x,y}``, ``\\`` escaping ``.``, ``,`` or ``=``. Values are typed as helm types them:
    ``true``/``false``, ``null`` and integers; everything else is a string. List indexes
    (``a[0]=x``) are not supported: use a values file (``--values``).
    """
    out: dict[str, Any] = {}
    for assignment in assignments:
        for item in _split_unescaped(assignment, ",", keep_braces=True):
            if not item:
                continue
            key, sep, raw = _partition_unescaped(item, "=")
            if not sep:
                raise InstallError(f"--set {item}: expected key=value.")
            path = [_unescape(p) for p in _split_unescaped(key, ".")]
            if not all(path):
                raise InstallError(f"--set {item}: the key has an empty part.")
            if any("[" in p for p in path):
                raise InstallError(
                    f"--set {item}: list indexes are not supported; put the value in a YAML "
                    "file and pass --values FILE."
                )
            value: Any
            if raw.startswith("{") and raw.endswith("}"):
                inner = raw[1:-1]
                value = [_typed(_unescape(v)) for v in _split_unescaped(inner, ",") if v]
            else:
                value = _typed(_unescape(raw))
            node = out
            for part in path[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[path[-1]] = value
    return out


def _split_unescaped(text: str, sep: str, *, keep_braces: bool = False) -> list[str]:
    parts: list[str] = []
    current = ""
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if keep_braces and c == "{":
            depth += 1
        elif keep_braces and c == "}":
            depth = max(0, depth - 1)
        if c == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += c
        i += 1
    parts.append(current)
    return parts


def _partition_unescaped(text: str, sep: str) -> tuple[str, str, str]:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return text[:i], sep, text[i + 1 :]
        i += 1
    return text, "", ""


def _unescape(text: str) -> str:
    out = ""
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def _typed(value: str) -> Any:
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    if value == "null":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged over ``base`` (maps merge; anything else is replaced)."""
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = merge_values(current, value)
        else:
            out[key] = value
    return out


def bound_apis_value(resources: Iterable[BoundResource]) -> list[dict[str, Any]]:
    """The chart's ``boundAPIs``: one entry per group, plurals sorted."""
    by_group: dict[str, set[str]] = {}
    for r in resources:
        by_group.setdefault(r.group, set()).add(r.plural)
    return [{"group": g, "resources": sorted(p)} for g, p in sorted(by_group.items())]


def union_bound_apis(*lists: Any) -> list[dict[str, Any]]:
    """The union of several ``boundAPIs`` values (malformed entries are dropped)."""
    by_group: dict[str, set[str]] = {}
    for entries in lists:
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("group"), str):
                continue
            plurals = entry.get("resources")
            by_group.setdefault(entry["group"], set()).update(
                str(p) for p in (plurals if isinstance(plurals, list) else [])
            )
    return [{"group": g, "resources": sorted(p)} for g, p in sorted(by_group.items())]
