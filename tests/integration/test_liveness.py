"""Liveness and connections against a real kube-apiserver behind a relay that can hang.

A hung server (it accepts connections and answers nothing) is reported within the bound
``kube.liveness`` documents, its watches are given up and resume when it answers again, a
watch that hears nothing for its idle deadline is replaced, and a pool sized for its users
keeps every connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.envtest import Cluster, eventually
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig, client_from_kubeconfig_file
from connector.kube.errors import KubeError, UnreachableError
from connector.kube.liveness import NOT_ANSWERING, LivenessMonitor
from connector.kube.resources import CONFIG_MAPS
from connector.runtime.informer import Informer
from tests.hang_proxy import HangingProxy, kubeconfig_via

#: What kube.liveness promises for a request left waiting: deadline + tick + probe timeout.
ACTIVE_BOUND = 5.0 + 1.0 + 5.0
#: Slack for a loaded 2-core machine (the status write, thread scheduling).
SLACK = 4.0


@pytest.fixture
def proxy(provider: Cluster) -> Iterator[HangingProxy]:
    assert provider.port is not None
    relay = HangingProxy(provider.port).start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def admin(provider: Cluster) -> Iterator[KubeClient]:
    with client_from_kubeconfig_file(provider.kubeconfig, name="admin", qps=None) as c:
        yield c


def via(proxy: HangingProxy, provider: Cluster, **kwargs: Any) -> KubeClient:
    return client_from_kubeconfig(
        kubeconfig_via(provider.kubeconfig.read_text(), proxy), name="via-relay", **kwargs
    )


def configmap(name: str, namespace: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": {"k": name}}


class Seen:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, _event: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self.names.add(obj["metadata"]["name"])


@pytest.mark.timeout(120)
def test_a_hung_server_is_reported_while_a_request_waits_and_everything_resumes_after_it(
    provider: Cluster, proxy: HangingProxy, admin: KubeClient, namespace: str
) -> None:
    client = via(proxy, provider)
    seen = Seen()
    changes = threading.Event()
    informer = Informer(client, CONFIG_MAPS, namespace=namespace, handler=seen, name="cms")
    monitor = LivenessMonitor(client, on_change=changes.set)
    with capture_logs() as logs:
        informer.start()
        monitor.start()
        try:
            assert informer.wait_synced(30)
            admin.create(CONFIG_MAPS, configmap("before", namespace))
            eventually(lambda: "before" in seen.names)

            proxy.hang()
            hung_at = time.monotonic()
            outcome: list[object] = []

            def read() -> None:
                try:
                    outcome.append(client.get(CONFIG_MAPS, "before", namespace))
                except KubeError as e:
                    outcome.append(e)

            waiting = threading.Thread(target=read)
            waiting.start()
            eventually(lambda: monitor.error is not None, timeout=ACTIVE_BOUND + SLACK)
            noticed = time.monotonic() - hung_at
            error = monitor.error
            assert error is not None and error.reason == NOT_ANSWERING
            assert "stopped answering" in error.message
            # on_change follows the error's publication (after the watches are given up
            # and the warning is logged), so it may come a moment later.
            assert changes.wait(5), "on_change was not called for the failure"
            # Its watch was given up with that error: the informer says so too.
            eventually(
                lambda: isinstance(informer.last_error, KubeError)
                and informer.last_error.reason == NOT_ANSWERING
            )
            assert not informer.healthy
            admin.create(CONFIG_MAPS, configmap("during", namespace))

            changes.clear()
            proxy.resume()
            resumed_at = time.monotonic()
            eventually(lambda: monitor.error is None, timeout=5)
            eventually(lambda: informer.healthy, timeout=10)
            eventually(lambda: "during" in seen.names, timeout=10)
            recovered = time.monotonic() - resumed_at
            waiting.join(30)
            # The request either outlived the hang or gave up after its own deadline.
            assert len(outcome) == 1
            assert isinstance(outcome[0], dict | UnreachableError), outcome
            assert changes.wait(5), "on_change was not called for the recovery"
        finally:
            monitor.stop()
            informer.stop()
            client.close()
    said = [e["event"] for e in logs if e.get("cluster") == "via-relay"]
    assert (
        said.count("The API server does not answer; its watches were given up and are retried.")
        == 1
    )
    assert said.count("The API server answers again.") == 1
    print(f"hang noticed after {noticed:.1f} s (bound {ACTIVE_BOUND:.0f} s)", end="; ")
    print(f"recovered {recovered:.1f} s after the server answered again")


@pytest.mark.timeout(60)
def test_an_idle_client_probes_a_silent_server_after_its_idle_time(
    provider: Cluster, proxy: HangingProxy
) -> None:
    client = via(proxy, provider)
    monitor = LivenessMonitor(client, idle=3.0, probe_timeout=2.0, tick=0.5)
    try:
        client.server_version()
        monitor.start()
        time.sleep(4.0)
        assert monitor.error is None, "a quiet server that answers its probe is fine"
        proxy.hang()
        hung_at = time.monotonic()
        eventually(lambda: monitor.error is not None, timeout=3.0 + 0.5 + 2.0 + SLACK)
        assert time.monotonic() - hung_at >= 2.0, "not before a probe went unanswered"
        proxy.resume()
        eventually(lambda: monitor.error is None, timeout=10)
    finally:
        monitor.stop()
        client.close()


@pytest.mark.timeout(60)
def test_a_client_whose_server_keeps_answering_is_never_probed(
    provider: Cluster, proxy: HangingProxy, admin: KubeClient, namespace: str
) -> None:
    admin.create(CONFIG_MAPS, configmap("busy", namespace))
    client = via(proxy, provider)
    monitor = LivenessMonitor(client, deadline=1.0, idle=2.0)
    probes = 0
    try:
        until = time.monotonic() + 6.0
        while time.monotonic() < until:
            client.get(CONFIG_MAPS, "busy", namespace)
            time.sleep(0.2)
            probes += monitor.check()
    finally:
        client.close()
    assert probes == 0


@pytest.mark.timeout(60)
def test_a_watch_that_hears_nothing_for_its_idle_deadline_ends_and_can_be_replaced(
    provider: Cluster, proxy: HangingProxy, namespace: str
) -> None:
    client = via(proxy, provider)
    client.watch_idle_seconds = 2.0
    try:
        _, version = client.list(CONFIG_MAPS, namespace)
        stream = client.watch(CONFIG_MAPS, version, namespace, timeout_seconds=300)
        with stream:
            assert stream.open()
            proxy.hang()
            started = time.monotonic()
            assert list(stream) == []  # ends, without an error
            took = time.monotonic() - started
        assert stream.idle_expired
        assert 1.5 <= took <= 10, took
    finally:
        proxy.resume()
        client.close()


def _hammer(client: KubeClient, namespace: str, *, threads: int, each: int) -> None:
    def work() -> None:
        for _ in range(each):
            client.get(CONFIG_MAPS, "hammered", namespace)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)


@pytest.mark.timeout(120)
def test_a_pool_sized_for_its_users_keeps_every_connection_and_an_undersized_one_churns(
    provider: Cluster,
    proxy: HangingProxy,
    admin: KubeClient,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin.create(CONFIG_MAPS, configmap("hammered", namespace))
    threads = 24  # more than the 10 spare connections every client keeps
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")

    sized = via(proxy, provider, qps=None)
    sized.reserve_connections(threads)
    assert sized.pool_size >= threads
    before = proxy.accepted
    try:
        _hammer(sized, namespace, threads=threads, each=20)
    finally:
        sized.close()
    opened = proxy.accepted - before
    assert opened <= threads, f"{opened} connections for {threads} concurrent users"
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]

    # The control: the same load on a pool nobody reserved for overflows it.
    undersized = via(proxy, provider, qps=None)
    try:
        _hammer(undersized, namespace, threads=threads, each=20)
    finally:
        undersized.close()
    assert [r for r in caplog.records if "pool is full" in r.getMessage()]
