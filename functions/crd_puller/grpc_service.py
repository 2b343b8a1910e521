"""The CRD-puller's gRPC service: a translator around ``logic.pull``, nothing more."""

from __future__ import annotations

from functions.adapters import StageService, UnaryMethod
from functions.crd_puller import logic
from functions.proto import codec
from functions.proto.gen.apiconnector.stages.v1alpha1 import stages_pb2 as pb


def pull(request: pb.PullRequest) -> pb.PullResponse:
    return codec.pull_result_to_proto(logic.pull(codec.pull_request_from_proto(request)))


SERVICE = StageService(
    full_name=pb.DESCRIPTOR.services_by_name["CRDPuller"].full_name,
    methods=(UnaryMethod("Pull", pb.PullRequest, pull),),
)
