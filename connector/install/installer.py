"""``install``: validate everything and write nothing, then write, each step idempotent.

See :mod:`connector.install` for the two phases. :func:`validate` returns a :class:`Plan`
that holds everything it found out; :func:`execute` only carries the plan out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.helm import Helm, Runner
from connector.install.adoption import adoption_sentence, adoption_spec, set_adoption
from connector.install.apis import (
    connection_resources,
    offered_apis,
    robot_resources,
    select_apis,
)
from connector.install.clusters import Cluster, check_reachable, default_consumer_name, open_cluster
from connector.install.identity import provision_identity
from connector.install.isolation import Isolation, apply_isolation, plan_isolation
from connector.install.options import (
    FIELD_MANAGER,
    INSTALLER_LABELS,
    RELEASE,
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
)
from connector.install.placement import effective_placement, placed_access, retire_isolated
from connector.install.release import (
    ReleasePlan,
    carried_over,
    chart_crds,
    find_chart,
    inspect_release,
    install_release,
    open_helm,
    plan_release,
    wait_established,
    wait_ready,
)
from connector.install.takeover import (
    Takeover,
    describe,
    plan_takeover,
    protect_crds,
    stop_old_connector,
    take_over_connector_crd,
    take_over_pulled_crds,
    unprotect_crds,
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
    AccessResult,
    BoundResource,
    bound_resource,
)
from functions.common import BINDABLE_LABEL, LABEL_MANAGED_BY, MANAGED_BY

__all__ = ["Plan", "describe_plan", "execute", "install", "validate"]


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
    #: The connection's ``spec.placement`` after install (``--placement``, else as it is).
    placement: str
    secret_name: str
    existing_secret: dict[str, Any] | None
    #: The ClusterConnection of that name as it is (None: not there yet).
    connection: dict[str, Any] | None
    #: With ``skip_connection``: the ClusterConnections already in the consumer.
    connections: list[str]
    release: ReleasePlan
    #: The release was installed by another chart: what replacing it takes.
    takeover: Takeover | None


def install(opts: InstallOptions, *, report: Report, run: Runner | None = None) -> None:
    """Install or update the connector in the consumer; see :mod:`connector.install`."""
    if opts.skip_connection:
        if opts.provider is not None or opts.robot is not None:
            raise InstallError(
                "--skip-connection installs only the connector (its CRDs and Helm release) "
                "and creates no Secret, ClusterConnection or provider identity, so it takes "
                "no provider credentials: drop --provider-kubeconfig / --upbound-token, or "
                "drop --skip-connection."
            )
    elif (opts.provider is None) == (opts.robot is None):
        raise InstallError(
            "pass either --provider-kubeconfig or --upbound-token (with --organization, "
            "--spaces-base-url, --control-plane-group and --control-plane), or "
            "--skip-connection to install only the connector."
        )
    if opts.isolation_policy and opts.provider is None:
        raise InstallError(
            "--isolation-policy needs --provider-kubeconfig: with a robot token, install "
            "creates nothing in the provider."
        )
    plan = validate(opts, report=report, run=run)
    if opts.dry_run:
        for line in describe_plan(opts, plan):
            report(f"Would: {line}")
        report("Dry run: nothing was changed in either cluster.")
        return
    execute(opts, plan, report=report)
    names = plan.connections if opts.skip_connection else [opts.connection_name]
    if not names:
        report(
            "No ClusterConnection to wait for (--skip-connection): create one, e.g. "
            "examples/walkthrough/consumer/20-clusterconnection.yaml."
        )
    elif opts.wait:
        for name in names:
            wait_ready(plan.consumer.client, name, opts.timeout, report=report)
    else:
        report(
            f"Not waiting for ClusterConnection {', '.join(names)} to become Ready "
            f"(--no-wait); check with: kubectl get clusterconnection"
        )


def validate(  # noqa: PLR0912, PLR0915 - the checks before any write, in the order a user fixes them
    opts: InstallOptions, *, report: Report, run: Runner | None = None
) -> Plan:
    """Phase 1: find out everything the install needs, and refuse what would fail; no writes."""
    consumer = open_cluster(opts.consumer, "consumer")
    check_reachable(consumer)
    provider: Cluster | None = None
    if opts.provider is not None:
        provider = open_cluster(opts.provider, "provider")
    chart, chart_dir = find_chart(opts.chart, opts.chart_version)
    helm = open_helm(opts.consumer, binary=opts.helm, timeout=opts.timeout, run=run)

    check_permissions(consumer, consumer_permissions(opts.namespace))
    existing = inspect_release(helm, opts.namespace)
    client = consumer.client
    connection: dict[str, Any] | None = None
    connections: list[dict[str, Any]] = []
    try:
        namespace_exists = client.get_or_none(NAMESPACES, opts.namespace) is not None
        if not namespace_exists:
            check_permissions(consumer, [Permission(verb="create", resource="namespaces")])
        consumer_name = (
            opts.consumer_cluster_name
            or carried_over(existing, "consumerClusterDisplayName")
            or default_consumer_name(client)
        )
        secret_name = opts.secret_name or default_secret_name(
            opts.connection_name, robot=opts.robot is not None
        )
        existing_secret = client.get_or_none(SECRETS, secret_name, opts.namespace)
        try:
            if opts.skip_connection:
                connections, _ = client.list(CLUSTER_CONNECTIONS)
            else:
                connection = client.get_or_none(CLUSTER_CONNECTIONS, opts.connection_name)
        except NotFoundError:
            pass  # the connector's CRDs are not installed yet: no connection either
    except ForbiddenError as e:
        raise forbidden(consumer, "read what install needs", e) from e
    except KubeError as e:
        raise InstallError(f"cannot read the consumer cluster: {e.message}") from e
    if not opts.skip_connection:
        _check_ours(existing_secret, f"Secret {opts.namespace}/{secret_name}", "--secret-name")
        _check_ours(connection, f"ClusterConnection {opts.connection_name}", "--name")
    elif opts.adopt is not None and not connections:
        raise InstallError(
            "--adopt/--no-adopt with --skip-connection sets the adoption policy of the "
            "ClusterConnections in the consumer, and there are none."
        )
    report(
        f"Consumer cluster {client.server} is reachable and the installer may install the "
        f"connector there (consumer name in the provider: {consumer_name})."
    )

    access: AccessResult | None = None
    isolation: Isolation | None = None
    placement = effective_placement(opts.placement, connection)
    if provider is not None:
        check_reachable(provider)
        check_permissions(provider, [list_crds_permission()])
        offered = offered_apis(provider)
        resources = [bound_resource(a) for a in select_apis(offered, opts.bound_apis)]
        access = placed_access(
            provider, consumer_name, resources, placement, opts.connection_secrets, report=report
        )
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
    elif opts.robot is not None:
        resources = robot_resources(opts.robot, opts.bound_apis, report=report)
    else:
        resources = connection_resources(connections, opts.bound_apis, report=report)

    release = plan_release(opts, existing, chart_dir, consumer_name, resources)
    takeover: Takeover | None = None
    if release.takeover:
        assert release.existing is not None
        if chart_dir is None:
            raise InstallError(
                f"replacing the release of another chart ({release.existing.release.chart}) "
                "needs this project's chart as a directory or archive, to bring the connector "
                "CRDs to its schema: drop --chart (the shipped chart), or pass --chart DIR or "
                "--bundle FILE.tgz."
            )
        takeover = plan_takeover(
            client,
            helm,
            release.existing,
            chart=chart,
            namespace=opts.namespace,
            values=release.values,
            chart_crds=chart_crds(chart_dir),
        )
        check_permissions(
            consumer,
            [
                Permission(
                    verb="delete",
                    group=r.res.group,
                    resource=r.res.plural,
                    namespace=r.namespace,
                )
                for r in takeover.removals
            ],
        )
        report(
            f"The Helm release {RELEASE} was installed by another chart "
            f"({release.existing.release.chart}); it will be replaced, and everything it left "
            "is kept (--dry-run lists each step)."
        )
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
        placement=placement,
        secret_name=secret_name,
        existing_secret=existing_secret,
        connection=connection,
        connections=sorted(str(c["metadata"]["name"]) for c in connections),
        release=release,
        takeover=takeover,
    )


def _check_ours(obj: Mapping[str, Any] | None, what: str, flag: str) -> None:
    if obj is None:
        return
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        raise InstallError(
            f"{what} already exists and was not created by api-connector install; choose "
            f"another name with {flag}, delete it first, or keep it as it is and install only "
            "the connector with --skip-connection."
        )


def execute(  # noqa: PLR0912, PLR0915 - the install's steps in order, each skipped when the plan says so
    opts: InstallOptions, plan: Plan, *, report: Report
) -> None:
    """Phase 2: the provider's side first, then the consumer's; each step idempotent."""
    secret_data: dict[str, str] | None = None
    secret_kind = ""
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
        retire_isolated(plan.provider.client, plan.placement, plan.consumer_name, report=report)
        secret_data = {"kubeconfig": kubeconfig}
        secret_kind = "KubeConfig"
    elif opts.robot is not None:
        secret_data = {
            "token": opts.robot.token,
            "organization": opts.robot.organization,
            "spacesBaseURL": opts.robot.spaces_base_url,
            "controlPlaneGroupName": opts.robot.control_plane_group,
            "controlPlaneName": opts.robot.control_plane,
        }
        secret_kind = "UpboundRobotToken"

    client = plan.consumer.client
    takeover = plan.takeover
    try:
        if takeover is not None:
            # Before anything else: the old connector must not act on what changes next.
            stop_old_connector(client, takeover, report=report)
        if not plan.namespace_exists:
            client.apply(
                NAMESPACES,
                {"metadata": {"name": opts.namespace, "labels": dict(INSTALLER_LABELS)}},
                FIELD_MANAGER,
            )
            report(f"Created namespace {opts.namespace}.")
        crds = chart_crds(plan.chart_dir)
        for crd in crds:
            if takeover is not None:
                take_over_connector_crd(client, str(crd["metadata"]["name"]), takeover)
            client.apply(CUSTOM_RESOURCE_DEFINITIONS, crd, FIELD_MANAGER)
        wait_established(client, crds)
        if crds:
            report(f"Applied the connector's {counted(len(crds), 'CRD')}.")
        if takeover is not None:
            protect_crds(client, takeover, report=report)
            take_over_pulled_crds(client, takeover, report=report)
        if secret_data is not None:
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
        plan=plan.release,
        report=report,
    )
    if takeover is not None:
        try:
            unprotect_crds(client, takeover)
        except KubeError as e:
            # Harmless if left: it only keeps helm from ever deleting these CRDs.
            report(f"Warning: could not remove the keep annotation from the CRDs: {e.message}")

    if secret_data is None:
        set_adoption(client, plan.connections, opts.adopt, report=report)
        return
    try:
        client.apply(
            CLUSTER_CONNECTIONS,
            _connection(opts, plan.secret_name, secret_kind, plan.connection, plan.placement),
            FIELD_MANAGER,
        )
    except KubeError as e:
        raise InstallError(
            f"cannot apply ClusterConnection {opts.connection_name}: {e.message}"
        ) from e
    report(f"ClusterConnection {opts.connection_name} points at that Secret.")
    if opts.adopt is not None:
        report(adoption_sentence(opts.connection_name, opts.adopt))


def describe_plan(opts: InstallOptions, plan: Plan) -> list[str]:
    """What :func:`execute` would do, one sentence a step, in order (``--dry-run``)."""
    lines: list[str] = []
    if plan.provider is not None and plan.access is not None:
        server = plan.provider.client.server
        if plan.isolation is not None:
            lines.append(
                f"Provider {server}: apply the isolation policy {plan.isolation.name}, "
                "confining this consumer's identity to its own objects."
            )
        lines.append(
            f"Provider {server}: create or update the identity {plan.access.namespace}/"
            f"{plan.access.service_account} with access to "
            f"{counted(len(plan.resources), 'bound API')} in the {plan.placement} placement, "
            "and its token."
        )
    if plan.takeover is not None:
        lines += describe(plan.takeover, opts.namespace)
    if not plan.namespace_exists:
        lines.append(f"Create namespace {opts.namespace}.")
    crds = chart_crds(plan.chart_dir)
    if crds:
        lines.append(
            f"Apply the connector's {counted(len(crds), 'CRD')} (server-side apply): "
            + ", ".join(str(c["metadata"]["name"]) for c in crds)
            + "."
        )
    if plan.provider is not None or opts.robot is not None:
        verb = "Update" if plan.existing_secret else "Create"
        lines.append(f"{verb} Secret {opts.namespace}/{plan.secret_name} with the credentials.")
    release = plan.release
    if not release.run_helm:
        lines.append(f"Leave Helm release {RELEASE} as it is (same chart and values).")
    else:
        verb = "Install" if release.existing is None else "Upgrade"
        lines.append(
            f"{verb} Helm release {RELEASE} in namespace {opts.namespace} from {plan.chart} "
            f"with values {json.dumps(release.values, sort_keys=True)}."
        )
    if plan.provider is not None or opts.robot is not None:
        verb = "Update" if plan.connection else "Create"
        lines.append(f"{verb} ClusterConnection {opts.connection_name}.")
        if opts.adopt is not None:
            lines.append(adoption_sentence(opts.connection_name, opts.adopt))
    elif opts.adopt is not None:
        lines += [adoption_sentence(name, opts.adopt) for name in plan.connections]
    return lines


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


def _connection(
    opts: InstallOptions,
    secret_name: str,
    secret_kind: str,
    current: Mapping[str, Any] | None,
    placement: str,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "secretRef": {
            "kind": secret_kind,
            "name": secret_name,
            "namespace": opts.namespace,
        },
        "crdManagement": {"pullBehavior": "Pull"},
        # Always set: the provider access install just created is for this placement.
        "placement": placement,
    }
    adoption = adoption_spec(opts.adopt, current)
    if adoption is not None:
        spec["adoption"] = adoption
    return {
        "apiVersion": CLUSTER_CONNECTIONS.api_version,
        "kind": CLUSTER_CONNECTIONS.kind,
        "metadata": {"name": opts.connection_name, "labels": dict(INSTALLER_LABELS)},
        "spec": spec,
    }
