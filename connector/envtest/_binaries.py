"""Finding the Go tools a local cluster runs: ``tools/build.sh`` builds (or reuses) them."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from connector.envtest._errors import BinariesError

# connector/envtest/_binaries.py -> the repository root is two levels above the package.
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build.sh"

# A cold build of kube-apiserver takes minutes; bound it anyway so nothing hangs forever.
DEFAULT_BUILD_TIMEOUT = 45 * 60.0

# What KUBEBUILDER_ASSETS may provide when there is no checkout to build from.
_ASSET_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager")

# One build at a time per process: parallel callers wait for the first one's result.
_lock = threading.Lock()
_cache: dict[str, Path] = {}


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables a cluster runs; no controller manager if not asked for."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None = None


def find_binaries(
    *, controller_manager: bool = True, timeout: float = DEFAULT_BUILD_TIMEOUT
) -> Binaries:
    """Return etcd, kube-apiserver and (unless not wanted) kube-controller-manager.

    See :func:`find_tools`; ``KUBEBUILDER_ASSETS`` provides them when there is no checkout.
    """
    names = ["etcd", "kube-apiserver"]
    if controller_manager:
        names.append("kube-controller-manager")
    paths = find_tools(names, timeout=timeout)
    return Binaries(
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths.get("kube-controller-manager"),
    )


def find_tools(names: Sequence[str], *, timeout: float = DEFAULT_BUILD_TIMEOUT) -> dict[str, Path]:
    """Return the path of each named tool, building it on first use.

    Runs ``tools/build.sh NAME ...``, which honours ``KUBEBUILDER_ASSETS`` and caches builds
    in ``~/.cache/api-connector``. Results are cached for the process; a lock makes sure
    that parallel callers never start two builds.

    Raises:
        BinariesError: the script is missing, failed, timed out or printed no path; the
            message names the step and carries the script's stderr tail.
    """
    with _lock:
        wanted = [name for name in dict.fromkeys(names) if name not in _cache]
        if wanted:
            _cache.update(_run_build_script(wanted, timeout))
        return {name: _cache[name] for name in names}


def _run_build_script(names: list[str], timeout: float) -> dict[str, Path]:
    step = f"find {_and(names)} (tools/build.sh {' '.join(names)})"
    if not BUILD_SCRIPT.is_file():
        return _from_assets(names, step)
    try:
        result = subprocess.run(
            [str(BUILD_SCRIPT), *names],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BinariesError(
            f"{step} failed: no result after {timeout:.0f} s;"
            f" stderr tail:\n{_tail(_text(e.stderr))}"
        ) from e
    except OSError as e:
        raise BinariesError(f"{step} failed: cannot run {BUILD_SCRIPT}: {e}") from e
    if result.returncode != 0:
        raise BinariesError(
            f"{step} failed with exit code {result.returncode}; stderr tail:\n"
            f"{_tail(result.stderr)}"
        )
    paths: dict[str, Path] = {}
    for line in result.stdout.splitlines():
        tool, _, location = line.strip().partition(" ")
        if tool and location:
            paths[tool] = Path(location)
    missing = [t for t in names if t not in paths]
    if missing:
        raise BinariesError(
            f"{step} failed: no path printed for {', '.join(missing)}; stdout was:\n"
            f"{_tail(result.stdout)}\nstderr tail:\n{_tail(result.stderr)}"
        )
    for tool, path in paths.items():
        if not os.access(path, os.X_OK):
            raise BinariesError(f"{step} failed: {tool} at {path} is not executable")
    return paths


def _from_assets(names: list[str], step: str) -> dict[str, Path]:
    """An installed api-connector has no tools/: KUBEBUILDER_ASSETS must hold the tools."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    buildable = [name for name in names if name not in _ASSET_TOOLS]
    if buildable:
        raise BinariesError(
            f"{step} failed: {BUILD_SCRIPT} does not exist (not running from a source "
            f"checkout), and {_and(buildable)} can only be built from one"
        )
    if not assets:
        raise BinariesError(
            f"{step} failed: {BUILD_SCRIPT} does not exist (not running from a source "
            f"checkout); set KUBEBUILDER_ASSETS to a folder holding {_and(names)}"
        )
    paths = {name: Path(assets) / name for name in names}
    for name, path in paths.items():
        if not os.access(path, os.X_OK):
            hint = (
                " (it ships with the Kubernetes server binaries; or start the clusters"
                " without it: --no-controller-manager)"
                if name == "kube-controller-manager"
                else ""
            )
            raise BinariesError(
                f"{step} failed: KUBEBUILDER_ASSETS={assets} has no executable {name}{hint}"
            )
    return paths


def _and(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str, lines: int = 25) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join("  " + line for line in kept) if kept else "  (empty)"
