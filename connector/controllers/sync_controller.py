"""Wires object syncing for one (connection, bound resource): an ``ObjectSyncer``.

Long because it is the one place that wires a syncer's caches (consumer objects, twins)
to every callable its reconcile is given (twin writes, finalizers, status, the collector
of orphaned twins); the connection-Secret caches and writes are ``connection_secrets``'.

Which syncers run is the ``supervisor``'s business. An ``ObjectSyncer`` watches the
consumer objects of its resource (one informer per bound namespace for APIBindings, one
cluster-wide otherwise) and their provider twins. The provider informer selects only this
consumer's twins (``connect.upbound.io/managed=true,connect.upbound.io/consumer-cluster=<id>``):
it scales with this consumer's objects. How a twin is written (create or apply,
AlreadyExists, the hand-over of field ownership, adopting a twin another connector created)
is decided by ``sync_reconcile``; this module makes the requests. Where twins are, and the
provider caches that watch them, follow the connection's placement (``twin_caches``).

Each syncer remembers what its own writes returned (``fresh.FreshObjects``) until its caches
have caught up, so a reconcile right after a write acts on the object as written; the
events that only echo those writes (or carry a copy older than one) wake nothing. Nothing
in such an event is new to the syncer: the consumer's writes are conditional on the
resourceVersion the pass read (no one else's change can fall between its read and its
write), and a twin write, which is not, queues a pass that reads its answer, which holds
every change before it. A new kind of write must keep to one of the two.

A twin without a consumer object is looked at by the collector of orphaned twins
(``gc_reconcile``): every twin the provider cache lists, re-delivers on a resync or sees
changed by anyone but this syncer is queued by its origin, and when a consumer cache first
lists, the twins it holds no object for are queued too (the provider cache may have listed
first, while a missing consumer object still said nothing). What the collector deletes is
reported on the binding that covers the object (``binding_for``, from the supervisor).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial

import structlog

from connector.controllers import ownership
from connector.controllers.connection_secret_reconcile import reconcile_secret
from connector.controllers.connection_secrets import ConnectionSecrets
from connector.controllers.gc_reconcile import CollectDeps, collected_message
from connector.controllers.sync_reconcile import WARNING_REASONS, SyncDeps, reconcile_object
from connector.controllers.twin_caches import TwinCaches
from connector.controllers.write_failures import (
    REASON_STATUS_ACCEPTED,
    REASON_STATUS_REFUSED,
    STATUS_ACCEPTED_MESSAGE,
)
from connector.kube.client import KubeClient
from connector.kube.errors import ConflictError, InvalidError, KubeError, NotFoundError
from connector.kube.metrics import Metrics
from connector.kube.resources import Resource
from connector.runtime.controller import (
    Controller,
    cache_form,
    shared_strings,
    without_managed_fields,
)
from connector.runtime.events import EventRecorder
from connector.runtime.fresh import FreshObjects
from connector.runtime.informer import Informer
from connector.runtime.keys import ObjectKey, key_of
from connector.runtime.workqueue import Result
from connector.stages import Stages
from functions.binder.types import BoundResource
from functions.common import FINALIZER, MANAGED_LABEL
from functions.common.api import FIELD_MANAGER
from functions.common.clock import now_rfc3339
from functions.common.objects import Obj, copy_json
from functions.common.placement import PLACEMENT_DEFAULT
from functions.object_syncer.types import Adoption

log = structlog.get_logger(__name__)

#: How long a syncer's workers wait for its caches' first lists (``_start_workers``).
START_WAIT = 60.0
_START_POLL = 0.02


def resource_of(bound: BoundResource) -> Resource:
    return Resource(
        bound.group, bound.version, bound.plural, bound.kind, bound.scope == "Namespaced"
    )


@dataclass(frozen=True, kw_only=True)
class SyncSpec:
    """What one syncer does; a change restarts it."""

    connection: str
    resource: BoundResource
    #: None: every namespace.
    namespaces: frozenset[str] | None
    provider: KubeClient
    #: The connection's ``spec.placement`` of twins.
    placement: str = PLACEMENT_DEFAULT

    def same_as(self, other: SyncSpec) -> bool:
        return (
            self.connection == other.connection
            and self.resource == other.resource
            and self.namespaces == other.namespaces
            and self.provider is other.provider
            and self.placement == other.placement
        )


class ObjectSyncer:
    """Syncs the objects of one bound resource of one connection."""

    def __init__(
        self,
        spec: SyncSpec,
        *,
        consumer: KubeClient,
        stages: Stages,
        recorder: EventRecorder,
        consumer_cluster: str,
        resync_period: float,
        workers: int,
        metrics: Metrics | None = None,
        adoption: Callable[[], Adoption | None] = lambda: None,
        binding_for: Callable[[str], Obj | None] = lambda _namespace: None,
        notices: EventRecorder | None = None,
        connection_secrets: bool = True,
    ) -> None:
        """``binding_for`` gives the binding that covers a namespace (``""`` for
        cluster-scoped objects), on which ``notices`` records what the collector of
        orphaned twins deleted. ``connection_secrets`` False: objects that ask for a
        connection Secret are told it is turned off, and no Secret is read or written."""
        self._connection_secrets = connection_secrets
        self._metrics = metrics
        self._adoption = adoption
        self._binding_for = binding_for
        self._notices = notices
        self.spec = spec
        self._consumer = consumer
        self._provider = spec.provider
        self._stages = stages
        self._recorder = recorder
        self._cluster = consumer_cluster
        self._res = resource_of(spec.resource)
        self._fresh_consumers: FreshObjects[ObjectKey] = FreshObjects()
        self._fresh_twins: FreshObjects[ObjectKey] = FreshObjects()
        name = f"{spec.connection}/{spec.resource.crd_name}"
        self._log = log.bind(connection=spec.connection, resource=spec.resource.crd_name)
        self.controller: Controller[ObjectKey] = Controller(
            f"sync/{name}",
            self._reconcile,
            workers=workers,
            metrics=metrics,
            clients=(consumer, spec.provider),
        )
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()
        #: Finalizer writes, made while the worker writes the twin (``sync_reconcile``).
        self._background = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"finalizers-{name}"
        )
        scopes: list[str | None]
        if not self._res.namespaced or spec.namespaces is None:
            scopes = [None]
        else:
            scopes = [*sorted(spec.namespaces)]
        self._consumer_informers = {
            scope: Informer(
                consumer,
                self._res,
                namespace=scope,
                handler=self._on_consumer,
                resync_period=resync_period,
                name=f"consumer/{name}/{scope or '*'}",
                metrics=self._metrics,
                transform=cache_form,
                on_health_change=partial(self._consumer_cache_changed, scope),
            )
            for scope in scopes
        }
        self._twins = TwinCaches(
            spec.provider,
            self._res,
            consumer_cluster=consumer_cluster,
            placement=spec.placement,
            handler=self._on_twin,
            resync_period=resync_period,
            name=name,
            metrics=self._metrics,
            transform=_twin_transform,
        )

        self._secrets = ConnectionSecrets(
            name=name,
            consumer=consumer,
            provider=spec.provider,
            resource=self._res,
            crd_name=spec.resource.crd_name,
            consumer_scopes=scopes,
            key_of_twin=self._key_of_twin,
            enqueue=self.controller.enqueue,
            resync_period=resync_period,
            metrics=metrics,
        )

    def start(self) -> None:
        for informer in self._consumer_informers.values():
            informer.start()
        self._twins.start()
        threading.Thread(
            target=self._start_workers, name=f"start-{self.controller.name}", daemon=True
        ).start()

    def _start_workers(self) -> None:
        """Start reconciling once both caches have listed (or failed to list), as
        controller-runtime waits for its sources. Each cache queues every key it lists: with
        workers already running, a key queued by both was reconciled twice, and a reconcile
        before the twin cache had listed read its twin live. After ``START_WAIT`` the
        workers start anyway (twins are read live until their cache has listed)."""
        deadline = time.monotonic() + START_WAIT
        while not self._caches_settled() and time.monotonic() < deadline:
            if self._stopping.wait(_START_POLL):
                return
        with self._start_lock:
            if self._stopping.is_set():
                return
            self.controller.start()
        self._log.info("Started syncing objects.", namespaces=self._scope_text())

    def _caches_settled(self) -> bool:
        consumers = all(i.settled for i in self._consumer_informers.values())
        return consumers and self._twins.settled()

    def stop(self) -> None:
        with self._start_lock:
            self._stopping.set()
        self.controller.stop()
        self._background.shutdown(wait=True)
        for informer in self._consumer_informers.values():
            informer.stop()
        self._twins.stop()
        self._secrets.stop()
        self._log.info("Stopped syncing objects.")

    def resync(self) -> None:
        """Look at every object again (the connection's adoption opt-in changed)."""
        for informer in self._consumer_informers.values():
            keys = informer.keys()
            for key in keys:
                self.controller.enqueue(key)

    def _scope_text(self) -> str:
        return "all" if None in self._consumer_informers else ",".join(self.spec.namespaces or ())

    # --- events → keys -------------------------------------------------------------------

    def _on_consumer(self, event: str, obj: Obj) -> None:
        key = key_of(obj)
        if self._fresh_consumers.observe(key, event, obj):
            # Our own write (a finalizer, a status) coming back: the reconcile that made it
            # acted on it already, and asked for another pass if it needed one. Waking the
            # object again would only cost a pass, and would cut short the backoff of an
            # object whose failure was just written to its status.
            return
        self.controller.enqueue(key)

    def _on_twin(self, event: str, obj: Obj, key: ObjectKey) -> None:
        """A twin changed; ``key`` is the consumer object it stands for (``twin_caches``)."""
        if self._consumer_informer_for(key.namespace) is None:
            return
        if self._fresh_twins.observe(key, event, obj):
            # Our own twin write coming back: the pass that made it queued the next one,
            # which acts on the twin as written (as for the consumer's echoes above).
            return
        self.controller.enqueue(key)

    def _key_of_twin(self, namespace: str, name: str) -> ObjectKey | None:
        """The consumer object of the twin at ``namespace/name`` in the provider (a provider
        connection Secret's controller), if this syncer syncs it."""
        key = self._twins.origin_of_twin(namespace, name)
        if key is None or self._consumer_informer_for(key.namespace) is None:
            return None
        return key

    def _consumer_cache_changed(self, scope: str | None) -> None:
        """A consumer cache's health changed: once it has listed, queue the twins it holds
        no object for (module doc)."""
        informer = self._consumer_informers[scope]
        if not informer.has_synced:
            return
        # Keys only: listing would copy every cached object.
        present, twins = set(informer.keys()), self._twins.keys()
        for key in twins:
            if key not in present and self._consumer_informer_for(key.namespace) is informer:
                self.controller.enqueue(key)

    def _consumer_informer_for(self, namespace: str) -> Informer | None:
        informer = self._consumer_informers.get(None)
        if informer is not None:
            return informer
        return self._consumer_informers.get(namespace)

    # --- side effects --------------------------------------------------------------------

    def _get_consumer(self, key: ObjectKey) -> Obj | None:
        informer = self._consumer_informer_for(key.namespace)
        if informer is None:
            return None
        return self._fresh_consumers.newest(key, informer.get(key.namespace or None, key.name))

    def _get_twin(self, key: ObjectKey) -> Obj | None:
        synced, cached = self._twins.cached(key)
        if not synced:
            # Before the first list, a missing twin says nothing: read it.
            twin = self._twins.twin_key(key)
            try:
                live = self._provider.get(self._res, twin.name, namespace=twin.namespace or None)
            except NotFoundError:
                return self._fresh_twins.newest(key, None)
            return _twin_transform(live)
        return self._fresh_twins.newest(key, cached)

    def _consumer_synced(self, key: ObjectKey) -> bool:
        informer = self._consumer_informer_for(key.namespace)
        return informer is not None and informer.has_synced

    def _read_consumer(self, key: ObjectKey) -> Obj | None:
        return self._consumer.get_or_none(self._res, key.name, namespace=key.namespace or None)

    def _delete_orphan(self, key: ObjectKey, twin: Obj) -> None:
        meta = twin.get("metadata") or {}
        self._fresh_twins.forget(key)
        where = self._twins.twin_key(key)
        self._provider.delete(
            self._res,
            where.name,
            namespace=where.namespace or None,
            preconditions_uid=meta.get("uid"),
            preconditions_resource_version=meta.get("resourceVersion"),
        )

    def _collected(self, key: ObjectKey, twin: Obj) -> None:
        message = collected_message(key, twin)
        self._log.info(
            "Deleted an orphaned provider twin: its consumer object no longer exists.",
            object=str(key),
            twin_uid=(twin.get("metadata") or {}).get("uid"),
        )
        if self._metrics is not None:
            self._metrics.twins_collected.labels(self.controller.name).inc()
        binding = self._binding_for(key.namespace)
        if binding is not None and self._notices is not None:
            self._notices.normal(binding, "OrphanedTwinDeleted", message)

    def _in_background(self, work: Callable[[], None]) -> Callable[[], None]:
        future = self._background.submit(work)
        return lambda: future.result()

    @contextlib.contextmanager
    def _writing_in(self, twin: Obj) -> Iterator[None]:
        try:
            yield
        except NotFoundError:
            # The namespace went away since we saw it; create it on the next attempt.
            self._twins.forget_namespace(str(twin.get("metadata", {}).get("namespace")))
            raise

    @contextlib.contextmanager
    def _own_write(self, fresh: FreshObjects[ObjectKey], key: ObjectKey) -> Iterator[None]:
        """Announce a write of ``key`` (its echo can come before its answer is recorded);
        queue the key if an event held meanwhile was news (``fresh``'s module doc)."""
        fresh.expect(key)
        try:
            yield
        finally:
            if fresh.settle(key):
                self.controller.enqueue(key)

    def _create_twin(self, obj: Obj) -> Obj:
        with self._writing_in(obj), self._own_write(self._fresh_twins, self._twins.origin_key(obj)):
            written = self._provider.create(self._res, obj, field_manager=FIELD_MANAGER)
            return self._remember_twin(written)

    def _apply_twin(self, obj: Obj) -> Obj:
        with self._writing_in(obj), self._own_write(self._fresh_twins, self._twins.origin_key(obj)):
            written = self._provider.apply(self._res, obj, field_manager=FIELD_MANAGER)
            return self._remember_twin(written)

    def _read_twin(self, key: ObjectKey) -> Obj:
        where = self._twins.twin_key(key)
        live = self._provider.get(self._res, where.name, namespace=where.namespace or None)
        return self._remember_twin(live)

    def _remember_twin(self, obj: Obj) -> Obj:
        twin = _twin_transform(obj)
        self._fresh_twins.record(self._twins.origin_key(twin), twin)
        return twin

    def _hand_over_ownership(self, key: ObjectKey, twin: Obj) -> None:
        where = self._twins.twin_key(key)
        name, namespace = where.name, where.namespace or None
        ownership.hand_over(
            twin,
            FIELD_MANAGER,
            json_patch=lambda patch: self._provider.patch(
                self._res, name, namespace, patch, "json"
            ),
            read_live=lambda: self._provider.get(self._res, name, namespace=namespace),
            merge_patch=lambda patch: self._provider.patch(self._res, name, namespace, patch),
        )

    def _take_over_twin(self, key: ObjectKey, wanted: Obj) -> list[str]:
        """Hand what the connector that created the twin owns (the owners of its managed
        label) to our apply, labels and annotations only as far as ``wanted`` sets them (the
        other connector's origin labels stay its own, and on the twin)."""
        where = self._twins.twin_key(key)
        name, namespace = where.name, where.namespace or None
        meta = wanted.get("metadata") or {}
        for _ in range(5):
            live = self._provider.get(self._res, name, namespace=namespace)
            owners = ownership.label_owners(live, MANAGED_LABEL)
            managers = [m for m in owners if m != FIELD_MANAGER]
            entries = ownership.take_over(
                live,
                FIELD_MANAGER,
                owners,
                labels=(meta.get("labels") or {}).keys(),
                annotations=(meta.get("annotations") or {}).keys(),
            )
            if entries is None:
                return managers
            rv = live["metadata"]["resourceVersion"]
            try:
                self._provider.patch(
                    self._res,
                    name,
                    namespace,
                    {"metadata": {"resourceVersion": rv, "managedFields": entries}},
                )
                return managers
            except ConflictError:
                continue  # changed since it was read: read it again
            except InvalidError as exc:
                # Not the twin's content at fault: never report it as a rejected object.
                raise KubeError(f"Taking over the twin's field ownership failed: {exc}") from exc
        raise KubeError("The twin kept changing while its field ownership was taken over.")

    def _adopted(self, obj: Obj, message: str) -> None:
        self._recorder.normal(obj, "Adopted", message)
        if self._metrics is not None:
            self._metrics.adopted_objects.labels(
                self.spec.connection, self.spec.resource.crd_name
            ).inc()

    def _delete_twin(self, key: ObjectKey) -> None:
        self._fresh_twins.forget(key)
        where = self._twins.twin_key(key)
        with contextlib.suppress(NotFoundError):  # already gone: what we wanted
            self._provider.delete(self._res, where.name, namespace=where.namespace or None)

    def _set_finalizers(self, obj: Obj, finalizers: list[str]) -> None:
        meta = obj["metadata"]
        # The resourceVersion makes the merge patch conditional: the finalizer list is
        # replaced as a whole, so a concurrent change must not be overwritten.
        with self._own_write(self._fresh_consumers, key_of(obj)):
            written = self._consumer.patch(
                self._res,
                meta["name"],
                meta.get("namespace"),
                {
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            self._remember_consumer(written)
        _follow_write(obj, written)

    def _add_finalizer(self, obj: Obj) -> None:
        current = list(obj["metadata"].get("finalizers") or [])
        if FINALIZER not in current:
            self._set_finalizers(obj, [*current, FINALIZER])

    def _remove_finalizer(self, obj: Obj) -> None:
        current = list(obj["metadata"].get("finalizers") or [])
        if FINALIZER in current:
            self._set_finalizers(obj, [f for f in current if f != FINALIZER])

    def _write_status(self, obj: Obj, status: Obj) -> None:
        updated = copy_json(obj)
        updated["status"] = status
        with self._own_write(self._fresh_consumers, key_of(obj)):
            written = self._consumer.update_status(self._res, updated, field_manager=FIELD_MANAGER)
            self._remember_consumer(written)
        _follow_write(obj, written)

    def _remember_consumer(self, written: Obj) -> None:
        self._fresh_consumers.record(key_of(written), without_managed_fields(written))

    @cached_property
    def _deps(self) -> SyncDeps:
        # Built once: a reconcile runs per object change, and these never change.
        return SyncDeps(
            consumer_cluster=self._cluster,
            get_consumer=self._get_consumer,
            get_twin=self._get_twin,
            sync=self._stages.sync,
            add_finalizer=self._add_finalizer,
            ensure_provider_namespace=self._twins.ensure_namespace,
            prepare_twin=self._twins.prepare,
            placement=self.spec.placement,
            create_twin=self._create_twin,
            read_twin=self._read_twin,
            hand_over_ownership=self._hand_over_ownership,
            apply_twin=self._apply_twin,
            delete_twin=self._delete_twin,
            write_consumer_status=self._write_status,
            remove_finalizer=self._remove_finalizer,
            warn=self._recorder.warning,
            resolved=partial(self._recorder.resolved, of=WARNING_REASONS),
            status_accepted=partial(
                self._recorder.resolved,
                reason=REASON_STATUS_ACCEPTED,
                message=STATUS_ACCEPTED_MESSAGE,
                of=(REASON_STATUS_REFUSED,),
            ),
            now=now_rfc3339,
            adoption=self._adoption,
            take_over_twin=self._take_over_twin,
            adopted=self._adopted,
            in_background=self._in_background,
            connection_secret=partial(
                reconcile_secret,
                deps=self._secrets.deps(
                    consumer_cluster=self._cluster,
                    enabled=self._connection_secrets,
                    recorder=self._recorder,
                ),
            ),
            collect=CollectDeps(
                consumer_cluster=self._cluster,
                placement=self.spec.placement,
                consumer_synced=self._consumer_synced,
                get_twin=self._get_twin,
                read_consumer=self._read_consumer,
                delete_twin=self._delete_orphan,
                collected=self._collected,
            ),
        )

    def _reconcile(self, key: ObjectKey) -> Result:
        return reconcile_object(key, self._deps)


def _twin_transform(obj: Obj) -> Obj:
    """A twin as cached: no managedFields beyond what ``ownership`` needs, strings shared."""
    result: Obj = shared_strings(ownership.summarize(obj, FIELD_MANAGER))
    return result


def _follow_write(obj: Obj, written: Obj) -> None:
    """Carry a write's new resourceVersion (and finalizers) into the object the reconcile
    holds, so that its next conditional write in the same reconcile (the status after the
    finalizer, the finalizer after the status) is not refused with a 409 Conflict and
    retried from a cache that has not yet seen our own write."""
    meta, new = obj["metadata"], written.get("metadata") or {}
    if new.get("resourceVersion"):
        meta["resourceVersion"] = new["resourceVersion"]
    if "finalizers" in new or "finalizers" in meta:
        meta["finalizers"] = list(new.get("finalizers") or [])
