"""Plain-dict Kubernetes objects and the checks every stage applies to its input."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from functions.common.errors import InvalidInputError

JSON = Any
#: A Kubernetes object as decoded JSON.
Obj = dict[str, Any]

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def require_object(obj: object, field: str, *, namespaced: bool | None = None) -> Obj:
    """Check that ``obj`` is a Kubernetes object (apiVersion, kind, metadata.name).

    Raises InvalidInputError naming ``field`` and the missing or malformed part.
    """
    if not isinstance(obj, dict):
        raise InvalidInputError(field, f"must be an object, got {type(obj).__name__}")
    for key in ("apiVersion", "kind"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"{field}.{key}", "is required and must be a non-empty string")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{field}.metadata", "is required and must be an object")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{field}.metadata.name", "is required and must be a non-empty string")
    ns = meta.get("namespace")
    if ns is not None and not isinstance(ns, str):
        raise InvalidInputError(f"{field}.metadata.namespace", "must be a string")
    if namespaced is True and not ns:
        raise InvalidInputError(f"{field}.metadata.namespace", "is required for a namespaced object")
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        ):
            raise InvalidInputError(f"{field}.metadata.{key}", "must map strings to strings")
    return obj


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a stable 63-character stand-in."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:46].strip("-_.")
    return f"{prefix}-{digest}" if prefix else digest


def api_group(api_version: str) -> str:
    """The group of ``apiVersion`` (``""`` for the core group)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""
