"""Binder: what a binding syncs, its Ready condition, and a consumer's access on the provider."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from functions.binder import (
    AccessRequest,
    AccessResult,
    BindRequest,
    BindResult,
    BoundResource,
    bind,
    bound_resource,
    provider_access,
)
from functions.common import InvalidInputError, Obj
from functions.crd_puller import OfferedAPI

from . import assert_same

NOW = "2026-11-23T12:00:00Z"
EARLIER = "2026-11-22T08:00:00Z"
CONNECTION = "provider-connection"
GROUP = "nop.example.org"


def offered(
    plural: str,
    kind: str,
    *,
    group: str = GROUP,
    scope: str = "Namespaced",
    versions: list[str] | None = None,
    storage: str | None = "v1alpha1",
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{plural}.{group}",
        "group": group,
        "kind": kind,
        "plural": plural,
        "scope": scope,
        "versions": versions if versions is not None else ["v1alpha1"],
    }
    if storage is not None:
        entry["storageVersion"] = storage
    return entry


NOP = offered("nopresources", "NopResource")
ZAP = offered("zaps", "Zap", storage="v1beta1", versions=["v1alpha1", "v1beta1"])
GLOBAL = offered("globalnops", "GlobalNop", scope="Cluster")
OTHER_GROUP = offered("widgets", "Widget", group="example.org")


def connection(
    *apis: dict[str, Any],
    ready: dict[str, Any] | None = None,
    name: str = CONNECTION,
) -> Obj:
    return {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterConnection",
        "metadata": {"name": name},
        "spec": {"secretRef": {"kind": "KubeConfig", "name": "provider-kubeconfig"}},
        "status": {
            "conditions": [
                ready
                or {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "Provider controlplane is available",
                    "lastTransitionTime": EARLIER,
                }
            ],
            "offeredAPIs": list(apis),
        },
    }


XR_WITHHELD = {
    "name": "xnopresources.nop.example.org",
    "group": GROUP,
    "message": "xnopresources.nop.example.org is the composite resource of XRD "
    "xnopresources.nop.example.org, which offers its claim nopresources.nop.example.org instead "
    "(the default for an XRD with a claim); to offer both, label the XRD: kubectl label xrd "
    "xnopresources.nop.example.org connect.upbound.io/offer=both --overwrite",
}


def withholding(conn: Obj, *withheld: dict[str, Any]) -> Obj:
    """``conn`` listing ``withheld`` in status.withheldAPIs, as the CRD-puller writes them."""
    out = copy.deepcopy(conn)
    out["status"]["withheldAPIs"] = list(withheld)
    return out


def binding(
    name: str = GROUP,
    *,
    namespace: str | None = None,
    connection_ref: Any = None,
    conditions: list[dict[str, Any]] | None = None,
) -> Obj:
    meta: dict[str, Any] = {"name": name, "generation": 1}
    if namespace is not None:
        meta["namespace"] = namespace
    obj: Obj = {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "APIBinding" if namespace is not None else "ClusterAPIBinding",
        "metadata": meta,
        "spec": {
            "connectionRef": connection_ref
            if connection_ref is not None
            else {"kind": "ClusterConnection", "name": CONNECTION}
        },
    }
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return obj


def resource(api: dict[str, Any], version: str) -> BoundResource:
    return BoundResource(
        crd_name=api["name"],
        group=api["group"],
        kind=api["kind"],
        plural=api["plural"],
        scope=api["scope"],
        version=version,
    )


def ready(status: str, reason: str, message: str, *, at: str = NOW) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
        "observedGeneration": 1,
    }


def result(
    reason: str,
    message: str,
    *resources: BoundResource,
    namespace: str | None = None,
    connection_name: str = CONNECTION,
    at: str = NOW,
) -> BindResult:
    return BindResult(
        connection_name=connection_name,
        resources=list(resources),
        namespaces=[namespace] if namespace is not None else None,
        include_cluster_scoped=namespace is None,
        conditions=[ready("True" if reason == "Bound" else "False", reason, message, at=at)],
    )


@dataclass
class Case:
    reason: str
    req: BindRequest
    want: BindResult


def req(b: Obj, c: Obj | None) -> BindRequest:
    return BindRequest(binding=b, connection=c, now=NOW)


NOT_READY = {
    "type": "Ready",
    "status": "False",
    "reason": "Unauthorized",
    "message": "the token was rejected",
    "lastTransitionTime": EARLIER,
}

CASES = [
    Case(
        reason="A ClusterAPIBinding named after a group binds every offered API of the group.",
        req=req(binding(), connection(ZAP, OTHER_GROUP, NOP)),
        want=result(
            "Bound",
            "Bound nopresources.nop.example.org (v1alpha1), zaps.nop.example.org (v1beta1)",
            resource(NOP, "v1alpha1"),
            resource(ZAP, "v1beta1"),
        ),
    ),
    Case(
        reason="A ClusterAPIBinding named after a CRD binds only that CRD.",
        req=req(binding("zaps.nop.example.org"), connection(NOP, ZAP)),
        want=result("Bound", "Bound zaps.nop.example.org (v1beta1)", resource(ZAP, "v1beta1")),
    ),
    Case(
        reason="A ClusterAPIBinding binds cluster-scoped APIs too.",
        req=req(binding(), connection(GLOBAL, NOP)),
        want=result(
            "Bound",
            "Bound globalnops.nop.example.org (v1alpha1), nopresources.nop.example.org (v1alpha1)",
            resource(GLOBAL, "v1alpha1"),
            resource(NOP, "v1alpha1"),
        ),
    ),
    Case(
        reason="Without a storage version the last served version is bound.",
        req=req(binding(), connection(offered("olds", "Old", storage=None, versions=["v1", "v2"]))),
        want=result(
            "Bound",
            "Bound olds.nop.example.org (v2)",
            resource(offered("olds", "Old", storage=None), "v2"),
        ),
    ),
    Case(
        reason="An APIBinding syncs its own namespace only and leaves cluster-scoped APIs out, "
        "saying so.",
        req=req(binding(namespace="team-a"), connection(GLOBAL, NOP)),
        want=result(
            "Bound",
            "Bound nopresources.nop.example.org (v1alpha1); cluster-scoped APIs are left out "
            "of an APIBinding: globalnops.nop.example.org",
            resource(NOP, "v1alpha1"),
            namespace="team-a",
        ),
    ),
    Case(
        reason="An APIBinding of only cluster-scoped APIs binds nothing and says to use a "
        "ClusterAPIBinding.",
        req=req(binding("globalnops.nop.example.org", namespace="team-a"), connection(GLOBAL)),
        want=result(
            "NotOffered",
            "globalnops.nop.example.org offers only cluster-scoped APIs "
            "(globalnops.nop.example.org); an APIBinding binds namespaced APIs only, use a "
            "ClusterAPIBinding",
            namespace="team-a",
        ),
    ),
    Case(
        reason="A CRD name that is not offered lists what its group offers.",
        req=req(binding("missings.nop.example.org"), connection(NOP, OTHER_GROUP)),
        want=result(
            "NotOffered",
            "missings.nop.example.org is not offered by ClusterConnection provider-connection; "
            "offered in group nop.example.org: nopresources.nop.example.org",
        ),
    ),
    Case(
        reason="A group that is only a suffix of an offered group is not offered.",
        req=req(binding("example.com"), connection(NOP)),
        want=result(
            "NotOffered",
            "example.com is not offered by ClusterConnection provider-connection; name the "
            "binding after an offered API group or <plural>.<group>",
        ),
    ),
    Case(
        reason="A connection that offers nothing yet binds nothing.",
        req=req(
            binding(), {**connection(), "status": {"conditions": [ready("True", "Ready", "")]}}
        ),
        want=result(
            "NotOffered",
            "nop.example.org is not offered by ClusterConnection provider-connection; name the "
            "binding after an offered API group or <plural>.<group>",
        ),
    ),
    Case(
        reason="A CRD name the connection withholds (the composite resource of an XRD that "
        "offers its claim) is not offered, with why and how to offer it.",
        req=req(
            binding("xnopresources.nop.example.org"), withholding(connection(NOP), XR_WITHHELD)
        ),
        want=result(
            "NotOffered",
            "xnopresources.nop.example.org is not offered by ClusterConnection "
            "provider-connection: " + XR_WITHHELD["message"],
        ),
    ),
    Case(
        reason="A group binding names what the connection withholds in the group.",
        req=req(binding(), withholding(connection(NOP), XR_WITHHELD)),
        want=result(
            "Bound",
            "Bound nopresources.nop.example.org (v1alpha1); not offered in this group: "
            "xnopresources.nop.example.org (see ClusterConnection provider-connection "
            "status.withheldAPIs)",
            resource(NOP, "v1alpha1"),
        ),
    ),
    Case(
        reason="A group whose APIs are all withheld is not offered, with why.",
        req=req(binding(), withholding(connection(), XR_WITHHELD)),
        want=result(
            "NotOffered",
            "nop.example.org is not offered by ClusterConnection provider-connection: "
            + XR_WITHHELD["message"],
        ),
    ),
    Case(
        reason="A missing connection is reported as not found.",
        req=req(binding(), None),
        want=result("ConnectionNotFound", "ClusterConnection provider-connection not found"),
    ),
    Case(
        reason="A connection that is not Ready passes on its reason and message.",
        req=req(binding(), connection(NOP, ready=NOT_READY)),
        want=result(
            "ConnectionNotReady",
            "ClusterConnection provider-connection is not ready: Unauthorized: the token was "
            "rejected",
        ),
    ),
    Case(
        reason="A connection without a Ready condition is not ready yet.",
        req=req(binding(), {**connection(NOP), "status": {"offeredAPIs": [NOP]}}),
        want=result(
            "ConnectionNotReady",
            "ClusterConnection provider-connection has no Ready condition yet",
        ),
    ),
    Case(
        reason="A connectionRef to another kind is an invalid binding.",
        req=req(binding(connection_ref={"kind": "Connection", "name": CONNECTION}), None),
        want=result(
            "InvalidBinding",
            "spec.connectionRef.kind must be ClusterConnection, got Connection",
            connection_name="",
        ),
    ),
    Case(
        reason="A connectionRef without a name is an invalid binding.",
        req=req(binding(connection_ref={"kind": "ClusterConnection"}), None),
        want=result("InvalidBinding", "spec.connectionRef.name is required", connection_name=""),
    ),
    Case(
        reason="A binding without spec.connectionRef is an invalid binding.",
        req=req({**binding(), "spec": {}}, None),
        want=result("InvalidBinding", "spec.connectionRef is required", connection_name=""),
    ),
    Case(
        reason="A connectionRef without a kind means a ClusterConnection.",
        req=req(binding(connection_ref={"name": CONNECTION}), connection(NOP)),
        want=result(
            "Bound", "Bound nopresources.nop.example.org (v1alpha1)", resource(NOP, "v1alpha1")
        ),
    ),
    Case(
        reason="A binding that stays Bound keeps its lastTransitionTime.",
        req=req(
            binding(conditions=[ready("True", "Bound", "old message", at=EARLIER)]),
            connection(NOP),
        ),
        want=result(
            "Bound",
            "Bound nopresources.nop.example.org (v1alpha1)",
            resource(NOP, "v1alpha1"),
            at=EARLIER,
        ),
    ),
    Case(
        reason="A binding whose connection goes away moves its lastTransitionTime.",
        req=req(binding(conditions=[ready("True", "Bound", "old message", at=EARLIER)]), None),
        want=result("ConnectionNotFound", "ClusterConnection provider-connection not found"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_bind(case: Case) -> None:
    assert_same(case.want, bind(case.req), case.reason)


@pytest.mark.parametrize("case", CASES, ids=[c.reason for c in CASES])
def test_bind_is_stable_once_its_conditions_are_written(case: Case) -> None:
    first = bind(case.req)
    written = copy.deepcopy(case.req.binding)
    written["status"] = {"conditions": first.conditions}
    again = bind(BindRequest(binding=written, connection=case.req.connection, now="later"))
    assert_same(first, again, case.reason)


@dataclass
class BadBindCase:
    reason: str
    req: BindRequest
    want_field: str


BAD_BIND = [
    BadBindCase("A binding that is not an object.", req("nop", None), "binding"),  # type: ignore[arg-type]
    BadBindCase(
        "A binding without a name.",
        req({**binding(), "metadata": {}}, None),
        "binding.metadata.name",
    ),
    BadBindCase(
        "A binding of another kind.",
        req({**binding(), "kind": "ConfigMap"}, None),
        "binding.kind",
    ),
    BadBindCase(
        "A binding kind of another group.",
        req({**binding(), "apiVersion": "example.org/v1"}, None),
        "binding.kind",
    ),
    BadBindCase(
        "An APIBinding without a namespace.",
        req({**binding(), "kind": "APIBinding"}, None),
        "binding.metadata.namespace",
    ),
    BadBindCase(
        "A connection of another kind.",
        req(binding(), {**connection(NOP), "kind": "Secret"}),
        "connection.kind",
    ),
    BadBindCase(
        "A connection other than the one referenced.",
        req(binding(), connection(NOP, name="other")),
        "connection.metadata.name",
    ),
    BadBindCase(
        "An offered API without a plural.",
        req(binding(), connection(NOP, {k: v for k, v in ZAP.items() if k != "plural"})),
        "connection.status.offeredAPIs[1].plural",
    ),
    BadBindCase(
        "An offered API without any version.",
        req(binding(), connection(offered("olds", "Old", storage=None, versions=[]))),
        "connection.status.offeredAPIs[0].storageVersion",
    ),
    BadBindCase(
        "Withheld APIs that are not a list.",
        req(
            binding(),
            {**connection(NOP), "status": {**connection(NOP)["status"], "withheldAPIs": {}}},
        ),
        "connection.status.withheldAPIs",
    ),
    BadBindCase(
        "A withheld API without a name.",
        req(binding(), withholding(connection(NOP), {"group": GROUP, "message": "why"})),
        "connection.status.withheldAPIs[0].name",
    ),
]


@pytest.mark.parametrize("case", BAD_BIND, ids=[c.reason for c in BAD_BIND])
def test_bind_rejects_bad_input_naming_the_field(case: BadBindCase) -> None:
    with pytest.raises(InvalidInputError) as caught:
        bind(case.req)
    assert caught.value.field == case.want_field, case.reason


# --- provider_access ----------------------------------------------------------------------

OBJECT_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
NAMESPACE_RULE = {
    "apiGroups": [""],
    "resources": ["namespaces"],
    "verbs": ["get", "list", "watch", "create"],
}
CRD_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["get", "list", "watch"],
}


def access(consumer_id: str, label: str, rules: list[dict[str, Any]]) -> AccessResult:
    """The expected access objects for a consumer whose DNS-safe id is ``consumer_id``."""
    namespace = f"connector-{consumer_id}"
    role = f"api-connector:consumer:{consumer_id}"
    labels = {
        "connect.upbound.io/consumer-cluster": label,
        "app.kubernetes.io/managed-by": "api-connector",
    }
    return AccessResult(
        objects=[
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "consumer", "namespace": namespace, "labels": labels},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "consumer-token",
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": {"kubernetes.io/service-account.name": "consumer"},
                },
                "type": "kubernetes.io/service-account-token",
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role, "labels": labels},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": role, "labels": labels},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "consumer", "namespace": namespace}
                ],
            },
        ],
        namespace=namespace,
        service_account="consumer",
        token_secret="consumer-token",
    )


@dataclass
class AccessCase:
    reason: str
    req: AccessRequest
    want: AccessResult


ACCESS_CASES = [
    AccessCase(
        reason="A consumer gets its namespace, identity, token and a role for exactly its "
        "bound resources, one rule per group.",
        req=AccessRequest(
            consumer_name="dev",
            resources=[
                resource(ZAP, "v1beta1"),
                resource(OTHER_GROUP, "v1alpha1"),
                resource(NOP, "v1alpha1"),
            ],
        ),
        want=access(
            "dev",
            "dev",
            [
                {"apiGroups": ["example.org"], "resources": ["widgets"], "verbs": OBJECT_VERBS},
                {"apiGroups": ["example.org"], "resources": ["widgets/status"], "verbs": ["get"]},
                {
                    "apiGroups": ["nop.example.org"],
                    "resources": ["nopresources", "zaps"],
                    "verbs": OBJECT_VERBS,
                },
                {
                    "apiGroups": ["nop.example.org"],
                    "resources": ["nopresources/status", "zaps/status"],
                    "verbs": ["get"],
                },
                NAMESPACE_RULE,
                CRD_RULE,
            ],
        ),
    ),
    AccessCase(
        reason="A consumer with nothing bound still gets its identity, with CRD read and "
        "namespace rules only.",
        req=AccessRequest(consumer_name="dev", resources=[]),
        want=access("dev", "dev", [NAMESPACE_RULE, CRD_RULE]),
    ),
    AccessCase(
        reason="A resource bound twice is granted once.",
        req=AccessRequest(
            consumer_name="dev", resources=[resource(NOP, "v1alpha1"), resource(NOP, "v1")]
        ),
        want=access(
            "dev",
            "dev",
            [
                {"apiGroups": [GROUP], "resources": ["nopresources"], "verbs": OBJECT_VERBS},
                {"apiGroups": [GROUP], "resources": ["nopresources/status"], "verbs": ["get"]},
                NAMESPACE_RULE,
                CRD_RULE,
            ],
        ),
    ),
    AccessCase(
        reason="A consumer name that is not DNS-safe gets a hashed, DNS-safe id.",
        req=AccessRequest(consumer_name="Team_A Cluster", resources=[]),
        want=access(
            "team-a-cluster-7bc65ec1be",
            "Team_A-Cluster-7bc65ec1befcc399",
            [NAMESPACE_RULE, CRD_RULE],
        ),
    ),
]


@pytest.mark.parametrize("case", ACCESS_CASES, ids=[c.reason for c in ACCESS_CASES])
def test_provider_access(case: AccessCase) -> None:
    assert_same(case.want, provider_access(case.req), case.reason)


@pytest.mark.parametrize("case", ACCESS_CASES, ids=[c.reason for c in ACCESS_CASES])
def test_provider_access_grants_no_wildcard_and_no_other_verb(case: AccessCase) -> None:
    role = next(o for o in provider_access(case.req).objects if o["kind"] == "ClusterRole")
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert not any("*" in v for v in rule[key]), f"wildcard in {rule}"
        assert set(rule["verbs"]) <= set(OBJECT_VERBS), f"unexpected verb in {rule}"


def test_provider_access_names_of_two_consumers_do_not_collide() -> None:
    def names(consumer: str) -> set[tuple[str, str]]:
        objects = provider_access(AccessRequest(consumer_name=consumer, resources=[])).objects
        return {
            (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in objects
            if o["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding", "ServiceAccount")
        }

    assert not names("team-a") & names("Team_A")
    assert not names("team-a") & names("team-b")


@dataclass
class BadAccessCase:
    reason: str
    req: AccessRequest
    want_field: str


BAD_ACCESS = [
    BadAccessCase(
        "An empty consumer name.", AccessRequest(consumer_name="", resources=[]), "consumer_name"
    ),
    BadAccessCase(
        "A wildcard resource.",
        AccessRequest(
            consumer_name="dev",
            resources=[
                BoundResource(
                    crd_name="*", group=GROUP, kind="X", plural="*", scope="Cluster", version="v1"
                )
            ],
        ),
        "resources[0].plural",
    ),
    BadAccessCase(
        "A resource of the core group.",
        AccessRequest(
            consumer_name="dev",
            resources=[
                BoundResource(
                    crd_name="pods",
                    group="",
                    kind="Pod",
                    plural="pods",
                    scope="Namespaced",
                    version="v1",
                )
            ],
        ),
        "resources[0].group",
    ),
]


@pytest.mark.parametrize("case", BAD_ACCESS, ids=[c.reason for c in BAD_ACCESS])
def test_provider_access_rejects_bad_input_naming_the_field(case: BadAccessCase) -> None:
    with pytest.raises(InvalidInputError) as caught:
        provider_access(case.req)
    assert caught.value.field == case.want_field, case.reason


# -- offered API → bound resource, and back from a binding's status ---------------------------


@dataclass
class ConversionCase:
    reason: str
    offered: dict[str, Any]
    want: BoundResource


def nop_bound(version: str) -> BoundResource:
    return BoundResource(
        crd_name=f"nopresources.{GROUP}",
        group=GROUP,
        kind="NopResource",
        plural="nopresources",
        scope="Namespaced",
        version=version,
    )


CONVERSIONS = [
    ConversionCase(
        "the storage version is synced",
        ZAP,
        BoundResource(
            crd_name=f"zaps.{GROUP}",
            group=GROUP,
            kind="Zap",
            plural="zaps",
            scope="Namespaced",
            version="v1beta1",
        ),
    ),
    ConversionCase(
        "without a storage version, the last served one",
        offered("nopresources", "NopResource", versions=["v1", "v2"], storage=None),
        nop_bound("v2"),
    ),
    ConversionCase(
        "without any version, none",
        offered("nopresources", "NopResource", versions=[], storage=None),
        nop_bound(""),
    ),
]


@pytest.mark.parametrize("case", CONVERSIONS, ids=[c.reason for c in CONVERSIONS])
def test_bound_resource_of_an_offered_api(case: ConversionCase) -> None:
    assert_same(case.want, bound_resource(OfferedAPI.from_status(case.offered)), case.reason)


@pytest.mark.parametrize("case", CONVERSIONS, ids=[c.reason for c in CONVERSIONS])
def test_a_bound_resource_round_trips_through_status(case: ConversionCase) -> None:
    assert_same(case.want, BoundResource.from_status(case.want.to_status()), case.reason)


@dataclass
class FromStatusCase:
    reason: str
    entry: dict[str, Any]
    want: BoundResource


@pytest.mark.parametrize(
    "case",
    [
        FromStatusCase(
            "an older connector's entry: group, plural and scope from the name",
            {"name": f"nopresources.{GROUP}"},
            BoundResource(
                crd_name=f"nopresources.{GROUP}",
                group=GROUP,
                kind="",
                plural="nopresources",
                scope="Namespaced",
                version="",
            ),
        ),
        FromStatusCase(
            "what the entry says wins over the name",
            {"name": "xs.a.org", "group": "b.org", "plural": "ys", "scope": "Cluster"},
            BoundResource(
                crd_name="xs.a.org",
                group="b.org",
                kind="",
                plural="ys",
                scope="Cluster",
                version="",
            ),
        ),
    ],
    ids=lambda c: c.reason,
)
def test_bound_resource_from_status(case: FromStatusCase) -> None:
    assert_same(case.want, BoundResource.from_status(case.entry), case.reason)


@pytest.mark.parametrize("entry", [{}, {"name": ""}, {"name": 3}])
def test_a_status_entry_without_a_name_is_no_bound_resource(entry: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="needs a name"):
        BoundResource.from_status(entry)
