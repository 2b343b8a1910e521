"""Object-syncer: the twin to apply, the status to write back, finalizer and delete actions."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import pytest

from functions.common import FINALIZER, InvalidInputError, Obj, canonical_hash, find_condition
from functions.object_syncer import (
    ORPHAN_COLLECT,
    ORPHAN_DELETING,
    ORPHAN_KEEP,
    ORPHAN_NO_ORIGIN,
    ORPHAN_NOT_OURS,
    Adoption,
    SyncRequest,
    SyncResult,
    consumer_generation,
    desired_twin,
    orphan_verdict,
    sync,
)

from . import assert_same

NOW = "2026-11-23T12:00:00Z"
EARLIER = "2026-11-22T08:00:00Z"
CLUSTER = "dev-cluster"
UID = "7d9c1e6a-0b5e-4a8f-9a51-2c3d4e5f6a7b"
DELETED_AT = "2026-11-23T11:59:00Z"
SYNCED = {
    "type": "Synced",
    "status": "True",
    "reason": "ReconcileSuccess",
    "message": "",
    "lastTransitionTime": EARLIER,
}
PROVIDER_READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Available",
    "message": "",
    "lastTransitionTime": EARLIER,
}


def consumer(
    *,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    finalizers: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    uid: str = UID,
    deleting: bool = False,
    generation: int | None = 2,
) -> Obj:
    """A NopResource in the consumer, as its API server returns it."""
    obj: Obj = {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {
            "name": "my-resource",
            "namespace": "default",
            "uid": uid,
            "resourceVersion": "5120",
            "generation": 2,
            "creationTimestamp": EARLIER,
            "labels": {"app": "shop"},
            "annotations": annotations
            if annotations is not None
            else {
                "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"NopResource"}',
                "team": "payments",
            },
            "finalizers": finalizers if finalizers is not None else [FINALIZER],
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        },
        "spec": spec
        if spec is not None
        else {"coolField": "Synchronized resource", "compositeDeletePolicy": "Foreground"},
    }
    if status is not None:
        obj["status"] = status
    if deleting:
        obj["metadata"]["deletionTimestamp"] = DELETED_AT
    if generation is None:
        del obj["metadata"]["generation"]
    else:
        obj["metadata"]["generation"] = generation
    return obj


def with_hash(twin: Obj) -> Obj:
    out = copy.deepcopy(twin)
    out["metadata"]["annotations"]["connect.upbound.io/applied-hash"] = canonical_hash(twin)
    return out


#: The twin of ``consumer()``, written out in full.
TWIN = with_hash(
    {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {
            "name": "my-resource",
            "namespace": "default",
            "labels": {
                "app": "shop",
                "connect.upbound.io/managed": "true",
                "connect.upbound.io/consumer-cluster": CLUSTER,
                "connect.upbound.io/consumer-namespace": "default",
                "connect.upbound.io/consumer-name": "my-resource",
                "connect.upbound.io/consumer-uid": UID,
            },
            "annotations": {
                "team": "payments",
                "connect.upbound.io/consumer-namespace": "default",
                "connect.upbound.io/consumer-name": "my-resource",
                "connect.upbound.io/consumer-generation": "2",
            },
        },
        "spec": {"coolField": "Synchronized resource", "compositeDeletePolicy": "Foreground"},
    }
)


ORPHAN_POLICY = {"connect.upbound.io/deletion-policy": "Orphan", "team": "payments"}


def _with_orphan_policy(twin: Obj) -> Obj:
    out = copy.deepcopy(twin)
    out["metadata"]["annotations"].pop("connect.upbound.io/applied-hash")
    out["metadata"]["annotations"]["connect.upbound.io/deletion-policy"] = "Orphan"
    return with_hash(out)


#: The twin of ``consumer(annotations=ORPHAN_POLICY)``.
ORPHAN_TWIN = _with_orphan_policy(TWIN)


def twin_of(obj: Obj, *, cluster: str = CLUSTER) -> Obj:
    return desired_twin(obj, consumer_cluster=cluster)


def as_provider_returns(twin: Obj, *, status: dict[str, Any] | None = None, **meta: Any) -> Obj:
    """``twin`` after the provider stored and reconciled it: server fields, defaults, status."""
    out = copy.deepcopy(twin)
    out["metadata"].update(
        {
            "uid": "provider-uid",
            "resourceVersion": "880",
            "generation": 1,
            "creationTimestamp": NOW,
            "finalizers": ["composite.apiextensions.crossplane.io"],
            "managedFields": [{"manager": "api-connector", "operation": "Apply"}],
            **meta,
        }
    )
    if "spec" in out:  # Crossplane defaults and fills in a composite's spec
        out["spec"].setdefault("compositeDeletePolicy", "Background")
        out["spec"]["crossplane"] = {"compositionRef": {"name": "nop"}}
    out["status"] = (
        status
        if status is not None
        else {"conditions": [SYNCED, PROVIDER_READY], "coolerField": "from the provider"}
    )
    return out


def api_bound(
    status: str, reason: str, message: str, *, at: str = NOW, generation: int = 2
) -> dict[str, Any]:
    return {
        "type": "APIBound",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
        "observedGeneration": generation,
    }


BOUND = api_bound("True", "Bound", "Synced to the provider")
PENDING = api_bound("False", "Pending", "Creating the object in the provider")
SYNCING = api_bound("False", "Syncing", "Updating the object in the provider")
PROVIDER_STATUS = {
    "conditions": [SYNCED, PROVIDER_READY, BOUND],
    "coolerField": "from the provider",
}
WAITING = (
    "Waiting for the provider object default/my-resource to be deleted; its finalizers: "
    "composite.apiextensions.crossplane.io"
)
NOT_OURS = (
    "NopResource default/my-resource already exists in the provider and is not managed by any "
    "consumer cluster; it is left untouched"
)
OTHER_CLUSTERS = (
    "NopResource default/my-resource already exists in the provider and belongs to consumer "
    "cluster prod-cluster; it is left untouched"
)


def req(c: Obj, twin: Obj | None = None, *, cluster: str = CLUSTER) -> SyncRequest:
    return SyncRequest(consumer=c, provider=twin, consumer_cluster=cluster, now=NOW)


def changed_spec() -> dict[str, Any]:
    return {"coolField": "changed", "compositeDeletePolicy": "Foreground"}


def drifted_twin() -> Obj:
    twin = as_provider_returns(TWIN)
    twin["spec"]["coolField"] = "edited in the provider"
    return twin


def labelled(twin: Obj, **labels: str) -> Obj:
    out = copy.deepcopy(twin)
    out["metadata"]["labels"] = labels
    return out


LONG_CLUSTER = "a-consumer-cluster-display-name-that-is-much-longer-than-a-label-allows"

CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "uid": "cm-uid", "finalizers": [FINALIZER]},
    "data": {"color": "blue"},
    "immutable": False,
}


@dataclass
class Case:
    reason: str
    req: SyncRequest
    want: SyncResult


CASES = [
    Case(
        reason="A new consumer object is created in the provider with its origin, keeping its "
        "status, with APIBound Pending and the finalizer added.",
        req=req(consumer(finalizers=[], status={"note": "kept until the twin exists"})),
        want=SyncResult(
            provider_apply=TWIN,
            consumer_status={"note": "kept until the twin exists", "conditions": [PENDING]},
            add_finalizer=True,
        ),
    ),
    Case(
        reason="A twin the provider defaulted and reconciled is in sync: nothing is applied, "
        "its status (all of it) is written back with APIBound Bound.",
        req=req(
            consumer(status={"conditions": [PENDING], "note": "dropped"}),
            as_provider_returns(TWIN),
        ),
        want=SyncResult(consumer_status=PROVIDER_STATUS),
    ),
    Case(
        reason="Nothing is written when the twin and the consumer status are in sync.",
        req=req(consumer(status=PROVIDER_STATUS), as_provider_returns(TWIN)),
        want=SyncResult(),
    ),
    Case(
        reason="A status change in the provider is synced back; APIBound keeps its time.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            as_provider_returns(
                TWIN, status={"conditions": [SYNCED, {**PROVIDER_READY, "status": "False"}]}
            ),
        ),
        want=SyncResult(
            consumer_status={"conditions": [SYNCED, {**PROVIDER_READY, "status": "False"}, BOUND]}
        ),
    ),
    Case(
        reason="An APIBound condition from the provider is replaced by ours.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            as_provider_returns(
                TWIN,
                status={
                    "conditions": [
                        api_bound("False", "Conflict", "from another connector"),
                        SYNCED,
                        PROVIDER_READY,
                    ],
                    "coolerField": "from the provider",
                },
            ),
        ),
        want=SyncResult(),
    ),
    Case(
        reason="A spec change in the consumer is applied; APIBound is Syncing meanwhile.",
        req=req(consumer(spec=changed_spec(), status=PROVIDER_STATUS), as_provider_returns(TWIN)),
        want=SyncResult(
            provider_apply=twin_of(consumer(spec=changed_spec())),
            consumer_status={
                "conditions": [SYNCED, PROVIDER_READY, SYNCING],
                "coolerField": "from the provider",
            },
        ),
    ),
    Case(
        reason="A field removed in the consumer is applied although the twin still has it.",
        req=req(
            consumer(spec={"coolField": "Synchronized resource"}, status=PROVIDER_STATUS),
            as_provider_returns(TWIN),
        ),
        want=SyncResult(
            provider_apply=twin_of(consumer(spec={"coolField": "Synchronized resource"})),
            consumer_status={
                "conditions": [SYNCED, PROVIDER_READY, SYNCING],
                "coolerField": "from the provider",
            },
        ),
    ),
    Case(
        reason="A field of ours edited in the provider (drift) is put back.",
        req=req(consumer(status=PROVIDER_STATUS), drifted_twin()),
        want=SyncResult(
            provider_apply=TWIN,
            consumer_status={
                "conditions": [SYNCED, PROVIDER_READY, SYNCING],
                "coolerField": "from the provider",
            },
        ),
    ),
    Case(
        reason="A twin left by a deleted and recreated consumer object (new uid) is adopted.",
        req=req(
            consumer(uid="new-uid", status=PROVIDER_STATUS),
            as_provider_returns(TWIN),
        ),
        want=SyncResult(
            provider_apply=twin_of(consumer(uid="new-uid")),
            consumer_status={
                "conditions": [SYNCED, PROVIDER_READY, SYNCING],
                "coolerField": "from the provider",
            },
        ),
    ),
    Case(
        reason="A cluster-scoped object with other top-level fields: they are copied, and no "
        "namespace origin is recorded.",
        req=req(CONFIGMAP),
        want=SyncResult(
            provider_apply=with_hash(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": "settings",
                        "labels": {
                            "connect.upbound.io/managed": "true",
                            "connect.upbound.io/consumer-cluster": CLUSTER,
                            "connect.upbound.io/consumer-name": "settings",
                            "connect.upbound.io/consumer-uid": "cm-uid",
                        },
                        "annotations": {"connect.upbound.io/consumer-name": "settings"},
                    },
                    "data": {"color": "blue"},
                    "immutable": False,
                }
            ),
            consumer_status={
                "conditions": [
                    {
                        "type": "APIBound",
                        "status": "False",
                        "reason": "Pending",
                        "message": "Creating the object in the provider",
                        "lastTransitionTime": NOW,
                    }
                ]
            },
        ),
    ),
    Case(
        reason="A consumer cluster name too long for a label is hashed in the label.",
        req=req(consumer(annotations={}), cluster=LONG_CLUSTER),
        want=SyncResult(
            provider_apply=with_hash(
                {
                    **TWIN,
                    "metadata": {
                        **TWIN["metadata"],
                        "labels": {
                            **TWIN["metadata"]["labels"],
                            "connect.upbound.io/consumer-cluster": "a-consumer-cluster-display"
                            "-name-that-is-much-l-7dcc8e6e52bbb5eb",
                        },
                        "annotations": {
                            "connect.upbound.io/consumer-namespace": "default",
                            "connect.upbound.io/consumer-name": "my-resource",
                            "connect.upbound.io/consumer-generation": "2",
                        },
                    },
                }
            ),
            consumer_status={"conditions": [PENDING]},
        ),
    ),
    Case(
        reason="The deletion policy is copied to the twin: once the consumer object is gone, "
        "only the twin remembers an Orphan choice.",
        req=req(consumer(annotations=ORPHAN_POLICY)),
        want=SyncResult(provider_apply=ORPHAN_TWIN, consumer_status={"conditions": [PENDING]}),
    ),
    Case(
        reason="A twin that belongs to no consumer is a conflict: not applied, no finalizer, "
        "consumer status kept with APIBound Conflict.",
        req=req(
            consumer(finalizers=[], status={"note": "kept"}),
            labelled(as_provider_returns(TWIN)),
        ),
        want=SyncResult(
            conflict=NOT_OURS,
            consumer_status={
                "note": "kept",
                "conditions": [api_bound("False", "Conflict", NOT_OURS)],
            },
        ),
    ),
    Case(
        reason="A twin that belongs to another consumer cluster is a conflict naming it.",
        req=req(
            consumer(),
            labelled(
                as_provider_returns(TWIN), **{"connect.upbound.io/consumer-cluster": "prod-cluster"}
            ),
        ),
        want=SyncResult(
            conflict=OTHER_CLUSTERS,
            consumer_status={"conditions": [api_bound("False", "Conflict", OTHER_CLUSTERS)]},
        ),
    ),
    Case(
        reason="A consumer object deleted with the Orphan policy keeps its twin, which "
        "carries the policy.",
        req=req(
            consumer(deleting=True, annotations=ORPHAN_POLICY),
            as_provider_returns(ORPHAN_TWIN),
        ),
        want=SyncResult(remove_finalizer=True),
    ),
    Case(
        reason="An object deleted with the Orphan policy before its twin carried it is "
        "released only after the twin is given the policy (the collector reads it there).",
        req=req(
            consumer(deleting=True, annotations=ORPHAN_POLICY),
            as_provider_returns(TWIN),
        ),
        want=SyncResult(provider_apply=ORPHAN_TWIN),
    ),
    Case(
        reason="An object deleted with the Orphan policy whose twin is being deleted anyway "
        "is released.",
        req=req(
            consumer(deleting=True, annotations=ORPHAN_POLICY),
            as_provider_returns(TWIN, deletionTimestamp=DELETED_AT),
        ),
        want=SyncResult(remove_finalizer=True),
    ),
    Case(
        reason="A deleted consumer object deletes its twin and keeps its finalizer meanwhile.",
        req=req(consumer(deleting=True), as_provider_returns(TWIN)),
        want=SyncResult(provider_delete=True),
    ),
    Case(
        reason="A twin already being deleted is not deleted again; the finalizer stays, the "
        "twin's status keeps flowing, and APIBound says the deletion waits for it.",
        req=req(
            consumer(deleting=True, status=PROVIDER_STATUS),
            as_provider_returns(TWIN, deletionTimestamp=DELETED_AT),
        ),
        want=SyncResult(
            consumer_status={
                "conditions": [SYNCED, PROVIDER_READY, api_bound("True", "Deleting", WAITING)],
                "coolerField": "from the provider",
            }
        ),
    ),
    Case(
        reason="Once the twin is gone the finalizer is removed.",
        req=req(consumer(deleting=True)),
        want=SyncResult(remove_finalizer=True),
    ),
    Case(
        reason="A deleted object without our finalizer and without twin needs nothing.",
        req=req(consumer(deleting=True, finalizers=["other.example.org/finalizer"])),
        want=SyncResult(),
    ),
    Case(
        reason="A deleted object whose twin is someone else's only loses our finalizer.",
        req=req(consumer(deleting=True), labelled(as_provider_returns(TWIN))),
        want=SyncResult(conflict=NOT_OURS, remove_finalizer=True),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_sync(case: Case) -> None:
    assert_same(case.want, sync(case.req), case.reason)


# --- observedGeneration in the consumer object's terms, and status while deleting -------


def seen(condition: dict[str, Any], generation: int) -> dict[str, Any]:
    """``condition`` as computed for generation ``generation`` of its object."""
    return {**condition, "observedGeneration": generation}


DELETING_READY = {
    "type": "Ready",
    "status": "False",
    "reason": "Deleting",
    "message": "",
    "lastTransitionTime": NOW,
}
XR_REF = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "XNopResource",
    "name": "my-resource-x7k2p",
}


def claim_twin(**meta: Any) -> Obj:
    """The twin after Crossplane's claim reconciler wrote its own spec fields (generation 3)."""
    twin = as_provider_returns(TWIN, **{"generation": 3, **meta})
    twin["spec"]["resourceRef"] = XR_REF
    return twin


def with_status(twin: Obj, status: dict[str, Any]) -> Obj:
    out = copy.deepcopy(twin)
    out["status"] = status
    return out


#: The twin as a connector that did not record the consumer generation wrote it.
UNRECORDED = as_provider_returns(twin_of(consumer(generation=None)), generation=3)


GENERATION_CASES = [
    Case(
        reason="Conditions about the twin as it is (observedGeneration = the twin's generation "
        "3, moved on by Crossplane's own spec writes) carry the consumer's generation 2.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            with_status(claim_twin(), {"conditions": [seen(SYNCED, 3), seen(PROVIDER_READY, 3)]}),
        ),
        want=SyncResult(
            consumer_status={"conditions": [seen(SYNCED, 2), seen(PROVIDER_READY, 2), BOUND]}
        ),
    ),
    Case(
        reason="A condition about an older twin spec (observedGeneration 2 < the twin's 3) "
        "reads as out of date: one less than the consumer generation the twin reflects.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            with_status(claim_twin(), {"conditions": [seen(SYNCED, 3), seen(PROVIDER_READY, 2)]}),
        ),
        want=SyncResult(
            consumer_status={"conditions": [seen(SYNCED, 2), seen(PROVIDER_READY, 1), BOUND]}
        ),
    ),
    Case(
        reason="While a spec change is on its way (consumer generation 3, the twin still "
        "reflects 2), the twin's current conditions carry 2: out of date for generation 3.",
        req=req(
            consumer(spec=changed_spec(), generation=3, status=PROVIDER_STATUS),
            with_status(claim_twin(), {"conditions": [seen(SYNCED, 3), seen(PROVIDER_READY, 3)]}),
        ),
        want=SyncResult(
            provider_apply=twin_of(consumer(spec=changed_spec(), generation=3)),
            consumer_status={
                "conditions": [
                    seen(SYNCED, 2),
                    seen(PROVIDER_READY, 2),
                    api_bound(
                        "False", "Syncing", "Updating the object in the provider", generation=3
                    ),
                ]
            },
        ),
    ),
    Case(
        reason="status.observedGeneration is rewritten by the same rule.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            with_status(claim_twin(), {"observedGeneration": 3, "conditions": [SYNCED]}),
        ),
        want=SyncResult(consumer_status={"observedGeneration": 2, "conditions": [SYNCED, BOUND]}),
    ),
    Case(
        reason="A twin that does not record the consumer generation (written by an older "
        "connector) is re-applied to record it; meanwhile its conditions read as out of date.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            with_status(UNRECORDED, {"conditions": [seen(PROVIDER_READY, 3)]}),
        ),
        want=SyncResult(
            provider_apply=TWIN, consumer_status={"conditions": [seen(PROVIDER_READY, 1), SYNCING]}
        ),
    ),
    Case(
        reason="A twin left by an earlier consumer object of that name (another uid) says "
        "nothing about this one: its conditions read as out of date while it is adopted.",
        req=req(
            consumer(uid="new-uid", generation=1, status=PROVIDER_STATUS),
            with_status(claim_twin(), {"conditions": [seen(PROVIDER_READY, 3)]}),
        ),
        want=SyncResult(
            provider_apply=twin_of(consumer(uid="new-uid", generation=1)),
            consumer_status={
                "conditions": [
                    seen(PROVIDER_READY, 0),
                    api_bound(
                        "False", "Syncing", "Updating the object in the provider", generation=1
                    ),
                ]
            },
        ),
    ),
    Case(
        reason="A consumer object without metadata.generation has no terms to put the "
        "provider's numbers in: they are dropped, and APIBound carries none.",
        req=req(
            consumer(generation=None, status=PROVIDER_STATUS),
            with_status(
                UNRECORDED, {"observedGeneration": 3, "conditions": [seen(PROVIDER_READY, 3)]}
            ),
        ),
        want=SyncResult(
            consumer_status={
                "conditions": [
                    PROVIDER_READY,
                    {k: v for k, v in BOUND.items() if k != "observedGeneration"},
                ]
            },
        ),
    ),
]

RECREATING = (
    "Waiting for the provider object default/my-resource to be deleted; its finalizers: "
    "finalizer.apiextensions.crossplane.io; compositeDeletePolicy is Foreground: Crossplane "
    "deletes XNopResource my-resource-x7k2p and the resources it composed first; it is created "
    "again once that one is gone"
)

DELETION_CASES = [
    Case(
        reason="An object created again while the twin of its predecessor (another uid) is "
        "still being deleted writes nothing to that twin and is not Bound to it: it waits, "
        "keeping its own status, and gets its finalizer.",
        req=req(
            consumer(uid="0a1b2c3d-new-object", finalizers=[]),
            with_status(
                claim_twin(
                    deletionTimestamp=DELETED_AT,
                    finalizers=["finalizer.apiextensions.crossplane.io"],
                ),
                {"conditions": [seen(SYNCED, 3), seen(DELETING_READY, 3)]},
            ),
        ),
        want=SyncResult(
            consumer_status={"conditions": [api_bound("False", "Recreating", RECREATING)]},
            add_finalizer=True,
        ),
    ),
    Case(
        reason="A twin deleted in the provider while its object lives is not written while it "
        "goes; the object says so rather than Bound.",
        req=req(
            consumer(status=PROVIDER_STATUS),
            claim_twin(
                deletionTimestamp=DELETED_AT,
                finalizers=["finalizer.apiextensions.crossplane.io"],
            ),
        ),
        want=SyncResult(
            consumer_status={
                "conditions": [
                    SYNCED,
                    PROVIDER_READY,
                    api_bound("False", "Recreating", RECREATING),
                ],
                "coolerField": "from the provider",
            }
        ),
    ),
    Case(
        reason="A deleted consumer object deletes its twin; the status waits for the next pass "
        "to say what the twin's deletion waits for.",
        req=req(consumer(deleting=True, generation=3, status=PROVIDER_STATUS), claim_twin()),
        want=SyncResult(provider_delete=True),
    ),
    Case(
        reason="While a claim twin is deleted with compositeDeletePolicy Foreground, its status "
        "keeps flowing in the consumer's terms (deletion moved both generations on), and "
        "APIBound names its finalizers and the composite resource Crossplane deletes first.",
        req=req(
            consumer(deleting=True, generation=3, status=PROVIDER_STATUS),
            with_status(
                claim_twin(
                    generation=4,
                    deletionTimestamp=DELETED_AT,
                    finalizers=["finalizer.apiextensions.crossplane.io"],
                ),
                {"conditions": [seen(SYNCED, 4), seen(DELETING_READY, 4)]},
            ),
        ),
        want=SyncResult(
            consumer_status={
                "conditions": [
                    seen(SYNCED, 3),
                    seen(DELETING_READY, 3),
                    api_bound(
                        "True",
                        "Deleting",
                        "Waiting for the provider object default/my-resource to be deleted; "
                        "its finalizers: finalizer.apiextensions.crossplane.io; "
                        "compositeDeletePolicy is Foreground: Crossplane deletes XNopResource "
                        "my-resource-x7k2p and the resources it composed first",
                        generation=3,
                    ),
                ]
            }
        ),
    ),
    Case(
        reason="A condition the provider has not updated since the twin's deletion reads as "
        "out of date; a twin with no finalizer left is simply awaited.",
        req=req(
            consumer(
                deleting=True,
                generation=3,
                spec={"coolField": "x", "compositeDeletePolicy": "Background"},
                status={"conditions": [api_bound("True", "Bound", "", at=EARLIER)]},
            ),
            with_status(
                as_provider_returns(
                    twin_of(
                        consumer(spec={"coolField": "x", "compositeDeletePolicy": "Background"})
                    ),
                    generation=2,
                    deletionTimestamp=DELETED_AT,
                    finalizers=[],
                ),
                {"conditions": [seen(PROVIDER_READY, 1)]},
            ),
        ),
        want=SyncResult(
            consumer_status={
                "conditions": [
                    seen(PROVIDER_READY, 2),
                    api_bound(
                        "True",
                        "Deleting",
                        "Waiting for the provider object default/my-resource to be deleted",
                        at=EARLIER,
                        generation=3,
                    ),
                ]
            }
        ),
    ),
    Case(
        reason="Once the twin is gone the finalizer is released, with no status write for an "
        "object about to disappear.",
        req=req(consumer(deleting=True, generation=3, status=PROVIDER_STATUS)),
        want=SyncResult(remove_finalizer=True),
    ),
]


@dataclass
class GenerationCase:
    reason: str
    observed: object  # the provider's observedGeneration
    twin_generation: int
    recorded: str | None  # the twin's consumer-generation annotation
    consumer_generation: int | None
    want: int | None
    deleting: bool = False  # both objects being deleted
    twin_uid: str = UID


def generation_request(case: GenerationCase) -> tuple[Obj, Obj]:
    obj = consumer(deleting=case.deleting, generation=case.consumer_generation)
    twin = as_provider_returns(TWIN, generation=case.twin_generation)
    twin["metadata"]["labels"]["connect.upbound.io/consumer-uid"] = case.twin_uid
    annotations = twin["metadata"]["annotations"]
    annotations.pop("connect.upbound.io/consumer-generation")
    if case.recorded is not None:
        annotations["connect.upbound.io/consumer-generation"] = case.recorded
    if case.deleting:
        twin["metadata"]["deletionTimestamp"] = DELETED_AT
    return obj, twin


GENERATION_RULE = [
    GenerationCase("Current for the twin: the generation it reflects.", 3, 3, "2", 2, 2),
    GenerationCase("Above the twin's generation: still the twin as it is.", 4, 3, "2", 2, 2),
    GenerationCase("The twin behind the consumer: its generation, out of date.", 3, 3, "2", 5, 2),
    GenerationCase("About an older twin spec: one less than reflected.", 2, 3, "2", 2, 1),
    GenerationCase("About an older twin spec of a first generation: 0.", 1, 3, "1", 1, 0),
    GenerationCase("Both deleted: the consumer's current generation.", 4, 4, "2", 3, 3, True),
    GenerationCase("Both deleted, an older condition: out of date.", 3, 4, "2", 3, 2, True),
    GenerationCase("No record on the twin: out of date.", 3, 3, None, 2, 1),
    GenerationCase("A record that is not a number: out of date.", 3, 3, "two", 2, 1),
    GenerationCase("A record in non-ASCII digits: out of date.", 3, 3, "²", 2, 1),
    GenerationCase("A record ahead of the consumer: out of date.", 3, 3, "7", 2, 1),
    GenerationCase("Another object's twin (uid): out of date.", 3, 3, "2", 2, 1, twin_uid="old"),
    GenerationCase("A consumer without generation: none.", 3, 3, "2", None, None),
    GenerationCase("A provider value that is not a number: none.", "3", 3, "2", 2, None),
    GenerationCase("A provider value that is a boolean: none.", True, 3, "2", 2, None),
]


@pytest.mark.parametrize("case", GENERATION_RULE, ids=[c.reason for c in GENERATION_RULE])
def test_consumer_generation(case: GenerationCase) -> None:
    obj, twin = generation_request(case)
    assert consumer_generation(case.observed, twin, obj) == case.want, case.reason


@pytest.mark.parametrize("case", GENERATION_CASES, ids=[c.reason for c in GENERATION_CASES])
def test_sync_reports_observed_generations_in_the_consumer_objects_terms(case: Case) -> None:
    assert_same(case.want, sync(case.req), case.reason)


@pytest.mark.parametrize("case", DELETION_CASES, ids=[c.reason for c in DELETION_CASES])
def test_sync_keeps_status_flowing_while_the_twin_is_deleted(case: Case) -> None:
    assert_same(case.want, sync(case.req), case.reason)


# --- adoption of twins another connector created ----------------------------------------

#: What the old connector's twin of ``consumer()`` looks like: managed, its own origin labels,
#: none of ours; the provider's status on it.
OLD_ORIGIN = {"connect.upbound.io/origin-cluster": "9f0c2a", "upbound.io/team": "a"}
FOREIGN = as_provider_returns(
    labelled(TWIN, app="shop", **{"connect.upbound.io/managed": "true"}, **OLD_ORIGIN),
    managedFields=[{"manager": "upbound-api-connector", "operation": "Update"}],
)
ADOPT = Adoption()
CREATED_BY_ANOTHER = (
    "NopResource default/my-resource already exists in the provider and was created by another "
    "connector (connect.upbound.io/managed=true, no consumer cluster's origin labels); it is "
    "left untouched"
)
ADOPTING = api_bound(
    "False", "Adopting", "Adopting the object another connector created in the provider"
)
ADOPTED_TWIN = desired_twin(consumer(), consumer_cluster=CLUSTER, adopted=True)


def adopting(c: Obj, twin: Obj | None, adoption: Adoption | None = ADOPT) -> SyncRequest:
    return replace(req(c, twin), adoption=adoption)


def conflicted(message: str, **result: Any) -> SyncResult:
    return SyncResult(
        conflict=message,
        consumer_status={
            "conditions": [
                *PROVIDER_STATUS["conditions"][:2],
                api_bound("False", "Conflict", message),
            ],
            "coolerField": "from the provider",
        },
        **result,
    )


ADOPTION_CASES = [
    Case(
        reason="Without the opt-in, a twin another connector created is a conflict that says "
        "how to opt in.",
        req=adopting(consumer(status=PROVIDER_STATUS), FOREIGN, None),
        want=conflicted(
            CREATED_BY_ANOTHER + " unless its ClusterConnection opts in to adopting it "
            "(spec.adoption.policy: AdoptManaged)"
        ),
    ),
    Case(
        reason="With the opt-in it is adopted: labelled as ours (and adopted), the consumer's "
        "spec applied, APIBound Adopting until written, the finalizer added.",
        req=adopting(consumer(finalizers=[], status=PROVIDER_STATUS), FOREIGN),
        want=SyncResult(
            provider_apply=ADOPTED_TWIN,
            consumer_status={
                "conditions": [*PROVIDER_STATUS["conditions"][:2], ADOPTING],
                "coolerField": "from the provider",
            },
            add_finalizer=True,
            adopted=True,
        ),
    ),
    Case(
        reason="The opt-in's matchLabels, when all present, still adopt.",
        req=adopting(
            consumer(status=PROVIDER_STATUS),
            FOREIGN,
            Adoption(match_labels={"connect.upbound.io/origin-cluster": "9f0c2a"}),
        ),
        want=SyncResult(
            provider_apply=ADOPTED_TWIN,
            consumer_status={
                "conditions": [*PROVIDER_STATUS["conditions"][:2], ADOPTING],
                "coolerField": "from the provider",
            },
            adopted=True,
        ),
    ),
    Case(
        reason="A twin lacking a label of matchLabels is not adopted, and the conflict names it.",
        req=adopting(
            consumer(status=PROVIDER_STATUS),
            FOREIGN,
            Adoption(match_labels={"connect.upbound.io/origin-cluster": "another"}),
        ),
        want=conflicted(
            CREATED_BY_ANOTHER + ", since it lacks the labels spec.adoption.matchLabels asks "
            "for: connect.upbound.io/origin-cluster"
        ),
    ),
    Case(
        reason="A twin another consumer cluster's origin labels claim is never adopted.",
        req=adopting(
            consumer(status=PROVIDER_STATUS),
            labelled(
                FOREIGN,
                **{
                    "connect.upbound.io/managed": "true",
                    "connect.upbound.io/consumer-cluster": "prod-cluster",
                },
            ),
        ),
        want=conflicted(OTHER_CLUSTERS),
    ),
    Case(
        reason="A provider object without connect.upbound.io/managed=true is never adopted.",
        req=adopting(consumer(status=PROVIDER_STATUS), labelled(FOREIGN, **OLD_ORIGIN)),
        want=conflicted(NOT_OURS),
    ),
    Case(
        reason="A twin being deleted is not adopted; the conflict says why.",
        req=adopting(
            consumer(status=PROVIDER_STATUS),
            as_provider_returns(FOREIGN, deletionTimestamp=DELETED_AT),
        ),
        want=conflicted(CREATED_BY_ANOTHER + ", since it is being deleted"),
    ),
    Case(
        reason="A consumer object being deleted never adopts: the twin is not ours to delete, "
        "and the consumer object is let go.",
        req=adopting(consumer(deleting=True), FOREIGN),
        want=SyncResult(conflict=CREATED_BY_ANOTHER, remove_finalizer=True),
    ),
    Case(
        reason="An adopted twin is ours: in sync, nothing is applied and it stays labelled "
        "adopted; the provider's status comes back with APIBound Bound.",
        req=adopting(
            consumer(status={"conditions": [ADOPTING]}), as_provider_returns(ADOPTED_TWIN)
        ),
        want=SyncResult(consumer_status=PROVIDER_STATUS),
    ),
    Case(
        reason="A spec change of an adopted object is applied with the adopted label kept, "
        "with or without the opt-in.",
        req=adopting(
            consumer(spec=changed_spec(), status=PROVIDER_STATUS),
            as_provider_returns(ADOPTED_TWIN),
            None,
        ),
        want=SyncResult(
            provider_apply=desired_twin(
                consumer(spec=changed_spec()), consumer_cluster=CLUSTER, adopted=True
            ),
            consumer_status={
                "conditions": [SYNCED, PROVIDER_READY, SYNCING],
                "coolerField": "from the provider",
            },
        ),
    ),
]


@pytest.mark.parametrize("case", ADOPTION_CASES, ids=[c.reason for c in ADOPTION_CASES])
def test_sync_adopts_only_what_another_connector_created_and_only_when_asked(case: Case) -> None:
    assert_same(case.want, sync(case.req), case.reason)


def _carry_out(request: SyncRequest, result: SyncResult) -> SyncRequest:
    """What the orchestrator does with ``result``, as the next request would observe it."""
    obj = copy.deepcopy(request.consumer)
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if result.add_finalizer:
        finalizers.append(FINALIZER)
    if result.remove_finalizer:
        finalizers.remove(FINALIZER)
    if result.consumer_status is not None:
        obj["status"] = result.consumer_status
    twin = request.provider
    if result.provider_apply is not None:
        status = twin.get("status") if twin else None
        twin = as_provider_returns(result.provider_apply, status=status or {})
    if result.provider_delete and twin is not None:
        twin = None
    return replace(request, consumer=obj, provider=twin, now="2026-11-23T12:00:05Z")


ALL_CASES = CASES + GENERATION_CASES + DELETION_CASES + ADOPTION_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.reason for c in ALL_CASES])
def test_sync_settles_within_three_rounds_and_then_writes_nothing(case: Case) -> None:
    request = case.req
    for _ in range(3):
        request = _carry_out(request, sync(request))
    result = sync(request)
    assert_same(replace(SyncResult(), conflict=result.conflict), result, case.reason)


def test_sync_moves_the_api_bound_transition_time_only_on_a_change() -> None:
    created = sync(req(consumer()))
    bound = sync(
        replace(
            req(consumer(status=created.consumer_status), as_provider_returns(TWIN)),
            now="2026-11-23T12:01:00Z",
        )
    )
    assert bound.consumer_status is not None
    conditions = {c["type"]: c for c in bound.consumer_status["conditions"]}
    assert conditions["APIBound"]["lastTransitionTime"] == "2026-11-23T12:01:00Z"
    assert conditions["Ready"]["lastTransitionTime"] == EARLIER, "provider times are kept"


@dataclass
class BadInputCase:
    reason: str
    req: SyncRequest
    want_field: str


def renamed(obj: Obj, **meta: Any) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"].update(meta)
    return out


BAD_INPUT = [
    BadInputCase("A consumer that is not an object.", req([]), "consumer"),  # type: ignore[arg-type]
    BadInputCase(
        "A consumer without kind.",
        req({k: v for k, v in consumer().items() if k != "kind"}),
        "consumer.kind",
    ),
    BadInputCase(
        "A consumer without a name.",
        req(renamed(consumer(), name="")),
        "consumer.metadata.name",
    ),
    BadInputCase("An empty consumer cluster.", req(consumer(), cluster=""), "consumer_cluster"),
    BadInputCase(
        "A twin of another kind.",
        req(consumer(), {**TWIN, "kind": "OtherResource"}),
        "provider.kind",
    ),
    BadInputCase(
        "A twin of another version.",
        req(consumer(), {**TWIN, "apiVersion": "nop.example.org/v1"}),
        "provider.apiVersion",
    ),
    BadInputCase(
        "A twin of another name.",
        req(consumer(), renamed(TWIN, name="other")),
        "provider.metadata.name",
    ),
    BadInputCase(
        "A twin in another namespace.",
        req(consumer(), renamed(TWIN, namespace="other")),
        "provider.metadata.namespace",
    ),
    BadInputCase(
        "A twin without metadata.",
        req(consumer(), {"apiVersion": TWIN["apiVersion"], "kind": TWIN["kind"]}),
        "provider.metadata",
    ),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c.reason for c in BAD_INPUT])
def test_sync_rejects_bad_input_naming_the_field(case: BadInputCase) -> None:
    with pytest.raises(InvalidInputError) as caught:
        sync(case.req)
    assert caught.value.field == case.want_field, case.reason


@pytest.mark.parametrize(
    ("connection", "want"),
    [
        (None, None),
        ({"spec": {}}, None),
        ({"spec": {"adoption": {"policy": "Never"}}}, None),
        ({"spec": {"adoption": {"policy": "adoptmanaged"}}}, None),
        ({"spec": {"adoption": {"policy": "AdoptManaged"}}}, Adoption()),
        (
            {"spec": {"adoption": {"policy": "AdoptManaged", "matchLabels": {"a": "b"}}}},
            Adoption(match_labels={"a": "b"}),
        ),
        ({"spec": {"adoption": {"policy": "AdoptManaged", "matchLabels": "x"}}}, Adoption()),
    ],
    ids=["none", "no opt-in", "Never", "case matters", "AdoptManaged", "matchLabels", "bad"],
)
def test_a_connections_opt_in(connection: Obj | None, want: Adoption | None) -> None:
    assert Adoption.of_connection(connection) == want


# --- orphaned twins: what the collector may do once the consumer object is gone ----------


def without(twin: Obj, *, labels: tuple[str, ...] = (), annotations: tuple[str, ...] = ()) -> Obj:
    out = copy.deepcopy(twin)
    for key in labels:
        out["metadata"]["labels"].pop(key)
    for key in annotations:
        out["metadata"]["annotations"].pop(key)
    return out


def renamed(twin: Obj, name: str) -> Obj:
    out = copy.deepcopy(twin)
    out["metadata"]["name"] = name
    return out


@dataclass(frozen=True)
class OrphanCase:
    reason: str
    twin: Obj
    want: str
    cluster: str = CLUSTER


ORPHAN_CASES = [
    OrphanCase("Our twin, no Orphan policy: collected.", as_provider_returns(TWIN), ORPHAN_COLLECT),
    OrphanCase(
        "Its object asked for Orphan (the twin carries the policy): kept.",
        as_provider_returns(ORPHAN_TWIN),
        ORPHAN_KEEP,
    ),
    OrphanCase(
        "Another consumer cluster's: never touched.",
        as_provider_returns(TWIN),
        ORPHAN_NOT_OURS,
        cluster="prod-cluster",
    ),
    OrphanCase(
        "Not labelled managed: never touched.",
        without(as_provider_returns(TWIN), labels=("connect.upbound.io/managed",)),
        ORPHAN_NOT_OURS,
    ),
    OrphanCase("Nobody's (no labels at all): never touched.", labelled(TWIN), ORPHAN_NOT_OURS),
    OrphanCase(
        "Ours but without a consumer uid: nothing says which object it stood for.",
        without(as_provider_returns(TWIN), labels=("connect.upbound.io/consumer-uid",)),
        ORPHAN_NO_ORIGIN,
    ),
    OrphanCase(
        "Only the managed and cluster labels (no origin labels): never touched.",
        labelled(
            TWIN,
            **{
                "connect.upbound.io/managed": "true",
                "connect.upbound.io/consumer-cluster": CLUSTER,
            },
        ),
        ORPHAN_NO_ORIGIN,
    ),
    OrphanCase(
        "Origin that names another object than the twin itself: never touched.",
        renamed(as_provider_returns(TWIN), "someone-else"),
        ORPHAN_NO_ORIGIN,
    ),
    OrphanCase(
        "A twin of an older connector, origin in labels only: collected.",
        without(
            as_provider_returns(TWIN),
            annotations=(
                "connect.upbound.io/consumer-name",
                "connect.upbound.io/consumer-namespace",
            ),
        ),
        ORPHAN_COLLECT,
    ),
    OrphanCase(
        "Already being deleted: nothing to do.",
        as_provider_returns(TWIN, deletionTimestamp=DELETED_AT),
        ORPHAN_DELETING,
    ),
    OrphanCase(
        "A long cluster name is compared as its label value (hashed).",
        as_provider_returns(twin_of(consumer(), cluster=LONG_CLUSTER)),
        ORPHAN_COLLECT,
        cluster=LONG_CLUSTER,
    ),
    OrphanCase(
        "A cluster-scoped twin (no namespace, no namespace label) of ours: collected.",
        as_provider_returns(twin_of(CONFIGMAP)),
        ORPHAN_COLLECT,
    ),
]


@pytest.mark.parametrize("case", ORPHAN_CASES, ids=[c.reason for c in ORPHAN_CASES])
def test_orphan_verdict(case: OrphanCase) -> None:
    got = orphan_verdict(case.twin, consumer_cluster=case.cluster)
    assert got == case.want, f"{case.reason}: -want {case.want}, +got {got}"


@pytest.mark.parametrize("conditions", ["APIBound", {"type": "APIBound"}, ["APIBound", 7]])
def test_sync_writes_its_condition_over_a_malformed_conditions_field(conditions: Any) -> None:
    out = sync(req(consumer(status={"conditions": conditions})))
    assert out.consumer_status is not None
    bound = find_condition(out.consumer_status["conditions"], "APIBound")
    assert bound is not None and bound["status"] == "False", out.consumer_status
