"""Reconcile one bound consumer object with its provider twin, through the object-syncer.

The stage decides; this module applies its effects in a fixed order, each only when asked:

1. add the finalizer to the consumer object (so that its deletion waits for the twin);
2. make sure the twin's namespace exists in the provider;
3. server-side apply the twin;
4. delete the twin;
5. write the consumer's status subresource;
6. remove the finalizer (the consumer object may then disappear).

A twin the provider rejects (HTTP 422, or an admission webhook's denial) becomes
``APIBound=False`` with reason ``ProviderRejected`` and the server's message, a Warning
Event, and a rate-limited retry. A conflict (the twin belongs to another consumer or to
nobody) is reported by the stage in the status; this module adds the Warning Event.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from connector.kube.errors import BadRequestError, ForbiddenError, InvalidError
from connector.kube.workqueue import Result
from functions.common import FINALIZER, find_condition, set_condition
from functions.common.objects import Obj
from functions.object_syncer.types import SyncRequest, SyncResult

log = structlog.get_logger(__name__)

APIBOUND = "APIBound"
#: How soon a deleted consumer object whose twin is not gone yet is looked at again.
TWIN_GONE_RECHECK = 2.0


@dataclass(frozen=True, order=True)
class ObjectKey:
    namespace: str  # "" for a cluster-scoped object
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, kw_only=True)
class SyncDeps:
    consumer_cluster: str
    #: The consumer object from the cache, or None.
    get_consumer: Callable[[ObjectKey], Obj | None]
    #: The twin: from the cache, else read live (a twin without our labels is not cached).
    get_twin: Callable[[ObjectKey], Obj | None]
    sync: Callable[[SyncRequest], SyncResult]
    add_finalizer: Callable[[Obj], None]
    ensure_provider_namespace: Callable[[str], None]
    #: Returns the twin as the provider now has it (or None if unknown).
    apply_twin: Callable[[Obj], Obj | None]
    delete_twin: Callable[[ObjectKey], None]
    write_consumer_status: Callable[[Obj, Obj], None]
    remove_finalizer: Callable[[Obj], None]
    #: A Warning Event on the consumer object (deduplicated by the recorder).
    warn: Callable[[Obj, str, str], None]
    now: Callable[[], str]
    #: Tells the user that an earlier warning no longer applies (a Normal Event).
    resolved: Callable[[Obj, str, str], None] = lambda _obj, _reason, _message: None


def is_rejection(exc: Exception) -> bool:
    """Whether the provider refused the twin itself (validation or admission)."""
    if isinstance(exc, InvalidError):
        return True
    text = str(exc).lower()
    return isinstance(exc, ForbiddenError | BadRequestError) and (
        "admission" in text or "denied the request" in text
    )


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
        )
    )
    bound = log.bind(
        object=str(key), kind=consumer.get("kind"), consumer_cluster=deps.consumer_cluster
    )

    if result.add_finalizer:
        deps.add_finalizer(consumer)
    if result.provider_apply is not None:
        namespace = result.provider_apply.get("metadata", {}).get("namespace")
        try:
            if namespace:
                deps.ensure_provider_namespace(str(namespace))
            applied = deps.apply_twin(result.provider_apply)
        except Exception as exc:
            if not is_rejection(exc):
                raise
            message = f"The provider rejected the object: {exc}"
            bound.warning("The provider rejected the object.", error=str(exc))
            deps.warn(consumer, "ProviderRejected", message)
            _write_status(consumer, _rejected_status(consumer, result, message, deps.now()), deps)
            return Result(requeue=True)
        bound.debug("Applied the provider twin.")
        if applied is not None:
            result = _after_apply(consumer, applied, result, deps)
    if result.provider_delete:
        deps.delete_twin(key)
        bound.info("Deleted the provider twin, since the consumer object is being deleted.")
    if result.conflict is not None:
        deps.warn(consumer, "Conflict", result.conflict)
    status = result.consumer_status
    if status is not None:
        _write_status(consumer, status, deps)
    api_bound = find_condition((status or consumer.get("status") or {}).get("conditions"), APIBOUND)
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


def _after_apply(consumer: Obj, applied: Obj, result: SyncResult, deps: SyncDeps) -> SyncResult:
    """``result`` with the consumer status the stage gives for the twin as just applied.

    The status computed before the apply says "creating/updating the object in the
    provider"; written as such, it would be overwritten by APIBound=True as soon as the
    twin's watch event arrives: two consumer writes per change, which at 20 changes/s
    exceed the consumer client's QPS limit (bench/sync_latency.py). Asking the stage again
    (microseconds in-process) writes only the outcome.
    """
    after = deps.sync(
        SyncRequest(
            consumer=consumer,
            provider=applied,
            consumer_cluster=deps.consumer_cluster,
            now=deps.now(),
        )
    )
    if after.provider_apply is not None or after.conflict is not None or after.provider_delete:
        return result  # not settled by this apply: keep the stage's first answer
    return replace(result, consumer_status=after.consumer_status)


def _write_status(consumer: Obj, status: Obj, deps: SyncDeps) -> None:
    if status != (consumer.get("status") or {}):
        deps.write_consumer_status(consumer, status)


def _rejected_status(consumer: Obj, result: SyncResult, message: str, now: str) -> dict[str, Any]:
    base = copy.deepcopy(result.consumer_status or consumer.get("status") or {})
    base["conditions"] = set_condition(
        base.get("conditions"),
        type_=APIBOUND,
        status="False",
        reason="ProviderRejected",
        message=message,
        now=now,
        observed_generation=consumer.get("metadata", {}).get("generation"),
    )
    return dict(base)
