"""Connection Secrets carry credentials: their data never reaches the connector's logs, Events,
conditions or metrics, and a provider identity that may not read Secrets is told so on the
object, once, while the object keeps syncing.

The connector is the package's debug-level one (its most talkative); the test plays
Crossplane's part in the provider, writing the Secret a claim's ref names, controlled by it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from connector.kube.errors import NotFoundError
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    EVENTS,
    SECRETS,
)
from tests.e2e.harness import (
    NOP,
    apply,
    binding,
    condition,
    connection,
    eventually,
    get,
    kubeconfig_secret,
    warning_events,
)
from tests.faults.harness import ConnectorProcess, FaultWorld, ensure_namespace, nop
from tests.security.access import NOP_BOUND, isolated_connection, provision
from tests.security.test_no_secret_material import fingerprints

NAMESPACE = "connection-secrets"


@contextlib.contextmanager
def connected(world: FaultWorld, kubeconfig: str) -> Iterator[None]:
    """The walkthrough's connection with ``kubeconfig`` and the NopResource API bound through
    it; removed (with the test's objects) afterwards, so that the next test may bind the API
    again. Always the walkthrough's name: the pulled CRD stays labelled with the connection
    that installed it, which another connection would not take over."""
    name = "provider-connection"
    consumer = world.consumer
    ensure_namespace(consumer, NAMESPACE)
    apply(consumer, kubeconfig_secret(name, kubeconfig))
    apply(consumer, connection(name, name))
    apply(consumer, binding("nop.example.org", name))
    try:
        eventually(lambda: consumer.list(NOP)[1] is not None, timeout=60)
        yield
    finally:
        with contextlib.suppress(NotFoundError):
            consumer.delete(NOP, "db", NAMESPACE)
        eventually(lambda: get(consumer, NOP, "db", NAMESPACE) is None, timeout=60)
        consumer.delete(CLUSTER_API_BINDINGS, "nop.example.org")
        consumer.delete(CLUSTER_CONNECTIONS, name)
        consumer.delete(SECRETS, name, "upbound-system")


def claim() -> dict[str, Any]:
    obj = nop(NAMESPACE, "db", "v")
    obj["spec"]["compositeDeletePolicy"] = "Background"
    obj["spec"]["writeConnectionSecretToRef"] = {"name": "db-conn"}
    return obj


def crossplane_writes(world: FaultWorld, data: dict[str, str]) -> None:
    twin = eventually(lambda: get(world.provider, NOP, "db", NAMESPACE), timeout=60)
    meta = twin["metadata"]
    owner = {
        "apiVersion": twin["apiVersion"],
        "kind": twin["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-conn", "namespace": NAMESPACE, "ownerReferences": [owner]},
        "type": "connection.crossplane.io/v1alpha1",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    apply(world.provider, secret, SECRETS)


def reason(world: FaultWorld) -> str | None:
    found = condition(get(world.consumer, NOP, "db", NAMESPACE), "ConnectionSecretSynced")
    return found.get("reason")


@pytest.mark.timeout(180)
def test_connection_secret_data_never_reaches_logs_events_conditions_or_metrics(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    first, second = "pw-" + secrets.token_hex(24), "pw-" + secrets.token_hex(24)
    admin_kubeconfig = world.provider_cluster.kubeconfig.read_text()
    with connected(world, admin_kubeconfig):
        apply(world.consumer, claim())
        crossplane_writes(world, {"password": first, "endpoint": "db.internal"})
        eventually(lambda: reason(world) == "Synced", timeout=60)
        # Rotated: the copy follows, so both values passed through the connector.
        crossplane_writes(world, {"password": second, "endpoint": "db.internal"})

        def rotated() -> bool:
            copy = get(world.consumer, SECRETS, "db-conn", NAMESPACE) or {}
            value = (copy.get("data") or {}).get("password", "")
            return base64.b64decode(value).decode() == second

        eventually(rotated, timeout=60)

        log = re.sub(r"\x1b\[[0-9;]*m", "", connector.log_text())
        url = f"http://127.0.0.1:{connector.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            metrics = answer.read().decode()
        statuses = [
            [o.get("status") for o in world.consumer.list(res)[0]]
            for res in (CLUSTER_CONNECTIONS, CLUSTER_API_BINDINGS, API_BINDINGS, NOP)
        ]
        written = "\n".join(
            [log, metrics, json.dumps(world.consumer.list(EVENTS)[0]), json.dumps(statuses)]
        )
        assert "[debug" in log, "the connector did not log at debug level"
        assert "Wrote the object's connection Secret" in log  # it did talk about it
        leaks = {
            label: [f for f in fingerprints(value) if f in written]
            for label, value in (("first password", first), ("rotated password", second))
        }
        assert leaks == {"first password": [], "rotated password": []}, leaks


@pytest.mark.timeout(180)
def test_a_provider_identity_that_may_not_read_secrets_is_told_on_the_object_once(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    # `api-connector install`'s identity in the default placement: no Secrets.
    scoped = provision(world.provider, world.provider_cluster, "no-secrets", [NOP_BOUND])
    with connected(world, scoped.kubeconfig):
        apply(world.consumer, claim())
        crossplane_writes(world, {"password": "unreadable"})
        eventually(lambda: reason(world) == "ProviderSecretForbidden", timeout=60)
        obj = world.consumer.get(NOP, "db", NAMESPACE)
        message = condition(obj, "ConnectionSecretSynced")["message"]
        assert "get, list and watch on secrets in the namespace connection-secrets" in message
        assert "docs/security.md" in message
        # The object itself keeps syncing.
        assert condition(obj, "APIBound")["status"] == "True"
        # Another change makes another pass: still one Warning.
        changed = claim()
        changed["spec"]["coolField"] = "changed"
        apply(world.consumer, changed)
        eventually(
            lambda: get(world.provider, NOP, "db", NAMESPACE)["spec"]["coolField"] == "changed",
            timeout=60,
        )
        warnings = [
            e
            for e in warning_events(world.consumer, NAMESPACE, "db")
            if e["reason"] == "ProviderSecretForbidden"
        ]
        assert len(warnings) == 1 and warnings[0].get("count", 1) == 1, [
            (w["message"][-150:], w.get("count"), w.get("reason")) for w in warnings
        ]
        assert get(world.consumer, SECRETS, "db-conn", NAMESPACE) is None


@pytest.mark.timeout(180)
def test_in_the_isolated_placement_the_secret_comes_from_the_consumers_own_namespace(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    # `api-connector install --placement Isolated`'s identity: Secrets only in its own
    # provider namespaces, which is all the connector reads them in.
    ns = "isolated-secrets"
    with isolated_connection(world, ns, "isolated-secrets") as (scoped, twin_ns):
        eventually(lambda: world.consumer.list(NOP)[1] is not None, timeout=60)
        obj = claim()
        obj["metadata"]["namespace"] = ns
        apply(world.consumer, obj)
        twin = eventually(lambda: get(world.provider, NOP, "db", twin_ns), timeout=60)
        owner = {
            "apiVersion": twin["apiVersion"],
            "kind": twin["kind"],
            "name": "db",
            "uid": twin["metadata"]["uid"],
            "controller": True,
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-conn", "namespace": twin_ns, "ownerReferences": [owner]},
            "type": "connection.crossplane.io/v1alpha1",
            "data": {"password": base64.b64encode(b"isolated").decode()},
        }
        apply(world.provider, secret, SECRETS)

        def copied() -> bool:
            copy = get(world.consumer, SECRETS, "db-conn", ns) or {}
            return (copy.get("data") or {}).get("password") == secret["data"]["password"]

        eventually(copied, timeout=60)
        world.consumer.delete(NOP, "db", ns)
        eventually(lambda: get(world.consumer, NOP, "db", ns) is None, timeout=60)
        assert get(world.consumer, SECRETS, "db-conn", ns) is None
