"""Opening the consumer and provider clusters named on the command line, and checking they answer.

Kubeconfigs are read only through :mod:`connector.kube.config`; this module turns its
errors into messages that name the flag to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.install.options import ClusterAccess, InstallError
from connector.kube import (
    ConfigError,
    ContextNotFoundError,
    KubeClient,
    KubeError,
    TLSError,
    UnauthorizedError,
    UnreachableError,
    client_from_kubeconfig,
    cluster_of_context,
)

__all__ = ["Cluster", "check_reachable", "default_consumer_name", "open_cluster"]


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """One of the two clusters, opened with the installer's own credentials."""

    role: str  # consumer | provider
    access: ClusterAccess
    client: KubeClient
    #: The ``cluster`` section of the chosen context, CA embedded (for the scoped kubeconfig).
    cluster_entry: dict[str, Any]


def open_cluster(access: ClusterAccess, role: str) -> Cluster:
    """A client for ``access``; an :class:`InstallError` naming the ``--<role>-*`` flag if the
    kubeconfig cannot be read or used."""
    path = access.kubeconfig
    try:
        content = path.read_bytes()
    except OSError as e:
        raise InstallError(
            f"cannot read the {role} kubeconfig {path}: {e.strerror or e}; pass a readable "
            f"file to --{role}-kubeconfig."
        ) from e
    base_path = str(path.resolve().parent)
    try:
        entry = cluster_of_context(content, access.context, base_path=base_path)
        client = client_from_kubeconfig(content, access.context, name=role, base_path=base_path)
    except ContextNotFoundError as e:
        raise InstallError(
            f"context {e.context!r} not found in {path}; available: "
            f"{', '.join(e.available) or '(none)'}. Pass one of them to --{role}-context."
        ) from e
    except ConfigError as e:
        raise InstallError(f"the {role} kubeconfig {path} cannot be used: {e}") from e
    return Cluster(role=role, access=access, client=client, cluster_entry=entry)


def check_reachable(cluster: Cluster) -> None:
    """Ask the cluster its version; an :class:`InstallError` saying why it does not answer."""
    client, role = cluster.client, cluster.role
    try:
        client.server_version()
    except UnreachableError as e:
        raise InstallError(
            f"cannot reach the {role} cluster at {client.server}: {e.cause}. Check "
            f"that the address in {cluster.access.kubeconfig} is right and the cluster is up."
        ) from e
    except TLSError as e:
        raise InstallError(
            f"cannot reach the {role} cluster at {client.server}: its TLS certificate is not "
            f"trusted by the certificate authority in {cluster.access.kubeconfig}."
        ) from e
    except UnauthorizedError as e:
        raise InstallError(
            f"the {role} cluster at {client.server} rejected the credentials in "
            f"{cluster.access.kubeconfig} (401 Unauthorized); they are wrong or expired."
        ) from e
    except KubeError as e:
        raise InstallError(
            f"cannot reach the {role} cluster at {client.server}: {e.message}"
        ) from e


def default_consumer_name(client: KubeClient) -> str:
    """The consumer's name in the provider when none is given: the connector's own default."""
    from connector.manager import default_consumer_cluster_name

    return default_consumer_cluster_name(client)
