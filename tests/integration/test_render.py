"""Each stage as a Crossplane function, rendered by the real ``crossplane render``.

The examples under examples/functions/<stage>/ are rendered against the stage served on
127.0.0.1 (Development runtime); the output is what Crossplane would compose and write to
the XR's status.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.server import ServerOptions, serve_in_background
from functions.adapters import StageFunction, StageService
from functions.binder.fn import BinderFunction
from functions.binder.grpc_service import SERVICE as BINDER
from functions.crd_puller.fn import CRDPullerFunction
from functions.crd_puller.grpc_service import SERVICE as CRD_PULLER
from functions.object_syncer.fn import ObjectSyncerFunction
from functions.object_syncer.grpc_service import SERVICE as OBJECT_SYNCER

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "functions"
TARGET_ANNOTATION = "render.crossplane.io/runtime-development-target"

Manifest = dict[str, Any]


def _serve(service: StageService, function: StageFunction) -> Iterator[str]:
    with serve_in_background(
        ServerOptions(address="127.0.0.1:0"), services=[service], function_runner=function
    ) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def crd_puller() -> Iterator[str]:
    yield from _serve(CRD_PULLER, CRDPullerFunction())


@pytest.fixture(scope="module")
def binder() -> Iterator[str]:
    yield from _serve(BINDER, BinderFunction())


@pytest.fixture(scope="module")
def object_syncer() -> Iterator[str]:
    yield from _serve(OBJECT_SYNCER, ObjectSyncerFunction())


def render(crossplane: Path, stage: str, target: str, *flags: str) -> list[Manifest]:
    """``crossplane render`` of the stage's example; the XR first, then composed resources."""
    example = EXAMPLES / stage
    proc = subprocess.run(
        [
            str(crossplane),
            "render",
            "xr.yaml",
            "composition.yaml",
            "functions.yaml",
            "--xrd=xrd.yaml",
            # The example names the stage's default port; the test serves on a free one.
            f"--function-annotations={TARGET_ANNOTATION}={target}",
            "--include-function-results",
            *flags,
        ],
        cwd=example,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def composed(docs: list[Manifest]) -> dict[str, Manifest]:
    """Composed resources by their composition resource name."""
    return {
        d["metadata"]["annotations"]["crossplane.io/composition-resource-name"]: d
        for d in docs[1:]
        if d.get("kind") != "Result"
    }


def condition(xr: Manifest, type_: str) -> Manifest:
    return next(c for c in xr["status"]["conditions"] if c["type"] == type_)


# --- object-syncer -----------------------------------------------------------------------


def test_object_syncer_composes_the_twin_labelled_with_its_origin(
    crossplane: Path, object_syncer: str
) -> None:
    docs = render(crossplane, "object-syncer", object_syncer)
    xr, resources = docs[0], composed(docs)
    assert list(resources) == ["twin"]
    twin = resources["twin"]
    assert (twin["kind"], twin["metadata"]["namespace"], twin["metadata"]["name"]) == (
        "NopResource",
        "default",
        "my-resource",
    )
    labels = twin["metadata"]["labels"]
    assert labels["connect.upbound.io/managed"] == "true"
    assert labels["connect.upbound.io/consumer-cluster"] == "consumer-a"
    assert labels["connect.upbound.io/consumer-namespace"] == "default"
    assert labels["connect.upbound.io/consumer-name"] == "my-resource"
    assert labels["connect.upbound.io/consumer-uid"] == "6c1f0a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
    assert twin["spec"] == {
        "coolField": "Synchronized resource",
        "compositeDeletePolicy": "Foreground",
    }
    assert "status" not in twin
    # No twin observed yet: the consumer is told it is being created.
    assert condition(xr, "APIBound")["reason"] == "Pending"
    assert xr["status"]["sync"]["addFinalizer"] is True


def test_object_syncer_writes_the_twins_status_back_once_it_is_in_sync(
    crossplane: Path, object_syncer: str
) -> None:
    docs = render(
        crossplane,
        "object-syncer",
        object_syncer,
        "--required-resources=required-resources.yaml",
    )
    xr = docs[0]
    assert condition(xr, "APIBound")["status"] == "True"
    consumer_conditions = {c["type"]: c for c in xr["status"]["consumerStatus"]["conditions"]}
    assert consumer_conditions["Ready"]["status"] == "True"  # the provider's status, synced back
    # Computed for the twin's generation 3, reported for the consumer's generation 1.
    assert consumer_conditions["Ready"]["observedGeneration"] == 1
    assert consumer_conditions["APIBound"]["reason"] == "Bound"
    # Still composed, or Crossplane would delete the twin.
    assert "twin" in composed(docs)


# --- CRD-puller --------------------------------------------------------------------------


def test_crd_puller_composes_the_bindable_crd_for_the_consumer_without_status(
    crossplane: Path, crd_puller: str
) -> None:
    docs = render(
        crossplane, "crd-puller", crd_puller, "--required-resources=required-resources.yaml"
    )
    xr, resources = docs[0], composed(docs)
    # Only the CRD labelled bindable; the other provider CRD stays private.
    assert list(resources) == ["crd-nopresources.nop.example.org"]
    obj = resources["crd-nopresources.nop.example.org"]
    assert obj["kind"] == "Object"
    assert obj["spec"]["providerConfigRef"] == {"name": "consumer"}
    crd = obj["spec"]["forProvider"]["manifest"]
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "nopresources.nop.example.org"
    assert "status" not in crd
    assert crd["metadata"]["labels"]["connect.upbound.io/connection"] == "provider-connection"
    assert "connect.upbound.io/bindable" not in crd["metadata"]["labels"]
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert [api["name"] for api in xr["status"]["offeredAPIs"]] == ["nopresources.nop.example.org"]
    assert condition(xr, "CRDsSynced")["status"] == "True"


def test_crd_puller_without_bindable_crds_offers_nothing(crossplane: Path, crd_puller: str) -> None:
    docs = render(crossplane, "crd-puller", crd_puller)
    xr = docs[0]
    assert composed(docs) == {}
    assert xr["status"]["offeredAPIs"] == []


# --- binder ------------------------------------------------------------------------------


def test_binder_composes_least_privilege_access_without_wildcards(
    crossplane: Path, binder: str, tmp_path: Path
) -> None:
    # Before Crossplane created the consumer's namespace, only what lives outside it.
    first = composed(render(crossplane, "binder", binder))
    assert sorted(r["kind"] for r in first.values()) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
    ]
    observed = tmp_path / "observed.yaml"
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "connector-consumer-a",
            "annotations": {
                "crossplane.io/composition-resource-name": "namespace-connector-consumer-a"
            },
        },
    }
    observed.write_text(yaml.safe_dump(namespace))
    docs = render(crossplane, "binder", binder, f"--observed-resources={observed}")
    xr, resources = docs[0], composed(docs)
    kinds = sorted(r["kind"] for r in resources.values())
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "Secret",
        "ServiceAccount",
    ]
    role = next(r for r in resources.values() if r["kind"] == "ClusterRole")
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    object_rules = [r for r in role["rules"] if r["apiGroups"] == ["nop.example.org"]]
    assert {res for r in object_rules for res in r["resources"]} == {
        "nopresources",
        "nopresources/status",
    }
    binding = next(r for r in resources.values() if r["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "consumer", "namespace": "connector-consumer-a"}
    ]
    assert condition(xr, "Bound")["status"] == "True"
    # Access objects have no Ready condition to wait for; the XR is ready.
    assert condition(xr, "Ready")["status"] == "True"
    assert xr["status"]["access"]["namespace"] == "connector-consumer-a"


def test_bad_input_fails_the_render_with_the_field_named(
    crossplane: Path, binder: str, tmp_path: Path
) -> None:
    xr = yaml.safe_load((EXAMPLES / "binder" / "xr.yaml").read_text())
    xr["spec"]["binding"]["kind"] = "Binding"
    (tmp_path / "xr.yaml").write_text(yaml.safe_dump(xr))
    proc = subprocess.run(
        [
            str(crossplane),
            "render",
            str(tmp_path / "xr.yaml"),
            str(EXAMPLES / "binder" / "composition.yaml"),
            str(EXAMPLES / "binder" / "functions.yaml"),
            f"--function-annotations={TARGET_ANNOTATION}={binder}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "fatal result" in proc.stderr
    assert "composite.spec.binding.kind" in proc.stderr
