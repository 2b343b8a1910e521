"""TLS verification is on, always: a provider whose serving certificate the kubeconfig's CA
did not sign is refused with a TLS reason, and nothing is pulled from it meanwhile."""

from __future__ import annotations

import base64

import pytest
import yaml

from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
)
from functions.common.api import LABEL_CONNECTION
from tests.e2e.harness import (
    apply,
    binding,
    condition,
    connection,
    consistently,
    crd,
    eventually,
    get,
    kubeconfig_secret,
    reason_of,
)
from tests.faults.harness import ConnectorProcess, FaultWorld


def provider_kubeconfig(world: FaultWorld, *, ca: bytes | None) -> str:
    config = yaml.safe_load(world.provider_cluster.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    if ca is None:
        del cluster["certificate-authority-data"]
    else:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    return str(yaml.safe_dump(config))


@pytest.mark.timeout(150)
@pytest.mark.parametrize("ca", ["another-clusters-ca", "no-ca-at-all"])
def test_a_provider_certificate_the_kubeconfig_does_not_trust_is_refused_and_nothing_synced(
    world: FaultWorld, connector: ConnectorProcess, ca: str
) -> None:
    # A bindable API of the case's own, so that what a case pulls cannot satisfy another.
    group = f"{ca}.example.org"
    probe_crd = f"probes.{group}"
    apply(world.provider, crd(group, "Probe"))
    # The consumer's CA is a real CA, just not the one that signed the provider's certificate.
    wrong = world.consumer_cluster.ca_file.read_bytes() if ca == "another-clusters-ca" else None
    name = f"tls-{ca}"
    apply(world.consumer, kubeconfig_secret(name, provider_kubeconfig(world, ca=wrong)))
    apply(world.consumer, connection(name, name))
    apply(world.consumer, binding(group, name))
    try:
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "TLSError")
        conn = world.consumer.get(CLUSTER_CONNECTIONS, name)
        ready = condition(conn, "Ready")
        assert ready["status"] == "False"
        assert "TLS" in ready["message"] and "certificate verify failed" in ready["message"]
        # No fallback to an unverified connection: nothing is offered, pulled or bound.
        consistently(
            lambda: get(world.consumer, CUSTOM_RESOURCE_DEFINITIONS, probe_crd) is None,
            duration=3.0,
        )
        assert not (conn.get("status") or {}).get("offeredAPIs")
        # Written by the binding's controller, after the connection's status.
        eventually(
            lambda: reason_of(world.consumer, CLUSTER_API_BINDINGS, group) == "ConnectionNotReady"
        )

        # The right CA is all it takes: the same connection becomes Ready and pulls the API.
        good = world.provider_cluster.ca_file.read_bytes()
        apply(world.consumer, kubeconfig_secret(name, provider_kubeconfig(world, ca=good)))
        eventually(lambda: reason_of(world.consumer, CLUSTER_CONNECTIONS, name) == "Ready")
        eventually(lambda: get(world.consumer, CUSTOM_RESOURCE_DEFINITIONS, probe_crd))
    finally:
        world.consumer.delete(CLUSTER_API_BINDINGS, group)
        world.consumer.delete(CLUSTER_CONNECTIONS, name)
        # Once trusted, the connection pulled every bindable CRD of the provider, the
        # walkthrough's NopResource among them: labelled as this connection's, they would be
        # a conflict for the next test's connection to the same provider.
        pulled, _ = world.consumer.list(
            CUSTOM_RESOURCE_DEFINITIONS, label_selector=f"{LABEL_CONNECTION}={name}"
        )
        for item in pulled:
            world.consumer.delete(CUSTOM_RESOURCE_DEFINITIONS, item["metadata"]["name"])
        eventually(
            lambda: not world.consumer.list(
                CUSTOM_RESOURCE_DEFINITIONS, label_selector=f"{LABEL_CONNECTION}={name}"
            )[0],
            what="the CRDs this connection pulled to be deleted",
        )
