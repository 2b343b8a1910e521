"""Shared fixtures: real local clusters (etcd, kube-apiserver, kube-controller-manager).

    clusters             session: {"consumer": Cluster, "provider": Cluster}, started once,
                         in parallel
    consumer             the consumer Cluster (.kubeconfig, .api_client(), .kube_client(),
                         .mint_kubeconfig(...))
    provider             the provider Cluster
    namespace            a fresh namespace, created in both clusters and deleted (without
                         waiting) after the test
    crossplane_provider  session: a provider Cluster of its own running Crossplane with the
                         stages' Functions and the example function (a Crossplane object:
                         .cluster, .endpoints, .packages, .registry)

Everything starts only when a test asks for it. If something cannot start, every test that
needs it errors with the reason: a missing cluster is a failure, never a skip.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from connector.envtest import Cluster, Crossplane, start_clusters

CLUSTER_NAMES = ("consumer", "provider")


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
    """The consumer and provider clusters, shared by the whole session."""
    base_dir = tmp_path_factory.mktemp("clusters")
    # start_clusters stops what it started if it fails or is interrupted (Ctrl-C).
    started = start_clusters(CLUSTER_NAMES, base_dir)
    try:
        yield {cluster.name: cluster for cluster in started}
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture
def consumer(clusters: dict[str, Cluster]) -> Cluster:
    """The consumer cluster (where the connector is installed)."""
    return clusters["consumer"]


@pytest.fixture
def provider(clusters: dict[str, Cluster]) -> Cluster:
    """The provider cluster (where the APIs are offered)."""
    return clusters["provider"]


@pytest.fixture
def namespace(request: pytest.FixtureRequest, clusters: dict[str, Cluster]) -> Iterator[str]:
    """A namespace named after the test, unique, existing in both clusters for the test."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 'test'}-{uuid.uuid4().hex[:6]}"
    created: list[Cluster] = []
    try:
        for cluster in clusters.values():
            cluster.create_namespace(name, labels={"envtest.api-connector.io/test": "true"})
            created.append(cluster)
        yield name
    finally:
        for cluster in created:
            cluster.delete_namespace(name)


@pytest.fixture(scope="session")
def crossplane_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crossplane]:
    """A provider cluster with Crossplane and its Functions, shared by the whole session.

    Its own cluster, so that Crossplane's CRDs and the APIs its XRDs generate never meet the
    hand-made CRDs other tests put into the shared provider. Starting it takes about 20 s
    (the cluster 6 s, Crossplane and four Functions Healthy 12 s, on 2 busy cores).
    """
    [cluster] = start_clusters(["provider"], tmp_path_factory.mktemp("crossplane"))
    try:
        crossplane = Crossplane(cluster).start()
        try:
            yield crossplane
        finally:
            crossplane.stop()
    finally:
        cluster.stop()
