"""The development function runtime: for local clusters, what Crossplane's Deployment
runtime does in a real cluster, done with local processes.

Long because the runtime is one sequence whose steps share state (the registry's address,
Crossplane's CA, the servers' ports) from package build to the endpoint writer; Crossplane
itself is started by ``_crossplane.py``.

Under ``--package-runtime=External`` Crossplane still pulls every Function's package, but
runs nothing: it calls the gRPC endpoint written in the active FunctionRevision's
``status.endpoint``, and writing it is the external runtime's job. This runtime:

1. runs an in-memory OCI registry on 127.0.0.1 (``tools/registry``);
2. builds each function's package with ``crossplane xpkg build`` and pushes it there;
3. starts each function's gRPC server with a serving certificate signed by Crossplane's CA
   (``crossplane-root-ca``, SAN ``IP:127.0.0.1``), requiring a client certificate signed by
   the same CA, which Crossplane's is;
4. puts each server's certificate into the Secret its revisions name
   (``spec.tlsServerSecretName``, ``<function>-tls-server``, as the Deployment runtime does);
5. creates the ``Function`` objects, and applies what a package runtime owns into each of
   their FunctionRevisions' status (server-side, on the status subresource): ``endpoint``,
   ``tlsServerSecretName`` and the ``RuntimeHealthy=True`` condition; for new revisions too,
   from a thread of the process that started it (a list and watch, level-based). Crossplane
   installs a package's CRDs only once the TLS Secret is named, and calls the Function
   Healthy only once its runtime is.

Everything it starts dies with that process (see ``_process``): there is never a Function
server or registry left without the thread that writes endpoints.
"""

from __future__ import annotations

import concurrent.futures
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from connector.envtest import _process
from connector.envtest._binaries import REPO_ROOT
from connector.envtest._certs import CertificateAuthority
from connector.envtest._errors import ClusterStartError
from connector.envtest._package_runtime import (
    FIELD_MANAGER,
    PackageRuntime,
    tls_server_secret_name,
)
from connector.kube import GoneError, KubeClient, KubeError, NotFoundError, Resource
from functions.common.clock import now_rfc3339

log = structlog.get_logger(__name__)

FUNCTIONS = Resource("pkg.crossplane.io", "v1", "functions", "Function", namespaced=False)
FUNCTION_REVISIONS = Resource(
    "pkg.crossplane.io", "v1", "functionrevisions", "FunctionRevision", namespaced=False
)
#: Crossplane labels each revision with the name of its Function.
PARENT_LABEL = "pkg.crossplane.io/package"
#: The revision condition a package runtime owns, and the reason Crossplane's runtime gives.
RUNTIME_HEALTHY = "RuntimeHealthy"
HEALTHY_REASON = "HealthyPackageRevision"
_RETRY_INTERVAL = 1.0


@dataclass(frozen=True)
class FunctionSource:
    """A composition function the runtime builds, pushes and serves.

    ``name`` is the Function's name (its package metadata's). ``command`` starts its gRPC
    server in ``cwd``; the runtime appends ``--address 127.0.0.1:<port>`` and
    ``--tls-certs-dir <dir>`` (``tls.crt``, ``tls.key``, ``ca.crt``), the flags of
    Crossplane's function SDKs.
    """

    name: str
    package_root: Path
    command: tuple[str, ...]
    cwd: Path = REPO_ROOT
    examples_root: Path | None = None


def _api_connector() -> tuple[str, ...]:
    # The console script beside this interpreter (a virtualenv's bin/), else the same entry
    # point through the interpreter.
    script = Path(sysconfig.get_path("scripts")) / "api-connector"
    if script.is_file():
        return (str(script),)
    return (sys.executable, "-c", "from connector.cli.main import main; main()")


def stage_function(stage: str) -> FunctionSource:
    """The Function of a stage (``crd-puller``, ``binder``, ``object-syncer``):
    ``package/<stage>`` served by ``api-connector serve <stage>``."""
    return FunctionSource(
        name=f"function-connector-{stage}",
        package_root=REPO_ROOT / "package" / stage,
        examples_root=REPO_ROOT / "examples" / "functions" / stage,
        command=(*_api_connector(), "serve", stage),
    )


STAGE_FUNCTIONS = tuple(stage_function(s) for s in ("crd-puller", "binder", "object-syncer"))
_EXAMPLE_DIR = REPO_ROOT / "examples" / "crossplane" / "function-nop"
#: The example function (Crossplane's Python SDK): composes a ConfigMap, marks it ready.
EXAMPLE_FUNCTION = FunctionSource(
    name="function-nop",
    package_root=_EXAMPLE_DIR / "package",
    command=(sys.executable, "-m", "function.main"),
    cwd=_EXAMPLE_DIR,
)
DEFAULT_FUNCTIONS = (*STAGE_FUNCTIONS, EXAMPLE_FUNCTION)


def status_patch(
    revision: Mapping[str, Any], endpoints: Mapping[str, str], *, now: str
) -> dict[str, Any] | None:
    """What the runtime owns in ``revision``'s status, to apply server-side, or None if the
    revision shows it already or its function is not one of ``endpoints`` (function name ->
    host:port): the endpoint, the TLS Secret's name, and ``RuntimeHealthy=True`` (the server
    listens; ``now`` is its transition time)."""
    labels = (revision.get("metadata") or {}).get("labels") or {}
    function = labels.get(PARENT_LABEL, "")
    endpoint = endpoints.get(function)
    if endpoint is None:
        return None
    spec = revision.get("spec") or {}
    secret = spec.get("tlsServerSecretName") or tls_server_secret_name(function)
    status = revision.get("status") or {}
    healthy = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == RUNTIME_HEALTHY
            and c.get("status") == "True"
            and c.get("reason") == HEALTHY_REASON
        ),
        None,
    )
    if (
        status.get("endpoint") == endpoint
        and status.get("tlsServerSecretName") == secret
        and healthy is not None
    ):
        return None
    condition = {
        "type": RUNTIME_HEALTHY,
        "status": "True",
        "reason": HEALTHY_REASON,
        "message": f"Served by the development function runtime at {endpoint}.",
        "lastTransitionTime": now,
    }
    return {"endpoint": endpoint, "tlsServerSecretName": secret, "conditions": [condition]}


def function_health(function: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a Function is ``Healthy=True``, and what its conditions say otherwise."""
    conditions = (function.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Healthy" and condition.get("status") == "True":
            return True, ""
    said = [
        f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message', '')})"
        for c in conditions
    ]
    return False, "; ".join(said) or "no conditions yet"


class EndpointWriter:
    """Writes what a package runtime owns (``status.endpoint``, ``tlsServerSecretName``, the
    ``RuntimeHealthy`` condition) into the FunctionRevisions of the served functions.

    ``run()`` lists then watches FunctionRevisions until ``stop()``; each revision seen is
    passed to ``reconcile()``, which writes only when what it owns differs (Crossplane's own
    status updates may drop it; it is written again). A revision of a Function the runtime
    does not serve is reported once in the log and left alone.
    """

    #: The revisions watched; the provider runtime's writer (``_providers``) watches others.
    resource: Resource = FUNCTION_REVISIONS

    def __init__(self, kube: KubeClient, endpoints: Mapping[str, str]) -> None:
        self._kube = kube
        self._endpoints = dict(endpoints)
        self._stopping = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        self._reported: set[str] = set()

    def reconcile(self, revision: Mapping[str, Any]) -> None:
        name = str((revision.get("metadata") or {}).get("name") or "")
        status = status_patch(revision, self._endpoints, now=now_rfc3339())
        if status is None:
            parent = ((revision.get("metadata") or {}).get("labels") or {}).get(PARENT_LABEL)
            if parent not in self._endpoints and name not in self._reported:
                self._reported.add(name)
                log.warning(
                    "A FunctionRevision belongs to a Function this development runtime does "
                    "not serve; it gets no endpoint, so Crossplane cannot call it.",
                    revision=name,
                    function=parent,
                )
            return
        body = {
            "apiVersion": FUNCTION_REVISIONS.api_version,
            "kind": FUNCTION_REVISIONS.kind,
            "metadata": {"name": name},
            "status": status,
        }
        try:
            # Server-side apply: the conditions are a map keyed by type, so Crossplane's own
            # conditions stay; only the runtime's fields are this manager's.
            self._kube.apply_status(FUNCTION_REVISIONS, body, FIELD_MANAGER)
        except NotFoundError:
            return
        log.info(
            "Wrote the endpoint of a FunctionRevision.",
            revision=name,
            endpoint=status["endpoint"],
            tls_server_secret=status["tlsServerSecretName"],
        )

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._list_and_watch()
            except GoneError:
                continue
            except KubeError as e:
                if self._stopping.is_set():
                    return
                log.warning(
                    "Writing FunctionRevision endpoints failed; listing again shortly.",
                    error=str(e),
                )
                self._stopping.wait(_RETRY_INTERVAL)

    def _list_and_watch(self) -> None:
        revisions, resource_version = self._kube.list(self.resource)
        for revision in revisions:
            self.reconcile(revision)
        while not self._stopping.is_set():
            stream = self._kube.watch(self.resource, resource_version, timeout_seconds=60)
            with self._stream_lock:
                if self._stopping.is_set():
                    stream.close()
                    return
                self._stream = stream
            try:
                with stream:
                    for event in stream:
                        if event.type in ("ADDED", "MODIFIED"):
                            self.reconcile(event.object)
            finally:
                with self._stream_lock:
                    self._stream = None
            resource_version = stream.resource_version or resource_version

    def stop(self) -> None:
        self._stopping.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()


class FunctionRuntime(PackageRuntime):
    """The registry, the function servers and the endpoint writer of one Crossplane.

    Files live in ``directory``: ``registry.log``, ``packages/<name>.xpkg``,
    ``functions/<name>.log`` and ``functions/<name>/tls/``.
    """

    def __init__(
        self,
        *,
        directory: Path,
        kube_factory: Callable[[], KubeClient],
        functions: Sequence[FunctionSource],
        tools: Mapping[str, Path],
        stop_timeout: float,
        namespace: str,
    ) -> None:
        super().__init__(
            directory=directory,
            kube_factory=kube_factory,
            tools=tools,
            stop_timeout=stop_timeout,
            namespace=namespace,
            packages=[f.name for f in functions],
            kind="function",
        )
        self.functions = tuple(functions)
        self.registry = ""
        self.endpoints: dict[str, str] = {}
        self.packages: dict[str, str] = {}

    def running(self) -> bool:
        return self._alive()

    def start(self, ca: CertificateAuthority, *, deadline: float, timeout: float) -> None:
        """Registry, packages, servers, Function objects, endpoints; then wait until every
        Function is Healthy and its active revision has its endpoint."""
        self._start_registry(deadline, timeout)
        self._push_packages()
        self._start_servers(ca, deadline, timeout)
        self._start_endpoint_writer()
        self._create_functions()
        self._wait_functions(deadline, timeout)

    # -- steps ---------------------------------------------------------------------------

    def _start_registry(self, deadline: float, timeout: float) -> None:
        from connector.envtest._cluster import free_port

        step = "start the package registry"
        self.dir.mkdir(parents=True, exist_ok=True)
        address = f"127.0.0.1:{free_port()}"
        log_path = self.dir / "registry.log"
        argv = [str(self._tools["registry"]), "--address", address]
        proc = self._launch("registry", argv, log_path, step, cwd=self.dir)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as response:
                    return bool(response.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        _process.wait_ready(
            proc,
            role="registry",
            ready=ready,
            log_path=log_path,
            step=step,
            deadline=deadline,
            timeout=timeout,
            cancelled=self._stopping.is_set,
        )
        self.registry = address

    def _push_packages(self) -> None:
        def build_and_push(function: FunctionSource) -> str:
            return self._build_and_push(
                function.name,
                function.package_root,
                self.registry,
                examples_root=function.examples_root,
            )

        with concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="envtest-xpkg"
        ) as pool:
            references = dict(
                zip(
                    [f.name for f in self.functions],
                    pool.map(build_and_push, self.functions),
                    strict=True,
                )
            )
        self.packages = references

    def _start_servers(self, ca: CertificateAuthority, deadline: float, timeout: float) -> None:
        from connector.envtest._cluster import free_port

        servers: list[tuple[FunctionSource, subprocess.Popen[bytes], int, Path, str]] = []
        for function in self.functions:
            step = f"start the server of {function.name}"
            tls = self.dir / "functions" / function.name / "tls"
            self._serving_tls(function.name, tls, ca)
            port = free_port()
            argv = [
                *function.command,
                "--address",
                f"127.0.0.1:{port}",
                "--tls-certs-dir",
                str(tls),
            ]
            log_path = self.dir / "functions" / f"{function.name}.log"
            proc = self._launch(function.name, argv, log_path, step, cwd=function.cwd)
            servers.append((function, proc, port, log_path, step))
        for function, proc, port, log_path, step in servers:
            _process.wait_ready(
                proc,
                role=function.name,
                ready=lambda port=port: _listening(port),  # type: ignore[misc]
                log_path=log_path,
                step=step,
                deadline=deadline,
                timeout=timeout,
                cancelled=self._stopping.is_set,
            )
            self.endpoints[function.name] = f"127.0.0.1:{port}"

    def _start_endpoint_writer(self) -> None:
        def make(kube: KubeClient) -> EndpointWriter:
            return EndpointWriter(kube, self.endpoints)

        self._start_writer(make, "envtest-function-endpoints")

    def _create_functions(self) -> None:
        with self._kube_factory() as kube:
            for function in self.functions:
                step = f"create the Function {function.name}"
                body = {
                    "apiVersion": FUNCTIONS.api_version,
                    "kind": FUNCTIONS.kind,
                    "metadata": {"name": function.name},
                    "spec": {"package": self.packages[function.name]},
                }
                try:
                    kube.apply(FUNCTIONS, body, FIELD_MANAGER)
                except KubeError as e:
                    raise ClusterStartError(step, str(e)) from e

    def _wait_functions(self, deadline: float, timeout: float) -> None:
        pending = {f.name for f in self.functions}
        last: dict[str, str] = {}
        with self._kube_factory() as kube:
            while pending:
                if self._stopping.is_set():
                    raise ClusterStartError("wait for the Functions", "cancelled")
                for name in sorted(pending):
                    ok, why = self._function_ready(kube, name)
                    if ok:
                        pending.discard(name)
                    else:
                        last[name] = why
                if not pending:
                    return
                for role, proc in list(self._procs.items()):
                    if proc.poll() is not None:
                        raise ClusterStartError(
                            "wait for the Functions",
                            f"{role} exited with code {proc.returncode}",
                            log_path=self._log_of(role),
                        )
                if time.monotonic() >= deadline:
                    waiting = "; ".join(f"{n}: {last.get(n, '?')}" for n in sorted(pending))
                    raise ClusterStartError(
                        "wait for the Functions to be Healthy with an endpoint",
                        f"not within the start-up timeout of {timeout:.0f} s ({waiting})",
                    )
                time.sleep(0.5)

    def _function_ready(self, kube: KubeClient, name: str) -> tuple[bool, str]:
        try:
            function = kube.get(FUNCTIONS, name)
            revisions, _ = kube.list(FUNCTION_REVISIONS, label_selector=f"{PARENT_LABEL}={name}")
        except KubeError as e:
            return False, str(e)
        healthy, why = function_health(function)
        if not healthy:
            return False, why
        active = [r for r in revisions if (r.get("spec") or {}).get("desiredState") == "Active"]
        if not active:
            return False, "no active FunctionRevision yet"
        endpoint = (active[0].get("status") or {}).get("endpoint")
        if endpoint != self.endpoints[name]:
            return False, f"active revision's endpoint is {endpoint!r}"
        return True, ""

    def _log_of(self, role: str) -> Path:
        if role == "registry":
            return self.dir / "registry.log"
        return self.dir / "functions" / f"{role}.log"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
