"""Reconcile one ClusterConnection: credentials → provider CRDs → CRD-puller → consumer.

Side effects are passed in (``ConnectionDeps``); ``reconcile_connection`` only decides. The
controller module wires them to informer caches and Kubernetes clients.

Two connections whose providers offer a CRD of the same name both want to install it in the
consumer; the first one to do so owns it (its ``connect.upbound.io/connection`` label) and
the other reports a conflict. So that the second cannot overwrite the first's CRD before the
consumer cache shows it, each CRD is checked and written under ``ConnectionDeps.crd_writes``
(one lock for every connection), against the newest copy known (:func:`install_crd`).

Errors never delete anything: the Ready condition names the reason (``SecretNotFound``,
``InvalidSecret``, ``InvalidKubeconfig``, ``Unauthorized``, ``Forbidden``,
``ProviderUnreachable``, ``ProviderNotAnswering``, ``TLSError``, ``ProviderError``), the
offered APIs of the last successful pull are kept, and the CRDs already installed stay.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from connector.kube.config import ConfigError
from connector.kube.errors import (
    ForbiddenError,
    KubeError,
    TLSError,
    UnauthorizedError,
    UnreachableError,
)
from connector.kube.liveness import NOT_ANSWERING
from connector.runtime.workqueue import Result
from functions.common import LABEL_CONNECTION, find_condition
from functions.common.api import DEFAULT_NAMESPACE
from functions.common.objects import Obj, label_value
from functions.crd_puller.types import CRDConflict, ProviderError, PullRequest, PullResult

log = structlog.get_logger(__name__)

KUBECONFIG = "KubeConfig"
ROBOT_TOKEN = "UpboundRobotToken"
ROBOT_TOKEN_KEYS = (
    "token",
    "organization",
    "spacesBaseURL",
    "controlPlaneGroupName",
    "controlPlaneName",
)
#: Optional, beyond Upbound's keys: the PEM CA of a private Spaces endpoint.
ROBOT_TOKEN_CA_KEY = "caData"


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Provider credentials read from the connection's Secret (never logged)."""

    kind: str
    data: dict[str, str]

    def fingerprint(self) -> str:
        """A digest that changes whenever the credentials change."""
        h = hashlib.sha256(self.kind.encode())
        for key in sorted(self.data):
            h.update(b"\0" + key.encode() + b"\0" + self.data[key].encode())
        return h.hexdigest()

    def __repr__(self) -> str:  # keep secret material out of logs and tracebacks
        return f"Credentials(kind={self.kind!r}, keys={sorted(self.data)!r})"


class CredentialsError(Exception):
    """The Secret cannot be used; ``reason`` becomes the connection's Ready reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NotSynced(Exception):
    """A cache the reconcile reads has not been listed yet. The reconcile ends without a
    verdict; the cache wakes the connection when its first list ends (or fails)."""


class ProviderView(Protocol):
    """The provider as one connection sees it, backed by a CRD informer."""

    def bindable_crds(self) -> list[Obj]:
        """The bindable provider CRDs; raises the list/watch error, or NotSynced."""


@dataclass(frozen=True, kw_only=True)
class ConnectionDeps:
    get_connection: Callable[[str], Obj | None]
    #: A Secret from the cache, or None; raises NotSynced before the cache's first list,
    #: and the cache's KubeError if that list fails.
    get_secret: Callable[[str, str], Obj | None]
    #: Returns the provider view for these credentials, reusing the running one when the
    #: credentials are unchanged. Raises ConfigError or KubeError.
    connect: Callable[[str, Credentials], ProviderView]
    #: Stops the connection's provider informers and forgets its client.
    disconnect: Callable[[str], None]
    #: Every consumer CRD as last seen: the cache, or our own newer write.
    consumer_crds: Callable[[], list[Obj]]
    #: One consumer CRD as last seen, or None.
    consumer_crd: Callable[[str], Obj | None]
    #: Writes a CRD and remembers the answer (read back by the two above).
    apply_crd: Callable[[Obj], None]
    write_status: Callable[[str, dict[str, Any]], None]
    pull: Callable[[PullRequest], PullResult]
    #: Tells the user once per change (a Warning Event on the connection and a log line).
    warn: Callable[[Obj, str, str], None]
    now: Callable[[], str]
    #: Tells the user that an earlier warning no longer applies (a Normal Event).
    resolved: Callable[[Obj, str, str], None] = lambda _obj, _reason, _message: None
    #: Remembers the provider CRDs the connection offers but does not pull (a consumer CRD
    #: of that name belongs to another connection), for its bindings to name.
    record_conflicts: Callable[[str, list[CRDConflict]], None] = lambda _name, _conflicts: None
    #: Held while a CRD is checked and written: shared by every connection's reconciles.
    crd_writes: AbstractContextManager[object] = field(default_factory=contextlib.nullcontext)


def credentials_from_secret(secret: Obj, kind: str) -> Credentials:
    """Decode the Secret's keys for ``kind``; raise CredentialsError if unusable."""
    meta = secret.get("metadata", {})
    where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    values: dict[str, str] = {}
    for key, raw in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(raw, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CredentialsError(
                "InvalidSecret", f"{where}: key {key!r} is not valid base64-encoded text."
            ) from None
    for key, value in (secret.get("stringData") or {}).items():
        values[key] = str(value)
    if kind == KUBECONFIG:
        if not values.get("kubeconfig", "").strip():
            raise CredentialsError(
                "InvalidSecret", f"{where} has no key 'kubeconfig' with a kubeconfig."
            )
        return Credentials(kind=kind, data={"kubeconfig": values["kubeconfig"]})
    if kind == ROBOT_TOKEN:
        missing = [k for k in ROBOT_TOKEN_KEYS if not values.get(k, "").strip()]
        if missing:
            raise CredentialsError(
                "InvalidSecret", f"{where} lacks the robot-token keys {', '.join(missing)}."
            )
        data = {k: values[k].strip() for k in ROBOT_TOKEN_KEYS}
        if values.get(ROBOT_TOKEN_CA_KEY, "").strip():
            data[ROBOT_TOKEN_CA_KEY] = values[ROBOT_TOKEN_CA_KEY]
        return Credentials(kind=kind, data=data)
    raise CredentialsError(
        "InvalidSecret",
        f"secretRef.kind {kind!r} is not supported; use {KUBECONFIG} or {ROBOT_TOKEN}.",
    )


def provider_error_for(exc: Exception) -> ProviderError:  # noqa: PLR0911 - a table: one return per error class
    """The Ready reason and message for a failure to reach or read the provider."""
    if isinstance(exc, CredentialsError):
        return ProviderError(reason=exc.reason, message=exc.message)
    if isinstance(exc, ConfigError):
        return ProviderError(reason="InvalidKubeconfig", message=f"Invalid kubeconfig: {exc}")
    if isinstance(exc, UnauthorizedError):
        return ProviderError(
            reason="Unauthorized", message=f"The provider rejected the credentials: {exc}"
        )
    if isinstance(exc, ForbiddenError):
        return ProviderError(
            reason="Forbidden",
            message=f"The provider credentials may not list CustomResourceDefinitions: {exc}",
        )
    if isinstance(exc, TLSError):
        return ProviderError(reason="TLSError", message=f"TLS with the provider failed: {exc}")
    if isinstance(exc, UnreachableError) and exc.reason == NOT_ANSWERING:
        return ProviderError(reason="ProviderNotAnswering", message=exc.message)
    if isinstance(exc, UnreachableError):
        return ProviderError(
            reason="ProviderUnreachable", message=f"The provider is unreachable: {exc}"
        )
    if isinstance(exc, KubeError):
        return ProviderError(reason="ProviderError", message=f"Reading the provider failed: {exc}")
    raise exc


#: Fixed by editing the Secret or the connection, which wakes the reconcile; no retry.
_FIXED_BY_AN_EDIT = {"SecretNotFound", "InvalidSecret", "InvalidKubeconfig"}


def reconcile_connection(name: str, deps: ConnectionDeps) -> Result:
    """Bring the consumer's CRDs and the connection's status in line with the provider."""
    conn = deps.get_connection(name)
    if conn is None or conn.get("metadata", {}).get("deletionTimestamp"):
        deps.disconnect(name)
        deps.record_conflicts(name, [])
        return Result()
    spec = conn.get("spec") or {}
    ref = spec.get("secretRef") or {}
    pull_behavior = str((spec.get("crdManagement") or {}).get("pullBehavior") or "Pull")

    provider_crds: list[Obj] = []
    provider_error: ProviderError | None = None
    try:
        creds = _credentials(ref, deps)
        view = deps.connect(name, creds)
        provider_crds = view.bindable_crds()
    except NotSynced as exc:
        log.debug("Waiting for a cache to be listed.", connection=name, detail=str(exc))
        return Result()
    except (CredentialsError, ConfigError, KubeError) as exc:
        provider_error = provider_error_for(exc)
        if provider_error.reason in _FIXED_BY_AN_EDIT:
            # A Secret that cannot be used stops the old provider watch: it would keep
            # running with credentials the user has withdrawn.
            deps.disconnect(name)

    status = conn.get("status") or {}
    names = {str(c.get("metadata", {}).get("name")) for c in provider_crds}
    result = deps.pull(
        PullRequest(
            connection_name=name,
            provider_crds=provider_crds,
            consumer_crds=crds_to_compare(name, names, deps.consumer_crds()),
            pull_behavior=pull_behavior,
            provider_error=provider_error,
            previous_conditions=list(status.get("conditions") or []),
            now=deps.now(),
        )
    )
    for crd in result.apply:
        owner = install_crd(crd, deps)
        if owner is not None:
            # The next pull sees that CRD, and reports the conflict.
            log.info(
                "Left a CRD as it is: another connection installed it meanwhile.",
                connection=name,
                crd=_name(crd),
                owner=owner,
            )
            return Result(requeue=True)
    for conflict in result.conflicts:
        deps.warn(conn, "CRDConflict", conflict.message)
    if provider_error is None:
        deps.record_conflicts(name, list(result.conflicts))

    offered = [o.to_status() for o in result.offered]
    withheld = [w.to_status() for w in result.withheld]
    if provider_error is not None:
        # Keep what was offered: an outage must not look like the APIs were withdrawn.
        offered = list(status.get("offeredAPIs") or [])
        withheld = list(status.get("withheldAPIs") or [])
        deps.warn(conn, provider_error.reason, provider_error.message)
    desired = {"conditions": result.conditions, "offeredAPIs": offered, "withheldAPIs": withheld}
    current = {
        "conditions": status.get("conditions") or [],
        "offeredAPIs": status.get("offeredAPIs") or [],
        "withheldAPIs": status.get("withheldAPIs") or [],
    }
    if desired != current:
        deps.write_status(name, desired)
        ready = find_condition(result.conditions, "Ready") or {}
        log.info(
            "The connection's status changed.",
            connection=name,
            ready=ready.get("status"),
            reason=ready.get("reason"),
            offered=[o["name"] for o in offered],
        )
    ready = find_condition(result.conditions, "Ready") or {}
    if ready.get("status") == "True" and not result.conflicts:
        deps.resolved(conn, str(ready.get("reason")), str(ready.get("message")))
    if provider_error is not None and provider_error.reason not in _FIXED_BY_AN_EDIT:
        return Result(requeue=True)
    return Result()


def crds_to_compare(connection: str, names: set[str], crds: Iterable[Obj]) -> list[Obj]:
    """The consumer CRDs the CRD-puller compares with the provider's: those named like a
    provider CRD (``names``), and those labelled as the connection's (to release them)."""
    owner = label_value(connection)
    return sorted(
        (crd for crd in crds if _name(crd) in names or crd_owner(crd) == owner),
        key=_name,
    )


def crd_owner(crd: Obj) -> str | None:
    """The connection label of a consumer CRD (the connection that installed it), if any."""
    return (crd.get("metadata", {}).get("labels") or {}).get(LABEL_CONNECTION)


def install_crd(crd: Obj, deps: ConnectionDeps) -> str | None:
    """Apply a CRD the puller wants, unless a CRD of that name that the connection does not
    own has appeared since the pull read the consumer (another connection's reconcile
    installed it meanwhile): that one is never taken over. Returns its owner ("" for
    none) in that case, None when applied."""
    with deps.crd_writes:
        current = deps.consumer_crd(_name(crd))
        if current is not None and crd_owner(current) != crd_owner(crd):
            return crd_owner(current) or ""
        deps.apply_crd(crd)
    return None


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name"))


def secret_namespace(ref: Mapping[str, Any]) -> str:
    """The namespace of a connection's ``spec.secretRef``; Upbound's convention when unset."""
    return str(ref.get("namespace") or DEFAULT_NAMESPACE)


def _credentials(ref: dict[str, Any], deps: ConnectionDeps) -> Credentials:
    kind = str(ref.get("kind") or KUBECONFIG)
    ns = secret_namespace(ref)
    secret_name = str(ref.get("name") or "")
    if not secret_name:
        raise CredentialsError("InvalidSecret", "spec.secretRef.name is empty.")
    try:
        secret = deps.get_secret(ns, secret_name)
    except KubeError as exc:
        raise CredentialsError(
            "SecretNotFound", f"Secret {ns}/{secret_name} cannot be read: {exc}"
        ) from exc
    if secret is None:
        raise CredentialsError("SecretNotFound", f"Secret {ns}/{secret_name} was not found.")
    return credentials_from_secret(secret, kind)
