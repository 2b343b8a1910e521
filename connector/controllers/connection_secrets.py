"""Wires connection Secrets for one ``ObjectSyncer``: the caches and writes that
``connection_secret_reconcile`` is given as callables.

Two kinds of cache, each started the first time an object needs it, so that a connector
whose objects ask for no connection Secret never lists or watches a Secret:

- provider connection Secrets, one informer per provider namespace a twin names a Secret
  in, narrowed to Crossplane's connection-Secret type (field selector
  ``type=connection.crossplane.io/v1alpha1``). Per namespace, because a provider identity
  may read Secrets only in some namespaces (the isolated placement grants it its own).
  Until a cache has listed, a Secret is read live; a refused read raises ``ForbiddenError``,
  which the reconcile reports on the object. A Secret event wakes the object whose twin
  controls the Secret (``key_of_twin``);
- the consumer Secrets the connector wrote for this bound API (labels
  ``app.kubernetes.io/managed-by=api-connector`` and
  ``connect.upbound.io/connection-secret-for=<plural>.<group>``), one informer per
  consumer scope of the syncer. An event wakes the object that owns the Secret, so a Secret
  deleted or edited by hand is written again.

Secret objects are cached as they are (their data is what is copied), never logged.

The Secrets the syncer wrote in the last minute are also remembered by name and owner
(:class:`RecentSecrets`), and counted among an object's own until the cache holds them: an
object that stops asking for its Secret (or is deleted) a moment after it was written is
looked at one last time, and that pass must find the Secret to delete it. The consumer
caches also keep an index of their Secrets by owner, so that a pass can tell, without
listing, whether an object that does not ask for a Secret still has one (its condition is
the usual record, but the status write after a Secret's may have failed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import structlog

from connector.controllers.connection_secret_reconcile import SecretDeps
from connector.kube.client import KubeClient
from connector.kube.metrics import Metrics
from connector.kube.resources import SECRETS, Resource
from connector.runtime.events import EventRecorder
from connector.runtime.informer import Informer
from connector.runtime.keys import ObjectKey
from functions.common.api import (
    CONNECTION_SECRET_TYPE,
    FIELD_MANAGER,
    LABEL_CONNECTION_SECRET_FOR,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from functions.common.objects import Obj, label_value
from functions.object_syncer.connection_secret import WARNING_REASONS

log = structlog.get_logger(__name__)

#: Narrows the provider watch to the Secrets Crossplane writes connection details to.
PROVIDER_FIELD_SELECTOR = f"type={CONNECTION_SECRET_TYPE}"


def _without_managed_fields(obj: Obj) -> Obj:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


class ConnectionSecrets:
    """The Secret caches and writes of one syncer (module doc)."""

    def __init__(
        self,
        *,
        name: str,
        consumer: KubeClient,
        provider: KubeClient,
        resource: Resource,
        crd_name: str,
        consumer_scopes: list[str | None],
        key_of_twin: Callable[[str, str], ObjectKey | None],
        enqueue: Callable[[ObjectKey], None],
        resync_period: float | None,
        metrics: Metrics | None = None,
    ) -> None:
        """``key_of_twin(namespace, name)`` is the consumer object of a twin (None if none
        is known); ``consumer_scopes`` are the syncer's consumer namespaces (None: all)."""
        self._name = name
        self._crd_name = crd_name
        self._consumer = consumer
        self._provider = provider
        self._res = resource
        self._key_of_twin = key_of_twin
        self._enqueue = enqueue
        self._resync = resync_period
        self._metrics = metrics
        self._selector = (
            f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_CONNECTION_SECRET_FOR}={label_value(crd_name)}"
        )
        self._scopes = consumer_scopes
        self._lock = threading.Lock()
        self._stopped = False
        self._providers: dict[str, Informer] = {}
        self._consumers: dict[str | None, Informer] = {}
        self._recent = RecentSecrets()
        #: The consumer caches' Secrets by owner uid, and each Secret's owners (kept by
        #: their handler, :meth:`_on_consumer_secret`).
        self._secrets_of: dict[str, set[tuple[str, str]]] = {}
        self._owners_of: dict[tuple[str, str], frozenset[str]] = {}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            informers = [*self._providers.values(), *self._consumers.values()]
        for informer in informers:
            informer.stop()

    # --- provider --------------------------------------------------------------------

    def provider_secret(self, namespace: str, name: str) -> Obj | None:
        """The provider connection Secret, from the namespace's cache once it has listed;
        raises ForbiddenError when the provider refuses the read."""
        informer = self._provider_informer(namespace)
        if informer is not None and informer.has_synced:
            return informer.get(namespace, name)
        secret = self._provider.get_or_none(SECRETS, name, namespace=namespace)
        if secret is not None and secret.get("type") != CONNECTION_SECRET_TYPE:
            return None  # the cache would not hold it either
        return secret

    def _provider_informer(self, namespace: str) -> Informer | None:
        with self._lock:
            if self._stopped:
                return None
            informer = self._providers.get(namespace)
            if informer is not None:
                return informer
            informer = Informer(
                self._provider,
                SECRETS,
                namespace=namespace,
                field_selector=PROVIDER_FIELD_SELECTOR,
                handler=self._on_provider_secret,
                resync_period=self._resync,
                name=f"provider-secrets/{self._name}/{namespace}",
                metrics=self._metrics,
                transform=_without_managed_fields,
            )
            self._providers[namespace] = informer
        log.info(
            "Watching connection Secrets in a provider namespace.",
            syncer=self._name,
            namespace=namespace,
        )
        informer.start()
        return informer

    def _on_provider_secret(self, _event: str, secret: Obj) -> None:
        meta = secret.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if (
                isinstance(ref, dict)
                and ref.get("controller") is True
                and ref.get("kind") == self._res.kind
                and str(ref.get("apiVersion", "")).split("/")[0] == self._res.group
            ):
                key = self._key_of_twin(str(meta.get("namespace") or ""), str(ref.get("name")))
                if key is not None:
                    self._enqueue(key)

    # --- consumer --------------------------------------------------------------------

    def consumer_secret(self, namespace: str, name: str) -> Obj | None:
        """The connector's consumer Secret of that name, as cached (read live until the
        cache has listed)."""
        informer = self._consumer_informer(namespace)
        if informer is not None and informer.has_synced:
            return informer.get(namespace, name)
        return self.read_consumer_secret(namespace, name)

    def read_consumer_secret(self, namespace: str, name: str) -> Obj | None:
        return self._consumer.get_or_none(SECRETS, name, namespace=namespace)

    def owned(self, namespace: str, uid: str) -> list[Obj]:
        """The connector's consumer Secrets in ``namespace`` owned by the object ``uid``: as
        cached (read live until the cache has listed), and those written a moment ago that
        the cache does not hold yet (module doc)."""
        informer = self._consumer_informer(namespace)
        if informer is None:
            return []
        if not informer.has_synced:
            items, _ = self._consumer.list(SECRETS, namespace, self._selector)
            mine = [s for s in items if _owned_by(s, uid)]
        else:
            # The owner index names them: no copy of the namespace's other Secrets.
            with self._lock:
                names = sorted(n for ns, n in self._secrets_of.get(uid, ()) if ns == namespace)
            found = (informer.get(namespace, name) for name in names)
            mine = [s for s in found if s is not None]
        return self._recent.with_recent(namespace, uid, mine)

    def _consumer_informer(self, namespace: str) -> Informer | None:
        scope: str | None = None if None in self._scopes else namespace
        if scope is not None and scope not in self._scopes:
            return None
        with self._lock:
            if self._stopped:
                return None
            informer = self._consumers.get(scope)
            if informer is not None:
                return informer
            informer = Informer(
                self._consumer,
                SECRETS,
                namespace=scope,
                label_selector=self._selector,
                handler=self._on_consumer_secret,
                resync_period=self._resync,
                name=f"consumer-secrets/{self._name}/{scope or '*'}",
                metrics=self._metrics,
                transform=_without_managed_fields,
            )
            self._consumers[scope] = informer
        informer.start()
        return informer

    def _on_consumer_secret(self, event: str, secret: Obj) -> None:
        meta = secret.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        owners = frozenset() if event == "DELETED" else _owner_uids(secret)
        with self._lock:
            for uid in self._owners_of.pop(key, frozenset()) - owners:
                held = self._secrets_of.get(uid, set())
                held.discard(key)
                if not held:
                    self._secrets_of.pop(uid, None)
            if owners:
                self._owners_of[key] = owners
                for uid in owners:
                    self._secrets_of.setdefault(uid, set()).add(key)
        for ref in meta.get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("kind") == self._res.kind:
                self._enqueue(ObjectKey(str(meta.get("namespace") or ""), str(ref.get("name"))))

    def owns(self, namespace: str, uid: str) -> bool:
        """Whether a consumer cache holds a Secret owned by the object ``uid``, or one was
        written for it a moment ago (module doc)."""
        with self._lock:
            if uid in self._secrets_of:
                return True
        return self._recent.owns(namespace, uid)

    def deps(self, *, consumer_cluster: str, enabled: bool, recorder: EventRecorder) -> SecretDeps:
        """The callables ``connection_secret_reconcile`` is given."""
        return SecretDeps(
            consumer_cluster=consumer_cluster,
            crd_name=self._crd_name,
            enabled=enabled,
            get_provider_secret=self.provider_secret,
            get_consumer_secret=self.consumer_secret,
            read_consumer_secret=self.read_consumer_secret,
            owned_secrets=self.owned,
            owns_secrets=self.owns,
            create_secret=self.create,
            update_secret=self.update,
            delete_secret=self.delete,
            warn=recorder.warning,
            resolved=partial(recorder.resolved, of=WARNING_REASONS),
        )

    def create(self, secret: Obj) -> None:
        self._consumer.create(SECRETS, secret, field_manager=FIELD_MANAGER)
        self._recent.wrote(secret)

    def update(self, secret: Obj) -> None:
        self._consumer.update(SECRETS, secret, field_manager=FIELD_MANAGER)
        self._recent.wrote(secret)

    def delete(self, namespace: str, name: str) -> None:
        """Raises NotFoundError if it is gone already."""
        self._recent.forget(namespace, name)
        self._consumer.delete(SECRETS, name, namespace=namespace)


def _owner_uids(secret: Obj) -> frozenset[str]:
    return frozenset(
        str(ref["uid"])
        for ref in (secret.get("metadata") or {}).get("ownerReferences") or []
        if isinstance(ref, dict) and ref.get("uid")
    )


def _owned_by(secret: Obj, uid: str) -> bool:
    return uid in _owner_uids(secret)


#: How long a Secret the syncer wrote counts as its own without the cache holding it.
RECENT_SECONDS = 60.0


class RecentSecrets:
    """The consumer Secrets a syncer wrote in the last :data:`RECENT_SECONDS`, by name and
    owner (no data: only what deciding to delete one needs)."""

    def __init__(
        self, *, ttl: float = RECENT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        #: (namespace, name) → (owner uids, expiry)
        self._written: dict[tuple[str, str], tuple[frozenset[str], float]] = {}

    def wrote(self, secret: Obj) -> None:
        meta = secret.get("metadata") or {}
        owners = _owner_uids(secret)
        with self._lock:
            self._prune()
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            self._written[key] = (owners, self._clock() + self._ttl)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._written.pop((namespace, name), None)

    def owns(self, namespace: str, uid: str) -> bool:
        """Whether a Secret written recently in ``namespace`` is owned by ``uid``."""
        with self._lock:
            self._prune()
            return any(
                ns == namespace and uid in owners for (ns, _), (owners, _) in self._written.items()
            )

    def with_recent(self, namespace: str, uid: str, cached: list[Obj]) -> list[Obj]:
        """``cached`` (the object's Secrets the cache holds), and those of its Secrets
        written recently that it does not hold, as name-only stand-ins."""
        held = {str((s.get("metadata") or {}).get("name")) for s in cached}
        with self._lock:
            self._prune()
            recent = [
                name
                for (ns, name), (owners, _) in self._written.items()
                if ns == namespace and uid in owners and name not in held
            ]
        return cached + [
            {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "ownerReferences": [{"uid": uid}],
                }
            }
            for name in sorted(recent)
        ]

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, (_, expires) in self._written.items() if expires <= now]:
            del self._written[key]
