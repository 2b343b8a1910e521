"""LivenessMonitor's decisions, on a clock and a client that the test moves by hand.

The real thing (a relay that hangs in front of a kube-apiserver) is tested in
tests/integration/test_liveness.py and tests/faults/test_hung_provider.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from connector.kube._traffic import Traffic
from connector.kube.client import KubeClient
from connector.kube.errors import KubeError, TLSError, UnreachableError
from connector.kube.liveness import NOT_ANSWERING, LivenessMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeClient:
    """What the monitor uses of a KubeClient. ``answer`` decides each ping."""

    clock: Clock
    answer: Callable[[], None] = lambda: None
    pings: int = 0
    interrupted: list[KubeError] = field(default_factory=list)
    name: str = "provider"
    server: str = "https://provider:6443"

    def __post_init__(self) -> None:
        self.traffic = Traffic(clock=self.clock)

    def ping(self, *, timeout: float) -> None:
        self.pings += 1
        self.clock.now += timeout
        self.answer()
        self.traffic.heard()

    def interrupt_watches(self, error: KubeError) -> int:
        self.interrupted.append(error)
        return 1


def timeout() -> None:
    raise UnreachableError("timed out", reason="Timeout", cause="timed out")


def monitor(client: FakeClient, changes: list[str]) -> LivenessMonitor:
    return LivenessMonitor(
        cast(KubeClient, client),
        on_change=lambda: changes.append("change"),
        clock=client.clock,
    )


def test_an_idle_server_is_probed_after_the_idle_time_only() -> None:
    clock = Clock()
    client = FakeClient(clock)
    m = monitor(client, [])
    clock.now += 29
    assert not m.check()
    clock.now += 1
    assert m.check()
    assert m.error is None and client.pings == 1
    assert not m.check(), "the answer to the probe counts as hearing from it"


def test_a_request_waiting_past_the_deadline_gets_the_server_probed_and_reported() -> None:
    clock = Clock()
    client = FakeClient(clock, answer=timeout)
    changes: list[str] = []
    m = monitor(client, changes)
    with client.traffic.waiting():
        clock.now += 4.9
        assert not m.check()
        clock.now += 0.1
        assert m.check()
    assert m.error is not None and m.error.reason == NOT_ANSWERING
    assert "stopped answering" in m.error.message
    assert client.interrupted == [m.error]
    assert changes == ["change"]


def test_a_request_that_gave_up_waiting_counts_as_waiting_until_an_answer() -> None:
    clock = Clock()
    client = FakeClient(clock)
    m = monitor(client, [])
    clock.now += 0.5
    with client.traffic.waiting():
        clock.now += 1  # it failed without an answer (a TLS handshake that timed out)
    clock.now += 4
    assert m.check()
    client.traffic.heard()
    clock.now += 5
    assert not m.check()


def test_a_request_waiting_while_other_answers_arrive_is_slow_not_hung() -> None:
    clock = Clock()
    client = FakeClient(clock)
    m = monitor(client, [])
    with client.traffic.waiting():
        for _ in range(20):
            clock.now += 1
            client.traffic.heard()
            assert not m.check()


def test_not_answering_is_probed_again_every_deadline_and_ends_with_the_first_answer() -> None:
    clock = Clock()
    client = FakeClient(clock, answer=timeout)
    changes: list[str] = []
    m = monitor(client, changes)
    clock.now += 30
    assert m.check() and m.error is not None
    clock.now += 1
    assert not m.check(), "not before the deadline"
    clock.now += 4
    assert m.check() and m.error is not None
    assert changes == ["change"], "the same failure is told once"
    assert len(client.interrupted) == 2, "each failed probe gives up the watches again"
    clock.now += 0.5
    client.traffic.heard()  # e.g. a watch waiting since then got its answer
    clock.now += 0.5
    assert not m.check()
    assert m.error is None
    assert changes == ["change", "change"]


def test_an_answer_to_anything_during_the_probe_is_not_a_hang() -> None:
    clock = Clock()
    client = FakeClient(clock)

    def slow_probe_but_a_watch_spoke() -> None:
        client.traffic.heard()
        timeout()

    client.answer = slow_probe_but_a_watch_spoke
    m = monitor(client, [])
    clock.now += 30
    assert m.check()
    assert m.error is None and client.interrupted == []


def test_a_refused_connection_is_reported_as_it_is_and_a_tls_failure_is_an_answer() -> None:
    clock = Clock()

    def refused() -> None:
        raise UnreachableError("refused", reason="ConnectionFailed", cause="connection refused")

    client = FakeClient(clock, answer=refused)
    m = monitor(client, [])
    clock.now += 30
    m.check()
    assert m.error is not None and m.error.reason == "ConnectionFailed"

    def untrusted() -> None:
        raise TLSError("certificate verify failed", reason="CertificateVerificationFailed")

    tls_client = FakeClient(clock, answer=untrusted)
    tls = monitor(tls_client, [])
    clock.now += 30
    tls.check()
    assert tls.error is None
