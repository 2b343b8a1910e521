"""The binder's gRPC service: translators around ``logic.bind`` and ``logic.provider_access``."""

from __future__ import annotations

from functions.adapters import StageService, UnaryMethod
from functions.binder import logic
from functions.proto import codec
from functions.proto.gen.apiconnector.stages.v1alpha1 import stages_pb2 as pb


def bind(request: pb.BindRequest) -> pb.BindResponse:
    return codec.bind_result_to_proto(logic.bind(codec.bind_request_from_proto(request)))


def provider_access(request: pb.AccessRequest) -> pb.AccessResponse:
    result = logic.provider_access(codec.access_request_from_proto(request))
    return codec.access_result_to_proto(result)


SERVICE = StageService(
    full_name=pb.DESCRIPTOR.services_by_name["Binder"].full_name,
    methods=(
        UnaryMethod("Bind", pb.BindRequest, bind),
        UnaryMethod("ProviderAccess", pb.AccessRequest, provider_access),
    ),
)
