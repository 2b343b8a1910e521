"""Connection Secrets: which provider Secret a consumer object's connection details come
from, and what to write in the consumer (docs/semantics.md, Connection Secrets).

Pure: the orchestrator reads the Secrets, calls :func:`plan`, and makes the writes.

The rule, one for Crossplane v1-style claims and v2 namespaced XRs alike:

- a consumer object asks for its connection details with ``spec.writeConnectionSecretToRef.name``
  (a claim's own field; a v2 XRD declares it in its schema by convention);
- they come from the Secret that the twin's ``spec.writeConnectionSecretToRef`` names, in
  the twin's namespace (or the ref's namespace for a cluster-scoped twin), provided it is
  controlled by the twin (its controller ownerReference carries the twin's uid), as
  Crossplane itself checks before propagating a Secret: a consumer that names someone
  else's Secret gets nothing. Crossplane writes a claim's Secret so; a v2 Composition
  composes it so (a composed resource is controlled by its XR);
- the twin must be this consumer object's (the origin labels name this cluster and uid);
- the consumer gets a Secret of the name it asked for, in its own namespace, with the
  provider Secret's type and data, labelled as the connector's and owned by the object.
  A Secret of that name the connector did not write for this object is never touched.
  Secrets the connector wrote for the object under another name, or that it no longer
  asks for, or while it is being deleted, are deleted.

The verdict is the consumer object's ``ConnectionSecretSynced`` condition; its messages name
Secrets and namespaces, never their content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from functions.common.api import (
    CONNECTION_SECRET_TYPE,
    LABEL_CONNECTION_SECRET_FOR,
    LABEL_CONSUMER_CLUSTER,
    LABEL_CONSUMER_UID,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from functions.common.objects import Obj, label_value, metadata, string_map

REASON_SYNCED = "Synced"
REASON_WAITING = "Waiting"
REASON_CONFLICT = "ConnectionSecretConflict"
REASON_FORBIDDEN = "ProviderSecretForbidden"
REASON_NOT_CONTROLLED = "ProviderSecretNotControlled"
REASON_DISABLED = "ConnectionSecretsDisabled"
REASON_CONSUMER_FORBIDDEN = "ConsumerSecretForbidden"

#: Verdicts the user should be told about with a Warning Event, not only the condition.
WARNING_REASONS = frozenset(
    {
        REASON_CONFLICT,
        REASON_FORBIDDEN,
        REASON_NOT_CONTROLLED,
        REASON_DISABLED,
        REASON_CONSUMER_FORBIDDEN,
    }
)


@dataclass(frozen=True)
class SecretRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Verdict:
    """The ``ConnectionSecretSynced`` condition to set."""

    status: str
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        return self.reason in WARNING_REASONS


@dataclass(frozen=True, kw_only=True)
class SecretRequest:
    consumer: Obj
    #: The twin as last seen, or None.
    twin: Obj | None
    consumer_cluster: str
    #: ``<plural>.<group>`` of the bound API (the label on the Secrets the connector writes).
    crd_name: str
    #: The provider Secret :func:`source_of` names, or None if it does not exist (yet).
    source: Obj | None = None
    #: Set when the provider refused to let the connector read it: the server's message.
    source_forbidden: str | None = None
    #: The consumer Secret of the name the object asks for, whoever wrote it, or None.
    existing: Obj | None = None
    #: The consumer Secrets the connector wrote for this object (any name).
    owned: list[Obj] = field(default_factory=list)
    #: False: this connector runs with connection Secrets turned off.
    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class SecretPlan:
    #: The consumer Secret to create or update; None: nothing to write.
    write: Obj | None = None
    #: The existing Secret has another type (immutable): delete it before writing.
    replace: bool = False
    #: Names of the connector's Secrets of this object to delete.
    delete: list[str] = field(default_factory=list)
    #: The condition to set; None: remove it (the object asks for no connection Secret).
    verdict: Verdict | None = None


def wanted_name(consumer: Obj) -> str | None:
    """The name of the consumer Secret ``consumer`` asks for; None while it is deleted, and
    for a cluster-scoped object (whose Secret would have no namespace of its own)."""
    meta = metadata(consumer)
    if meta.get("deletionTimestamp") or not meta.get("namespace"):
        return None
    return _ref_name(consumer)


def source_of(twin: Obj | None) -> SecretRef | None:
    """The provider Secret the twin's connection details are in (module doc), or None."""
    if twin is None:
        return None
    name = _ref_name(twin)
    if name is None:
        return None
    ref = (twin.get("spec") or {}).get("writeConnectionSecretToRef") or {}
    namespace = metadata(twin).get("namespace") or ref.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        return None
    return SecretRef(namespace, name)


def plan(req: SecretRequest) -> SecretPlan:
    """What to write and delete in the consumer, and the condition (module doc)."""
    consumer = req.consumer
    name = wanted_name(consumer)
    stale = sorted(
        str(metadata(s).get("name")) for s in req.owned if metadata(s).get("name") != name
    )
    if name is None:
        return SecretPlan(delete=stale)
    if not req.enabled:
        return SecretPlan(
            delete=stale,
            verdict=Verdict(
                "False",
                REASON_DISABLED,
                f"The connection Secret {name} is not written: this connector runs with "
                "connection Secrets turned off (Helm value connectionSecrets.enabled=false)",
            ),
        )
    existing = req.existing
    if existing is not None and not is_ours(existing, consumer):
        return SecretPlan(
            delete=stale,
            verdict=Verdict(
                "False",
                REASON_CONFLICT,
                f"A Secret {name} that the connector did not write for this object exists "
                "in its namespace; it is left untouched. Delete it, or ask for another name "
                "in spec.writeConnectionSecretToRef.name",
            ),
        )
    waiting = _waiting_for(req)
    if waiting is not None:
        return SecretPlan(delete=stale, verdict=waiting)
    source = req.source
    assert source is not None  # _waiting_for said so
    desired = desired_secret(consumer, source, name=name, crd_name=req.crd_name)
    synced = Verdict(
        "True", REASON_SYNCED, f"The connection Secret {name} is copied from the provider"
    )
    if existing is not None and _same(existing, desired):
        return SecretPlan(delete=stale, verdict=synced)
    replace = existing is not None and existing.get("type", "Opaque") != desired["type"]
    return SecretPlan(write=desired, replace=replace, delete=stale, verdict=synced)


def _waiting_for(req: SecretRequest) -> Verdict | None:
    """Why the provider Secret cannot be copied (yet), or None when it can."""
    twin = req.twin
    if twin is None or not _twin_is_ours(twin, req.consumer, req.consumer_cluster):
        return Verdict("False", REASON_WAITING, "Waiting for the object to exist in the provider")
    ref = source_of(twin)
    if ref is None:
        return Verdict(
            "False",
            REASON_WAITING,
            "Waiting for the provider object to name its connection Secret "
            "(spec.writeConnectionSecretToRef)",
        )
    if req.source_forbidden is not None:
        return Verdict(
            "False",
            REASON_FORBIDDEN,
            f"The connector's identity in the provider may not read the connection Secret "
            f"{ref}: it needs get, list and watch on secrets in the namespace {ref.namespace} "
            "(api-connector install grants it with --placement Isolated, or with "
            "--connection-secrets in the Default placement; docs/security.md, Connection "
            "Secrets, weighs them). The provider "
            f"said: {req.source_forbidden}",
        )
    source = req.source
    if source is None:
        return Verdict(
            "False", REASON_WAITING, f"Waiting for the provider to write the Secret {ref}"
        )
    if not _controlled_by(source, twin):
        return Verdict(
            "False",
            REASON_NOT_CONTROLLED,
            f"The provider Secret {ref} is not controlled by the provider object (its "
            "controller ownerReference names another object), so it is not copied",
        )
    return None


def consumer_forbidden(namespace: str, server_message: str) -> Verdict:
    """The verdict when the consumer refused the connector a read or write of Secrets."""
    return Verdict(
        "False",
        REASON_CONSUMER_FORBIDDEN,
        f"The connector may not read or write Secrets in the namespace {namespace} of this "
        "cluster (it needs get, list, watch, create, update and delete on secrets; the Helm "
        f"chart grants them with connectionSecrets.enabled=true). The server said: "
        f"{server_message}",
    )


def desired_secret(consumer: Obj, source: Obj, *, name: str, crd_name: str) -> Obj:
    """The consumer Secret: the provider Secret's type and data, marked as the connector's."""
    meta = metadata(consumer)
    data = source.get("data")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_CONNECTION_SECRET_FOR: label_value(crd_name),
            },
            "ownerReferences": [
                {
                    "apiVersion": consumer["apiVersion"],
                    "kind": consumer["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "type": str(source.get("type") or CONNECTION_SECRET_TYPE),
        "data": dict(data) if isinstance(data, dict) else {},
    }


def is_ours(secret: Obj, consumer: Obj) -> bool:
    """Whether the connector wrote ``secret`` for ``consumer``: its labels, and an
    ownerReference to this very object (uid)."""
    labels = string_map(secret, "labels")
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or LABEL_CONNECTION_SECRET_FOR not in labels:
        return False
    uid = metadata(consumer).get("uid")
    return any(
        isinstance(ref, dict) and ref.get("uid") == uid
        for ref in metadata(secret).get("ownerReferences") or []
    )


def _ref_name(obj: Obj) -> str | None:
    spec = obj.get("spec")
    ref = spec.get("writeConnectionSecretToRef") if isinstance(spec, dict) else None
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


def _twin_is_ours(twin: Obj, consumer: Obj, consumer_cluster: str) -> bool:
    labels = string_map(twin, "labels")
    uid = metadata(consumer).get("uid")
    return (
        labels.get(LABEL_CONSUMER_CLUSTER) == label_value(consumer_cluster)
        and isinstance(uid, str)
        and labels.get(LABEL_CONSUMER_UID) == label_value(uid)
    )


def _controlled_by(secret: Obj, twin: Obj) -> bool:
    uid = metadata(twin).get("uid")
    return bool(uid) and any(
        isinstance(ref, dict) and ref.get("controller") is True and ref.get("uid") == uid
        for ref in metadata(secret).get("ownerReferences") or []
    )


def _same(existing: Obj, desired: Obj) -> bool:
    """Whether ``existing`` already is ``desired`` (the connector's fields only)."""
    want: dict[str, Any] = desired["metadata"]
    have = metadata(existing)
    labels = have.get("labels") or {}
    owners = [r for r in have.get("ownerReferences") or [] if isinstance(r, dict)]
    return (
        existing.get("type", "Opaque") == desired["type"]
        and (existing.get("data") or {}) == desired["data"]
        and all(labels.get(k) == v for k, v in want["labels"].items())
        and any(r.get("uid") == want["ownerReferences"][0]["uid"] for r in owners)
    )
