"""The connection-Secret step of an object's reconcile (``sync_reconcile`` runs it).

The stage's :func:`~functions.object_syncer.connection_secret.plan` decides; this module
reads what it needs through the callables of :class:`SecretDeps` and makes the writes:

1. the provider Secret the twin names (a provider that refuses the read is a verdict,
   ``ProviderSecretForbidden``, not an error: the object keeps syncing; so is a consumer
   that refuses the connector its Secrets, ``ConsumerSecretForbidden``);
2. the consumer Secret of the wanted name, from the cache of the connector's own Secrets;
   a create that finds one anyway (someone else's, or ours not cached yet) reads it and
   decides again, so a Secret the connector did not write is never overwritten;
3. deletes the connector's Secrets of the object it no longer asks for (those written a
   moment ago included, which the cache may not hold yet), then writes.

It returns the verdict (the ``ConnectionSecretSynced`` condition to set, None to remove
it); a verdict that needs the user's attention also gets a Warning Event, and its recovery a
Normal one. Nothing here logs, reports or returns Secret data: messages name Secrets only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from connector.kube.errors import ConflictError, ForbiddenError, NotFoundError
from functions.common import find_condition, object_conditions
from functions.common.api import CONDITION_CONNECTION_SECRET
from functions.common.objects import Obj, metadata
from functions.object_syncer.connection_secret import (
    WARNING_REASONS,
    SecretPlan,
    SecretRequest,
    Verdict,
    consumer_forbidden,
    plan,
    source_of,
    wanted_name,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class SecretDeps:
    consumer_cluster: str
    #: ``<plural>.<group>`` of the bound API.
    crd_name: str
    #: False: connection Secrets are turned off for this connector.
    enabled: bool
    #: The provider Secret (namespace, name), or None; raises ForbiddenError if refused.
    get_provider_secret: Callable[[str, str], Obj | None]
    #: The connector's consumer Secret (namespace, name) as cached, or None.
    get_consumer_secret: Callable[[str, str], Obj | None]
    #: A consumer Secret read live (whoever's), or None.
    read_consumer_secret: Callable[[str, str], Obj | None]
    #: The connector's consumer Secrets owned by the object of that (namespace, uid),
    #: those it wrote a moment ago included (the cache may not hold them yet).
    owned_secrets: Callable[[str, str], list[Obj]]
    #: Whether the connector holds, or wrote a moment ago, a consumer Secret owned by the
    #: object of that (namespace, uid): an index lookup, asked on each pass of an object
    #: that neither asks for a Secret nor has the condition.
    owns_secrets: Callable[[str, str], bool]
    create_secret: Callable[[Obj], None]
    update_secret: Callable[[Obj], None]
    delete_secret: Callable[[str, str], None]
    warn: Callable[[Obj, str, str], None]
    resolved: Callable[[Obj, str, str], None]


def _secret_condition(consumer: Obj) -> Obj | None:
    """The object's ``ConnectionSecretSynced`` condition, if it has one."""
    return find_condition(object_conditions(consumer), CONDITION_CONNECTION_SECRET)


def reconcile_secret(consumer: Obj, twin: Obj | None, deps: SecretDeps) -> Verdict | None:
    """Bring the object's consumer Secret in line (module doc); returns the verdict.

    A consumer that refuses the connector its Secrets is a verdict too
    (``ConsumerSecretForbidden``), so that the object's own status is still written; any
    other failure is raised, and the pass retried."""
    before = _secret_condition(consumer)
    if wanted_name(consumer) is None and before is None and not _owns_secrets(consumer, deps):
        # Never asked (its condition says so, and no Secret of the connector's names it as
        # its owner): no Secret cache needs to be consulted.
        return None
    try:
        verdict = _reconcile(consumer, twin, deps)
    except ForbiddenError as exc:
        verdict = consumer_forbidden(str(metadata(consumer).get("namespace")), str(exc))
    _tell(consumer, before, verdict, deps)
    return verdict


def _owns_secrets(consumer: Obj, deps: SecretDeps) -> bool:
    """A Secret written for the object whose condition was never recorded (the status write
    after it failed) is the object's too, once it stops asking, as it is in any pass."""
    meta = metadata(consumer)
    return deps.enabled and deps.owns_secrets(
        str(meta.get("namespace") or ""), str(meta.get("uid") or "")
    )


def _reconcile(consumer: Obj, twin: Obj | None, deps: SecretDeps) -> Verdict | None:
    meta = metadata(consumer)
    namespace, uid = str(meta.get("namespace") or ""), str(meta.get("uid") or "")
    name = wanted_name(consumer)
    request = SecretRequest(
        consumer=consumer,
        twin=twin,
        consumer_cluster=deps.consumer_cluster,
        crd_name=deps.crd_name,
        owned=deps.owned_secrets(namespace, uid) if deps.enabled else [],
        enabled=deps.enabled,
    )
    if name is not None and deps.enabled:
        source, forbidden = _source(twin, deps)
        request = replace(
            request,
            source=source,
            source_forbidden=forbidden,
            existing=deps.get_consumer_secret(namespace, name),
        )
    decided = plan(request)
    for stale in decided.delete:
        with contextlib.suppress(NotFoundError):
            deps.delete_secret(namespace, stale)
        log.info(
            "Deleted a connection Secret the object no longer asks for.",
            object=f"{namespace}/{meta.get('name')}",
            secret=stale,
        )
    if decided.write is not None:
        decided = _write(decided, request, deps)
    return decided.verdict


def _source(twin: Obj | None, deps: SecretDeps) -> tuple[Obj | None, str | None]:
    ref = source_of(twin)
    if ref is None:
        return None, None
    try:
        return deps.get_provider_secret(ref.namespace, ref.name), None
    except ForbiddenError as exc:
        return None, str(exc)


def _write(decided: SecretPlan, request: SecretRequest, deps: SecretDeps) -> SecretPlan:
    wanted = decided.write
    assert wanted is not None
    namespace, name = wanted["metadata"]["namespace"], wanted["metadata"]["name"]
    where = {"object": f"{namespace}/{metadata(request.consumer).get('name')}", "secret": name}
    if request.existing is None:
        try:
            deps.create_secret(wanted)
        except ConflictError as exc:
            if exc.reason != "AlreadyExists":
                raise
            # Someone's Secret of that name, or ours not cached yet: look, and decide again.
            existing = deps.read_consumer_secret(namespace, name)
            if existing is None:
                raise  # deleted meanwhile: the retry creates it
            again = replace(request, existing=existing, owned=[])
            decided = plan(again)
            return decided if decided.write is None else _write(decided, again, deps)
        log.info("Wrote the object's connection Secret.", **where)
        return decided
    if decided.replace:
        # A Secret's type is immutable: replace it.
        with contextlib.suppress(NotFoundError):
            deps.delete_secret(namespace, name)
        deps.create_secret(wanted)
        log.info("Replaced the object's connection Secret, whose type changed.", **where)
        return decided
    updated = dict(wanted)
    updated["metadata"] = {
        **wanted["metadata"],
        "resourceVersion": metadata(request.existing).get("resourceVersion"),
    }
    deps.update_secret(updated)
    log.info("Updated the object's connection Secret.", **where)
    return decided


def _tell(consumer: Obj, before: Obj | None, verdict: Verdict | None, deps: SecretDeps) -> None:
    """A Warning Event for a verdict that needs the user; a Normal one when it is over
    (``before``: the object's condition before this pass)."""
    was_warning = before is not None and before.get("reason") in WARNING_REASONS
    if verdict is not None and verdict.warning:
        deps.warn(consumer, verdict.reason, verdict.message)
        if before is None or before.get("reason") != verdict.reason:
            log.warning(
                "The object's connection Secret cannot be copied.",
                object=f"{metadata(consumer).get('namespace')}/{metadata(consumer).get('name')}",
                reason=verdict.reason,
            )
    elif was_warning and (verdict is None or verdict.status == "True"):
        deps.resolved(
            consumer,
            CONDITION_CONNECTION_SECRET,
            verdict.message if verdict is not None else "No connection Secret is asked for",
        )
