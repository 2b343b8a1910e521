"""A local Kubernetes cluster on 127.0.0.1: etcd, kube-apiserver with real RBAC, and
kube-controller-manager for what users expect of a cluster without nodes (namespace
deletion, garbage collection, service accounts and their tokens).

Long because :class:`Cluster` is one lifecycle: the files, command lines, readiness waits and
teardown of three processes that start and stop together, plus the admin conveniences tests
use (namespaces, kubeconfigs, clients). Certificates are in ``_certs.py``, process
supervision in ``_process.py``."""

from __future__ import annotations

import atexit
import base64
import concurrent.futures
import http.client
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog
import yaml

from connector.envtest import _process
from connector.envtest._binaries import Binaries, find_binaries
from connector.envtest._certs import CertificateAuthority, KeyPair, new_signing_key_pair
from connector.envtest._errors import ClusterStartError, EnvtestError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from connector.kube import KubeClient

log = structlog.get_logger(__name__)

DEFAULT_STARTUP_TIMEOUT = 90.0
DEFAULT_STOP_TIMEOUT = 15.0
ADMIN_USER = "envtest-admin"
ADMIN_GROUPS = ("system:masters",)
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
DEFAULT_NAMESPACE_DELETE_TIMEOUT = 60.0

#: The controllers kube-controller-manager runs: those whose work shows without nodes,
#: Pods or a cloud. Workload controllers (Deployments, Jobs, ...) stay off: with no
#: scheduler or kubelet they would only create Pods that never run. So does the
#: root-CA publisher: only Pods read its ``kube-root-ca.crt`` ConfigMap, and one more
#: ConfigMap appearing in every namespace at a random moment would race with tests that
#: count what a namespace holds.
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "clusterrole-aggregation-controller",
    "resourcequota-controller",
)

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_POLL_INTERVAL = 0.2
_START_ATTEMPTS = 3

# Ports handed out by this process and not yet reused: two clusters starting in parallel
# must not be given the same "free" port between probing it and binding it.
_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that we have not handed out."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with _ports_lock:
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise EnvtestError("no free TCP port found on 127.0.0.1")


class Cluster:
    """One local cluster: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1.

    ``controller_manager=False`` leaves kube-controller-manager out: deleted namespaces
    then stay ``Terminating`` and nothing collects garbage, for tests that need that.
    ``defer_controller_manager=True`` starts it only when :meth:`start_controller_manager`
    is called (see there why).

    Files live in ``<base_dir>/<name>/`` (certificates, etcd data, ``etcd.log``,
    ``kube-apiserver.log``, ``kube-controller-manager.log``, minted user kubeconfigs); the
    admin kubeconfig is
    ``<base_dir>/<name>.kubeconfig`` with a context named ``<name>``. The admin is a client
    certificate in group ``system:masters``. ``stop()`` removes these files unless
    ``keep_files`` is set; a failed ``start()`` removes only the kubeconfig and keeps the
    rest, so that the logs can be read.

    Use as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        name: str,
        base_dir: Path | str,
        *,
        binaries: Binaries | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        keep_files: bool = False,
        apiserver_port: int | None = None,
        extra_apiserver_args: Sequence[str] = (),
        extra_etcd_args: Sequence[str] = (),
        controller_manager: bool = True,
        defer_controller_manager: bool = False,
        extra_controller_manager_args: Sequence[str] = (),
    ) -> None:
        if not _NAME_RE.match(name) or len(name) > 40:
            raise ValueError(f"cluster name {name!r} must be a short DNS label, e.g. 'consumer'")
        self.name = name
        self.base_dir = Path(base_dir).resolve()
        self.dir = self.base_dir / name
        self.kubeconfig = self.base_dir / f"{name}.kubeconfig"
        self.etcd_log = self.dir / "etcd.log"
        self.apiserver_log = self.dir / "kube-apiserver.log"
        self.controller_manager_log = self.dir / "kube-controller-manager.log"
        self._binaries = binaries
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._keep_files = keep_files
        self._apiserver_port = apiserver_port
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._extra_etcd_args = list(extra_etcd_args)
        self.controller_manager = controller_manager
        self._controller_manager_deferred = controller_manager and defer_controller_manager
        self._extra_controller_manager_args = list(extra_controller_manager_args)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False
        self._ca: CertificateAuthority | None = None
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._controller_manager: subprocess.Popen[bytes] | None = None
        self._pids: dict[str, int] = {}
        self._commands: dict[str, list[str]] = {}
        self.port: int | None = None
        self._last_readiness = ""
        self._etcd_url = ""
        self._started_binaries: Binaries | None = None
        self._log = log.bind(cluster=name)

    # -- public API ---------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The API server URL, e.g. ``https://127.0.0.1:40123``."""
        if self.port is None:
            raise EnvtestError(f"cluster {self.name!r} has not been started")
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The PEM CA certificate that signed the serving and client certificates."""
        return self.dir / "pki" / "ca.crt"

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by role (``etcd``, ``kube-apiserver``, ``kube-controller-manager``),
        kept after they exit."""
        return dict(self._pids)

    @property
    def commands(self) -> dict[str, list[str]]:
        """The command line of each process by role, to recognise a pid as ours later."""
        return {role: list(argv) for role, argv in self._commands.items()}

    @property
    def etcd_url(self) -> str:
        """etcd's client URL, e.g. ``http://127.0.0.1:40124`` (plain HTTP, loopback only)."""
        if not self._etcd_url:
            raise EnvtestError(f"cluster {self.name!r} has not been started")
        return self._etcd_url

    def running(self) -> bool:
        """True while etcd, kube-apiserver and (if wanted) kube-controller-manager run."""
        procs = [self._etcd, self._apiserver]
        if self.controller_manager and not self._controller_manager_deferred:
            procs.append(self._controller_manager)
        return all(p is not None and p.poll() is None for p in procs)

    def start(self) -> Cluster:
        """Start etcd, then kube-apiserver, and wait until ``/readyz`` answers ok; then
        kube-controller-manager, and wait until its controllers work (the ``default``
        ServiceAccount exists).

        Raises:
            ClusterStartError: a step failed (the message names it and shows the tail of
                the relevant log); what had started is stopped again.
            BinariesError: the binaries could not be found or built.
        """
        with self._lock:
            if self._started:
                raise EnvtestError(f"cluster {self.name!r} was already started")
            self._started = True
            self._stopping.clear()
        binaries = self._binaries or find_binaries(controller_manager=self.controller_manager)
        if self.controller_manager and binaries.kube_controller_manager is None:
            raise EnvtestError(
                f"cluster {self.name!r} needs kube-controller-manager, but the binaries given "
                "have none; pass controller_manager=False or binaries that include it"
            )
        self._started_binaries = binaries
        for attempt in range(1, _START_ATTEMPTS + 1):
            deadline = time.monotonic() + self._startup_timeout
            try:
                self._prepare_files()
                self._start_etcd(binaries, deadline)
                self._start_apiserver(binaries, deadline)
                if self.controller_manager and not self._controller_manager_deferred:
                    self._start_controller_manager(binaries, deadline)
                break
            except ClusterStartError as e:
                # A port we probed as free can be taken by another process before our child
                # binds it; with ports of our own choosing, try again on fresh ones.
                retry = (
                    attempt < _START_ATTEMPTS
                    and self._apiserver_port is None
                    and "address already in use" in str(e)
                    and not self._stopping.is_set()
                )
                if not retry:
                    self._fail_start()
                    raise
                self._log.warning("A port was taken; retrying on others.", error=str(e))
                self._terminate_children()
            except BaseException:
                self._fail_start()
                raise
        atexit.register(self.stop)
        self._log.info("Cluster is ready.", server=self.server, kubeconfig=str(self.kubeconfig))
        return self

    def start_controller_manager(self) -> None:
        """Start the kube-controller-manager of a cluster made with
        ``defer_controller_manager=True``, and wait until its controllers work.

        Why later: its garbage collector learns which kinds exist from discovery only every
        30 s (a period kube-controller-manager does not let one change), and foreground
        deletion of an object of a kind it does not know yet waits for that. Started once
        the kinds exist (say, the CRDs Crossplane generates from a freshly published XRD),
        it knows them from its first discovery, as a long-running cluster's would.

        Raises:
            EnvtestError: the cluster has not been started, or its controller manager is not
                deferred (it runs already, or the cluster has none).
            ClusterStartError: kube-controller-manager did not come up (its log's tail).
        """
        with self._lock:
            if not self._started or self._started_binaries is None:
                raise EnvtestError(f"cluster {self.name!r} has not been started")
            if not self._controller_manager_deferred:
                raise EnvtestError(
                    f"cluster {self.name!r} has no deferred kube-controller-manager to start"
                )
            binaries = self._started_binaries
        self._start_controller_manager(binaries, time.monotonic() + self._startup_timeout)
        self._controller_manager_deferred = False

    def stop(self) -> None:
        """Stop kube-controller-manager, kube-apiserver, then etcd, and remove the files
        unless ``keep_files``.

        Safe to call more than once and from another thread while ``start()`` runs (the
        start then fails); never raises for processes that are already gone.
        """
        atexit.unregister(self.stop)
        was_running = self._stop_processes()
        if not self._keep_files:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.kubeconfig.unlink(missing_ok=True)
        if was_running:
            self._log.info("Cluster stopped.")

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (SIGTERM, then SIGKILL); etcd keeps running with the data.

        For fault tests: clients see connection refused on the same URL until
        :meth:`start_apiserver`. Nothing happens if kube-apiserver is not running.
        """
        with self._lock:
            if not self._started:
                raise EnvtestError(f"cluster {self.name!r} has not been started")
            proc, self._apiserver = self._apiserver, None
        if proc is not None:
            _process.terminate(proc, timeout=self._stop_timeout)
            self._log.info("kube-apiserver stopped; etcd keeps running.")

    def start_apiserver(self) -> None:
        """Start kube-apiserver again after :meth:`stop_apiserver` and wait for ``/readyz``.

        It serves on the same port with the same certificates and etcd, so every existing
        kubeconfig (and every object, resourceVersion and uid) stays valid.

        Raises:
            ClusterStartError: it did not become ready (the message shows its log's tail).
        """
        with self._lock:
            if not self._started or self._started_binaries is None:
                raise EnvtestError(f"cluster {self.name!r} has not been started")
            if self._apiserver is not None and self._apiserver.poll() is None:
                raise EnvtestError(f"kube-apiserver of cluster {self.name!r} is running")
            binaries = self._started_binaries
        self._start_apiserver(binaries, time.monotonic() + self._startup_timeout)
        self._log.info("kube-apiserver started again.", server=self.server)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def mint_kubeconfig(
        self, user: str, *, groups: Sequence[str] = (), path: Path | str | None = None
    ) -> Path:
        """Write a kubeconfig for ``user`` in ``groups`` (a client certificate from the CA).

        Nothing grants the identity any permission: tests add the RBAC they mean to test.
        The default path is ``<base_dir>/<name>/users/<user>.kubeconfig``; the context is
        named ``<name>-<user>``.
        """
        if self._ca is None:
            raise EnvtestError(f"cluster {self.name!r} has not been started")
        if not user:
            raise ValueError("user must not be empty")
        if path is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", user)
            path = self.dir / "users" / f"{safe}.kubeconfig"
        path = Path(path)
        client = self._ca.issue_client(user, groups=groups)
        _write_kubeconfig(path, self, context=f"{self.name}-{user}", user=user, client=client)
        return path

    def api_client(self, *, kubeconfig: Path | str | None = None) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` for the admin or the given kubeconfig.

        The caller closes it (it is a context manager): ``with cluster.api_client() as api``.
        """
        from kubernetes import config

        path = Path(kubeconfig) if kubeconfig is not None else self.kubeconfig
        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(path)
        )
        return client

    def create_namespace(self, name: str, *, labels: dict[str, str] | None = None) -> None:
        """Create namespace ``name`` (with ``labels``) as the admin."""
        from connector.kube import NAMESPACES

        metadata: dict[str, Any] = {"name": name}
        if labels:
            metadata["labels"] = dict(labels)
        with self.kube_client() as kube:
            kube.create(NAMESPACES, {"metadata": metadata})

    def delete_namespace(
        self, name: str, *, wait: bool = False, timeout: float = DEFAULT_NAMESPACE_DELETE_TIMEOUT
    ) -> None:
        """Delete namespace ``name`` as the admin; nothing happens if it does not exist.

        kube-controller-manager's namespace controller then deletes what it holds and
        removes it, within seconds. ``wait`` returns only once it is gone (objects whose
        finalizers nothing removes keep it ``Terminating``: :class:`WaitTimeout` names
        them). On a cluster without kube-controller-manager the namespace stays
        ``Terminating``, so ``wait`` is refused there.
        """
        from connector.envtest._wait import eventually
        from connector.kube import NAMESPACES, NotFoundError

        if wait and not self.controller_manager:
            raise EnvtestError(
                f"cluster {self.name!r} runs no kube-controller-manager: a deleted namespace "
                "stays Terminating, so waiting for it to go would never end"
            )
        with self.kube_client() as kube:
            try:
                kube.delete(NAMESPACES, name)
            except NotFoundError:
                return
            if not wait:
                return

            def gone() -> bool:
                try:
                    namespace = kube.get(NAMESPACES, name)
                except NotFoundError:
                    return True
                # The namespace controller says what it waits for in the conditions.
                conditions = (namespace.get("status") or {}).get("conditions") or []
                raise AssertionError(
                    "; ".join(c.get("message", "") for c in conditions if c.get("status") == "True")
                    or "Terminating"
                )

            eventually(gone, what=f"namespace {name} to be gone", timeout=timeout, interval=0.2)

    def kube_client(self, *, kubeconfig: Path | str | None = None) -> KubeClient:
        """A new :class:`~connector.kube.KubeClient` for the admin or the given kubeconfig.

        The caller closes it: ``with cluster.kube_client() as kube``.
        """
        from connector.kube import client_from_kubeconfig_file

        path = Path(kubeconfig) if kubeconfig is not None else self.kubeconfig
        return client_from_kubeconfig_file(path, name=self.name, qps=None)

    # -- start steps --------------------------------------------------------------------

    def _prepare_files(self) -> None:
        step = f"prepare files for cluster '{self.name}'"
        try:
            if self.dir.exists():
                shutil.rmtree(self.dir)
            pki = self.dir / "pki"
            pki.mkdir(parents=True, mode=0o700)
            self.port = self._apiserver_port or free_port()
            ca = CertificateAuthority.create(f"envtest-{self.name}-ca")
            serving = ca.issue_server(
                "kube-apiserver",
                dns_names=["localhost", "kubernetes", "kubernetes.default"],
                ips=["127.0.0.1"],
            )
            self._ca = ca
            _write(pki / "ca.crt", ca.cert_pem)
            _write_secret(pki / "ca.key", ca.key_pem)
            _write(pki / "apiserver.crt", serving.cert_pem)
            _write_secret(pki / "apiserver.key", serving.key_pem)
            signing = new_signing_key_pair()
            _write(pki / "sa.pub", signing.cert_pem)
            _write_secret(pki / "sa.key", signing.key_pem)
            admin = ca.issue_client(ADMIN_USER, groups=ADMIN_GROUPS)
            _write(pki / "admin.crt", admin.cert_pem)
            _write_secret(pki / "admin.key", admin.key_pem)
            _write_kubeconfig(
                self.kubeconfig, self, context=self.name, user=ADMIN_USER, client=admin
            )
            # Its own name in audit logs; system:masters because without per-controller
            # service accounts (--use-service-account-credentials) it needs every right.
            controller_manager = ca.issue_client(CONTROLLER_MANAGER_USER, groups=ADMIN_GROUPS)
            _write_kubeconfig(
                pki / "kube-controller-manager.kubeconfig",
                self,
                context=self.name,
                user=CONTROLLER_MANAGER_USER,
                client=controller_manager,
            )
        except OSError as e:
            raise ClusterStartError(step, f"cannot write files under {self.dir}: {e}") from e

    def _start_etcd(self, binaries: Binaries, deadline: float) -> None:
        step = f"start etcd for cluster '{self.name}'"
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        argv = [
            str(binaries.etcd),
            f"--name={self.name}",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.name}={peer_url}",
            "--initial-cluster-state=new",
            # Throw-away data: durability costs seconds of fsync and buys nothing here.
            "--unsafe-no-fsync",
            *self._extra_etcd_args,
        ]
        self._etcd = self._launch("etcd", argv, self.etcd_log, step)
        self._etcd_url = client_url

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:
                    return b'"health":"true"' in response.read()
            except (OSError, urllib.error.URLError, http.client.HTTPException):
                return False

        self._wait(self._etcd, "etcd", healthy, self.etcd_log, step, deadline)

    def _start_apiserver(self, binaries: Binaries, deadline: float) -> None:
        step = f"start kube-apiserver for cluster '{self.name}'"
        pki = self.dir / "pki"
        argv = [
            str(binaries.kube_apiserver),
            f"--etcd-servers={self._etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.dir / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer=https://127.0.0.1:{self.port}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # Flow control's priority levels add start-up work and nothing a test needs.
            "--enable-priority-and-fairness=false",
            # No nodes, so the "kubernetes" Service endpoints (127.0.0.1 is not a valid
            # endpoint address) would only produce errors in the log.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *self._extra_apiserver_args,
        ]
        self._apiserver = self._launch("kube-apiserver", argv, self.apiserver_log, step)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        url = f"https://127.0.0.1:{self.port}/readyz"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    return bool(response.status == 200)
            except urllib.error.HTTPError as e:
                # The body lists the checks that still fail: the best hint on a timeout.
                body = e.read().decode(errors="replace")
                failing = [line for line in body.splitlines() if line.startswith("[-]")]
                self._last_readiness = f"/readyz answered {e.code}: " + "; ".join(failing)
                return False
            except (OSError, http.client.HTTPException) as e:
                self._last_readiness = f"/readyz: {e}"
                return False

        self._wait(self._apiserver, "kube-apiserver", ready, self.apiserver_log, step, deadline)

    def _start_controller_manager(self, binaries: Binaries, deadline: float) -> None:
        step = f"start kube-controller-manager for cluster '{self.name}'"
        assert binaries.kube_controller_manager is not None
        self._last_readiness = ""
        pki = self.dir / "pki"
        argv = [
            str(binaries.kube_controller_manager),
            f"--kubeconfig={pki / 'kube-controller-manager.kubeconfig'}",
            # One instance per cluster: no lease to wait for at start.
            "--leader-elect=false",
            # No HTTPS endpoint: nothing scrapes it, and it would need its own certificate.
            "--secure-port=0",
            f"--controllers={','.join(CONTROLLERS)}",
            # Signs the tokens of service-account token Secrets with the key the API server
            # verifies (--service-account-key-file), and puts the CA into them.
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            *self._extra_controller_manager_args,
        ]
        self._controller_manager = self._launch(
            "kube-controller-manager", argv, self.controller_manager_log, step
        )
        from connector.kube import SERVICE_ACCOUNTS, KubeError

        # The ServiceAccount controller creates "default" in every namespace once the
        # controllers run: the first sign of life a user would look for.
        kube = self.kube_client()

        def ready() -> bool:
            try:
                kube.get(SERVICE_ACCOUNTS, "default", "default")
            except KubeError as e:
                self._last_readiness = f"ServiceAccount default/default: {e}"
                return False
            return True

        try:
            self._wait(
                self._controller_manager,
                "kube-controller-manager",
                ready,
                self.controller_manager_log,
                step,
                deadline,
            )
        finally:
            kube.close()

    def _launch(
        self, role: str, argv: list[str], log_path: Path, step: str
    ) -> subprocess.Popen[bytes]:
        # Under the lock so that a concurrent stop() either sees this process or prevents it.
        with self._lock:
            if self._stopping.is_set():
                raise ClusterStartError(step, "cancelled: the cluster is being stopped")
            try:
                proc = _process.spawn(argv, log_path=log_path, cwd=self.dir)
            except OSError as e:
                raise ClusterStartError(step, f"cannot run {argv[0]}: {e}") from e
            self._pids[role] = proc.pid
            self._commands[role] = list(argv)
            self._log.debug("Process started.", role=role, pid=proc.pid, log=str(log_path))
            return proc

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        role: str,
        ready: Callable[[], bool],
        log_path: Path,
        step: str,
        deadline: float,
    ) -> None:
        _process.wait_ready(
            proc,
            role=role,
            ready=ready,
            log_path=log_path,
            step=step,
            deadline=deadline,
            timeout=self._startup_timeout,
            cancelled=self._stopping.is_set,
            last_answer=lambda: self._last_readiness,
            interval=_POLL_INTERVAL,
        )

    def _fail_start(self) -> None:
        self._stop_processes()
        # Keep the logs for reading, but not a kubeconfig that points at nothing.
        self.kubeconfig.unlink(missing_ok=True)

    def _stop_processes(self) -> bool:
        """Stop for good (a running start() gives up); True if anything still ran."""
        with self._lock:
            self._stopping.set()
            self._started = False
            return self._terminate_children_locked()

    def _terminate_children(self) -> None:
        with self._lock:
            self._terminate_children_locked()

    def _terminate_children_locked(self) -> bool:
        """Terminate kube-controller-manager, kube-apiserver, then etcd; True if anything
        was still running."""
        procs = [
            p for p in (self._controller_manager, self._apiserver, self._etcd) if p is not None
        ]
        self._controller_manager = self._apiserver = self._etcd = None
        was_running = any(p.poll() is None for p in procs)
        # Apiserver first: it must not see its storage vanish while it still serves.
        for proc in procs:
            _process.terminate(proc, timeout=self._stop_timeout)
        return was_running


def start_clusters(
    names: Sequence[str],
    base_dir: Path | str,
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    keep_files: bool = False,
    controller_manager: bool = True,
    defer_controller_manager: Collection[str] = (),
) -> list[Cluster]:
    """Start one cluster per name in parallel; all or nothing.

    The clusters named in ``defer_controller_manager`` start their kube-controller-manager
    only when asked (:meth:`Cluster.start_controller_manager`).

    Returns the started clusters in the order of ``names``. If any fails, the others are
    stopped (the failed ones keep their logs) and the first failure is raised, with the
    others attached as notes. If the caller is interrupted (Ctrl-C), all are stopped.
    """
    if len(set(names)) != len(names):
        raise ValueError(f"cluster names must be unique, got {list(names)}")
    # Once, before the threads: never two builds at a time.
    binaries = find_binaries(controller_manager=controller_manager)
    clusters = [
        Cluster(
            name,
            base_dir,
            binaries=binaries,
            startup_timeout=startup_timeout,
            keep_files=keep_files,
            controller_manager=controller_manager,
            defer_controller_manager=name in defer_controller_manager,
        )
        for name in names
    ]
    errors: list[BaseException] = []
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, len(clusters)), thread_name_prefix="envtest-start"
    ) as pool:
        futures = [pool.submit(cluster.start) for cluster in clusters]
        try:
            for future in futures:
                error = future.exception()
                if error is not None:
                    errors.append(error)
        except BaseException:
            # Interrupted (Ctrl-C): stop() makes the starting threads give up promptly.
            for cluster in clusters:
                cluster.stop()
            raise
    if errors:
        # A cluster that failed has stopped its processes and keeps its logs for reading.
        for cluster, future in zip(clusters, futures, strict=True):
            if future.exception() is None:
                cluster.stop()
        first = errors[0]
        for other in errors[1:]:
            first.add_note(f"also: {other}")
        raise first
    return clusters


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _write_secret(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)


def _write_kubeconfig(
    path: Path, cluster: Cluster, *, context: str, user: str, client: KeyPair
) -> None:
    """A self-contained kubeconfig (data embedded), so it can be copied into a Secret."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    assert cluster._ca is not None
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster.name,
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": b64(cluster._ca.cert_pem),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster.name, "user": user}}],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)
