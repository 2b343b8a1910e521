"""Finding the files that ship with the package (the Helm chart, the walkthrough), and the
packaging configuration that puts them into the wheel.

Whether a built wheel really carries them is tests/integration/test_wheel.py.
"""

from __future__ import annotations

import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.shipped import (
    CHART,
    WALKTHROUGH,
    Shipped,
    ShippedFileError,
    chart_dir,
    locate,
    walkthrough_dir,
)

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SHIPPED = (CHART, WALKTHROUGH)


def _make(directory: Path, shipped: Shipped) -> Path:
    marker = directory / shipped.marker
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("x")
    return directory


@dataclass(frozen=True)
class LocateCase:
    reason: str
    in_package: bool
    in_checkout: bool
    want: str  # "package", "checkout" or "error"


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda s: s.package_dir)
@pytest.mark.parametrize(
    "case",
    [
        LocateCase("an installed wheel's copy is used", True, False, "package"),
        LocateCase("a checkout's copy is used when the package has none", False, True, "checkout"),
        LocateCase("the installed package's copy wins over a checkout's", True, True, "package"),
        LocateCase("neither: an error naming both places", False, False, "error"),
    ],
    ids=lambda c: c.reason,
)
def test_locate_prefers_the_installed_package_then_the_checkout(
    tmp_path: Path, shipped: Shipped, case: LocateCase
) -> None:
    package = tmp_path / "site-packages" / "connector"
    package.mkdir(parents=True)
    repo = tmp_path / "repo"
    if case.in_package:
        _make(package / shipped.package_dir, shipped)
    if case.in_checkout:
        _make(repo / shipped.source, shipped)

    if case.want == "error":
        with pytest.raises(ShippedFileError) as raised:
            locate(shipped, package=package, repo_root=repo)
        message = str(raised.value)
        assert shipped.what in message
        assert str(package / shipped.package_dir) in message
        assert str(repo / shipped.source) in message
        return
    got = locate(shipped, package=package, repo_root=repo)
    want = package / shipped.package_dir if case.want == "package" else repo / shipped.source
    assert got == want, case.reason


def test_a_package_not_on_the_file_system_falls_back_to_the_checkout(tmp_path: Path) -> None:
    # helm needs a real directory; a zipped package's copy cannot be handed to it.
    archive = tmp_path / "connector.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"connector/{CHART.package_dir}/{CHART.marker}", "x")
    package = zipfile.Path(archive, "connector/")
    repo = tmp_path / "repo"
    _make(repo / CHART.source, CHART)
    assert locate(CHART, package=package, repo_root=repo) == repo / CHART.source


def test_in_this_checkout_the_chart_and_walkthrough_are_the_repository_s_own() -> None:
    assert chart_dir() == ROOT / "package" / "helm" / "api-connector"
    assert walkthrough_dir() == ROOT / "examples" / "walkthrough"


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda s: s.package_dir)
def test_pyproject_ships_the_directory_where_locate_looks_for_it(shipped: Shipped) -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    package = f"connector.{shipped.package_dir}"
    assert setuptools["package-dir"][package] == shipped.source
    source = ROOT / shipped.source
    # Every directory of it is a (data) package with all its files; hidden files by name.
    for directory in [source, *sorted(p for p in source.rglob("*") if p.is_dir())]:
        name = ".".join([package, *directory.relative_to(source).parts])
        assert name in setuptools["packages"], f"{directory} is not in the wheel"
        patterns = setuptools["package-data"][name]
        assert "*" in patterns, f"{name}: not every file is package data"
        hidden = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name[0] == ".")
        assert set(hidden) <= set(patterns), f"{name}: hidden files need their own pattern"


def test_pyproject_lists_every_python_package() -> None:
    # The list is explicit (see pyproject.toml); a new package must not be left out.
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("connector", "functions")
        for init in (ROOT / top).rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"
