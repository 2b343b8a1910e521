"""Finding kube-apiserver and etcd: ``tools/build.sh`` builds (or reuses) pinned binaries."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from connector.envtest._errors import BinariesError

# connector/envtest/_binaries.py -> the repository root is two levels above the package.
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build.sh"

# A cold build of kube-apiserver takes minutes; bound it anyway so nothing hangs forever.
DEFAULT_BUILD_TIMEOUT = 45 * 60.0

_lock = threading.Lock()
_cache: dict[str, Binaries] = {}


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables a cluster runs."""

    etcd: Path
    kube_apiserver: Path


def find_binaries(*, timeout: float = DEFAULT_BUILD_TIMEOUT) -> Binaries:
    """Return the etcd and kube-apiserver binaries, building them on first use.

    Runs ``tools/build.sh etcd kube-apiserver``, which honours ``KUBEBUILDER_ASSETS`` and
    caches builds in ``~/.cache/api-connector``. The result is cached for the process; a lock
    makes sure that parallel callers never start two builds.

    Raises:
        BinariesError: the script is missing, failed, timed out or printed no path; the
            message names the step and carries the script's stderr tail.
    """
    with _lock:
        if "found" not in _cache:
            _cache["found"] = _run_build_script(timeout)
        return _cache["found"]


def _run_build_script(timeout: float) -> Binaries:
    step = "find kube-apiserver and etcd (tools/build.sh etcd kube-apiserver)"
    if not BUILD_SCRIPT.is_file():
        assets = os.environ.get("KUBEBUILDER_ASSETS")
        if assets:
            return _from_assets(Path(assets), step)
        raise BinariesError(
            f"{step} failed: {BUILD_SCRIPT} does not exist (not running from a source "
            "checkout); set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd"
        )
    try:
        result = subprocess.run(
            [str(BUILD_SCRIPT), "etcd", "kube-apiserver"],
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
    missing = [t for t in ("etcd", "kube-apiserver") if t not in paths]
    if missing:
        raise BinariesError(
            f"{step} failed: no path printed for {', '.join(missing)}; stdout was:\n"
            f"{_tail(result.stdout)}\nstderr tail:\n{_tail(result.stderr)}"
        )
    for tool, path in paths.items():
        if not os.access(path, os.X_OK):
            raise BinariesError(f"{step} failed: {tool} at {path} is not executable")
    return Binaries(etcd=paths["etcd"], kube_apiserver=paths["kube-apiserver"])


def _from_assets(assets: Path, step: str) -> Binaries:
    binaries = Binaries(etcd=assets / "etcd", kube_apiserver=assets / "kube-apiserver")
    for path in (binaries.etcd, binaries.kube_apiserver):
        if not os.access(path, os.X_OK):
            raise BinariesError(
                f"{step} failed: KUBEBUILDER_ASSETS={assets} has no executable {path.name}"
            )
    return binaries


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str, lines: int = 25) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join("  " + line for line in kept) if kept else "  (empty)"
