"""A twin write the provider refuses is never silent: every error class becomes ``APIBound``
False with a reason of its own and the server's message, a Warning Event, a retry with
backoff, and a recovery the user is told about.

The errors are what kube-apiserver answers (decoded by the client's own
``error_from_response``), or what the transport raises when no answer comes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from connector.controllers.sync_reconcile import SyncDeps, reconcile_object
from connector.controllers.write_failures import FAILURE_REASONS, write_failure
from connector.kube.errors import KubeError, TLSError, UnreachableError, error_from_response
from connector.runtime.keys import ObjectKey
from connector.runtime.workqueue import Result
from functions.common import find_condition
from functions.object_syncer.types import SyncRequest, SyncResult

NOW = "2026-01-01T00:00:00Z"
KEY = ObjectKey("team-a", "db")
OBJ = 'nopresources.nop.example.org "db"'


def answer(code: int, reason: str, message: str, **details: Any) -> KubeError:
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "code": code}
    body.update(reason=reason, message=message)
    if details:
        body["details"] = details
    return error_from_response(code, json.dumps(body).encode())


TERMINATING = answer(
    403,
    "Forbidden",
    f"{OBJ} is forbidden: unable to create new content in namespace team-a because it is "
    "being terminated",
    name="db",
    group="nop.example.org",
    kind="nopresources",
    causes=[
        {
            "reason": "NamespaceTerminating",
            "field": "metadata.namespace",
            "message": "namespace team-a is being terminated",
        }
    ],
)
RBAC = answer(
    403,
    "Forbidden",
    f'{OBJ} is forbidden: User "system:serviceaccount:connector-c:consumer" cannot create '
    'resource "nopresources" in API group "nop.example.org" in the namespace "team-a"',
    name="db",
    group="nop.example.org",
    kind="nopresources",
)
NO_NAMESPACE = answer(
    404, "NotFound", 'namespaces "team-a" not found', name="team-a", kind="namespaces"
)
TIMEOUT = UnreachableError(
    "The API server https://provider:6443 did not answer in time: Read timed out.",
    reason="Timeout",
    cause="timed out",
)


@dataclass(frozen=True)
class Case:
    reason: str
    error: BaseException
    #: The APIBound reason; None: retried without a word (raised, so the queue backs off).
    want: str | None
    action: str = "create"
    #: Words the message must carry besides the server's own message.
    says: str = ""


CASES = [
    Case(
        "validation (422) rejects the object itself",
        answer(422, "Invalid", f"{OBJ} is invalid: spec.size: Invalid value: 11"),
        "ProviderRejected",
        says="rejected",
    ),
    Case(
        "an admission webhook denies it",
        answer(400, "", 'admission webhook "owners.example.com" denied the request: no owner'),
        "ProviderRejected",
    ),
    Case("RBAC refuses the connector's identity (403)", RBAC, "ProviderForbidden"),
    Case(
        "the namespace is being deleted (403 NamespaceTerminating)",
        TERMINATING,
        "ProviderNamespaceTerminating",
        says="namespace is being deleted",
    ),
    Case(
        "the namespace does not exist (404 naming the namespace)",
        NO_NAMESPACE,
        "ProviderNamespaceNotFound",
        says="the namespace team-a does not exist",
    ),
    Case(
        "the provider does not serve the API (404 naming no object)",
        answer(404, "NotFound", "the server could not find the requested resource"),
        "ProviderAPINotServed",
        action="update",
    ),
    Case(
        "the twin vanished meanwhile (404 naming it): the next pass re-creates it",
        answer(404, "NotFound", f"{OBJ} not found", name="db", kind="nopresources"),
        None,
        action="update",
    ),
    Case(
        "a write based on a stale read (409 Conflict): the next attempt reads again",
        answer(
            409, "Conflict", f"Operation cannot be fulfilled on {OBJ}: the object has been modified"
        ),
        None,
        action="update",
    ),
    Case(
        "a 409 that a retry repeats (a field manager conflict)",
        answer(
            409,
            "Conflict",
            'Apply failed with 1 conflict: conflict with "kubectl": .spec.coolField',
            causes=[{"reason": "FieldManagerConflict", "field": ".spec.coolField"}],
        ),
        "ProviderWriteConflict",
        action="update",
    ),
    Case(
        "a 409 of an object being deleted under the same name",
        answer(409, "AlreadyExists", f"object is being deleted: {OBJ} already exists"),
        "ProviderWriteConflict",
    ),
    Case(
        "throttling (429) that outlasted the client's retries",
        answer(429, "TooManyRequests", "Too many requests, please try again later."),
        "ProviderThrottled",
        says="throttling",
    ),
    Case(
        "a server error (500: a webhook that cannot be called)",
        answer(
            500,
            "InternalError",
            'Internal error occurred: failed calling webhook "owners.example.com": connection '
            "refused",
        ),
        "ProviderServerError",
        says="HTTP 500",
    ),
    Case(
        "the server is unavailable (503)",
        answer(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        "ProviderServerError",
        action="delete",
        says="Deleting the object",
    ),
    Case("no answer in time", TIMEOUT, "ProviderUnreachable", says="timed out"),
    Case(
        "the credentials are not accepted (401)",
        answer(401, "Unauthorized", "Unauthorized"),
        "ProviderUnauthorized",
        says="credentials",
    ),
    Case(
        "the certificate does not verify",
        TLSError("TLS verification of the API server https://provider:6443 failed"),
        "ProviderTLSError",
    ),
    Case(
        "a malformed request (400, not admission) is still reported",
        answer(400, "BadRequest", "the body of the request was in an unknown format"),
        "ProviderBadRequest",
    ),
    Case(
        "another failure of the client layer",
        KubeError("Handing field ownership to server-side apply failed: boom"),
        "ProviderError",
        action="update",
    ),
    Case("a bug is not an API answer: raised with its traceback", ValueError("bug"), None),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_what_a_failed_twin_write_tells_the_user(case: Case) -> None:
    got = write_failure(case.error, action=case.action)
    if case.want is None:
        assert got is None, f"-want silent retry, +got {got}"
        return
    assert got is not None, f"-want {case.want}, +got a silent retry"
    assert got.reason == case.want, f"-want {case.want}, +got {got.reason}"
    assert got.reason in FAILURE_REASONS
    assert str(case.error) in got.message, "the server's own message is part of it"
    assert case.says in got.message


# --- the reconcile: condition, Event, log, backoff and recovery -------------------------

CONSUMER: dict[str, Any] = {
    "apiVersion": "nop.example.org/v1alpha1",
    "kind": "NopResource",
    "metadata": {"name": "db", "namespace": "team-a", "uid": "u", "generation": 3},
    "spec": {"coolField": "x"},
}
TWIN: dict[str, Any] = {**CONSUMER, "metadata": {"name": "db", "namespace": "team-a"}}
PENDING = {"conditions": [{"type": "APIBound", "status": "False", "reason": "Pending"}]}


@dataclass
class World:
    result: SyncResult
    consumer: dict[str, Any] = field(default_factory=lambda: dict(CONSUMER))
    twin: dict[str, Any] | None = None
    write_error: BaseException | None = None
    finalizer_error: BaseException | None = None
    statuses: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def write(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.write_error is not None:
            raise self.write_error
        return {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "9"}}

    def delete(self, key: ObjectKey) -> None:
        if self.write_error is not None:
            raise self.write_error

    def add_finalizer(self, obj: dict[str, Any]) -> None:
        if self.finalizer_error is not None:
            raise self.finalizer_error

    def write_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        self.statuses.append(status)
        self.consumer = {**self.consumer, "status": status}

    def deps(self) -> SyncDeps:
        def sync(_req: SyncRequest) -> SyncResult:
            return self.result

        return SyncDeps(
            consumer_cluster="c",
            get_consumer=lambda key: self.consumer,
            get_twin=lambda key: self.twin,
            sync=sync,
            add_finalizer=self.add_finalizer,
            ensure_provider_namespace=lambda ns: None,
            create_twin=self.write,
            read_twin=lambda key: TWIN,
            hand_over_ownership=lambda key, twin: None,
            apply_twin=self.write,
            delete_twin=self.delete,
            write_consumer_status=self.write_status,
            remove_finalizer=lambda obj: None,
            warn=lambda obj, reason, message: self.warnings.append((reason, message)),
            resolved=lambda obj, reason, message: self.resolved.append(reason),
            now=lambda: NOW,
        )


def api_bound(world: World) -> dict[str, Any]:
    cond = find_condition(world.consumer.get("status", {}).get("conditions"), "APIBound")
    assert cond is not None
    return dict(cond)


def test_a_refused_create_is_reported_retried_and_its_recovery_told() -> None:
    world = World(SyncResult(provider_apply=TWIN, consumer_status=PENDING), write_error=TERMINATING)
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    cond = api_bound(world)
    assert (cond["status"], cond["reason"]) == ("False", "ProviderNamespaceTerminating")
    assert "being terminated" in cond["message"], "the server's message"
    assert cond["observedGeneration"] == 3
    assert world.warnings == [("ProviderNamespaceTerminating", cond["message"])]

    # The same failure again: the status stands as written (no write), the Event is the
    # recorder's to de-duplicate, and the retries keep backing off.
    world.result = SyncResult(provider_apply=TWIN, consumer_status=world.consumer["status"])
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    assert len(world.statuses) == 1
    assert len(world.warnings) == 2 and world.warnings[0] == world.warnings[1]

    # Another problem: a new condition message and a new Warning.
    world.write_error = RBAC
    reconcile_object(KEY, world.deps())
    assert api_bound(world)["reason"] == "ProviderForbidden"
    assert world.warnings[-1][0] == "ProviderForbidden"

    # The provider takes it: the twin is written, and the next pass reports Bound.
    world.write_error = None
    assert reconcile_object(KEY, world.deps()) == Result(requeue_after=0.0)
    bound = {"conditions": [{"type": "APIBound", "status": "True", "reason": "Bound"}]}
    world.result = SyncResult(consumer_status=bound)
    reconcile_object(KEY, world.deps())
    assert api_bound(world)["reason"] == "Bound"
    assert world.resolved == ["Bound"], "the recovery is a Normal Event"


def test_a_refused_update_keeps_the_provider_status_next_to_the_failure() -> None:
    current = {**TWIN, "metadata": {**TWIN["metadata"], "resourceVersion": "4"}}
    status = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available"},
            {"type": "APIBound", "status": "False", "reason": "Syncing"},
        ]
    }
    world = World(SyncResult(provider_apply=TWIN, consumer_status=status), twin=current)
    world.write_error = TIMEOUT
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    conditions = {c["type"]: c for c in world.statuses[-1]["conditions"]}
    assert conditions["Ready"]["reason"] == "Available"
    assert conditions["APIBound"]["reason"] == "ProviderUnreachable"
    assert "Updating the object" in conditions["APIBound"]["message"]


def test_a_refused_delete_is_reported_on_the_object_being_deleted() -> None:
    deleting = {**CONSUMER, "metadata": {**CONSUMER["metadata"], "deletionTimestamp": NOW}}
    world = World(SyncResult(provider_delete=True), consumer=deleting, write_error=RBAC)
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    cond = api_bound(world)
    assert cond["reason"] == "ProviderForbidden"
    assert cond["message"].startswith("Deleting the object in the provider failed")


def test_a_stale_write_is_retried_without_a_word() -> None:
    stale = answer(
        409, "Conflict", f"Operation cannot be fulfilled on {OBJ}: the object has been modified"
    )
    world = World(SyncResult(provider_apply=TWIN, consumer_status=PENDING), twin=dict(TWIN))
    world.write_error = stale
    with pytest.raises(KubeError):
        reconcile_object(KEY, world.deps())
    assert world.statuses == [] and world.warnings == []


def test_a_failure_status_never_writes_when_nothing_changed() -> None:
    world = World(SyncResult(provider_apply=TWIN, consumer_status=PENDING), write_error=RBAC)
    reconcile_object(KEY, world.deps())
    written = len(world.statuses)
    for _ in range(3):
        reconcile_object(KEY, replace(world.deps()))
    assert len(world.statuses) == written


# --- the consumer refusing the connector's finalizer -------------------------------------

ADMISSION = answer(
    422,
    "Invalid",
    f'{OBJ} is invalid: : ValidatingAdmissionPolicy "no-finalizers" denied request: '
    "finalizers are not allowed here",
)
BOUND = {"conditions": [{"type": "APIBound", "status": "True", "reason": "Bound"}]}


@pytest.mark.parametrize("twin", [None, dict(TWIN)], ids=["create", "in sync"])
def test_a_refused_finalizer_is_reported_retried_and_its_recovery_told(
    twin: dict[str, Any] | None,
) -> None:
    # A create writes the twin and the finalizer together; a twin already in sync only
    # the finalizer. Either way the refusal is the user's to see.
    world = World(
        SyncResult(
            provider_apply=TWIN if twin is None else None,
            consumer_status=PENDING if twin is None else BOUND,
            add_finalizer=True,
        ),
        twin=twin,
        finalizer_error=ADMISSION,
    )
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    cond = api_bound(world)
    assert (cond["status"], cond["reason"]) == ("False", "FinalizerRefused")
    assert "connect.upbound.io/finalizer" in cond["message"]
    assert "finalizers are not allowed here" in cond["message"], "the server's message"
    assert world.warnings == [("FinalizerRefused", cond["message"])]

    world.finalizer_error = None
    world.twin = dict(TWIN)
    world.result = SyncResult(consumer_status=BOUND, add_finalizer=True)
    assert reconcile_object(KEY, world.deps()) == Result()
    assert api_bound(world)["reason"] == "Bound"
    assert world.resolved == ["Bound"], "the recovery is a Normal Event"


def test_a_refused_finalizer_never_hides_the_twins_own_failure() -> None:
    world = World(
        SyncResult(provider_apply=TWIN, consumer_status=PENDING, add_finalizer=True),
        write_error=RBAC,
        finalizer_error=ADMISSION,
    )
    assert reconcile_object(KEY, world.deps()) == Result(requeue=True)
    assert api_bound(world)["reason"] == "ProviderForbidden"


def test_a_stale_finalizer_write_is_retried_without_a_word() -> None:
    stale = answer(
        409, "Conflict", f"Operation cannot be fulfilled on {OBJ}: the object has been modified"
    )
    world = World(
        SyncResult(consumer_status=BOUND, add_finalizer=True),
        twin=dict(TWIN),
        finalizer_error=stale,
    )
    with pytest.raises(KubeError):
        reconcile_object(KEY, world.deps())
    assert world.statuses == [] and world.warnings == []
