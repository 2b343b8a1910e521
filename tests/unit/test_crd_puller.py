"""CRD-puller: which consumer CRDs to apply, which APIs to offer, the connection's conditions."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions.common import InvalidInputError, Obj, canonical_hash
from functions.crd_puller import (
    CRDConflict,
    OfferedAPI,
    ProviderError,
    PullRequest,
    PullResult,
    WithheldAPI,
    XRDPart,
    desired_consumer_crd,
    pull,
    xrd_part,
)

from . import assert_same

NOW = "2026-11-23T12:00:00Z"
EARLIER = "2026-11-22T08:00:00Z"
CONNECTION = "provider-connection"
BINDABLE = {"connect.upbound.io/bindable": "true"}
OURS = {"connect.upbound.io/connection": CONNECTION}
NOP: Obj = yaml.safe_load(
    (Path(__file__).parent / "data" / "nopresources.nop.example.org.yaml").read_text()
)
NOP_OFFERED = OfferedAPI(
    name="nopresources.nop.example.org",
    group="nop.example.org",
    kind="NopResource",
    plural="nopresources",
    scope="Namespaced",
    versions=["v1alpha1"],
    storage_version="v1alpha1",
)


def ready(*, at: str = NOW) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "Provider controlplane is available",
        "lastTransitionTime": at,
    }


def crds_synced(
    message: str, *, status: str = "True", reason: str = "Synced", at: str = NOW
) -> Any:
    return {
        "type": "CRDsSynced",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


def schema(status: dict[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
    }
    if status is not None:
        properties["status"] = status
    return {"openAPIV3Schema": {"type": "object", "properties": properties}}


def version(name: str, *, storage: bool = True, served: bool = True, **extra: Any) -> Any:
    return {"name": name, "served": served, "storage": storage, "schema": schema(), **extra}


def make_crd(
    plural: str = "widgets",
    group: str = "example.org",
    kind: str = "Widget",
    *,
    scope: str = "Namespaced",
    versions: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    conversion: dict[str, Any] | None = None,
) -> Obj:
    """A provider CRD; names.singular/listKind are left for the API server to default."""
    meta: dict[str, Any] = {"name": f"{plural}.{group}", "labels": dict(BINDABLE)}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "group": group,
        "names": {"kind": kind, "plural": plural},
        "scope": scope,
        "versions": versions if versions is not None else [version("v1")],
    }
    if conversion is not None:
        spec["conversion"] = conversion
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta,
        "spec": spec,
    }


def as_stored(crd: Obj, **extra_metadata: Any) -> Obj:
    """``crd`` as the consumer's API server returns it after an apply: defaulted, with status."""
    out = copy.deepcopy(crd)
    out["metadata"].update(
        uid="0b8e5a7c-1111-2222-3333-444455556666",
        resourceVersion="1001",
        generation=1,
        creationTimestamp=EARLIER,
        managedFields=[{"manager": "api-connector", "operation": "Apply"}],
        **extra_metadata,
    )
    spec = out["spec"]
    spec["names"].setdefault("singular", spec["names"]["kind"].lower())
    spec["names"].setdefault("listKind", spec["names"]["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    spec["preserveUnknownFields"] = False
    out["status"] = {"acceptedNames": spec["names"], "storedVersions": ["v1"]}
    return out


def with_hash(crd: Obj) -> Obj:
    """``crd`` with the applied-hash annotation: the hash of everything else written."""
    out = copy.deepcopy(crd)
    out["metadata"].setdefault("annotations", {})["connect.upbound.io/applied-hash"] = (
        canonical_hash(crd)
    )
    return out


def ours(provider_crd: Obj) -> Obj:
    return desired_consumer_crd(provider_crd, connection_name=CONNECTION)


def req(
    provider: list[Obj],
    consumer: list[Obj] | None = None,
    **kwargs: Any,
) -> PullRequest:
    return PullRequest(
        connection_name=CONNECTION,
        provider_crds=provider,
        consumer_crds=consumer or [],
        now=NOW,
        **kwargs,
    )


def widget_offered(**changes: Any) -> OfferedAPI:
    api = OfferedAPI(
        name="widgets.example.org",
        group="example.org",
        kind="Widget",
        plural="widgets",
        scope="Namespaced",
        versions=["v1"],
        storage_version="v1",
    )
    return replace(api, **changes)


def synced_result(apply: list[Obj], offered: list[OfferedAPI], **kwargs: Any) -> PullResult:
    n = len(offered)
    message = f"{n} bindable CRD{'' if n == 1 else 's'} installed in the consumer"
    return PullResult(
        apply=apply,
        offered=offered,
        conflicts=kwargs.pop("conflicts", []),
        conditions=kwargs.pop("conditions", [ready(), crds_synced(message)]),
    )


# The consumer copy of the Crossplane-generated NopResource CRD, written out in full: the
# provider-side metadata (uid, owner XRD, finalizer, managed fields, last-applied) is gone,
# as is status, and the bindable label is replaced by the connection label.
NOP_CONSUMER = with_hash(
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "nopresources.nop.example.org", "labels": OURS},
        "spec": NOP["spec"],
    }
)

WEBHOOK = {
    "strategy": "Webhook",
    "webhook": {
        "conversionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "conv", "namespace": "crossplane-system"}},
    },
}

CONDITIONS_SCHEMA = {
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


def status_crd(status: dict[str, Any]) -> Obj:
    return make_crd(versions=[{**version("v1"), "schema": schema(status)}])


def widget_v2() -> Obj:
    return make_crd(versions=[version("v1", storage=False), version("v2")])


def printer_columns() -> Obj:
    columns = [{"name": "SIZE", "type": "integer", "jsonPath": ".spec.size"}]
    return make_crd(versions=[version("v1", additionalPrinterColumns=columns)])


@dataclass
class Case:
    reason: str
    req: PullRequest
    want: PullResult


CASES = [
    Case(
        reason="A Crossplane-generated bindable CRD is copied without provider-only metadata.",
        req=req([NOP]),
        want=synced_result([NOP_CONSUMER], [NOP_OFFERED]),
    ),
    Case(
        reason="The copy, as the consumer's API server returns it, is not applied again.",
        req=req([NOP], [as_stored(NOP_CONSUMER)]),
        want=synced_result([], [NOP_OFFERED]),
    ),
    Case(
        reason="Defaults the API server fills in (singular, listKind, conversion None, "
        "preserveUnknownFields false) are not a difference.",
        req=req([make_crd()], [as_stored(ours(make_crd()))]),
        want=synced_result([], [widget_offered()]),
    ),
    Case(
        reason="Labels and annotations other tools add to the consumer CRD are not a difference.",
        req=req(
            [make_crd()],
            [
                as_stored(
                    ours(make_crd()),
                    labels={**OURS, "argocd.argoproj.io/instance": "apps"},
                    annotations={
                        **ours(make_crd())["metadata"]["annotations"],
                        "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    },
                )
            ],
        ),
        want=synced_result([], [widget_offered()]),
    ),
    Case(
        reason="Provider labels and annotations are copied; the bindable label and "
        "kubectl's last-applied annotation are not.",
        req=req(
            [
                make_crd(
                    labels={**BINDABLE, "team": "platform"},
                    annotations={
                        "kubectl.kubernetes.io/last-applied-configuration": "{}",
                        "docs.example.org/owner": "platform",
                    },
                )
            ]
        ),
        want=synced_result(
            [
                with_hash(
                    {
                        **make_crd(
                            labels={**OURS, "team": "platform"},
                            annotations={"docs.example.org/owner": "platform"},
                        ),
                        "spec": {**make_crd()["spec"], "conversion": {"strategy": "None"}},
                    }
                )
            ],
            [widget_offered()],
        ),
    ),
    Case(
        reason="A new version in the provider is pulled again.",
        req=req([widget_v2()], [as_stored(ours(make_crd()))]),
        want=synced_result(
            [ours(widget_v2())], [widget_offered(versions=["v1", "v2"], storage_version="v2")]
        ),
    ),
    Case(
        reason="Changed printer columns in the provider are pulled again.",
        req=req([printer_columns()], [as_stored(ours(make_crd()))]),
        want=synced_result([ours(printer_columns())], [widget_offered()]),
    ),
    Case(
        reason="A label added in the provider is pulled again.",
        req=req(
            [make_crd(labels={**BINDABLE, "tier": "gold"})],
            [as_stored(ours(make_crd()))],
        ),
        want=synced_result(
            [ours(make_crd(labels={**BINDABLE, "tier": "gold"}))], [widget_offered()]
        ),
    ),
    Case(
        reason="A label removed in the provider is pulled again (the applied hash changes).",
        req=req(
            [make_crd()],
            [as_stored(ours(make_crd(labels={**BINDABLE, "tier": "gold"})))],
        ),
        want=synced_result([ours(make_crd())], [widget_offered()]),
    ),
    Case(
        reason="A consumer CRD whose spec was edited by hand is put back.",
        req=req(
            [make_crd()],
            [
                as_stored(
                    {**ours(make_crd()), "spec": {**ours(make_crd())["spec"], "scope": "Cluster"}}
                )
            ],
        ),
        want=synced_result([ours(make_crd())], [widget_offered()]),
    ),
    Case(
        reason="A conversion webhook is replaced by strategy None; every version stays served "
        "and the condition says so.",
        req=req(
            [make_crd(versions=[version("v1", storage=False), version("v2")], conversion=WEBHOOK)]
        ),
        want=PullResult(
            apply=[
                with_hash(
                    {
                        **make_crd(labels=OURS),
                        "spec": {
                            **make_crd(versions=[version("v1", storage=False), version("v2")])[
                                "spec"
                            ],
                            "conversion": {"strategy": "None"},
                        },
                    }
                )
            ],
            offered=[widget_offered(versions=["v1", "v2"], storage_version="v2")],
            conflicts=[],
            conditions=[
                ready(),
                crds_synced(
                    "1 bindable CRD installed in the consumer; served without their provider's "
                    "conversion webhook (objects keep the version they were written in): "
                    "widgets.example.org"
                ),
            ],
        ),
    ),
    Case(
        reason="A status schema without conditions gets the standard conditions schema, so "
        "APIBound is not pruned.",
        req=req([status_crd({"type": "object", "properties": {"phase": {"type": "string"}}})]),
        want=synced_result(
            [
                with_hash(
                    {
                        **make_crd(labels=OURS),
                        "spec": {
                            **status_crd({})["spec"],
                            "conversion": {"strategy": "None"},
                            "versions": [
                                {
                                    **version("v1"),
                                    "schema": schema(
                                        {
                                            "type": "object",
                                            "properties": {
                                                "phase": {"type": "string"},
                                                "conditions": CONDITIONS_SCHEMA,
                                            },
                                        }
                                    ),
                                }
                            ],
                        },
                    }
                )
            ],
            [widget_offered()],
        ),
    ),
    Case(
        reason="A status that preserves unknown fields keeps its schema as it is.",
        req=req([status_crd({"type": "object", "x-kubernetes-preserve-unknown-fields": True})]),
        want=synced_result(
            [ours(status_crd({"type": "object", "x-kubernetes-preserve-unknown-fields": True}))],
            [widget_offered()],
        ),
    ),
    Case(
        reason="A CRD not labelled bindable is neither applied nor offered.",
        req=req(
            [
                make_crd(labels={}),
                make_crd("gadgets", labels={"connect.upbound.io/bindable": "false"}),
            ]
        ),
        want=synced_result([], []),
    ),
    Case(
        reason="A CRD no longer bindable is left in the consumer: not applied, not offered.",
        req=req([make_crd(labels={})], [as_stored(ours(make_crd()))]),
        want=synced_result([], []),
    ),
    Case(
        reason="Offered APIs are sorted by name, list only served versions, and keep the scope.",
        req=req(
            [
                make_crd("zebras", "zoo.example.org", "Zebra", scope="Cluster"),
                make_crd(versions=[version("v1beta1", storage=False, served=False), version("v1")]),
            ]
        ),
        want=synced_result(
            [
                ours(
                    make_crd(
                        versions=[version("v1beta1", storage=False, served=False), version("v1")]
                    )
                ),
                ours(make_crd("zebras", "zoo.example.org", "Zebra", scope="Cluster")),
            ],
            [
                widget_offered(),
                OfferedAPI(
                    name="zebras.zoo.example.org",
                    group="zoo.example.org",
                    kind="Zebra",
                    plural="zebras",
                    scope="Cluster",
                    versions=["v1"],
                    storage_version="v1",
                ),
            ],
        ),
    ),
    Case(
        reason="A consumer CRD of the same name owned by no connection is a conflict: not "
        "applied, not offered.",
        req=req([make_crd(), NOP], [as_stored(make_crd(labels={}))]),
        want=PullResult(
            apply=[NOP_CONSUMER],
            offered=[NOP_OFFERED],
            conflicts=[
                CRDConflict(
                    name="widgets.example.org",
                    message="CRD widgets.example.org already exists in the consumer and is not "
                    "managed by a connection",
                )
            ],
            conditions=[
                ready(),
                crds_synced(
                    "CRDs exist in the consumer and are not owned by this connection: "
                    "widgets.example.org",
                    status="False",
                    reason="Conflict",
                ),
            ],
        ),
    ),
    Case(
        reason="A consumer CRD owned by another connection is a conflict naming that connection.",
        req=req(
            [make_crd()],
            [as_stored(make_crd(labels={"connect.upbound.io/connection": "other"}))],
        ),
        want=PullResult(
            apply=[],
            offered=[],
            conflicts=[
                CRDConflict(
                    name="widgets.example.org",
                    message="CRD widgets.example.org already exists in the consumer and belongs "
                    "to connection other",
                )
            ],
            conditions=[
                ready(),
                crds_synced(
                    "CRDs exist in the consumer and are not owned by this connection: "
                    "widgets.example.org",
                    status="False",
                    reason="Conflict",
                ),
            ],
        ),
    ),
    Case(
        reason="Without pullBehavior Pull nothing is applied, APIs are still offered, and CRDs "
        "installed by someone else are not conflicts.",
        req=req([make_crd()], [as_stored(make_crd(labels={}))], pull_behavior="Manual"),
        want=PullResult(
            apply=[],
            offered=[widget_offered()],
            conflicts=[],
            conditions=[
                ready(),
                crds_synced(
                    "pullBehavior is Manual: CRDs are not installed by the connector",
                    reason="PullDisabled",
                ),
            ],
        ),
    ),
    Case(
        reason="A provider with no bindable CRD is still available.",
        req=req([]),
        want=synced_result([], []),
    ),
    Case(
        reason="An unreadable provider makes the connection not Ready with the given reason, "
        "offers nothing, and leaves CRDsSynced as it was.",
        req=req(
            [make_crd()],
            provider_error=ProviderError(reason="Unauthorized", message="the token was rejected"),
            previous_conditions=[ready(at=EARLIER), crds_synced("1 CRD", at=EARLIER)],
        ),
        want=PullResult(
            apply=[],
            offered=[],
            conflicts=[],
            conditions=[
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Unauthorized",
                    "message": "the token was rejected",
                    "lastTransitionTime": NOW,
                },
                crds_synced("1 CRD", at=EARLIER),
            ],
        ),
    ),
    Case(
        reason="Conditions that keep their status keep their lastTransitionTime.",
        req=req(
            [make_crd()],
            [as_stored(ours(make_crd()))],
            previous_conditions=[ready(at=EARLIER), crds_synced("old", at=EARLIER)],
        ),
        want=synced_result(
            [],
            [widget_offered()],
            conditions=[
                ready(at=EARLIER),
                crds_synced("1 bindable CRD installed in the consumer", at=EARLIER),
            ],
        ),
    ),
    Case(
        reason="A provider that becomes reachable again moves Ready's lastTransitionTime.",
        req=req(
            [],
            previous_conditions=[
                {**ready(at=EARLIER), "status": "False", "reason": "ProviderUnreachable"}
            ],
        ),
        want=synced_result([], []),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_pull(case: Case) -> None:
    assert_same(case.want, pull(case.req), case.reason)


# --- What a Crossplane XRD offers ------------------------------------------------------

XRD = "xnopresources.nop.example.org"
OFFER = "connect.upbound.io/offer"


def generated(
    plural: str,
    kind: str,
    *,
    category: str,
    scope: str,
    crossplane_fields: dict[str, Any],
    xrd: str = XRD,
    xrd_api_version: str = "apiextensions.crossplane.io/v1",
    labels: dict[str, str] | None = None,
) -> Obj:
    """A CRD as Crossplane generates it from an XRD: owned by the XRD, in its category, with
    the XRD's labels (Crossplane copies them)."""
    spec_schema = {
        "type": "object",
        "properties": {"coolField": {"type": "string"}, **crossplane_fields},
    }
    crd = make_crd(
        plural,
        "nop.example.org",
        kind,
        scope=scope,
        labels=labels if labels is not None else dict(BINDABLE),
        versions=[
            {
                **version("v1alpha1"),
                "schema": {
                    "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}
                },
            }
        ],
    )
    crd["spec"]["names"]["categories"] = [category]
    crd["metadata"]["ownerReferences"] = [
        {
            "apiVersion": xrd_api_version,
            "kind": "CompositeResourceDefinition",
            "name": xrd,
            "uid": "1f0c3a8e-2b7d-4c0e-9a55-6d2e1f3b4c77",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return crd


REF = {"type": "object", "properties": {"name": {"type": "string"}}}


def legacy_xr(**labels: str) -> Obj:
    """The composite resource CRD of a LegacyCluster (v1) XRD: cluster-scoped, Crossplane's
    fields directly under spec, next to claimRef."""
    return generated(
        "xnopresources",
        "XNopResource",
        category="composite",
        scope="Cluster",
        crossplane_fields={"claimRef": REF, "compositionRef": REF},
        labels={**BINDABLE, **labels},
    )


def claim(**labels: str) -> Obj:
    """The claim CRD of the same XRD: namespaced, named after its claim names."""
    return generated(
        "nopresources",
        "NopResource",
        category="claim",
        scope="Namespaced",
        crossplane_fields={"compositeDeletePolicy": {"type": "string"}, "resourceRef": REF},
        labels={**BINDABLE, **labels},
    )


def modern_xr(**labels: str) -> Obj:
    """The composite resource CRD of a v2 XRD with scope Cluster: no claim can exist."""
    return generated(
        "xclusternops",
        "XClusterNop",
        category="composite",
        scope="Cluster",
        crossplane_fields={"crossplane": {"type": "object", "properties": {"compositionRef": REF}}},
        xrd="xclusternops.nop.example.org",
        xrd_api_version="apiextensions.crossplane.io/v2",
        labels={**BINDABLE, **labels},
    )


def offered_api(crd: Obj) -> OfferedAPI:
    spec = crd["spec"]
    return OfferedAPI(
        name=crd["metadata"]["name"],
        group=spec["group"],
        kind=spec["names"]["kind"],
        plural=spec["names"]["plural"],
        scope=spec["scope"],
        versions=["v1alpha1"],
        storage_version="v1alpha1",
    )


def withheld_api(name: str, message: str) -> WithheldAPI:
    return WithheldAPI(name=name, group="nop.example.org", message=message)


def xrd_result(
    offered: list[Obj], withheld: list[WithheldAPI], *, note: str = "", pulled: bool = True
) -> PullResult:
    n = len(offered)
    message = f"{n} bindable CRD{'' if n == 1 else 's'} installed in the consumer"
    if withheld:
        names = ", ".join(w.name for w in withheld)
        message += f"; not offered: {names} (status.withheldAPIs says why)"
    message += note
    synced = crds_synced(message)
    if not pulled:
        synced = crds_synced(
            "pullBehavior is Manual: CRDs are not installed by the connector"
            + message.partition(" installed in the consumer")[2],
            reason="PullDisabled",
        )
    return PullResult(
        apply=[ours(crd) for crd in offered] if pulled else [],
        offered=[offered_api(crd) for crd in offered],
        conflicts=[],
        conditions=[ready(), synced],
        withheld=withheld,
    )


XR_FOR_CLAIM = (
    "xnopresources.nop.example.org is the composite resource of XRD "
    "xnopresources.nop.example.org, which offers its claim nopresources.nop.example.org "
    "instead (the default for an XRD with a claim); to offer both, label the XRD: "
    "kubectl label xrd xnopresources.nop.example.org connect.upbound.io/offer=both --overwrite"
)
XR_WITHOUT_CLAIM = (
    "xnopresources.nop.example.org is the composite resource of XRD "
    "xnopresources.nop.example.org, a LegacyCluster XRD, which offers only its claim unless "
    "labelled otherwise, and no claim of it is bindable; to offer the composite resource, "
    "label the XRD: kubectl label xrd xnopresources.nop.example.org "
    "connect.upbound.io/offer=composite --overwrite"
)

XRD_CASES = [
    Case(
        reason="An XRD with a claim offers the claim only: the cluster-scoped composite "
        "resource is withheld, with why and how to offer it.",
        req=req([legacy_xr(), claim()]),
        want=xrd_result([claim()], [withheld_api(XRD, XR_FOR_CLAIM)]),
    ),
    Case(
        reason="The composite resource of a LegacyCluster XRD is withheld even while its claim "
        "CRD is not in sight (Crossplane may create or label it a moment later).",
        req=req([legacy_xr(), claim(**{"connect.upbound.io/bindable": "false"})]),
        want=xrd_result([], [withheld_api(XRD, XR_WITHOUT_CLAIM)]),
    ),
    Case(
        reason="connect.upbound.io/offer=both on the XRD offers its claim and its composite "
        "resource; the label is not copied to the consumer.",
        req=req([legacy_xr(**{OFFER: "both"}), claim(**{OFFER: "both"})]),
        want=xrd_result([claim(), legacy_xr()], []),
    ),
    Case(
        reason="connect.upbound.io/offer=composite offers the composite resource and withholds "
        "the claim.",
        req=req([legacy_xr(**{OFFER: "composite"}), claim(**{OFFER: "composite"})]),
        want=xrd_result(
            [legacy_xr()],
            [
                withheld_api(
                    "nopresources.nop.example.org",
                    "nopresources.nop.example.org is the claim of XRD "
                    "xnopresources.nop.example.org, which is labelled "
                    "connect.upbound.io/offer=composite; to offer the claim too, label the XRD: "
                    "kubectl label xrd xnopresources.nop.example.org connect.upbound.io/offer=both"
                    " --overwrite",
                )
            ],
        ),
    ),
    Case(
        reason="A LegacyCluster XRD without a claim offers its composite resource when "
        "labelled connect.upbound.io/offer=composite.",
        req=req([legacy_xr(**{OFFER: "composite"})]),
        want=xrd_result([legacy_xr()], []),
    ),
    Case(
        reason="An XRD labelled connect.upbound.io/offer=claim withholds the composite resource.",
        req=req([legacy_xr(**{OFFER: "claim"}), claim(**{OFFER: "claim"})]),
        want=xrd_result(
            [claim()],
            [
                withheld_api(
                    XRD,
                    "xnopresources.nop.example.org is the composite resource of XRD "
                    "xnopresources.nop.example.org, which offers its claim "
                    "nopresources.nop.example.org instead (labelled "
                    "connect.upbound.io/offer=claim); to offer both, label the XRD: kubectl "
                    "label xrd xnopresources.nop.example.org connect.upbound.io/offer=both "
                    "--overwrite",
                )
            ],
        ),
    ),
    Case(
        reason="A v2 XRD (no claims) offers its composite resource, cluster-scoped or namespaced.",
        req=req([modern_xr(), NOP]),
        want=PullResult(
            apply=[NOP_CONSUMER, ours(modern_xr())],
            offered=[NOP_OFFERED, offered_api(modern_xr())],
            conflicts=[],
            conditions=[ready(), crds_synced("2 bindable CRDs installed in the consumer")],
        ),
    ),
    Case(
        reason="A v2 XRD labelled connect.upbound.io/offer=claim has no claim to offer: its "
        "composite resource is withheld, and the message says how to offer it.",
        req=req([modern_xr(**{OFFER: "claim"})]),
        want=xrd_result(
            [],
            [
                withheld_api(
                    "xclusternops.nop.example.org",
                    "xclusternops.nop.example.org is the composite resource of XRD "
                    "xclusternops.nop.example.org, which is labelled "
                    "connect.upbound.io/offer=claim, and no claim of it is bindable; to offer "
                    "the composite resource, label the XRD: kubectl label xrd "
                    "xclusternops.nop.example.org connect.upbound.io/offer=composite --overwrite",
                )
            ],
        ),
    ),
    Case(
        reason="An offer label that is not claim, composite or both is reported, and the "
        "default applies.",
        req=req([legacy_xr(**{OFFER: "Both"}), claim(**{OFFER: "Both"})]),
        want=xrd_result(
            [claim()],
            [withheld_api(XRD, XR_FOR_CLAIM)],
            note="; XRD xnopresources.nop.example.org is labelled connect.upbound.io/offer=Both, "
            "which is not one of claim, composite, both: its default offer applies",
        ),
    ),
    Case(
        reason="Without an owner XRD a CRD is offered as it is: Crossplane's category alone, "
        "or an offer label, does not withhold it.",
        req=req(
            [
                {
                    **legacy_xr(**{OFFER: "claim"}),
                    "metadata": {
                        "name": "xnopresources.nop.example.org",
                        "labels": {**BINDABLE, OFFER: "claim"},
                    },
                }
            ]
        ),
        want=xrd_result([legacy_xr()], []),
    ),
    Case(
        reason="Without pullBehavior Pull the XRD's offer still decides what is offered.",
        req=req([legacy_xr(), claim()], pull_behavior="Manual"),
        want=xrd_result([claim()], [withheld_api(XRD, XR_FOR_CLAIM)], pulled=False),
    ),
    Case(
        reason="A withheld CRD is never a conflict: a consumer CRD of its name is left alone.",
        req=req([legacy_xr(), claim()], [as_stored(make_crd("xnopresources", "nop.example.org"))]),
        want=xrd_result([claim()], [withheld_api(XRD, XR_FOR_CLAIM)]),
    ),
]


@pytest.mark.parametrize("case", XRD_CASES, ids=[c.reason for c in XRD_CASES])
def test_pull_offers_what_the_xrd_offers(case: Case) -> None:
    assert_same(case.want, pull(case.req), case.reason)


@pytest.mark.parametrize(
    ("crd", "want"),
    [
        (legacy_xr(), XRDPart(xrd=XRD, role="composite", legacy=True)),
        (claim(), XRDPart(xrd=XRD, role="claim", legacy=True)),
        (
            modern_xr(),
            XRDPart(xrd="xclusternops.nop.example.org", role="composite", legacy=False),
        ),
        (NOP, XRDPart(xrd="nopresources.nop.example.org", role="composite", legacy=False)),
        (make_crd(), None),
    ],
    ids=["legacy XR", "claim", "v2 cluster XR", "v2 namespaced XR", "not generated"],
)
def test_xrd_part_tells_what_a_crd_is_to_its_xrd(crd: Obj, want: XRDPart | None) -> None:
    assert xrd_part(crd) == want


def test_xrd_part_without_categories_tells_the_xr_by_its_name() -> None:
    xr, cl = legacy_xr(), claim()
    for crd in (xr, cl):
        del crd["spec"]["names"]["categories"]
    assert xrd_part(xr) == XRDPart(xrd=XRD, role="composite", legacy=True)
    assert xrd_part(cl) == XRDPart(xrd=XRD, role="claim", legacy=True)


ALL_CASES = CASES + XRD_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.reason for c in ALL_CASES])
def test_pull_applies_nothing_once_its_output_is_in_the_consumer(case: Case) -> None:
    first = pull(case.req)
    stored = {c["metadata"]["name"]: c for c in case.req.consumer_crds}
    stored.update({c["metadata"]["name"]: as_stored(c) for c in first.apply})
    again = pull(
        replace(case.req, consumer_crds=list(stored.values()), previous_conditions=first.conditions)
    )
    assert_same(replace(first, apply=[]), again, case.reason)


@dataclass
class BadInputCase:
    reason: str
    req: PullRequest
    want_field: str


def without(obj: Obj, *path: str) -> Obj:
    out = copy.deepcopy(obj)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return out


BAD_INPUT = [
    BadInputCase(
        "An empty connection name.", replace(req([]), connection_name=""), "connection_name"
    ),
    BadInputCase("A provider CRD that is not an object.", req(["nope"]), "provider_crds[0]"),  # type: ignore[list-item]
    BadInputCase(
        "A provider CRD without apiVersion.",
        req([make_crd(), without(make_crd(), "apiVersion")]),
        "provider_crds[1].apiVersion",
    ),
    BadInputCase(
        "A bindable CRD without spec.group.",
        req([make_crd(), without(make_crd("gadgets"), "spec", "group")]),
        "provider_crds[1].spec.group",
    ),
    BadInputCase(
        "A bindable CRD without spec.names.plural.",
        req(
            [
                make_crd("a"),
                make_crd("b"),
                make_crd("c"),
                without(make_crd("d"), "spec", "names", "plural"),
            ]
        ),
        "provider_crds[3].spec.names.plural",
    ),
    BadInputCase(
        "A bindable CRD without versions.",
        req([make_crd(versions=[])]),
        "provider_crds[0].spec.versions",
    ),
    BadInputCase(
        "A bindable CRD without a storage version.",
        req([make_crd(versions=[version("v1", storage=False)])]),
        "provider_crds[0].spec.versions",
    ),
    BadInputCase(
        "A bindable object that is not a CRD.",
        req([{**make_crd(), "kind": "ConfigMap"}]),
        "provider_crds[0].kind",
    ),
    BadInputCase(
        "A bindable CRD whose name is not <plural>.<group>.",
        req([{**make_crd(), "metadata": {"name": "wrong", "labels": BINDABLE}}]),
        "provider_crds[0].metadata.name",
    ),
    BadInputCase(
        "A consumer CRD without a name.",
        req([], [without(make_crd(), "metadata", "name")]),
        "consumer_crds[0].metadata.name",
    ),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c.reason for c in BAD_INPUT])
def test_pull_rejects_bad_input_naming_the_field(case: BadInputCase) -> None:
    with pytest.raises(InvalidInputError) as caught:
        pull(case.req)
    assert caught.value.field == case.want_field, case.reason
