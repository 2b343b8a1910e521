"""End to end on real Crossplane: what an XRD offers, claims and namespaced XRs synced both
ways, Crossplane's readiness coming back, drift, observedGeneration and deletion.

Everything a test sees in the provider is Crossplane's own doing (its claim, XR and
composition controllers and the example function); the one thing a test adds there is a
finalizer of its own on an XR, standing in for a composed resource whose cleanup takes a
while, so that the deletion's in-between state can be observed for sure.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

from connector.kube import CONFIG_MAPS, NotFoundError
from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
)
from functions.common.api import FINALIZER
from tests.crossplane_e2e.conftest import (
    CONNECTION,
    NOP,
    NOP_APPS,
    XNOP,
    XP_TIMEOUT,
    XRDS,
    XpWorld,
)
from tests.e2e.harness import (
    apply,
    binding,
    condition,
    eventually,
    get,
)

pytestmark = pytest.mark.timeout(600)

TEST_FINALIZER = "example.org/slow-cleanup"


def claim(namespace: str, name: str = "my-resource", *, policy: str | None = None) -> Any:
    spec: dict[str, Any] = {"coolField": "Synchronized resource"}
    if policy:
        spec["compositeDeletePolicy"] = policy
    return {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ready_and_bound(xp: XpWorld, res: Any, name: str, namespace: str) -> dict[str, Any] | None:
    obj = get(xp.consumer, res, name, namespace)
    ready, bound = condition(obj, "Ready"), condition(obj, "APIBound")
    return obj if ready.get("status") == "True" and bound.get("status") == "True" else None


def composed_claim(xp: XpWorld, name: str, namespace: str) -> dict[str, Any] | None:
    twin = get(xp.provider, NOP, name, namespace)
    return twin if twin and (twin.get("spec") or {}).get("resourceRef") else None


def offered_names(xp: XpWorld) -> tuple[list[str], list[str]]:
    status = xp.consumer.get(CLUSTER_CONNECTIONS, CONNECTION).get("status") or {}
    return (
        [a["name"] for a in status.get("offeredAPIs") or []],
        [a["name"] for a in status.get("withheldAPIs") or []],
    )


# -- publishing and offering ---------------------------------------------------------------


def test_an_xrd_is_published_by_its_label_and_offers_its_claim(xp: XpWorld) -> None:
    group = f"label-{uuid.uuid4().hex[:6]}.example.org"
    xrd_name = f"xwidgets.{group}"
    xrd = {
        "apiVersion": "apiextensions.crossplane.io/v1",
        "kind": "CompositeResourceDefinition",
        "metadata": {"name": xrd_name},
        "spec": {
            "group": group,
            "names": {"kind": "XWidget", "plural": "xwidgets"},
            "claimNames": {"kind": "Widget", "plural": "widgets"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "referenceable": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    xp.provider.apply(XRDS, xrd, "xp-test")
    try:
        eventually(
            lambda: condition(
                get(xp.provider, CUSTOM_RESOURCE_DEFINITIONS, f"widgets.{group}"), "Established"
            ).get("status")
            == "True",
            what="Crossplane to generate the claim CRD",
            timeout=XP_TIMEOUT,
        )
        # A label added to a generated CRD by hand does not last: Crossplane owns the CRD
        # (so a hand-made bindable label would publish it for a moment only).
        hand = {"example.org/by-hand": "true"}
        xp.provider.patch(
            CUSTOM_RESOURCE_DEFINITIONS, f"widgets.{group}", None, {"metadata": {"labels": hand}}
        )

        def reverted() -> bool:
            crd = get(xp.provider, CUSTOM_RESOURCE_DEFINITIONS, f"widgets.{group}")
            return "example.org/by-hand" not in (crd["metadata"].get("labels") or {})

        eventually(reverted, what="Crossplane to revert a hand-made label", timeout=XP_TIMEOUT)
        offered, withheld = offered_names(xp)
        assert f"widgets.{group}" not in offered + withheld
        # The label on the XRD publishes it: the claim is offered, the XR withheld.
        xp.provider.patch(
            XRDS, xrd_name, None, {"metadata": {"labels": {"connect.upbound.io/bindable": "true"}}}
        )

        def published() -> bool:
            offered, withheld = offered_names(xp)
            return f"widgets.{group}" in offered and xrd_name in withheld

        eventually(published, what="the claim offered and the XR withheld", timeout=XP_TIMEOUT)
        assert xrd_name not in offered_names(xp)[0]
    finally:
        with contextlib.suppress(NotFoundError):
            xp.provider.delete(XRDS, xrd_name)


def test_a_group_binding_binds_the_claim_and_names_the_withheld_xr(xp: XpWorld) -> None:
    bound = xp.consumer.get(CLUSTER_API_BINDINGS, "nop.example.org")
    ready = condition(bound, "Ready")
    assert ready["reason"] == "Bound", ready
    assert "nopresources.nop.example.org" in ready["message"]
    assert "not offered in this group: xnopresources.nop.example.org" in ready["message"]
    assert get(xp.consumer, CUSTOM_RESOURCE_DEFINITIONS, "nopresources.nop.example.org")
    assert get(xp.consumer, CUSTOM_RESOURCE_DEFINITIONS, "xnopresources.nop.example.org") is None


def test_a_crd_name_binding_of_the_withheld_xr_is_not_offered(xp: XpWorld) -> None:
    name = "xnopresources.nop.example.org"
    apply(xp.consumer, binding(name, CONNECTION))
    try:

        def verdict() -> dict[str, Any] | None:
            ready = condition(get(xp.consumer, CLUSTER_API_BINDINGS, name), "Ready")
            return ready if ready.get("reason") == "NotOffered" else None

        ready = eventually(verdict, what="the XR binding to be NotOffered")
        assert ready["status"] == "False"
        assert "connect.upbound.io/offer" in ready["message"], ready["message"]
        assert get(xp.consumer, CUSTOM_RESOURCE_DEFINITIONS, name) is None
    finally:
        xp.consumer.delete(CLUSTER_API_BINDINGS, name)


# -- claims: create, update, readiness, drift, observedGeneration ----------------------------


def test_a_claim_is_composed_by_crossplane_and_its_readiness_comes_back(
    xp: XpWorld, xp_namespace: str
) -> None:
    apply(xp.consumer, claim(xp_namespace))
    twin = eventually(
        lambda: composed_claim(xp, "my-resource", xp_namespace),
        what="Crossplane to compose the claim",
        timeout=XP_TIMEOUT,
    )
    assert twin["metadata"]["labels"]["connect.upbound.io/managed"] == "true"
    obj = eventually(
        lambda: ready_and_bound(xp, NOP, "my-resource", xp_namespace),
        what="Crossplane's Ready=True in the consumer",
        timeout=XP_TIMEOUT,
    )
    ready = condition(obj, "Ready")
    # Crossplane's own condition, as the claim in the provider has it.
    provider_ready = condition(get(xp.provider, NOP, "my-resource", xp_namespace), "Ready")
    assert ready["reason"] == provider_ready["reason"] == "Available"
    assert condition(obj, "Synced")["status"] == "True"
    assert condition(obj, "APIBound")["reason"] == "Bound"
    # Spec flows one way: what Crossplane writes into the claim's spec stays in the provider.
    assert "resourceRef" not in obj["spec"]
    assert twin["spec"]["coolField"] == obj["spec"]["coolField"]


def test_observed_generation_is_in_the_consumer_objects_terms(
    xp: XpWorld, xp_namespace: str
) -> None:
    apply(xp.consumer, claim(xp_namespace))
    eventually(lambda: ready_and_bound(xp, NOP, "my-resource", xp_namespace), timeout=XP_TIMEOUT)
    twin = xp.provider.get(NOP, "my-resource", xp_namespace)
    obj = xp.consumer.get(NOP, "my-resource", xp_namespace)
    # Crossplane's spec writes moved the twin on; the consumer object is still at 1.
    assert twin["metadata"]["generation"] > obj["metadata"]["generation"] == 1
    for cond in obj["status"]["conditions"]:
        assert cond["observedGeneration"] == 1, cond
    assert twin["metadata"]["annotations"]["connect.upbound.io/consumer-generation"] == "1"

    changed = claim(xp_namespace)
    changed["spec"]["coolField"] = "changed"
    apply(xp.consumer, changed)

    def caught_up() -> bool:
        obj = xp.consumer.get(NOP, "my-resource", xp_namespace)
        gen = obj["metadata"]["generation"]
        return gen == 2 and all(
            c.get("observedGeneration") == gen for c in obj["status"]["conditions"]
        )

    eventually(caught_up, what="every condition to observe generation 2", timeout=XP_TIMEOUT)


def test_an_update_reaches_what_crossplane_composes_and_drift_is_put_back(
    xp: XpWorld, xp_namespace: str
) -> None:
    apply(xp.consumer, claim(xp_namespace))
    eventually(lambda: ready_and_bound(xp, NOP, "my-resource", xp_namespace), timeout=XP_TIMEOUT)
    changed = claim(xp_namespace)
    changed["spec"]["coolField"] = "updated in the consumer"
    apply(xp.consumer, changed)

    def composed_value() -> list[str]:
        maps = xp.provider.list(
            CONFIG_MAPS,
            namespace=xp_namespace,
            label_selector="crossplane.io/claim-name=my-resource",
        )[0]
        return [str(v) for m in maps for v in (m.get("data") or {}).values()]

    # The example function composes a ConfigMap holding spec.coolField.
    eventually(
        lambda: "updated in the consumer" in composed_value(),
        what="the composed ConfigMap to hold the update",
        timeout=XP_TIMEOUT,
    )
    # Drift: an edit in the provider is put back from the consumer object.
    xp.provider.patch(NOP, "my-resource", xp_namespace, {"spec": {"coolField": "drifted"}})
    eventually(
        lambda: xp.provider.get(NOP, "my-resource", xp_namespace)["spec"]["coolField"]
        == "updated in the consumer",
        what="the drifted twin to be put back",
    )


# -- deletion --------------------------------------------------------------------------------


def _hold_xr(xp: XpWorld, xp_namespace: str) -> str:
    """Put a finalizer of the test's own on the claim's XR; return the XR's name."""
    twin = eventually(lambda: composed_claim(xp, "my-resource", xp_namespace), timeout=XP_TIMEOUT)
    xr: str = twin["spec"]["resourceRef"]["name"]
    xp.provider.patch(XNOP, xr, None, {"metadata": {"finalizers": [TEST_FINALIZER]}})
    return xr


def _release_xr(xp: XpWorld, xr: str) -> None:
    with contextlib.suppress(NotFoundError):
        xp.provider.patch(XNOP, xr, None, {"metadata": {"finalizers": None}})


def test_foreground_deletion_waits_for_the_xr_and_the_claim_on_both_sides(
    xp: XpWorld, xp_namespace: str
) -> None:
    apply(xp.consumer, claim(xp_namespace, policy="Foreground"))
    eventually(lambda: ready_and_bound(xp, NOP, "my-resource", xp_namespace), timeout=XP_TIMEOUT)
    xr = _hold_xr(xp, xp_namespace)
    try:
        xp.consumer.delete(NOP, "my-resource", xp_namespace)

        def deleting() -> dict[str, Any] | None:
            obj = get(xp.consumer, NOP, "my-resource", xp_namespace)
            ready, bound = condition(obj, "Ready"), condition(obj, "APIBound")
            # Crossplane's own Ready=False (Deleting) flows back while the claim waits.
            crossplane_deleting = ready.get("reason") == "Deleting"
            waiting = bound.get("reason") == "Deleting" and "Foreground" in bound["message"]
            return obj if crossplane_deleting and waiting else None

        obj = eventually(deleting, what="Ready and APIBound Deleting", timeout=XP_TIMEOUT)
        twin = xp.provider.get(NOP, "my-resource", xp_namespace)
        assert twin["metadata"].get("deletionTimestamp")
        assert xp.provider.get(XNOP, xr)["metadata"].get("deletionTimestamp")
        assert FINALIZER in obj["metadata"]["finalizers"]
        bound = condition(obj, "APIBound")
        assert bound["status"] == "True"
        assert f"{xp_namespace}/my-resource" in bound["message"]
        assert xr in bound["message"], bound["message"]
        # Crossplane has seen the deletion: in the consumer's terms, the current generation.
        ready = condition(obj, "Ready")
        assert ready["status"] == "False"
        assert ready["observedGeneration"] == obj["metadata"]["generation"], ready
    finally:
        _release_xr(xp, xr)
    eventually(
        lambda: get(xp.consumer, NOP, "my-resource", xp_namespace) is None,
        what="the consumer object to be gone",
        timeout=XP_TIMEOUT,
    )
    assert get(xp.provider, NOP, "my-resource", xp_namespace) is None
    assert get(xp.provider, XNOP, xr) is None


def test_background_deletion_releases_the_claim_before_the_xr_is_gone(
    xp: XpWorld, xp_namespace: str
) -> None:
    apply(xp.consumer, claim(xp_namespace, policy="Background"))
    eventually(lambda: ready_and_bound(xp, NOP, "my-resource", xp_namespace), timeout=XP_TIMEOUT)
    xr = _hold_xr(xp, xp_namespace)
    # A provider-side finalizer on the claim itself: the consumer object must wait for it.
    xp.provider.patch(
        NOP,
        "my-resource",
        xp_namespace,
        {"metadata": {"finalizers": [*_finalizers(xp, xp_namespace), TEST_FINALIZER]}},
    )
    try:
        xp.consumer.delete(NOP, "my-resource", xp_namespace)

        def waiting() -> dict[str, Any] | None:
            obj = get(xp.consumer, NOP, "my-resource", xp_namespace)
            bound = condition(obj, "APIBound")
            if bound.get("reason") != "Deleting" or TEST_FINALIZER not in bound["message"]:
                return None
            twin = get(xp.provider, NOP, "my-resource", xp_namespace) or {}
            # Background: Crossplane has released its own claim finalizer already.
            return obj if twin["metadata"].get("finalizers") == [TEST_FINALIZER] else None

        obj = eventually(waiting, what="the claim to wait only on the test", timeout=XP_TIMEOUT)
        assert FINALIZER in obj["metadata"]["finalizers"]
        assert xp.provider.get(NOP, "my-resource", xp_namespace)["metadata"]["deletionTimestamp"]
        xp.provider.patch(NOP, "my-resource", xp_namespace, {"metadata": {"finalizers": None}})
        eventually(
            lambda: get(xp.consumer, NOP, "my-resource", xp_namespace) is None,
            what="the consumer object to be gone",
            timeout=XP_TIMEOUT,
        )
        assert get(xp.provider, NOP, "my-resource", xp_namespace) is None
        # The XR is deleted in the background, and still held by the test.
        assert xp.provider.get(XNOP, xr)["metadata"].get("deletionTimestamp")
    finally:
        _release_xr(xp, xr)
    eventually(lambda: get(xp.provider, XNOP, xr) is None, what="the XR to be gone")


def _finalizers(xp: XpWorld, xp_namespace: str) -> list[str]:
    twin = xp.provider.get(NOP, "my-resource", xp_namespace)
    return list(twin["metadata"].get("finalizers") or [])


# -- Crossplane v2: a namespaced XR ----------------------------------------------------------


def test_a_namespaced_xr_is_bound_synced_ready_and_deleted(xp: XpWorld, xp_namespace: str) -> None:
    name = "nopapps.app.example.org"
    apply(xp.consumer, binding(name, CONNECTION))
    try:
        eventually(
            lambda: condition(get(xp.consumer, CLUSTER_API_BINDINGS, name), "Ready").get("reason")
            == "Bound",
            what="the NopApp binding (by CRD name) to be bound",
            timeout=XP_TIMEOUT,
        )
        eventually(lambda: get(xp.consumer, CUSTOM_RESOURCE_DEFINITIONS, name))
        app = {
            "apiVersion": "app.example.org/v1alpha1",
            "kind": "NopApp",
            "metadata": {"name": "my-app", "namespace": xp_namespace},
            "spec": {"coolField": "Synchronized app"},
        }
        apply(xp.consumer, app, NOP_APPS)
        obj = eventually(
            lambda: ready_and_bound(xp, NOP_APPS, "my-app", xp_namespace),
            what="Crossplane's Ready=True on the NopApp in the consumer",
            timeout=XP_TIMEOUT,
        )
        twin = xp.provider.get(NOP_APPS, "my-app", xp_namespace)
        assert twin["spec"]["crossplane"]["compositionRef"]["name"] == name
        assert condition(obj, "Ready")["reason"] == "Available"
        assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
        xp.consumer.delete(NOP_APPS, "my-app", xp_namespace)
        eventually(
            lambda: get(xp.consumer, NOP_APPS, "my-app", xp_namespace) is None,
            what="the NopApp to be gone in the consumer",
            timeout=XP_TIMEOUT,
        )
        assert get(xp.provider, NOP_APPS, "my-app", xp_namespace) is None
    finally:
        xp.consumer.delete(CLUSTER_API_BINDINGS, name)
