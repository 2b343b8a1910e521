"""A twin write the provider refuses is reported on the object, and its recovery too.

Each test makes the real provider refuse a twin write in one of the ways it does in real
clusters, and checks what a user sees: ``APIBound=False`` with the reason of that kind of
failure and the server's message, exactly one Warning Event of that reason however often
the write is retried, and, once the cause is gone, ``APIBound=True`` and a Normal Event.
(Validation and admission denials, ``ProviderRejected``, are in
``tests/e2e/test_objects.py``.)

The connector runs as ``api-connector run``, with provider credentials as
``api-connector install`` creates them (RBAC limited to the bound API), so that RBAC can
refuse it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connector.envtest._cluster import free_port
from connector.kube.resources import (
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLES,
    CONFIG_MAPS,
    EVENTS,
    NAMESPACES,
    Resource,
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
    reason_of,
)
from tests.faults.harness import (
    ConnectorProcess,
    FaultWorld,
    ensure_namespace,
    fault_world,
    nop,
    running,
    unique_namespace,
)
from tests.security.access import NOP_BOUND, ConsumerIdentity, provision
from tests.support import go_tool

CONNECTION = "provider-connection"
WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
)
HOLD = "test.example.org/hold"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    with fault_world(tmp_path_factory.mktemp("refused"), connection=False) as w:
        yield w


@pytest.fixture(scope="module")
def identity(world: FaultWorld) -> ConsumerIdentity:
    return provision(
        world.provider, world.provider_cluster, world.consumer_cluster_name, [NOP_BOUND]
    )


@pytest.fixture(scope="module")
def connector(world: FaultWorld, identity: ConsumerIdentity) -> Iterator[ConnectorProcess]:
    apply(world.consumer, kubeconfig_secret("scoped", identity.kubeconfig))
    apply(world.consumer, connection(CONNECTION, "scoped"))
    apply(world.consumer, binding("nop.example.org", CONNECTION))
    c = ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / "connector.log",
    )
    with running(c):
        c.start().wait_ready()
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, CONNECTION) == "Ready")
        eventually(lambda: world.consumer.list(NOP)[1] is not None, timeout=60)
        yield c


def api_bound(world: FaultWorld, namespace: str, name: str) -> dict[str, Any]:
    return condition(get(world.consumer, NOP, name, namespace), "APIBound")


def events(world: FaultWorld, namespace: str, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the Events on the object, oldest first."""
    items, _ = world.consumer.list(EVENTS, namespace)
    mine = [e for e in items if e.get("involvedObject", {}).get("name") == name]
    mine.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [(e["type"], e["reason"]) for e in mine]


def wait_reported(world: FaultWorld, namespace: str, name: str, reason: str) -> dict[str, Any]:
    """Wait for ``APIBound=False`` with ``reason``; then check that the retries go on
    (a few seconds) without a second Event of that reason."""
    cond = eventually(
        lambda: (c := api_bound(world, namespace, name)).get("reason") == reason and c,
        timeout=60,
    )
    assert cond["status"] == "False"
    time.sleep(3.0)
    warnings = [r for t, r in events(world, namespace, name) if t == "Warning"]
    assert warnings.count(reason) == 1, warnings
    return dict(cond)


def wait_recovered(world: FaultWorld, namespace: str, name: str) -> None:
    eventually(lambda: api_bound(world, namespace, name).get("status") == "True", timeout=90)
    # The recovery's Normal Event is recorded right after the status is written.
    eventually(
        lambda: ("Normal", "Bound") in events(world, namespace, name),
        what="the Normal Event telling the recovery",
    )
    assert get(world.provider, NOP, name, namespace) is not None


@pytest.mark.timeout(180)
def test_a_namespace_being_deleted_in_the_provider_is_reported_until_it_is_gone(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "terminating")
    # The provider namespace exists and is being deleted; a ConfigMap with a finalizer holds
    # it there (with or without a namespace controller running).
    ensure_namespace(world.provider, ns)
    hold = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hold", "namespace": ns, "finalizers": [HOLD]},
    }
    world.provider.create(CONFIG_MAPS, hold)
    world.provider.delete(NAMESPACES, ns)
    eventually(lambda: world.provider.get(NAMESPACES, ns)["status"].get("phase") == "Terminating")

    world.consumer.create(NOP, nop(ns, "db", "v"))
    cond = wait_reported(world, ns, "db", "ProviderNamespaceTerminating")
    assert "because it is being terminated" in cond["message"], "the server's own words"
    assert get(world.provider, NOP, "db", ns) is None

    # The namespace goes: its content released, and the namespace finalized as an operator
    # would (nothing here depends on a namespace controller running).
    world.provider.patch(CONFIG_MAPS, "hold", ns, {"metadata": {"finalizers": None}})
    finalize(world, ns)
    # The connector creates the namespace again (its first attempt finds it gone: a 404
    # naming the namespace), and the twin in it.
    wait_recovered(world, ns, "db")
    assert ("Warning", "ProviderNamespaceNotFound") in events(world, ns, "db")
    assert "Writing the provider twin failed" in connector.log_text()


def finalize(world: FaultWorld, namespace: str) -> None:
    """Empty the namespace's finalizers (``kubectl replace --raw .../finalize``) until it is
    gone; a namespace controller, if one runs, may get there first."""
    kubectl = str(go_tool("kubectl"))
    kubeconfig = str(world.provider_cluster.kubeconfig)

    def gone() -> bool:
        ns = get(world.provider, NAMESPACES, namespace)
        if ns is None:
            return True
        ns = copy.deepcopy(ns)
        ns["spec"]["finalizers"] = []
        subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                kubeconfig,
                "replace",
                "--raw",
                f"/api/v1/namespaces/{namespace}/finalize",
                "-f",
                "-",
            ],
            input=json.dumps(ns).encode(),
            capture_output=True,
            check=False,
            timeout=30,
        )
        return get(world.provider, NAMESPACES, namespace) is None

    eventually(gone, timeout=60)


@pytest.mark.timeout(180)
def test_a_write_rbac_refuses_is_reported_until_the_grant_is_back(
    world: FaultWorld, connector: ConnectorProcess, identity: ConsumerIdentity
) -> None:
    ns = unique_namespace(world, "rbac")
    (role,) = [o for o in identity.access.objects if o["kind"] == "ClusterRole"]
    role = world.provider.get(CLUSTER_ROLES, role["metadata"]["name"])
    rules = copy.deepcopy(role["rules"])
    without_create = copy.deepcopy(rules)
    for rule in without_create:
        if "nopresources" in rule.get("resources", []):
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    world.provider.patch(CLUSTER_ROLES, role["metadata"]["name"], None, {"rules": without_create})
    try:
        world.consumer.create(NOP, nop(ns, "db", "v"))
        cond = wait_reported(world, ns, "db", "ProviderForbidden")
        assert 'cannot create resource "nopresources"' in cond["message"], cond["message"]
    finally:
        world.provider.patch(CLUSTER_ROLES, role["metadata"]["name"], None, {"rules": rules})
    wait_recovered(world, ns, "db")


@pytest.mark.timeout(180)
def test_a_provider_server_error_is_reported_until_it_clears(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    ns = unique_namespace(world, "webhook")
    ensure_namespace(world.provider, ns)
    # An admission webhook nobody serves, with failurePolicy Fail: the provider answers
    # every write in the namespace with 500 "failed calling webhook".
    name = f"unserved-{ns}"
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "unserved.example.org",
                "clientConfig": {"url": f"https://127.0.0.1:{free_port()}/validate"},
                "rules": [
                    {
                        "apiGroups": ["nop.example.org"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["nopresources"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }
    apply(world.provider, webhook, WEBHOOKS)
    try:
        probe = nop(ns, "probe", "v")
        eventually(lambda: _refused(world, probe), timeout=30)
        world.consumer.create(NOP, nop(ns, "db", "v"))
        cond = wait_reported(world, ns, "db", "ProviderServerError")
        assert "failed calling webhook" in cond["message"], cond["message"]
        assert "HTTP 500" in cond["message"]
    finally:
        world.provider.delete(WEBHOOKS, name)
    wait_recovered(world, ns, "db")


def _refused(world: FaultWorld, obj: dict[str, Any]) -> bool:
    try:
        world.provider.create(NOP, obj)
    except Exception:
        return True
    world.provider.delete(NOP, obj["metadata"]["name"], obj["metadata"]["namespace"])
    return False
