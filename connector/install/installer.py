"""``install``: validate everything and write nothing, then write, each step idempotent.

See :mod:`connector.install` for the two phases. :func:`validate` returns a :class:`Plan`
that holds everything it found out; :func:`execute` only carries the plan out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.helm import Helm, Release, Runner
from connector.install.apis import offered_apis, robot_resources, select_apis
from connector.install.clusters import Cluster, check_reachable, default_consumer_name, open_cluster
from connector.install.identity import provision_identity
from connector.install.isolation import Isolation, apply_isolation, plan_isolation
from connector.install.options import (
    FIELD_MANAGER,
    INSTALLER_LABELS,
    InstallError,
    InstallOptions,
    Report,
    counted,
    default_secret_name,
)
from connector.install.permissions import (
    Permission,
    check_permissions,
    consumer_permissions,
    forbidden,
    list_crds_permission,
    provider_permissions,
)
from connector.install.release import (
    chart_crds,
    find_chart,
    install_release,
    open_helm,
    plan_release,
    wait_established,
    wait_ready,
)
from connector.kube import (
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    ForbiddenError,
    KubeError,
    NotFoundError,
)
from functions.binder import (
    AccessRequest,
    AccessResult,
    BoundResource,
    bound_resource,
    provider_access,
)
from functions.common import BINDABLE_LABEL, LABEL_MANAGED_BY, MANAGED_BY

__all__ = ["Plan", "execute", "install", "validate"]


@dataclass(kw_only=True)
class Plan:
    """Everything validation found out; the write phase only executes it."""

    consumer: Cluster
    provider: Cluster | None
    helm: Helm
    chart: str
    chart_dir: Path | None
    namespace_exists: bool
    consumer_name: str
    resources: list[BoundResource]
    access: AccessResult | None
    #: None: the isolation policy is not applied (robot token, opted out, or not served).
    isolation: Isolation | None
    secret_name: str
    existing_secret: dict[str, Any] | None
    release: Release | None
    values: dict[str, Any]
    run_helm: bool


def install(opts: InstallOptions, *, report: Report, run: Runner | None = None) -> None:
    """Install or update the connector in the consumer; see :mod:`connector.install`."""
    if (opts.provider is None) == (opts.robot is None):
        raise InstallError(
            "pass either --provider-kubeconfig or --upbound-token (with --organization, "
            "--spaces-base-url, --control-plane-group and --control-plane)."
        )
    if opts.isolation_policy and opts.provider is None:
        raise InstallError(
            "--isolation-policy needs --provider-kubeconfig: with a robot token, install "
            "creates nothing in the provider."
        )
    plan = validate(opts, report=report, run=run)
    execute(opts, plan, report=report)
    if opts.wait:
        wait_ready(plan.consumer.client, opts.connection_name, opts.timeout, report=report)
    else:
        report(
            f"Not waiting for ClusterConnection {opts.connection_name} to become Ready "
            f"(--no-wait); check with: kubectl get clusterconnection {opts.connection_name}"
        )


def validate(opts: InstallOptions, *, report: Report, run: Runner | None = None) -> Plan:
    """Phase 1: find out everything the install needs, and refuse what would fail; no writes."""
    consumer = open_cluster(opts.consumer, "consumer")
    check_reachable(consumer)
    provider: Cluster | None = None
    if opts.provider is not None:
        provider = open_cluster(opts.provider, "provider")
    chart, chart_dir = find_chart(opts.chart, opts.chart_version)
    helm = open_helm(opts.consumer, binary=opts.helm, timeout=opts.timeout, run=run)

    check_permissions(consumer, consumer_permissions(opts.namespace))
    client = consumer.client
    try:
        namespace_exists = client.get_or_none(NAMESPACES, opts.namespace) is not None
        if not namespace_exists:
            check_permissions(consumer, [Permission(verb="create", resource="namespaces")])
        consumer_name = opts.consumer_cluster_name or default_consumer_name(client)
        secret_name = opts.secret_name or default_secret_name(
            opts.connection_name, robot=opts.robot is not None
        )
        existing_secret = client.get_or_none(SECRETS, secret_name, opts.namespace)
        try:
            connection = client.get_or_none(CLUSTER_CONNECTIONS, opts.connection_name)
        except NotFoundError:
            connection = None  # the connector's CRDs are not installed yet
    except ForbiddenError as e:
        raise forbidden(consumer, "read what install needs", e) from e
    except KubeError as e:
        raise InstallError(f"cannot read the consumer cluster: {e.message}") from e
    _check_ours(existing_secret, f"Secret {opts.namespace}/{secret_name}", "--secret-name")
    _check_ours(connection, f"ClusterConnection {opts.connection_name}", "--name")
    report(
        f"Consumer cluster {client.server} is reachable and the installer may install the "
        f"connector there (consumer name in the provider: {consumer_name})."
    )

    access: AccessResult | None = None
    isolation: Isolation | None = None
    if provider is not None:
        check_reachable(provider)
        check_permissions(provider, [list_crds_permission()])
        offered = offered_apis(provider)
        resources = [bound_resource(a) for a in select_apis(offered, opts.bound_apis)]
        access = provider_access(AccessRequest(consumer_name=consumer_name, resources=resources))
        check_permissions(provider, provider_permissions(access))
        report(
            f"Provider cluster {provider.client.server} is reachable and offers "
            f"{counted(len(offered), 'bindable API')}"
            + (f": {', '.join(a.name for a in offered)}." if offered else ".")
        )
        isolation = plan_isolation(
            provider, opts.isolation_policy, consumer_name, resources, report=report
        )
        if not resources:
            report(
                f"Warning: no API is bound yet. Label provider CRDs with {BINDABLE_LABEL}=true "
                "and rerun install with --upgrade to grant the connector access to them."
            )
    else:
        assert opts.robot is not None
        resources = robot_resources(opts.robot, opts.bound_apis, report=report)

    release, values, run_helm = plan_release(opts, helm, chart_dir, consumer_name, resources)
    return Plan(
        consumer=consumer,
        provider=provider,
        helm=helm,
        chart=chart,
        chart_dir=chart_dir,
        namespace_exists=namespace_exists,
        consumer_name=consumer_name,
        resources=resources,
        access=access,
        isolation=isolation,
        secret_name=secret_name,
        existing_secret=existing_secret,
        release=release,
        values=values,
        run_helm=run_helm,
    )


def _check_ours(obj: Mapping[str, Any] | None, what: str, flag: str) -> None:
    if obj is None:
        return
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        raise InstallError(
            f"{what} already exists and was not created by api-connector install; choose "
            f"another name with {flag}, or delete it first."
        )


def execute(opts: InstallOptions, plan: Plan, *, report: Report) -> None:
    """Phase 2: the provider's side first, then the consumer's; each step idempotent."""
    if plan.provider is not None:
        assert plan.access is not None
        # The policy first: on a first install, the identity never exists unconfined.
        apply_isolation(
            plan.provider.client, plan.isolation, plan.access, plan.consumer_name, report=report
        )
        kubeconfig = provision_identity(
            plan.provider,
            plan.access,
            resources=plan.resources,
            existing_secret=plan.existing_secret,
            report=report,
        )
        secret_data = {"kubeconfig": kubeconfig}
        secret_kind = "KubeConfig"
    else:
        assert opts.robot is not None
        secret_data = {
            "token": opts.robot.token,
            "organization": opts.robot.organization,
            "spacesBaseURL": opts.robot.spaces_base_url,
            "controlPlaneGroupName": opts.robot.control_plane_group,
            "controlPlaneName": opts.robot.control_plane,
        }
        secret_kind = "UpboundRobotToken"

    client = plan.consumer.client
    try:
        if not plan.namespace_exists:
            client.apply(
                NAMESPACES,
                {"metadata": {"name": opts.namespace, "labels": dict(INSTALLER_LABELS)}},
                FIELD_MANAGER,
            )
            report(f"Created namespace {opts.namespace}.")
        crds = chart_crds(plan.chart_dir)
        for crd in crds:
            client.apply(CUSTOM_RESOURCE_DEFINITIONS, crd, FIELD_MANAGER)
        wait_established(client, crds)
        if crds:
            report(f"Applied the connector's {counted(len(crds), 'CRD')}.")
        client.apply(SECRETS, _secret(opts, plan.secret_name, secret_data), FIELD_MANAGER)
        report(
            f"Secret {opts.namespace}/{plan.secret_name} holds the provider credentials "
            f"({secret_kind})."
        )
    except KubeError as e:
        raise InstallError(f"cannot write to the consumer cluster: {e.message}") from e

    install_release(
        opts,
        plan.helm,
        chart=plan.chart,
        directory=plan.chart_dir,
        release=plan.release,
        values=plan.values,
        run_helm=plan.run_helm,
        report=report,
    )

    try:
        client.apply(
            CLUSTER_CONNECTIONS, _connection(opts, plan.secret_name, secret_kind), FIELD_MANAGER
        )
    except KubeError as e:
        raise InstallError(
            f"cannot apply ClusterConnection {opts.connection_name}: {e.message}"
        ) from e
    report(f"ClusterConnection {opts.connection_name} points at that Secret.")


def _secret(opts: InstallOptions, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": opts.namespace,
            "labels": dict(INSTALLER_LABELS),
            "annotations": {"connect.upbound.io/connection": opts.connection_name},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def _connection(opts: InstallOptions, secret_name: str, secret_kind: str) -> dict[str, Any]:
    return {
        "apiVersion": CLUSTER_CONNECTIONS.api_version,
        "kind": CLUSTER_CONNECTIONS.kind,
        "metadata": {"name": opts.connection_name, "labels": dict(INSTALLER_LABELS)},
        "spec": {
            "secretRef": {
                "kind": secret_kind,
                "name": secret_name,
                "namespace": opts.namespace,
            },
            "crdManagement": {"pullBehavior": "Pull"},
        },
    }
