"""``api-connector clusters``: start and stop local consumer and provider clusters.

``up`` holds the clusters in the foreground until Ctrl-C or SIGTERM; ``up --detach`` starts
that same foreground command as a detached supervisor process and returns once the clusters
are ready. ``up --crossplane`` also runs Crossplane and its functions on the provider; the
supervisor writes the functions' endpoints into their revisions for as long as it runs (its
children die with it). ``up --provider-kubernetes`` (implies ``--crossplane``) also installs
provider-kubernetes and runs it, with the ProviderConfig ``consumer`` reaching the consumer.
A state file (``<dir>/clusters.json``) records the supervisor and the pids of every process
so that ``down`` can stop them from any shell.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click

from connector.envtest import _process
from connector.envtest._binaries import find_binaries, find_tools
from connector.envtest._cluster import DEFAULT_STARTUP_TIMEOUT, Cluster, start_clusters
from connector.envtest._crossplane import (
    DEFAULT_CROSSPLANE_TIMEOUT,
    NAMESPACE,
    TOOLS,
    Crossplane,
)
from connector.envtest._errors import EnvtestError, log_excerpt
from connector.envtest._providers import (
    CONSUMER_PROVIDER_CONFIG,
    PROVIDER_KUBERNETES,
    connect_cluster,
)

CLUSTER_NAMES = ("consumer", "provider")
STATE_FILE = "clusters.json"
SUPERVISOR_LOG = "supervisor.log"
DEFAULT_DIR = Path("_out/clusters")
_DOWN_TIMEOUT = 30.0
_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DIR,
    show_default=True,
    help="Where kubeconfigs, logs and the state file go.",
)


@click.group()
def clusters() -> None:
    """Local consumer and provider clusters (etcd, kube-apiserver, kube-controller-manager on
    127.0.0.1), optionally with Crossplane on the provider."""


@clusters.command()
@_dir_option
@click.option(
    "--detach",
    is_flag=True,
    help="Run in the background and return once both clusters are ready.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_STARTUP_TIMEOUT,
    show_default=True,
    help="Seconds each cluster may take to become ready.",
)
@click.option(
    "--crossplane",
    is_flag=True,
    help="Also run Crossplane on the provider, with the stages' Functions and the example "
    "function installed and served.",
)
@click.option(
    "--provider-kubernetes",
    is_flag=True,
    help="Also install and run provider-kubernetes under Crossplane (implies --crossplane), "
    f"with a ProviderConfig '{CONSUMER_PROVIDER_CONFIG}' that reaches the consumer cluster: "
    "what the crd-puller's Composition delivers CRDs with.",
)
@click.option(
    "--crossplane-timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_CROSSPLANE_TIMEOUT,
    show_default=True,
    help="Seconds Crossplane and its Functions may take to become ready.",
)
@click.option(
    "--controller-manager/--no-controller-manager",
    default=True,
    show_default=True,
    help="Run kube-controller-manager in each cluster (namespace deletion, garbage "
    "collection, service accounts).",
)
def up(
    directory: Path,
    detach: bool,
    timeout: float,
    crossplane: bool,
    provider_kubernetes: bool,
    crossplane_timeout: float,
    controller_manager: bool,
) -> None:
    """Start the consumer and provider clusters and write their kubeconfigs to DIR."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _refuse_if_running(directory)
    (directory / STATE_FILE).unlink(missing_ok=True)
    options = _Options(
        timeout=timeout,
        crossplane=crossplane or provider_kubernetes,
        provider_kubernetes=provider_kubernetes,
        crossplane_timeout=crossplane_timeout,
        controller_manager=controller_manager,
    )
    if detach:
        _up_detached(directory, options)
    else:
        _up_foreground(directory, options)


@clusters.command()
@_dir_option
def down(directory: Path) -> None:
    """Stop the clusters started with ``up`` in DIR and remove their files."""
    directory = directory.resolve()
    state = _read_state(directory)
    if state is None:
        click.echo(f"Nothing is running in {directory} (no {STATE_FILE}).")
        return
    stopped_any = False
    supervisor = int(state.get("supervisor_pid", 0))
    if supervisor and _is_supervisor(supervisor):
        stopped_any = True
        # The supervisor stops its clusters in order and removes their files.
        _signal(supervisor, signal.SIGTERM)
        if not _process.wait_pid_gone(supervisor, timeout=_DOWN_TIMEOUT):
            click.echo(
                f"Supervisor {supervisor} did not stop within {_DOWN_TIMEOUT:.0f} s; killing it.",
                err=True,
            )
            _signal(supervisor, signal.SIGKILL)
            _process.wait_pid_gone(supervisor, timeout=5)
    # Fallback: the recorded processes, if the supervisor could not stop them. Crossplane
    # and its functions first, then each cluster's controller manager, API server and etcd.
    groups = [state.get("crossplane") or {}, *state.get("clusters", {}).values()]
    for info in groups:
        commands = info.get("commands", {})
        for role, pid in info.get("pids", {}).items():
            if _process.pid_alive(pid) and _looks_like(pid, role, commands.get(role)):
                stopped_any = True
                _signal(pid, signal.SIGKILL)
                _process.wait_pid_gone(pid, timeout=5)
    _remove_files(directory)
    if stopped_any:
        click.echo(f"Stopped clusters {', '.join(CLUSTER_NAMES)} in {directory}.")
    else:
        click.echo(f"Nothing was running in {directory}; removed the stale state.")


# -- up ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    timeout: float
    crossplane: bool
    crossplane_timeout: float
    controller_manager: bool
    provider_kubernetes: bool = False

    def argv(self) -> list[str]:
        """The same options for the detached supervisor's command line."""
        out = ["--timeout", str(self.timeout)]
        if self.crossplane:
            out += ["--crossplane", "--crossplane-timeout", str(self.crossplane_timeout)]
        if self.provider_kubernetes:
            out.append("--provider-kubernetes")
        if not self.controller_manager:
            out.append("--no-controller-manager")
        return out


def _up_foreground(directory: Path, options: _Options) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM (from `down`) and SIGHUP (terminal closed) stop cleanly, like Ctrl-C; SIGINT
    # is set explicitly because a shell starts background jobs with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    _write_state(directory, {"supervisor_pid": os.getpid(), "status": "starting"})
    started: list[Cluster] = []
    crossplane: Crossplane | None = None
    try:
        try:
            started = start_clusters(
                CLUSTER_NAMES,
                directory,
                startup_timeout=options.timeout,
                controller_manager=options.controller_manager,
            )
            if options.crossplane:
                # The clusters' pids are recorded while Crossplane starts (minutes, on a
                # first run that builds it), for a `down` from another shell meanwhile.
                _write_state(directory, _state(started, None, status="starting"))
                providers = (PROVIDER_KUBERNETES,) if options.provider_kubernetes else ()
                crossplane = Crossplane(
                    started[1], providers=providers, startup_timeout=options.crossplane_timeout
                )
                crossplane.start()
                if providers:
                    with crossplane.cluster.kube_client(kubeconfig=crossplane.kubeconfig) as kube:
                        connect_cluster(kube, started[0], namespace=NAMESPACE)
        except EnvtestError as e:
            _write_state(
                directory, {"supervisor_pid": os.getpid(), "status": "failed", "error": str(e)}
            )
            raise click.ClickException(str(e)) from e
        _write_state(directory, _state(started, crossplane, status="ready"))
        click.echo(_usage(directory, detached=False, crossplane=crossplane))
        while all(c.running() for c in started) and (crossplane is None or crossplane.running()):
            time.sleep(1)
        dead = [f"cluster {c.name}" for c in started if not c.running()]
        if crossplane is not None and not crossplane.running():
            dead.append("provider's Crossplane")
        raise click.ClickException(
            f"{', '.join(dead)} stopped unexpectedly; see the logs under {directory}"
        )
    except KeyboardInterrupt:
        click.echo("Stopping the clusters ...")
    finally:
        # A second Ctrl-C must not cut the orderly stop short; every stop step is bounded.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if crossplane is not None:
            crossplane.stop()
        for cluster in reversed(started):
            cluster.stop()
        state = _read_state(directory)
        if state is not None and state.get("status") != "failed":
            (directory / STATE_FILE).unlink(missing_ok=True)
    click.echo("Clusters stopped.")


def _up_detached(directory: Path, options: _Options) -> None:
    # A first-run build happens here, not inside the bounded wait below.
    try:
        find_binaries(controller_manager=options.controller_manager)
        if options.crossplane:
            find_tools(
                [*TOOLS, *([PROVIDER_KUBERNETES.tool] if options.provider_kubernetes else [])]
            )
    except EnvtestError as e:
        raise click.ClickException(str(e)) from e
    log_path = directory / SUPERVISOR_LOG
    argv = [
        sys.executable,
        "-m",
        "connector.envtest",
        "up",
        "--dir",
        str(directory),
        *options.argv(),
    ]
    # posix_spawn rather than Popen: the supervisor must outlive us, and there is no
    # Popen object to complain that it is still running when we exit.
    pid = os.posix_spawn(
        sys.executable,
        argv,
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )
    # Both clusters start in parallel, each within `timeout`, then Crossplane; the binaries
    # were found (or built, which can take many minutes) before, so this bounds start-up only.
    bound = options.timeout + 30 + (options.crossplane_timeout if options.crossplane else 0)
    deadline = time.monotonic() + bound
    while True:
        state = _read_state(directory)
        if state is not None and state.get("supervisor_pid") == pid:
            if state.get("status") == "ready":
                click.echo(_usage(directory, detached=True, crossplane=state.get("crossplane")))
                return
            if state.get("status") == "failed":
                _process.wait_pid_gone(pid, timeout=_DOWN_TIMEOUT)
                raise click.ClickException(
                    f"{state.get('error', 'unknown error')}\n(supervisor log: {log_path})"
                )
        if not _process.pid_alive(pid):
            raise click.ClickException(
                f"the cluster supervisor exited before the clusters were ready;\n"
                f"{log_excerpt(log_path)}"
            )
        if time.monotonic() >= deadline:
            _signal(pid, signal.SIGTERM)
            if not _process.wait_pid_gone(pid, timeout=_DOWN_TIMEOUT):
                _signal(pid, signal.SIGKILL)
            raise click.ClickException(
                f"the clusters were not ready within {bound:.0f} s; stopped them.\n"
                f"{log_excerpt(log_path)}"
            )
        time.sleep(0.2)


def _state(started: list[Cluster], crossplane: Crossplane | None, *, status: str) -> dict[str, Any]:
    state: dict[str, Any] = {
        "supervisor_pid": os.getpid(),
        "status": status,
        "clusters": {
            c.name: {
                "server": c.server,
                "kubeconfig": str(c.kubeconfig),
                "pids": c.pids,
                "commands": c.commands,
            }
            for c in started
        },
    }
    if crossplane is not None:
        state["crossplane"] = {
            "cluster": crossplane.cluster.name,
            "registry": crossplane.registry,
            "endpoints": crossplane.endpoints,
            "packages": crossplane.packages,
            "providers": crossplane.provider_packages,
            "pids": crossplane.pids,
            "commands": crossplane.commands,
        }
    return state


def _usage(
    directory: Path, *, detached: bool, crossplane: Crossplane | dict[str, Any] | None = None
) -> str:
    consumer = directory / "consumer.kubeconfig"
    provider = directory / "provider.kubeconfig"
    stop = (
        f"api-connector clusters down --dir {directory}"
        if detached
        else f"Ctrl-C here, or api-connector clusters down --dir {directory}"
    )
    return "\n".join(
        [
            "Clusters are ready:",
            f"  consumer  {consumer}",
            f"  provider  {provider}",
            "",
            "Use them with kubectl:",
            f"  kubectl --kubeconfig {consumer} get ns",
            f"  export KUBECONFIG={provider}",
            "or from Python:",
            "  from kubernetes import client, config",
            f'  api = config.new_client_from_config(config_file="{consumer}")',
            "  client.CoreV1Api(api).list_namespace()",
            "",
            f"Logs: {directory}/<cluster>/kube-apiserver.log, kube-controller-manager.log, "
            "etcd.log",
            *(_crossplane_usage(directory, crossplane) if crossplane is not None else []),
            f"Stop: {stop}",
        ]
    )


def _crossplane_usage(directory: Path, crossplane: Crossplane | dict[str, Any]) -> list[str]:
    if isinstance(crossplane, Crossplane):
        endpoints, registry = crossplane.endpoints, crossplane.registry
        providers = crossplane.provider_packages
    else:
        endpoints, registry = crossplane.get("endpoints", {}), crossplane.get("registry", "")
        providers = crossplane.get("providers", {})
    provider = directory / "provider.kubeconfig"
    provider_lines = [
        f"Providers (local processes; logs in {directory}/provider-crossplane/providers/):",
        *(f"  {name:<36} {package}" for name, package in sorted(providers.items())),
        f"  ProviderConfig '{CONSUMER_PROVIDER_CONFIG}' reaches the consumer cluster:",
        f"  kubectl --kubeconfig {provider} get providers,providerconfigs,objects",
    ]
    return [
        "",
        "Crossplane runs on the provider (package runtime External; this process serves",
        f"the Functions and writes their endpoints). Registry: {registry}",
        *(f"  {name:<36} {endpoint}" for name, endpoint in sorted(endpoints.items())),
        f"  kubectl --kubeconfig {provider} get xrd,functions,functionrevisions",
        f"Logs: {directory}/provider-crossplane/crossplane.log, functions/<function>.log",
        *(provider_lines if providers else []),
    ]


# -- state ---------------------------------------------------------------------------------


def _refuse_if_running(directory: Path) -> None:
    state = _read_state(directory)
    if state is None:
        return
    supervisor = int(state.get("supervisor_pid", 0))
    if supervisor and _is_supervisor(supervisor):
        raise click.ClickException(
            f"clusters are already running in {directory} (supervisor pid {supervisor}); "
            f"stop them with: api-connector clusters down --dir {directory}"
        )


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read {directory / STATE_FILE}: {e}") from e
    if not isinstance(data, dict):
        raise click.ClickException(f"{directory / STATE_FILE} is not a JSON object")
    return data


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    # Write then rename: a reader polling the file never sees half of it.
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(directory / STATE_FILE)


def _remove_files(directory: Path) -> None:
    import shutil

    for name in CLUSTER_NAMES:
        shutil.rmtree(directory / name, ignore_errors=True)
        shutil.rmtree(directory / f"{name}-crossplane", ignore_errors=True)
        (directory / f"{name}.kubeconfig").unlink(missing_ok=True)
    (directory / STATE_FILE).unlink(missing_ok=True)


# -- processes -----------------------------------------------------------------------------


def _is_supervisor(pid: int) -> bool:
    """True if ``pid`` runs and is one of ours (a pid may have been reused since)."""
    if not _process.pid_alive(pid):
        return False
    cmdline = _process.pid_cmdline(pid)
    return not cmdline or any("connector" in part for part in cmdline)


def _looks_like(pid: int, role: str, command: list[str] | None = None) -> bool:
    """True if ``pid`` runs the recorded ``command`` (or, without one, a binary named
    ``role``): a recorded pid may have been reused by another process since."""
    cmdline = _process.pid_cmdline(pid)
    if command:
        return cmdline == command
    return bool(cmdline) and Path(cmdline[0]).name == role


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        raise click.ClickException(f"not allowed to signal process {pid}: {e}") from e
