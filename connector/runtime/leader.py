"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two replicas never both write.

The semantics are client-go's ``leaderelection`` package:

* A replica acquires the Lease when it does not exist, when it holds it already, when its
  ``holderIdentity`` is empty (released), or when it has expired. Expiry is judged by *local*
  time: the Lease counts as expired ``leaseDurationSeconds`` after this replica last saw the
  record change, never by comparing ``renewTime`` with the local clock, so clock skew between
  replicas does not matter.
* Every write is an update conditional on the ``resourceVersion`` that was read; a 409 means
  another replica wrote first, and this one tries again ``retry_period`` later.
* The leader renews every ``retry_period``. When no renewal has succeeded for
  ``renew_deadline`` it stops leading and calls ``on_stopped_leading``: the manager then exits
  the process (as controller-runtime does), so a leader cut off from the API server stops
  writing before ``lease_duration`` lets another replica take over.
* On a graceful stop the leader releases the Lease (empty holder, one-second duration) so the
  other replica takes over at its next attempt instead of waiting for expiry.

Use::

    elector = LeaderElector(client, namespace=..., name="api-connector",
                            identity=default_identity(), on_started_leading=start,
                            on_stopped_leading=exit_process)
    threading.Thread(target=elector.run, name="leader-election").start()
    elector.stop()          # releases the Lease if leading, then run() returns

The callbacks run on the elector's threads and must return promptly (start work in a thread
of its own): renewal does not happen while ``on_started_leading`` runs. ``on_stopped_leading``
is called exactly once per term of leadership, also on a graceful stop.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from connector.kube.client import KubeClient
from connector.kube.errors import ConflictError, KubeError, NotFoundError
from connector.kube.resources import LEASES
from functions.common.api import DEFAULT_NAMESPACE
from functions.common.clock import now_micro_time

__all__ = [
    "DEFAULT_LEADER_ELECTION_ID",
    "DEFAULT_LEADER_ELECTION_NAMESPACE",
    "DEFAULT_LEASE_DURATION",
    "DEFAULT_RENEW_DEADLINE",
    "DEFAULT_RETRY_PERIOD",
    "LeaderElector",
    "LeaseRecord",
    "default_identity",
]

log = structlog.get_logger(__name__)

DEFAULT_LEADER_ELECTION_NAMESPACE = DEFAULT_NAMESPACE
DEFAULT_LEADER_ELECTION_ID = "api-connector"
# controller-runtime's defaults.
DEFAULT_LEASE_DURATION = 15.0
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0

_FIELD_MANAGER = "api-connector-leader-election"


def default_identity() -> str:
    """A replica's identity: the Pod name (``POD_NAME``) or the host name, plus a random suffix.

    The suffix keeps a restarted process from being taken for its previous incarnation, which
    would let it "renew" a term it never held while its old writes may still be in flight.
    """
    base = os.environ.get("POD_NAME") or socket.gethostname() or "api-connector"
    return f"{base}_{uuid.uuid4()}"


@dataclass(frozen=True)
class LeaseRecord:
    """The leader-election fields of a Lease's spec (client-go's ``LeaderElectionRecord``)."""

    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    leader_transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder_identity=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            leader_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.leader_transitions,
        }
        # MicroTime fields must be absent rather than empty strings.
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


class LeaderElector:
    """Campaigns for one Lease and reports when this replica starts and stops leading.

    ``lease_duration`` is how long followers wait, after the record last changed, before they
    take over; ``renew_deadline`` how long the leader keeps leading without a successful
    renewal; ``retry_period`` the pause between attempts. They must satisfy
    ``lease_duration > renew_deadline > retry_period > 0``, so the old leader has stopped
    before any follower can consider the Lease expired. Give the elector a client whose
    request timeouts are shorter than ``renew_deadline``; the deadline is enforced even when
    a request hangs, but a hung request delays the next attempt.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        renew_deadline: float = DEFAULT_RENEW_DEADLINE,
        retry_period: float = DEFAULT_RETRY_PERIOD,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not namespace or not name:
            raise ValueError("Leader election needs the Lease's namespace and name.")
        if not identity:
            raise ValueError("Leader election needs a non-empty identity for this replica.")
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(
                "Leader election timings must satisfy lease_duration > renew_deadline > "
                f"retry_period > 0; got {lease_duration}, {renew_deadline}, {retry_period}."
            )
        self._client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._clock = clock

        # Guards the fields below; held only for bookkeeping, never across a request.
        self._lock = threading.Lock()
        self._observed = LeaseRecord()
        self._observed_rv = ""
        self._observed_time = 0.0  # local clock when the record last changed
        self._leading = False
        self._last_renew = 0.0  # local clock of the last successful acquire or renew
        self._reported_holder: str | None = None
        self._failing = False

        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._run_thread: threading.Thread | None = None
        self._log = log.bind(lease=f"{namespace}/{name}", identity=identity)
        if client.connect_timeout + client.read_timeout >= renew_deadline:
            # Not fatal (the watchdog still steps down on time), but one hung request can
            # then use up a whole term, and a replica that could have renewed loses the lease.
            self._log.warning(
                "The leader-election client's request timeouts are longer than the renew "
                "deadline; give leader election its own client with shorter timeouts.",
                connect_timeout=client.connect_timeout,
                read_timeout=client.read_timeout,
                renew_deadline=renew_deadline,
            )

    # -- state ---------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this replica leads and its last renewal is within ``renew_deadline``.

        The time check makes the answer safe for fencing writes even if the thread that steps
        down is late: a caller that checks this before each write never writes on a term that
        has run out.
        """
        with self._lock:
            return self._leading and self._clock() - self._last_renew < self.renew_deadline

    @property
    def observed_record(self) -> LeaseRecord:
        """The Lease record as last read or written by this replica."""
        with self._lock:
            return self._observed

    @property
    def holder(self) -> str:
        """The identity holding the Lease as last observed ("" when free or unknown)."""
        return self.observed_record.holder_identity

    # -- one step ------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """Make one attempt to acquire or renew the Lease; True if this replica now holds it.

        Never raises for API errors: a failed attempt is logged and returns False, and the
        caller tries again after ``retry_period``. Does not call the callbacks (``run`` does).
        """
        try:
            return self._try_acquire_or_renew()
        except KubeError as e:
            self._note_failure(e)
            return False

    def _try_acquire_or_renew(self) -> bool:
        # The term is counted from before the request: the server may have applied the write
        # any time after this, so the leader's own deadline must not start later.
        attempt_started = self._clock()
        now_wall = now_micro_time()
        try:
            lease = self._client.get(LEASES, self.name, self.namespace)
        except NotFoundError:
            return self._create(now_wall, attempt_started)

        current = LeaseRecord.from_spec(lease.get("spec"))
        rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        now = self._clock()
        with self._lock:
            if current != self._observed:
                # Local observation time, not renewTime: another replica's clock may be off.
                self._observed = current
                self._observed_time = now
            self._observed_rv = rv
            observed_time = self._observed_time
        self._report_holder(current.holder_identity)

        held_by_other = current.holder_identity not in ("", self.identity)
        if held_by_other and now < observed_time + current.lease_duration_seconds:
            return False

        if current.holder_identity == self.identity:
            # Renewal: the term continues, so its start and the transition count stay.
            record = LeaseRecord(
                holder_identity=self.identity,
                lease_duration_seconds=self._lease_seconds(),
                acquire_time=current.acquire_time or now_wall,
                renew_time=now_wall,
                leader_transitions=current.leader_transitions,
            )
        else:
            record = LeaseRecord(
                holder_identity=self.identity,
                lease_duration_seconds=self._lease_seconds(),
                acquire_time=now_wall,
                renew_time=now_wall,
                leader_transitions=current.leader_transitions + 1,
            )
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": rv},
            "spec": record.to_spec(),
        }
        try:
            updated = self._client.update(LEASES, body, field_manager=_FIELD_MANAGER)
        except ConflictError:
            # Another replica wrote between our read and our write; its record wins.
            self._log.debug("Another replica updated the lease first; trying again later.")
            return False
        self._record_success(updated, record, attempt_started)
        return True

    def _create(self, now_wall: str, attempt_started: float) -> bool:
        record = LeaseRecord(
            holder_identity=self.identity,
            lease_duration_seconds=self._lease_seconds(),
            acquire_time=now_wall,
            renew_time=now_wall,
            leader_transitions=0,
        )
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_spec(),
        }
        try:
            created = self._client.create(LEASES, body, field_manager=_FIELD_MANAGER)
        except ConflictError:
            self._log.debug("Another replica created the lease first; trying again later.")
            return False
        self._record_success(created, record, attempt_started)
        return True

    def _record_success(
        self, lease: Mapping[str, Any], record: LeaseRecord, attempt_started: float
    ) -> None:
        with self._lock:
            self._observed = record
            self._observed_rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
            self._observed_time = self._clock()
            self._last_renew = attempt_started
            recovered = self._failing
            self._failing = False
        if recovered:
            self._log.info("The lease can be written again.")
        self._report_holder(self.identity)

    def _note_failure(self, e: KubeError) -> None:
        with self._lock:
            first = not self._failing
            self._failing = True
        # Once per streak of failures: a retry every retry_period would flood the log.
        if first:
            self._log.warning(
                "Reading or writing the lease failed; retrying every retry period.",
                error=str(e),
                retry_period=self.retry_period,
            )

    def _report_holder(self, holder: str) -> None:
        with self._lock:
            if holder == self._reported_holder:
                return
            self._reported_holder = holder
        if holder and holder != self.identity:
            self._log.info("Another replica holds the lease; this one waits.", holder=holder)
        elif not holder:
            self._log.info("The lease has been released; trying to acquire it.")

    def _lease_seconds(self) -> int:
        # leaseDurationSeconds is an integer; round up so followers never wait less than asked.
        return max(1, math.ceil(self.lease_duration))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Campaign, lead and renew until :meth:`stop` or until leadership is lost.

        Returns after ``on_stopped_leading`` has been called (if this replica led at all);
        an elector runs once: a replica that wants to campaign again makes a new one.
        """
        if self._run_thread is not None:
            raise RuntimeError("A LeaderElector runs once; create a new one to campaign again.")
        self._run_thread = threading.current_thread()
        self._done.clear()
        self._log.info(
            "Campaigning for the lease.",
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )
        watchdog = threading.Thread(
            target=self._watch_deadline, name=f"leader-deadline-{self.name}", daemon=True
        )
        try:
            if not self._acquire():
                return
            watchdog.start()
            self._renew()
        finally:
            self._finish()
            self._done.set()

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop campaigning; a leader releases the Lease (unless ``release_on_cancel=False``).

        Waits up to ``timeout`` seconds (None: no limit) for :meth:`run` to return, except
        when called from a callback on the elector's own thread.
        """
        self._stop.set()
        if threading.current_thread() is not self._run_thread:
            self._done.wait(timeout)

    def _acquire(self) -> bool:
        while not self._stop.is_set():
            if self.try_acquire_or_renew():
                self._start_leading()
                return True
            self._stop.wait(self.retry_period)
        return False

    def _renew(self) -> None:
        while not self._stop.wait(self.retry_period):
            renewed = self.try_acquire_or_renew()
            with self._lock:
                leading = self._leading
                overdue = self._clock() - self._last_renew >= self.renew_deadline
                taken = self._observed.holder_identity not in ("", self.identity)
            if not leading:
                return  # the watchdog stepped down already
            if renewed:
                continue
            if taken:
                # Someone else holds a newer record: no reason to wait for the deadline.
                self._step_down("Another replica took over the lease; this one stops leading.")
                return
            if overdue:
                self._step_down(
                    "The lease could not be renewed within the renew deadline; this replica "
                    "stops leading so that it never writes alongside a new leader."
                )
                return

    def _watch_deadline(self) -> None:
        # The renew loop may be stuck in a request; the deadline must hold regardless.
        while not self._stop.wait(min(self.retry_period, self.renew_deadline) / 2):
            with self._lock:
                if not self._leading:
                    return
                overdue = self._clock() - self._last_renew >= self.renew_deadline
            if overdue:
                self._step_down(
                    "The lease could not be renewed within the renew deadline; this replica "
                    "stops leading so that it never writes alongside a new leader."
                )
                return

    def _start_leading(self) -> None:
        with self._lock:
            self._leading = True
            transitions = self._observed.leader_transitions
        self._log.info("This replica is now the leader.", leader_transitions=transitions)
        self._on_started_leading()

    def _step_down(self, message: str) -> None:
        with self._lock:
            if not self._leading:
                return
            self._leading = False
        self._log.warning(message, renew_deadline=self.renew_deadline)
        self._on_stopped_leading()

    def _finish(self) -> None:
        with self._lock:
            leading = self._leading
        if not leading:
            return
        if self.release_on_cancel:
            self._release()
        with self._lock:
            self._leading = False
        self._log.info("This replica stopped leading on request.")
        self._on_stopped_leading()

    def _release(self) -> None:
        """Hand the Lease back so another replica takes over at once, not after expiry."""
        with self._lock:
            observed = self._observed
            rv = self._observed_rv
        if observed.holder_identity != self.identity:
            return
        now_wall = now_micro_time()
        record = LeaseRecord(
            holder_identity="",
            lease_duration_seconds=1,
            acquire_time=now_wall,
            renew_time=now_wall,
            leader_transitions=observed.leader_transitions,
        )
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": rv},
            "spec": record.to_spec(),
        }
        try:
            self._client.update(LEASES, body, field_manager=_FIELD_MANAGER)
        except KubeError as e:
            # Only a courtesy: the others take over when the Lease expires.
            self._log.warning(
                "Releasing the lease failed; another replica takes over once it expires.",
                error=str(e),
            )
            return
        with self._lock:
            self._observed = record
        self._log.info("Released the lease so another replica can take over at once.")
