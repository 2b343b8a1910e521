"""Vocabulary shared by the three stages: API names, labels, conditions and errors."""

from functions.common.api import (
    ANNOTATION_DELETION_POLICY,
    ANNOTATION_ORIGIN_NAME,
    ANNOTATION_ORIGIN_NAMESPACE,
    BINDABLE_LABEL,
    CONNECT_GROUP,
    CONNECT_VERSION,
    FINALIZER,
    LABEL_CONNECTION,
    LABEL_CONSUMER_CLUSTER,
    LABEL_CONSUMER_NAME,
    LABEL_CONSUMER_NAMESPACE,
    LABEL_CONSUMER_UID,
    MANAGED_LABEL,
)
from functions.common.conditions import find_condition, set_condition
from functions.common.errors import InvalidInputError, StageError
from functions.common.objects import JSON, Obj, require_object

__all__ = [
    "ANNOTATION_DELETION_POLICY",
    "ANNOTATION_ORIGIN_NAME",
    "ANNOTATION_ORIGIN_NAMESPACE",
    "BINDABLE_LABEL",
    "CONNECT_GROUP",
    "CONNECT_VERSION",
    "FINALIZER",
    "JSON",
    "LABEL_CONNECTION",
    "LABEL_CONSUMER_CLUSTER",
    "LABEL_CONSUMER_NAME",
    "LABEL_CONSUMER_NAMESPACE",
    "LABEL_CONSUMER_UID",
    "MANAGED_LABEL",
    "InvalidInputError",
    "Obj",
    "StageError",
    "find_condition",
    "require_object",
    "set_condition",
]
