"""Bound objects: created, updated and deleted in the provider; status and drift come back."""

from __future__ import annotations

import copy
from typing import Any

from connector.kube.resources import CLUSTER_API_BINDINGS, EVENTS, NAMESPACES, Resource
from tests.e2e.conftest import CONNECTION, World
from tests.e2e.harness import (
    NOP,
    apply,
    binding,
    condition,
    consistently,
    crd,
    eventually,
    get,
    load,
    nop_admission,
    reason_of,
    unique,
    warning_events,
)

FINALIZER = "connect.upbound.io/finalizer"


def nop(namespace: str, name: str = "my-resource") -> dict[str, Any]:
    (doc,) = load("consumer/40-nopresource.yaml")
    doc["metadata"].update(name=name, namespace=namespace)
    return dict(doc)


def twin(world: World, namespace: str, name: str = "my-resource") -> Any:
    return get(world.provider, NOP, name, namespace)


def finalized(world: World, namespace: str, name: str = "my-resource") -> bool:
    """Whether the consumer object holds the connector's finalizer, which is written at the
    same time as the twin (so it may land a moment after the twin is seen)."""
    obj = get(world.consumer, NOP, name, namespace)
    return FINALIZER in ((obj or {}).get("metadata", {}).get("finalizers") or [])


def test_a_bound_object_is_created_in_the_provider_with_managed_and_origin_labels(
    world: World, namespace: str
) -> None:
    created = apply(world.consumer, nop(namespace))
    provider_twin = eventually(lambda: twin(world, namespace))
    labels = provider_twin["metadata"]["labels"]
    assert labels["connect.upbound.io/managed"] == "true"
    assert labels["connect.upbound.io/consumer-cluster"] == world.consumer_cluster
    assert labels["connect.upbound.io/consumer-namespace"] == namespace
    assert labels["connect.upbound.io/consumer-name"] == "my-resource"
    assert labels["connect.upbound.io/consumer-uid"] == created["metadata"]["uid"]
    assert provider_twin["spec"]["coolField"] == "Synchronized resource"
    assert provider_twin["spec"]["compositeDeletePolicy"] == "Foreground"
    eventually(lambda: finalized(world, namespace), what="the connector's finalizer", timeout=10)


def test_the_namespace_is_created_in_the_provider(world: World, namespace: str) -> None:
    # The shared fixture made the namespace in both clusters; use one only the consumer has.
    ns = unique("only-consumer")
    world.consumer.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    assert get(world.provider, NAMESPACES, ns) is None
    apply(world.consumer, nop(ns))
    eventually(lambda: twin(world, ns))
    assert get(world.provider, NAMESPACES, ns) is not None
    # Clean up while the connector runs: the object's finalizer waits for the twin.
    world.consumer.delete(NOP, "my-resource", ns)
    eventually(lambda: get(world.consumer, NOP, "my-resource", ns) is None)
    world.consumer.delete(NAMESPACES, ns)


def test_spec_labels_and_annotations_changes_follow_in_the_provider(
    world: World, namespace: str
) -> None:
    apply(world.consumer, nop(namespace))
    eventually(lambda: twin(world, namespace))
    changed = nop(namespace)
    changed["spec"]["coolField"] = "changed"
    changed["metadata"]["labels"] = {"team": "blue"}
    changed["metadata"]["annotations"] = {"example.org/note": "hello"}
    apply(world.consumer, changed)

    def followed() -> bool:
        t = twin(world, namespace)
        return (
            t["spec"]["coolField"] == "changed"
            and t["metadata"]["labels"].get("team") == "blue"
            and t["metadata"].get("annotations", {}).get("example.org/note") == "hello"
        )

    eventually(followed)


def test_fields_labels_and_annotations_removed_in_the_consumer_go_from_the_twin(
    world: World, namespace: str
) -> None:
    # The twin is created with POST (its fields then belong to an Update entry) and later
    # changed by server-side apply: the connector hands the fields over first, or a removed
    # field would stay in the provider for good.
    first = nop(namespace)
    first["metadata"]["labels"] = {"team": "blue", "tier": "gold"}
    first["metadata"]["annotations"] = {"example.org/note": "hello"}
    first["spec"]["compositionRef"] = {"name": "example"}
    apply(world.consumer, first)
    created = eventually(lambda: twin(world, namespace))
    assert created["metadata"]["labels"]["tier"] == "gold"
    assert created["spec"]["compositionRef"] == {"name": "example"}
    entries = {(e["manager"], e["operation"]) for e in created["metadata"]["managedFields"]}
    assert ("api-connector", "Update") in entries  # created with POST

    # kubectl apply's removal: the consumer's own apply no longer sets them.
    second = nop(namespace)
    second["metadata"]["labels"] = {"team": "blue"}
    apply(world.consumer, second)

    def removed() -> bool:
        t = twin(world, namespace)
        return (
            "tier" not in t["metadata"]["labels"]
            and "example.org/note" not in (t["metadata"].get("annotations") or {})
            and "compositionRef" not in t["spec"]
        )

    eventually(removed)
    t = twin(world, namespace)
    assert t["metadata"]["labels"]["team"] == "blue"
    assert t["spec"]["coolField"] == "Synchronized resource"
    ours = [e for e in t["metadata"]["managedFields"] if e["manager"] == "api-connector"]
    assert [e["operation"] for e in ours] == ["Apply"]
    eventually(
        lambda: condition(world.consumer.get(NOP, "my-resource", namespace), "APIBound").get(
            "status"
        )
        == "True"
    )


def test_provider_status_comes_back_with_api_bound_true(world: World, namespace: str) -> None:
    apply(world.consumer, nop(namespace))
    t = eventually(lambda: twin(world, namespace))
    # The provider's reconciler (played here) writes a spec field of its own, as Crossplane
    # does (moving the twin's generation on), then reports Ready for that generation.
    world.provider.patch(
        NOP, "my-resource", namespace, {"spec": {"compositionRef": {"name": "nop"}}}
    )
    t = copy.deepcopy(twin(world, namespace))
    assert t["metadata"]["generation"] > 1
    t["status"] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": t["metadata"]["generation"],
            }
        ]
    }
    world.provider.update_status(NOP, t)

    def synced_back() -> bool:
        obj = world.consumer.get(NOP, "my-resource", namespace)
        return (
            condition(obj, "Ready").get("status") == "True"
            and condition(obj, "APIBound").get("status") == "True"
        )

    eventually(synced_back)
    obj = world.consumer.get(NOP, "my-resource", namespace)
    # In the consumer object's own terms: the provider has seen its current spec.
    assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
    # The provider's own spec field is left alone.
    assert twin(world, namespace)["spec"]["compositionRef"] == {"name": "nop"}


def test_deleting_waits_for_the_twin_to_be_gone(world: World, namespace: str) -> None:
    apply(world.consumer, nop(namespace))
    eventually(lambda: twin(world, namespace))
    eventually(lambda: finalized(world, namespace), what="the connector's finalizer", timeout=10)
    # Give the twin a finalizer of the provider's own, as Crossplane would while it cleans up.
    world.provider.patch(
        NOP, "my-resource", namespace, {"metadata": {"finalizers": ["example.org/cleanup"]}}
    )
    world.consumer.delete(NOP, "my-resource", namespace)

    def terminating() -> dict[str, Any] | None:
        t = twin(world, namespace)
        return t if t["metadata"].get("deletionTimestamp") else None

    t = copy.deepcopy(eventually(terminating))
    still = world.consumer.get(NOP, "my-resource", namespace)
    assert still["metadata"].get("deletionTimestamp")
    assert FINALIZER in still["metadata"]["finalizers"]
    # The provider reports the deletion in progress (as Crossplane does): it comes back, and
    # APIBound says what the deletion waits for.
    t["status"] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Deleting",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": t["metadata"]["generation"],
            }
        ]
    }
    world.provider.update_status(NOP, t)

    def deleting() -> dict[str, Any] | None:
        obj = world.consumer.get(NOP, "my-resource", namespace)
        ready, bound = condition(obj, "Ready"), condition(obj, "APIBound")
        if ready.get("reason") == "Deleting" and bound.get("reason") == "Deleting":
            return obj
        return None

    obj = eventually(deleting)
    bound = condition(obj, "APIBound")
    assert bound["status"] == "True"
    assert "example.org/cleanup" in bound["message"], bound["message"]
    assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
    world.provider.patch(NOP, "my-resource", namespace, {"metadata": {"finalizers": None}})
    eventually(lambda: get(world.consumer, NOP, "my-resource", namespace) is None)
    assert twin(world, namespace) is None


def test_a_twin_deleted_out_of_band_is_put_back(world: World, namespace: str) -> None:
    apply(world.consumer, nop(namespace))
    first = eventually(lambda: twin(world, namespace))
    world.provider.delete(NOP, "my-resource", namespace)
    eventually(
        lambda: (twin(world, namespace) or {}).get("metadata", {}).get("uid")
        not in (None, first["metadata"]["uid"])
    )


def test_a_twin_deleted_out_of_band_and_held_is_waited_for_then_created_anew(
    world: World, namespace: str
) -> None:
    apply(world.consumer, nop(namespace))
    first = eventually(lambda: twin(world, namespace))
    # Deleted in the provider, and held there by a finalizer (as Crossplane holds a claim
    # while it deletes what it composed): the live consumer object must not call it Bound.
    world.provider.patch(
        NOP, "my-resource", namespace, {"metadata": {"finalizers": ["example.org/cleanup"]}}
    )
    world.provider.delete(NOP, "my-resource", namespace)

    def recreating() -> dict[str, Any] | None:
        bound = condition(world.consumer.get(NOP, "my-resource", namespace), "APIBound")
        return bound if bound.get("reason") == "Recreating" else None

    bound = eventually(recreating)
    assert bound["status"] == "False"
    assert "example.org/cleanup" in bound["message"], bound["message"]
    world.provider.patch(NOP, "my-resource", namespace, {"metadata": {"finalizers": None}})

    def created_anew() -> dict[str, Any] | None:
        t = twin(world, namespace)
        return t if t and t["metadata"]["uid"] != first["metadata"]["uid"] else None

    eventually(created_anew)
    eventually(
        lambda: condition(world.consumer.get(NOP, "my-resource", namespace), "APIBound").get(
            "reason"
        )
        == "Bound"
    )


def test_a_twin_edited_out_of_band_is_put_back(world: World, namespace: str) -> None:
    apply(world.consumer, nop(namespace))
    eventually(lambda: twin(world, namespace))
    world.provider.patch(NOP, "my-resource", namespace, {"spec": {"coolField": "drifted"}})
    eventually(lambda: twin(world, namespace)["spec"]["coolField"] == "Synchronized resource")


def test_a_cluster_scoped_bound_crd_syncs_its_objects(world: World) -> None:
    group = f"{unique('cl')}.example.org"
    apply(world.provider, crd(group, "Realm", scope="Cluster"))
    world.chart.allow(group, "realms")
    apply(world.consumer, binding(group, CONNECTION))
    eventually(lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "Bound")
    res = Resource(group, "v1alpha1", "realms", "Realm", False)
    apply(
        world.consumer,
        {
            "apiVersion": f"{group}/v1alpha1",
            "kind": "Realm",
            "metadata": {"name": "r1"},
            "spec": {"coolField": "cluster-wide"},
        },
        res,
    )
    provider_obj = eventually(lambda: get(world.provider, res, "r1"))
    assert provider_obj["spec"]["coolField"] == "cluster-wide"
    assert provider_obj["metadata"]["labels"]["connect.upbound.io/managed"] == "true"


def test_an_object_the_provider_rejects_is_reported_and_retried_until_fixed(
    world: World, namespace: str
) -> None:
    # The provider's admission (a ValidatingAdmissionPolicy, scoped to this test's
    # namespace) refuses what the consumer's schema allows.
    policy = unique("no-forbidden")
    refusing = nop_admission(
        world.provider,
        policy,
        namespace,
        expression="object.spec.coolField != 'forbidden'",
        message="coolField must not be 'forbidden' here",
    )
    probe = nop(namespace, "probe")
    probe["spec"]["coolField"] = "forbidden"

    def policy_active() -> bool:
        try:
            world.provider.create(NOP, probe)
        except Exception as exc:
            return "forbidden" in str(exc)
        world.provider.delete(NOP, "probe", namespace)
        return False

    with refusing:
        eventually(policy_active)
        bad = nop(namespace, "rejected")
        bad["spec"]["coolField"] = "forbidden"
        apply(world.consumer, bad)

        def rejected() -> bool:
            bound = condition(world.consumer.get(NOP, "rejected", namespace), "APIBound")
            return bound.get("reason") == "ProviderRejected" and "forbidden" in bound["message"]

        eventually(rejected)
        events = warning_events(world.consumer, namespace, "rejected")
        assert [e["reason"] for e in events] == ["ProviderRejected"]
        assert twin(world, namespace, "rejected") is None

        fixed = nop(namespace, "rejected")
        apply(world.consumer, fixed)
        eventually(lambda: twin(world, namespace, "rejected"))


def test_a_finalizer_the_consumer_refuses_is_reported_and_retried_until_allowed(
    world: World, namespace: str
) -> None:
    # The consumer's own admission (scoped to this test's namespace) refuses finalizers on
    # NopResources, as a policy engine might.
    refusing = nop_admission(
        world.consumer,
        unique("no-finalizers"),
        namespace,
        expression="!has(object.metadata.finalizers) || size(object.metadata.finalizers) == 0",
        message="finalizers are not allowed here",
    )
    probe = nop(namespace, "probe")
    probe["metadata"]["finalizers"] = ["example.org/probe"]

    def policy_active() -> bool:
        try:
            world.consumer.create(NOP, probe)
        except Exception as exc:
            return "finalizers are not allowed" in str(exc)
        world.consumer.patch(NOP, "probe", namespace, {"metadata": {"finalizers": None}})
        world.consumer.delete(NOP, "probe", namespace)
        return False

    with refusing:
        eventually(policy_active)
        apply(world.consumer, nop(namespace, "held"))

        def refused() -> dict[str, Any] | None:
            bound = condition(world.consumer.get(NOP, "held", namespace), "APIBound")
            return bound if bound.get("reason") == "FinalizerRefused" else None

        bound = eventually(refused)
        assert bound["status"] == "False"
        assert "finalizers are not allowed here" in bound["message"], "the server's message"
        assert FINALIZER in bound["message"]
        assert [e["reason"] for e in warning_events(world.consumer, namespace, "held")] == [
            "FinalizerRefused"
        ]
        # The twin is written all the same: only the deletion's wait is missing.
        assert twin(world, namespace, "held") is not None

    def bound_with_finalizer() -> bool:
        obj = world.consumer.get(NOP, "held", namespace)
        return (
            FINALIZER in (obj["metadata"].get("finalizers") or [])
            and condition(obj, "APIBound").get("reason") == "Bound"
        )

    eventually(bound_with_finalizer, timeout=60)

    # The recovery is told as the refusal was: a Normal Event.
    def recovery_told() -> bool:
        items, _ = world.consumer.list(EVENTS, namespace)
        return any(
            e.get("involvedObject", {}).get("name") == "held"
            and (e.get("type"), e.get("reason")) == ("Normal", "Bound")
            for e in items
        )

    eventually(recovery_told, what="the Normal Event telling the finalizer was accepted")


def test_nothing_is_written_once_an_object_is_in_sync(world: World, namespace: str) -> None:
    apply(world.consumer, nop(namespace))

    def bound() -> bool:
        obj = world.consumer.get(NOP, "my-resource", namespace)
        return condition(obj, "APIBound").get("reason") == "Bound"

    eventually(bound)
    consumer_rv = world.consumer.get(NOP, "my-resource", namespace)["metadata"]["resourceVersion"]
    twin_rv = twin(world, namespace)["metadata"]["resourceVersion"]
    # Level-based and idempotent: the object's own update events reconcile it again, and
    # each such reconcile must find nothing to write.
    consistently(
        lambda: world.consumer.get(NOP, "my-resource", namespace)["metadata"]["resourceVersion"]
        == consumer_rv
        and twin(world, namespace)["metadata"]["resourceVersion"] == twin_rv,
        duration=2.0,
    )


def test_an_orphaned_object_leaves_its_twin_in_the_provider(world: World, namespace: str) -> None:
    obj = nop(namespace)
    obj["metadata"]["annotations"] = {"connect.upbound.io/deletion-policy": "Orphan"}
    apply(world.consumer, obj)
    eventually(lambda: twin(world, namespace))
    world.consumer.delete(NOP, "my-resource", namespace)
    eventually(lambda: get(world.consumer, NOP, "my-resource", namespace) is None)
    kept = twin(world, namespace)
    assert kept is not None and not kept["metadata"].get("deletionTimestamp")
