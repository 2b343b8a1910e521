"""The Kubernetes client: raw REST calls on ``kubernetes.client.ApiClient``, JSON in and out.

Long because :class:`KubeClient` is one class: every verb, and the one request path they all
share (timeouts, ``Retry-After``, error mapping, metrics). Watch streams live in
:mod:`connector.kube.watch`, errors in :mod:`connector.kube.errors`.

Why raw calls: the connector handles arbitrary CRDs it learns about at run time, so typed
model classes do not exist for most of its objects, and a :class:`Resource` already says
everything a URL needs, so no discovery round-trip is made. The generated client is used only
for what it does well: TLS, authentication (including token refresh hooks from a kubeconfig)
and the urllib3 connection pool, which is thread-safe; so is :class:`KubeClient`. Requests go
to that pool directly, with the client's credentials and default headers: its generic request
path (header sanitizing, content-type dispatch, response wrapping) cost a quarter of each
request's CPU, and the connector makes two or three requests per change.

Every request has a connect and a read timeout. A ``429`` or ``5xx`` answer that carries a
``Retry-After`` header is retried up to ``max_retries`` times after that delay (capped), as
client-go does: the server sends it only when the request was not processed. Any other failure
is raised at once as a :mod:`connector.kube.errors` class; retrying with backoff is the
caller's decision (the work queue and the informer do it).

Watches (see :meth:`KubeClient.watch`) surface ``BOOKMARK`` events to the caller with
``type == "BOOKMARK"`` and an object carrying only ``metadata.resourceVersion``; a caller
that resumes watches must record that version, and a caller that does not care skips them.

Liveness: the client records when its server last answered and which requests wait for an
answer (``_traffic.Traffic``), can :meth:`~KubeClient.ping` it and
:meth:`~KubeClient.interrupt_watches`; :class:`connector.kube.liveness.LivenessMonitor`
uses them to notice a server that accepts connections but stopped answering.

Connection pool: it keeps :data:`SPARE_CONNECTIONS` connections plus one per connection its
users reserve (:meth:`KubeClient.reserve_connections`: an informer its watch, a controller
one per worker), so that users holding requests at once never overflow it. An overflowing
urllib3 pool closes the connections it cannot keep ("Connection pool is full, discarding
connection"), and the next request pays a new TCP and TLS handshake.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlencode

import structlog
import urllib3
import urllib3.exceptions
from kubernetes.client import ApiClient

from connector.kube._ratelimit import TokenBucket
from connector.kube._traffic import Traffic
from connector.kube.errors import (
    GoneError,
    KubeError,
    NotFoundError,
    TLSError,
    TooManyRequestsError,
    UnreachableError,
    error_from_response,
    error_from_transport,
)
from connector.kube.metrics import Metrics
from connector.kube.resources import SELF_SUBJECT_ACCESS_REVIEWS, Resource
from connector.kube.watch import WatchEvent, WatchStream

__all__ = ["KubeClient", "PatchType", "WatchEvent", "WatchStream"]

log = structlog.get_logger(__name__)

Object = dict[str, Any]
# ``KubeClient.list`` shadows the builtin inside the class body; name the types outside it.
_Objects = builtins.list[Object]

PatchType = Literal["merge", "json", "strategic"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
_APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

# Server-side watch timeout: short enough that a dead-but-open connection is noticed and the
# watch is re-established regularly, long enough not to churn. client-go uses 5-10 minutes.
DEFAULT_WATCH_TIMEOUT_SECONDS = 300
#: A watch that receives nothing for this long, not even a bookmark, is replaced by a new one
#: (``WatchStream.idle_expired``). API servers send a watch that asked for bookmarks one
#: every minute; the first can come after two (none is sent while the resource has seen no
#: change since the server started), so this is two minutes and a half.
WATCH_IDLE_SECONDS = 150
#: Connections the pool keeps beyond those reserved: ad-hoc requests (a command line, a
#: test's threads, the liveness probe of a client nobody reserved for).
SPARE_CONNECTIONS = 10
#: What :meth:`KubeClient.ping` asks for: exempt from API Priority and Fairness (the
#: ``probes`` FlowSchema), so a busy server answers it at once; any answer will do.
PING_PATH = "/livez"
DEFAULT_LIST_PAGE_SIZE = 500
DEFAULT_USER_AGENT = "api-connector"
_MAX_RETRY_AFTER = 10.0


class KubeClient:
    """A thread-safe client for one API server.

    ``name`` labels logs and metrics (e.g. ``consumer`` or the ClusterConnection's name).
    ``qps``/``burst`` bound the request rate client-side (``qps=None``: unbounded).
    The client sets ``user_agent`` on ``api_client``, which it owns from then on.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        name: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        qps: float | None = 50.0,
        burst: int = 100,
        max_retries: int = 3,
        metrics: Metrics | None = None,
        organization: str | None = None,
        user_agent: str | None = DEFAULT_USER_AGENT,
    ) -> None:
        self._api = api_client
        if user_agent:
            # The API server names the field manager of non-apply writes after the user
            # agent; "api-connector" reads better in managedFields and audit logs than the
            # generator's default.
            api_client.user_agent = user_agent
        self.name = name or self.server
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.organization = organization
        self._limiter = TokenBucket(qps, burst) if qps else None
        self._metrics = metrics
        self._log = log.bind(cluster=self.name)
        self.traffic = Traffic()
        #: A watch's idle deadline (see WATCH_IDLE_SECONDS); tests shorten it.
        self.watch_idle_seconds: float = WATCH_IDLE_SECONDS
        self._watches: weakref.WeakSet[WatchStream] = weakref.WeakSet()
        self._watches_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._reserved_connections = 0
        self._pool_size = 0
        #: The generated client's pool manager, which holds the TLS and proxy settings:
        #: requests go to it directly (module doc).
        self._pool: urllib3.PoolManager = api_client.rest_client.pool_manager
        self._size_pool()

    @property
    def server(self) -> str:
        """The API server's base URL."""
        return str(self._api.configuration.host)

    @property
    def api_client(self) -> ApiClient:
        """The underlying generated client, for code that needs a typed API."""
        return self._api

    def close(self) -> None:
        """Close pooled connections. The client must not be used afterwards."""
        self._api.close()  # type: ignore[no-untyped-call]

    # -- connections and liveness --------------------------------------------------------

    def reserve_connections(self, count: int) -> None:
        """Keep ``count`` more connections in the pool, for a user that holds up to that many
        requests at once (an informer's watch, a controller's workers)."""
        with self._pool_lock:
            self._reserved_connections += count
            self._size_pool()

    def release_connections(self, count: int) -> None:
        """Give back what :meth:`reserve_connections` reserved. The pool does not shrink:
        connections beyond a smaller size would be closed as they come back, which is the
        churn the reservation avoids; later reservations reuse the room."""
        with self._pool_lock:
            self._reserved_connections = max(0, self._reserved_connections - count)

    @property
    def pool_size(self) -> int:
        """How many idle connections the pool keeps."""
        return self._pool_size

    def _size_pool(self) -> None:
        size = SPARE_CONNECTIONS + self._reserved_connections
        if size <= self._pool_size:
            return
        self._pool_size = size
        # urllib3 sizes a host's pool when it creates it, from connection_pool_kw; a pool
        # that exists already is a LifoQueue whose maxsize may grow (get() opens a new
        # connection whenever the queue is empty, put() keeps one while below maxsize).
        manager = self._pool
        manager.connection_pool_kw["maxsize"] = size
        for key in list(manager.pools.keys()):
            pool = manager.pools.get(key)
            queue = getattr(pool, "pool", None)
            if queue is not None:
                queue.maxsize = max(queue.maxsize, size)

    def ping(self, *, timeout: float) -> None:
        """Ask the server for :data:`PING_PATH` and return once it answers, whatever the
        answer (an error status is an answer too). Raises :class:`UnreachableError` (or
        :class:`TLSError`) when no answer comes within ``timeout`` seconds, connect
        included. Not rate-limited: it must not queue behind the requests it checks on."""
        try:
            response = self._open(
                "GET",
                PING_PATH,
                query=None,
                body=None,
                content_type="application/json",
                verb="ping",
                read_timeout=timeout,
                connect_timeout=timeout,
                limited=False,
                retry=False,
            )
        except KubeError as e:
            if e.status is not None:
                return
            raise
        try:
            response.data  # noqa: B018 - read it all, so that the connection is reusable
        except urllib3.exceptions.HTTPError as e:
            raise self._transport_error(e, "ping") from e
        finally:
            response.release_conn()

    def interrupt_watches(self, error: KubeError) -> int:
        """Give up every watch open on this client: each one's reader gets ``error``
        (:meth:`WatchStream.abort`). Returns how many were open."""
        with self._watches_lock:
            streams = [s for s in self._watches if not s.closed]
        for stream in streams:
            stream.abort(error)
        return len(streams)

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KubeClient(name={self.name!r}, server={self.server!r})"

    # -- reads ---------------------------------------------------------------------------

    def get(self, res: Resource, name: str, namespace: str | None = None) -> Object:
        """Read one object. Raises :class:`NotFoundError` when it does not exist."""
        obj = self._json("GET", res.object_path(name, namespace))
        return res.with_type(obj)

    def get_or_none(self, res: Resource, name: str, namespace: str | None = None) -> Object | None:
        """Read one object; None when it does not exist.

        Raises :class:`NotFoundError` when the resource itself is not served (its CRD is not
        installed, its API is switched off): that says nothing about the object.
        """
        try:
            return self.get(res, name, namespace)
        except NotFoundError as e:
            if e.object_missing:
                return None
            raise

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        field_selector: str | None = None,
        page_size: int = DEFAULT_LIST_PAGE_SIZE,
        resource_version: str | None = None,
        resource_version_match: Literal["NotOlderThan", "Exact"] | None = None,
        transform: Callable[[Object], Object] | None = None,
    ) -> tuple[_Objects, str]:
        """List objects (all namespaces when ``namespace`` is None), following pagination.

        Returns the items (with ``apiVersion`` and ``kind`` filled in) and the list's
        resourceVersion, from which a watch continues. If a continue token expires while
        paging, the list restarts once without pagination, like client-go's pager.
        ``resource_version`` (with ``resource_version_match``) relaxes or pins consistency;
        the default is a consistent read of the latest state. ``transform`` is applied to
        each item as its page arrives, so that a list of many objects never holds them all
        in full at once (an informer keeps only what its cache needs).
        """
        path = res.collection_path(namespace)
        base: dict[str, str] = {}
        if label_selector:
            base["labelSelector"] = label_selector
        if field_selector:
            base["fieldSelector"] = field_selector
        if resource_version is not None:
            base["resourceVersion"] = resource_version
            if resource_version_match:
                base["resourceVersionMatch"] = resource_version_match
        try:
            return self._list_pages(res, path, base, page_size, transform)
        except GoneError:
            self._log.info(
                "A list continue token expired while paging; listing again in one request.",
                resource=res.group_resource,
            )
            return self._list_pages(res, path, base, 0, transform)

    def _list_pages(
        self,
        res: Resource,
        path: str,
        base: dict[str, str],
        page_size: int,
        transform: Callable[[Object], Object] | None,
    ) -> tuple[_Objects, str]:
        items: _Objects = []
        token = ""
        resource_version = ""
        while True:
            query = dict(base)
            if page_size > 0:
                query["limit"] = str(page_size)
            if token:
                # The continue token carries the snapshot's version; the server rejects both.
                query.pop("resourceVersion", None)
                query.pop("resourceVersionMatch", None)
                query["continue"] = token
            page = self._json("GET", path, query=query, verb="list")
            # Popped, so that the page's full objects go as each is transformed.
            typed = (res.with_type(item) for item in page.pop("items", None) or [])
            items.extend(typed if transform is None else map(transform, typed))
            meta = page.get("metadata") or {}
            # Every page of a paginated list is served from the first page's snapshot.
            resource_version = str(meta.get("resourceVersion") or resource_version)
            token = str(meta.get("continue") or "")
            if not token:
                return items, resource_version

    def watch(
        self,
        res: Resource,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = DEFAULT_WATCH_TIMEOUT_SECONDS,
        *,
        field_selector: str | None = None,
    ) -> WatchStream:
        """Watch changes after ``resource_version``; iterate the result for :class:`WatchEvent`.

        The stream ends normally when the server closes it after ``timeout_seconds``; resume
        from the last event's (or bookmark's) resourceVersion, kept in
        :attr:`WatchStream.resource_version`. An ERROR event with 410 raises
        :class:`GoneError` (relist); any other ERROR raises its :class:`KubeError`.
        :meth:`WatchStream.close` ends the stream promptly from another thread. Use it as
        a context manager so the connection is released.
        """
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(int(timeout_seconds)),
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        path = res.collection_path(namespace)
        stream = WatchStream(
            open_stream=lambda read_timeout: self._open(
                "GET",
                path,
                query=query,
                body=None,
                content_type="application/json",
                verb="watch",
                read_timeout=read_timeout,
            ),
            transport_error=self._transport_error,
            server=self.server,
            res=res,
            resource_version=resource_version,
            # The read timeout is the stream's idle deadline: bookmarks keep a healthy watch
            # talking; a short session ends (at the server) before it anyway.
            read_timeout=min(float(timeout_seconds) + self.read_timeout, self.watch_idle_seconds),
            on_data=self.traffic.heard,
        )
        with self._watches_lock:
            self._watches.add(stream)
        return stream

    def server_version(self) -> Object:
        """The server's ``/version`` (``gitVersion``, ``major``, ``minor``, ...)."""
        return self._json("GET", "/version", verb="version")

    def self_subject_access_review(
        self,
        verb: str,
        group: str,
        resource: str,
        namespace: str | None = None,
        *,
        name: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        """Whether this client's identity may ``verb`` the ``resource`` of ``group``."""
        attributes: dict[str, str] = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attributes["namespace"] = namespace
        if name:
            attributes["name"] = name
        if subresource:
            attributes["subresource"] = subresource
        review = {
            "apiVersion": SELF_SUBJECT_ACCESS_REVIEWS.api_version,
            "kind": SELF_SUBJECT_ACCESS_REVIEWS.kind,
            "spec": {"resourceAttributes": attributes},
        }
        # Counted as "review", not "create": it stores nothing, and request metrics that
        # count creates should count objects created.
        result = self._json(
            "POST", SELF_SUBJECT_ACCESS_REVIEWS.collection_path(), body=review, verb="review"
        )
        return bool((result.get("status") or {}).get("allowed"))

    # -- writes --------------------------------------------------------------------------

    def create(
        self, res: Resource, obj: Mapping[str, Any], *, field_manager: str | None = None
    ) -> Object:
        """Create ``obj`` (its namespace from metadata). :class:`ConflictError` if it exists."""
        body = res.with_type(dict(obj))
        query = {"fieldManager": field_manager} if field_manager else None
        path = res.collection_path(_namespace_of(obj, res))
        out = self._json("POST", path, body=body, query=query)
        return res.with_type(out)

    def create_subresource(
        self,
        res: Resource,
        name: str,
        namespace: str | None,
        subresource: str,
        body: Mapping[str, Any],
    ) -> Object:
        """POST ``body`` to a subresource, e.g. a ``TokenRequest`` to ``serviceaccounts/token``;
        returns the server's answer (the body's kind, not ``res``'s)."""
        return self._json(
            "POST", res.object_path(name, namespace, subresource=subresource), body=dict(body)
        )

    def update(
        self, res: Resource, obj: Mapping[str, Any], *, field_manager: str | None = None
    ) -> Object:
        """Replace ``obj`` (PUT); its ``metadata.resourceVersion`` makes the write conditional."""
        body = res.with_type(dict(obj))
        query = {"fieldManager": field_manager} if field_manager else None
        out = self._json("PUT", self._path_of(res, obj), body=body, query=query)
        return res.with_type(out)

    def update_status(
        self, res: Resource, obj: Mapping[str, Any], *, field_manager: str | None = None
    ) -> Object:
        """Replace the status subresource of ``obj`` (PUT .../status)."""
        body = res.with_type(dict(obj))
        query = {"fieldManager": field_manager} if field_manager else None
        out = self._json(
            "PUT", self._path_of(res, obj, subresource="status"), body=body, query=query
        )
        return res.with_type(out)

    def apply(
        self, res: Resource, obj: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> Object:
        """Server-side apply ``obj`` as ``field_manager``; creates the object if missing.

        An apply that changes nothing leaves the resourceVersion alone, so applying the same
        intent repeatedly is free. ``force`` takes over fields owned by other managers;
        without it such a field raises :class:`ConflictError`.
        """
        return self._apply(res, obj, field_manager, force, subresource=None)

    def apply_status(
        self, res: Resource, obj: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> Object:
        """Server-side apply on the status subresource (only ``status`` is taken from ``obj``)."""
        return self._apply(res, obj, field_manager, force, subresource="status")

    def _apply(
        self,
        res: Resource,
        obj: Mapping[str, Any],
        field_manager: str,
        force: bool,
        *,
        subresource: str | None,
    ) -> Object:
        if not field_manager:
            raise ValueError("Server-side apply needs a field manager.")
        body = res.with_type(dict(obj))
        metadata = body.get("metadata")
        if isinstance(metadata, Mapping) and "managedFields" in metadata:
            # An apply body must not carry managedFields (the server rejects it); objects
            # read from a cache do, and the intent is clear without them.
            body["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
        query = {"fieldManager": field_manager, "force": "true" if force else "false"}
        out = self._json(
            "PATCH",
            self._path_of(res, obj, subresource=subresource),
            body=body,
            query=query,
            # JSON is YAML, and the server parses apply bodies as YAML; sending JSON avoids
            # YAML's implicit typing ("yes", "1e3") changing values.
            content_type=_APPLY_CONTENT_TYPE,
            verb="apply",
        )
        return res.with_type(out)

    def patch(
        self,
        res: Resource,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any] | builtins.list[Any],
        patch_type: PatchType = "merge",
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> Object:
        """Patch one object: ``merge`` (RFC 7386), ``json`` (RFC 6902, a list of operations)
        or ``strategic`` (built-in types only)."""
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"Unknown patch type {patch_type!r}; use merge, json or strategic.")
        if patch_type == "json" and not isinstance(patch, builtins.list):
            raise ValueError("A JSON patch is a list of operations.")
        if patch_type != "json" and not isinstance(patch, Mapping):
            raise ValueError(f"A {patch_type} patch is an object.")
        query = {"fieldManager": field_manager} if field_manager else None
        out = self._json(
            "PATCH",
            res.object_path(name, namespace, subresource=subresource),
            body=patch if isinstance(patch, builtins.list) else dict(patch),
            query=query,
            content_type=content_type,
        )
        return res.with_type(out)

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        preconditions_uid: str | None = None,
        preconditions_resource_version: str | None = None,
        propagation: Literal["Foreground", "Background", "Orphan"] | None = None,
    ) -> None:
        """Delete one object. Raises :class:`NotFoundError` if it is already gone, so callers
        decide whether that is fine; a uid precondition that no longer matches raises
        :class:`ConflictError` (the name now belongs to a different object)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        preconditions: dict[str, str] = {}
        if preconditions_uid:
            preconditions["uid"] = preconditions_uid
        if preconditions_resource_version:
            preconditions["resourceVersion"] = preconditions_resource_version
        if preconditions:
            body["preconditions"] = preconditions
        if propagation:
            body["propagationPolicy"] = propagation
        self._json("DELETE", res.object_path(name, namespace), body=body)

    # -- transport -----------------------------------------------------------------------

    def _path_of(
        self, res: Resource, obj: Mapping[str, Any], *, subresource: str | None = None
    ) -> str:
        name = str((obj.get("metadata") or {}).get("name") or "")
        return res.object_path(name, _namespace_of(obj, res), subresource=subresource)

    def _json(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        verb: str | None = None,
    ) -> Object:
        response = self._open(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            verb=verb,
            read_timeout=self.read_timeout,
        )
        try:
            data = response.data
        except urllib3.exceptions.HTTPError as e:
            raise self._transport_error(e, verb or method) from e
        finally:
            response.release_conn()
        if not data:
            return {}
        try:
            decoded = json.loads(data)
        except ValueError as e:
            raise KubeError(
                f"The API server {self.server} answered {method} {path} with a body that is "
                "not JSON.",
                status=response.status,
                reason="InvalidResponse",
            ) from e
        if not isinstance(decoded, dict):
            raise KubeError(
                f"The API server {self.server} answered {method} {path} with JSON that is not "
                "an object.",
                status=response.status,
                reason="InvalidResponse",
            )
        return decoded

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        verb: str | None,
        read_timeout: float,
        connect_timeout: float | None = None,
        limited: bool = True,
        retry: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request (retrying a Retry-After answer); return the open 2xx response.

        The caller reads the body and releases the connection.
        """
        verb = verb or _verb_of(method)
        resource_path = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        encoded = None if body is None else json.dumps(body).encode()
        timeout = urllib3.Timeout(
            connect=connect_timeout or self.connect_timeout, read=read_timeout
        )
        url = self._api.configuration.host + resource_path
        attempt = 0
        while True:
            if limited and self._limiter is not None:
                self._limiter.wait()
            try:
                with self.traffic.waiting():
                    response = self._pool.request(
                        method,
                        url,
                        body=encoded,
                        headers=self._headers(method, resource_path, headers),
                        timeout=timeout,
                        preload_content=False,
                    )
                    self.traffic.heard()
            except urllib3.exceptions.HTTPError as e:
                error = self._transport_error(e, verb)
                raise error from e
            status = int(response.status)
            if 200 <= status < 300:
                self._count(verb, None, status=status)
                return response
            try:
                error_body = response.data
            except urllib3.exceptions.HTTPError:
                error_body = b""
            finally:
                response.release_conn()
            error = error_from_response(
                status, error_body, headers=response.headers, http_reason=response.reason
            )
            self._count(verb, error)
            retryable = retry and (isinstance(error, TooManyRequestsError) or status >= 500)
            if retryable and error.retry_after is not None and attempt < self.max_retries:
                attempt += 1
                delay = min(error.retry_after, _MAX_RETRY_AFTER)
                self._log.info(
                    "The API server asked us to retry later; waiting before retrying.",
                    method=method,
                    path=path,
                    status=status,
                    delay_seconds=delay,
                    attempt=attempt,
                )
                time.sleep(delay)
                continue
            raise error

    def _headers(self, method: str, resource_path: str, headers: dict[str, str]) -> dict[str, str]:
        """A request's headers: its own, the client's defaults (User-Agent) and its
        credentials, which the configuration's hook refreshes (exec, OIDC) when it has one."""
        request_headers = {**headers, **self._api.default_headers}
        if self._api.cookie:
            request_headers["Cookie"] = self._api.cookie
        self._api.update_params_for_auth(
            request_headers, None, ["BearerToken"], resource_path, method, None
        )
        return request_headers

    def _transport_error(self, exc: BaseException, verb: str) -> KubeError:
        if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
            error = error_from_transport(exc.reason, server=self.server)
        else:
            error = error_from_transport(exc, server=self.server)
        self._count(verb, error)
        return error

    def _count(self, verb: str, error: KubeError | None, *, status: int | None = None) -> None:
        if self._metrics is None:
            return
        if error is None:
            label = str(status)
        elif isinstance(error, TLSError):
            label = "tls"
        elif isinstance(error, UnreachableError):
            label = "unreachable"
        else:
            label = str(error.status or "unknown")
        self._metrics.api_requests.labels(self.name, verb, label).inc()
        if error is not None:
            self._metrics.api_request_errors.labels(self.name, label).inc()


def _namespace_of(obj: Mapping[str, Any], res: Resource) -> str | None:
    if not res.namespaced:
        return None
    return (obj.get("metadata") or {}).get("namespace") or None


def _verb_of(method: str) -> str:
    return {
        "GET": "get",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method, method.lower())
