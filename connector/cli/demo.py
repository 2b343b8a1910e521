"""``api-connector demo``: the walkthrough, for real, on two local clusters.

Starts a consumer and a provider kube-apiserver on 127.0.0.1, publishes the bindable
``nopresources.nop.example.org`` API on the provider with a small reconciler there (it plays
provider-nop's part: it marks every NopResource ``Ready=True``), runs the connector against
the consumer, applies the walkthrough's manifests from ``examples/walkthrough/`` as they are,
and shows the object synced and its status coming back. Nothing is left running unless
``--keep`` is given, in which case everything runs until Ctrl-C.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import string
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import structlog
import yaml

from connector import logs
from connector.envtest import Cluster, EnvtestError, eventually, start_clusters
from connector.kube import (
    CUSTOM_RESOURCE_DEFINITIONS,
    KubeClient,
    Resource,
    client_from_kubeconfig_file,
)
from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    NAMESPACES,
    SECRETS,
)
from connector.manager import Manager
from connector.runtime import Informer, WorkQueue, run_workers
from connector.shipped import ShippedFileError, chart_dir, walkthrough_dir
from connector.stages import InProcessStages
from functions.common import find_condition

log = structlog.get_logger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOP = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", namespaced=True)
FIELD_MANAGER = "api-connector-demo"
CONSUMER_CLUSTER = "demo-consumer"


class DemoError(click.ClickException):
    """A demo step failed; the message names the step."""


def _resource_of(obj: dict[str, Any]) -> Resource:
    kind = obj["kind"]
    known = {
        "Namespace": NAMESPACES,
        "Secret": SECRETS,
        "CustomResourceDefinition": CUSTOM_RESOURCE_DEFINITIONS,
        "ClusterConnection": CLUSTER_CONNECTIONS,
        "ClusterAPIBinding": CLUSTER_API_BINDINGS,
        "NopResource": NOP,
    }
    if kind not in known:
        raise DemoError(f"The demo does not know how to apply a {kind}.")
    return known[kind]


def _apply_file(client: KubeClient, path: Path, **variables: str) -> list[dict[str, Any]]:
    """Apply every document of ``path`` (with ``${VAR}`` substituted) by server-side apply."""
    text = path.read_text()
    missing = [v for v in variables if f"${{{v}}}" not in text]
    if missing:
        raise DemoError(f"{path} has no placeholder ${{{missing[0]}}} to fill in.")
    # safe_substitute: the manifests' comments show shell commands with $(...) in them.
    text = string.Template(text).safe_substitute(variables)
    docs = [d for d in yaml.safe_load_all(text) if d]
    return [client.apply(_resource_of(d), d, FIELD_MANAGER) for d in docs]


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return find_condition(obj.get("status", {}).get("conditions"), type_)


class NopReconciler:
    """A tiny provider-side controller: every NopResource becomes ``Ready=True``.

    It stands in for Crossplane and provider-nop so that the status the connector syncs back
    is really written by a controller in the provider.
    """

    def __init__(self, provider: KubeClient) -> None:
        self._provider = provider
        self._queue: WorkQueue[tuple[str, str]] = WorkQueue(name="demo-nop")
        self._informer = Informer(provider, NOP, handler=self._on_event, name="demo-nopresources")
        self._workers: Any = None

    def _on_event(self, event: str, obj: dict[str, Any]) -> None:
        if event != "DELETED":
            meta = obj["metadata"]
            self._queue.add((meta.get("namespace", ""), meta["name"]))

    def _reconcile(self, key: tuple[str, str]) -> None:
        obj = self._informer.get(key[0], key[1])
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        if (_condition(obj, "Ready") or {}).get("status") == "True":
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "conditions": [
                {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
                {"type": "Ready", "status": "True", "reason": "Available"},
            ]
        }
        for c in status["conditions"]:
            c["lastTransitionTime"] = now
        self._provider.apply_status(
            NOP,
            {
                "apiVersion": NOP.api_version,
                "kind": NOP.kind,
                "metadata": {"name": key[1], "namespace": key[0]},
                "status": status,
            },
            "demo-nop-reconciler",
        )

    def start(self) -> None:
        self._informer.start()
        self._workers = run_workers(self._queue, 1, self._reconcile, "demo-nop")

    def stop(self) -> None:
        self._queue.shutdown()
        self._informer.stop()
        if self._workers is not None:
            self._workers.stop()


class Demo:
    """The demo's steps, in order; :meth:`run` prints progress as it goes."""

    def __init__(self, out_dir: Path, *, echo: Callable[[str], None]) -> None:
        self.out_dir = out_dir
        self.echo = echo
        self.clusters: list[Cluster] = []
        self.nop: NopReconciler | None = None
        self.manager: Manager | None = None

    def step(self, text: str) -> None:
        self.echo(click.style(f"==> {text}", bold=True))

    def info(self, text: str) -> None:
        self.echo(f"    {text}")

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.stop()

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.stop()
        if self.nop is not None:
            self.nop.stop()
        for cluster in reversed(self.clusters):
            cluster.stop()
        self.clusters = []

    def run(self) -> None:
        try:
            # The chart's crds/ are the connector's CRDs, the ones `install` applies too.
            connect_crds = chart_dir() / "crds"
            walkthrough = walkthrough_dir()
        except ShippedFileError as e:
            raise DemoError(f"The demo {e}.") from e
        self.step("Starting two local clusters on 127.0.0.1: consumer and provider")
        try:
            self.clusters = start_clusters(["consumer", "provider"], self.out_dir, keep_files=True)
        except EnvtestError as e:
            raise DemoError(f"Starting the local clusters failed: {e}") from e
        consumer_cluster, provider_cluster = self.clusters
        for cluster in self.clusters:
            self.info(f"{cluster.name}: {cluster.server} (kubeconfig {cluster.kubeconfig})")
        consumer = client_from_kubeconfig_file(consumer_cluster.kubeconfig, name="consumer")
        provider = client_from_kubeconfig_file(provider_cluster.kubeconfig, name="provider")

        self.step("Publishing a bindable API on the provider: nopresources.nop.example.org")
        for crd in _apply_file(
            provider, walkthrough / "provider" / "nopresources.nop.example.org.yaml"
        ):
            labels = crd["metadata"].get("labels", {})
            self.info(f"CRD {crd['metadata']['name']} labels {labels}")
        eventually(
            lambda: provider.list(NOP)[1] is not None,
            what="the NopResource API to be served by the provider",
        )
        self.nop = NopReconciler(provider)
        self.nop.start()
        self.info("A reconciler in the provider marks every NopResource Ready=True.")

        self.step("Installing the connector's API in the consumer and starting the connector")
        for path in sorted(connect_crds.glob("*.yaml")):
            _apply_file(consumer, path)
        for name in ("clusterconnections", "clusterapibindings", "apibindings"):
            eventually(
                lambda n=name: _condition(  # type: ignore[misc]
                    consumer.get(CUSTOM_RESOURCE_DEFINITIONS, f"{n}.connect.upbound.io"),
                    "Established",
                ),
                what=f"the CRD {name}.connect.upbound.io to be established",
            )
        self.manager = Manager(
            consumer,
            stages=InProcessStages(),
            consumer_cluster=CONSUMER_CLUSTER,
            resync_period=600.0,
        )
        self.manager.start()
        self.info(f"Connector running in-process as consumer cluster {CONSUMER_CLUSTER!r}.")

        self.step("Creating the provider credentials Secret and the ClusterConnection")
        consumer_dir = walkthrough / "consumer"
        _apply_file(consumer, consumer_dir / "00-namespace.yaml")
        kubeconfig_b64 = base64.b64encode(provider_cluster.kubeconfig.read_bytes()).decode()
        _apply_file(
            consumer,
            consumer_dir / "10-secret-kubeconfig.yaml",
            PROVIDER_KUBECONFIG_BASE64=kubeconfig_b64,
        )
        (conn,) = _apply_file(consumer, consumer_dir / "20-clusterconnection.yaml")
        name = conn["metadata"]["name"]

        def connection_ready() -> dict[str, Any] | None:
            obj = consumer.get(CLUSTER_CONNECTIONS, name)
            ready = _condition(obj, "Ready")
            return obj if ready and ready.get("status") == "True" else None

        conn = eventually(connection_ready, what=f"ClusterConnection {name} to become Ready")
        ready = _condition(conn, "Ready") or {}
        self.info(f"{'NAME':<22}{'STATUS':<9}MESSAGE")
        self.info(f"{name:<22}{ready.get('reason', ''):<9}{ready.get('message', '')}")
        offered = [api["name"] for api in conn.get("status", {}).get("offeredAPIs", [])]
        self.info(f"offeredAPIs: {', '.join(offered)}")

        self.step("Binding the API group nop.example.org (ClusterAPIBinding)")
        (binding,) = _apply_file(consumer, consumer_dir / "30-clusterapibinding-group.yaml")
        bname = binding["metadata"]["name"]

        def binding_bound() -> dict[str, Any] | None:
            obj = consumer.get(CLUSTER_API_BINDINGS, bname)
            ready = _condition(obj, "Ready") or {}
            return obj if ready.get("status") == "True" else None

        binding = eventually(binding_bound, what=f"ClusterAPIBinding {bname} to be bound")
        self.info(f"{bname}: {(_condition(binding, 'Ready') or {}).get('message', '')}")
        eventually(
            lambda: consumer.list(NOP)[1] is not None,
            what="the NopResource API to be installed in the consumer",
        )

        self.step("Creating NopResource default/my-resource in the consumer")
        (obj,) = _apply_file(consumer, consumer_dir / "40-nopresource.yaml")
        ns, oname = obj["metadata"]["namespace"], obj["metadata"]["name"]
        twin = eventually(
            lambda: _get_or_none(provider, NOP, oname, ns),
            what=f"NopResource {ns}/{oname} to appear in the provider",
        )
        self.info(f"provider twin spec: {twin.get('spec')}")
        labels = {k: v for k, v in twin["metadata"].get("labels", {}).items()}
        self.info(f"provider twin labels: {labels}")

        def bound_and_ready() -> dict[str, Any] | None:
            current = consumer.get(NOP, oname, ns)
            ready = _condition(current, "Ready") or {}
            bound = _condition(current, "APIBound") or {}
            return current if ready.get("status") == bound.get("status") == "True" else None

        synced = eventually(
            bound_and_ready,
            what=f"NopResource {ns}/{oname} to be Ready and APIBound in the consumer",
        )
        for cond in synced["status"]["conditions"]:
            self.info(
                f"consumer condition {cond['type']}={cond['status']} ({cond.get('reason', '')})"
            )
        self.step("Done: the object is synced and its status came back from the provider.")

    def explore(self, *, kubectl: str) -> None:
        c = f"kubectl --kubeconfig {self.out_dir / 'consumer.kubeconfig'}"
        p = f"kubectl --kubeconfig {self.out_dir / 'provider.kubeconfig'}"
        self.echo("")
        self.echo("Explore (while the demo runs with --keep; kubectl is built into the cache):")
        self.echo(f'  kubectl() {{ "{kubectl}" "$@"; }}')
        for line in (
            f"{c} get clusterconnection",
            f"{c} get clusterconnection provider-connection "
            "-o jsonpath='{.status.offeredAPIs[*].name}'",
            f"{c} get clusterapibinding",
            f"{c} get nopresource my-resource -o yaml",
            f"{p} get nopresource -A --show-labels",
        ):
            self.echo(f"  {line}")


def _get_or_none(client: KubeClient, res: Resource, name: str, ns: str) -> dict[str, Any] | None:
    from connector.kube import NotFoundError

    try:
        return client.get(res, name, ns)
    except NotFoundError:
        return None


def _kubectl_path() -> str:
    import subprocess

    try:
        out = subprocess.run(
            [str(REPO / "tools" / "build.sh"), "kubectl"],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        ).stdout
        return out.split()[1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "kubectl"


@click.command("demo")
@click.option(
    "--dir",
    "out_dir",
    default="_out/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the clusters' files and kubeconfigs go.",
)
@click.option(
    "--keep", is_flag=True, help="Keep the clusters and the connector running until Ctrl-C."
)
@click.pass_context
def demo(ctx: click.Context, out_dir: Path, keep: bool) -> None:
    """Run the walkthrough on two local clusters, end to end."""
    debug = bool(ctx.parent and ctx.parent.params.get("debug"))
    if not debug:
        # Progress goes to stdout; the components' routine logs would drown it.
        logs.configure(level=logging.WARNING)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    d = Demo(out_dir, echo=click.echo)
    with d.running():
        d.run()
        d.explore(kubectl=_kubectl_path())
        if keep:
            click.echo("\nEverything keeps running; press Ctrl-C to stop.")
            stop = threading.Event()
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        else:
            click.echo("\nStopping everything (rerun with --keep to explore).")
