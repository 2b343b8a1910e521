"""Reconcile one bound consumer object with its provider twin, through the object-syncer.

The stage decides; this module applies its effects in a fixed order, each only when asked:

1. write the twin (:func:`write_twin`), after making sure its namespace exists in the
   provider; at the same time, add the finalizer to the consumer object (below) — and stop
   there: the consumer's status is written by the next pass, which the reconcile asks for
   at once;
2. delete the twin;
3. bring the object's connection Secret in line (``connection_secret``, when given:
   ``connection_secret_reconcile``), and merge its ``ConnectionSecretSynced`` verdict into
   the status;
4. write the consumer's status subresource;
5. remove the finalizer (the consumer object may then disappear); a deleted object's
   connection Secret went in step 3.

A consumer object that is gone is handed to the collector of orphaned twins
(``gc_reconcile``): its twin, if any, is deleted unless the object asked for Orphan.

Why the finalizer and the twin are written at the same time: a new object reaches the
provider after one request instead of two in a row. The finalizer makes the object's
deletion wait for its twin; if the object is deleted before the finalizer lands (or the
connector dies in between), the twin is left without an object, and the collector deletes
it: nothing leaks, and nothing waits for the finalizer.

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

A twin write (or delete) the provider refuses is reported where the user looks
(:func:`write_failure`): ``APIBound=False`` with a reason for the kind of failure
(``ProviderRejected`` for validation and admission, ``ProviderForbidden``,
``ProviderNamespaceTerminating``, ``ProviderUnreachable``, ...; docs/operate.md has the
table) and the server's message, a Warning Event per distinct problem, one log line per
change, and a retry with backoff; the recovery gets a Normal Event and a log line. Only a
write refused for being based on a stale read, and the twin vanishing meanwhile, are
retried without a word: the next attempt settles them.
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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from connector.controllers import ownership
from connector.controllers.gc_reconcile import CollectDeps, collect_orphan
from connector.controllers.write_failures import (
    FAILURE_REASONS,
    REASON_FINALIZER_REFUSED,
    WriteFailure,
    finalizer_failure,
    status_failure,
    write_failure,
)
from connector.kube.errors import ConflictError
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.common import (
    CONDITION_API_BOUND,
    FINALIZER,
    Condition,
    find_condition,
    object_conditions,
    set_condition,
    status_conditions,
)
from functions.common.api import CONDITION_CONNECTION_SECRET, FIELD_MANAGER
from functions.common.objects import Obj, copy_json
from functions.common.placement import PLACEMENT_DEFAULT
from functions.object_syncer.connection_secret import Verdict
from functions.object_syncer.logic import REASON_CONFLICT
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult

log = structlog.get_logger(__name__)

#: How soon a deleted consumer object whose twin is not gone yet is looked at again.
TWIN_GONE_RECHECK = 2.0


def _finalizer_error(wait: Callable[[], None]) -> Exception | None:
    """Waits for the finalizer write; its error, if it failed."""
    try:
        wait()
    except Exception as exc:
        return exc
    return None


#: The Warnings (``SyncDeps.warn``) of the twin's sync and of its finalizer: what a return
#: to ``APIBound=True`` resolves, and nothing else of the object's
#: (``EventRecorder.resolved(of=...)``). A refused status write is resolved by the next
#: status write that lands (``SyncDeps.status_accepted``).
WARNING_REASONS = FAILURE_REASONS | {REASON_CONFLICT, REASON_FINALIZER_REFUSED}


def _nothing() -> None:
    return None


def run_now(work: Callable[[], None]) -> Callable[[], None]:
    """Runs ``work`` at once; the returned wait re-raises what it raised. The default of
    ``SyncDeps.in_background``: writes that could overlap are made one after the other."""
    try:
        work()
    except Exception as exc:
        error = exc

        def fail() -> None:
            raise error

        return fail
    return _nothing


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
    #: After each status write that lands: a Normal Event if the object has a
    #: ``StatusRefused`` Warning outstanding, else nothing.
    status_accepted: Callable[[Obj], None] = lambda _obj: None
    #: The connection's adoption opt-in as it is now (read at every reconcile).
    adoption: Callable[[], Adoption | None] = lambda: None
    #: Hands the fields the connector that created a twin owns over to our server-side
    #: apply (``ownership.take_over``), given the wanted twin; returns those field managers.
    take_over_twin: Callable[[ObjectKey, Obj], list[str]] = lambda _key, _wanted: []
    #: Reports an adopted twin: a Normal Event on the consumer object, and the counter.
    adopted: Callable[[Obj, str], None] = lambda _obj, _message: None
    #: Starts ``work`` (the finalizer write) alongside the reconcile, and returns a wait
    #: that re-raises its error.
    in_background: Callable[[Callable[[], None]], Callable[[], None]] = run_now
    #: The collector of orphaned twins (``gc_reconcile``); None: a gone object is left be.
    collect: CollectDeps | None = None
    #: The connection-Secret step (``connection_secret_reconcile``), given the object and
    #: its twin: returns the ``ConnectionSecretSynced`` condition to set (None: remove it).
    connection_secret: Callable[[Obj, Obj | None], Verdict | None] | None = None
    #: The connection's placement of twins (``functions.common.placement``).
    placement: str = PLACEMENT_DEFAULT
    #: Makes the twin's provider namespace ready to read (the isolated placement creates it
    #: as the consumer's own and watches it); a failure is reported like a failed write.
    prepare_twin: Callable[[ObjectKey], None] = lambda _key: None


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


def reconcile_object(  # noqa: PLR0911, PLR0912, PLR0915 - the pass's steps in order; each return is an outcome (module doc)
    key: ObjectKey, deps: SyncDeps
) -> Result:
    consumer = deps.get_consumer(key)
    if consumer is None:
        # Gone. With the finalizer in place, its deletion was handled while it existed; if
        # it went without (module doc), its twin is an orphan.
        return Result() if deps.collect is None else collect_orphan(key, deps.collect)
    try:
        deps.prepare_twin(key)
    except Exception as exc:
        failure = write_failure(exc, action="create")
        if failure is None:
            raise
        return _report_failure(key, consumer, SyncResult(), failure, exc, deps)
    twin = deps.get_twin(key)
    result = deps.sync(
        SyncRequest(
            consumer=consumer,
            provider=twin,
            consumer_cluster=deps.consumer_cluster,
            now=deps.now(),
            adoption=deps.adoption(),
            placement=deps.placement,
        )
    )
    bound = log.bind(
        object=str(key), kind=consumer.get("kind"), consumer_cluster=deps.consumer_cluster
    )

    # The finalizer is written alongside the twin (module doc). Its wait comes before
    # anything else reads or writes the consumer object, which the write updates in place.
    finalizer = (
        deps.in_background(lambda: deps.add_finalizer(consumer))
        if result.add_finalizer
        else _nothing
    )
    if result.provider_apply is None:
        refused = _finalizer_error(finalizer)
        if refused is not None:
            return _report_refused_finalizer(key, consumer, result, refused, deps)
    else:
        namespace = result.provider_apply.get("metadata", {}).get("namespace")
        taken_from: list[str] = []
        try:
            if namespace:
                deps.ensure_provider_namespace(str(namespace))
            if result.adopted:
                taken_from = deps.take_over_twin(key, result.provider_apply)
            written = write_twin(key, result.provider_apply, twin, deps)
        except Exception as exc:
            # The twin's failure is the one to report (the retry writes the finalizer too),
            # unless the finalizer write found the object changed: a status written now
            # would be refused as stale too, so the pass fails and is retried.
            refused = _finalizer_error(finalizer)
            if refused is not None and finalizer_failure(refused) is None:
                raise refused from exc
            failure = write_failure(exc, action="create" if twin is None else "update")
            if failure is None:
                raise
            return _report_failure(key, consumer, result, failure, exc, deps)
        refused = _finalizer_error(finalizer)
        if refused is not None:
            return _report_refused_finalizer(key, consumer, result, refused, deps)
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
        try:
            deps.delete_twin(key)
        except Exception as exc:
            failure = write_failure(exc, action="delete")
            if failure is None:
                raise
            return _report_failure(key, consumer, result, failure, exc, deps)
        bound.info("Deleted the provider twin, since the consumer object is being deleted.")
    if result.conflict is not None:
        deps.warn(consumer, REASON_CONFLICT, result.conflict)
    status = result.consumer_status
    if deps.connection_secret is not None:
        verdict = deps.connection_secret(consumer, twin)
        status = _with_secret_condition(consumer, status, verdict, deps.now())
    if status is not None:
        _write_status(consumer, status, deps)
    api_bound = find_condition(
        status_conditions(status) if status is not None else object_conditions(consumer),
        CONDITION_API_BOUND,
    )
    if result.conflict is None and api_bound is not None and api_bound.get("status") == "True":
        before = _api_bound_of(consumer)
        if before is not None and before.get("reason") in FAILURE_REASONS:
            bound.info("The provider accepts the object again.", after=before.get("reason"))
        elif before is not None and before.get("reason") == REASON_FINALIZER_REFUSED:
            bound.info("The consumer cluster accepts the finalizer again.")
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


def _report_failure(
    key: ObjectKey,
    consumer: Obj,
    result: SyncResult,
    failure: WriteFailure,
    error: BaseException,
    deps: SyncDeps,
    *,
    failed: str = "Writing the provider twin failed",
) -> Result:
    """``APIBound=False`` with the failure, a Warning Event (the recorder sends one per
    distinct problem), a log line when the problem changed, and a retry with backoff."""
    bound = log.bind(object=str(key), consumer_cluster=deps.consumer_cluster)
    before = _api_bound_of(consumer)
    if before is None or (before.get("reason"), before.get("message")) != (
        failure.reason,
        failure.message,
    ):
        bound.warning(f"{failed}; retrying with backoff.", reason=failure.reason, error=str(error))
    else:
        bound.debug(f"{failed} again.", reason=failure.reason)
    deps.warn(consumer, failure.reason, failure.message)
    _write_status(consumer, _failed_status(consumer, result, failure, deps.now()), deps)
    return Result(requeue=True)


def _with_secret_condition(
    consumer: Obj, status: Obj | None, verdict: Verdict | None, now: str
) -> Obj | None:
    """``status`` (the consumer's own if None) with the connection-Secret verdict; None if
    that leaves the consumer's status as it is."""
    current = consumer.get("status") or {}
    source = status if status is not None else current
    conditions = status_conditions(source)
    if verdict is None and find_condition(conditions, CONDITION_CONNECTION_SECRET) is None:
        return status  # most objects, every pass: nothing to copy
    base = copy_json(source)
    conditions = status_conditions(base)
    if verdict is None:
        base["conditions"] = [
            c
            for c in conditions
            if not (isinstance(c, dict) and c.get("type") == CONDITION_CONNECTION_SECRET)
        ]
    else:
        base["conditions"] = set_condition(
            conditions,
            type_=CONDITION_CONNECTION_SECRET,
            status=verdict.status,
            reason=verdict.reason,
            message=verdict.message,
            now=now,
            observed_generation=consumer.get("metadata", {}).get("generation"),
        )
    return None if base == current else dict(base)


def _report_refused_finalizer(
    key: ObjectKey, consumer: Obj, result: SyncResult, error: Exception, deps: SyncDeps
) -> Result:
    """A refused finalizer is told like a refused twin write (:func:`_report_failure`);
    what the next attempt settles (a stale read) fails the pass, which is retried."""
    failure = finalizer_failure(error)
    if failure is None:
        raise error
    return _report_failure(
        key, consumer, result, failure, error, deps, failed="Adding the finalizer failed"
    )


def _api_bound_of(consumer: Obj) -> Condition | None:
    return find_condition(object_conditions(consumer), CONDITION_API_BOUND)


def _resource_version(obj: Obj | None) -> object:
    return (obj or {}).get("metadata", {}).get("resourceVersion")


def _write_status(consumer: Obj, status: Obj, deps: SyncDeps) -> None:
    if status == (consumer.get("status") or {}):
        return
    try:
        deps.write_consumer_status(consumer, status)
    except Exception as exc:
        # No condition can say it (they are what was refused): an Event does; the pass
        # fails and is retried with backoff.
        failure = status_failure(exc)
        if failure is not None:
            deps.warn(consumer, failure.reason, failure.message)
        raise
    deps.status_accepted(consumer)


def _failed_status(
    consumer: Obj, result: SyncResult, failure: WriteFailure, now: str
) -> dict[str, Any]:
    base = copy_json(result.consumer_status or consumer.get("status") or {})
    base["conditions"] = set_condition(
        base.get("conditions"),
        type_=CONDITION_API_BOUND,
        status="False",
        reason=failure.reason,
        message=failure.message,
        now=now,
        observed_generation=consumer.get("metadata", {}).get("generation"),
    )
    return dict(base)
