"""Connection details on real Crossplane: the example function writes ``coolField`` as a
connection detail when asked (examples/crossplane/function-nop). A claim's Secret, which
Crossplane writes from its XR's, and a v2 namespaced XR's composed Secret arrive in the
consumer, follow a change (rotation), and go when no longer asked for or when the object is
deleted."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from connector.kube.resources import CLUSTER_API_BINDINGS, CUSTOM_RESOURCE_DEFINITIONS, SECRETS
from tests.crossplane_e2e.conftest import CONNECTION, NOP, NOP_APPS, XP_TIMEOUT, XpWorld
from tests.e2e.harness import apply, binding, condition, eventually, get

pytestmark = pytest.mark.timeout(300)


def cool_field_of(xp: XpWorld, namespace: str, name: str) -> str | None:
    """The ``coolField`` connection detail in the consumer's Secret, or None."""
    secret = get(xp.consumer, SECRETS, name, namespace)
    value = ((secret or {}).get("data") or {}).get("coolField")
    return None if value is None else base64.b64decode(value).decode()


def claim(namespace: str, cool: str, *, secret: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"coolField": cool, "compositeDeletePolicy": "Background"}
    if secret is not None:
        spec["writeConnectionSecretToRef"] = {"name": secret}
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": "db", "namespace": namespace},
        "spec": spec,
    }


def test_a_claims_connection_secret_arrives_is_rotated_and_removed(
    xp: XpWorld, xp_namespace: str
) -> None:
    apply(xp.consumer, claim(xp_namespace, "first", secret="db-conn"), NOP)
    eventually(
        lambda: cool_field_of(xp, xp_namespace, "db-conn") == "first",
        what="the claim's connection Secret in the consumer",
        timeout=XP_TIMEOUT,
    )
    secret = xp.consumer.get(SECRETS, "db-conn", xp_namespace)
    assert secret["type"] == "connection.crossplane.io/v1alpha1"
    # The object's status is written after its Secret (never "Synced" before the Secret
    # exists), so it may follow a moment later.
    eventually(
        lambda: condition(xp.consumer.get(NOP, "db", xp_namespace), "ConnectionSecretSynced").get(
            "reason"
        )
        == "Synced",
        what="ConnectionSecretSynced=Synced on the claim",
        timeout=30,
    )

    apply(xp.consumer, claim(xp_namespace, "second", secret="db-conn"), NOP)
    eventually(
        lambda: cool_field_of(xp, xp_namespace, "db-conn") == "second",
        what="the rotated connection detail in the consumer",
        timeout=XP_TIMEOUT,
    )

    apply(xp.consumer, claim(xp_namespace, "second", secret=None), NOP)
    eventually(
        lambda: get(xp.consumer, SECRETS, "db-conn", xp_namespace) is None,
        what="the Secret no longer asked for to be deleted",
        timeout=XP_TIMEOUT,
    )
    xp.consumer.delete(NOP, "db", xp_namespace)
    eventually(lambda: get(xp.consumer, NOP, "db", xp_namespace) is None, timeout=XP_TIMEOUT)


def test_a_namespaced_xrs_composed_connection_secret_arrives_and_goes_with_it(
    xp: XpWorld, xp_namespace: str
) -> None:
    name = "nopapps.app.example.org"
    apply(xp.consumer, binding(name, CONNECTION))
    try:
        eventually(lambda: get(xp.consumer, CUSTOM_RESOURCE_DEFINITIONS, name), timeout=XP_TIMEOUT)
        app = {
            "apiVersion": NOP_APPS.api_version,
            "kind": NOP_APPS.kind,
            "metadata": {"name": "app", "namespace": xp_namespace},
            "spec": {"coolField": "v2", "writeConnectionSecretToRef": {"name": "app-conn"}},
        }
        eventually(lambda: apply(xp.consumer, app, NOP_APPS), timeout=XP_TIMEOUT)
        eventually(
            lambda: cool_field_of(xp, xp_namespace, "app-conn") == "v2",
            what="the NopApp's composed connection Secret in the consumer",
            timeout=XP_TIMEOUT,
        )
        xp.consumer.delete(NOP_APPS, "app", xp_namespace)
        eventually(
            lambda: get(xp.consumer, NOP_APPS, "app", xp_namespace) is None, timeout=XP_TIMEOUT
        )
        assert get(xp.consumer, SECRETS, "app-conn", xp_namespace) is None
    finally:
        xp.consumer.delete(CLUSTER_API_BINDINGS, name)
