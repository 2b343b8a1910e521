"""Namespace creation and deletion on a cluster that runs no kube-controller-manager.

Without the namespace controller a deleted namespace stays ``Terminating`` forever, with
all its objects, and code under test that watches every namespace keeps seeing them. So
deletion here does the controller's job: delete every namespaced collection, clear the
namespace's finalizers, then delete it again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_TIMEOUT = 10.0


class RequestError(Exception):
    """The API server answered with an unexpected status."""


def create_namespace(api: ApiClient, name: str, *, labels: dict[str, str] | None = None) -> None:
    """Create namespace ``name`` (with ``labels``)."""
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
    _request(api, "POST", "/api/v1/namespaces", body=body)


def delete_namespace(api: ApiClient, name: str) -> None:
    """Delete namespace ``name`` and what it holds; nothing if it does not exist.

    Objects that carry finalizers stay behind (nothing would remove them), but the namespace
    itself is gone when this returns.
    """
    path = f"/api/v1/namespaces/{name}"
    if _request(api, "DELETE", path, allow=(404,)) is None:
        return
    for collection in _namespaced_collections(api):
        _request(api, "DELETE", collection.format(namespace=name), allow=(404, 405))
    namespace = _request(api, "GET", path, allow=(404,))
    if namespace is None:
        return
    namespace.setdefault("spec", {})["finalizers"] = []
    _request(api, "PUT", f"{path}/finalize", body=namespace, allow=(404, 409))
    _request(api, "DELETE", path, allow=(404,))


def _namespaced_collections(api: ApiClient) -> list[str]:
    """Paths like ``/api/v1/namespaces/{namespace}/configmaps`` for every namespaced
    resource (preferred version of each group) that supports ``deletecollection``."""
    group_versions = ["/api/v1"]
    groups = _request(api, "GET", "/apis") or {}
    for group in groups.get("groups", []):
        preferred = group.get("preferredVersion", {}).get("groupVersion")
        if preferred:
            group_versions.append(f"/apis/{preferred}")
    paths: list[str] = []
    for prefix in group_versions:
        resources = _request(api, "GET", prefix, allow=(404, 503)) or {}
        for resource in resources.get("resources", []):
            if (
                resource.get("namespaced")
                and "/" not in resource["name"]
                and "deletecollection" in resource.get("verbs", [])
            ):
                paths.append(f"{prefix}/namespaces/{{namespace}}/{resource['name']}")
    return paths


def _request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    allow: tuple[int, ...] = (),
) -> Any:
    """One request with ``api``'s credentials; the decoded JSON, or None for an allowed
    error status."""
    from kubernetes.client.exceptions import ApiException

    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    _, url, request_headers, _, _ = api.param_serialize(
        method, path, header_params=headers, auth_settings=["BearerToken"]
    )
    try:
        response = api.call_api(
            method, url, header_params=request_headers, body=body, _request_timeout=_TIMEOUT
        )
        data = response.read()  # type: ignore[no-untyped-call]
        status = int(response.status)
    except ApiException as e:
        status, data = int(e.status or 0), (e.body or "")
    if 200 <= status < 300:
        return json.loads(data or b"null")
    if status in allow:
        return None
    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
    raise RequestError(f"{method} {path} answered {status}: {text[:500]}")
