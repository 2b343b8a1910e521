"""``api-connector install`` / ``uninstall``: only wiring; the logic is :mod:`connector.install`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from functions.common.api import DEFAULT_NAMESPACE

_CONSUMER_KUBECONFIG = click.option(
    "--consumer-kubeconfig",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kubeconfig of the consumer cluster to install into.",
)
_CONSUMER_CONTEXT = click.option(
    "--consumer-context", help="Context in --consumer-kubeconfig (default: its current context)."
)
_NAMESPACE = click.option(
    "--namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Namespace of the Helm release and the credentials Secret.",
)
_HELM = click.option(
    "--helm",
    metavar="PATH",
    help="The helm binary (default: helm on PATH, else the one tools/build.sh helm cached).",
)
_PROVIDER_CONTEXT = click.option("--provider-context", help="Context in --provider-kubeconfig.")
_TIMEOUT = click.option(
    "--timeout",
    default="5m",
    show_default=True,
    help="How long helm may take, and how long to wait for the connection to become Ready.",
)


def _seconds(value: str, flag: str) -> float:
    from connector.cli.run import parse_duration

    try:
        seconds = parse_duration(value)
    except click.BadParameter as e:
        raise click.BadParameter(str(e.message), param_hint=flag) from e
    if seconds <= 0:
        raise click.BadParameter("must be positive.", param_hint=flag)
    return seconds


def _values_files(paths: tuple[Path, ...]) -> dict[str, Any]:
    from connector.install import merge_values

    merged: dict[str, Any] = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise click.BadParameter(
                f"cannot read {path}: {e.strerror}", param_hint="--values"
            ) from e
        except yaml.YAMLError:
            raise click.BadParameter(f"{path} is not valid YAML.", param_hint="--values") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter(f"{path} is not a YAML mapping.", param_hint="--values")
        merged = merge_values(merged, loaded)
    return merged


@click.command("install")
@_CONSUMER_KUBECONFIG
@_CONSUMER_CONTEXT
@click.option(
    "--name",
    "connection_name",
    default="provider-connection",
    show_default=True,
    help="Name of the ClusterConnection to create.",
)
@click.option(
    "--provider-kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An admin's kubeconfig of the provider. Used once, to create a scoped identity "
    "for this consumer; the consumer only ever gets that identity's credentials.",
)
@_PROVIDER_CONTEXT
@click.option(
    "--upbound-token",
    envvar="UPBOUND_TOKEN",
    help="Upbound robot token (or the UPBOUND_TOKEN environment variable), instead of "
    "--provider-kubeconfig.",
)
@click.option("--organization", help="Upbound organization (with --upbound-token).")
@click.option("--spaces-base-url", help="Spaces base URL (with --upbound-token).")
@click.option("--control-plane-group", help="Control plane group (with --upbound-token).")
@click.option("--control-plane", help="Control plane name (with --upbound-token).")
@click.option(
    "--bound-api",
    "bound_apis",
    multiple=True,
    metavar="GROUP[/PLURAL]",
    help="Bind only these of the offered APIs (repeatable). With --upbound-token, "
    "GROUP/PLURAL entries are bound without listing the provider's APIs.",
)
@click.option(
    "--isolation-policy/--no-isolation-policy",
    default=None,
    help="Apply a ValidatingAdmissionPolicy in the provider that lets this consumer's "
    "identity write only its own objects there (not other consumers'). Default: apply it if "
    "the provider serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy "
    "(Kubernetes 1.30+), else warn and install without it; --isolation-policy makes it "
    "required.",
)
@click.option(
    "--placement",
    type=click.Choice(["Default", "Isolated"]),
    default=None,
    help="Where twins go in the provider (the ClusterConnection's spec.placement). Default: "
    "the consumer object's namespace; consumers of one provider then share namespaces and "
    "can read each other's objects there. Isolated: a provider namespace of this consumer's "
    "alone per consumer namespace, and an identity that can read and write nothing outside "
    "them (needs ValidatingAdmissionPolicy, Kubernetes 1.30+). Default: as the connection "
    "is (Default for a new one).",
)
@click.option(
    "--connection-secrets",
    is_flag=True,
    help="Default placement: also let the identity read Secrets (connection details), in "
    "EVERY namespace of the provider, other consumers' included. The Isolated placement "
    "reads Secrets in its own namespaces only, without this flag.",
)
@click.option(
    "--secret-name",
    help="Name of the credentials Secret (default: <name without -connection>-kubeconfig, "
    "or -robot-token).",
)
@click.option(
    "--upgrade",
    is_flag=True,
    help="Upgrade the Helm release if it exists; replaces one another chart installed "
    "(Upbound's API Connector), keeping its connections, bindings, CRDs and objects.",
)
@click.option("--version", "chart_version", help="Chart version to install.")
@click.option(
    "--chart",
    help="Chart directory, chart archive (.tgz) or reference (repo/chart, oci://...). "
    "Default: the chart shipped with api-connector.",
)
@click.option(
    "--bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A local chart archive (.tgz) to install, as up's --bundle (same as --chart FILE).",
)
@click.option(
    "--helm-directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A local chart directory to install, as up's --helm-directory (same as --chart DIR).",
)
@click.option(
    "--skip-connection",
    is_flag=True,
    help="Install only the connector (its CRDs and Helm release): no credentials Secret, no "
    "ClusterConnection, nothing in the provider. ClusterConnections already in the consumer "
    "(e.g. Upbound's) are used as they are.",
)
@click.option(
    "--adopt/--no-adopt",
    default=None,
    help="Let the connection adopt provider objects another connector created (labelled "
    "connect.upbound.io/managed=true, claimed by no consumer's origin labels), or stop it; "
    "with --skip-connection, every ClusterConnection in the consumer. Default: leave it as it "
    "is (off for a new connection).",
)
@click.option(
    "--robot-name",
    hidden=True,
    help="Not supported: api-connector cannot create Upbound robots; see the error message.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check everything and print what would change, writing nothing.",
)
@_NAMESPACE
@click.option(
    "--consumer-cluster-name",
    help="This consumer's name in the provider (consumerClusterDisplayName). Default: "
    "derived from the uid of the consumer's kube-system namespace.",
)
@click.option(
    "--poll-interval",
    help="The connector's safety-net resync period (pollInterval). Default: 10m, or the "
    "pollInterval of a release taken over from another chart.",
)
@click.option(
    "--values",
    "--file",
    "-f",
    "values_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Extra Helm values file (repeatable).",
)
@click.option(
    "--set",
    "set_values",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra Helm value, like helm --set (repeatable).",
)
@_HELM
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the ClusterConnection is Ready.",
)
@_TIMEOUT
def install(  # noqa: PLR0912 - one branch per flag that maps onto an option; flat on purpose
    consumer_kubeconfig: Path,
    consumer_context: str | None,
    connection_name: str,
    provider_kubeconfig: Path | None,
    provider_context: str | None,
    upbound_token: str | None,
    organization: str | None,
    spaces_base_url: str | None,
    control_plane_group: str | None,
    control_plane: str | None,
    bound_apis: tuple[str, ...],
    isolation_policy: bool | None,
    placement: str | None,
    connection_secrets: bool,
    secret_name: str | None,
    upgrade: bool,
    chart_version: str | None,
    chart: str | None,
    bundle: Path | None,
    helm_directory: Path | None,
    skip_connection: bool,
    adopt: bool | None,
    robot_name: str | None,
    dry_run: bool,
    namespace: str,
    consumer_cluster_name: str | None,
    poll_interval: str | None,
    values_files: tuple[Path, ...],
    set_values: tuple[str, ...],
    helm: str | None,
    wait: bool,
    timeout: str,
) -> None:
    """Install the connector into a consumer cluster and connect it to a provider.

    With --provider-kubeconfig, first creates a scoped identity for this consumer in the
    provider, confined by an isolation policy. Creates the provider credentials Secret, the
    Helm release api-connector and the ClusterConnection, then waits until the connection is
    Ready. Rerunning with the same arguments is safe and completes an interrupted install.

    Moving from Upbound's API Connector: install --upgrade --skip-connection --adopt
    replaces its release and keeps everything else (docs/migrate-from-upbound.md).
    """
    from connector.install import (
        ClusterAccess,
        InstallError,
        InstallOptions,
        RobotToken,
        merge_values,
        parse_set,
    )

    robot_flags = {
        "--organization": organization,
        "--spaces-base-url": spaces_base_url,
        "--control-plane-group": control_plane_group,
        "--control-plane": control_plane,
    }
    if robot_name is not None:
        raise click.UsageError(
            "--robot-name is not supported: api-connector cannot create Upbound robots or "
            "tokens. Create a robot and a token for it with up (up robot create NAME; up robot "
            "token create NAME TOKEN) or in the Upbound Console, and pass the token with "
            "--upbound-token (or UPBOUND_TOKEN) and --organization, --spaces-base-url, "
            "--control-plane-group, --control-plane; or use --provider-kubeconfig, which "
            "creates a scoped identity for this consumer."
        )
    sources = {"--chart": chart, "--bundle": bundle, "--helm-directory": helm_directory}
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) > 1:
        raise click.UsageError(f"pass one of {', '.join(given)}: each names the chart.")
    if bundle is not None or helm_directory is not None:
        chart = str(bundle or helm_directory)
    if skip_connection:
        extra_flags = {
            "--provider-kubeconfig": provider_kubeconfig,
            "--upbound-token": upbound_token,
            "--secret-name": secret_name,
            "--isolation-policy/--no-isolation-policy": isolation_policy,
            "--placement": placement,
            "--connection-secrets": connection_secrets or None,
        }
        passed = [flag for flag, value in extra_flags.items() if value is not None]
        if passed:
            raise click.UsageError(
                f"--skip-connection installs only the connector and creates no Secret, "
                f"ClusterConnection or provider identity: drop {', '.join(passed)}, or drop "
                "--skip-connection."
            )
    if provider_kubeconfig is not None and upbound_token:
        raise click.UsageError("pass either --provider-kubeconfig or --upbound-token, not both.")
    if provider_kubeconfig is None and not upbound_token and not skip_connection:
        raise click.UsageError(
            "pass --provider-kubeconfig (or --upbound-token with its flags), or "
            "--skip-connection to install only the connector."
        )
    if provider_context and provider_kubeconfig is None:
        raise click.UsageError("--provider-context needs --provider-kubeconfig.")
    if isolation_policy and provider_kubeconfig is None:
        raise click.UsageError(
            "--isolation-policy needs --provider-kubeconfig: with a robot token, install "
            "creates nothing in the provider."
        )
    if connection_secrets and provider_kubeconfig is None:
        raise click.UsageError(
            "--connection-secrets needs --provider-kubeconfig: with a robot token, install "
            "creates nothing in the provider."
        )
    if connection_secrets and placement == "Isolated":
        raise click.UsageError(
            "--connection-secrets is for the Default placement; the Isolated placement reads "
            "Secrets in this consumer's own provider namespaces already: drop it."
        )
    robot: RobotToken | None = None
    if upbound_token:
        missing = [flag for flag, value in robot_flags.items() if not value]
        if missing:
            raise click.UsageError(f"--upbound-token needs {', '.join(missing)}.")
        robot = RobotToken(
            token=upbound_token,
            organization=str(organization),
            spaces_base_url=str(spaces_base_url),
            control_plane_group=str(control_plane_group),
            control_plane=str(control_plane),
        )
    elif any(robot_flags.values()):
        given = [flag for flag, value in robot_flags.items() if value]
        raise click.UsageError(f"{', '.join(given)} only go with --upbound-token.")
    if poll_interval is not None:
        _seconds(poll_interval, "--poll-interval")
    try:
        extra = merge_values(_values_files(values_files), parse_set(set_values))
    except InstallError as e:
        raise click.BadParameter(str(e), param_hint="--set") from e
    options = InstallOptions(
        consumer=ClusterAccess(kubeconfig=consumer_kubeconfig, context=consumer_context),
        provider=(
            ClusterAccess(kubeconfig=provider_kubeconfig, context=provider_context)
            if provider_kubeconfig is not None
            else None
        ),
        robot=robot,
        connection_name=connection_name,
        namespace=namespace,
        secret_name=secret_name,
        consumer_cluster_name=consumer_cluster_name,
        poll_interval=poll_interval,
        bound_apis=bound_apis,
        isolation_policy=isolation_policy,
        placement=placement,
        connection_secrets=connection_secrets,
        values=extra,
        chart=chart,
        chart_version=chart_version,
        helm=helm,
        upgrade=upgrade,
        wait=wait,
        timeout=_seconds(timeout, "--timeout"),
        skip_connection=skip_connection,
        dry_run=dry_run,
        adopt=adopt,
    )
    from connector.install import install as run_install

    try:
        run_install(options, report=click.echo)
    except InstallError as e:
        raise click.ClickException(str(e)) from e


@click.command("uninstall")
@_CONSUMER_KUBECONFIG
@_CONSUMER_CONTEXT
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Also delete the ClusterConnections and Secrets that install created.",
)
@click.option(
    "--provider-kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An admin's kubeconfig of the provider: also revoke this consumer's provider "
    "identity and remove its isolation policy there (never its objects).",
)
@_PROVIDER_CONTEXT
@click.option(
    "--consumer-cluster-name",
    help="This consumer's name in the provider (with --provider-kubeconfig). Default: the "
    "release's consumerClusterDisplayName, else derived from the uid of kube-system.",
)
@_NAMESPACE
@_HELM
@_TIMEOUT
def uninstall(
    consumer_kubeconfig: Path,
    consumer_context: str | None,
    all_: bool,
    provider_kubeconfig: Path | None,
    provider_context: str | None,
    consumer_cluster_name: str | None,
    namespace: str,
    helm: str | None,
    timeout: str,
) -> None:
    """Remove the connector from a consumer cluster. Never deletes objects in a provider.

    Uninstalls the Helm release and removes the connector's finalizer from bound objects so
    that none stays stuck in deletion; with --all also deletes the ClusterConnections and
    Secrets created by install. CRDs and bound objects are kept. With --provider-kubeconfig
    also deletes what install created in the provider for this consumer: its identity, then
    its isolation policy.
    """
    from connector.install import ClusterAccess, InstallError, UninstallOptions
    from connector.install import uninstall as run_uninstall

    if provider_context and provider_kubeconfig is None:
        raise click.UsageError("--provider-context needs --provider-kubeconfig.")
    if consumer_cluster_name and provider_kubeconfig is None:
        raise click.UsageError("--consumer-cluster-name needs --provider-kubeconfig.")
    options = UninstallOptions(
        consumer=ClusterAccess(kubeconfig=consumer_kubeconfig, context=consumer_context),
        provider=(
            ClusterAccess(kubeconfig=provider_kubeconfig, context=provider_context)
            if provider_kubeconfig is not None
            else None
        ),
        consumer_cluster_name=consumer_cluster_name,
        namespace=namespace,
        all_=all_,
        helm=helm,
        timeout=_seconds(timeout, "--timeout"),
    )
    try:
        run_uninstall(options, report=click.echo)
    except InstallError as e:
        raise click.ClickException(str(e)) from e
