"""Where one syncer's twins live in the provider, and the caches that watch them.

A consumer object's key (namespace, name) is the work-queue key; its twin's key follows the
connection's placement (``functions.common.placement``):

- ``Default``: the same key. One cluster-wide provider cache holds this consumer's twins
  (selected by its origin labels), and a twin is queued under the origin its labels and
  annotations name.
- ``Isolated`` (namespaced APIs): the twin is in the provider namespace of this consumer's
  alone that the consumer namespace maps to. The identity may read nothing outside such
  namespaces, not even list cluster-wide, so there is one provider cache per provider
  namespace, started when an object of its consumer namespace is first reconciled
  (:meth:`TwinCaches.prepare`), after the namespace and the RoleBinding that grants the
  identity its objects there exist (``functions.binder.placement.namespace_objects``; the
  identity may create them only within the admission policy's limits). A twin in such a
  cache is queued under the consumer namespace the cache stands for.

Cluster-scoped APIs have no namespace: their twins are placed as in ``Default``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import structlog

from connector.kube.client import KubeClient
from connector.kube.errors import ConflictError, NotFoundError
from connector.kube.metrics import Metrics
from connector.kube.resources import NAMESPACES, ROLE_BINDINGS, Resource
from connector.runtime.informer import Informer
from connector.runtime.keys import ObjectKey, key_of
from functions.binder.placement import namespace_objects
from functions.common import (
    ANNOTATION_ORIGIN_NAME,
    ANNOTATION_ORIGIN_NAMESPACE,
    LABEL_CONSUMER_CLUSTER,
    LABEL_CONSUMER_NAME,
    LABEL_CONSUMER_NAMESPACE,
    MANAGED_LABEL,
)
from functions.common.objects import Obj, label_value
from functions.common.placement import PLACEMENT_ISOLATED, provider_namespace

log = structlog.get_logger(__name__)

#: How long a new RoleBinding may take to reach the provider's authorizer before the first
#: write in its namespace is tried anyway (a refusal then is retried with backoff).
ACCESS_WAIT = 5.0
_ACCESS_POLL = 0.05

#: Called with an event, the twin, and the key of the consumer object it stands for.
TwinHandler = Callable[[str, Obj, ObjectKey], None]


class TwinCaches:
    """The twins of one (connection, bound resource): their keys, namespaces and caches."""

    def __init__(
        self,
        provider: KubeClient,
        res: Resource,
        *,
        consumer_cluster: str,
        placement: str,
        handler: TwinHandler,
        resync_period: float,
        name: str,
        metrics: Metrics | None,
        transform: Callable[[Obj], Obj],
    ) -> None:
        self._provider = provider
        self._res = res
        self._cluster = consumer_cluster
        self._placement = placement
        self.isolated = placement == PLACEMENT_ISOLATED and res.namespaced
        self._handler = handler
        self._resync = resync_period
        self._name = name
        self._metrics = metrics
        self._transform = transform
        self._selector = (
            f"{MANAGED_LABEL}=true,{LABEL_CONSUMER_CLUSTER}={label_value(consumer_cluster)}"
        )
        self._lock = threading.Lock()
        self._stopped = False
        #: Isolated: provider namespace → the consumer namespace it stands for.
        self._origins: dict[str, str] = {}
        #: Provider namespaces known to exist (and, isolated, to grant the identity access).
        self._known_namespaces: set[str] = set()
        #: Isolated: one cache per provider namespace; default: one, cluster-wide, key "".
        self._caches: dict[str, Informer] = {}
        if not self.isolated:
            self._caches[""] = self._informer(None, self._on_twin)

    def _informer(self, namespace: str | None, handler: Callable[[str, Obj], None]) -> Informer:
        return Informer(
            self._provider,
            self._res,
            namespace=namespace,
            label_selector=self._selector,
            handler=handler,
            resync_period=self._resync,
            name=f"provider/{self._name}" + (f"/{namespace}" if namespace else ""),
            metrics=self._metrics,
            transform=self._transform,
        )

    def start(self) -> None:
        with self._lock:
            caches = list(self._caches.values())
        for cache in caches:
            cache.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            caches = list(self._caches.values())
        for cache in caches:
            cache.stop()

    def settled(self) -> bool:
        """Whether every cache started so far has listed or failed trying (``Informer.settled``);
        isolated caches start later, one per namespace, as objects are reconciled."""
        with self._lock:
            caches = list(self._caches.values())
        return all(cache.settled for cache in caches)

    # --- keys ----------------------------------------------------------------------------

    def twin_key(self, key: ObjectKey) -> ObjectKey:
        """Where the twin of the consumer object ``key`` is in the provider."""
        if not self.isolated or not key.namespace:
            return key
        namespace = provider_namespace(self._cluster, key.namespace, self._placement)
        with self._lock:
            self._origins.setdefault(namespace, key.namespace)
        return ObjectKey(namespace, key.name)

    def origin_key(self, twin: Obj) -> ObjectKey:
        """The key of the consumer object a twin this syncer wrote stands for."""
        key = key_of(twin)
        if not self.isolated or not key.namespace:
            return key
        with self._lock:
            return ObjectKey(self._origins.get(key.namespace, key.namespace), key.name)

    def keys(self) -> list[ObjectKey]:
        """The consumer keys of every cached twin."""
        with self._lock:
            caches = list(self._caches.items())
            origins = dict(self._origins)
        if not self.isolated:
            return caches[0][1].keys() if caches else []
        out: list[ObjectKey] = []
        for namespace, cache in caches:
            cached = cache.keys()
            out += (ObjectKey(origins[namespace], key.name) for key in cached)
        return out

    def origin_of_twin(self, namespace: str, name: str) -> ObjectKey | None:
        """The consumer object whose twin is cached at ``namespace/name`` in the provider
        (e.g. the owner of a provider Secret next to it); None when no such twin is cached."""
        with self._lock:
            cache = self._caches.get(namespace if self.isolated else "")
            origin = self._origins.get(namespace)
        twin = None if cache is None else cache.get(namespace or None, name)
        if twin is None:
            return None
        if self.isolated and namespace:
            return ObjectKey(origin or namespace, name)
        return self._default_origin(twin)

    def _on_twin(self, event: str, obj: Obj) -> None:
        """The default placement's cache: the twin's origin labels name its consumer object."""
        self._handler(event, obj, self._default_origin(obj))

    def _default_origin(self, obj: Obj) -> ObjectKey:
        meta = obj.get("metadata", {})
        annotations = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        name = annotations.get(ANNOTATION_ORIGIN_NAME) or labels.get(LABEL_CONSUMER_NAME)
        namespace = annotations.get(ANNOTATION_ORIGIN_NAMESPACE) or labels.get(
            LABEL_CONSUMER_NAMESPACE, ""
        )
        if not name:
            name, namespace = meta.get("name"), meta.get("namespace") or ""
        if not self._res.namespaced:
            namespace = ""
        return ObjectKey(str(namespace), str(name))

    def _on_isolated_twin(self, origin: str, event: str, obj: Obj) -> None:
        """A namespace's cache in the isolated placement: it stands for ``origin``."""
        self._handler(event, obj, ObjectKey(origin, str(obj.get("metadata", {}).get("name"))))

    # --- reading -------------------------------------------------------------------------

    def cached(self, key: ObjectKey) -> tuple[bool, Obj | None]:
        """Whether the cache that holds the twin of ``key`` has listed, and the twin in it."""
        twin = self.twin_key(key)
        with self._lock:
            cache = self._caches.get(twin.namespace if self.isolated else "")
        if cache is None or not cache.has_synced:
            return False, None
        return True, cache.get(twin.namespace or None, twin.name)

    # --- namespaces ----------------------------------------------------------------------

    def prepare(self, key: ObjectKey) -> None:
        """Isolated: make sure the provider namespace of ``key`` is the consumer's and
        watched, before its twin is read (a read there is refused until then)."""
        if not self.isolated or not key.namespace:
            return
        namespace = self.twin_key(key).namespace
        with self._lock:
            if namespace in self._caches or self._stopped:
                return
        self.ensure_namespace(namespace)
        with self._lock:
            if namespace in self._caches or self._stopped:
                return
            cache = self._informer(namespace, partial(self._on_isolated_twin, key.namespace))
            self._caches[namespace] = cache
        cache.start()
        log.info(
            "Watching this consumer's twins in its own provider namespace.",
            resource=self._res.plural,
            namespace=namespace,
            consumer_namespace=key.namespace,
        )

    def ensure_namespace(self, namespace: str) -> None:
        """Make sure ``namespace`` exists in the provider (isolated: as this consumer's, with
        the RoleBinding that grants the identity its objects there)."""
        with self._lock:
            if namespace in self._known_namespaces:
                return
            origin = self._origins.get(namespace)
        if self.isolated and origin is not None:
            self._ensure_own_namespace(namespace, origin)
        else:
            self._ensure_shared_namespace(namespace)
        with self._lock:
            self._known_namespaces.add(namespace)

    def forget_namespace(self, namespace: str) -> None:
        """``namespace`` went away; it is created again before the next write there."""
        with self._lock:
            self._known_namespaces.discard(namespace)

    def _ensure_shared_namespace(self, namespace: str) -> None:
        try:
            self._provider.get(NAMESPACES, namespace)
        except NotFoundError:
            try:
                self._provider.create(
                    NAMESPACES,
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                )
                log.info("Created a namespace in the provider.", namespace=namespace)
            except ConflictError:
                pass  # created meanwhile by someone else: what we wanted

    def _ensure_own_namespace(self, namespace: str, origin: str) -> None:
        # Create only: the identity may neither read namespaces nor RoleBindings. An
        # existing namespace that is not ours makes the RoleBinding's creation fail (the
        # admission policy), and that failure is what the user is told.
        ns_obj, binding = namespace_objects(self._cluster, origin)
        try:
            self._provider.create(NAMESPACES, ns_obj)
            log.info(
                "Created this consumer's own namespace in the provider.",
                namespace=namespace,
                consumer_namespace=origin,
            )
        except ConflictError:
            pass  # there already: ours from an earlier run, or refused just below
        try:
            self._provider.create(ROLE_BINDINGS, binding)
        except ConflictError:
            return  # granted by an earlier run
        # RBAC's authorizer learns of the new RoleBinding from its own watch: wait for it
        # briefly, so that the first twin write is not refused in between.
        deadline = time.monotonic() + ACCESS_WAIT
        while time.monotonic() < deadline:
            if self._provider.self_subject_access_review(
                "list", self._res.group, self._res.plural, namespace
            ):
                return
            time.sleep(_ACCESS_POLL)
