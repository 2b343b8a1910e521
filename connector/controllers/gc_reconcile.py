"""Collect orphaned twins: a twin of ours whose consumer object no longer exists is deleted.

A consumer object can disappear without the connector deleting its twin: an operator
force-removes the finalizer of a stuck object, a namespace is force-cleaned, or the object
is deleted before its finalizer lands (the finalizer and the twin are written at the same
time, see ``sync_reconcile``). For Crossplane, such a twin is often a cloud resource that
costs money. So when the object syncer finds a twin and no consumer object of its name,
:func:`collect_orphan` decides, in this order:

1. the consumer cache that covers the name must have listed: before that, a missing object
   says nothing (the cache's first list queues the twins it lacks, and they come back here);
2. the stage's :func:`~functions.object_syncer.orphan_verdict` must say ``Collect``: the twin
   is labelled as this consumer cluster's, its origin labels name it and its consumer uid,
   it is not being deleted already, and it does not carry the Orphan deletion policy (copied
   from its consumer object);
3. a live read of the consumer object of that name must find nothing: never a cache alone.
   An object of that name with another uid is a new incarnation, which adopts the twin
   (``object_syncer``), so it is not collected either;
4. the delete carries the twin's uid and resourceVersion as preconditions: a twin changed
   since it was looked at (adopted, re-labelled) is looked at again instead.

Then it says what it deleted: a log line, a counter, and an Event on the binding that covers
the object (``collected``).

The collector runs in the object syncer's reconcile, so it only ever sees the APIs and
namespaces a binding still covers: a syncer watches only its bound API, and queues only the
twins of the namespaces it syncs. A twin of an API that is no longer bound is left alone.
It runs when a syncer starts (its caches' first lists queue every twin), on every resync
(``--poll-interval`` re-delivers every cached twin), and whenever a consumer object
disappears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from connector.kube.errors import ConflictError, NotFoundError
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.common import LABEL_CONSUMER_UID
from functions.common.objects import Obj, string_map
from functions.common.placement import PLACEMENT_DEFAULT
from functions.object_syncer import ORPHAN_COLLECT, orphan_verdict

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class CollectDeps:
    consumer_cluster: str
    #: Whether the consumer cache that covers the key has listed.
    consumer_synced: Callable[[ObjectKey], bool]
    #: The twin as last seen (the cache, or newer), or None.
    get_twin: Callable[[ObjectKey], Obj | None]
    #: A live read of the consumer object; None when no object of that name exists.
    read_consumer: Callable[[ObjectKey], Obj | None]
    #: Deletes the twin with its uid and resourceVersion as preconditions: ConflictError
    #: when they no longer match, NotFoundError when it is gone.
    delete_twin: Callable[[ObjectKey, Obj], None]
    #: Says what was deleted: a log line, a counter, an Event on the binding.
    collected: Callable[[ObjectKey, Obj], None]
    #: The connection's placement: where the twin of a consumer object belongs.
    placement: str = PLACEMENT_DEFAULT


def collect_orphan(key: ObjectKey, deps: CollectDeps) -> Result:  # noqa: PLR0911 - a guard per reason to leave a twin be
    """Delete the twin of ``key`` if its consumer object is gone (module doc)."""
    if not deps.consumer_synced(key):
        return Result()
    twin = deps.get_twin(key)
    if twin is None:
        return Result()
    bound = log.bind(object=str(key), consumer_cluster=deps.consumer_cluster)
    verdict = orphan_verdict(twin, consumer_cluster=deps.consumer_cluster, placement=deps.placement)
    if verdict != ORPHAN_COLLECT:
        bound.debug("A provider object without a consumer object is left alone.", why=verdict)
        return Result()
    live = deps.read_consumer(key)
    if live is not None:
        # The cache has not caught up with it yet; its event will queue the key again.
        bound.debug("The consumer object exists after all; nothing to collect.")
        return Result()
    try:
        deps.delete_twin(key, twin)
    except NotFoundError:
        return Result()  # deleted meanwhile: what we wanted
    except ConflictError:
        # The twin changed since it was looked at: look again at the newer one.
        bound.debug("The orphaned twin changed before it could be deleted; looking again.")
        return Result(requeue=True)
    deps.collected(key, twin)
    return Result()


def collected_message(key: ObjectKey, twin: Obj) -> str:
    """The Event message (and log line) for a collected twin."""
    uid = string_map(twin, "labels").get(LABEL_CONSUMER_UID, "")
    meta = twin.get("metadata") or {}
    where = str(ObjectKey(str(meta.get("namespace") or ""), str(meta.get("name") or key.name)))
    # In the isolated placement the twin's namespace is not the consumer object's.
    origin = "" if where == str(key) else f" {key}"
    return (
        f"Deleted {twin.get('kind')} {where} in the provider: its consumer object{origin} "
        f"(uid {uid}) "
        "no longer exists, and it had not asked for the Orphan deletion policy."
    )
