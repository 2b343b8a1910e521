"""Binder logic: which offered APIs a binding syncs, and what a consumer may do on the provider.

``bind`` resolves a ClusterAPIBinding or APIBinding against the offered APIs of its
ClusterConnection. The binding's name is either an API group (every offered API of the
group) or a CRD name ``<plural>.<group>`` (that one API).

``bound_resource`` turns an offered API into the resource a binding syncs.

``provider_access`` is the provider-side half: the namespace, identity and least-privilege
role one consumer cluster uses on the provider, limited to the APIs bound to it. In the
isolated placement the bound namespaced APIs (and Secrets) are granted only in the
consumer's own provider namespaces (``functions.binder.placement``).
"""

from __future__ import annotations

from typing import Any

from functions.binder.placement import (
    SERVICE_ACCOUNT,
    consumer_id,
    consumer_labels,
    home_namespace,
    namespaced,
    objects_role_name,
    placement_policy,
)
from functions.binder.types import (
    AccessRequest,
    AccessResult,
    BindRequest,
    BindResult,
    BoundResource,
)
from functions.common import (
    CONDITION_READY,
    CONNECT_GROUP,
    MANAGED_BY,
    Condition,
    InvalidInputError,
    Obj,
    api_group,
    find_condition,
    metadata,
    object_conditions,
    require_object,
    require_str,
    set_condition,
)
from functions.common.placement import PLACEMENT_DEFAULT, check_placement
from functions.crd_puller.types import OfferedAPI, WithheldAPI

CLUSTER_BINDING_KIND = "ClusterAPIBinding"
NAMESPACED_BINDING_KIND = "APIBinding"
CONNECTION_KIND = "ClusterConnection"

#: ``Ready`` reasons of a binding.
REASON_BOUND = "Bound"
REASON_NOT_OFFERED = "NotOffered"
REASON_CONNECTION_NOT_FOUND = "ConnectionNotFound"
REASON_CONNECTION_NOT_READY = "ConnectionNotReady"
REASON_INVALID_BINDING = "InvalidBinding"

#: What a consumer may do with the objects of a bound API on the provider.
OBJECT_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
#: The connector creates a missing namespace in the provider before its first object there.
NAMESPACE_VERBS = ("get", "list", "watch", "create")
#: Connection Secrets (Crossplane's ``writeConnectionSecretToRef``) are read, never written.
SECRET_VERBS = ("get", "list", "watch")
#: The CRD-puller reads provider CRDs. CRDs are cluster-wide and RBAC cannot narrow a list by
#: label, so reading all of them is the least that works.
CRD_VERBS = ("get", "list", "watch")
TOKEN_SECRET = "consumer-token"


def bind(req: BindRequest) -> BindResult:  # noqa: PLR0911, PLR0912 - a decision table; each verdict returns
    """Resolve a binding against its connection's offered APIs."""
    binding = require_object(req.binding, "binding")
    kind = binding["kind"]
    if api_group(binding["apiVersion"]) != CONNECT_GROUP or kind not in (
        CLUSTER_BINDING_KIND,
        NAMESPACED_BINDING_KIND,
    ):
        raise InvalidInputError(
            "binding.kind",
            f"must be {CLUSTER_BINDING_KIND} or {NAMESPACED_BINDING_KIND} of {CONNECT_GROUP}, "
            f"got {kind} of {binding['apiVersion']}",
        )
    namespaced = kind == NAMESPACED_BINDING_KIND
    if namespaced:
        require_object(binding, "binding", namespaced=True)
    meta = metadata(binding)
    name = str(meta["name"])
    namespace = str(meta["namespace"]) if namespaced else None
    previous = object_conditions(binding) or None
    generation = meta.get("generation")

    def result(
        reason: str, message: str, *, connection_name: str = "", resources: list[BoundResource]
    ) -> BindResult:
        conditions = set_condition(
            previous,
            type_=CONDITION_READY,
            status="True" if reason == REASON_BOUND else "False",
            reason=reason,
            message=message,
            now=req.now,
            observed_generation=generation if isinstance(generation, int) else None,
        )
        return BindResult(
            connection_name=connection_name,
            resources=resources,
            namespaces=[namespace] if namespace is not None else None,
            include_cluster_scoped=not namespaced,
            conditions=conditions,
        )

    spec = binding.get("spec")
    ref = spec.get("connectionRef") if isinstance(spec, dict) else None
    if not isinstance(ref, dict):
        return result(REASON_INVALID_BINDING, "spec.connectionRef is required", resources=[])
    ref_kind = ref.get("kind", CONNECTION_KIND)
    if ref_kind != CONNECTION_KIND:
        return result(
            REASON_INVALID_BINDING,
            f"spec.connectionRef.kind must be {CONNECTION_KIND}, got {ref_kind}",
            resources=[],
        )
    connection_name = ref.get("name")
    if not isinstance(connection_name, str) or not connection_name:
        return result(REASON_INVALID_BINDING, "spec.connectionRef.name is required", resources=[])

    if req.connection is None:
        return result(
            REASON_CONNECTION_NOT_FOUND,
            f"{CONNECTION_KIND} {connection_name} not found",
            connection_name=connection_name,
            resources=[],
        )
    offered = _offered_apis(req.connection, connection_name)
    connection_ready = _ready_condition(req.connection)
    if connection_ready is None or connection_ready.get("status") != "True":
        if connection_ready is None:
            why = "has no Ready condition yet"
        else:
            why = f"is not ready: {connection_ready.get('reason')}: "
            why += str(connection_ready.get("message"))
        return result(
            REASON_CONNECTION_NOT_READY,
            f"{CONNECTION_KIND} {connection_name} {why}",
            connection_name=connection_name,
            resources=[],
        )

    matched = [api for api in offered if name in (api.name, api.group)]
    # APIs the connection withholds (e.g. the composite resource of an XRD that offers its
    # claim) are named with the CRD-puller's reason, so the user learns how to offer them.
    withheld = [w for w in _withheld_apis(req.connection) if name in (w.name, w.group)]
    if not matched:
        message = _not_offered_message(name, connection_name, offered)
        if withheld:
            message = f"{name} is not offered by {CONNECTION_KIND} {connection_name}: " + "; ".join(
                w.message for w in withheld
            )
        return result(
            REASON_NOT_OFFERED,
            message,
            connection_name=connection_name,
            resources=[],
        )
    left_out = [api for api in matched if namespaced and api.scope == "Cluster"]
    bound = [bound_resource(api) for api in matched if api not in left_out]
    if not bound:
        return result(
            REASON_NOT_OFFERED,
            f"{name} offers only cluster-scoped APIs ({_names(left_out)}); an "
            f"{NAMESPACED_BINDING_KIND} binds namespaced APIs only, use a "
            f"{CLUSTER_BINDING_KIND}",
            connection_name=connection_name,
            resources=[],
        )
    message = "Bound " + ", ".join(f"{r.crd_name} ({r.version})" for r in bound)
    if left_out:
        message += (
            f"; cluster-scoped APIs are left out of an {NAMESPACED_BINDING_KIND}: "
            f"{_names(left_out)}"
        )
    if withheld:
        message += (
            f"; not offered in this group: {', '.join(w.name for w in withheld)} (see "
            f"{CONNECTION_KIND} {connection_name} status.withheldAPIs)"
        )
    return result(REASON_BOUND, message, connection_name=connection_name, resources=bound)


def _offered_apis(connection: Obj, connection_name: str) -> list[OfferedAPI]:
    require_object(connection, "connection")
    if connection["kind"] != CONNECTION_KIND:
        raise InvalidInputError("connection.kind", f"must be {CONNECTION_KIND}")
    if metadata(connection)["name"] != connection_name:
        raise InvalidInputError(
            "connection.metadata.name", f"must be {connection_name}, the binding's connectionRef"
        )
    status = connection.get("status")
    entries = status.get("offeredAPIs") if isinstance(status, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidInputError("connection.status.offeredAPIs", "must be a list")
    offered = []
    for i, entry in enumerate(entries):
        field = f"connection.status.offeredAPIs[{i}]"
        if not isinstance(entry, dict):
            raise InvalidInputError(field, "must be an object")
        for key in ("name", "group", "kind", "plural"):
            require_str(entry.get(key), f"{field}.{key}")
        api = OfferedAPI.from_status(entry)
        if not api.storage_version and not api.versions:
            raise InvalidInputError(f"{field}.storageVersion", "is required without versions")
        offered.append(api)
    return sorted(offered, key=lambda api: api.name)


def _withheld_apis(connection: Obj) -> list[WithheldAPI]:
    status = connection.get("status")
    entries = status.get("withheldAPIs") if isinstance(status, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InvalidInputError("connection.status.withheldAPIs", "must be a list")
    withheld = []
    for i, entry in enumerate(entries):
        field = f"connection.status.withheldAPIs[{i}]"
        if not isinstance(entry, dict):
            raise InvalidInputError(field, "must be an object")
        require_str(entry.get("name"), f"{field}.name")
        withheld.append(WithheldAPI.from_status(entry))
    return sorted(withheld, key=lambda w: w.name)


def _ready_condition(connection: Obj) -> Condition | None:
    return find_condition(object_conditions(connection), CONDITION_READY)


def bound_resource(api: OfferedAPI) -> BoundResource:
    """The resource a binding syncs for the offered API ``api``: the one conversion of an
    offered API into a bound resource (bindings and ``api-connector install`` use it).

    The version is the storage version, which round-trips every field; the last served
    version is the best guess when an older connector did not report one; empty when the
    offer names no version at all.
    """
    return BoundResource(
        crd_name=api.name,
        group=api.group,
        kind=api.kind,
        plural=api.plural,
        scope=api.scope,
        version=api.storage_version or (api.versions[-1] if api.versions else ""),
    )


def _names(apis: list[OfferedAPI]) -> str:
    return ", ".join(api.name for api in apis)


def _not_offered_message(name: str, connection_name: str, offered: list[OfferedAPI]) -> str:
    message = f"{name} is not offered by {CONNECTION_KIND} {connection_name}"
    # The name is a group, or a CRD name whose group follows the first dot.
    groups = {name, name.partition(".")[2]}
    same_group = [api for api in offered if api.group in groups]
    if same_group:
        return f"{message}; offered in group {same_group[0].group}: {_names(same_group)}"
    return f"{message}; name the binding after an offered API group or <plural>.<group>"


def provider_access(req: AccessRequest) -> AccessResult:
    """The provider objects that give consumer ``req.consumer_name`` access to its APIs."""
    consumer = require_str(req.consumer_name, "consumer_name")
    placement = check_placement(req.placement)
    namespace = home_namespace(consumer)
    role_name = f"{MANAGED_BY}:consumer:{consumer_id(consumer)}"
    labels = consumer_labels(consumer)

    def meta(name: str, *, namespaced: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "labels": dict(labels)}
        if namespaced:
            out["namespace"] = namespace
        return out

    token_meta = meta(TOKEN_SECRET, namespaced=True)
    token_meta["annotations"] = {"kubernetes.io/service-account.name": SERVICE_ACCOUNT}
    objects: list[Obj] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(namespace)},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(SERVICE_ACCOUNT, namespaced=True),
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": token_meta,
            "type": "kubernetes.io/service-account-token",
        },
    ]
    if placement == PLACEMENT_DEFAULT:
        rules = _rules(req.resources, secrets=req.connection_secrets)
    else:
        # The admission policy comes before any grant it confines.
        objects += placement_policy(consumer)
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": meta(objects_role_name(consumer)),
                "rules": _object_rules(namespaced(req.resources), secrets=True),
            }
        )
        rules = _isolated_rules(consumer, req.resources)
    objects += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(role_name),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(role_name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role_name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    ]
    return AccessResult(
        objects=objects,
        namespace=namespace,
        service_account=SERVICE_ACCOUNT,
        token_secret=TOKEN_SECRET,
    )


def _rules(resources: list[BoundResource], *, secrets: bool) -> list[dict[str, Any]]:
    """The default placement's cluster-wide rules: exactly ``resources``, namespaces, CRDs
    read, and, if ``secrets``, Secrets read (in every namespace)."""
    rules = _object_rules(resources, secrets=secrets)
    rules.append({"apiGroups": [""], "resources": ["namespaces"], "verbs": list(NAMESPACE_VERBS)})
    rules.append(_crd_rule())
    return rules


def _isolated_rules(consumer: str, resources: list[BoundResource]) -> list[dict[str, Any]]:
    """The isolated placement's cluster-wide rules: CRDs read, cluster-scoped bound APIs
    (which have no namespace to confine them to), and what creating its own namespaces and
    granting itself its objects role there takes (``functions.binder.placement``)."""
    cluster_scoped = [r for r in resources if r.scope != "Namespaced"]
    rules = _object_rules(cluster_scoped, secrets=False) if cluster_scoped else []
    rules += [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]},
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["rolebindings"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": [objects_role_name(consumer)],
            "verbs": ["bind"],
        },
        _crd_rule(),
    ]
    return rules


def _crd_rule() -> dict[str, Any]:
    return {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": list(CRD_VERBS),
    }


def _object_rules(resources: list[BoundResource], *, secrets: bool) -> list[dict[str, Any]]:
    """RBAC rules for exactly ``resources`` (one rule per group, sorted; never a wildcard),
    and Secrets read if ``secrets``."""
    plurals_by_group: dict[str, set[str]] = {}
    for i, resource in enumerate(resources):
        group = require_str(resource.group, f"resources[{i}].group")
        plural = require_str(resource.plural, f"resources[{i}].plural")
        for field, value in (("group", group), ("plural", plural)):
            if "*" in value or "/" in value:
                raise InvalidInputError(f"resources[{i}].{field}", f"must be a name: {value}")
        plurals_by_group.setdefault(group, set()).add(plural)
    rules: list[dict[str, Any]] = []
    for group, plurals in sorted(plurals_by_group.items()):
        rules.append(
            {"apiGroups": [group], "resources": sorted(plurals), "verbs": list(OBJECT_VERBS)}
        )
        rules.append(
            {
                "apiGroups": [group],
                "resources": sorted(f"{plural}/status" for plural in plurals),
                "verbs": ["get"],
            }
        )
    if secrets:
        rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": list(SECRET_VERBS)})
    return rules
