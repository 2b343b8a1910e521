"""No secret material in what the connector writes: its logs, Events, and status.

The connector runs at debug level (its most talkative) through the walkthrough with the
provider admin's kubeconfig (a client certificate and key), a scoped bearer token, and a
series of failing credentials: a wrong token, a kubeconfig that is not valid YAML right on
its key line, one whose key is not a key, and a robot token for an unreachable endpoint.
Then every log line, every Event in the consumer and the status of every connection,
binding and bound object (and the twins in the provider) are searched for each secret, raw
and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any

import pytest
import yaml

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
    apply_file,
    condition,
    connection,
    eventually,
    get,
    kubeconfig_secret,
    reason_of,
)
from tests.faults.harness import ConnectorProcess, FaultWorld
from tests.security.access import NOP_BOUND, provision


def fingerprints(secret: str) -> list[str]:
    """Slices of ``secret`` and of its base64 form, long enough to be unique to it."""
    out: list[str] = []
    for form in (secret, base64.b64encode(secret.encode()).decode()):
        n = len(form)
        out += [form] if n <= 32 else [form[:32], form[n // 2 : n // 2 + 32], form[-32:]]
    return out


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block: what a log would show of it, line by line."""
    lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    return [ln for ln in lines if len(ln) >= 40]


def kubeconfig_secrets(text: str) -> dict[str, list[str]]:
    """Every credential in a kubeconfig, as the fingerprints to look for."""
    found: dict[str, list[str]] = {"the kubeconfig": fingerprints(text)}
    for user in yaml.safe_load(text).get("users") or []:
        creds = user.get("user") or {}
        for key in ("client-key-data", "client-certificate-data", "token"):
            if key not in creds:
                continue
            value = str(creds[key])
            found[f"{user['name']}: {key}"] = fingerprints(value)
            if key.endswith("-data"):
                pem = base64.b64decode(value).decode()
                found[f"{user['name']}: {key} (PEM)"] = pem_body_lines(pem)
    return found


def everything_written(world: FaultWorld, connector: ConnectorProcess) -> str:
    """The connector's log, every consumer Event, and every status it writes, as text."""
    # The console renderer colours its output; a secret would be plain text between codes.
    parts: list[Any] = [re.sub(r"\x1b\[[0-9;]*m", "", connector.log_text())]
    parts.append(world.consumer.list(EVENTS)[0])
    for res in (CLUSTER_CONNECTIONS, CLUSTER_API_BINDINGS, API_BINDINGS, NOP):
        parts.append([o.get("status") for o in world.consumer.list(res)[0]])
    parts.append(world.provider.list(NOP)[0])
    return "\n".join(p if isinstance(p, str) else json.dumps(p) for p in parts)


@pytest.mark.timeout(180)
def test_no_secret_reaches_logs_events_or_status_in_the_walkthrough_or_when_credentials_fail(
    world: FaultWorld, connector: ConnectorProcess
) -> None:
    consumer = world.consumer
    admin_kubeconfig = world.provider_cluster.kubeconfig.read_text()
    looked_for = kubeconfig_secrets(admin_kubeconfig)

    # The walkthrough, as documented: the admin's kubeconfig in the Secret.
    apply_file(
        consumer,
        "consumer/10-secret-kubeconfig.yaml",
        PROVIDER_KUBECONFIG_BASE64=base64.b64encode(admin_kubeconfig.encode()).decode(),
    )
    apply_file(consumer, "consumer/20-clusterconnection.yaml")
    apply_file(consumer, "consumer/30-clusterapibinding-group.yaml")
    eventually(lambda: consumer.list(NOP)[1] is not None, timeout=60)
    apply_file(consumer, "consumer/40-nopresource.yaml")
    eventually(
        lambda: condition(get(consumer, NOP, "my-resource", "default"), "APIBound").get("status")
        == "True",
        timeout=60,
    )

    # A scoped identity's bearer token (what `api-connector install` stores).
    scoped = provision(world.provider, world.provider_cluster, "secrets-probe", [NOP_BOUND])
    looked_for.update(kubeconfig_secrets(scoped.kubeconfig))
    wrong_token = scoped.kubeconfig.replace(scoped.token, "wrong-" + secrets.token_hex(24))
    looked_for.update(kubeconfig_secrets(wrong_token))
    # Not YAML, with the error on the key's own line (YAML errors quote the line).
    key_line = next(ln for ln in admin_kubeconfig.splitlines() if "client-key-data" in ln)
    not_yaml = admin_kubeconfig.replace(key_line, key_line + ": [oops")
    bad_key_pem = (
        "-----BEGIN PRIVATE KEY-----\n" + secrets.token_hex(40) + "\n-----END PRIVATE KEY-----\n"
    )
    bad_key = admin_kubeconfig.replace(
        key_line.split(":", 1)[1].strip(), base64.b64encode(bad_key_pem.encode()).decode()
    )
    looked_for.update(kubeconfig_secrets(bad_key))
    robot_token = "robot-" + secrets.token_hex(24)
    looked_for["the robot token"] = fingerprints(robot_token)

    cases = {
        "scoped-token": (kubeconfig_secret("scoped-token", scoped.kubeconfig), "Ready"),
        "wrong-token": (kubeconfig_secret("wrong-token", wrong_token), "Unauthorized"),
        "not-yaml": (kubeconfig_secret("not-yaml", not_yaml), "InvalidKubeconfig"),
        # The key is loaded into the TLS context only when the client first connects.
        "bad-key": (kubeconfig_secret("bad-key", bad_key), "TLSError"),
        "robot": (
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "robot", "namespace": "upbound-system"},
                "type": "Opaque",
                "stringData": {
                    "token": robot_token,
                    "organization": "org",
                    "spacesBaseURL": "https://127.0.0.1:1",
                    "controlPlaneGroupName": "group",
                    "controlPlaneName": "ctp",
                },
            },
            "ProviderUnreachable",
        ),
    }
    try:
        for name, (secret, _) in cases.items():
            apply(consumer, secret)
            kind = "UpboundRobotToken" if name == "robot" else "KubeConfig"
            # Manual: these connections are about credentials, not about pulling CRDs.
            apply(consumer, connection(name, name, kind=kind, pull="Manual"))

        def reasons() -> dict[str, str]:
            return {n: reason_of(consumer, CLUSTER_CONNECTIONS, n) for n in cases}

        # Wait until each failure has happened, so that its messages are in what we search.
        expected = {n: want for n, (_, want) in cases.items()}
        try:
            eventually(lambda: reasons() == expected, timeout=60)
        except AssertionError as e:
            raise AssertionError(f"reasons {reasons()}, expected {expected}") from e

        written = everything_written(world, connector)
        assert "[debug" in written, "the connector did not log at debug level"
        leaks = {
            what: [f for f in prints if f in written]
            for what, prints in looked_for.items()
            if any(f in written for f in prints)
        }
        assert leaks == {}, f"secret material found in what the connector wrote: {leaks}"
    finally:
        for name in cases:
            consumer.delete(CLUSTER_CONNECTIONS, name)
            consumer.delete(SECRETS, name, "upbound-system")
        consumer.delete(NOP, "my-resource", "default")
        eventually(lambda: get(consumer, NOP, "my-resource", "default") is None, timeout=60)
        consumer.delete(CLUSTER_API_BINDINGS, "nop.example.org")
        consumer.delete(CLUSTER_CONNECTIONS, "provider-connection")
