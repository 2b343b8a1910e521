"""What ``install`` and ``uninstall`` are asked to do, and the error a user must act on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.common import LABEL_MANAGED_BY, MANAGED_BY
from functions.common.api import DEFAULT_NAMESPACE

__all__ = [
    "CHART_ANNOTATION",
    "DEFAULT_CONNECTION",
    "DEFAULT_NAMESPACE",
    "DEFAULT_POLL_INTERVAL",
    "FIELD_MANAGER",
    "INSTALLER_LABELS",
    "RELEASE",
    "ClusterAccess",
    "InstallError",
    "InstallOptions",
    "Report",
    "RobotToken",
    "UninstallOptions",
    "counted",
    "default_secret_name",
    "duration",
]

RELEASE = "api-connector"
DEFAULT_CONNECTION = "provider-connection"
DEFAULT_POLL_INTERVAL = "10m"
#: The annotation in this project's ``Chart.yaml``: a release whose chart lacks it was
#: installed by another chart of the same name (Upbound's), which ``--upgrade`` takes over.
CHART_ANNOTATION = "api-connector/chart"
FIELD_MANAGER = "api-connector-installer"
#: Every consumer object the installer creates carries this label; ``uninstall --all``
#: deletes only objects that do.
INSTALLER_LABELS = {LABEL_MANAGED_BY: MANAGED_BY}

#: Where progress goes: one sentence per call.
Report = Callable[[str], None]


class InstallError(Exception):
    """A problem the user must fix; the message says what and how. Exits non-zero."""


@dataclass(frozen=True, kw_only=True)
class ClusterAccess:
    """A kubeconfig file and the context in it (None: its current context)."""

    kubeconfig: Path
    context: str | None = None


@dataclass(frozen=True, kw_only=True)
class RobotToken:
    """Upbound robot-token credentials of a Spaces control plane."""

    token: str
    organization: str
    spaces_base_url: str
    control_plane_group: str
    control_plane: str

    def __repr__(self) -> str:
        # Never show the token, even in a traceback.
        return (
            f"RobotToken(organization={self.organization!r}, "
            f"spaces_base_url={self.spaces_base_url!r}, "
            f"control_plane_group={self.control_plane_group!r}, "
            f"control_plane={self.control_plane!r})"
        )


@dataclass(frozen=True, kw_only=True)
class InstallOptions:
    consumer: ClusterAccess
    #: Exactly one of ``provider`` (an admin's kubeconfig of the provider) and ``robot``.
    provider: ClusterAccess | None = None
    robot: RobotToken | None = None
    connection_name: str = DEFAULT_CONNECTION
    namespace: str = DEFAULT_NAMESPACE
    #: The credentials Secret; None: :func:`default_secret_name`.
    secret_name: str | None = None
    #: The consumer's identity in the provider; None: the consumerClusterDisplayName of a
    #: release taken over from another chart, else derived from kube-system's uid.
    consumer_cluster_name: str | None = None
    #: None: a taken-over release's pollInterval, else :data:`DEFAULT_POLL_INTERVAL`.
    poll_interval: str | None = None
    #: ``group`` or ``group/plural`` entries: bind only these of the offered APIs (with a
    #: robot token whose provider cannot be listed: exactly these).
    bound_apis: tuple[str, ...] = ()
    #: Extra Helm values (from ``--values`` files and ``--set``), applied over the computed ones.
    values: Mapping[str, Any] = field(default_factory=dict)
    #: A chart directory, or a chart reference for helm (repo/chart, oci://...); None: shipped.
    chart: str | None = None
    chart_version: str | None = None
    helm: str | None = None
    upgrade: bool = False
    wait: bool = True
    timeout: float = 300.0
    #: The provider-side ValidatingAdmissionPolicy that lets this consumer's identity write
    #: only its own twins (with ``provider`` only; a robot token creates nothing there).
    #: None: apply it if the provider serves it, else warn and install without it; True:
    #: required, the install is refused before writing when the provider does not serve it;
    #: False: install neither applies nor changes it.
    isolation_policy: bool | None = None
    #: The connection's ``spec.placement`` (``Default`` or ``Isolated``), and the provider
    #: access install creates for it; None: as the connection is (``Default`` for a new one).
    placement: str | None = None
    #: Default placement: also let the identity read Secrets (connection details), in every
    #: namespace. The isolated placement grants it in the consumer's own namespaces always.
    connection_secrets: bool = False
    #: Install only the connector (CRDs and Helm release): no credentials Secret, no
    #: ClusterConnection, nothing in the provider (``up``'s ``--skip-connection``). The
    #: APIs it may sync come from the ClusterConnections already in the consumer and from
    #: ``bound_apis``.
    skip_connection: bool = False
    #: Validate and print what would change; write nothing.
    dry_run: bool = False
    #: The adoption opt-in of the connections this install manages (the one it creates, or
    #: with ``skip_connection`` every ClusterConnection in the consumer): True turns on
    #: ``spec.adoption.policy: AdoptManaged``, False turns it off; None leaves it as it is.
    adopt: bool | None = None


@dataclass(frozen=True, kw_only=True)
class UninstallOptions:
    consumer: ClusterAccess
    #: An admin's kubeconfig of the provider: also revoke this consumer's identity and remove
    #: its isolation policy there. None: nothing in the provider is touched.
    provider: ClusterAccess | None = None
    #: The consumer's name in the provider; None: the release's consumerClusterDisplayName,
    #: else derived from kube-system's uid (as install does).
    consumer_cluster_name: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    all_: bool = False
    helm: str | None = None
    timeout: float = 300.0


def default_secret_name(connection_name: str, *, robot: bool) -> str:
    """``provider-connection`` → ``provider-kubeconfig`` (or ``provider-robot-token``).

    A trailing ``-connection`` is dropped, so the default connection gets the walkthrough's
    Secret name, and each connection gets its own Secret.
    """
    base = connection_name.removesuffix("-connection") or connection_name
    return f"{base}-robot-token" if robot else f"{base}-kubeconfig"


def counted(n: int, noun: str) -> str:
    """``1 CRD``, ``2 CRDs``: a count in a progress message."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def duration(seconds: float) -> str:
    """``5m0s``, ``45s``: a timeout in a message, as the ``--timeout`` flag spells it."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
