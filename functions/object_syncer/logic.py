"""Object-syncer logic: a consumer object + its provider twin → what to write where.

Spec (and every other top-level field but status) flows consumer → provider; status flows
provider → consumer, with the connector's own ``APIBound`` condition merged in. A twin that
belongs to another consumer cluster, or to nobody, is never written or deleted.

``APIBound`` reasons:

- ``Bound`` (True): the twin exists, is ours, and already holds what the consumer asks for.
- ``Pending`` (False): the twin does not exist yet; it is being created.
- ``Syncing`` (False): the twin exists but differs from the consumer object (a spec change,
  or an edit made in the provider); it is being updated.
- ``Conflict`` (False): a provider object of that name belongs to someone else.
"""

from __future__ import annotations

import copy
from typing import Any

from functions.common import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_DELETION_POLICY,
    ANNOTATION_LAST_APPLIED,
    ANNOTATION_ORIGIN_NAME,
    ANNOTATION_ORIGIN_NAMESPACE,
    CONDITION_API_BOUND,
    FINALIZER,
    LABEL_CONSUMER_CLUSTER,
    LABEL_CONSUMER_NAME,
    LABEL_CONSUMER_NAMESPACE,
    LABEL_CONSUMER_UID,
    MANAGED_LABEL,
    Condition,
    InvalidInputError,
    Obj,
    canonical_hash,
    is_subset,
    label_value,
    metadata,
    require_object,
    require_str,
    set_condition,
    string_map,
)
from functions.object_syncer.types import SyncRequest, SyncResult

REASON_BOUND = "Bound"
REASON_PENDING = "Pending"
REASON_SYNCING = "Syncing"
REASON_CONFLICT = "Conflict"

#: Fields of an object that are not content the consumer owns.
_NOT_CONTENT = frozenset({"apiVersion", "kind", "metadata", "status"})
#: Consumer annotations that are not copied: kubectl's record of the consumer-side apply, and
#: our own instructions to the connector.
_NOT_COPIED_ANNOTATIONS = frozenset(
    {ANNOTATION_LAST_APPLIED, ANNOTATION_DELETION_POLICY, ANNOTATION_APPLIED_HASH}
)


def sync(req: SyncRequest) -> SyncResult:
    """Decide what to apply to the provider and write back to the consumer for one object."""
    consumer_cluster = require_str(req.consumer_cluster, "consumer_cluster")
    consumer = require_object(req.consumer, "consumer")
    twin = _checked_twin(req.provider, consumer)
    meta = metadata(consumer)
    deleting = bool(meta.get("deletionTimestamp"))
    has_finalizer = FINALIZER in (meta.get("finalizers") or [])

    conflict = _conflict(twin, consumer, consumer_cluster)
    if conflict is not None:
        if deleting:
            # The twin is not ours to delete; let the consumer object go.
            return SyncResult(conflict=conflict, remove_finalizer=has_finalizer)
        # The twin's status is someone else's: keep the consumer's status, mark the conflict.
        status = _with_api_bound(
            _status(consumer), consumer, "False", REASON_CONFLICT, conflict, req.now
        )
        return SyncResult(conflict=conflict, consumer_status=_if_changed(status, consumer))

    if deleting:
        orphan = string_map(consumer, "annotations").get(ANNOTATION_DELETION_POLICY) == "Orphan"
        if orphan or twin is None:
            return SyncResult(remove_finalizer=has_finalizer)
        # Keep the finalizer until the twin is gone; ask once, not again while it terminates.
        return SyncResult(provider_delete=not metadata(twin).get("deletionTimestamp"))

    desired = desired_twin(consumer, consumer_cluster=consumer_cluster)
    add_finalizer = not has_finalizer
    if twin is None:
        # Until the twin exists there is no provider status: keep what the consumer has.
        status = _with_api_bound(
            _status(consumer),
            consumer,
            "False",
            REASON_PENDING,
            "Creating the object in the provider",
            req.now,
        )
        return SyncResult(
            provider_apply=desired,
            consumer_status=_if_changed(status, consumer),
            add_finalizer=add_finalizer,
        )

    # A subset, not equality: the provider's defaulting and controllers add fields of their
    # own. The applied-hash annotation is part of ``desired``, so a field the consumer
    # removed changes the hash and is noticed too. A twin left by an earlier consumer object
    # of the same cluster, namespace and name (deleted with the Orphan policy, or while the
    # connector was down, then recreated) carries the old uid label: it differs, and is
    # adopted by applying the new uid, rather than stuck as a conflict only a provider admin
    # could resolve.
    in_sync = is_subset(desired, twin)
    provider_status = _status(twin)
    if in_sync:
        status = _with_api_bound(
            provider_status, consumer, "True", REASON_BOUND, "Synced to the provider", req.now
        )
    else:
        status = _with_api_bound(
            provider_status,
            consumer,
            "False",
            REASON_SYNCING,
            "Updating the object in the provider",
            req.now,
        )
    return SyncResult(
        provider_apply=None if in_sync else desired,
        consumer_status=_if_changed(status, consumer),
        add_finalizer=add_finalizer,
    )


def desired_twin(consumer: Obj, *, consumer_cluster: str) -> Obj:
    """The provider twin of a (checked) consumer object, labelled with where it comes from."""
    meta = metadata(consumer)
    namespace = meta.get("namespace")
    labels = string_map(consumer, "labels")
    labels[MANAGED_LABEL] = "true"
    labels[LABEL_CONSUMER_CLUSTER] = label_value(consumer_cluster)
    labels[LABEL_CONSUMER_NAME] = label_value(str(meta["name"]))
    if namespace:
        labels[LABEL_CONSUMER_NAMESPACE] = label_value(namespace)
    uid = meta.get("uid")
    if isinstance(uid, str) and uid:
        labels[LABEL_CONSUMER_UID] = label_value(uid)
    annotations = {
        key: value
        for key, value in string_map(consumer, "annotations").items()
        if key not in _NOT_COPIED_ANNOTATIONS
    }
    # Labels may be hashed to fit; the annotations carry the origin in full.
    annotations[ANNOTATION_ORIGIN_NAME] = str(meta["name"])
    if namespace:
        annotations[ANNOTATION_ORIGIN_NAMESPACE] = namespace

    twin_meta: dict[str, Any] = {"name": meta["name"]}
    if namespace:
        twin_meta["namespace"] = namespace
    twin_meta["labels"] = labels
    twin_meta["annotations"] = annotations
    twin: Obj = {"apiVersion": consumer["apiVersion"], "kind": consumer["kind"]}
    twin["metadata"] = twin_meta
    for key, value in consumer.items():
        if key not in _NOT_CONTENT:
            twin[key] = copy.deepcopy(value)
    annotations[ANNOTATION_APPLIED_HASH] = canonical_hash(twin)
    return twin


def _checked_twin(provider: Obj | None, consumer: Obj) -> Obj | None:
    if provider is None:
        return None
    twin = require_object(provider, "provider")
    for key in ("apiVersion", "kind"):
        if twin[key] != consumer[key]:
            raise InvalidInputError(f"provider.{key}", f"must be the consumer's {consumer[key]}")
    for key in ("name", "namespace"):
        want = metadata(consumer).get(key) or None
        if (metadata(twin).get(key) or None) != want:
            raise InvalidInputError(f"provider.metadata.{key}", f"must be the consumer's {want}")
    return twin


def _conflict(twin: Obj | None, consumer: Obj, consumer_cluster: str) -> str | None:
    """Why the twin is not ours, or None if it is ours (or missing)."""
    if twin is None:
        return None
    owner = string_map(twin, "labels").get(LABEL_CONSUMER_CLUSTER)
    if owner == label_value(consumer_cluster):
        return None
    meta = metadata(consumer)
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    what = f"{consumer['kind']} {where} already exists in the provider and"
    if owner is None:
        return f"{what} is not managed by any consumer cluster; it is left untouched"
    return f"{what} belongs to consumer cluster {owner}; it is left untouched"


def _status(obj: Obj) -> dict[str, Any]:
    status = obj.get("status")
    return copy.deepcopy(status) if isinstance(status, dict) else {}


def _with_api_bound(
    status: dict[str, Any],
    consumer: Obj,
    condition_status: str,
    reason: str,
    message: str,
    now: str,
) -> dict[str, Any]:
    """``status`` with our APIBound condition; its transition time is the consumer's."""
    conditions = status.get("conditions")
    others = [
        c
        for c in (conditions if isinstance(conditions, list) else [])
        if isinstance(c, dict) and c.get("type") != CONDITION_API_BOUND
    ]
    current = _status(consumer).get("conditions")
    ours: list[Condition] = [
        c
        for c in (current if isinstance(current, list) else [])
        if isinstance(c, dict) and c.get("type") == CONDITION_API_BOUND
    ]
    generation = metadata(consumer).get("generation")
    status["conditions"] = set_condition(
        others + ours[:1],
        type_=CONDITION_API_BOUND,
        status=condition_status,
        reason=reason,
        message=message,
        now=now,
        observed_generation=generation if isinstance(generation, int) else None,
    )
    return status


def _if_changed(status: dict[str, Any], consumer: Obj) -> Obj | None:
    return None if status == _status(consumer) else status
