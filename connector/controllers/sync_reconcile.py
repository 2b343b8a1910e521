"""Reconcile one bound consumer object with its provider twin, through the object-syncer.

The stage decides; this module applies its effects in a fixed order, each only when asked:

1. add the finalizer to the consumer object (so that its deletion waits for the twin);
2. make sure the twin's namespace exists in the provider;
3. write the twin (:func:`write_twin`) — and stop there: the consumer's status is written
   by the next pass, which the reconcile asks for at once;
4. delete the twin;
5. write the consumer's status subresource;
6. remove the finalizer (the consumer object may then disappear).

Why a twin write ends the pass: the status the stage computed before the write says
"creating/updating the object in the provider", and the next pass, which sees the twin as
written (``get_twin`` returns what the write returned before the provider's watch does),
gives the outcome: one status write per change, not two. And the next pass queues behind
the keys already waiting, so under a burst (thousands of new objects at once) every twin
reaches the provider before the connector spends its consumer requests on status: spec
first, status right after.

How a twin is written (:func:`write_twin`): a twin missing from the cache is created with
one POST, which fails with AlreadyExists rather than overwrite an object of the same name
that belongs to another consumer or to nobody: that object is then read, and the next pass
reports it as a Conflict (or, if it is ours after all, updates it). One request per new
object, and no window between a check and the write. Every later write is a server-side
apply; before the first one, the fields the create set are handed over to it
(``ownership``), so that an apply removes what the consumer dropped.

A twin the provider rejects (``connector.kube.errors.is_rejection``: validation, or the
denial of an admission policy or webhook) becomes ``APIBound=False`` with reason
``ProviderRejected`` and the server's message, a Warning Event, and a rate-limited retry.
A conflict (the twin belongs to another consumer or to nobody) is reported by the stage in
the status; this module adds the Warning Event.

Adoption. With the connection's opt-in (``adoption``), the stage may answer that a twin
another connector created is adopted (``SyncResult.adopted``). Before the apply that labels
it as ours, the fields that connector owns are handed to our field manager
(``take_over_twin``), so that our applies own them alone; then the adoption is reported: a
log line naming the field managers taken over from, a Normal Event ``Adopted`` on the
consumer object, and the adoption counter (``adopted``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from connector.controllers import ownership
from connector.kube.errors import ConflictError, is_rejection
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.common import CONDITION_API_BOUND, FINALIZER, find_condition, set_condition
from functions.common.api import FIELD_MANAGER
from functions.common.objects import Obj
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult

log = structlog.get_logger(__name__)

#: How soon a deleted consumer object whose twin is not gone yet is looked at again.
TWIN_GONE_RECHECK = 2.0


@dataclass(frozen=True, kw_only=True)
class SyncDeps:
    consumer_cluster: str
    #: The consumer object from the cache, or None.
    get_consumer: Callable[[ObjectKey], Obj | None]
    #: The twin as last seen: the cache, or newer (our own write's answer, a live read).
    get_twin: Callable[[ObjectKey], Obj | None]
    sync: Callable[[SyncRequest], SyncResult]
    add_finalizer: Callable[[Obj], None]
    ensure_provider_namespace: Callable[[str], None]
    #: Creates the twin with one POST; returns it as written. Raises ConflictError
    #: (AlreadyExists) if an object of that name exists: a create never overwrites.
    create_twin: Callable[[Obj], Obj]
    #: Reads the twin live, remembering it for the next pass; raises NotFoundError if gone.
    read_twin: Callable[[ObjectKey], Obj]
    #: Hands the twin's fields that our create set over to our server-side apply
    #: (``ownership.hand_over``), given the twin as last seen.
    hand_over_ownership: Callable[[ObjectKey, Obj], None]
    #: Server-side applies the twin; returns it as written.
    apply_twin: Callable[[Obj], Obj]
    delete_twin: Callable[[ObjectKey], None]
    write_consumer_status: Callable[[Obj, Obj], None]
    remove_finalizer: Callable[[Obj], None]
    #: A Warning Event on the consumer object (deduplicated by the recorder).
    warn: Callable[[Obj, str, str], None]
    now: Callable[[], str]
    #: Tells the user that an earlier warning no longer applies (a Normal Event).
    resolved: Callable[[Obj, str, str], None] = lambda _obj, _reason, _message: None
    #: The connection's adoption opt-in as it is now (read at every reconcile).
    adoption: Callable[[], Adoption | None] = lambda: None
    #: Hands the fields the connector that created a twin owns over to our server-side
    #: apply (``ownership.take_over``), given the wanted twin; returns those field managers.
    take_over_twin: Callable[[ObjectKey, Obj], list[str]] = lambda _key, _wanted: []
    #: Reports an adopted twin: a Normal Event on the consumer object, and the counter.
    adopted: Callable[[Obj, str], None] = lambda _obj, _message: None


def write_twin(key: ObjectKey, wanted: Obj, twin: Obj | None, deps: SyncDeps) -> Obj | None:
    """Create or apply the twin (module doc); the twin as written, or None if a create
    found an object of that name, which is then read for the next pass."""
    if twin is None:
        try:
            return deps.create_twin(wanted)
        except ConflictError as exc:
            if exc.reason != "AlreadyExists":
                raise
        # NotFound here (deleted again meanwhile) fails the reconcile: it is retried.
        deps.read_twin(key)
        log.debug("The twin to create exists already; looking at it.", object=str(key))
        return None
    if ownership.needs_upgrade(twin, FIELD_MANAGER):
        deps.hand_over_ownership(key, twin)
    return deps.apply_twin(wanted)


def reconcile_object(key: ObjectKey, deps: SyncDeps) -> Result:
    consumer = deps.get_consumer(key)
    if consumer is None:
        # Gone: the finalizer guaranteed that its deletion was handled while it existed.
        return Result()
    twin = deps.get_twin(key)
    result = deps.sync(
        SyncRequest(
            consumer=consumer,
            provider=twin,
            consumer_cluster=deps.consumer_cluster,
            now=deps.now(),
            adoption=deps.adoption(),
        )
    )
    bound = log.bind(
        object=str(key), kind=consumer.get("kind"), consumer_cluster=deps.consumer_cluster
    )

    if result.add_finalizer:
        deps.add_finalizer(consumer)
    if result.provider_apply is not None:
        namespace = result.provider_apply.get("metadata", {}).get("namespace")
        taken_from: list[str] = []
        try:
            if namespace:
                deps.ensure_provider_namespace(str(namespace))
            if result.adopted:
                taken_from = deps.take_over_twin(key, result.provider_apply)
            written = write_twin(key, result.provider_apply, twin, deps)
        except Exception as exc:
            if not is_rejection(exc):
                raise
            message = f"The provider rejected the object: {exc}"
            bound.warning("The provider rejected the object.", error=str(exc))
            deps.warn(consumer, "ProviderRejected", message)
            _write_status(consumer, _rejected_status(consumer, result, message, deps.now()), deps)
            return Result(requeue=True)
        if result.adopted:
            _report_adoption(consumer, taken_from, deps)
            bound.info(
                "Adopted a provider object another connector created.",
                field_managers=taken_from,
            )
        if written is None or _resource_version(written) != _resource_version(twin):
            bound.debug("Wrote the provider twin.")
            # The next pass writes the status for the twin as written (module doc).
            return Result(requeue_after=0.0)
        # The write changed nothing: the provider keeps the twin different from what we
        # apply (a mutating webhook, say). Another pass would only write again; report
        # Syncing instead, and look again when either side changes.
        bound.debug("The provider twin did not change when written.")
    if result.provider_delete:
        deps.delete_twin(key)
        bound.info("Deleted the provider twin, since the consumer object is being deleted.")
    if result.conflict is not None:
        deps.warn(consumer, "Conflict", result.conflict)
    status = result.consumer_status
    if status is not None:
        _write_status(consumer, status, deps)
    api_bound = find_condition(
        (status or consumer.get("status") or {}).get("conditions"), CONDITION_API_BOUND
    )
    if result.conflict is None and api_bound is not None and api_bound.get("status") == "True":
        deps.resolved(consumer, str(api_bound.get("reason")), str(api_bound.get("message")))
    if result.remove_finalizer:
        deps.remove_finalizer(consumer)
        bound.info("Released the consumer object, since its provider twin is gone.")
        return Result()
    meta = consumer.get("metadata", {})
    if meta.get("deletionTimestamp") and FINALIZER in (meta.get("finalizers") or []):
        # Still waiting for the twin to go: look again rather than rely on its DELETED event
        # alone, which never comes for a twin the provider cache did not hold (read live
        # before that cache's first list, e.g. right after a provider outage).
        return Result(requeue_after=TWIN_GONE_RECHECK)
    return Result()


def _report_adoption(consumer: Obj, taken_from: list[str], deps: SyncDeps) -> None:
    whose = (
        f"its fields are taken over from {', '.join(taken_from)}"
        if taken_from
        else "no other field manager owned its fields"
    )
    deps.adopted(
        consumer,
        f"Adopted the object another connector created in the provider; {whose}.",
    )


def _resource_version(obj: Obj | None) -> object:
    return (obj or {}).get("metadata", {}).get("resourceVersion")


def _write_status(consumer: Obj, status: Obj, deps: SyncDeps) -> None:
    if status != (consumer.get("status") or {}):
        deps.write_consumer_status(consumer, status)


def _rejected_status(consumer: Obj, result: SyncResult, message: str, now: str) -> dict[str, Any]:
    base = copy.deepcopy(result.consumer_status or consumer.get("status") or {})
    base["conditions"] = set_condition(
        base.get("conditions"),
        type_=CONDITION_API_BOUND,
        status="False",
        reason="ProviderRejected",
        message=message,
        now=now,
        observed_generation=consumer.get("metadata", {}).get("generation"),
    )
    return dict(base)
