"""The connector's Helm release: the chart, planning the release, running helm, and waiting.

Planning decides, before anything is written, whether helm runs at all: a rerun with the
same values leaves a deployed release alone, ``--upgrade`` keeps the APIs other connections
bound, and anything else that exists is refused. The waits are bounded and report each
change of state once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from connector.helm import Helm, HelmError, Release, Runner, find_helm
from connector.install.options import (
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
    "chart_crds",
    "find_chart",
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
    """The chart to install and, for a chart directory, its path (for its ``crds/``).

    Default: the chart shipped with this package (:func:`connector.shipped.chart_dir`): the
    installed package's copy, or ``package/helm/api-connector`` in a source checkout.
    """
    if chart is None:
        try:
            directory: Path | None = chart_dir()
        except ShippedFileError as e:
            raise InstallError(f"{e}; pass --chart with a chart directory or reference.") from e
    else:
        candidate = Path(chart).expanduser()
        directory = candidate if (candidate / "Chart.yaml").is_file() else None
        if directory is None and (candidate.exists() or chart.startswith((".", "/"))):
            raise InstallError(f"--chart {chart}: no Chart.yaml there.")
    if directory is None:
        return str(chart), None
    if version:
        meta = yaml.safe_load((directory / "Chart.yaml").read_text()) or {}
        have = str(meta.get("version") or "")
        if have != version:
            raise InstallError(
                f"--version {version}: the chart in {directory} is version {have}; pass "
                "--chart with a chart of that version (a directory or a repo/OCI reference)."
            )
    return str(directory), directory


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
    meta = yaml.safe_load((directory / "Chart.yaml").read_text()) or {}
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


def plan_release(
    opts: InstallOptions,
    helm: Helm,
    directory: Path | None,
    consumer_name: str,
    resources: Sequence[BoundResource],
) -> tuple[Release | None, dict[str, Any], bool]:
    """The existing release, the values to install, and whether helm must run."""
    computed = {
        "consumerClusterDisplayName": consumer_name,
        "pollInterval": opts.poll_interval,
        "boundAPIs": bound_apis_value(resources),
    }
    values = merge_values(computed, opts.values)
    try:
        release = helm.release(RELEASE, opts.namespace)
        current = helm.values(RELEASE, opts.namespace) if release is not None else {}
    except HelmError as e:
        raise InstallError(str(e)) from e
    if release is None:
        return None, values, True
    if opts.upgrade:
        # Several connections share the one connector: keep the APIs others bound.
        if "boundAPIs" not in opts.values:
            values["boundAPIs"] = union_bound_apis(current.get("boundAPIs"), values["boundAPIs"])
        return release, values, True
    same_chart = directory is None or release.chart == _chart_version(directory)
    if release.status == "deployed" and same_chart and current == values:
        return release, values, False
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
    release: Release | None,
    values: Mapping[str, Any],
    run_helm: bool,
    report: Report,
) -> None:
    """Run what :func:`plan_release` decided; a failed first install is rolled back."""
    if not run_helm:
        report(
            f"Helm release {RELEASE} in namespace {opts.namespace} is already installed with "
            "these values; left as it is."
        )
        return
    fresh = release is None
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
