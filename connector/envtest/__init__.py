"""Real local Kubernetes clusters (etcd, kube-apiserver and kube-controller-manager on
127.0.0.1) for tests and demos, optionally with Crossplane and its functions.

Public API::

    find_binaries(*, controller_manager) -> Binaries   # tools/build.sh etcd kube-apiserver ...
    find_tools(names) -> {name: Path}                  # any tool tools/build.sh knows
    Cluster(name, base_dir, *, ...)                    # start() / stop() / with-statement
    start_clusters(names, base_dir, *, ...)            # several in parallel, all or nothing
    Crossplane(cluster, *, functions, providers, ...)  # Crossplane core + function runtime
    start_crossplane(cluster, *, functions, ...)       # the same, started
    Crossplane.start_providers(providers)              # providers on a started Crossplane
    connect_cluster(kube, target, *, namespace)        # provider-kubernetes' ProviderConfig
    eventually(check, *, what, timeout)                # bounded poll; WaitTimeout names `what`

Errors::

    EnvtestError
    ├── BinariesError        a tool could not be found or built
    └── ClusterStartError    a start step failed; names the step, shows the log tail
"""

from __future__ import annotations

from connector.envtest._binaries import Binaries, find_binaries, find_tools
from connector.envtest._cluster import (
    ADMIN_GROUPS,
    ADMIN_USER,
    CONTROLLERS,
    Cluster,
    start_clusters,
)
from connector.envtest._crossplane import Crossplane, start_crossplane
from connector.envtest._errors import BinariesError, ClusterStartError, EnvtestError
from connector.envtest._functions import (
    DEFAULT_FUNCTIONS,
    EXAMPLE_FUNCTION,
    FUNCTION_REVISIONS,
    FUNCTIONS,
    STAGE_FUNCTIONS,
    FunctionSource,
)
from connector.envtest._providers import (
    CONSUMER_PROVIDER_CONFIG,
    PROVIDER_KUBERNETES,
    PROVIDERS,
    ProviderSource,
    connect_cluster,
)
from connector.envtest._wait import WaitTimeout, eventually

__all__ = [
    "ADMIN_GROUPS",
    "ADMIN_USER",
    "CONSUMER_PROVIDER_CONFIG",
    "CONTROLLERS",
    "DEFAULT_FUNCTIONS",
    "EXAMPLE_FUNCTION",
    "FUNCTIONS",
    "FUNCTION_REVISIONS",
    "PROVIDERS",
    "PROVIDER_KUBERNETES",
    "STAGE_FUNCTIONS",
    "Binaries",
    "BinariesError",
    "Cluster",
    "ClusterStartError",
    "Crossplane",
    "EnvtestError",
    "FunctionSource",
    "ProviderSource",
    "WaitTimeout",
    "connect_cluster",
    "eventually",
    "find_binaries",
    "find_tools",
    "start_clusters",
    "start_crossplane",
]
