"""Which APIs an install binds: the provider's offered APIs, narrowed by ``--bound-api``.

The offered APIs are what the CRD-puller stage makes of the provider's bindable CRDs (the
same list a ClusterConnection reports), and each becomes a bound resource through the
binder's :func:`~functions.binder.bound_resource`, as a binding would bind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector.install.clusters import Cluster
from connector.install.options import InstallError, Report, RobotToken, counted
from connector.kube import (
    CUSTOM_RESOURCE_DEFINITIONS,
    ConfigError,
    KubeClient,
    KubeError,
    UnreachableError,
    client_from_robot_token,
)
from functions.binder import BoundResource, bound_resource
from functions.common import BINDABLE_LABEL
from functions.common.clock import now_rfc3339
from functions.common.objects import Obj
from functions.crd_puller import OfferedAPI, PullRequest, pull

__all__ = [
    "connection_resources",
    "offered_apis",
    "resources_from_flags",
    "robot_resources",
    "select_apis",
]


def select_apis(offered: Sequence[OfferedAPI], wanted: Sequence[str]) -> list[OfferedAPI]:
    """The offered APIs ``wanted`` names (``group`` or ``group/plural``); all when empty."""
    if not wanted:
        return list(offered)
    chosen: list[OfferedAPI] = []
    for entry in wanted:
        group, _, plural = entry.partition("/")
        matched = [a for a in offered if a.group == group and (not plural or a.plural == plural)]
        if not matched:
            names = ", ".join(f"{a.group}/{a.plural}" for a in offered) or "(none)"
            raise InstallError(
                f"--bound-api {entry}: the provider does not offer it; offered: {names}. Label "
                f"the provider's CRD with {BINDABLE_LABEL}=true (for a Crossplane API, label "
                "its CompositeResourceDefinition: Crossplane copies the label to the CRDs it "
                "generates and reverts labels set on them), or drop the flag."
            )
        chosen.extend(a for a in matched if a not in chosen)
    return chosen


def resources_from_flags(entries: Sequence[str]) -> list[BoundResource]:
    """``group/plural`` flags as bound resources (robot-token installs without discovery)."""
    out: list[BoundResource] = []
    for entry in entries:
        group, _, plural = entry.partition("/")
        if not group or not plural or "/" in plural or "*" in entry:
            raise InstallError(
                f"--bound-api {entry}: expected GROUP/PLURAL, e.g. nop.example.org/nopresources."
            )
        out.append(
            BoundResource(
                crd_name=f"{plural}.{group}",
                group=group,
                kind="",
                plural=plural,
                scope="Namespaced",
                version="",
            )
        )
    return out


def connection_resources(
    connections: Sequence[Mapping[str, Any]], bound_apis: Sequence[str], *, report: Report
) -> list[BoundResource]:
    """What an install with ``--skip-connection`` lets the connector sync: the APIs the
    ClusterConnections already in the consumer offer (``status.offeredAPIs``, which Upbound's
    connector wrote too), narrowed by ``--bound-api``; ``GROUP/PLURAL`` entries that no
    connection offers yet are taken as they are."""
    offered: dict[str, tuple[str, str]] = {}
    for connection in connections:
        for entry in (connection.get("status") or {}).get("offeredAPIs") or []:
            name = entry.get("name") if isinstance(entry, Mapping) else None
            plural, dot, group = name.partition(".") if isinstance(name, str) else ("", "", "")
            if isinstance(name, str) and plural and dot and group:
                offered.setdefault(name, (group, plural))
    wanted: list[str] = []
    for entry in bound_apis or [f"{g}/{p}" for g, p in offered.values()]:
        group, _, plural = entry.partition("/")
        matched = [
            f"{g}/{p}" for g, p in offered.values() if g == group and (not plural or p == plural)
        ]
        if not matched and not plural:
            names = ", ".join(f"{g}/{p}" for g, p in offered.values()) or "(none)"
            raise InstallError(
                f"--bound-api {entry}: no ClusterConnection in the consumer offers an API of "
                f"that group (offered: {names}); name it as GROUP/PLURAL to bind it anyway."
            )
        wanted += [m for m in matched or [entry] if m not in wanted]
    resources = resources_from_flags(wanted)
    report(
        f"The connector may sync {counted(len(resources), 'API')} (offered by the "
        "ClusterConnections in the consumer, or named by --bound-api)"
        + (f": {', '.join(r.crd_name for r in resources)}." if resources else ".")
    )
    return resources


def offered_apis(provider: Cluster) -> list[OfferedAPI]:
    """What the provider offers, read with the admin's kubeconfig."""
    try:
        crds = _bindable_crds(provider.client)
    except KubeError as e:
        raise InstallError(f"cannot list the provider's CRDs: {e.message}") from e
    return _offered(crds)


def robot_resources(
    robot: RobotToken, bound_apis: Sequence[str], *, report: Report
) -> list[BoundResource]:
    """What a robot-token install binds: the ``--bound-api GROUP/PLURAL`` entries as they are,
    else what the control plane offers (narrowed by the flags)."""
    try:
        client = client_from_robot_token(
            robot.token,
            robot.organization,
            robot.spaces_base_url,
            robot.control_plane_group,
            robot.control_plane,
            name="provider",
        )
    except ConfigError as e:
        raise InstallError(f"the robot-token credentials cannot be used: {e}") from e
    if bound_apis and all("/" in entry for entry in bound_apis):
        resources = resources_from_flags(bound_apis)
        report(
            f"Binding {counted(len(resources), 'API')} named by --bound-api; the provider's "
            "offered APIs were not listed."
        )
        return resources
    try:
        crds = _bindable_crds(client)
    except KubeError as e:
        raise InstallError(
            f"cannot list the provider's APIs through the robot token at {client.server}: "
            f"{e.cause if isinstance(e, UnreachableError) else e.message}. Pass "
            "--bound-api GROUP/PLURAL for each API to bind instead."
        ) from e
    finally:
        client.close()
    offered = _offered(crds)
    report(f"The provider control plane offers {counted(len(offered), 'bindable API')}.")
    return [bound_resource(a) for a in select_apis(offered, bound_apis)]


def _bindable_crds(client: KubeClient) -> list[Obj]:
    crds, _ = client.list(CUSTOM_RESOURCE_DEFINITIONS, label_selector=f"{BINDABLE_LABEL}=true")
    return crds


def _offered(crds: list[Obj]) -> list[OfferedAPI]:
    result = pull(
        PullRequest(
            connection_name="installer",
            provider_crds=crds,
            consumer_crds=[],
            pull_behavior="Never",
            now=now_rfc3339(),
        )
    )
    return list(result.offered)
