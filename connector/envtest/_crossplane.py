"""Crossplane core on a local cluster, as a local process, with its functions.

``Crossplane(cluster).start()``:

1. finds (or builds) ``crossplane-core`` and, for functions, the Crossplane CLI and the
   registry (``tools/build.sh``);
2. creates the namespace ``crossplane-system`` and runs ``crossplane core init``: Crossplane's
   CRDs, its CA (``crossplane-root-ca``) and client certificate Secrets, the Lock;
3. copies the client certificate into a folder and starts ``crossplane core start
   --package-runtime=External`` with webhooks off and ports of its own;
4. waits until it answers ``/readyz`` and serves its APIs;
5. starts the development function runtime (``_functions``) and waits until every Function
   is Healthy with an endpoint in its active revision;
6. with ``providers``, installs and runs them (``_providers``) and waits until every
   Provider is Healthy.

Crossplane runs as its own identity (user ``crossplane`` in ``system:masters``), like the
in-cluster ServiceAccount it would have, with its own kubeconfig.

Stop it before its cluster (``stop()``); it dies with the process that started it.
"""

from __future__ import annotations

import atexit
import base64
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import structlog

from connector.envtest import _process
from connector.envtest._binaries import find_tools
from connector.envtest._certs import CertificateAuthority
from connector.envtest._cluster import ADMIN_GROUPS, DEFAULT_STOP_TIMEOUT, Cluster, free_port
from connector.envtest._errors import ClusterStartError, EnvtestError
from connector.envtest._functions import DEFAULT_FUNCTIONS, FunctionRuntime, FunctionSource
from connector.envtest._providers import ProviderRuntime, ProviderSource
from connector.kube import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    ConflictError,
    KubeClient,
    KubeError,
    NotFoundError,
)

log = structlog.get_logger(__name__)

NAMESPACE = "crossplane-system"
CA_SECRET = "crossplane-root-ca"
SERVER_SECRET = "crossplane-tls-server"
CLIENT_SECRET = "crossplane-tls-client"
#: The identity Crossplane runs as (in group system:masters, like the cluster's admin).
USER = "crossplane"
DEFAULT_CROSSPLANE_TIMEOUT = 180.0
#: The tools Crossplane with functions needs: itself, the CLI (xpkg) and the registry.
TOOLS = ("crossplane-core", "crossplane", "registry")

_INIT_ATTEMPTS = 5
_TLS_KEYS = ("tls.crt", "tls.key", "ca.crt")
#: What ``core init`` says when it creates an object of a CRD it created a moment ago.
_NOT_ESTABLISHED = b"no matches for kind"
_ENV = {
    "TLS_CA_SECRET_NAME": CA_SECRET,
    "TLS_SERVER_SECRET_NAME": SERVER_SECRET,
    "TLS_CLIENT_SECRET_NAME": CLIENT_SECRET,
    "POD_NAMESPACE": NAMESPACE,
}
_CORE_CRDS = (
    "compositeresourcedefinitions.apiextensions.crossplane.io",
    "functions.pkg.crossplane.io",
)


class Crossplane:
    """Crossplane core (and its functions) on ``cluster``, as local processes.

    Files live in ``<base_dir>/<cluster>-crossplane/``: ``init.log``, ``crossplane.log``,
    its kubeconfig, client certificate (``tls/client/``) and package cache, and the function
    runtime's files (see ``FunctionRuntime``). ``stop()`` removes them unless ``keep_files``;
    a failed ``start()`` keeps them, so that the logs can be read.
    ``functions=()`` starts no registry and no function servers. ``providers`` (e.g.
    ``(PROVIDER_KUBERNETES,)``) are installed as packages and run as local processes; they
    need the functions' registry.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        functions: Sequence[FunctionSource] = DEFAULT_FUNCTIONS,
        providers: Sequence[ProviderSource] = (),
        startup_timeout: float = DEFAULT_CROSSPLANE_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        extra_args: Sequence[str] = (),
        keep_files: bool = False,
    ) -> None:
        self.cluster = cluster
        self.dir = cluster.base_dir / f"{cluster.name}-crossplane"
        self.log_path = self.dir / "crossplane.log"
        self.init_log = self.dir / "init.log"
        self.kubeconfig = self.dir / "crossplane.kubeconfig"
        self.functions = tuple(functions)
        self.providers = tuple(providers)
        if self.providers and not self.functions:
            raise ValueError("providers need the package registry, which runs with functions")
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._extra_args = list(extra_args)
        self._keep_files = keep_files
        self._failed = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._runtime: FunctionRuntime | None = None
        self._provider_runtime: ProviderRuntime | None = None
        self._ca: CertificateAuthority | None = None
        self._pids: dict[str, int] = {}
        self._commands: dict[str, list[str]] = {}
        self._last_readiness = ""
        self.health_port: int | None = None
        self._log = log.bind(cluster=cluster.name)

    # -- public API ---------------------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by role: ``crossplane``, ``registry``, one per function and one per
        provider."""
        runtime = self._runtime.pids if self._runtime is not None else {}
        providers = self._provider_runtime.pids if self._provider_runtime is not None else {}
        return {**self._pids, **runtime, **providers}

    @property
    def commands(self) -> dict[str, list[str]]:
        """The command line of each process by role, to recognise a pid as ours later."""
        runtime = self._runtime.commands if self._runtime is not None else {}
        providers = self._provider_runtime.commands if self._provider_runtime is not None else {}
        return {**{r: list(a) for r, a in self._commands.items()}, **runtime, **providers}

    @property
    def endpoints(self) -> dict[str, str]:
        """Each served function's gRPC endpoint (``127.0.0.1:<port>``), by Function name."""
        return dict(self._runtime.endpoints) if self._runtime is not None else {}

    @property
    def packages(self) -> dict[str, str]:
        """Each function's package reference in the local registry, by Function name."""
        return dict(self._runtime.packages) if self._runtime is not None else {}

    @property
    def provider_packages(self) -> dict[str, str]:
        """Each provider's package reference in the local registry, by Provider name."""
        runtime = self._provider_runtime
        return dict(runtime.packages) if runtime is not None else {}

    @property
    def registry(self) -> str:
        """The local OCI registry's ``host:port`` (plain HTTP), or "" without functions."""
        return self._runtime.registry if self._runtime is not None else ""

    def running(self) -> bool:
        """True while Crossplane, the registry, every function server, every provider and
        the status writers run."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return False
        providers = self._provider_runtime
        return (self._runtime is None or self._runtime.running()) and (
            providers is None or providers.running()
        )

    def start(self) -> Crossplane:
        """Start Crossplane and its functions on the (started) cluster; see the module doc.

        Raises:
            ClusterStartError: a step failed (the message names it and shows the tail of
                the relevant log); what had started is stopped again.
            BinariesError: the tools could not be found or built.
        """
        with self._lock:
            if self._started:
                raise EnvtestError(
                    f"Crossplane on cluster {self.cluster.name!r} was already started"
                )
            self._started = True
            self._failed = False
            self._stopping.clear()
        started = time.monotonic()
        tools = find_tools(
            [*(TOOLS if self.functions else TOOLS[:1]), *(p.tool for p in self.providers)]
        )
        deadline = time.monotonic() + self._startup_timeout
        try:
            self._prepare_files()
            with self.cluster.kube_client(kubeconfig=self.kubeconfig) as kube:
                self._create_namespace(kube)
                self._init(tools["crossplane-core"], deadline)
                ca = self._write_client_certificate(kube)
            self._start_core(tools["crossplane-core"], deadline)
            if self.functions:
                self._runtime = FunctionRuntime(
                    directory=self.dir,
                    kube_factory=lambda: self.cluster.kube_client(kubeconfig=self.kubeconfig),
                    functions=self.functions,
                    tools=tools,
                    stop_timeout=self._stop_timeout,
                    namespace=NAMESPACE,
                )
                self._runtime.start(ca, deadline=deadline, timeout=self._startup_timeout)
            self._ca = ca
            if self.providers:
                self._start_providers(self.providers, tools, deadline)
        except BaseException:
            self._failed = True
            self.stop()
            raise
        atexit.register(self.stop)
        self._log.info(
            "Crossplane is ready.",
            seconds=round(time.monotonic() - started, 1),
            functions=sorted(self.endpoints),
            providers=sorted(p.name for p in self.providers),
            registry=self.registry,
        )
        return self

    def start_providers(self, providers: Sequence[ProviderSource]) -> None:
        """Install and run ``providers`` on this started Crossplane (which has none yet),
        within its start-up timeout; ``stop()`` stops them. For a Crossplane shared by
        callers that do not all need the providers."""
        with self._lock:
            if not self._started or self._runtime is None:
                raise EnvtestError("providers need a started Crossplane with functions")
            if self._provider_runtime is not None:
                raise EnvtestError(f"providers already run: {sorted(self.provider_packages)}")
        tools = find_tools([*TOOLS, *(p.tool for p in providers)])
        try:
            self._start_providers(tuple(providers), tools, time.monotonic() + self._startup_timeout)
        except BaseException:
            runtime, self._provider_runtime = self._provider_runtime, None
            if runtime is not None:
                runtime.stop()
            raise
        self.providers = tuple(providers)

    def _start_providers(
        self, providers: Sequence[ProviderSource], tools: dict[str, Path], deadline: float
    ) -> None:
        assert self._ca is not None
        self._provider_runtime = ProviderRuntime(
            directory=self.dir,
            cluster=self.cluster,
            kube_factory=lambda: self.cluster.kube_client(kubeconfig=self.kubeconfig),
            providers=providers,
            tools=tools,
            registry=self.registry,
            stop_timeout=self._stop_timeout,
            namespace=NAMESPACE,
        )
        self._provider_runtime.start(self._ca, deadline=deadline, timeout=self._startup_timeout)

    def stop(self) -> None:
        """Stop the providers, the function runtime, then Crossplane, and remove the files unless
        ``keep_files`` (or the start failed). Safe to call more than once."""
        atexit.unregister(self.stop)
        with self._lock:
            self._stopping.set()
            self._started = False
            runtime, self._runtime = self._runtime, None
            providers, self._provider_runtime = self._provider_runtime, None
            proc, self._proc = self._proc, None
        if providers is not None:
            providers.stop()
        if runtime is not None:
            runtime.stop()
        if proc is not None:
            was_running = proc.poll() is None
            _process.terminate(proc, timeout=self._stop_timeout)
            if was_running:
                self._log.info("Crossplane stopped.")
        # Keep the runtime's pids for callers that check they are gone.
        for stopped in (runtime, providers):
            if stopped is not None:
                self._pids.update(stopped.pids)
                self._commands.update(stopped.commands)
        if not (self._keep_files or self._failed):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Crossplane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start steps --------------------------------------------------------------------

    def _prepare_files(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.cluster.mint_kubeconfig(USER, groups=ADMIN_GROUPS, path=self.kubeconfig)

    def _create_namespace(self, kube: KubeClient) -> None:
        try:
            kube.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        except ConflictError:
            pass
        except KubeError as e:
            raise ClusterStartError(f"create namespace {NAMESPACE}", str(e)) from e

    def _init(self, binary: Path, deadline: float) -> None:
        """``crossplane core init``; a CRD it just created may not be served yet when it
        creates the first object of it ("no matches for kind"), so a failure is retried."""
        step = f"run 'crossplane core init' on cluster '{self.cluster.name}'"
        crds = binary.parent / "crds"
        if not crds.is_dir():
            raise ClusterStartError(step, f"Crossplane's CRDs are missing: no folder {crds}")
        empty = self.dir / "webhook-configurations"
        empty.mkdir(exist_ok=True)
        argv = [
            str(binary),
            "core",
            "init",
            f"--cr-ds-path={crds}",
            f"--webhook-configurations-path={empty}",
            "--enable-webhooks=false",
        ]
        for attempt in range(1, _INIT_ATTEMPTS + 1):
            offset = self.init_log.stat().st_size if self.init_log.exists() else 0
            with self._lock:
                if self._stopping.is_set():
                    raise ClusterStartError(step, "cancelled: Crossplane is being stopped")
                proc = _process.spawn(argv, log_path=self.init_log, cwd=self.dir, env=self._env())
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _process.terminate(proc, timeout=self._stop_timeout)
                raise ClusterStartError(
                    step,
                    f"not done within the start-up timeout of {self._startup_timeout:.0f} s",
                    log_path=self.init_log,
                ) from None
            if code == 0:
                return
            with self.init_log.open("rb") as output:
                output.seek(offset)
                transient = _NOT_ESTABLISHED in output.read()
            if not transient or attempt == _INIT_ATTEMPTS or time.monotonic() >= deadline:
                raise ClusterStartError(
                    step, f"exited with code {code} ({attempt} attempts)", log_path=self.init_log
                )
            self._log.info("crossplane core init failed; trying again.", attempt=attempt)
            time.sleep(1.0)

    def _write_client_certificate(self, kube: KubeClient) -> CertificateAuthority:
        """Crossplane's client certificate into ``tls/client/``; returns its CA."""
        step = "read Crossplane's TLS Secrets"
        try:
            client = _secret_data(kube, CLIENT_SECRET)
            ca = _secret_data(kube, CA_SECRET)
        except KubeError as e:
            raise ClusterStartError(step, str(e), log_path=self.init_log) from e
        missing = [f"{CLIENT_SECRET}/{k}" for k in _TLS_KEYS if not client.get(k)] + [
            f"{CA_SECRET}/{k}" for k in _TLS_KEYS[:2] if not ca.get(k)
        ]
        if missing:
            raise ClusterStartError(
                step, f"no {', '.join(missing)} in the Secrets", log_path=self.init_log
            )
        directory = self.dir / "tls" / "client"
        directory.mkdir(parents=True, mode=0o700)
        for key in _TLS_KEYS:
            path = directory / key
            path.touch(mode=0o600)
            path.write_bytes(client[key])
        try:
            return CertificateAuthority.load(ca["tls.crt"], ca["tls.key"])
        except ValueError as e:
            raise ClusterStartError(step, f"{CA_SECRET} holds no usable CA: {e}") from e

    def _start_core(self, binary: Path, deadline: float) -> None:
        step = f"start Crossplane on cluster '{self.cluster.name}'"
        self.health_port = free_port()
        argv = [
            str(binary),
            "core",
            "start",
            "--package-runtime=External",
            "--enable-webhooks=false",
            f"--xpkg-cache-dir={self.dir / 'xpkg-cache'}",
            f"--tls-client-certs-dir={self.dir / 'tls' / 'client'}",
            # Its defaults (8080, 8081, 9443) are popular; ports of its own, like the
            # clusters'. controller-runtime binds them on every interface.
            f"--metrics-port={free_port()}",
            f"--health-probe-port={self.health_port}",
            f"--webhook-port={free_port()}",
            *self._extra_args,
        ]
        (self.dir / "xpkg-cache").mkdir(exist_ok=True)
        with self._lock:
            if self._stopping.is_set():
                raise ClusterStartError(step, "cancelled: Crossplane is being stopped")
            try:
                self._proc = _process.spawn(
                    argv, log_path=self.log_path, cwd=self.dir, env=self._env()
                )
            except OSError as e:
                raise ClusterStartError(step, f"cannot run {binary}: {e}") from e
            self._pids["crossplane"] = self._proc.pid
            self._commands["crossplane"] = list(argv)
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        kube = self.cluster.kube_client(kubeconfig=self.kubeconfig)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status != 200:
                        return False
            except (OSError, urllib.error.URLError) as e:
                self._last_readiness = f"/readyz: {e}"
                return False
            for crd in _CORE_CRDS:
                try:
                    got = kube.get(CUSTOM_RESOURCE_DEFINITIONS, crd)
                except KubeError as e:
                    self._last_readiness = f"CRD {crd}: {e}"
                    return False
                conditions = (got.get("status") or {}).get("conditions") or []
                if not any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    self._last_readiness = f"CRD {crd} is not established"
                    return False
            return True

        try:
            _process.wait_ready(
                self._proc,
                role="crossplane",
                ready=ready,
                log_path=self.log_path,
                step=step,
                deadline=deadline,
                timeout=self._startup_timeout,
                cancelled=self._stopping.is_set,
                last_answer=lambda: self._last_readiness,
            )
        finally:
            kube.close()

    def _env(self) -> dict[str, str]:
        return {**_ENV, "KUBECONFIG": str(self.kubeconfig)}


def start_crossplane(
    cluster: Cluster,
    *,
    functions: Sequence[FunctionSource] = DEFAULT_FUNCTIONS,
    startup_timeout: float = DEFAULT_CROSSPLANE_TIMEOUT,
) -> Crossplane:
    """Start Crossplane and ``functions`` on ``cluster``; see :class:`Crossplane`."""
    return Crossplane(cluster, functions=functions, startup_timeout=startup_timeout).start()


def _secret_data(kube: KubeClient, name: str) -> dict[str, bytes]:
    try:
        secret = kube.get(SECRETS, name, NAMESPACE)
    except NotFoundError as e:
        raise KubeError(f"Secret {NAMESPACE}/{name} does not exist") from e
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
