"""The connector's Helm release: the chart, planning the release, running helm, and waiting.

Planning decides, before anything is written, whether helm runs at all: a rerun with the
same values leaves a deployed release alone, ``--upgrade`` keeps the APIs other connections
bound, and anything else that exists is refused. A release of the same name that another
chart installed (Upbound's) is told apart by this chart's annotation
(:data:`~connector.install.options.CHART_ANNOTATION`); ``--upgrade`` replaces it, keeping its
``consumerClusterDisplayName`` and ``pollInterval`` (:mod:`~connector.install.takeover` does
the rest). The waits are bounded and report each change of state once.
"""

from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connector.helm import Helm, HelmError, Release, Runner, find_helm
from connector.install.options import (
    CHART_ANNOTATION,
    DEFAULT_POLL_INTERVAL,
    RELEASE,
    ClusterAccess,
    InstallError,
    InstallOptions,
    Report,
    counted,
    duration,
)
from connector.install.values import bound_apis_value, merge_values, union_bound_apis
from connector.kube import CLUSTER_CONNECTIONS, CUSTOM_RESOURCE_DEFINITIONS, KubeClient, KubeError
from connector.kube.resources import PODS
from connector.shipped import ShippedFileError, chart_dir
from functions.binder import BoundResource
from functions.common import find_condition

__all__ = [
    "CRD_ESTABLISHED_TIMEOUT",
    "READY_POLL_INTERVAL",
    "ExistingRelease",
    "ReleasePlan",
    "chart_crds",
    "find_chart",
    "inspect_release",
    "install_release",
    "open_helm",
    "plan_release",
    "wait_connector_gone",
    "wait_established",
    "wait_ready",
]

#: Seconds between two looks at the ClusterConnection while waiting for Ready.
READY_POLL_INTERVAL = 1.0
CRD_ESTABLISHED_TIMEOUT = 30.0


def find_chart(chart: str | None, version: str | None) -> tuple[str, Path | None]:
    """The chart to install and, for a local chart, its directory (for its ``crds/``).

    Default: the chart shipped with this package (:func:`connector.shipped.chart_dir`): the
    installed package's copy, or ``package/helm/api-connector`` in a source checkout. A chart
    archive (``.tgz``, what ``helm package`` and ``up``'s ``--bundle`` use) is unpacked into
    a temporary directory that lives as long as the process.
    """
    if chart is None:
        try:
            directory: Path | None = chart_dir()
        except ShippedFileError as e:
            raise InstallError(f"{e}; pass --chart with a chart directory or reference.") from e
    else:
        candidate = Path(chart).expanduser()
        if candidate.is_file():
            directory = _unpack_chart(candidate)
        else:
            directory = candidate if (candidate / "Chart.yaml").is_file() else None
        if directory is None and (candidate.exists() or chart.startswith((".", "/"))):
            raise InstallError(f"--chart {chart}: no Chart.yaml there.")
    if directory is None:
        return str(chart), None
    if version:
        have = str(_chart_meta(directory).get("version") or "")
        if have != version:
            raise InstallError(
                f"--version {version}: the chart in {directory} is version {have}; pass "
                "--chart with a chart of that version (a directory or a repo/OCI reference)."
            )
    return str(directory), directory


def _unpack_chart(archive: Path) -> Path:
    """The chart directory inside a chart archive, unpacked into a temporary directory."""
    if not tarfile.is_tarfile(archive):
        raise InstallError(
            f"--chart {archive}: neither a chart directory nor a chart archive (.tgz)."
        )
    target = Path(tempfile.mkdtemp(prefix="api-connector-chart-"))
    atexit.register(shutil.rmtree, target, True)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, links out of the target and devices.
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise InstallError(f"--chart {archive}: cannot unpack the chart archive: {e}") from e
    charts = [c.parent for c in target.glob("*/Chart.yaml")]
    if len(charts) != 1:
        raise InstallError(
            f"--chart {archive}: expected one chart (a directory with a Chart.yaml) in the "
            f"archive, found {len(charts)}."
        )
    return charts[0]


def _chart_meta(directory: Path) -> dict[str, Any]:
    meta = yaml.safe_load((directory / "Chart.yaml").read_text()) or {}
    return meta if isinstance(meta, dict) else {}


def is_our_chart(directory: Path | None) -> bool:
    """Whether a chart directory holds this project's chart (its annotation)."""
    if directory is None:
        return False
    annotations = _chart_meta(directory).get("annotations")
    return isinstance(annotations, dict) and CHART_ANNOTATION in annotations


def chart_crds(directory: Path | None) -> list[dict[str, Any]]:
    """The CRDs in a chart directory's ``crds/``, which install applies itself."""
    if directory is None or not (directory / "crds").is_dir():
        return []
    docs: list[dict[str, Any]] = []
    for path in sorted((directory / "crds").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
    return docs


def _chart_version(directory: Path | None) -> str | None:
    if directory is None:
        return None
    meta = _chart_meta(directory)
    return f"{meta.get('name')}-{meta.get('version')}"


def open_helm(
    consumer: ClusterAccess, *, binary: str | None, timeout: float, run: Runner | None = None
) -> Helm:
    """helm for the consumer cluster: ``binary`` (``--helm``) or the one :func:`find_helm`
    finds; ``run`` replaces the process runner (tests)."""
    try:
        found = find_helm(binary)
    except HelmError as e:
        raise InstallError(str(e)) from e
    return Helm(
        found,
        kubeconfig=consumer.kubeconfig,
        context=consumer.context,
        timeout=timeout,
        **({"run": run} if run else {}),
    )


@dataclass(frozen=True, kw_only=True)
class ExistingRelease:
    """The Helm release ``api-connector`` found in the namespace."""

    release: Release
    #: Its user-supplied values (``helm get values``).
    values: dict[str, Any]
    #: Installed from this project's chart; False: another chart of the same name (Upbound's
    #: API Connector), which ``install --upgrade`` takes over.
    ours: bool


def inspect_release(helm: Helm, namespace: str) -> ExistingRelease | None:
    """The release in ``namespace``, its values and whose chart it is; None if there is none."""
    try:
        release = helm.release(RELEASE, namespace)
        if release is None:
            return None
        values = helm.values(RELEASE, namespace)
    except HelmError as e:
        raise InstallError(str(e)) from e
    try:
        meta = helm.metadata(RELEASE, namespace)
    except HelmError as e:
        raise InstallError(
            f"{e} Telling which chart installed the release needs `helm get metadata` "
            "(Helm 3.13 or newer); pass a newer helm with --helm."
        ) from e
    annotations = meta.get("annotations")
    ours = isinstance(annotations, dict) and CHART_ANNOTATION in annotations
    return ExistingRelease(release=release, values=values, ours=ours)


def carried_over(existing: ExistingRelease | None, key: str) -> str | None:
    """A value of a release taken over from another chart that this chart keeps
    (``consumerClusterDisplayName``, ``pollInterval``), or None."""
    if existing is None or existing.ours:
        return None
    value = existing.values.get(key)
    return str(value) if isinstance(value, str | int) and str(value) else None


@dataclass(frozen=True, kw_only=True)
class ReleasePlan:
    existing: ExistingRelease | None
    values: dict[str, Any]
    #: False: the release is deployed with these values already; helm is not run.
    run_helm: bool

    @property
    def takeover(self) -> bool:
        """The release was installed by another chart and is replaced by this one."""
        return self.existing is not None and not self.existing.ours


def plan_release(
    opts: InstallOptions,
    existing: ExistingRelease | None,
    directory: Path | None,
    consumer_name: str,
    resources: Sequence[BoundResource],
) -> ReleasePlan:
    """The values to install, and whether helm must run."""
    poll_interval = (
        opts.poll_interval or carried_over(existing, "pollInterval") or DEFAULT_POLL_INTERVAL
    )
    computed = {
        "consumerClusterDisplayName": consumer_name,
        "pollInterval": poll_interval,
        "boundAPIs": bound_apis_value(resources),
    }
    values = merge_values(computed, opts.values)
    if existing is None:
        return ReleasePlan(existing=None, values=values, run_helm=True)
    release = existing.release
    if not existing.ours:
        if opts.upgrade:
            return ReleasePlan(existing=existing, values=values, run_helm=True)
        raise InstallError(
            f"the Helm release {RELEASE} in namespace {opts.namespace} was installed by "
            f"another chart ({release.chart}, not api-connector's own; Upbound's API "
            "Connector?). Rerun with --upgrade to replace it: ClusterConnections, bindings, "
            "pulled CRDs and objects are kept (see docs/migrate-from-upbound.md); add "
            "--dry-run to see what would change first."
        )
    if opts.upgrade:
        # Several connections share the one connector: keep the APIs others bound.
        if "boundAPIs" not in opts.values:
            values["boundAPIs"] = union_bound_apis(
                existing.values.get("boundAPIs"), values["boundAPIs"]
            )
        return ReleasePlan(existing=existing, values=values, run_helm=True)
    same_chart = directory is None or release.chart == _chart_version(directory)
    if release.status == "deployed" and same_chart and existing.values == values:
        return ReleasePlan(existing=existing, values=values, run_helm=False)
    raise InstallError(
        f"the Helm release {RELEASE} already exists in namespace {opts.namespace} (status "
        f"{release.status}, chart {release.chart}) with other values; rerun with --upgrade to "
        "update it."
    )


def install_release(
    opts: InstallOptions,
    helm: Helm,
    *,
    chart: str,
    directory: Path | None,
    plan: ReleasePlan,
    report: Report,
) -> None:
    """Run what :func:`plan_release` decided; a failed first install is rolled back."""
    if not plan.run_helm:
        report(
            f"Helm release {RELEASE} in namespace {opts.namespace} is already installed with "
            "these values; left as it is."
        )
        return
    fresh = plan.existing is None
    values = plan.values
    try:
        helm.install(
            RELEASE,
            chart,
            opts.namespace,
            values,
            upgrade=opts.upgrade,
            version=opts.chart_version if directory is None else None,
            skip_crds=directory is not None,
        )
    except HelmError as e:
        if fresh:
            _roll_back_release(helm, opts.namespace)
        raise InstallError(
            f"{e} The other objects are in place; rerun install with the same arguments once "
            "the cause is fixed."
        ) from e
    if plan.takeover:
        assert plan.existing is not None
        report(
            f"Helm release {RELEASE} in namespace {opts.namespace} replaced: chart "
            f"{plan.existing.release.chart} → {_chart_version(directory) or chart}."
        )
        return
    verb = "installed" if fresh else "upgraded"
    report(f"Helm release {RELEASE} {verb} in namespace {opts.namespace} ({chart}).")


def _roll_back_release(helm: Helm, namespace: str) -> None:
    # A failed first install leaves a release in state "failed" that would block a rerun
    # without --upgrade; it was created by this run, so remove it.
    try:
        if helm.release(RELEASE, namespace) is not None:
            helm.uninstall(RELEASE, namespace)
    except HelmError:
        pass


def wait_established(client: KubeClient, crds: Sequence[Mapping[str, Any]]) -> None:
    """Wait until the consumer serves each of ``crds``, so that objects of them can be written."""
    deadline = time.monotonic() + CRD_ESTABLISHED_TIMEOUT
    for crd in crds:
        name = str(crd["metadata"]["name"])
        while True:
            current = client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
            conditions = (current.get("status") or {}).get("conditions")
            if (find_condition(conditions, "Established") or {}).get("status") == "True":
                break
            if time.monotonic() > deadline:
                raise InstallError(f"the CRD {name} did not become Established in the consumer.")
            time.sleep(0.2)


def wait_ready(client: KubeClient, name: str, timeout: float, *, report: Report) -> None:
    """Wait until ClusterConnection ``name`` is Ready, reporting each new state once."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            connection = client.get(CLUSTER_CONNECTIONS, name)
        except KubeError as e:
            state = f"cannot read it: {e.message}"
        else:
            conditions = (connection.get("status") or {}).get("conditions")
            ready = find_condition(conditions, "Ready") or {}
            if ready.get("status") == "True":
                report(f"ClusterConnection {name} is Ready: {ready.get('message') or 'Ready'}")
                return
            state = (
                f"{ready.get('reason')}: {ready.get('message')}"
                if ready
                else "no status yet (is the connector running?)"
            )
        if state != last:
            report(f"waiting for ClusterConnection {name} to become Ready: {state}")
            last = state
        if time.monotonic() >= deadline:
            raise InstallError(
                f"ClusterConnection {name} did not become Ready within {duration(timeout)}: "
                f"{state}. Everything installed stays in place; fix the cause and rerun "
                "install (or check: kubectl describe clusterconnection " + name + ")."
            )
        time.sleep(min(READY_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


def wait_connector_gone(
    client: KubeClient, namespace: str, timeout: float, *, report: Report
) -> None:
    """Wait until no connector pod runs, so that none re-adds a finalizer uninstall removes."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            pods, _ = client.list(PODS, namespace, selector)
        except KubeError:
            return  # cannot list pods: nothing to wait for that we could see
        if not pods:
            return
        if not told:
            report(f"Waiting for {counted(len(pods), 'connector pod')} to stop.")
            told = True
        if time.monotonic() >= deadline:
            raise InstallError(
                f"the connector pods in namespace {namespace} did not stop within "
                f"{duration(timeout)}; rerun uninstall once they are gone."
            )
        time.sleep(1.0)
