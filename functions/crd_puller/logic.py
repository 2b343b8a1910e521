"""CRD-puller logic: the provider's bindable CRDs → the CRDs to install in the consumer.

The consumer gets a copy of each bindable provider CRD that works without the provider:
no server-set metadata, no status, and no conversion webhook (it would point at a service
in the provider). The copy is labelled with the connection that owns it; a consumer CRD of
the same name that this connection does not own is a conflict and is never overwritten.
Consumer CRDs are never deleted: objects of those APIs may still exist in the consumer.

What a Crossplane XRD offers. Crossplane generates the CRDs of an XRD itself, copies the
XRD's labels onto them, and reverts labels added to them by hand; so a platform team
publishes an XRD's API by labelling the XRD, and both generated CRDs arrive labelled. Which
of them are offered is decided here, from the CRDs alone (each carries a controller
reference to its XRD and Crossplane's category ``claim`` or ``composite``):

- ``connect.upbound.io/offer`` on the XRD (copied to both CRDs) says it: ``claim``,
  ``composite`` or ``both``;
- unset, an XRD that may have a claim (scope ``LegacyCluster``, what every Crossplane v1 XRD
  is: its composite resource is cluster-scoped plumbing with ``spec.claimRef``) offers its
  claim, and an XRD of scope ``Namespaced`` or ``Cluster`` (no claims: ``spec.crossplane``
  in its XR's schema) offers its composite resource. The default depends on each CRD
  alone, never on whether the other CRD of the XRD is in sight: Crossplane writes the two
  CRDs from two controllers, so the claim CRD may show up (or get its label) a moment after
  the XR's, and a consumer CRD, once pulled, is never deleted.

A CRD the offer leaves out is *withheld*: neither pulled nor offered, and listed with a
message saying why and how to offer it. CRDs that Crossplane did not generate are offered
as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from functions.common import (
    ANNOTATION_APPLIED_HASH,
    ANNOTATION_LAST_APPLIED,
    BINDABLE_LABEL,
    CONDITION_CRDS_SYNCED,
    CONDITION_READY,
    LABEL_CONNECTION,
    OFFER_BOTH,
    OFFER_CLAIM,
    OFFER_COMPOSITE,
    OFFER_LABEL,
    Condition,
    InvalidInputError,
    Obj,
    api_group,
    canonical_hash,
    is_subset,
    label_value,
    metadata,
    require_dict,
    require_list,
    require_object,
    require_str,
    set_condition,
    string_map,
)
from functions.crd_puller.types import (
    CRDConflict,
    OfferedAPI,
    PullRequest,
    PullResult,
    WithheldAPI,
)

CRD_API_VERSION = "apiextensions.k8s.io/v1"
CRD_KIND = "CustomResourceDefinition"

#: ``Ready`` reason when the provider was read; other reasons come from ``ProviderError``.
REASON_READY = "Ready"
READY_MESSAGE = "Provider controlplane is available"
#: ``CRDsSynced`` reasons.
REASON_SYNCED = "Synced"
REASON_CONFLICT = "Conflict"
REASON_PULL_DISABLED = "PullDisabled"

#: Annotations that describe the CRD's life in the provider, not the API it defines.
PROVIDER_ONLY_ANNOTATIONS = frozenset({ANNOTATION_LAST_APPLIED})
#: Labels that are instructions to the connector in the provider, not part of the API.
PROVIDER_ONLY_LABELS = frozenset({BINDABLE_LABEL, OFFER_LABEL})

#: Crossplane's CompositeResourceDefinition, the controller owner of the CRDs it generates.
XRD_GROUP = "apiextensions.crossplane.io"
XRD_KIND = "CompositeResourceDefinition"
#: The categories Crossplane gives the claim and composite resource CRDs of an XRD.
CATEGORY_CLAIM = "claim"
CATEGORY_COMPOSITE = "composite"
OFFER_VALUES = (OFFER_CLAIM, OFFER_COMPOSITE, OFFER_BOTH)

#: The schema of standard Kubernetes conditions, added to a status schema that lacks one so
#: that the API server does not prune the ``APIBound`` condition the connector writes.
CONDITIONS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "Conditions of the resource, including APIBound set by the API connector.",
    "items": {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    },
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def pull(req: PullRequest) -> PullResult:
    """Compute the consumer CRDs to apply, the offered APIs and the connection conditions."""
    require_str(req.connection_name, "connection_name")
    if req.provider_error is not None:
        # Nothing is known about the provider: offer nothing and leave CRDsSynced as it was,
        # since the CRDs already in the consumer are unaffected.
        conditions = set_condition(
            req.previous_conditions,
            type_=CONDITION_READY,
            status="False",
            reason=req.provider_error.reason,
            message=req.provider_error.message,
            now=req.now,
        )
        return PullResult(apply=[], offered=[], conflicts=[], conditions=conditions)

    bindable = [
        _checked_crd(crd, f"provider_crds[{i}]")
        for i, crd in enumerate(req.provider_crds)
        if _is_bindable(require_object(crd, f"provider_crds[{i}]"))
    ]
    bindable.sort(key=lambda crd: str(metadata(crd)["name"]))
    observed = {
        str(metadata(crd)["name"]): crd
        for crd in (
            require_object(c, f"consumer_crds[{i}]") for i, c in enumerate(req.consumer_crds)
        )
    }
    pulling = req.pull_behavior == "Pull"
    connection_label = label_value(req.connection_name)

    parts = {str(metadata(crd)["name"]): xrd_part(crd) for crd in bindable}
    claims = {p.xrd: name for name, p in parts.items() if p is not None and p.role == OFFER_CLAIM}

    apply: list[Obj] = []
    offered: list[OfferedAPI] = []
    withheld: list[WithheldAPI] = []
    conflicts: list[CRDConflict] = []
    unconverted: list[str] = []
    invalid: dict[str, str] = {}  # XRD name -> its offer label's bad value
    for crd in bindable:
        name = str(metadata(crd)["name"])
        part = parts[name]
        if part is not None:
            label = string_map(crd, "labels").get(OFFER_LABEL)
            if label is not None and label not in OFFER_VALUES:
                invalid[part.xrd] = label
            why_not = _withheld_message(name, part, label, claims)
            if why_not is not None:
                withheld.append(WithheldAPI(name=name, group=crd["spec"]["group"], message=why_not))
                continue
        current = observed.get(name)
        if pulling and current is not None:
            owner = string_map(current, "labels").get(LABEL_CONNECTION)
            if owner != connection_label:
                conflicts.append(CRDConflict(name=name, message=_conflict_message(name, owner)))
                continue
        offered.append(_offered_api(crd))
        if _has_webhook_conversion(crd) and len(crd["spec"]["versions"]) > 1:
            unconverted.append(name)
        if pulling:
            desired = desired_consumer_crd(crd, connection_name=req.connection_name)
            if current is None or not crd_in_sync(desired, current):
                apply.append(desired)

    conditions = set_condition(
        req.previous_conditions,
        type_=CONDITION_READY,
        status="True",
        reason=REASON_READY,
        message=READY_MESSAGE,
        now=req.now,
    )
    conditions = _set_crds_synced(
        conditions,
        pull_behavior=req.pull_behavior,
        synced=len(offered),
        conflicts=conflicts,
        unconverted=unconverted,
        withheld=withheld,
        invalid=invalid,
        now=req.now,
    )
    return PullResult(
        apply=apply, offered=offered, conflicts=conflicts, conditions=conditions, withheld=withheld
    )


def desired_consumer_crd(provider_crd: Obj, *, connection_name: str) -> Obj:
    """The consumer copy of a (checked) bindable provider CRD, owned by ``connection_name``."""
    labels = {
        key: value
        for key, value in string_map(provider_crd, "labels").items()
        if key not in PROVIDER_ONLY_LABELS
    }
    labels[LABEL_CONNECTION] = label_value(connection_name)
    annotations = {
        key: value
        for key, value in string_map(provider_crd, "annotations").items()
        if key not in PROVIDER_ONLY_ANNOTATIONS and key != ANNOTATION_APPLIED_HASH
    }
    spec = copy.deepcopy(provider_crd["spec"])
    # A conversion webhook is a service in the provider, unreachable from the consumer. With
    # strategy None every version is still served; objects are stored as written.
    spec["conversion"] = {"strategy": "None"}
    for version in spec["versions"]:
        _ensure_status_conditions_schema(version)
    desired: Obj = {
        "apiVersion": CRD_API_VERSION,
        "kind": CRD_KIND,
        "metadata": {"name": metadata(provider_crd)["name"], "labels": labels},
        "spec": spec,
    }
    if annotations:
        desired["metadata"]["annotations"] = annotations
    # The hash covers what we write, so that a label or field the provider removed (which a
    # subset comparison cannot see) still triggers an update.
    desired["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED_HASH] = canonical_hash(
        desired
    )
    return desired


def crd_in_sync(desired: Obj, observed: Obj) -> bool:
    """Whether the observed consumer CRD already is ``desired``.

    The spec is compared exactly, after filling in what the API server defaults, because the
    connection owns the whole spec. Labels and annotations only need to be present, since
    other tools may add their own; the applied-hash annotation catches ones we dropped.
    """
    if _normalised_spec(desired.get("spec")) != _normalised_spec(observed.get("spec")):
        return False
    return all(
        is_subset(string_map(desired, key), string_map(observed, key))
        for key in ("labels", "annotations")
    )


def _normalised_spec(spec: object) -> dict[str, Any]:
    """A CRD spec with the API server's defaults applied, so defaulting is never a diff."""
    if not isinstance(spec, dict):
        return {}
    out = copy.deepcopy(spec)
    names = out.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    out.setdefault("conversion", {"strategy": "None"})
    if out.get("preserveUnknownFields") is False:
        del out["preserveUnknownFields"]
    return out


@dataclass(frozen=True)
class XRDPart:
    """What a CRD is to the Crossplane XRD that generated it."""

    xrd: str  # the XRD's name
    role: str  # OFFER_CLAIM or OFFER_COMPOSITE
    #: The XRD may have a claim: scope LegacyCluster (every Crossplane v1 XRD), whose composite
    #: resource is the cluster-scoped object behind its claims.
    legacy: bool

    @property
    def default_offer(self) -> str:
        return OFFER_CLAIM if self.legacy else OFFER_COMPOSITE


def xrd_part(crd: Obj) -> XRDPart | None:
    """The XRD a (checked) CRD was generated from and its role there; None if Crossplane did
    not generate it."""
    xrd = next(
        (
            str(ref.get("name"))
            for ref in metadata(crd).get("ownerReferences") or []
            if isinstance(ref, dict)
            and ref.get("kind") == XRD_KIND
            and api_group(str(ref.get("apiVersion") or "")) == XRD_GROUP
            and ref.get("name")
        ),
        None,
    )
    if xrd is None:
        return None
    categories = crd["spec"]["names"].get("categories") or []
    if CATEGORY_CLAIM in categories:
        role = OFFER_CLAIM
    elif CATEGORY_COMPOSITE in categories:
        role = OFFER_COMPOSITE
    else:
        # Crossplane names the XR's CRD after the XRD, the claim's after its claim names.
        role = OFFER_COMPOSITE if metadata(crd)["name"] == xrd else OFFER_CLAIM
    # A Namespaced or Cluster XR nests Crossplane's fields under spec.crossplane; a
    # LegacyCluster one has them directly under spec, next to spec.claimRef.
    legacy = role == OFFER_CLAIM or not any(
        "crossplane" in _spec_properties(version) for version in crd["spec"]["versions"]
    )
    return XRDPart(xrd=xrd, role=role, legacy=legacy)


def _spec_properties(version: dict[str, Any]) -> dict[str, Any]:
    schema = version.get("schema")
    root = schema.get("openAPIV3Schema") if isinstance(schema, dict) else None
    properties = root.get("properties") if isinstance(root, dict) else None
    spec = properties.get("spec") if isinstance(properties, dict) else None
    spec_properties = spec.get("properties") if isinstance(spec, dict) else None
    return spec_properties if isinstance(spec_properties, dict) else {}


def _withheld_message(
    name: str, part: XRDPart, label: str | None, claims: dict[str, str]
) -> str | None:
    """Why the XRD's offer leaves CRD ``name`` out, and how to offer it; None if offered."""
    explicit = label in OFFER_VALUES
    offer = label if explicit and label is not None else part.default_offer
    if offer in (part.role, OFFER_BOTH):
        return None
    how = f"kubectl label xrd {part.xrd} {OFFER_LABEL}={{}} --overwrite"
    if part.role == OFFER_CLAIM:
        return (
            f"{name} is the claim of XRD {part.xrd}, which is labelled {OFFER_LABEL}={offer}; "
            f"to offer the claim too, label the XRD: {how.format(OFFER_BOTH)}"
        )
    what = f"{name} is the composite resource of XRD {part.xrd}"
    claim = claims.get(part.xrd)
    if claim is not None:
        why = "the default for an XRD with a claim"
        if explicit:
            why = f"labelled {OFFER_LABEL}={offer}"
        return (
            f"{what}, which offers its claim {claim} instead ({why}); "
            f"to offer both, label the XRD: {how.format(OFFER_BOTH)}"
        )
    if explicit:
        why = f"which is labelled {OFFER_LABEL}={offer}"
    else:
        why = "a LegacyCluster XRD, which offers only its claim unless labelled otherwise"
    return (
        f"{what}, {why}, and no claim of it is bindable; to offer the composite resource, "
        f"label the XRD: {how.format(OFFER_COMPOSITE)}"
    )


def _is_bindable(crd: Obj) -> bool:
    return string_map(crd, "labels").get(BINDABLE_LABEL) == "true"


def _checked_crd(crd: Obj, field: str) -> Obj:
    """``crd`` if it is a well-formed v1 CRD, else InvalidInputError naming the bad field."""
    if crd["kind"] != CRD_KIND:
        raise InvalidInputError(f"{field}.kind", f"must be {CRD_KIND}, got {crd['kind']}")
    spec = require_dict(crd.get("spec"), f"{field}.spec")
    group = require_str(spec.get("group"), f"{field}.spec.group")
    names = require_dict(spec.get("names"), f"{field}.spec.names")
    plural = require_str(names.get("plural"), f"{field}.spec.names.plural")
    require_str(names.get("kind"), f"{field}.spec.names.kind")
    scope = require_str(spec.get("scope"), f"{field}.spec.scope")
    if scope not in ("Namespaced", "Cluster"):
        raise InvalidInputError(f"{field}.spec.scope", f"must be Namespaced or Cluster: {scope}")
    versions = require_list(spec.get("versions"), f"{field}.spec.versions", non_empty=True)
    for i, version in enumerate(versions):
        require_dict(version, f"{field}.spec.versions[{i}]")
        require_str(version.get("name"), f"{field}.spec.versions[{i}].name")
    if sum(1 for v in versions if v.get("storage") is True) != 1:
        raise InvalidInputError(f"{field}.spec.versions", "exactly one version must be storage")
    if metadata(crd)["name"] != f"{plural}.{group}":
        raise InvalidInputError(
            f"{field}.metadata.name", f"must be <plural>.<group>, i.e. {plural}.{group}"
        )
    return crd


def _offered_api(crd: Obj) -> OfferedAPI:
    spec = crd["spec"]
    return OfferedAPI(
        name=str(metadata(crd)["name"]),
        group=spec["group"],
        kind=spec["names"]["kind"],
        plural=spec["names"]["plural"],
        scope=spec["scope"],
        versions=[v["name"] for v in spec["versions"] if v.get("served", True)],
        storage_version=next(v["name"] for v in spec["versions"] if v.get("storage") is True),
    )


def _has_webhook_conversion(crd: Obj) -> bool:
    conversion = crd["spec"].get("conversion")
    return isinstance(conversion, dict) and conversion.get("strategy") == "Webhook"


def _ensure_status_conditions_schema(version: dict[str, Any]) -> None:
    """Add a ``status.conditions`` schema where the status schema would prune it.

    Every version gets it, not only the storage version: the API server prunes with the
    schema of the version an object is read or written in. A status that preserves unknown
    fields, or has no schema at all, is left as it is.
    """
    schema = version.get("schema")
    if not isinstance(schema, dict):
        return
    root = schema.get("openAPIV3Schema")
    if not isinstance(root, dict) or not isinstance(root.get("properties"), dict):
        return
    status = root["properties"].get("status")
    if not isinstance(status, dict) or status.get("type") != "object":
        return
    if status.get("x-kubernetes-preserve-unknown-fields") is True:
        return
    properties = status.setdefault("properties", {})
    if isinstance(properties, dict) and "conditions" not in properties:
        properties["conditions"] = copy.deepcopy(CONDITIONS_SCHEMA)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _conflict_message(name: str, owner: str | None) -> str:
    if owner is None:
        return f"CRD {name} already exists in the consumer and is not managed by a connection"
    return f"CRD {name} already exists in the consumer and belongs to connection {owner}"


def _set_crds_synced(
    conditions: list[Condition],
    *,
    pull_behavior: str,
    synced: int,
    conflicts: list[CRDConflict],
    unconverted: list[str],
    withheld: list[WithheldAPI],
    invalid: dict[str, str],
    now: str,
) -> list[Condition]:
    notes = ""
    if withheld:
        names = ", ".join(w.name for w in withheld)
        notes += f"; not offered: {names} (status.withheldAPIs says why)"
    for xrd, value in sorted(invalid.items()):
        notes += (
            f"; XRD {xrd} is labelled {OFFER_LABEL}={value}, which is not one of "
            f"{', '.join(OFFER_VALUES)}: its default offer applies"
        )
    if pull_behavior != "Pull":
        return set_condition(
            conditions,
            type_=CONDITION_CRDS_SYNCED,
            status="True",
            reason=REASON_PULL_DISABLED,
            message=f"pullBehavior is {pull_behavior}: CRDs are not installed by the connector"
            + notes,
            now=now,
        )
    note = notes
    if unconverted:
        note += (
            "; served without their provider's conversion webhook (objects keep the version "
            f"they were written in): {', '.join(unconverted)}"
        )
    if conflicts:
        names = ", ".join(c.name for c in conflicts)
        return set_condition(
            conditions,
            type_=CONDITION_CRDS_SYNCED,
            status="False",
            reason=REASON_CONFLICT,
            message=f"CRDs exist in the consumer and are not owned by this connection: {names}"
            + note,
            now=now,
        )
    return set_condition(
        conditions,
        type_=CONDITION_CRDS_SYNCED,
        status="True",
        reason=REASON_SYNCED,
        message=f"{_count(synced, 'bindable CRD')} installed in the consumer{note}",
        now=now,
    )
