"""The built wheel and sdist carry the Helm chart and the walkthrough, and an installed
api-connector uses its own copies: ``install`` needs no ``--chart`` and no checkout.

The wheel is built from the project's own files with this virtualenv's setuptools (offline,
``pip wheel --no-deps --no-build-isolation``) and installed without dependencies into a
fresh virtualenv; the checks then run from a directory outside the checkout. The build runs
on a copy of the files it reads, so that it writes no ``build/`` or ``*.egg-info`` into the
checkout that others work in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "package" / "helm" / "api-connector"
WALKTHROUGH = ROOT / "examples" / "walkthrough"
# What building the package reads: the sources, their metadata, and the two directories
# pyproject.toml maps into the package (as the Dockerfile's build stage copies them).
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "connector",
    "functions",
    "package/helm/api-connector",
    "examples/walkthrough",
)

# Run by the fresh virtualenv's interpreter: where the installed package finds its files.
PROBE = textwrap.dedent(
    """
    import json, sys
    import connector
    from connector.install import find_chart
    from connector.shipped import chart_dir, walkthrough_dir

    chart, directory = find_chart(None, None)
    json.dump(
        {
            "connector": connector.__file__,
            "chart_dir": str(chart_dir()),
            "walkthrough_dir": str(walkthrough_dir()),
            "install_chart": chart,
            "install_chart_dir": str(directory),
        },
        sys.stdout,
    )
    """
)


@dataclass(frozen=True)
class Installed:
    """The package installed from the built wheel, and what it resolved at run time."""

    venv: Path
    site_packages: Path
    sdist: Path
    found: dict[str, str]


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    argv = [str(arg) for arg in args]
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (hidden ones too), by relative path, with its content."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)

    dist = base / "dist"
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    _run(
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        dist,
        source,
        cwd=base,
    )
    # The sdist through setuptools' PEP 517 hook, as `python -m build --sdist` calls it.
    build_sdist = (
        "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    )
    _run(sys.executable, "-c", build_sdist, dist, cwd=source)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")

    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    _run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=base)
    site_packages = Path(
        _run(
            python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base
        ).strip()
    )
    # The dependencies (kubernetes, PyYAML, ...) come from this virtualenv, offline, after the
    # fresh one's own site-packages: connector itself is only ever the wheel's. A path added
    # by a .pth file is not a site directory, so this virtualenv's editable-install hook does
    # not run there.
    dependencies = sysconfig.get_path("purelib")
    (site_packages / "zz-dependencies.pth").write_text(f"{dependencies}\n")

    outside = base / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    found = json.loads(_run(python, "-I", "-c", PROBE, cwd=outside, env=env))
    return Installed(venv=venv, site_packages=site_packages, sdist=sdist, found=found)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    assert Path(installed.found["connector"]).is_relative_to(installed.site_packages)


def test_install_uses_the_chart_inside_the_installed_package(installed: Installed) -> None:
    chart = Path(installed.found["chart_dir"])
    assert chart == installed.site_packages / "connector" / "_chart"
    assert installed.found["install_chart"] == str(chart)
    assert installed.found["install_chart_dir"] == str(chart)


def test_the_installed_chart_is_the_repository_s_chart(installed: Installed) -> None:
    got = _files(Path(installed.found["chart_dir"]))
    want = _files(CHART)
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", ".helmignore"):
        assert got.get(name) == want[name], f"{name} differs or is missing"
    templates = {name for name in want if name.startswith("templates/")}
    assert templates, "the repository's chart has no templates"
    assert {name for name in got if name.startswith("templates/")} == templates
    assert sorted(got) == sorted(want)
    assert got == want


def test_the_installed_walkthrough_is_the_repository_s(installed: Installed) -> None:
    walkthrough = Path(installed.found["walkthrough_dir"])
    assert walkthrough == installed.site_packages / "connector" / "_walkthrough"
    assert _files(walkthrough) == _files(WALKTHROUGH)


def test_the_sdist_carries_the_chart_and_the_walkthrough(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for directory in (CHART, WALKTHROUGH):
        want = {f"{directory.relative_to(ROOT).as_posix()}/{name}" for name in _files(directory)}
        assert want <= names, f"missing from the sdist: {sorted(want - names)}"
