"""``copy_json``: the deep copy the caches hand out, in place of ``copy.deepcopy``."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

from functions.common.objects import copy_json

OBJ = json.loads(
    """{"apiVersion": "nop.example.org/v1alpha1", "kind": "NopResource",
    "metadata": {"name": "a", "namespace": "n", "generation": 3, "labels": {"x": "y"},
    "finalizers": ["connect.upbound.io/finalizer"]},
    "spec": {"coolField": "v", "ratio": 0.5, "enabled": true, "nothing": null,
    "nested": [[1, 2], {"deep": [{"deeper": "yes"}]}]},
    "status": {"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 3}]}}"""
)


def test_the_copy_equals_the_original_and_what_deepcopy_gives() -> None:
    assert copy_json(OBJ) == OBJ == copy.deepcopy(OBJ)


def test_no_container_is_shared_with_the_original() -> None:
    out = copy_json(OBJ)
    out["metadata"]["labels"]["x"] = "changed"
    out["metadata"]["finalizers"].append("other")
    out["spec"]["nested"][1]["deep"][0]["deeper"] = "no"
    out["status"]["conditions"][0]["status"] = "False"
    assert OBJ["metadata"]["labels"] == {"x": "y"}
    assert OBJ["metadata"]["finalizers"] == ["connect.upbound.io/finalizer"]
    assert OBJ["spec"]["nested"][1]["deep"][0]["deeper"] == "yes"
    assert OBJ["status"]["conditions"][0]["status"] == "True"


def test_scalars_come_back_as_they_are_with_their_types() -> None:
    out = copy_json(OBJ)["spec"]
    assert (type(out["ratio"]), type(out["enabled"]), out["nothing"]) == (float, bool, None)
    assert copy_json(None) is None and copy_json(True) is True and copy_json(7) == 7


def test_anything_that_is_not_json_is_copied_by_deepcopy() -> None:
    stamp = datetime(2026, 12, 1, tzinfo=UTC)
    inner = {"at": stamp, "pair": (1, [2])}
    out = copy_json({"when": inner})
    assert out == {"when": inner}
    assert out["when"]["pair"][1] is not inner["pair"][1]  # a tuple's list is copied too
