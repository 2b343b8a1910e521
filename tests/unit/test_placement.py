"""The placement of twins: the namespace mapping, the isolated placement's provider access,
and the object syncer's twin, conflict and orphan verdicts under it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from functions.binder import AccessRequest, BoundResource, provider_access
from functions.binder.placement import (
    namespace_objects,
    objects_role_name,
    placement_policy,
    placement_policy_name,
)
from functions.common import InvalidInputError
from functions.common.placement import (
    PLACEMENT_DEFAULT,
    PLACEMENT_ISOLATED,
    check_placement,
    isolated_prefix,
    placement_of,
    provider_namespace,
)
from functions.object_syncer import ORPHAN_COLLECT, ORPHAN_NO_ORIGIN, orphan_verdict, sync
from functions.object_syncer.types import SyncRequest
from tests.support import NOP_BOUND

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LONG = "a-namespace-name-that-is-long-enough-to-need-cutting-" + "x" * 10

# -- the mapping ------------------------------------------------------------------------------


@dataclass
class MapCase:
    reason: str
    consumer: str
    namespace: str
    placement: str
    want: str


MAP_CASES = [
    MapCase("Default keeps the consumer's namespace name.", "dev", "team-a", "Default", "team-a"),
    MapCase(
        "Isolated: a hash of the consumer, its name, then the namespace.",
        "dev",
        "team-a",
        "Isolated",
        "ef260e9a-dev-team-a",
    ),
    MapCase(
        "A consumer name that is not a DNS label is made one, and cut to 16 characters.",
        "Team_A Cluster Number One",
        "default",
        "Isolated",
        "c40151df-team-a-cluster-n-default",
    ),
    MapCase(
        "A namespace too long for what is left is cut and told apart by a hash.",
        "dev",
        LONG,
        "Isolated",
        "ef260e9a-dev-a-namespace-name-that-is-long-enough-to-n-feaaa6eb",
    ),
]


@pytest.mark.parametrize("case", MAP_CASES, ids=[c.reason for c in MAP_CASES])
def test_provider_namespace(case: MapCase) -> None:
    got = provider_namespace(case.consumer, case.namespace, case.placement)
    assert got == case.want, case.reason
    assert len(got) <= 63 and DNS_LABEL.fullmatch(got), got


def test_isolated_namespaces_never_collide() -> None:
    consumers = ["dev", "prod", "Dev", "dev-", "a" * 40, "a" * 41]
    namespaces = ["default", "team-a", "team-b", LONG, LONG + "y", LONG[:-1] + "z"]
    names = {
        (c, n): provider_namespace(c, n, PLACEMENT_ISOLATED) for c in consumers for n in namespaces
    }
    assert len(set(names.values())) == len(names)
    for (consumer, _), name in names.items():
        assert len(name) <= 63 and DNS_LABEL.fullmatch(name), name
        # Every name starts with its consumer's prefix, and with no other consumer's.
        owners = [c for c in consumers if name.startswith(isolated_prefix(c))]
        assert owners == [consumer], (name, owners)


def test_the_mapping_is_stable_and_reversible_through_the_namespace_object() -> None:
    ns, grant = namespace_objects("dev", LONG)
    assert ns["metadata"]["name"] == provider_namespace("dev", LONG, PLACEMENT_ISOLATED)
    assert ns["metadata"]["annotations"]["connect.upbound.io/consumer-namespace"] == LONG
    assert ns["metadata"]["labels"]["connect.upbound.io/consumer-cluster"] == "dev"
    assert grant["metadata"]["namespace"] == ns["metadata"]["name"]
    assert grant["roleRef"]["name"] == objects_role_name("dev")
    assert grant["subjects"] == [
        {"kind": "ServiceAccount", "name": "consumer", "namespace": "connector-dev"}
    ]


def test_placement_values() -> None:
    assert check_placement(None) == check_placement("") == PLACEMENT_DEFAULT
    assert check_placement("Isolated") == PLACEMENT_ISOLATED
    with pytest.raises(InvalidInputError) as caught:
        check_placement("isolated", "input.placement")
    assert caught.value.field == "input.placement"
    assert placement_of(None) == PLACEMENT_DEFAULT
    assert placement_of({"spec": {"placement": "Isolated"}}) == PLACEMENT_ISOLATED
    assert placement_of({"spec": {}}) == PLACEMENT_DEFAULT


# -- the isolated placement's access ----------------------------------------------------------

CLUSTER_SCOPED = BoundResource(
    crd_name="clusternops.nop.example.org",
    group="nop.example.org",
    kind="ClusterNop",
    plural="clusternops",
    scope="Cluster",
    version="v1alpha1",
)


def _by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_isolated_access_grants_objects_and_secrets_only_through_rolebindings() -> None:
    access = provider_access(
        AccessRequest(
            consumer_name="dev", resources=[NOP_BOUND, CLUSTER_SCOPED], placement=PLACEMENT_ISOLATED
        )
    )
    kinds = [o["kind"] for o in access.objects]
    # The policy comes before the ClusterRoleBinding it confines.
    assert kinds.index("ValidatingAdmissionPolicyBinding") < kinds.index("ClusterRoleBinding")
    roles = _by_name(access.objects, "ClusterRole")
    bound = {o["roleRef"]["name"] for o in access.objects if o["kind"] == "ClusterRoleBinding"}
    objects_role = roles[objects_role_name("dev")]
    assert objects_role_name("dev") not in bound
    assert objects_role["rules"] == [
        {
            "apiGroups": ["nop.example.org"],
            "resources": ["nopresources"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {"apiGroups": ["nop.example.org"], "resources": ["nopresources/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    ]
    (cluster_role,) = (roles[name] for name in bound)
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["nop.example.org"],
            "resources": ["clusternops"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {"apiGroups": ["nop.example.org"], "resources": ["clusternops/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]},
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["rolebindings"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": [objects_role_name("dev")],
            "verbs": ["bind"],
        },
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    for role in roles.values():
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert not any("*" in v for v in rule[key]), f"wildcard in {rule}"
    assert _by_name(access.objects, "ValidatingAdmissionPolicy") == {
        placement_policy_name("dev"): placement_policy("dev")[0]
    }


def test_default_access_reads_secrets_only_when_asked() -> None:
    def secret_rules(connection_secrets: bool) -> list[dict[str, Any]]:
        access = provider_access(
            AccessRequest(
                consumer_name="dev", resources=[NOP_BOUND], connection_secrets=connection_secrets
            )
        )
        (role,) = _by_name(access.objects, "ClusterRole").values()
        return [r for r in role["rules"] if "secrets" in r["resources"]]

    assert secret_rules(False) == []
    assert secret_rules(True) == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}
    ]


def test_the_placement_policy_confines_namespaces_and_rolebindings_to_the_consumers_own() -> None:
    policy, binding = placement_policy("dev")
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConditions"][0]["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:connector-dev:consumer'"
    )
    expressions = " ".join(v["expression"] for v in spec["validations"])
    assert f"startsWith('{isolated_prefix('dev')}')" in expressions
    assert "namespaceObject.metadata.labels['connect.upbound.io/consumer-cluster'] == 'dev'" in (
        expressions
    )
    assert f"object.roleRef.name == '{objects_role_name('dev')}'" in expressions
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }


# -- the object syncer under the isolated placement --------------------------------------------


def consumer_obj() -> dict[str, Any]:
    return {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {"name": "db", "namespace": "team-a", "uid": "u1", "generation": 1},
        "spec": {"coolField": "x"},
    }


def test_an_isolated_twin_goes_to_the_consumers_own_namespace() -> None:
    result = sync(
        SyncRequest(
            consumer=consumer_obj(),
            provider=None,
            consumer_cluster="dev",
            now="2026-01-01T00:00:00Z",
            placement=PLACEMENT_ISOLATED,
        )
    )
    assert result.provider_apply is not None
    meta = result.provider_apply["metadata"]
    assert meta["namespace"] == "ef260e9a-dev-team-a"
    assert meta["annotations"]["connect.upbound.io/consumer-namespace"] == "team-a"
    assert meta["labels"]["connect.upbound.io/consumer-namespace"] == "team-a"

    # The twin as written is in sync; one in the consumer's namespace name is refused.
    twin = result.provider_apply
    again = sync(
        SyncRequest(
            consumer=consumer_obj(),
            provider=twin,
            consumer_cluster="dev",
            now="2026-01-01T00:00:00Z",
            placement=PLACEMENT_ISOLATED,
        )
    )
    assert again.provider_apply is None and again.conflict is None
    misplaced = {**twin, "metadata": {**twin["metadata"], "namespace": "team-a"}}
    with pytest.raises(InvalidInputError) as caught:
        sync(
            SyncRequest(
                consumer=consumer_obj(),
                provider=misplaced,
                consumer_cluster="dev",
                now="2026-01-01T00:00:00Z",
                placement=PLACEMENT_ISOLATED,
            )
        )
    assert caught.value.field == "provider.metadata.namespace"


def test_an_isolated_orphan_is_collected_only_where_its_origin_maps() -> None:
    twin = sync(
        SyncRequest(
            consumer=consumer_obj(),
            provider=None,
            consumer_cluster="dev",
            now="2026-01-01T00:00:00Z",
            placement=PLACEMENT_ISOLATED,
        )
    ).provider_apply
    assert twin is not None
    assert orphan_verdict(twin, consumer_cluster="dev", placement=PLACEMENT_ISOLATED) == (
        ORPHAN_COLLECT
    )
    # Read under the other placement, its namespace does not say where it comes from.
    assert orphan_verdict(twin, consumer_cluster="dev") == ORPHAN_NO_ORIGIN
    moved = {**twin, "metadata": {**twin["metadata"], "namespace": "ef260e9a-dev-team-b"}}
    assert orphan_verdict(moved, consumer_cluster="dev", placement=PLACEMENT_ISOLATED) == (
        ORPHAN_NO_ORIGIN
    )
