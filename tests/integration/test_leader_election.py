"""Leader election against the real consumer API server: one leader at a time, prompt
hand-over on a graceful stop, takeover after a crash, and a cut-off leader stepping down.

Timings are short (lease 2 s, renew deadline 1.5 s, retry 0.2 s) so each test takes seconds;
every wait is bounded and polls an outcome instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import Cluster
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig, client_from_kubeconfig_file
from connector.kube.errors import NotFoundError
from connector.kube.resources import CONFIG_MAPS, LEASES, ROLE_BINDINGS, ROLES
from connector.runtime.leader import LeaderElector

ROOT = Path(__file__).resolve().parents[2]
LEASE = "api-connector"
LEASE_DURATION = 2.0
RENEW_DEADLINE = 1.5
RETRY_PERIOD = 0.2


def wait_for(what: str, fn: Callable[[], object], *, timeout: float = 10.0) -> float:
    """Poll ``fn`` until truthy; return the seconds it took. Fail naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if fn():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def client_for(kubeconfig: str | Path) -> KubeClient:
    # Request timeouts well below the renew deadline, as the elector's docstring asks.
    return client_from_kubeconfig_file(kubeconfig, connect_timeout=0.5, read_timeout=0.5)


class Replica:
    """One elector campaigning on its own thread, recording its callbacks."""

    def __init__(
        self, client: KubeClient, namespace: str, identity: str, *, release: bool = True
    ) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.elector = LeaderElector(
            client,
            namespace=namespace,
            name=LEASE,
            identity=identity,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY_PERIOD,
            on_started_leading=self.started.set,
            on_stopped_leading=self.stopped.set,
            release_on_cancel=release,
        )
        self.thread = threading.Thread(target=self.elector.run, name=identity, daemon=True)
        self.thread.start()

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader

    def stop(self) -> None:
        self.elector.stop(timeout=5)
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "the elector's run() did not return after stop()"


@pytest.fixture
def replicas(consumer: Cluster, namespace: str) -> Iterator[Callable[..., Replica]]:
    """Start replicas on demand; every one is stopped at the end of the test."""
    started: list[Replica] = []
    clients: list[KubeClient] = []

    def start(identity: str, *, release: bool = True, client: KubeClient | None = None) -> Replica:
        if client is None:
            client = client_for(consumer.kubeconfig)
            clients.append(client)
        replica = Replica(client, namespace, identity, release=release)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.elector.stop(timeout=5)
    for client in clients:
        client.close()


def lease_spec(consumer: Cluster, namespace: str) -> dict[str, Any]:
    with client_for(consumer.kubeconfig) as kube:
        return dict(kube.get(LEASES, LEASE, namespace)["spec"])


def test_exactly_one_replica_leads_at_any_sampled_moment(
    consumer: Cluster, namespace: str, replicas: Callable[..., Replica]
) -> None:
    a, b = replicas("replica-a"), replicas("replica-b")
    wait_for("a leader is elected", lambda: a.is_leader or b.is_leader)

    samples = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        leading = [a.is_leader, b.is_leader]
        assert leading.count(True) == 1, f"leaders at one moment: {leading}"
        samples += 1
        time.sleep(0.005)
    assert samples > 100

    leader = a if a.is_leader else b
    assert lease_spec(consumer, namespace)["holderIdentity"] == leader.elector.identity


def test_graceful_stop_hands_over_within_a_second(
    consumer: Cluster, namespace: str, replicas: Callable[..., Replica]
) -> None:
    a = replicas("replica-a")
    wait_for("a leads", lambda: a.is_leader)
    b = replicas("replica-b")
    wait_for("b observes a's lease", lambda: b.elector.holder == "replica-a")
    transitions = lease_spec(consumer, namespace)["leaseTransitions"]

    stopped_at = time.monotonic()
    a.stop()
    handover = wait_for("b takes over", lambda: b.is_leader, timeout=5)

    assert handover < 1.0, f"hand-over took {handover:.2f} s"
    assert a.stopped.is_set() and not a.is_leader
    spec = lease_spec(consumer, namespace)
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == transitions + 1
    assert time.monotonic() - stopped_at < 5


def test_crashed_leader_is_replaced_after_expiry_and_does_not_lead_on_return(
    consumer: Cluster, namespace: str, replicas: Callable[..., Replica]
) -> None:
    a = replicas("replica-a", release=False)
    wait_for("a leads", lambda: a.is_leader)
    b = replicas("replica-b")
    wait_for("b observes a's lease", lambda: b.elector.holder == "replica-a")

    # A crash: renewals stop and nothing releases the Lease.
    a.stop()
    crashed_at = time.monotonic()
    wait_for("b takes over", lambda: b.is_leader, timeout=LEASE_DURATION + 3)
    takeover = time.monotonic() - crashed_at

    # b must have waited for the lease to expire (minus at most one of a's retry periods,
    # the age of a's last renewal at the crash), and not much longer.
    assert LEASE_DURATION - RETRY_PERIOD - 0.1 <= takeover < LEASE_DURATION + 1.0, takeover
    assert lease_spec(consumer, namespace)["leaseTransitions"] == 1

    # a comes back while b holds the lease: it campaigns but never leads.
    back = replicas("replica-a")
    wait_for("the returning replica observes b", lambda: back.elector.holder == "replica-b")
    deadline = time.monotonic() + LEASE_DURATION * 1.5
    while time.monotonic() < deadline:
        assert not back.is_leader and b.is_leader
        time.sleep(0.02)
    assert not back.started.is_set()


class Gate:
    """A loopback TCP forwarder to the API server that can be shut, like a network cut."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    downstream.close()
                    return
                upstream = socket.create_connection(("127.0.0.1", self._target))
                self._conns += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Refuse new connections and cut the open ones."""
        with self._lock:
            self._closed = True
        # close() alone would leave a thread blocked in accept() holding the socket open
        # (Linux keeps accepting); shutdown() wakes it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()


def test_leader_that_cannot_reach_the_api_server_steps_down_within_renew_deadline(
    consumer: Cluster, namespace: str, replicas: Callable[..., Replica]
) -> None:
    assert consumer.port is not None
    gate = Gate(consumer.port)
    config = yaml.safe_load(consumer.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{gate.port}"
    gated = client_from_kubeconfig(yaml.safe_dump(config), connect_timeout=0.5, read_timeout=0.5)
    try:
        a = replicas("replica-a", client=gated)
        wait_for("a leads", lambda: a.is_leader)
        wait_for("a renews", lambda: a.elector.observed_record.renew_time, timeout=2)

        gate.close()
        cut_at = time.monotonic()
        wait_for("a stops leading", a.stopped.is_set, timeout=RENEW_DEADLINE + 2)
        stepped_down = time.monotonic() - cut_at

        # The last renewal happened at most one retry period before the cut.
        assert stepped_down < RENEW_DEADLINE + RETRY_PERIOD, stepped_down
        assert not a.is_leader
        # And the replica stepped down before its lease could expire for anyone else.
        assert stepped_down < LEASE_DURATION
        wait_for("run() returns after stepping down", lambda: not a.thread.is_alive(), timeout=3)
    finally:
        gated.close()


def test_leader_whose_lease_writes_become_forbidden_steps_down_within_renew_deadline(
    consumer: Cluster, namespace: str, replicas: Callable[..., Replica]
) -> None:
    user = f"leader-{namespace}"
    rbac = {"apiGroup": "rbac.authorization.k8s.io"}
    with client_for(consumer.kubeconfig) as admin:
        admin.create(
            ROLES,
            {
                "metadata": {"name": "leader-election", "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "resources": ["leases"],
                        "verbs": ["get", "create", "update"],
                    }
                ],
            },
        )
        admin.create(
            ROLE_BINDINGS,
            {
                "metadata": {"name": "leader-election", "namespace": namespace},
                "roleRef": {**rbac, "kind": "Role", "name": "leader-election"},
                "subjects": [{**rbac, "kind": "User", "name": user}],
            },
        )
        with client_for(consumer.mint_kubeconfig(user)) as limited:
            a = replicas("replica-a", client=limited)
            wait_for("a leads with only the Lease permissions", lambda: a.is_leader)

            admin.delete(ROLE_BINDINGS, "leader-election", namespace)
            revoked_at = time.monotonic()
            wait_for("a stops leading", a.stopped.is_set, timeout=RENEW_DEADLINE + 2)
            stepped_down = time.monotonic() - revoked_at

            assert not a.is_leader
            # Before the lease can expire for another replica, however the revocation and
            # the last renewal were timed.
            assert stepped_down < LEASE_DURATION, stepped_down
            wait_for("run() returns", lambda: not a.thread.is_alive(), timeout=3)


# -- failover between real processes ---------------------------------------------------------

WRITER = """
import json, os, sys, threading, time
from connector import logs
from connector.kube.config import client_from_kubeconfig_file
from connector.kube.errors import ConflictError, KubeError
from connector.kube.resources import CONFIG_MAPS
from connector.runtime.leader import LeaderElector

kubeconfig, namespace, identity = sys.argv[1:4]
logs.configure(debug=True)
client = client_from_kubeconfig_file(kubeconfig, connect_timeout=0.5, read_timeout=0.5)
elector = LeaderElector(
    client, namespace=namespace, name="failover", identity=identity,
    lease_duration=2, renew_deadline=1.5, retry_period=0.2,
    on_started_leading=lambda: None,
    # As the manager does: a replica that lost its term exits instead of writing on.
    on_stopped_leading=lambda: os._exit(3),
)
threading.Thread(target=elector.run, daemon=True).start()
print("campaigning", flush=True)
while True:
    if elector.is_leader:
        transitions = elector.observed_record.leader_transitions
        try:
            cm = client.get(CONFIG_MAPS, "counter", namespace)
            entries = json.loads(cm["data"]["log"])
            entries.append([len(entries) + 1, identity, transitions])
            cm["data"]["log"] = json.dumps(entries)
            client.update(CONFIG_MAPS, cm)
        except ConflictError:
            # Only another writer between our read and our write can cause this.
            print("conflict", flush=True)
        except KubeError:
            pass
    time.sleep(0.02)
"""


class Writer:
    def __init__(self, kubeconfig: Path, namespace: str, identity: str, out: Path) -> None:
        self.identity = identity
        self.out = out
        # Markers on stdout, logs on stderr: one shared file could interleave their lines.
        self.err = out.with_suffix(".err")
        self._files = (out.open("wb"), self.err.open("wb"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(kubeconfig), namespace, identity],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=self._files[0],
            stderr=self._files[1],
        )

    def said(self, line: str) -> bool:
        if self.proc.poll() not in (None, -signal.SIGKILL):
            raise AssertionError(
                f"{self.identity} exited with {self.proc.returncode}:\n{self.err.read_text()}"
            )
        return line in self.out.read_text().splitlines()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        for file in self._files:
            file.close()


def test_failover_between_processes_never_interleaves_writers(
    consumer: Cluster, namespace: str, tmp_path: Path
) -> None:
    with client_for(consumer.kubeconfig) as kube:
        kube.create(
            CONFIG_MAPS,
            {"metadata": {"name": "counter", "namespace": namespace}, "data": {"log": "[]"}},
        )

        def entries() -> list[list[Any]]:
            return list(json.loads(kube.get(CONFIG_MAPS, "counter", namespace)["data"]["log"]))

        def holder() -> str:
            try:
                return str(kube.get(LEASES, "failover", namespace)["spec"]["holderIdentity"])
            except NotFoundError:
                return ""

        writers = {
            name: Writer(consumer.kubeconfig, namespace, name, tmp_path / f"{name}.log")
            for name in ("writer-a", "writer-b")
        }
        try:
            for w in writers.values():
                wait_for(f"{w.identity} campaigns", partial(w.said, "campaigning"), timeout=30)
            wait_for("a leader writes", lambda: len(entries()) >= 5)
            first = writers[holder()]
            second = next(w for w in writers.values() if w is not first)

            first.kill()
            killed_at = time.monotonic()
            count_at_kill = len(entries())
            wait_for(
                "the other replica writes",
                lambda: any(e[1] == second.identity for e in entries()),
                timeout=LEASE_DURATION + 5,
            )
            takeover = time.monotonic() - killed_at
            wait_for("a few more writes", lambda: len(entries()) >= count_at_kill + 5)
            second.kill()

            log = entries()
            identities = [e[1] for e in log]
            switch = identities.index(second.identity)
            assert [e[0] for e in log] == list(range(1, len(log) + 1))
            assert set(identities[:switch]) == {first.identity}, identities
            assert set(identities[switch:]) == {second.identity}, identities
            # Each writer recorded the term it wrote in: one term each, the second one later.
            first_terms = {e[2] for e in log[:switch]}
            second_terms = {e[2] for e in log[switch:]}
            assert len(first_terms) == 1 and len(second_terms) == 1
            assert second_terms.pop() == first_terms.pop() + 1
            assert not first.said("conflict") and not second.said("conflict")
            assert takeover < LEASE_DURATION + 2, takeover
        finally:
            for w in writers.values():
                w.kill()
