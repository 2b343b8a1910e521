"""``api-connector demo``: the walkthrough, for real, on a consumer and a Crossplane provider.

Starts a consumer and a provider cluster on 127.0.0.1 and real Crossplane on the provider
with the example composition function (``examples/crossplane/function-nop``, Crossplane's
Python SDK). The provider publishes ``nopresources.nop.example.org`` the way a platform team
does: an XRD with claim kind ``NopResource``, labelled bindable, and a Composition whose
pipeline calls the function. The connector runs against the consumer; the walkthrough's
consumer manifests (``examples/walkthrough/consumer/``) are applied as they are. The demo
shows the claim reconciled by Crossplane, its ``Ready=True`` back in the consumer, and then
deletes it on both sides. Nothing is left running unless ``--keep`` is given.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import logging
import string
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from connector import logs
from connector.envtest import (
    EXAMPLE_FUNCTION,
    Cluster,
    Crossplane,
    EnvtestError,
    eventually,
    find_tools,
    start_clusters,
)
from connector.kube import (
    CUSTOM_RESOURCE_DEFINITIONS,
    KubeClient,
    KubeError,
    NotFoundError,
    Resource,
    client_from_kubeconfig_file,
)
from connector.kube.resources import (
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    COMPOSITIONS,
    NAMESPACES,
    SECRETS,
    XRDS,
)
from connector.manager import Manager
from connector.shipped import ShippedFileError, chart_dir, walkthrough_dir
from connector.stages import InProcessStages
from functions.common import find_condition

NOP = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", namespaced=True)
XNOP = Resource("nop.example.org", "v1alpha1", "xnopresources", "XNopResource", namespaced=False)
#: The provider's manifests: the XRD and Composition beside the example function.
CROSSPLANE_EXAMPLES = EXAMPLE_FUNCTION.package_root.parents[1]
BINDABLE = "connect.upbound.io/bindable"
FIELD_MANAGER = "api-connector-demo"
CONSUMER_CLUSTER = "demo-consumer"
#: Crossplane, its function and the objects it composes are slower than a bare apiserver.
CROSSPLANE_TIMEOUT = 120.0


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
        "CompositeResourceDefinition": XRDS,
        "Composition": COMPOSITIONS,
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


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    return find_condition((obj or {}).get("status", {}).get("conditions"), type_) or {}


def _get_or_none(
    client: KubeClient, res: Resource, name: str, ns: str | None = None
) -> dict[str, Any] | None:
    try:
        return client.get(res, name, ns)
    except NotFoundError:
        return None


class Demo:
    """The demo's steps, in order; :meth:`run` prints progress as it goes."""

    def __init__(self, out_dir: Path, *, echo: Callable[[str], None]) -> None:
        self.out_dir = out_dir
        self.echo = echo
        self.clusters: list[Cluster] = []
        self.crossplane: Crossplane | None = None
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
        if self.crossplane is not None:
            self.crossplane.stop()
        for cluster in reversed(self.clusters):
            cluster.stop()
        self.clusters = []

    def run(self) -> None:
        try:
            # The chart's crds/ are the connector's CRDs, the ones `install` applies too.
            connect_crds = chart_dir() / "crds"
            consumer_dir = walkthrough_dir() / "consumer"
        except ShippedFileError as e:
            raise DemoError(f"The demo {e}.") from e
        if not (CROSSPLANE_EXAMPLES / "nop" / "xrd.yaml").is_file():
            raise DemoError(
                f"The demo needs the Crossplane examples of a source checkout, "
                f"{CROSSPLANE_EXAMPLES}; run it from a clone of the repository."
            )
        self.step("Starting two local clusters on 127.0.0.1: consumer and provider")
        try:
            self.clusters = start_clusters(
                ["consumer", "provider"],
                self.out_dir,
                keep_files=True,
                defer_controller_manager=["provider"],
            )
        except EnvtestError as e:
            raise DemoError(f"Starting the local clusters failed: {e}") from e
        consumer_cluster, provider_cluster = self.clusters
        for cluster in self.clusters:
            self.info(f"{cluster.name}: {cluster.server} (kubeconfig {cluster.kubeconfig})")
        consumer = client_from_kubeconfig_file(consumer_cluster.kubeconfig, name="consumer")
        provider = client_from_kubeconfig_file(provider_cluster.kubeconfig, name="provider")

        # Crossplane starts in the background while the connector is set up in the consumer.
        self.crossplane = Crossplane(
            provider_cluster, functions=(EXAMPLE_FUNCTION,), keep_files=True
        )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            crossplane_started = pool.submit(self.crossplane.start)
            self._start_connector(consumer, connect_crds, consumer_dir, provider_cluster)
            self.step("Starting Crossplane on the provider, with the example function")
            try:
                crossplane_started.result()
            except EnvtestError as e:
                raise DemoError(f"Starting Crossplane on the provider failed: {e}") from e
        for function, endpoint in sorted(self.crossplane.endpoints.items()):
            self.info(f"Function {function} (Crossplane's Python SDK) Healthy at {endpoint}")

        self._publish(provider)
        # The provider's garbage collector starts now that the XR kind exists: it learns new
        # kinds only every 30 s, and the claim's Foreground deletion needs it to know the XR's
        # (a provider that has run for a while knows its XRDs' kinds long before a deletion).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            collector_started = pool.submit(provider_cluster.start_controller_manager)
            self._bind(consumer, consumer_dir)
            ns, name = self._create(consumer, provider, consumer_dir)
            try:
                collector_started.result()
            except EnvtestError as e:
                raise DemoError(f"Starting the provider's controller manager failed: {e}") from e
        self._delete(consumer, provider, ns, name)
        self.step("Done: Crossplane reconciled the claim, its status came back, and it is gone.")

    def _start_connector(
        self, consumer: KubeClient, connect_crds: Path, consumer_dir: Path, provider: Cluster
    ) -> None:
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
        _apply_file(consumer, consumer_dir / "00-namespace.yaml")
        _apply_file(
            consumer,
            consumer_dir / "10-secret-kubeconfig.yaml",
            PROVIDER_KUBECONFIG_BASE64=base64.b64encode(provider.kubeconfig.read_bytes()).decode(),
        )
        _apply_file(consumer, consumer_dir / "20-clusterconnection.yaml")

    def _publish(self, provider: KubeClient) -> None:
        self.step("Publishing nopresources.nop.example.org as a platform team does: an XRD")
        (xrd,) = _apply_file(provider, CROSSPLANE_EXAMPLES / "nop" / "xrd.yaml")
        _apply_file(provider, CROSSPLANE_EXAMPLES / "nop" / "composition.yaml")
        self.info(
            f"XRD {xrd['metadata']['name']} (claim kind NopResource) and Composition "
            "calling function-nop applied."
        )
        self.info(f"The XRD is labelled {BINDABLE}={xrd['metadata']['labels'][BINDABLE]}:")
        self.info("  Crossplane generates the claim and XR CRDs from the XRD, owns them and")
        self.info("  reverts labels added to them by hand; it copies the XRD's labels to both.")

        def generated(name: str) -> Callable[[], dict[str, Any] | None]:
            def crd() -> dict[str, Any] | None:
                got = provider.get(CUSTOM_RESOURCE_DEFINITIONS, name)
                bindable = got["metadata"].get("labels", {}).get(BINDABLE) == "true"
                established = _condition(got, "Established").get("status") == "True"
                return got if bindable and established else None

            return crd

        for name in ("nopresources.nop.example.org", "xnopresources.nop.example.org"):
            got = eventually(generated(name), what=f"Crossplane to serve the CRD {name}, bindable")
            self.info(f"generated CRD {name}: {BINDABLE}={got['metadata']['labels'][BINDABLE]}")

    def _bind(self, consumer: KubeClient, consumer_dir: Path) -> None:
        def offered() -> dict[str, Any] | None:
            conn = consumer.get(CLUSTER_CONNECTIONS, "provider-connection")
            names = [api["name"] for api in conn.get("status", {}).get("offeredAPIs", [])]
            ready = _condition(conn, "Ready").get("status") == "True"
            return conn if ready and "nopresources.nop.example.org" in names else None

        conn = eventually(offered, what="the ClusterConnection to offer the NopResource claim")
        ready = _condition(conn, "Ready")
        self.info(f"provider-connection: {ready.get('reason', '')}: {ready.get('message', '')}")
        status = conn.get("status", {})
        self.info(f"offeredAPIs: {', '.join(a['name'] for a in status.get('offeredAPIs', []))}")
        for api in status.get("withheldAPIs", []):
            self.info(f"withheldAPIs: {api['name']}: {api.get('message', '')}")

        self.step("Binding the API group nop.example.org (ClusterAPIBinding)")
        (binding,) = _apply_file(consumer, consumer_dir / "30-clusterapibinding-group.yaml")
        bname = binding["metadata"]["name"]

        def bound() -> dict[str, Any] | None:
            obj = consumer.get(CLUSTER_API_BINDINGS, bname)
            return obj if _condition(obj, "Ready").get("status") == "True" else None

        binding = eventually(bound, what=f"ClusterAPIBinding {bname} to be bound")
        self.info(f"{bname}: {_condition(binding, 'Ready').get('message', '')}")
        eventually(
            lambda: consumer.list(NOP)[1] is not None,
            what="the NopResource API to be installed in the consumer",
        )

    def _create(
        self, consumer: KubeClient, provider: KubeClient, consumer_dir: Path
    ) -> tuple[str, str]:
        self.step("Creating NopResource default/my-resource in the consumer")
        (obj,) = _apply_file(consumer, consumer_dir / "40-nopresource.yaml")
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]

        def composed() -> dict[str, Any] | None:
            twin = _get_or_none(provider, NOP, name, ns)
            return twin if twin and twin.get("spec", {}).get("resourceRef") else None

        twin = eventually(
            composed,
            what=f"Crossplane to compose the claim {ns}/{name} in the provider",
            timeout=CROSSPLANE_TIMEOUT,
        )
        spec = twin["spec"]
        self.info(f"provider claim: coolField={spec.get('coolField')!r}")
        ref = spec["resourceRef"]
        self.info(f"  Crossplane composed it: resourceRef {ref.get('kind')}/{ref.get('name')}")

        def bound_and_ready() -> dict[str, Any] | None:
            current = consumer.get(NOP, name, ns)
            ready, bound = _condition(current, "Ready"), _condition(current, "APIBound")
            return current if ready.get("status") == bound.get("status") == "True" else None

        synced = eventually(
            bound_and_ready,
            what=f"NopResource {ns}/{name} to be Ready (Crossplane's) and APIBound in the consumer",
            timeout=CROSSPLANE_TIMEOUT,
        )
        self.info(f"consumer object, generation {synced['metadata']['generation']}:")
        for cond in synced["status"]["conditions"]:
            self.info(
                f"  {cond['type']}={cond['status']} ({cond.get('reason', '')}), "
                f"observedGeneration {cond.get('observedGeneration', '-')}"
            )
        self.info("Ready and Synced are Crossplane's own conditions; APIBound is the connector's.")
        return ns, name

    def _delete(self, consumer: KubeClient, provider: KubeClient, ns: str, name: str) -> None:
        twin = _get_or_none(provider, NOP, name, ns) or {}
        policy = twin.get("spec", {}).get("compositeDeletePolicy", "Background")
        xr = twin.get("spec", {}).get("resourceRef", {}).get("name", "")
        self.step(
            f"Deleting NopResource {ns}/{name} in the consumer (compositeDeletePolicy {policy})"
        )
        consumer.delete(NOP, name, ns)
        seen: list[str] = []

        def gone() -> bool:
            obj = _get_or_none(consumer, NOP, name, ns)
            bound = _condition(obj, "APIBound")
            if bound.get("reason") == "Deleting" and bound.get("message") not in seen:
                seen.append(str(bound.get("message")))
                self.info(f"consumer APIBound=True (Deleting): {bound.get('message')}")
            return obj is None

        try:
            eventually(gone, what=f"NopResource {ns}/{name} to be gone", timeout=CROSSPLANE_TIMEOUT)
        except KubeError as e:
            raise DemoError(f"Deleting the NopResource failed: {e}") from e
        left = [
            what
            for what, obj in (
                (f"claim {ns}/{name}", _get_or_none(provider, NOP, name, ns)),
                (f"XR {xr}", _get_or_none(provider, XNOP, xr) if xr else None),
            )
            if obj is not None
        ]
        if left:
            raise DemoError(f"The consumer object is gone but the provider still has {left}.")
        self.info(f"Gone in the consumer; in the provider the claim and XR {xr} are gone too.")

    def explore(self, *, kubectl: str) -> None:
        c = f"kubectl --kubeconfig {self.out_dir / 'consumer.kubeconfig'}"
        p = f"kubectl --kubeconfig {self.out_dir / 'provider.kubeconfig'}"
        self.echo("")
        self.echo("Explore (while the demo runs with --keep; kubectl is built into the cache):")
        self.echo(f'  kubectl() {{ "{kubectl}" "$@"; }}')
        for line in (
            f"{c} get clusterconnection provider-connection -o yaml",
            f"{c} get clusterapibinding",
            f"{c} apply -f examples/walkthrough/consumer/40-nopresource.yaml",
            f"{c} get nopresource my-resource -o yaml",
            f"{p} get xrd,composition,function",
            f"{p} get nopresource,xnopresource,configmap -A --show-labels",
        ):
            self.echo(f"  {line}")


def _kubectl_path() -> str:
    try:
        return str(find_tools(["kubectl"])["kubectl"])
    except EnvtestError:
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
    "--keep", is_flag=True, help="Keep the clusters, Crossplane and the connector running."
)
@click.pass_context
def demo(ctx: click.Context, out_dir: Path, keep: bool) -> None:
    """Run the walkthrough on a consumer and a Crossplane provider, end to end."""
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
