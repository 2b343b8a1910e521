"""The object-syncer run by real Crossplane: the ``ObjectSync`` example
(``examples/functions/object-syncer``) on the session's Crossplane provider.

Crossplane calls ``function-connector-object-syncer`` (installed from its package, served by
``api-connector serve object-syncer`` over mutual TLS) again and again: first the function
only asks for the twin, then Crossplane fetches it and calls again; it composes what the
function returns, reads the twin's readiness, deletes what the function stops returning,
and shows a Fatal result on the XR. Each test has a provider namespace and an XR of its own;
the twins are ``Widget`` objects of a CRD standing in for a bound API.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import Crossplane
from connector.kube import CUSTOM_RESOURCE_DEFINITIONS, NAMESPACES, KubeClient, NotFoundError
from connector.kube.resources import COMPOSITIONS, XRDS_V2, Resource
from tests.e2e.harness import condition, crd, eventually, get

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "functions" / "object-syncer"
OBJECT_SYNCS = Resource("connector.example.org", "v1alpha1", "objectsyncs", "ObjectSync", False)
GROUP = "objsync.example.org"
WIDGETS = Resource(GROUP, "v1alpha1", "widgets", "Widget", True)
#: The Composition's input names the consumer cluster.
CONSUMER_CLUSTER = "consumer-a"
ORPHAN = {"connect.upbound.io/deletion-policy": "Orphan"}
XP_TIMEOUT = 60.0


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def provider(crossplane_provider: Crossplane) -> Iterator[KubeClient]:
    """The provider as its admin, serving the ObjectSync API (the example's XRD and
    Composition, as a platform team applies them) and the Widget CRD."""
    with crossplane_provider.cluster.kube_client() as kube:
        kube.apply(XRDS_V2, load(EXAMPLE / "xrd.yaml"), "xp-test")
        kube.apply(COMPOSITIONS, load(EXAMPLE / "composition.yaml"), "xp-test")
        kube.apply(CUSTOM_RESOURCE_DEFINITIONS, crd(GROUP, "Widget", bindable=False), "xp-test")
        for name in ("objectsyncs.connector.example.org", f"widgets.{GROUP}"):
            eventually(
                lambda n=name: condition(  # type: ignore[misc]
                    get(kube, CUSTOM_RESOURCE_DEFINITIONS, n), "Established"
                ).get("status")
                == "True",
                what=f"{name} to be served",
                timeout=XP_TIMEOUT,
            )
        _wait_for_garbage_collection_of_widgets(kube)
        yield kube


def _wait_for_garbage_collection_of_widgets(kube: KubeClient) -> None:
    """kube-controller-manager's garbage collector learns a new kind on its discovery resync
    (30 s). Until then it cannot orphan a Widget when its XR is deleted with the Orphan
    policy, and deletes it as garbage afterwards: wait until it collects a Widget whose
    owner does not exist, which it does only once it watches Widgets."""
    probe = {
        "apiVersion": WIDGETS.api_version,
        "kind": WIDGETS.kind,
        "metadata": {
            "name": f"gc-probe-{uuid.uuid4().hex[:8]}",
            "namespace": "default",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": str(uuid.uuid4())}
            ],
        },
    }
    kube.create(WIDGETS, probe)
    eventually(
        lambda: get(kube, WIDGETS, probe["metadata"]["name"], "default") is None,
        what="the garbage collector to watch Widgets",
        timeout=120,
    )


@pytest.fixture
def namespace(provider: KubeClient) -> Iterator[str]:
    name = f"objsync-{uuid.uuid4().hex[:8]}"
    provider.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFoundError):
        provider.delete(NAMESPACES, name)


def consumer_object(namespace: str, *, annotations: dict[str, str] | None = None) -> Any:
    meta: dict[str, Any] = {
        "name": "my-widget",
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "generation": 1,
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Widget",
        "metadata": meta,
        "spec": {"coolField": "Synchronized widget"},
    }


def object_sync(provider: KubeClient, name: str, consumer: dict[str, Any]) -> dict[str, Any]:
    """Apply the example XR, carrying ``consumer``, under ``name``."""
    xr = load(EXAMPLE / "xr.yaml")
    xr["metadata"]["name"] = name
    xr["spec"]["consumerObject"] = consumer
    applied: dict[str, Any] = provider.apply(OBJECT_SYNCS, xr, "xp-test")
    return applied


def xr_condition(provider: KubeClient, name: str, type_: str) -> dict[str, Any]:
    return condition(get(provider, OBJECT_SYNCS, name), type_)


def delete_xr(provider: KubeClient, name: str) -> None:
    with contextlib.suppress(NotFoundError):
        provider.delete(OBJECT_SYNCS, name)


def gone(provider: KubeClient, res: Resource, name: str, namespace: str | None = None) -> bool:
    return get(provider, res, name, namespace) is None


def test_crossplane_composes_the_twin_fetches_it_and_reports_api_bound_and_readiness(
    provider: KubeClient, namespace: str
) -> None:
    xr = f"sync-{namespace}"
    consumer = consumer_object(namespace)
    object_sync(provider, xr, consumer)
    try:
        twin = eventually(
            lambda: get(provider, WIDGETS, "my-widget", namespace),
            what="Crossplane to compose the twin",
            timeout=XP_TIMEOUT,
        )
        labels = twin["metadata"]["labels"]
        assert labels["connect.upbound.io/managed"] == "true"
        assert labels["connect.upbound.io/consumer-cluster"] == CONSUMER_CLUSTER
        assert labels["connect.upbound.io/consumer-uid"] == consumer["metadata"]["uid"]
        assert twin["metadata"]["annotations"]["connect.upbound.io/consumer-namespace"] == namespace
        assert twin["spec"] == consumer["spec"]
        [owner] = twin["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("ObjectSync", xr, True)

        # APIBound=True (Bound) is only said once the function has seen the twin in sync: it
        # asked for it, and Crossplane answered in a later call of the same reconcile.
        bound = eventually(
            lambda: (c := xr_condition(provider, xr, "APIBound")).get("reason") == "Bound" and c,
            what="APIBound=True on the XR",
            timeout=XP_TIMEOUT,
        )
        assert bound["status"] == "True"
        got = provider.get(OBJECT_SYNCS, xr)
        consumer_bound = condition({"status": got["status"]["consumerStatus"]}, "APIBound")
        assert consumer_bound["reason"] == "Bound"
        assert got["status"]["sync"] == {
            "addFinalizer": True,
            "removeFinalizer": False,
            "deleteTwin": False,
        }
        assert condition(got, "Synced")["status"] == "True"
        # Readiness is the twin's: no Ready condition on it, so the XR is not ready.
        assert condition(got, "Ready")["status"] == "False"

        # The provider's controller reports the twin ready: Crossplane makes the XR Ready, and
        # the twin's condition flows into the consumer's status in the consumer's terms.
        generation = provider.get(WIDGETS, "my-widget", namespace)["metadata"]["generation"]
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Available",
            "lastTransitionTime": "2026-11-23T12:00:00Z",
            "observedGeneration": generation,
        }
        provider.apply_status(
            WIDGETS,
            {
                "apiVersion": WIDGETS.api_version,
                "kind": "Widget",
                "metadata": {"name": "my-widget", "namespace": namespace},
                "status": {"conditions": [ready]},
            },
            "widget-controller",
        )
        eventually(
            lambda: xr_condition(provider, xr, "Ready").get("status") == "True",
            what="Crossplane to make the XR Ready from the twin's readiness",
            timeout=XP_TIMEOUT,
        )

        def consumer_ready() -> dict[str, Any] | None:
            status = provider.get(OBJECT_SYNCS, xr)["status"]["consumerStatus"]
            found = condition({"status": status}, "Ready")
            return found if found.get("status") == "True" else None

        assert (
            eventually(consumer_ready, what="the twin's Ready in consumerStatus")[
                "observedGeneration"
            ]
            == 1
        )

        # Full desired state on every call: an in-sync call returned the twin too (or
        # Crossplane would have deleted it), and a spec change updates the same twin.
        changed = copy.deepcopy(consumer)
        changed["spec"]["coolField"] = "changed"
        changed["metadata"]["generation"] = 2
        object_sync(provider, xr, changed)
        updated = eventually(
            lambda: (w := get(provider, WIDGETS, "my-widget", namespace))
            and w["spec"]["coolField"] == "changed"
            and w,
            what="the twin to be updated",
            timeout=XP_TIMEOUT,
        )
        assert updated["metadata"]["uid"] == twin["metadata"]["uid"]
    finally:
        delete_xr(provider, xr)
    # Deleting the XR deletes what it composed (the garbage collector, by owner reference).
    eventually(
        lambda: gone(provider, WIDGETS, "my-widget", namespace)
        and gone(provider, OBJECT_SYNCS, xr),
        what="the XR and its twin to be gone",
        timeout=XP_TIMEOUT,
    )


def test_a_foreign_object_of_the_twins_name_is_reported_and_left_untouched(
    provider: KubeClient, namespace: str
) -> None:
    foreign = provider.create(
        WIDGETS,
        {
            "apiVersion": WIDGETS.api_version,
            "kind": "Widget",
            "metadata": {"name": "my-widget", "namespace": namespace, "labels": {"team": "x"}},
            "spec": {"coolField": "someone else's"},
        },
    )
    xr = f"conflict-{namespace}"
    object_sync(provider, xr, consumer_object(namespace))
    try:
        bound = eventually(
            lambda: (c := xr_condition(provider, xr, "APIBound")).get("reason") == "Conflict" and c,
            what="APIBound=False (Conflict) on the XR",
            timeout=XP_TIMEOUT,
        )
        assert bound["status"] == "False"
        assert f"{namespace}/my-widget" in bound["message"], bound
        sync = provider.get(OBJECT_SYNCS, xr)["status"]["sync"]
        assert sync["conflict"] == bound["message"]
        assert not get(provider, OBJECT_SYNCS, xr)["spec"]["crossplane"].get("resourceRefs")
    finally:
        delete_xr(provider, xr)
    eventually(lambda: gone(provider, OBJECT_SYNCS, xr), what="the XR to be gone")
    # Never composed, so never written nor deleted, not even with the XR.
    after = provider.get(WIDGETS, "my-widget", namespace)
    assert after["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert after["spec"] == {"coolField": "someone else's"}
    assert "ownerReferences" not in after["metadata"]


def test_a_deleted_consumer_object_deletes_its_twin_unless_its_policy_is_orphan(
    provider: KubeClient, namespace: str
) -> None:
    deleting = {
        "deletionTimestamp": "2026-11-23T12:00:00Z",
        "finalizers": ["connect.upbound.io/finalizer"],
    }
    plain, orphan = f"plain-{namespace}", f"orphan-{namespace}"
    kept = consumer_object(namespace, annotations=ORPHAN)
    kept["metadata"]["name"] = "kept"
    object_sync(provider, plain, consumer_object(namespace))
    object_sync(provider, orphan, kept)
    try:
        for name in ("my-widget", "kept"):
            eventually(
                lambda n=name: get(provider, WIDGETS, n, namespace),  # type: ignore[misc]
                what=f"the twin {name}",
                timeout=XP_TIMEOUT,
            )
        # The consumer objects are being deleted (what the XRs carry now).
        gone_object = consumer_object(namespace)
        gone_object["metadata"].update(deleting)
        object_sync(provider, plain, gone_object)
        kept_deleting = copy.deepcopy(kept)
        kept_deleting["metadata"].update(deleting)
        object_sync(provider, orphan, kept_deleting)

        # No Orphan: the function stops returning the twin and Crossplane deletes it; then
        # the function says the consumer's finalizer may go.
        eventually(
            lambda: gone(provider, WIDGETS, "my-widget", namespace),
            what="Crossplane to delete the twin the function no longer returns",
            timeout=XP_TIMEOUT,
        )
        eventually(
            lambda: provider.get(OBJECT_SYNCS, plain)["status"]["sync"]["removeFinalizer"],
            what="removeFinalizer once the twin is gone",
            timeout=XP_TIMEOUT,
        )
        # Orphan: the twin stays composed, carrying the policy, and the finalizer may go.
        eventually(
            lambda: provider.get(OBJECT_SYNCS, orphan)["status"]["sync"]["removeFinalizer"],
            what="removeFinalizer with the Orphan twin kept",
            timeout=XP_TIMEOUT,
        )
        twin = provider.get(WIDGETS, "kept", namespace)
        assert twin["metadata"]["annotations"]["connect.upbound.io/deletion-policy"] == "Orphan"
        assert not twin["metadata"].get("deletionTimestamp")
        # Deleting the XR with the policy: orphan what it composed.
        provider.delete(OBJECT_SYNCS, orphan, propagation="Orphan")
        eventually(lambda: gone(provider, OBJECT_SYNCS, orphan), what="the Orphan XR to be gone")
        left = provider.get(WIDGETS, "kept", namespace)
        assert left["metadata"]["uid"] == twin["metadata"]["uid"]
        assert not left["metadata"].get("ownerReferences")
    finally:
        delete_xr(provider, plain)
        delete_xr(provider, orphan)


def test_bad_input_is_a_fatal_result_shown_on_the_xrs_synced_condition(
    provider: KubeClient, namespace: str
) -> None:
    xr = f"bad-{namespace}"
    nameless = consumer_object(namespace)
    del nameless["metadata"]["name"]
    object_sync(provider, xr, nameless)
    try:
        synced = eventually(
            lambda: (c := xr_condition(provider, xr, "Synced")).get("status") == "False" and c,
            what="Synced=False on the XR",
            timeout=XP_TIMEOUT,
        )
        assert "composite.spec.consumerObject.metadata.name: is required" in synced["message"]
        assert provider.list(WIDGETS, namespace)[0] == []
    finally:
        delete_xr(provider, xr)
