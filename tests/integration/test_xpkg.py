"""Each stage packaged as a Crossplane Function package by the real ``crossplane xpkg build``.

An .xpkg is an OCI image tarball; Crossplane reads the package from the layer labelled
``io.crossplane.xpkg: base`` in the image config. The test opens it the same way.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = {
    "crd-puller": "crdpuller.fn.connect.upbound.io",
    "binder": "binder.fn.connect.upbound.io",
    "object-syncer": "objectsyncer.fn.connect.upbound.io",
}
XPKG_LABEL = "io.crossplane.xpkg:"


def layers_by_purpose(xpkg: Path) -> dict[str, dict[str, bytes]]:
    """The files of each labelled layer, e.g. ``{"base": {"package.yaml": b"..."}}``."""
    with tarfile.open(xpkg) as image:

        def read(name: str) -> bytes:
            member = image.extractfile(name)
            assert member is not None, name
            return member.read()

        [manifest] = json.loads(read("manifest.json"))
        config = json.loads(read(manifest["Config"]))
        purposes = {
            key.removeprefix(XPKG_LABEL).split(":", 1)[1]: value
            for key, value in config["config"]["Labels"].items()
            if key.startswith(XPKG_LABEL)
        }
        out: dict[str, dict[str, bytes]] = {}
        for layer in manifest["Layers"]:
            digest = layer.removesuffix(".tar.gz")
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(read(layer)))) as files:
                out[purposes[digest]] = {
                    m.name: files.extractfile(m).read()  # type: ignore[union-attr]
                    for m in files.getmembers()
                    if m.isfile()
                }
        return out


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_builds_a_function_package_with_its_input_crd(
    crossplane: Path, stage: str, tmp_path: Path
) -> None:
    xpkg = tmp_path / f"function-connector-{stage}.xpkg"
    proc = subprocess.run(
        [
            str(crossplane),
            "xpkg",
            "build",
            f"--package-root={ROOT / 'package' / stage}",
            f"--examples-root={ROOT / 'examples' / 'functions' / stage}",
            f"--package-file={xpkg}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert xpkg.is_file()

    layers = layers_by_purpose(xpkg)
    package = yaml.safe_load_all(layers["base"]["package.yaml"])
    docs: list[dict[str, Any]] = [d for d in package if d]
    meta = next(d for d in docs if d["kind"] == "Function")
    assert meta["apiVersion"] == "meta.pkg.crossplane.io/v1beta1"
    assert meta["metadata"]["name"] == f"function-connector-{stage}"
    assert meta["metadata"]["annotations"]["meta.crossplane.io/license"] == "Apache-2.0"
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert [c["spec"]["group"] for c in crds] == [STAGES[stage]]
    assert crds[0]["spec"]["names"]["kind"] == "Input"
    # The examples (XRD, Composition, XR) travel with the package.
    examples = b"".join(
        content
        for files in layers.values()
        for name, content in files.items()
        if "examples" in name
    )
    assert b"kind: Composition" in examples
