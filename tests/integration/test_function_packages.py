"""The stages' Function packages as Crossplane installs them: built by ``crossplane xpkg
build`` from ``package/<stage>``, pushed to the local registry and pulled by Crossplane; a
broken package is refused with a clear error, by ``xpkg build`` or by Crossplane.

Crossplane (v2.2) installs no object of a Function package: the xpkg specification lets a
Function package carry CRDs, its step-input CRDs here, but says they are not installed. They
describe the step input to people and tools; a test applies each to the API server itself to
show it accepts the example Composition's input and refuses a bad one.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import FUNCTION_REVISIONS, FUNCTIONS, STAGE_FUNCTIONS, Crossplane, eventually
from connector.kube import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    InvalidError,
    KubeClient,
    NotFoundError,
    Resource,
)

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            found: dict[str, Any] = c
            return found
    return {}


def input_crd(package_root: Path) -> dict[str, Any]:
    [path] = sorted((package_root / "input").glob("*.yaml"))
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def build(crossplane: Path, package_root: Path, xpkg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(crossplane),
            "xpkg",
            "build",
            f"--package-root={package_root}",
            f"--package-file={xpkg}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def kube(crossplane_provider: Crossplane) -> Iterator[KubeClient]:
    with crossplane_provider.cluster.kube_client() as client:
        yield client


@pytest.mark.parametrize("stage", STAGE_FUNCTIONS, ids=[f.name for f in STAGE_FUNCTIONS])
def test_crossplane_installs_the_package_but_not_its_input_crd(
    kube: KubeClient, crossplane_provider: Crossplane, stage: Any
) -> None:
    def active() -> dict[str, Any]:
        # Eventually: another test may have just switched the Function's package and back.
        items, _ = kube.list(
            FUNCTION_REVISIONS, label_selector=f"pkg.crossplane.io/package={stage.name}"
        )
        [found] = [r for r in items if r["spec"]["desiredState"] == "Active"]
        assert found["status"]["resolvedImage"] == crossplane_provider.packages[stage.name]
        assert condition(found, "RevisionHealthy").get("status") == "True"
        return dict(found)

    revision = eventually(active, what=f"the active revision of {stage.name}", timeout=60)
    assert not revision["status"].get("objectRefs")
    with pytest.raises(NotFoundError):
        kube.get(CUSTOM_RESOURCE_DEFINITIONS, input_crd(stage.package_root)["metadata"]["name"])


@pytest.mark.parametrize("stage", STAGE_FUNCTIONS, ids=[f.name for f in STAGE_FUNCTIONS])
def test_each_input_crd_accepts_its_examples_input_and_refuses_a_bad_one(
    kube: KubeClient, stage: Any, xp_namespace: str
) -> None:
    shipped = input_crd(stage.package_root)
    composition = yaml.safe_load((stage.examples_root / "composition.yaml").read_text())
    example = dict(composition["spec"]["pipeline"][0]["input"])
    group, version = example["apiVersion"].split("/")
    inputs = Resource(group, version, shipped["spec"]["names"]["plural"], "Input", True)
    kube.apply(CUSTOM_RESOURCE_DEFINITIONS, shipped, "xp-test")
    try:
        eventually(
            lambda: condition(
                kube.get(CUSTOM_RESOURCE_DEFINITIONS, shipped["metadata"]["name"]), "Established"
            ).get("status")
            == "True",
            what="the input CRD to be served",
        )
        example["metadata"] = {"name": "example", "namespace": xp_namespace}
        created = eventually(
            lambda: kube.create(inputs, example), what="the example input to be accepted"
        )
        assert created["kind"] == "Input"
        [required] = shipped["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["required"]
        bad = {k: v for k, v in example.items() if k != required}
        bad["metadata"] = {"name": "bad", "namespace": xp_namespace}
        with pytest.raises(InvalidError) as refused:
            kube.create(inputs, bad)
        assert required in str(refused.value)
    finally:
        with contextlib.suppress(NotFoundError):
            kube.delete(CUSTOM_RESOURCE_DEFINITIONS, shipped["metadata"]["name"])


@pytest.fixture
def xp_namespace(kube: KubeClient) -> Iterator[str]:
    name = f"inputs-{uuid.uuid4().hex[:8]}"
    kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFoundError):
        kube.delete(NAMESPACES, name)


def test_xpkg_build_refuses_a_package_whose_metadata_is_wrong(
    crossplane: Path, tmp_path: Path
) -> None:
    root = tmp_path / "binder"
    shutil.copytree(ROOT / "package" / "binder", root)
    meta = root / "crossplane.yaml"
    meta.write_text(meta.read_text().replace("kind: Function", "kind: Functoin"))
    done = build(crossplane, root, tmp_path / "broken.xpkg")
    assert done.returncode != 0
    assert 'no kind "Functoin" is registered' in done.stderr, done.stderr
    assert not (tmp_path / "broken.xpkg").exists()


def test_xpkg_build_refuses_an_input_that_is_not_a_crd(crossplane: Path, tmp_path: Path) -> None:
    root = tmp_path / "binder"
    shutil.copytree(ROOT / "package" / "binder", root)
    [path] = (root / "input").glob("*.yaml")
    path.write_text(path.read_text().replace("kind: CustomResourceDefinition", "kind: ConfigMap"))
    done = build(crossplane, root, tmp_path / "broken.xpkg")
    assert done.returncode != 0
    assert 'no kind "ConfigMap" is registered' in done.stderr, done.stderr


def test_crossplane_refuses_a_package_whose_metadata_asks_for_another_crossplane(
    crossplane: Path, crossplane_provider: Crossplane, kube: KubeClient, tmp_path: Path
) -> None:
    # Metadata xpkg build cannot judge: the Crossplane versions the package supports. The
    # revision must say why it is refused, and the Function never turn Healthy.
    name = f"function-broken-{uuid.uuid4().hex[:6]}"
    root = tmp_path / "broken"
    shutil.copytree(ROOT / "package" / "binder", root)
    meta = root / "crossplane.yaml"
    text = meta.read_text().replace("name: function-connector-binder", f"name: {name}")
    meta.write_text(text.replace('version: ">=v2.0.0"', 'version: ">=v9.0.0"'))
    xpkg = tmp_path / "broken.xpkg"
    done = build(crossplane, root, xpkg)
    assert done.returncode == 0, done.stderr
    reference = f"{crossplane_provider.registry}/{name}:v0.0.1"
    subprocess.run(
        [str(crossplane), "xpkg", "push", "-f", str(xpkg), reference],
        check=True,
        capture_output=True,
        timeout=120,
    )
    kube.apply(
        FUNCTIONS,
        {
            "apiVersion": FUNCTIONS.api_version,
            "kind": FUNCTIONS.kind,
            "metadata": {"name": name},
            "spec": {"package": reference},
        },
        "xp-test",
    )
    try:

        def refused() -> dict[str, Any] | None:
            items, _ = kube.list(
                FUNCTION_REVISIONS, label_selector=f"pkg.crossplane.io/package={name}"
            )
            healthy = condition(items[0], "RevisionHealthy") if items else {}
            return healthy if healthy.get("status") == "False" else None

        healthy = eventually(refused, what="the revision to be refused", timeout=60)
        assert "incompatible Crossplane version" in healthy["message"], healthy
        assert "not compatible with Crossplane version (v2." in healthy["message"], healthy
        assert condition(kube.get(FUNCTIONS, name), "Healthy").get("status") != "True"
    finally:
        with contextlib.suppress(NotFoundError):
            kube.delete(FUNCTIONS, name)
