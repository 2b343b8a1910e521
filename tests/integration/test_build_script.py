"""tools/build.sh: one progress line per tool, only the tools asked for, and a failed build
that names itself without stopping the independent ones.

The builds here use a stand-in ``go`` on PATH (a script that writes a file, or fails for
Kubernetes packages) and an empty cache, so they take seconds; the real builds are what
every other test that runs a tool uses.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "build.sh"

FAKE_GO = """#!/usr/bin/env bash
# 'go list -m ...' (Crossplane's CRDs): a folder with one CRD file.
if [[ $1 == list ]]; then echo "$FAKE_MODULE"; exit 0; fi
out=""; prev=""; for a in "$@"; do [[ $prev == -o ]] && out=$a; prev=$a; done
pkg=${!#}
echo "$pkg" >> "$FAKE_ORDER"
if [[ $pkg == k8s.io/kubernetes/cmd/kube-apiserver ]]; then echo "boom: $pkg"; exit 1; fi
printf '#!/bin/sh\\n' > "$out"; chmod +x "$out"
"""


def run(*tools: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), *tools], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def fake_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    module = tmp_path / "module"
    (module / "cluster" / "crds").mkdir(parents=True)
    (module / "cluster" / "crds" / "crd.yaml").write_text("kind: CustomResourceDefinition\n")
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    env.update(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        API_CONNECTOR_CACHE=str(tmp_path / "cache"),
        FAKE_MODULE=str(module),
        FAKE_ORDER=str(tmp_path / "order"),
    )
    return env


def test_a_failed_build_names_itself_and_the_independent_tools_are_still_built(
    tmp_path: Path,
) -> None:
    env = fake_env(tmp_path)

    done = run("etcd", "kube-apiserver", "kubectl", "crossplane-core", "registry", env=env)

    assert done.returncode == 1
    assert "step 'build kube-apiserver v1.34.4' failed after" in done.stderr
    assert "boom: k8s.io/kubernetes/cmd/kube-apiserver" in done.stderr
    for tool, version in (
        ("etcd", "v3.6.16"),
        ("crossplane-core", "v2.2.1"),
        ("registry", "v0.20.7"),
    ):
        assert f"built {tool} {version} in " in done.stderr
    # kubectl shares kube-apiserver's packages: it waits for it, and is not tried after it
    # failed.
    built = (tmp_path / "order").read_text().split()
    assert "k8s.io/kubernetes/cmd/kubectl" not in built
    crds = list((tmp_path / "cache" / "bin").glob("crossplane-core-*/crds/crd.yaml"))
    assert len(crds) == 1
    assert done.stdout == ""


def test_only_the_tools_asked_for_are_built_and_cached_ones_say_so(tmp_path: Path) -> None:
    env = fake_env(tmp_path)

    first = run("registry", "etcd", env=env)
    again = run("registry", "etcd", env=env)

    assert first.returncode == 0, first.stderr
    assert (tmp_path / "order").read_text().split() == [".", "."]  # etcd and registry only
    assert [line.split()[0] for line in first.stdout.splitlines()] == ["registry", "etcd"]
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert sorted(again.stderr.splitlines()) == ["etcd v3.6.16: cached", "registry v0.20.7: cached"]


def test_an_unknown_tool_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    env = fake_env(tmp_path)

    done = run("etcd", "kube-scheduler", env=env)

    assert done.returncode == 1
    assert "unknown tool 'kube-scheduler'" in done.stderr
    assert "kube-controller-manager" in done.stderr  # the list of known tools
    assert not (tmp_path / "order").exists()
