"""A small runner for the ``helm`` binary: find it, list, install or upgrade, uninstall.

Only what ``api-connector install`` / ``uninstall`` need. Every call passes the consumer's
kubeconfig and context explicitly, so the user's ``KUBECONFIG`` and current context never
decide which cluster is changed. Values go through a file, never through the command line,
and hold no secret material (credentials live in the Secret the installer writes itself).

The process runner is injectable (``run=``) so that the argument building is unit-testable.
The product never builds helm: :func:`find_helm` takes the one it is given, the one on PATH,
or the one the project's ``tools/build.sh helm`` left in its cache, and otherwise says how to
get one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Helm",
    "HelmError",
    "Release",
    "Runner",
    "find_helm",
]

#: Runs argv and returns the finished process (stdout and stderr captured as text).
Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]

#: A finished build in the tool cache: ``helm-<version>-<hash>`` (``.tmp.<pid>`` while building).
_CACHED_BUILD = re.compile(r"helm-v(\d+)\.(\d+)\.(\d+)-[0-9a-f]+")


class HelmError(Exception):
    """helm could not be found or a helm command failed; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class Release:
    """One Helm release as ``helm list`` reports it."""

    name: str
    namespace: str
    status: str  # deployed, failed, pending-install, pending-upgrade, ...
    chart: str  # <chart>-<version>, e.g. api-connector-0.1.0
    revision: str


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)


def find_helm(explicit: str | None = None) -> str:
    """The helm binary: ``explicit`` (``--helm``), else ``helm`` on PATH, else the newest helm
    in the project's tool cache (what ``tools/build.sh helm`` builds in a checkout).

    Raises :class:`HelmError` saying how to get helm when there is none.
    """
    if explicit:
        path = shutil.which(explicit) or explicit
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise HelmError(f"--helm {explicit}: no executable file there.")
        return path
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cached = _cached_helm()
    if cached is not None:
        return str(cached)
    raise HelmError(
        "helm is not on PATH, and not in the tool cache "
        f"({tool_cache() / 'helm-*' / 'helm'}); install Helm 3 "
        "(https://helm.sh/docs/intro/install/) and put it on PATH, pass --helm "
        "/path/to/helm, or run tools/build.sh helm in a checkout of api-connector."
    )


def tool_cache() -> Path:
    """Where ``tools/build.sh`` keeps the binaries it builds (its ``$bin_root``)."""
    root = os.environ.get("API_CONNECTOR_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "api-connector")
    return Path(root) / "bin"


def _cached_helm() -> Path | None:
    try:
        entries = list(tool_cache().iterdir())
    except OSError:
        return None
    builds: list[tuple[tuple[int, ...], float, Path]] = []
    for entry in entries:
        match = _CACHED_BUILD.fullmatch(entry.name)
        binary = entry / "helm"
        if match and binary.is_file() and os.access(binary, os.X_OK):
            version = tuple(int(part) for part in match.groups())
            builds.append((version, binary.stat().st_mtime, binary))
    return max(builds)[2] if builds else None


class Helm:
    """helm commands against one cluster: the given kubeconfig file and context."""

    def __init__(
        self,
        binary: str,
        *,
        kubeconfig: Path,
        context: str | None = None,
        run: Runner = _run,
        timeout: float = 300.0,
    ) -> None:
        self.binary = binary
        self._kubeconfig = kubeconfig
        self._context = context
        self._run = run
        self._timeout = timeout

    def _cluster_flags(self) -> list[str]:
        flags = ["--kubeconfig", str(self._kubeconfig)]
        if self._context:
            flags += ["--kube-context", self._context]
        return flags

    def _call(self, what: str, args: Sequence[str]) -> str:
        argv = [self.binary, *args, *self._cluster_flags()]
        try:
            done = self._run(argv, self._timeout + 30.0)
        except subprocess.TimeoutExpired as e:
            raise HelmError(f"{what} did not finish within {self._timeout + 30.0:.0f}s.") from e
        except OSError as e:
            raise HelmError(f"{what}: cannot run {self.binary}: {e.strerror or e}.") from e
        if done.returncode != 0:
            raise HelmError(f"{what} failed: {_tail(done.stderr or done.stdout)}")
        return done.stdout

    def release(self, name: str, namespace: str) -> Release | None:
        """The release ``name`` in ``namespace`` in any state, or None if there is none."""
        out = self._call(
            f"helm list -n {namespace}",
            ["list", "--namespace", namespace, "--all", "--filter", f"^{name}$", "-o", "json"],
        )
        try:
            entries = json.loads(out or "[]")
        except ValueError as e:
            raise HelmError(f"helm list printed something that is not JSON: {_tail(out)}") from e
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return Release(
                    name=name,
                    namespace=str(entry.get("namespace") or namespace),
                    status=str(entry.get("status") or ""),
                    chart=str(entry.get("chart") or ""),
                    revision=str(entry.get("revision") or ""),
                )
        return None

    def values(self, name: str, namespace: str) -> dict[str, Any]:
        """The user-supplied values of the release (what ``-f``/``--set`` gave it)."""
        out = self._call(
            f"helm get values {name}",
            ["get", "values", name, "--namespace", namespace, "-o", "json"],
        )
        try:
            values = json.loads(out or "{}")
        except ValueError as e:
            raise HelmError(f"helm get values printed something that is not JSON: {e}") from e
        return values if isinstance(values, dict) else {}

    def metadata(self, name: str, namespace: str) -> dict[str, Any]:
        """The release's chart metadata (``helm get metadata``): chart, version, the chart's
        ``annotations``, status, revision."""
        out = self._call(
            f"helm get metadata {name}",
            ["get", "metadata", name, "--namespace", namespace, "-o", "json"],
        )
        try:
            meta = json.loads(out or "{}")
        except ValueError as e:
            raise HelmError(f"helm get metadata printed something that is not JSON: {e}") from e
        return meta if isinstance(meta, dict) else {}

    def manifest(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The objects the release's templates rendered (``helm get manifest``)."""
        out = self._call(
            f"helm get manifest {name}", ["get", "manifest", name, "--namespace", namespace]
        )
        return _documents(out, "helm get manifest")

    def template(
        self,
        name: str,
        chart: str,
        namespace: str,
        values: Mapping[str, Any],
        *,
        version: str | None = None,
    ) -> list[dict[str, Any]]:
        """The objects ``chart`` would render for release ``name`` with ``values``, CRDs of
        its ``crds/`` left out (``helm template``, offline: no cluster is asked)."""
        with tempfile.TemporaryDirectory(prefix="api-connector-helm-") as tmp:
            values_file = Path(tmp) / "values.yaml"
            values_file.write_text(yaml.safe_dump(dict(values), sort_keys=True))
            args = ["template", name, chart, "--namespace", namespace]
            args += ["--values", str(values_file)]
            if version:
                args += ["--version", version]
            out = self._call(f"helm template {name}", args)
        return _documents(out, "helm template")

    def install(
        self,
        name: str,
        chart: str,
        namespace: str,
        values: Mapping[str, Any],
        *,
        upgrade: bool = False,
        version: str | None = None,
        skip_crds: bool = True,
    ) -> None:
        """``helm install`` (or ``helm upgrade --install`` with ``upgrade``) with ``values``."""
        with tempfile.TemporaryDirectory(prefix="api-connector-helm-") as tmp:
            values_file = Path(tmp) / "values.yaml"
            values_file.write_text(yaml.safe_dump(dict(values), sort_keys=True))
            args = ["upgrade", "--install"] if upgrade else ["install"]
            args += [name, chart, "--namespace", namespace, "--values", str(values_file)]
            args += ["--timeout", f"{int(self._timeout)}s"]
            if version:
                args += ["--version", version]
            if skip_crds:
                args.append("--skip-crds")
            verb = "helm upgrade --install" if upgrade else "helm install"
            self._call(f"{verb} {name}", args)

    def uninstall(self, name: str, namespace: str) -> None:
        self._call(
            f"helm uninstall {name}",
            ["uninstall", name, "--namespace", namespace, "--timeout", f"{int(self._timeout)}s"],
        )


def _documents(text: str, what: str) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]
    except yaml.YAMLError as e:
        raise HelmError(f"{what} printed something that is not YAML: {e}") from e


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in (text or "").strip().splitlines() if line.strip()][-lines:]
    return " ".join(kept) if kept else "(no output)"
