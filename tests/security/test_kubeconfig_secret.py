"""A kubeconfig in a connection's Secret is data: it cannot make the connector run a program
or read a file of its own.

Whoever may write Secrets in the connector's namespace writes these kubeconfigs. Honouring
``exec`` (or ``auth-provider``) would let them run commands as the connector; honouring
file references (``client-key``, ``tokenFile``, ...) would let them send the connector's own
files — its service-account token, say — to a server of their choosing. Each case below is
a working provider credential *if* the file or program were used, so a Ready connection
would prove the reference was followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.kube.resources import CLUSTER_CONNECTIONS, SECRETS
from tests.e2e.harness import apply, condition, connection, eventually, kubeconfig_secret
from tests.faults.harness import ConnectorProcess, FaultWorld
from tests.security.access import NOP_BOUND, provision


def kubeconfig_with_user(world: FaultWorld, user: dict[str, Any]) -> str:
    config = yaml.safe_load(world.provider_cluster.kubeconfig.read_text())
    config["users"][0]["user"] = user
    return str(yaml.safe_dump(config))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", ["exec", "client-key-file", "token-file"])
def test_a_kubeconfig_from_a_secret_may_not_run_programs_or_read_local_files(
    world: FaultWorld, connector: ConnectorProcess, tmp_path: Path, case: str
) -> None:
    marker = tmp_path / "the-connector-ran-this"
    pki = world.provider_cluster.dir / "pki"
    token_file = tmp_path / "token"
    token_file.write_text(
        provision(world.provider, world.provider_cluster, f"file-{case}", [NOP_BOUND]).token
    )
    users: dict[str, dict[str, Any]] = {
        "exec": {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "/bin/sh",
                "args": ["-c", f"touch {marker}; cat {token_file}"],
                "interactiveMode": "Never",
            }
        },
        "client-key-file": {
            "client-certificate": str(pki / "admin.crt"),
            "client-key": str(pki / "admin.key"),
        },
        "token-file": {"tokenFile": str(token_file)},
    }
    name = f"local-{case}"
    apply(world.consumer, kubeconfig_secret(name, kubeconfig_with_user(world, users[case])))
    apply(world.consumer, connection(name, name, pull="Manual"))
    try:

        def ready() -> dict[str, Any]:
            return condition(world.consumer.get(CLUSTER_CONNECTIONS, name), "Ready")

        # SecretNotFound can come first: the connector's Secret cache may see the Secret
        # just after the connection; the Secret's event then reconciles it again.
        eventually(lambda: ready().get("reason") not in (None, "SecretNotFound"), timeout=60)
        assert ready()["reason"] == "InvalidKubeconfig", ready()
        assert "would run a program or read a file" in ready()["message"]
        assert not marker.exists()
    finally:
        world.consumer.delete(CLUSTER_CONNECTIONS, name)
        world.consumer.delete(SECRETS, name, "upbound-system")
