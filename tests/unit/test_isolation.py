"""The per-consumer ValidatingAdmissionPolicy: its shape, its identity, its inputs.

What it denies on a real kube-apiserver is tested in tests/security/test_provider_access.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from functions.binder import AccessRequest, BoundResource, provider_access
from functions.binder.isolation import isolation_policy, policy_name
from functions.common import LABEL_CONSUMER_CLUSTER, InvalidInputError, label_value
from tests.support import NOP_BOUND

WIDGET = BoundResource(
    crd_name="widgets.nop.example.org",
    group="nop.example.org",
    kind="Widget",
    plural="widgets",
    scope="Cluster",
    version="v1",
)
BUCKET = BoundResource(
    crd_name="buckets.s3.example.org",
    group="s3.example.org",
    kind="Bucket",
    plural="buckets",
    scope="Namespaced",
    version="v1",
)


def test_the_policy_matches_only_the_consumers_identity_as_provider_access_creates_it() -> None:
    policy, binding = isolation_policy("consumer-a", [NOP_BOUND])
    access = provider_access(AccessRequest(consumer_name="consumer-a", resources=[NOP_BOUND]))
    (condition,) = policy["spec"]["matchConditions"]
    username = f"system:serviceaccount:{access.namespace}:{access.service_account}"
    assert condition["expression"] == f"request.userInfo.username == '{username}'"
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    assert policy["spec"]["failurePolicy"] == "Fail"


def test_writes_to_exactly_the_bound_resources_are_checked_grouped_by_api_group() -> None:
    policy, _ = isolation_policy("consumer-a", [WIDGET, BUCKET, NOP_BOUND])
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["nop.example.org"],
            "apiVersions": ["*"],
            "resources": ["nopresources", "widgets"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
        },
        {
            "apiGroups": ["s3.example.org"],
            "apiVersions": ["*"],
            "resources": ["buckets"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
        },
    ]


def test_new_objects_and_stored_objects_must_both_carry_the_consumers_label() -> None:
    policy, _ = isolation_policy("consumer-a", [NOP_BOUND])
    new, old = (v["expression"] for v in policy["spec"]["validations"])
    owned = f"labels['{LABEL_CONSUMER_CLUSTER}'] == 'consumer-a'"
    assert new.startswith("request.operation == 'DELETE' || ") and f"object.metadata.{owned}" in new
    assert old.startswith("request.operation == 'CREATE' || ")
    assert f"oldObject.metadata.{owned}" in old


def test_a_long_consumer_name_is_compared_as_the_label_value_the_connector_writes() -> None:
    name = "a-very-long-consumer-cluster-name-" * 3
    policy, binding = isolation_policy(name, [NOP_BOUND])
    new = policy["spec"]["validations"][0]["expression"]
    assert f"== '{label_value(name)}'" in new and label_value(name) != name
    assert len(policy["metadata"]["name"]) <= 253
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == policy_name(name)


def test_each_consumer_gets_its_own_policy_and_a_rerun_gets_the_same_one() -> None:
    names = {policy_name(c) for c in ("team-a", "team-b", "Team_A", "team-a" + "x" * 80)}
    assert len(names) == 4
    assert all(len(n) <= 253 for n in names)
    assert isolation_policy("team-a", [NOP_BOUND, BUCKET]) == isolation_policy(
        "team-a", [BUCKET, NOP_BOUND]
    )


@dataclass(frozen=True)
class Bad:
    reason: str
    consumer: str
    resources: list[BoundResource]
    field: str


@pytest.mark.parametrize(
    "case",
    [
        Bad("no consumer", "", [NOP_BOUND], "consumer_name"),
        Bad("nothing bound", "consumer-a", [], "resources"),
        Bad(
            "a wildcard group",
            "consumer-a",
            [BoundResource(**{**NOP_BOUND.__dict__, "group": "*"})],
            "resources[0].group",
        ),
        Bad(
            "a quote that would end the CEL string",
            "consumer-a",
            [BoundResource(**{**NOP_BOUND.__dict__, "plural": "x' || true || '"})],
            "resources[0].plural",
        ),
    ],
    ids=lambda c: c.reason,
)
def test_inputs_that_would_widen_or_break_the_policy_are_refused(case: Bad) -> None:
    with pytest.raises(InvalidInputError) as info:
        isolation_policy(case.consumer, case.resources)
    assert case.field in str(info.value)
