"""The keys work is queued and cached by: one home, so that every layer names objects alike.

``ObjectKey`` is an informer's cache key and an object syncer's work-queue key: a named
tuple, so it costs a cache no more than a plain ``(namespace, name)`` tuple and still unpacks
like one. ``BindingKey`` is the binding controller's work-queue key, which the registry of
API claims (``connector.controllers.claims``) keys its state by as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["BindingKey", "ObjectKey", "key_of"]


class ObjectKey(NamedTuple):
    """An object's namespace (``""`` for a cluster-scoped object) and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def key_of(obj: dict[str, Any]) -> ObjectKey:
    """The key of an object, from its ``metadata``."""
    meta = obj.get("metadata") or {}
    return ObjectKey(str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclass(frozen=True, order=True)
class BindingKey:
    """A ClusterAPIBinding (``namespace`` is ``""``) or an APIBinding."""

    kind: str  # ClusterAPIBinding | APIBinding
    namespace: str  # "" for a ClusterAPIBinding
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"
