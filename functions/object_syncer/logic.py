"""Object-syncer logic: a consumer object + its provider twin → what to write where.

Long because its verdicts (sync, conflict, adoption, deletion, orphaned twins and the
observedGeneration rule) share one reading of a twin's origin labels and annotations.

Spec (and every other top-level field but status) flows consumer → provider; status flows
provider → consumer, with the connector's own ``APIBound`` condition merged in. A twin that
belongs to another consumer cluster, or to nobody, is never written or deleted.

``APIBound`` reasons:

- ``Bound`` (True): the twin exists, is ours, and already holds what the consumer asks for.
- ``Pending`` (False): the twin does not exist yet; it is being created.
- ``Syncing`` (False): the twin exists but differs from the consumer object (a spec change,
  or an edit made in the provider); it is being updated.
- ``Conflict`` (False): a provider object of that name belongs to someone else.
- ``Adopting`` (False): a provider object of that name was created by another connector and
  the connection opts in to adopting it (``SyncRequest.adoption``); it is being labelled as
  this consumer's.
- ``Recreating`` (False): the consumer object is live but the provider object of its name is
  being deleted (an earlier object of that name, deleted and created again while its twin
  waits for the provider's finalizers; or a deletion made in the provider). Nothing is
  written to it; once it is gone, the twin is created anew. The message names what its
  deletion waits for.
- ``Deleting`` (True): the consumer object is being deleted and so is its twin; the message
  names what the provider's deletion waits for. The API stays bound meanwhile, and the
  twin's status keeps flowing until the twin is gone and the finalizer is released.

Deletion. A deleted consumer object deletes its twin, and keeps the connector's finalizer
until the twin is gone; with the annotation ``connect.upbound.io/deletion-policy: Orphan``
the twin is kept. That annotation is copied to the twin, and an object deleted with it is
released only once its twin carries it: when a consumer object disappears without the
connector's say (a force-removed finalizer, a crash before the finalizer landed), the twin is
all the collector of orphaned twins has to go by (:func:`orphan_verdict`).

Generations. The twin carries the annotation ``connect.upbound.io/consumer-generation``: the
consumer object's ``metadata.generation`` its content reflects (it is part of what is
applied, so it changes exactly when the twin is brought up to date). Every
``observedGeneration`` in the copied status (each condition's, and ``status.observedGeneration``)
is rewritten in the consumer object's terms (see ``generations.consumer_generation``), because tools
compare it with the consumer object's own ``metadata.generation``.

Adoption. A twin that is not ours is adopted, instead of reported as a ``Conflict``, only
when the request carries the connection's opt-in and the twin (a) is labelled
``connect.upbound.io/managed=true`` (a connector created it), (b) has no
``connect.upbound.io/consumer-cluster`` label (no consumer cluster's origin labels claim it),
(c) carries every label of the opt-in's ``match_labels``, and (d) is not being deleted. A
consumer object that is itself being deleted never adopts: a twin that is not ours is not
ours to delete. The adopted twin keeps ``connect.upbound.io/adopted=true`` from then on, so
that what was adopted stays listable.
"""

from __future__ import annotations

from typing import Any

from functions.common import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_CONSUMER_GENERATION,
    ANNOTATION_DELETION_POLICY,
    ANNOTATION_LAST_APPLIED,
    ANNOTATION_ORIGIN_NAME,
    ANNOTATION_ORIGIN_NAMESPACE,
    CONDITION_API_BOUND,
    FINALIZER,
    LABEL_ADOPTED,
    LABEL_CONSUMER_CLUSTER,
    LABEL_CONSUMER_NAME,
    LABEL_CONSUMER_NAMESPACE,
    LABEL_CONSUMER_UID,
    MANAGED_LABEL,
    Condition,
    InvalidInputError,
    Obj,
    canonical_hash,
    find_condition,
    is_subset,
    label_value,
    metadata,
    object_conditions,
    require_object,
    require_str,
    set_condition,
    status_conditions,
    string_map,
)
from functions.common.api import CONDITION_CONNECTION_SECRET
from functions.common.objects import copy_json, status_copy
from functions.common.placement import PLACEMENT_DEFAULT, check_placement, provider_namespace
from functions.object_syncer.generations import as_int, consumer_terms
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult

REASON_BOUND = "Bound"
REASON_PENDING = "Pending"
REASON_SYNCING = "Syncing"
REASON_CONFLICT = "Conflict"
REASON_DELETING = "Deleting"
REASON_ADOPTING = "Adopting"
REASON_RECREATING = "Recreating"

#: The deletion policy that keeps the twin when its consumer object is deleted.
ORPHAN = "Orphan"

#: What :func:`orphan_verdict` says of a twin whose consumer object no longer exists.
ORPHAN_COLLECT = "Collect"
ORPHAN_KEEP = "KeepOrphan"
ORPHAN_NOT_OURS = "NotOurs"
ORPHAN_NO_ORIGIN = "NoOrigin"
ORPHAN_DELETING = "Deleting"

#: Conditions the connector owns on a consumer object (the twin's status never sets them),
#: in the order they are kept.
_CONNECTOR_CONDITIONS = (CONDITION_API_BOUND, CONDITION_CONNECTION_SECRET)

#: Fields of an object that are not content the consumer owns.
_NOT_CONTENT = frozenset({"apiVersion", "kind", "metadata", "status"})
#: Consumer annotations that are not copied: kubectl's record of the consumer-side apply, and
#: the connector's own bookkeeping. The deletion policy *is* copied: once the consumer object
#: is gone, the twin is the only place left that remembers an Orphan choice.
_NOT_COPIED_ANNOTATIONS = frozenset(
    {
        ANNOTATION_LAST_APPLIED,
        ANNOTATION_APPLIED_HASH,
        ANNOTATION_CONSUMER_GENERATION,
    }
)


def sync(req: SyncRequest) -> SyncResult:  # noqa: PLR0911 - a decision table; each verdict returns
    """Decide what to apply to the provider and write back to the consumer for one object."""
    consumer_cluster = require_str(req.consumer_cluster, "consumer_cluster")
    consumer = require_object(req.consumer, "consumer")
    placement = check_placement(req.placement)
    twin = _checked_twin(req.provider, consumer, consumer_cluster, placement)
    meta = metadata(consumer)
    deleting = bool(meta.get("deletionTimestamp"))
    has_finalizer = FINALIZER in (meta.get("finalizers") or [])

    conflict = _conflict(twin, consumer, consumer_cluster, req.adoption)
    adopting = conflict is not None and not deleting and _adoptable(twin, req.adoption) is None
    if adopting:
        # Ours from now on. Until the twin is written there is no status of ours: keep the
        # consumer's, as for a twin being created.
        status = _with_api_bound(
            status_copy(consumer),
            consumer,
            "False",
            REASON_ADOPTING,
            "Adopting the object another connector created in the provider",
            req.now,
        )
        return SyncResult(
            provider_apply=desired_twin(
                consumer, consumer_cluster=consumer_cluster, adopted=True, placement=placement
            ),
            consumer_status=_if_changed(status, consumer),
            add_finalizer=not has_finalizer,
            adopted=True,
        )
    if conflict is not None:
        if deleting:
            # The twin is not ours to delete; let the consumer object go.
            return SyncResult(conflict=conflict, remove_finalizer=has_finalizer)
        # The twin's status is someone else's: keep the consumer's status, mark the conflict.
        status = _with_api_bound(
            status_copy(consumer), consumer, "False", REASON_CONFLICT, conflict, req.now
        )
        return SyncResult(conflict=conflict, consumer_status=_if_changed(status, consumer))

    if deleting:
        if twin is None:
            return SyncResult(remove_finalizer=has_finalizer)
        if orphaned(consumer):
            if orphaned(twin) or metadata(twin).get("deletionTimestamp"):
                return SyncResult(remove_finalizer=has_finalizer)
            # The twin must carry the Orphan choice before the object goes: the collector of
            # orphaned twins reads it there once the consumer object is gone.
            return SyncResult(
                provider_apply=desired_twin(
                    consumer, consumer_cluster=consumer_cluster, placement=placement
                )
            )
        if not metadata(twin).get("deletionTimestamp"):
            # Ask once. The status waits for the next pass, which sees what the twin's
            # deletion waits for; a twin that goes at once needs no word, only the release.
            return SyncResult(provider_delete=True)
        # Keep the finalizer until the twin is gone, and its status flowing meanwhile.
        status = _with_api_bound(
            consumer_terms(twin, consumer),
            consumer,
            "True",
            REASON_DELETING,
            _deletion_message(twin),
            req.now,
        )
        return SyncResult(consumer_status=_if_changed(status, consumer))

    adopted = twin is not None and string_map(twin, "labels").get(LABEL_ADOPTED) == "true"
    desired = desired_twin(
        consumer, consumer_cluster=consumer_cluster, adopted=adopted, placement=placement
    )
    add_finalizer = not has_finalizer
    if twin is None:
        # Until the twin exists there is no provider status: keep what the consumer has.
        status = _with_api_bound(
            status_copy(consumer),
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

    if metadata(twin).get("deletionTimestamp"):
        # Written, it would say Bound for an object about to vanish. Its DELETED event
        # brings this object back, and the twin is created anew.
        status = _with_api_bound(
            status_copy(consumer),
            consumer,
            "False",
            REASON_RECREATING,
            f"{_deletion_message(twin)}; it is created again once that one is gone",
            req.now,
        )
        return SyncResult(
            consumer_status=_if_changed(status, consumer), add_finalizer=add_finalizer
        )

    # A subset, not equality: the provider's defaulting and controllers add fields of their
    # own. The applied-hash annotation is part of ``desired``, so a field the consumer
    # removed changes the hash and is noticed too. A twin left by an earlier consumer object
    # of the same cluster, namespace and name (deleted with the Orphan policy, or while the
    # connector was down, then recreated) carries the old uid label: it differs, and is
    # adopted by applying the new uid, rather than stuck as a conflict only a provider admin
    # could resolve.
    in_sync = is_subset(desired, twin)
    provider_status = consumer_terms(twin, consumer)
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


def orphaned(obj: Obj) -> bool:
    """Whether ``obj`` carries the deletion policy Orphan."""
    return string_map(obj, "annotations").get(ANNOTATION_DELETION_POLICY) == ORPHAN


def orphan_verdict(twin: Obj, *, consumer_cluster: str, placement: str = PLACEMENT_DEFAULT) -> str:
    """What to do with a provider object whose consumer object no longer exists.

    The caller has established that the consumer object is gone (a live read of its name);
    this decides from the twin alone, since nothing else is left:

    - ``ORPHAN_NOT_OURS``: not labelled managed by this consumer cluster; never touched;
    - ``ORPHAN_NO_ORIGIN``: no consumer uid label, or origin labels and annotations that do
      not name this very object (origin name is the twin's own, and the origin namespace
      maps to the twin's under ``placement``): nothing says which consumer object it stood
      for, so it is never touched;
    - ``ORPHAN_DELETING``: already being deleted; nothing to do;
    - ``ORPHAN_KEEP``: its consumer object asked for the Orphan deletion policy (copied to
      the twin); kept;
    - ``ORPHAN_COLLECT``: delete it.
    """
    twin = require_object(twin, "twin")
    cluster = require_str(consumer_cluster, "consumer_cluster")
    placement = check_placement(placement)
    labels = string_map(twin, "labels")
    if labels.get(MANAGED_LABEL) != "true" or labels.get(LABEL_CONSUMER_CLUSTER) != label_value(
        cluster
    ):
        return ORPHAN_NOT_OURS
    meta = metadata(twin)
    annotations = string_map(twin, "annotations")
    name, namespace = str(meta["name"]), str(meta.get("namespace") or "")
    named = annotations.get(ANNOTATION_ORIGIN_NAME, "") == name or (
        ANNOTATION_ORIGIN_NAME not in annotations
        and labels.get(LABEL_CONSUMER_NAME) == label_value(name)
    )
    if namespace and placement != PLACEMENT_DEFAULT:
        # The origin namespace must map to where the twin is; only the annotation carries it
        # in full (a label may be hashed).
        origin = annotations.get(ANNOTATION_ORIGIN_NAMESPACE, "")
        placed = bool(origin) and provider_namespace(cluster, origin, placement) == namespace
    elif namespace:
        placed = annotations.get(ANNOTATION_ORIGIN_NAMESPACE, "") == namespace or (
            ANNOTATION_ORIGIN_NAMESPACE not in annotations
            and labels.get(LABEL_CONSUMER_NAMESPACE) == label_value(namespace)
        )
    else:
        placed = LABEL_CONSUMER_NAMESPACE not in labels
    if not labels.get(LABEL_CONSUMER_UID) or not named or not placed:
        return ORPHAN_NO_ORIGIN
    if meta.get("deletionTimestamp"):
        return ORPHAN_DELETING
    if orphaned(twin):
        return ORPHAN_KEEP
    return ORPHAN_COLLECT


def desired_twin(
    consumer: Obj,
    *,
    consumer_cluster: str,
    adopted: bool = False,
    placement: str = PLACEMENT_DEFAULT,
) -> Obj:
    """The provider twin of a (checked) consumer object, labelled with where it comes from
    (and, if it was adopted from another connector, with ``connect.upbound.io/adopted``),
    in the provider namespace ``placement`` maps the object's namespace to."""
    meta = metadata(consumer)
    namespace = meta.get("namespace")
    labels = string_map(consumer, "labels")
    labels[MANAGED_LABEL] = "true"
    if adopted:
        labels[LABEL_ADOPTED] = "true"
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
    generation = as_int(meta.get("generation"))
    if generation is not None:
        annotations[ANNOTATION_CONSUMER_GENERATION] = str(generation)

    twin_meta: dict[str, Any] = {"name": meta["name"]}
    if namespace:
        twin_meta["namespace"] = provider_namespace(consumer_cluster, namespace, placement)
    twin_meta["labels"] = labels
    twin_meta["annotations"] = annotations
    twin: Obj = {"apiVersion": consumer["apiVersion"], "kind": consumer["kind"]}
    twin["metadata"] = twin_meta
    for key, value in consumer.items():
        if key not in _NOT_CONTENT:
            twin[key] = copy_json(value)
    annotations[ANNOTATION_APPLIED_HASH] = canonical_hash(twin)
    return twin


def _checked_twin(
    provider: Obj | None, consumer: Obj, consumer_cluster: str, placement: str
) -> Obj | None:
    if provider is None:
        return None
    twin = require_object(provider, "provider")
    for key in ("apiVersion", "kind"):
        if twin[key] != consumer[key]:
            raise InvalidInputError(f"provider.{key}", f"must be the consumer's {consumer[key]}")
    name = metadata(consumer)["name"]
    if metadata(twin)["name"] != name:
        raise InvalidInputError("provider.metadata.name", f"must be the consumer's {name}")
    namespace = metadata(consumer).get("namespace") or None
    if namespace is not None:
        namespace = provider_namespace(consumer_cluster, namespace, placement)
    if (metadata(twin).get("namespace") or None) != namespace:
        raise InvalidInputError(
            "provider.metadata.namespace",
            f"must be {namespace}, where the {placement} placement puts the consumer's",
        )
    return twin


def _conflict(
    twin: Obj | None, consumer: Obj, consumer_cluster: str, adoption: Adoption | None
) -> str | None:
    """Why the twin is not ours, or None if it is ours (or missing)."""
    if twin is None:
        return None
    owner = string_map(twin, "labels").get(LABEL_CONSUMER_CLUSTER)
    if owner == label_value(consumer_cluster):
        return None
    meta = metadata(consumer)
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    what = f"{consumer['kind']} {where} already exists in the provider and"
    if owner is not None:
        return f"{what} belongs to consumer cluster {owner}; it is left untouched"
    why_not = _adoptable(twin, adoption)
    if string_map(twin, "labels").get(MANAGED_LABEL) != "true":
        return f"{what} is not managed by any consumer cluster; it is left untouched"
    return (
        f"{what} was created by another connector ({MANAGED_LABEL}=true, no consumer "
        f"cluster's origin labels); it is left untouched{why_not or ''}"
    )


def _adoptable(twin: Obj | None, adoption: Adoption | None) -> str | None:
    """None if ``twin`` may be adopted under ``adoption``; else the end of a sentence saying
    why not (the module doc lists the rules)."""
    if twin is None:
        return ": there is nothing to adopt"
    if adoption is None:
        return (
            " unless its ClusterConnection opts in to adopting it "
            "(spec.adoption.policy: AdoptManaged)"
        )
    labels = string_map(twin, "labels")
    if labels.get(MANAGED_LABEL) != "true" or LABEL_CONSUMER_CLUSTER in labels:
        return ": only an object another connector created, which no consumer claims, is adopted"
    missing = sorted(k for k, v in adoption.match_labels.items() if labels.get(k) != v)
    if missing:
        return (
            f", since it lacks the labels spec.adoption.matchLabels asks for: {', '.join(missing)}"
        )
    if metadata(twin).get("deletionTimestamp"):
        return ", since it is being deleted"
    return None


def _deletion_message(twin: Obj) -> str:
    """What the deletion of a terminating twin waits for, as far as the twin tells."""
    meta = metadata(twin)
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    message = f"Waiting for the provider object {where} to be deleted"
    finalizers = [str(f) for f in meta.get("finalizers") or []]
    if finalizers:
        message += f"; its finalizers: {', '.join(finalizers)}"
    spec = twin.get("spec")
    if isinstance(spec, dict) and spec.get("compositeDeletePolicy") == "Foreground":
        # A Crossplane claim: Foreground deletes its composite resource (and what that
        # composed) before the claim goes.
        ref = spec.get("resourceRef")
        if isinstance(ref, dict) and ref.get("name"):
            xr = f"{ref.get('kind') or 'composite resource'} {ref['name']}"
            message += (
                f"; compositeDeletePolicy is Foreground: Crossplane deletes {xr} and the "
                "resources it composed first"
            )
    return message


def _with_api_bound(
    status: dict[str, Any],
    consumer: Obj,
    condition_status: str,
    reason: str,
    message: str,
    now: str,
) -> dict[str, Any]:
    """``status`` with our APIBound condition; its transition time is the consumer's."""
    others = [
        c
        for c in status_conditions(status)
        if isinstance(c, dict) and c.get("type") not in _CONNECTOR_CONDITIONS
    ]
    current = object_conditions(consumer)
    # The connector's own conditions are the consumer's: APIBound (its transition time)
    # and ConnectionSecretSynced, which the connection-Secret step sets (connection_secret).
    ours: list[Condition] = [
        c for c in (find_condition(current, t) for t in _CONNECTOR_CONDITIONS) if c is not None
    ]
    generation = metadata(consumer).get("generation")
    status["conditions"] = set_condition(
        others + ours,
        type_=CONDITION_API_BOUND,
        status=condition_status,
        reason=reason,
        message=message,
        now=now,
        observed_generation=generation if isinstance(generation, int) else None,
    )
    return status


def _if_changed(status: dict[str, Any], consumer: Obj) -> Obj | None:
    return None if status == status_copy(consumer) else status
