"""A consumer and a provider of the security tests' own, and one connector run at debug level
whose every log line the secret-material checks read.

The pair is separate from the session's shared clusters: these tests install admission
policies and provider identities, and read every Event and status in the consumer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import ConnectorProcess, FaultWorld, fault_world, running


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    # No walkthrough connection: each test creates the connections it is about.
    with fault_world(tmp_path_factory.mktemp("security"), connection=False) as w:
        yield w


@pytest.fixture(scope="package")
def connector(world: FaultWorld) -> Iterator[ConnectorProcess]:
    c = ConnectorProcess(
        world.consumer_cluster.kubeconfig,
        consumer_cluster=world.consumer_cluster_name,
        log=world.base / "connector.log",
        debug=True,
    )
    with running(c):
        c.start().wait_ready()
        yield c
