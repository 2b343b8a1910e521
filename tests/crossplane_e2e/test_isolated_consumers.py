"""Two consumers of one real Crossplane in the isolated placement (issue #12, point 4).

Two consumer clusters of this module's own, each installed with the real
``api-connector install --placement Isolated`` against the session's Crossplane provider
(``--consumer-cluster-name`` differs), each with its connector running with the provider
identity that install stored in it. Both bind ``nop.example.org`` and create a claim of the
same namespace and name asking for a connection Secret of the same name. Crossplane composes
each in that consumer's own provider namespace, each consumer gets Ready and its own
connection details back, neither identity can read, list or watch the other's claim or
Secret there (403 from the real API server), and deleting one claim leaves the other's
untouched.

Why not the tier's consumer (``xp``): its connector binds the same group as ``xp-consumer``
in the Default placement with an admin's credentials, and one consumer cluster binds a group
through one connection; these consumers need ``install``'s identities instead.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import Cluster, Crossplane, start_clusters
from connector.kube import KubeClient, KubeError, client_from_kubeconfig
from connector.kube.errors import ForbiddenError
from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    NAMESPACES,
    SECRETS,
    Resource,
)
from functions.common import LABEL_CONSUMER_CLUSTER
from functions.common.placement import PLACEMENT_ISOLATED, provider_namespace
from tests.crossplane_e2e.conftest import NOP, XP_TIMEOUT, publish
from tests.e2e.harness import (
    RunningConnector,
    apply,
    binding,
    condition,
    eventually,
    get,
    reason_of,
    service_account_kubeconfig,
)
from tests.support import go_tool

pytestmark = pytest.mark.timeout(300)

CONNECTION = "provider-connection"
#: The same namespace, claim and Secret names in both consumers.
NAMESPACE = "shop"
CLAIM = "db"
SECRET = "db-conn"


@dataclass
class Consumer:
    name: str
    #: This consumer cluster, as its admin.
    kube: KubeClient
    #: The provider identity ``install`` stored in this consumer, as its connector uses it.
    identity: KubeClient
    connector: RunningConnector

    @property
    def twin_namespace(self) -> str:
        return provider_namespace(self.name, NAMESPACE, PLACEMENT_ISOLATED)

    @property
    def cool(self) -> str:
        """What this consumer's claim asks for, and so its connection detail."""
        return f"{self.name}'s value"


def _install(clusters: Sequence[Cluster], names: Sequence[str], provider: Crossplane) -> None:
    """``api-connector install --placement Isolated`` into each consumer, side by side."""
    helm = str(go_tool("helm"))
    runs = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "api-connector"),
                "install",
                "--consumer-kubeconfig",
                str(cluster.kubeconfig),
                "--provider-kubeconfig",
                str(provider.cluster.kubeconfig),
                "--consumer-cluster-name",
                name,
                "--placement",
                PLACEMENT_ISOLATED,
                "--bound-api",
                "nop.example.org",
                "--poll-interval",
                "1h",
                "--helm",
                helm,
                "--no-wait",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cluster, name in zip(clusters, names, strict=True)
    ]
    try:
        for name, run in zip(names, runs, strict=True):
            output, _ = run.communicate(timeout=120)
            assert run.returncode == 0, f"install for {name} failed:\n{output}"
            assert "Provider: Isolated placement" in output, output
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()


def _stored_identity(kube: KubeClient, name: str) -> KubeClient:
    """The provider credentials ``install`` stored for the connection, as a client."""
    spec = kube.get(CLUSTER_CONNECTIONS, CONNECTION)["spec"]
    assert spec["placement"] == PLACEMENT_ISOLATED
    ref = spec["secretRef"]
    secret = kube.get(SECRETS, ref["name"], ref["namespace"])
    config = base64.b64decode(secret["data"]["kubeconfig"]).decode()
    (user,) = yaml.safe_load(config)["users"]
    assert set(user["user"]) == {"token"}, "install stored more than a token"
    return client_from_kubeconfig(config, name=f"{name}-identity")


@pytest.fixture(scope="module")
def consumers(
    crossplane_provider: Crossplane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Consumer]]:
    provider = client_from_kubeconfig(
        crossplane_provider.cluster.kubeconfig.read_text(), name="provider"
    )
    publish(provider)
    base = tmp_path_factory.mktemp("xp-isolated")
    names = ("xp-iso-a", "xp-iso-b")
    clusters = start_clusters(names, base)
    started: list[Consumer] = []
    try:
        _install(clusters, names, crossplane_provider)
        for cluster, name in zip(clusters, names, strict=True):
            kube = client_from_kubeconfig(cluster.kubeconfig.read_text(), name=name)
            # The chart's ServiceAccount, as the Deployment's Pod would run it.
            kubeconfig = service_account_kubeconfig(
                kube,
                base / f"{name}-connector.kubeconfig",
                server=cluster.server,
                ca_pem=cluster.ca_file.read_bytes(),
            )
            running = RunningConnector(
                kubeconfig, consumer_cluster=name, permission_check_interval=1.0
            ).start()
            started.append(Consumer(name, kube, _stored_identity(kube, name), running))
            apply(kube, binding("nop.example.org", CONNECTION))
            apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for c in started:
            eventually(
                lambda c=c: reason_of(c.kube, CLUSTER_API_BINDINGS, "nop.example.org")  # type: ignore[misc]
                == "Bound",
                what=f"{c.name}'s binding of nop.example.org",
                timeout=XP_TIMEOUT,
            )
        yield {c.name: c for c in started}
    finally:
        for c in started:
            c.connector.stop()
            # The twin outlives this consumer in the session's provider otherwise.
            with contextlib.suppress(KubeError):
                provider.delete(NOP, CLAIM, c.twin_namespace)
        for cluster in clusters:
            cluster.stop()


def _claim(c: Consumer) -> dict[str, Any]:
    return {
        "apiVersion": NOP.api_version,
        "kind": NOP.kind,
        "metadata": {"name": CLAIM, "namespace": NAMESPACE},
        "spec": {
            "coolField": c.cool,
            "compositeDeletePolicy": "Background",
            "writeConnectionSecretToRef": {"name": SECRET},
        },
    }


def _cool_field(kube: KubeClient, namespace: str) -> str | None:
    """The ``coolField`` connection detail of Secret ``SECRET`` in ``namespace``, or None."""
    secret = get(kube, SECRETS, SECRET, namespace)
    value = ((secret or {}).get("data") or {}).get("coolField")
    return None if value is None else base64.b64decode(value).decode()


def _ready(c: Consumer) -> bool:
    return condition(get(c.kube, NOP, CLAIM, NAMESPACE), "Ready").get("status") == "True"


def _watch(kube: KubeClient, res: Resource, namespace: str) -> None:
    with kube.watch(res, "", namespace, timeout_seconds=1) as stream:
        for _ in stream:
            break


def _forbidden(call: Callable[[], object]) -> str:
    with pytest.raises(ForbiddenError) as info:
        call()
    return str(info.value)


def _reads(identity: KubeClient, ns: str) -> list[tuple[str, Callable[[], object]]]:
    """Each way to read the claim and the connection Secret in ``ns``."""
    return [
        ("gets the claim", lambda: identity.get(NOP, CLAIM, ns)),
        ("lists claims", lambda: identity.list(NOP, ns)),
        ("watches claims", lambda: _watch(identity, NOP, ns)),
        ("gets the Secret", lambda: identity.get(SECRETS, SECRET, ns)),
        ("lists Secrets", lambda: identity.list(SECRETS, ns)),
        ("watches Secrets", lambda: _watch(identity, SECRETS, ns)),
    ]


def test_two_consumers_on_one_crossplane_are_composed_apart_and_read_nothing_of_each_other(
    crossplane_provider: Crossplane, consumers: dict[str, Consumer]
) -> None:
    provider = client_from_kubeconfig(
        crossplane_provider.cluster.kubeconfig.read_text(), name="provider"
    )
    a, b = consumers["xp-iso-a"], consumers["xp-iso-b"]
    for c in (a, b):
        apply(c.kube, _claim(c), NOP)

    # Each consumer gets Crossplane's Ready and its own connection details.
    for c in (a, b):
        eventually(
            lambda c=c: _cool_field(c.kube, NAMESPACE) == c.cool,  # type: ignore[misc]
            what=f"{c.name}'s connection Secret in its consumer",
            timeout=XP_TIMEOUT,
        )
        eventually(lambda c=c: _ready(c), what=f"{c.name}'s claim Ready", timeout=XP_TIMEOUT)  # type: ignore[misc]
        # Its status is written after its Secret, so it may follow a moment later.
        eventually(
            lambda c=c: condition(c.kube.get(NOP, CLAIM, NAMESPACE), "ConnectionSecretSynced").get(  # type: ignore[misc]
                "reason"
            )
            == "Synced",
            what=f"ConnectionSecretSynced=Synced on {c.name}'s claim",
            timeout=30,
        )

    # Crossplane composed each claim in that consumer's own provider namespace.
    assert a.twin_namespace != b.twin_namespace
    assert get(provider, NOP, CLAIM, NAMESPACE) is None
    for c in (a, b):
        twin = provider.get(NOP, CLAIM, c.twin_namespace)
        assert twin["metadata"]["labels"][LABEL_CONSUMER_CLUSTER] == c.name
        assert twin["spec"]["coolField"] == c.cool
        assert twin["spec"]["resourceRef"]["kind"] == "XNopResource"
        assert _cool_field(provider, c.twin_namespace) == c.cool
        # Its identity reads its own, as its connector does.
        assert c.identity.get(NOP, CLAIM, c.twin_namespace)["spec"]["coolField"] == c.cool
        assert _cool_field(c.identity, c.twin_namespace) == c.cool

    # Neither identity reads, lists or watches the other's claim or Secret.
    for reader, other in ((a, b), (b, a)):
        for what, call in _reads(reader.identity, other.twin_namespace):
            message = _forbidden(call)
            assert "forbidden" in message.lower(), f"{reader.name} {what}: {message}"

    # Deleting A's claim removes A's twin and Secrets, and nothing of B's.
    a.kube.delete(NOP, CLAIM, NAMESPACE)
    eventually(
        lambda: get(a.kube, NOP, CLAIM, NAMESPACE) is None,
        what="A's claim to be deleted",
        timeout=XP_TIMEOUT,
    )
    assert get(a.kube, SECRETS, SECRET, NAMESPACE) is None
    assert get(provider, NOP, CLAIM, a.twin_namespace) is None
    eventually(
        lambda: get(provider, SECRETS, SECRET, a.twin_namespace) is None,
        what="A's connection Secret in the provider to be deleted",
        timeout=XP_TIMEOUT,
    )
    assert _ready(b)
    assert _cool_field(b.kube, NAMESPACE) == b.cool
    assert provider.get(NOP, CLAIM, b.twin_namespace)["spec"]["coolField"] == b.cool
    assert _cool_field(provider, b.twin_namespace) == b.cool
    assert provider.get(NAMESPACES, b.twin_namespace)
