"""Dataclass ⇄ protobuf translation for the three stages, both directions.

The servicers decode requests and encode results; the orchestrator's gRPC client does the
reverse, so a stage returns the same dataclass in-process and over the wire. Kubernetes
objects travel as JSON bytes (see the decision atop ``stages.proto``); bytes that are not a
JSON object raise ``InvalidInputError`` naming the field, like any other bad input.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from functions.binder.types import (
    AccessRequest,
    AccessResult,
    BindRequest,
    BindResult,
    BoundResource,
)
from functions.common import Condition, InvalidInputError, Obj
from functions.common.placement import PLACEMENT_DEFAULT
from functions.crd_puller.types import (
    CRDConflict,
    OfferedAPI,
    ProviderError,
    PullRequest,
    PullResult,
    WithheldAPI,
)
from functions.object_syncer.types import Adoption, SyncRequest, SyncResult
from functions.proto.gen.apiconnector.stages.v1alpha1 import stages_pb2 as pb

#: The largest stage message either side accepts: a provider's full CRD list (CRDs with big
#: schemas reach 1 MiB each).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

__all__ = [
    "access_request_from_proto",
    "access_request_to_proto",
    "access_result_from_proto",
    "access_result_to_proto",
    "bind_request_from_proto",
    "bind_request_to_proto",
    "bind_result_from_proto",
    "bind_result_to_proto",
    "decode_object",
    "encode_object",
    "pull_request_from_proto",
    "pull_request_to_proto",
    "pull_result_from_proto",
    "pull_result_to_proto",
    "sync_request_from_proto",
    "sync_request_to_proto",
    "sync_result_from_proto",
    "sync_result_to_proto",
]

# --- objects and conditions ------------------------------------------------------------


def encode_object(obj: Obj) -> bytes:
    """One Kubernetes object as compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def decode_object(data: bytes, field: str) -> Obj:
    """The JSON object in ``data``; InvalidInputError naming ``field`` if it is not one."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInputError(field, f"is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InvalidInputError(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def _decode_objects(items: Iterable[bytes], field: str) -> list[Obj]:
    return [decode_object(data, f"{field}[{i}]") for i, data in enumerate(items)]


# A condition's JSON keys and their proto fields; keys outside this set are not carried.
_CONDITION_STRINGS = {
    "type": "type",
    "status": "status",
    "reason": "reason",
    "message": "message",
    "lastTransitionTime": "last_transition_time",
}


def _condition_to_proto(condition: Condition) -> pb.Condition:
    out = pb.Condition()
    for key, attr in _CONDITION_STRINGS.items():
        if key in condition and condition[key] is not None:
            setattr(out, attr, str(condition[key]))
    if condition.get("observedGeneration") is not None:
        out.observed_generation = int(condition["observedGeneration"])
    return out


def _condition_from_proto(message: pb.Condition) -> Condition:
    out: Condition = {}
    for key, attr in _CONDITION_STRINGS.items():
        if message.HasField(attr):
            out[key] = getattr(message, attr)
    if message.HasField("observed_generation"):
        out["observedGeneration"] = message.observed_generation
    return out


def _conditions_to_proto(conditions: Iterable[Condition]) -> list[pb.Condition]:
    return [_condition_to_proto(c) for c in conditions]


def _conditions_from_proto(messages: Iterable[pb.Condition]) -> list[Condition]:
    return [_condition_from_proto(m) for m in messages]


# --- CRD-puller --------------------------------------------------------------------------


def pull_request_to_proto(req: PullRequest) -> pb.PullRequest:
    out = pb.PullRequest(
        connection_name=req.connection_name,
        provider_crds=[encode_object(o) for o in req.provider_crds],
        consumer_crds=[encode_object(o) for o in req.consumer_crds],
        pull_behavior=req.pull_behavior,
        previous_conditions=_conditions_to_proto(req.previous_conditions),
        now=req.now,
    )
    if req.provider_error is not None:
        out.provider_error.CopyFrom(
            pb.ProviderError(reason=req.provider_error.reason, message=req.provider_error.message)
        )
    return out


def pull_request_from_proto(message: pb.PullRequest) -> PullRequest:
    optional: dict[str, Any] = {}
    if message.HasField("pull_behavior"):
        optional["pull_behavior"] = message.pull_behavior
    if message.HasField("provider_error"):
        optional["provider_error"] = ProviderError(
            reason=message.provider_error.reason, message=message.provider_error.message
        )
    return PullRequest(
        connection_name=message.connection_name,
        provider_crds=_decode_objects(message.provider_crds, "provider_crds"),
        consumer_crds=_decode_objects(message.consumer_crds, "consumer_crds"),
        previous_conditions=_conditions_from_proto(message.previous_conditions),
        now=message.now,
        **optional,
    )


def _offered_to_proto(api: OfferedAPI) -> pb.OfferedAPI:
    return pb.OfferedAPI(
        name=api.name,
        group=api.group,
        kind=api.kind,
        plural=api.plural,
        scope=api.scope,
        versions=list(api.versions),
        storage_version=api.storage_version,
    )


def _offered_from_proto(message: pb.OfferedAPI) -> OfferedAPI:
    return OfferedAPI(
        name=message.name,
        group=message.group,
        kind=message.kind,
        plural=message.plural,
        scope=message.scope,
        versions=list(message.versions),
        storage_version=message.storage_version,
    )


def pull_result_to_proto(result: PullResult) -> pb.PullResponse:
    return pb.PullResponse(
        apply=[encode_object(o) for o in result.apply],
        offered=[_offered_to_proto(api) for api in result.offered],
        conflicts=[pb.CRDConflict(name=c.name, message=c.message) for c in result.conflicts],
        conditions=_conditions_to_proto(result.conditions),
        withheld=[
            pb.WithheldAPI(name=w.name, group=w.group, message=w.message) for w in result.withheld
        ],
    )


def pull_result_from_proto(message: pb.PullResponse) -> PullResult:
    return PullResult(
        apply=_decode_objects(message.apply, "apply"),
        offered=[_offered_from_proto(m) for m in message.offered],
        conflicts=[CRDConflict(name=c.name, message=c.message) for c in message.conflicts],
        conditions=_conditions_from_proto(message.conditions),
        withheld=[
            WithheldAPI(name=w.name, group=w.group, message=w.message) for w in message.withheld
        ],
    )


# --- binder ------------------------------------------------------------------------------


def _bound_to_proto(resource: BoundResource) -> pb.BoundResource:
    return pb.BoundResource(
        crd_name=resource.crd_name,
        group=resource.group,
        kind=resource.kind,
        plural=resource.plural,
        scope=resource.scope,
        version=resource.version,
    )


def _bound_from_proto(message: pb.BoundResource) -> BoundResource:
    return BoundResource(
        crd_name=message.crd_name,
        group=message.group,
        kind=message.kind,
        plural=message.plural,
        scope=message.scope,
        version=message.version,
    )


def bind_request_to_proto(req: BindRequest) -> pb.BindRequest:
    out = pb.BindRequest(binding=encode_object(req.binding), now=req.now)
    if req.connection is not None:
        out.connection = encode_object(req.connection)
    return out


def bind_request_from_proto(message: pb.BindRequest) -> BindRequest:
    connection = (
        decode_object(message.connection, "connection") if message.HasField("connection") else None
    )
    return BindRequest(
        binding=decode_object(message.binding, "binding"),
        connection=connection,
        now=message.now,
    )


def bind_result_to_proto(result: BindResult) -> pb.BindResponse:
    out = pb.BindResponse(
        connection_name=result.connection_name,
        resources=[_bound_to_proto(r) for r in result.resources],
        include_cluster_scoped=result.include_cluster_scoped,
        conditions=_conditions_to_proto(result.conditions),
    )
    if result.namespaces is not None:
        out.namespaces.CopyFrom(pb.Namespaces(names=list(result.namespaces)))
    return out


def bind_result_from_proto(message: pb.BindResponse) -> BindResult:
    return BindResult(
        connection_name=message.connection_name,
        resources=[_bound_from_proto(r) for r in message.resources],
        namespaces=list(message.namespaces.names) if message.HasField("namespaces") else None,
        include_cluster_scoped=message.include_cluster_scoped,
        conditions=_conditions_from_proto(message.conditions),
    )


def access_request_to_proto(req: AccessRequest) -> pb.AccessRequest:
    return pb.AccessRequest(
        consumer_name=req.consumer_name,
        resources=[_bound_to_proto(r) for r in req.resources],
        placement=req.placement,
        connection_secrets=req.connection_secrets,
    )


def access_request_from_proto(message: pb.AccessRequest) -> AccessRequest:
    return AccessRequest(
        consumer_name=message.consumer_name,
        resources=[_bound_from_proto(r) for r in message.resources],
        placement=message.placement or PLACEMENT_DEFAULT,
        connection_secrets=message.connection_secrets,
    )


def access_result_to_proto(result: AccessResult) -> pb.AccessResponse:
    return pb.AccessResponse(
        objects=[encode_object(o) for o in result.objects],
        namespace=result.namespace,
        service_account=result.service_account,
        token_secret=result.token_secret,
    )


def access_result_from_proto(message: pb.AccessResponse) -> AccessResult:
    return AccessResult(
        objects=_decode_objects(message.objects, "objects"),
        namespace=message.namespace,
        service_account=message.service_account,
        token_secret=message.token_secret,
    )


# --- object-syncer -----------------------------------------------------------------------


def sync_request_to_proto(req: SyncRequest) -> pb.SyncRequest:
    out = pb.SyncRequest(
        consumer=encode_object(req.consumer),
        consumer_cluster=req.consumer_cluster,
        now=req.now,
        placement=req.placement,
    )
    if req.provider is not None:
        out.provider = encode_object(req.provider)
    if req.adoption is not None:
        out.adoption.CopyFrom(pb.Adoption(match_labels=req.adoption.match_labels))
    return out


def sync_request_from_proto(message: pb.SyncRequest) -> SyncRequest:
    provider = decode_object(message.provider, "provider") if message.HasField("provider") else None
    adoption = (
        Adoption(match_labels=dict(message.adoption.match_labels))
        if message.HasField("adoption")
        else None
    )
    return SyncRequest(
        consumer=decode_object(message.consumer, "consumer"),
        provider=provider,
        consumer_cluster=message.consumer_cluster,
        now=message.now,
        adoption=adoption,
        placement=message.placement or PLACEMENT_DEFAULT,
    )


def sync_result_to_proto(result: SyncResult) -> pb.SyncResponse:
    out = pb.SyncResponse(
        provider_delete=result.provider_delete,
        add_finalizer=result.add_finalizer,
        remove_finalizer=result.remove_finalizer,
        adopted=result.adopted,
    )
    if result.provider_apply is not None:
        out.provider_apply = encode_object(result.provider_apply)
    if result.consumer_status is not None:
        out.consumer_status = encode_object(result.consumer_status)
    if result.conflict is not None:
        out.conflict = result.conflict
    return out


def sync_result_from_proto(message: pb.SyncResponse) -> SyncResult:
    return SyncResult(
        provider_apply=(
            decode_object(message.provider_apply, "provider_apply")
            if message.HasField("provider_apply")
            else None
        ),
        provider_delete=message.provider_delete,
        consumer_status=(
            decode_object(message.consumer_status, "consumer_status")
            if message.HasField("consumer_status")
            else None
        ),
        add_finalizer=message.add_finalizer,
        remove_finalizer=message.remove_finalizer,
        conflict=message.conflict if message.HasField("conflict") else None,
        adopted=message.adopted,
    )
