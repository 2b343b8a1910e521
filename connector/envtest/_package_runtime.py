"""What the development runtime's two kinds of packages share (``_functions``: Functions,
``_providers``: Providers): the local processes that serve them, started and stopped
together; the thread that writes what a package runtime owns into their revisions'
status; serving certificates signed by Crossplane's CA, in a folder and a Secret; and
packages built with ``crossplane xpkg build`` and pushed to the local registry.

In a real cluster Crossplane's Deployment runtime does all of this (docs/stages.md).
"""

from __future__ import annotations

import base64
import importlib.metadata
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from connector.envtest import _process
from connector.envtest._certs import CertificateAuthority
from connector.envtest._errors import ClusterStartError
from connector.kube import SECRETS, KubeClient, KubeError

FIELD_MANAGER = "api-connector-dev-runtime"

_XPKG_TIMEOUT = 120.0


class RevisionWriter(Protocol):
    """Keeps what a package runtime owns in its revisions' status until stopped."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def package_tag() -> str:
    """The tag pushed packages get: the project's version, e.g. ``v0.1.0``."""
    try:
        return "v" + importlib.metadata.version("api-connector")
    except importlib.metadata.PackageNotFoundError:
        return "v0.0.0-dev"


def tls_server_secret_name(package: str) -> str:
    """The Secret holding a package's serving certificate: the name its revisions carry
    (``spec.tlsServerSecretName`` of a FunctionRevision, ``status.tlsServerSecretName`` of
    a ProviderRevision)."""
    return f"{package}-tls-server"


def run_xpkg(step: str, argv: list[str], *, cwd: Path) -> None:
    """Run a ``crossplane xpkg`` command (``build``, ``push``); ClusterStartError naming
    ``step`` with the output's tail if it fails."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_XPKG_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise ClusterStartError(step, f"no result after {_XPKG_TIMEOUT:.0f} s") from e
    except OSError as e:
        raise ClusterStartError(step, f"cannot run {argv[0]}: {e}") from e
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise ClusterStartError(
            step, f"exit code {done.returncode}:\n" + "\n".join("  " + line for line in output)
        )


W = TypeVar("W", bound=RevisionWriter)


class PackageRuntime:
    """The processes and the revision writer of one kind of package, in ``directory``."""

    def __init__(
        self,
        *,
        directory: Path,
        kube_factory: Callable[[], KubeClient],
        tools: Mapping[str, Path],
        stop_timeout: float,
        namespace: str,
        packages: Sequence[str],
        kind: str,
    ) -> None:
        """``packages`` are the names of the packages it runs, of ``kind`` ("function",
        "provider"): one process each, so no two may share a name."""
        if len(set(packages)) != len(packages):
            raise ValueError(f"{kind} names must be unique, got {list(packages)}")
        self.dir = directory
        self.namespace = namespace
        self._kube_factory = kube_factory
        self._tools = dict(tools)
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pids: dict[str, int] = {}
        self._commands: dict[str, list[str]] = {}
        self._writer: RevisionWriter | None = None
        self._writer_thread: threading.Thread | None = None
        self._writer_kube: KubeClient | None = None

    @property
    def pids(self) -> dict[str, int]:
        return dict(self._pids)

    @property
    def commands(self) -> dict[str, list[str]]:
        return {role: list(argv) for role, argv in self._commands.items()}

    def _alive(self, expected: int | None = None) -> bool:
        """Whether its processes (at least one, or exactly ``expected``) and the writer run."""
        with self._lock:
            procs = list(self._procs.values())
        thread = self._writer_thread
        enough = bool(procs) if expected is None else len(procs) == expected
        return (
            enough
            and all(p.poll() is None for p in procs)
            and thread is not None
            and thread.is_alive()
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._writer is not None:
            self._writer.stop()
        if self._writer_thread is not None:
            self._writer_thread.join(timeout=self._stop_timeout)
        if self._writer_kube is not None:
            self._writer_kube.close()
        with self._lock:
            procs, self._procs = list(self._procs.values()), {}
        for proc in procs:
            _process.terminate(proc, timeout=self._stop_timeout)

    def _start_writer(self, make: Callable[[KubeClient], W], thread_name: str) -> W:
        """Run the writer ``make`` builds (given a client of its own) on a thread."""
        self._writer_kube = self._kube_factory()
        writer = make(self._writer_kube)
        self._writer = writer
        self._writer_thread = threading.Thread(target=writer.run, name=thread_name, daemon=True)
        self._writer_thread.start()
        return writer

    def _launch(
        self,
        role: str,
        argv: list[str],
        log_path: Path,
        step: str,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._stopping.is_set():
                raise ClusterStartError(step, "cancelled: Crossplane is being stopped")
            try:
                proc = _process.spawn(argv, log_path=log_path, cwd=cwd, env=env)
            except OSError as e:
                raise ClusterStartError(step, f"cannot run {argv[0]}: {e}") from e
            self._procs[role] = proc
            self._pids[role] = proc.pid
            self._commands[role] = list(argv)
            return proc

    def _serving_tls(self, package: str, folder: Path, ca: CertificateAuthority) -> str:
        """``package``'s serving certificate signed by Crossplane's CA, with that CA (the
        certificate its callers must present is signed by it), in ``folder`` (``tls.crt``,
        ``tls.key``, ``ca.crt``) and in its Secret; the Secret's name."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        serving = ca.issue_server(package, dns_names=["localhost"], ips=["127.0.0.1"])
        files = {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem, "ca.crt": ca.cert_pem}
        for key, data in files.items():
            (folder / key).touch(mode=0o600)
            (folder / key).write_bytes(data)
        name = tls_server_secret_name(package)
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.namespace},
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
        }
        try:
            with self._kube_factory() as kube:
                kube.apply(SECRETS, secret, FIELD_MANAGER)
        except KubeError as e:
            raise ClusterStartError(f"write the TLS Secret of {package}", str(e)) from e
        return name

    def _build_and_push(
        self, package: str, root: Path, registry: str, *, examples_root: Path | None = None
    ) -> str:
        """``crossplane xpkg build`` of ``root``, pushed to ``registry``; its reference."""
        packages = self.dir / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        xpkg = packages / f"{package}.xpkg"
        xpkg.unlink(missing_ok=True)
        crossplane = str(self._tools["crossplane"])
        build = [crossplane, "xpkg", "build", f"--package-root={root}", f"--package-file={xpkg}"]
        if examples_root is not None:
            build.append(f"--examples-root={examples_root}")
        run_xpkg(f"build the package of {package}", build, cwd=self.dir)
        reference = f"{registry}/{package}:{package_tag()}"
        push = [crossplane, "xpkg", "push", "-f", str(xpkg), reference]
        run_xpkg(f"push the package of {package} to {reference}", push, cwd=self.dir)
        return reference
