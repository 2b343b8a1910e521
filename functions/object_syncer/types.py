"""Input and output of the object-syncer stage."""

from __future__ import annotations

from dataclasses import dataclass

from functions.common.objects import Obj


@dataclass(frozen=True, kw_only=True)
class SyncRequest:
    #: The consumer object as observed.
    consumer: Obj
    #: Its provider twin as observed (same apiVersion, kind, namespace, name), or None.
    provider: Obj | None
    #: This consumer cluster's identity (``consumerClusterDisplayName``).
    consumer_cluster: str
    now: str


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    #: The desired twin, for server-side apply; None: nothing to write.
    provider_apply: Obj | None = None
    #: Delete the twin (the consumer object is being deleted and not orphaned).
    provider_delete: bool = False
    #: The whole status to write to the consumer's status subresource; None: unchanged.
    consumer_status: Obj | None = None
    add_finalizer: bool = False
    remove_finalizer: bool = False
    #: Set when the twin belongs to another consumer or to nobody; it is never overwritten.
    conflict: str | None = None
