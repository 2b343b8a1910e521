"""Files that ship with api-connector besides its code: the Helm chart and the walkthrough.

Each has one source in the repository: ``package/helm/api-connector`` and
``examples/walkthrough``. The wheel and the sdist carry them as package data,
``connector/_chart`` and ``connector/_walkthrough`` (``pyproject.toml`` maps the two
directories there), so an installed api-connector finds them next to its code. A source
checkout, or an editable install of one, has no such copies and reads them where they live.
Either way the content is the same files.

Only the standard library is imported here, so that the lookup also works in an environment
that holds the package without its dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = [
    "CHART",
    "WALKTHROUGH",
    "Shipped",
    "ShippedFileError",
    "chart_dir",
    "locate",
    "walkthrough_dir",
]

_REPO_ROOT = Path(__file__).resolve().parents[1]


class ShippedFileError(Exception):
    """A shipped directory is neither in the installed package nor in a source checkout."""


@dataclass(frozen=True, kw_only=True)
class Shipped:
    """A directory of the repository that the package carries as data."""

    what: str  # for messages: "the api-connector Helm chart"
    package_dir: str  # its name inside the installed ``connector`` package
    source: str  # its path in the repository, relative to the root
    marker: str  # a file it always holds, relative to it


CHART = Shipped(
    what="the api-connector Helm chart",
    package_dir="_chart",
    source="package/helm/api-connector",
    marker="Chart.yaml",
)
WALKTHROUGH = Shipped(
    what="the walkthrough's manifests",
    package_dir="_walkthrough",
    source="examples/walkthrough",
    marker="provider/nopresources.nop.example.org.yaml",
)


def chart_dir() -> Path:
    """The directory of the api-connector Helm chart (the one holding ``Chart.yaml``)."""
    return locate(CHART)


def walkthrough_dir() -> Path:
    """The directory of the walkthrough's manifests (``consumer/``, ``provider/``)."""
    return locate(WALKTHROUGH)


def locate(
    shipped: Shipped,
    *,
    package: Traversable | None = None,
    repo_root: Path = _REPO_ROOT,
) -> Path:
    """The directory of ``shipped``: the installed package's copy, else the checkout's.

    ``package`` (default: the installed ``connector`` package) and ``repo_root`` are
    parameters so that both places can be tested. Helm needs a real directory, so a package
    that is not on the file system (imported from a zip file) has no usable copy.

    Raises:
        ShippedFileError: neither place holds ``shipped.marker``; the message names both.
    """
    packaged = (package if package is not None else resources.files("connector")) / (
        shipped.package_dir
    )
    checkout = repo_root / shipped.source
    candidates = [packaged] if isinstance(packaged, Path) else []
    for candidate in [*candidates, checkout]:
        if (candidate / shipped.marker).is_file():
            return candidate
    raise ShippedFileError(
        f"cannot find {shipped.what}: looked in the installed api-connector package "
        f"({packaged}) and in a source checkout ({checkout})"
    )
