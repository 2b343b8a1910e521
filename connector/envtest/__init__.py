"""Real local Kubernetes clusters (etcd + kube-apiserver on 127.0.0.1) for tests and demos.

Public API::

    find_binaries() -> Binaries                   # runs tools/build.sh etcd kube-apiserver
    Cluster(name, base_dir, *, ...)               # start() / stop() / with-statement
    start_clusters(names, base_dir, *, ...)       # several in parallel, all or nothing
    eventually(check, *, what, timeout)           # bounded poll; WaitTimeout names `what`

Errors::

    EnvtestError
    ├── BinariesError        kube-apiserver or etcd could not be found or built
    └── ClusterStartError    a start step failed; names the step, shows the log tail
"""

from __future__ import annotations

from connector.envtest._binaries import Binaries, find_binaries
from connector.envtest._cluster import ADMIN_GROUPS, ADMIN_USER, Cluster, start_clusters
from connector.envtest._errors import BinariesError, ClusterStartError, EnvtestError
from connector.envtest._wait import WaitTimeout, eventually

__all__ = [
    "ADMIN_GROUPS",
    "ADMIN_USER",
    "Binaries",
    "BinariesError",
    "Cluster",
    "ClusterStartError",
    "EnvtestError",
    "WaitTimeout",
    "eventually",
    "find_binaries",
    "start_clusters",
]
