"""The consumer's identity in the provider: provisioning it, and a kubeconfig that holds its token.

With an admin's kubeconfig, install applies the binder's
:func:`~functions.binder.provider_access` objects (the per-consumer namespace, ServiceAccount,
token Secret, and a ClusterRole limited to the bound APIs) and stores a kubeconfig for that
ServiceAccount in the consumer. The admin's credentials are never stored.

The token comes from the ServiceAccount's token Secret when the provider's token controller
fills it (no expiry), else from the TokenRequest API (a year, or what the provider grants),
which a rerun of install renews. A token stored by an earlier run is kept while it is this
identity's, for this provider, and still works.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from connector.install.clusters import Cluster
from connector.install.options import FIELD_MANAGER, InstallError, Report
from connector.kube import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    KubeClient,
    KubeError,
    Resource,
    TLSError,
    UnreachableError,
    client_from_kubeconfig,
)
from connector.kube.resources import (
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessResult, BoundResource

__all__ = [
    "PROVIDER_RESOURCES",
    "TOKEN_RENEW_BEFORE",
    "TOKEN_REQUEST_SECONDS",
    "TOKEN_SECRET_WAIT",
    "provision_identity",
    "request_token",
    "scoped_kubeconfig",
    "token_claims",
]

#: How long a new ``kubernetes.io/service-account-token`` Secret may take to be filled by the
#: provider's token controller before the installer asks the TokenRequest API instead.
TOKEN_SECRET_WAIT = 5.0
#: Lifetime asked for a TokenRequest token (the provider may grant less).
TOKEN_REQUEST_SECONDS = 365 * 24 * 3600
#: A TokenRequest token kept from an earlier run is renewed when it expires sooner than this.
TOKEN_RENEW_BEFORE = 30 * 24 * 3600

#: What install creates in the provider, by kind.
PROVIDER_RESOURCES: Mapping[str, Resource] = {
    r.kind: r
    for r in (
        NAMESPACES,
        SERVICE_ACCOUNTS,
        SECRETS,
        CLUSTER_ROLES,
        CLUSTER_ROLE_BINDINGS,
        VALIDATING_ADMISSION_POLICIES,
        VALIDATING_ADMISSION_POLICY_BINDINGS,
    )
}


def provision_identity(
    provider: Cluster,
    access: AccessResult,
    *,
    resources: Sequence[BoundResource],
    existing_secret: Mapping[str, Any] | None,
    report: Report,
) -> str:
    """Apply the consumer's scoped access in the provider; return a kubeconfig for it.

    ``existing_secret`` is the consumer's credentials Secret as an earlier run left it: its
    kubeconfig is kept if it still works (see :func:`_reusable_kubeconfig`).
    """
    client = provider.client
    try:
        for obj in access.objects:
            client.apply(PROVIDER_RESOURCES[obj["kind"]], obj, FIELD_MANAGER)
    except KubeError as e:
        raise InstallError(
            f"cannot write the consumer's access to the provider: {e.message}"
        ) from e
    names = ", ".join(a.crd_name for a in resources) or "no API yet"
    report(
        f"Provider: ServiceAccount {access.namespace}/{access.service_account} may use "
        f"{names} (and read CRDs, create namespaces), nothing else."
    )
    user = f"system:serviceaccount:{access.namespace}:{access.service_account}"
    reused = _reusable_kubeconfig(existing_secret, provider, user)
    if reused is not None:
        report("Provider: the token stored by an earlier install still works; kept it.")
        return reused
    token, how = _service_account_token(client, access)
    report(f"Provider: got a token for that ServiceAccount ({how}).")
    return scoped_kubeconfig(
        cluster=provider.cluster_entry,
        token=token,
        user=f"{access.namespace}-{access.service_account}",
        namespace=access.namespace,
    )


def scoped_kubeconfig(*, cluster: Mapping[str, Any], token: str, user: str, namespace: str) -> str:
    """A kubeconfig for the provider's scoped identity: the provider's address and CA, a token.

    ``cluster`` is the ``cluster`` section of the admin's kubeconfig with the CA embedded;
    only connection settings are copied from it, never credentials.
    """
    kept = {
        key: cluster[key]
        for key in (
            "server",
            "certificate-authority-data",
            "insecure-skip-tls-verify",
            "tls-server-name",
            "proxy-url",
        )
        if key in cluster
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "provider", "cluster": kept}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "provider",
                "context": {"cluster": "provider", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "provider",
    }
    return yaml.safe_dump(config, sort_keys=True)


def token_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT; ``{}`` when it is not one.

    Only used to decide whether a token from an earlier run is ours and still long-lived; the
    provider verifies every request anyway.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _reusable_kubeconfig(  # noqa: PLR0911 - each early return is one reason not to reuse
    secret: Mapping[str, Any] | None, provider: Cluster, user: str
) -> str | None:
    """The kubeconfig stored by an earlier run, if it is for this identity and still good."""
    encoded = ((secret or {}).get("data") or {}).get("kubeconfig")
    if not encoded:
        return None
    try:
        text = base64.b64decode(encoded).decode()
        config = yaml.safe_load(text)
        users = config["users"]
        token = str(users[0]["user"]["token"])
        cluster = config["clusters"][0]["cluster"]
    except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError, binascii.Error):
        return None
    if cluster.get("server") != provider.cluster_entry.get("server") or cluster.get(
        "certificate-authority-data"
    ) != provider.cluster_entry.get("certificate-authority-data"):
        return None
    claims = token_claims(token)
    if claims.get("sub") != user:
        return None
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires - time.time() < TOKEN_RENEW_BEFORE:
        return None
    try:
        with client_from_kubeconfig(text, name="provider-scoped") as scoped:
            works = scoped.self_subject_access_review(
                "list", "apiextensions.k8s.io", "customresourcedefinitions"
            )
    except KubeError:
        return None
    return text if works else None


def _service_account_token(client: KubeClient, access: AccessResult) -> tuple[str, str]:
    """A token of the consumer's ServiceAccount and how it was obtained.

    Preferred: the ``kubernetes.io/service-account-token`` Secret, which the provider's token
    controller fills with a token that does not expire (revoked by deleting the Secret).
    Without a token controller (e.g. a bare kube-apiserver) the Secret stays empty; after
    ``TOKEN_SECRET_WAIT`` seconds the TokenRequest API is asked for a token valid for a
    year (or less, if the provider caps it), which a rerun of install renews.
    """
    while True:
        try:
            secret = client.get(SECRETS, access.token_secret, access.namespace)
        except KubeError as e:
            raise InstallError(
                f"cannot read the token Secret {access.namespace}/{access.token_secret} in the "
                f"provider: {e.message}"
            ) from e
        encoded = (secret.get("data") or {}).get("token")
        if encoded:
            return base64.b64decode(encoded).decode(), "from its token Secret, no expiry"
        if _age(secret) >= TOKEN_SECRET_WAIT:
            break
        time.sleep(0.5)
    token, expires = request_token(client, access)
    return token, f"TokenRequest, expires {expires}; rerun install before then to renew it"


def _age(obj: Mapping[str, Any]) -> float:
    created = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return TOKEN_SECRET_WAIT
    return (datetime.now(UTC) - when).total_seconds()


def request_token(client: KubeClient, access: AccessResult) -> tuple[str, str]:
    """A TokenRequest token of the consumer's ServiceAccount, and when it expires."""
    # No audiences: the provider's API server audience, which is what the connector talks to.
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": TOKEN_REQUEST_SECONDS},
    }
    try:
        answer = client.create_subresource(
            SERVICE_ACCOUNTS, access.service_account, access.namespace, "token", body
        )
    except (UnreachableError, TLSError) as e:
        raise InstallError(f"cannot get a token from the provider: {e}") from e
    except KubeError as e:
        raise InstallError(f"the provider refused a token for the ServiceAccount: {e}") from e
    status = answer.get("status") or {}
    token = status.get("token")
    if not token:
        raise InstallError("the provider's TokenRequest answer holds no token.")
    return str(token), str(status.get("expirationTimestamp") or "(unknown)")
