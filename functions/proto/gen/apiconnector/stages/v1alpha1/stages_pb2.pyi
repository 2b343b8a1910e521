from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Condition(_message.Message):
    __slots__ = ("type", "status", "reason", "message", "last_transition_time", "observed_generation")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_transition_time: _Optional[str] = ..., observed_generation: _Optional[int] = ...) -> None: ...

class ProviderError(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("connection_name", "provider_crds", "consumer_crds", "pull_behavior", "provider_error", "previous_conditions", "now")
    CONNECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CRDS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_CRDS_FIELD_NUMBER: _ClassVar[int]
    PULL_BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ERROR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    connection_name: str
    provider_crds: _containers.RepeatedScalarFieldContainer[bytes]
    consumer_crds: _containers.RepeatedScalarFieldContainer[bytes]
    pull_behavior: str
    provider_error: ProviderError
    previous_conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    now: str
    def __init__(self, connection_name: _Optional[str] = ..., provider_crds: _Optional[_Iterable[bytes]] = ..., consumer_crds: _Optional[_Iterable[bytes]] = ..., pull_behavior: _Optional[str] = ..., provider_error: _Optional[_Union[ProviderError, _Mapping]] = ..., previous_conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., now: _Optional[str] = ...) -> None: ...

class OfferedAPI(_message.Message):
    __slots__ = ("name", "group", "kind", "plural", "scope", "versions", "storage_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PLURAL_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: str
    kind: str
    plural: str
    scope: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    storage_version: str
    def __init__(self, name: _Optional[str] = ..., group: _Optional[str] = ..., kind: _Optional[str] = ..., plural: _Optional[str] = ..., scope: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., storage_version: _Optional[str] = ...) -> None: ...

class CRDConflict(_message.Message):
    __slots__ = ("name", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    message: str
    def __init__(self, name: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class WithheldAPI(_message.Message):
    __slots__ = ("name", "group", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: str
    message: str
    def __init__(self, name: _Optional[str] = ..., group: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("apply", "offered", "conflicts", "conditions", "withheld")
    APPLY_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    apply: _containers.RepeatedScalarFieldContainer[bytes]
    offered: _containers.RepeatedCompositeFieldContainer[OfferedAPI]
    conflicts: _containers.RepeatedCompositeFieldContainer[CRDConflict]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    withheld: _containers.RepeatedCompositeFieldContainer[WithheldAPI]
    def __init__(self, apply: _Optional[_Iterable[bytes]] = ..., offered: _Optional[_Iterable[_Union[OfferedAPI, _Mapping]]] = ..., conflicts: _Optional[_Iterable[_Union[CRDConflict, _Mapping]]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., withheld: _Optional[_Iterable[_Union[WithheldAPI, _Mapping]]] = ...) -> None: ...

class BoundResource(_message.Message):
    __slots__ = ("crd_name", "group", "kind", "plural", "scope", "version")
    CRD_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PLURAL_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    crd_name: str
    group: str
    kind: str
    plural: str
    scope: str
    version: str
    def __init__(self, crd_name: _Optional[str] = ..., group: _Optional[str] = ..., kind: _Optional[str] = ..., plural: _Optional[str] = ..., scope: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class BindRequest(_message.Message):
    __slots__ = ("binding", "connection", "now")
    BINDING_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    binding: bytes
    connection: bytes
    now: str
    def __init__(self, binding: _Optional[bytes] = ..., connection: _Optional[bytes] = ..., now: _Optional[str] = ...) -> None: ...

class Namespaces(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class BindResponse(_message.Message):
    __slots__ = ("connection_name", "resources", "namespaces", "include_cluster_scoped", "conditions")
    CONNECTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CLUSTER_SCOPED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    connection_name: str
    resources: _containers.RepeatedCompositeFieldContainer[BoundResource]
    namespaces: Namespaces
    include_cluster_scoped: bool
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, connection_name: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[BoundResource, _Mapping]]] = ..., namespaces: _Optional[_Union[Namespaces, _Mapping]] = ..., include_cluster_scoped: _Optional[bool] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("consumer_name", "resources", "placement", "connection_secrets")
    CONSUMER_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_SECRETS_FIELD_NUMBER: _ClassVar[int]
    consumer_name: str
    resources: _containers.RepeatedCompositeFieldContainer[BoundResource]
    placement: str
    connection_secrets: bool
    def __init__(self, consumer_name: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[BoundResource, _Mapping]]] = ..., placement: _Optional[str] = ..., connection_secrets: _Optional[bool] = ...) -> None: ...

class AccessResponse(_message.Message):
    __slots__ = ("objects", "namespace", "service_account", "token_secret")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SECRET_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedScalarFieldContainer[bytes]
    namespace: str
    service_account: str
    token_secret: str
    def __init__(self, objects: _Optional[_Iterable[bytes]] = ..., namespace: _Optional[str] = ..., service_account: _Optional[str] = ..., token_secret: _Optional[str] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("consumer", "provider", "consumer_cluster", "now", "adoption", "placement")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    ADOPTION_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    consumer: bytes
    provider: bytes
    consumer_cluster: str
    now: str
    adoption: Adoption
    placement: str
    def __init__(self, consumer: _Optional[bytes] = ..., provider: _Optional[bytes] = ..., consumer_cluster: _Optional[str] = ..., now: _Optional[str] = ..., adoption: _Optional[_Union[Adoption, _Mapping]] = ..., placement: _Optional[str] = ...) -> None: ...

class Adoption(_message.Message):
    __slots__ = ("match_labels",)
    class MatchLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MATCH_LABELS_FIELD_NUMBER: _ClassVar[int]
    match_labels: _containers.ScalarMap[str, str]
    def __init__(self, match_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SyncResponse(_message.Message):
    __slots__ = ("provider_apply", "provider_delete", "consumer_status", "add_finalizer", "remove_finalizer", "conflict", "adopted")
    PROVIDER_APPLY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_DELETE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_STATUS_FIELD_NUMBER: _ClassVar[int]
    ADD_FINALIZER_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FINALIZER_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    ADOPTED_FIELD_NUMBER: _ClassVar[int]
    provider_apply: bytes
    provider_delete: bool
    consumer_status: bytes
    add_finalizer: bool
    remove_finalizer: bool
    conflict: str
    adopted: bool
    def __init__(self, provider_apply: _Optional[bytes] = ..., provider_delete: _Optional[bool] = ..., consumer_status: _Optional[bytes] = ..., add_finalizer: _Optional[bool] = ..., remove_finalizer: _Optional[bool] = ..., conflict: _Optional[str] = ..., adopted: _Optional[bool] = ...) -> None: ...
