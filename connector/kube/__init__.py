"""The client layer: the only code in the project that talks to Kubernetes APIs.

- :mod:`~connector.kube.errors` — the error tree (one class per meaningful HTTP status);
- :mod:`~connector.kube.resources` — :class:`Resource` and the well-known APIs;
- :mod:`~connector.kube.client` — :class:`KubeClient` (raw REST, JSON dicts, watches);
- :mod:`~connector.kube.config` — building clients from kubeconfigs, in-cluster, robot tokens;
- :mod:`~connector.kube.metrics` — Prometheus collectors and the ``/metrics`` server.
"""

from __future__ import annotations

from connector.kube.client import KubeClient, WatchEvent, WatchStream
from connector.kube.config import (
    ConfigError,
    ContextNotFoundError,
    client_from_kubeconfig,
    client_from_kubeconfig_file,
    client_from_robot_token,
    client_in_cluster,
    cluster_of_context,
    spaces_server_url,
)
from connector.kube.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    KubeError,
    NotFoundError,
    ServerError,
    TLSError,
    TooManyRequestsError,
    UnauthorizedError,
    UnreachableError,
    error_from_api_exception,
)
from connector.kube.metrics import Metrics, MetricsServer, serve
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    EVENTS,
    LEASES,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    Resource,
)

__all__ = [
    "API_BINDINGS",
    "CLUSTER_API_BINDINGS",
    "CLUSTER_CONNECTIONS",
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
    "CONFIG_MAPS",
    "CUSTOM_RESOURCE_DEFINITIONS",
    "EVENTS",
    "LEASES",
    "NAMESPACES",
    "ROLES",
    "ROLE_BINDINGS",
    "SECRETS",
    "SERVICE_ACCOUNTS",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ContextNotFoundError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "KubeClient",
    "KubeError",
    "Metrics",
    "MetricsServer",
    "NotFoundError",
    "Resource",
    "ServerError",
    "TLSError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnreachableError",
    "WatchEvent",
    "WatchStream",
    "client_from_kubeconfig",
    "client_from_kubeconfig_file",
    "client_from_robot_token",
    "client_in_cluster",
    "cluster_of_context",
    "error_from_api_exception",
    "serve",
    "spaces_server_url",
]
