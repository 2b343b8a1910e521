"""The object-syncer's gRPC service: a translator around ``logic.sync``, nothing more."""

from __future__ import annotations

from functions.adapters import StageService, UnaryMethod
from functions.object_syncer import logic
from functions.proto import codec
from functions.proto.gen.apiconnector.stages.v1alpha1 import stages_pb2 as pb


def sync(request: pb.SyncRequest) -> pb.SyncResponse:
    return codec.sync_result_to_proto(logic.sync(codec.sync_request_from_proto(request)))


SERVICE = StageService(
    full_name=pb.DESCRIPTOR.services_by_name["ObjectSyncer"].full_name,
    methods=(UnaryMethod("Sync", pb.SyncRequest, sync),),
)
