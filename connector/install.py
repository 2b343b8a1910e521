"""``api-connector install`` / ``uninstall``: put the connector into a consumer, or take it out.

The connector's own equivalent of ``up controlplane api-connector install/uninstall``.

``install`` runs in two phases:

1. **Validate, writing nothing**: both kubeconfigs and contexts can be used, both clusters
   answer, the installer's identity may do everything the install does (SelfSubjectAccess
   Reviews), the chart and helm are found, the provider's offered APIs are listed, an
   existing Helm release, Secret or ClusterConnection does not belong to someone else,
   and whether the provider serves ValidatingAdmissionPolicy for the isolation policy.
2. **Write, each step idempotent**: on the provider (with an admin's kubeconfig) the
   consumer's isolation policy (the binder's ``isolation_policy``: its identity may write
   only objects labelled as its own), the per-consumer namespace, ServiceAccount, token
   Secret and a ClusterRole limited to the offered APIs (the binder's ``provider_access``),
   then a kubeconfig for that identity; in the consumer the namespace, the connector's
   CRDs, the credentials Secret, the Helm release and the ClusterConnection. Then, with
   ``wait``, until the connection is Ready.

A failure in phase 2 leaves what was written in place and a rerun with the same arguments
completes it; the one exception is a first ``helm install`` that fails, whose release is
uninstalled again so that the rerun is not blocked by a failed release.

``uninstall`` removes the Helm release, with ``all_`` also the ClusterConnections and
Secrets the installer created, and finally the connector's finalizer from every bound
object, so that nothing stays stuck in deletion. Given the provider's admin kubeconfig, it
then revokes what install created there for this consumer: its identity first, then its
isolation policy (never the other way round, which would leave a live identity
unconfined). It never deletes the provider's twins of the consumer's objects.

Side effects go through :class:`~connector.kube.KubeClient` and :class:`~connector.helm.Helm`;
progress is reported through the ``report`` callable (one sentence per call), and failures a
user must act on are :class:`InstallError` with a message saying what to fix. Nothing here
prints or logs secret material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3.exceptions
import yaml
from kubernetes.client.exceptions import ApiException

from connector.helm import Helm, HelmError, Release, Runner, find_helm
from connector.kube import (
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    ConfigError,
    ForbiddenError,
    KubeClient,
    KubeError,
    NotFoundError,
    Resource,
    TLSError,
    UnauthorizedError,
    UnreachableError,
    client_from_kubeconfig,
    client_from_robot_token,
    error_from_api_exception,
)
from connector.kube.errors import ConflictError, InvalidError, error_from_transport
from connector.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    SERVICE_ACCOUNTS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from connector.shipped import ShippedFileError, chart_dir
from functions.binder import AccessRequest, AccessResult, BoundResource, provider_access
from functions.binder.isolation import ADMISSION_API_VERSION, isolation_policy, policy_name
from functions.common import (
    BINDABLE_LABEL,
    FINALIZER,
    LABEL_CONNECTION,
    LABEL_CONSUMER_CLUSTER,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    InvalidInputError,
    label_value,
)
from functions.common.api import DEFAULT_NAMESPACE
from functions.crd_puller import OfferedAPI, PullRequest, pull

__all__ = [
    "DEFAULT_CONNECTION",
    "DEFAULT_NAMESPACE",
    "FIELD_MANAGER",
    "RELEASE",
    "ClusterAccess",
    "InstallError",
    "InstallOptions",
    "Permission",
    "RobotToken",
    "UninstallOptions",
    "default_secret_name",
    "find_chart",
    "install",
    "isolation_permissions",
    "merge_values",
    "parse_set",
    "revocation_order",
    "uninstall",
]

RELEASE = "api-connector"
DEFAULT_CONNECTION = "provider-connection"
FIELD_MANAGER = "api-connector-installer"
#: Every consumer object the installer creates carries this label; ``uninstall --all``
#: deletes only objects that do.
INSTALLER_LABELS = {LABEL_MANAGED_BY: MANAGED_BY}

#: How long a new ``kubernetes.io/service-account-token`` Secret may take to be filled by the
#: provider's token controller before the installer asks the TokenRequest API instead.
TOKEN_SECRET_WAIT = 5.0
#: Lifetime asked for a TokenRequest token (the provider may grant less).
TOKEN_REQUEST_SECONDS = 365 * 24 * 3600
#: A TokenRequest token kept from an earlier run is renewed when it expires sooner than this.
TOKEN_RENEW_BEFORE = 30 * 24 * 3600
#: Seconds between two looks at the ClusterConnection while waiting for Ready.
READY_POLL_INTERVAL = 1.0
CRD_ESTABLISHED_TIMEOUT = 30.0

_PODS = Resource("", "v1", "pods", "Pod", True)
#: What install creates in the provider, by kind.
_PROVIDER_RESOURCES = {
    r.kind: r
    for r in (
        NAMESPACES,
        SERVICE_ACCOUNTS,
        SECRETS,
        CLUSTER_ROLES,
        CLUSTER_ROLE_BINDINGS,
        VALIDATING_ADMISSION_POLICIES,
        VALIDATING_ADMISSION_POLICY_BINDINGS,
    )
}

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
    #: The consumer's identity in the provider; None: derived from kube-system's uid.
    consumer_cluster_name: str | None = None
    poll_interval: str = "10m"
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


@dataclass(frozen=True, kw_only=True)
class Permission:
    """One thing the installer's identity must be allowed to do."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    subresource: str | None = None

    def describe(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{where}"


# -- pure helpers ---------------------------------------------------------------------------


def default_secret_name(connection_name: str, *, robot: bool) -> str:
    """``provider-connection`` → ``provider-kubeconfig`` (or ``provider-robot-token``).

    A trailing ``-connection`` is dropped, so the default connection gets the walkthrough's
    Secret name, and each connection gets its own Secret.
    """
    base = connection_name.removesuffix("-connection") or connection_name
    return f"{base}-robot-token" if robot else f"{base}-kubeconfig"


def parse_set(assignments: Iterable[str]) -> dict[str, Any]:
    """Helm-style ``--set`` assignments as nested values.

    Supported: ``a.b.c=value``, several assignments separated by commas, lists as
    ``{x,y}``, ``\\`` escaping ``.``, ``,`` or ``=``. Values are typed as helm types them:
    ``true``/``false``, ``null`` and integers; everything else is a string. List indexes
    (``a[0]=x``) are not supported: use a values file (``--values``).
    """
    out: dict[str, Any] = {}
    for assignment in assignments:
        for item in _split_unescaped(assignment, ",", keep_braces=True):
            if not item:
                continue
            key, sep, raw = _partition_unescaped(item, "=")
            if not sep:
                raise InstallError(f"--set {item}: expected key=value.")
            path = [_unescape(p) for p in _split_unescaped(key, ".")]
            if not all(path):
                raise InstallError(f"--set {item}: the key has an empty part.")
            if any("[" in p for p in path):
                raise InstallError(
                    f"--set {item}: list indexes are not supported; put the value in a YAML "
                    "file and pass --values FILE."
                )
            value: Any
            if raw.startswith("{") and raw.endswith("}"):
                inner = raw[1:-1]
                value = [_typed(_unescape(v)) for v in _split_unescaped(inner, ",") if v]
            else:
                value = _typed(_unescape(raw))
            node = out
            for part in path[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[path[-1]] = value
    return out


def _split_unescaped(text: str, sep: str, *, keep_braces: bool = False) -> list[str]:
    parts: list[str] = []
    current = ""
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if keep_braces and c == "{":
            depth += 1
        elif keep_braces and c == "}":
            depth = max(0, depth - 1)
        if c == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += c
        i += 1
    parts.append(current)
    return parts


def _partition_unescaped(text: str, sep: str) -> tuple[str, str, str]:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return text[:i], sep, text[i + 1 :]
        i += 1
    return text, "", ""


def _unescape(text: str) -> str:
    out = ""
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def _typed(value: str) -> Any:
    if value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    if value == "null":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged over ``base`` (maps merge; anything else is replaced)."""
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = merge_values(current, value)
        else:
            out[key] = value
    return out


def bound_apis_value(resources: Iterable[BoundResource]) -> list[dict[str, Any]]:
    """The chart's ``boundAPIs``: one entry per group, plurals sorted."""
    by_group: dict[str, set[str]] = {}
    for r in resources:
        by_group.setdefault(r.group, set()).add(r.plural)
    return [{"group": g, "resources": sorted(p)} for g, p in sorted(by_group.items())]


def union_bound_apis(*lists: Any) -> list[dict[str, Any]]:
    """The union of several ``boundAPIs`` values (malformed entries are dropped)."""
    by_group: dict[str, set[str]] = {}
    for entries in lists:
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("group"), str):
                continue
            plurals = entry.get("resources")
            by_group.setdefault(entry["group"], set()).update(
                str(p) for p in (plurals if isinstance(plurals, list) else [])
            )
    return [{"group": g, "resources": sorted(p)} for g, p in sorted(by_group.items())]


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
                f"the provider's CRD with {BINDABLE_LABEL}=true, or drop the flag."
            )
        chosen.extend(a for a in matched if a not in chosen)
    return chosen


def bound_resource(api: OfferedAPI) -> BoundResource:
    return BoundResource(
        crd_name=api.name,
        group=api.group,
        kind=api.kind,
        plural=api.plural,
        scope=api.scope,
        version=api.storage_version or (api.versions[-1] if api.versions else ""),
    )


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


def consumer_permissions(namespace: str) -> list[Permission]:
    """What ``install`` does in the consumer (its own writes and the chart's objects)."""
    needs = [
        Permission(verb="get", resource="namespaces"),
        Permission(verb="get", group="apiextensions.k8s.io", resource="customresourcedefinitions"),
        Permission(
            verb="create", group="apiextensions.k8s.io", resource="customresourcedefinitions"
        ),
        Permission(
            verb="patch", group="apiextensions.k8s.io", resource="customresourcedefinitions"
        ),
    ]
    for verb in ("get", "create", "patch"):
        needs.append(
            Permission(verb=verb, group="connect.upbound.io", resource="clusterconnections")
        )
    for resource in ("clusterroles", "clusterrolebindings"):
        for verb in ("create", "patch"):
            needs.append(
                Permission(verb=verb, group="rbac.authorization.k8s.io", resource=resource)
            )
    namespaced = [
        ("", "secrets", ("get", "list", "create", "patch", "delete")),
        ("", "serviceaccounts", ("create", "patch")),
        ("", "services", ("create", "patch")),
        ("apps", "deployments", ("create", "patch")),
        ("rbac.authorization.k8s.io", "roles", ("create", "patch")),
        ("rbac.authorization.k8s.io", "rolebindings", ("create", "patch")),
    ]
    for group, resource, verbs in namespaced:
        for verb in verbs:
            needs.append(Permission(verb=verb, group=group, resource=resource, namespace=namespace))
    return needs


def provider_permissions(access: AccessResult) -> list[Permission]:
    """What ``install`` does in the provider with an admin's kubeconfig."""
    rbac = "rbac.authorization.k8s.io"
    ns = access.namespace
    return [
        Permission(verb="list", group="apiextensions.k8s.io", resource="customresourcedefinitions"),
        Permission(verb="create", resource="namespaces"),
        Permission(verb="patch", resource="namespaces"),
        Permission(verb="create", resource="serviceaccounts", namespace=ns),
        Permission(verb="patch", resource="serviceaccounts", namespace=ns),
        Permission(verb="create", resource="serviceaccounts", namespace=ns, subresource="token"),
        Permission(verb="get", resource="secrets", namespace=ns),
        Permission(verb="create", resource="secrets", namespace=ns),
        Permission(verb="patch", resource="secrets", namespace=ns),
        Permission(verb="create", group=rbac, resource="clusterroles"),
        Permission(verb="patch", group=rbac, resource="clusterroles"),
        Permission(verb="create", group=rbac, resource="clusterrolebindings"),
        Permission(verb="patch", group=rbac, resource="clusterrolebindings"),
    ]


def isolation_permissions(verbs: Iterable[str]) -> list[Permission]:
    """``verbs`` on the isolation policy's two kinds (cluster-scoped), in the provider."""
    group = VALIDATING_ADMISSION_POLICIES.group
    return [
        Permission(verb=verb, group=group, resource=res.plural)
        for res in (VALIDATING_ADMISSION_POLICIES, VALIDATING_ADMISSION_POLICY_BINDINGS)
        for verb in verbs
    ]


def revoke_permissions(access: AccessResult) -> list[Permission]:
    """What ``uninstall`` does in the provider: read and delete what install created there."""
    rbac = "rbac.authorization.k8s.io"
    ns = access.namespace
    needs = isolation_permissions(("get", "delete"))
    for verb in ("get", "delete"):
        needs += [
            Permission(verb=verb, group=rbac, resource="clusterrolebindings"),
            Permission(verb=verb, group=rbac, resource="clusterroles"),
            Permission(verb=verb, resource="serviceaccounts", namespace=ns),
            Permission(verb=verb, resource="secrets", namespace=ns),
            Permission(verb=verb, resource="namespaces"),
        ]
    return needs


def scoped_kubeconfig(*, cluster: Mapping[str, Any], token: str, user: str, namespace: str) -> str:
    """A kubeconfig for the provider's scoped identity: the provider's address and CA, a token.

    ``cluster`` is the ``cluster`` section of the admin's kubeconfig with the CA embedded;
    only connection settings are copied from it, never credentials.
    """
    kept = {
        key: cluster[key]
        for key in (
            "server",
            "certificate-authority-data",
            "insecure-skip-tls-verify",
            "tls-server-name",
            "proxy-url",
        )
        if key in cluster
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "provider", "cluster": kept}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "provider",
                "context": {"cluster": "provider", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "provider",
    }
    return yaml.safe_dump(config, sort_keys=True)


def token_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT; ``{}`` when it is not one.

    Only used to decide whether a token from an earlier run is ours and still long-lived; the
    provider verifies every request anyway.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _reason_of(exc: BaseException) -> str:
    """A short cause of a transport failure: ``connection refused``, ``timed out``, ..."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            current = current.reason
        else:
            current = current.__cause__ or current.__context__
    # urllib3's NewConnectionError is also a ConnectTimeoutError: look for the OS error first.
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
        return "the host name does not resolve"
    if any(isinstance(e, TimeoutError | urllib3.exceptions.TimeoutError) for e in chain):
        return "timed out"
    return str(exc).rstrip(".")


# -- reading kubeconfigs and checking clusters ----------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Cluster:
    role: str  # consumer | provider
    access: ClusterAccess
    client: KubeClient
    #: The ``cluster`` section of the chosen context, CA embedded (for the scoped kubeconfig).
    cluster_entry: dict[str, Any]


def _open_cluster(access: ClusterAccess, role: str) -> _Cluster:
    path = access.kubeconfig
    try:
        content = path.read_bytes()
    except OSError as e:
        raise InstallError(
            f"cannot read the {role} kubeconfig {path}: {e.strerror or e}; pass a readable "
            f"file to --{role}-kubeconfig."
        ) from e
    try:
        config = yaml.safe_load(content)
    except yaml.YAMLError:
        config = None  # client_from_kubeconfig explains the syntax error without quoting it
    chosen = access.context
    if isinstance(config, dict):
        contexts = [
            str(c.get("name"))
            for c in config.get("contexts") or []
            if isinstance(c, dict) and c.get("name")
        ]
        if chosen is None:
            chosen = str(config.get("current-context") or "") or None
        if chosen is not None and chosen not in contexts:
            flag = f"--{role}-context"
            raise InstallError(
                f"context {chosen!r} not found in {path}; available: "
                f"{', '.join(contexts) or '(none)'}. Pass one of them to {flag}."
            )
    try:
        client = client_from_kubeconfig(
            content, access.context, name=role, base_path=str(path.resolve().parent)
        )
    except ConfigError as e:
        raise InstallError(f"the {role} kubeconfig {path} cannot be used: {e}") from e
    assert isinstance(config, dict)  # client_from_kubeconfig parsed it
    return _Cluster(
        role=role,
        access=access,
        client=client,
        cluster_entry=_cluster_entry(config, chosen, path),
    )


def _cluster_entry(config: Mapping[str, Any], context: str | None, path: Path) -> dict[str, Any]:
    contexts = {c.get("name"): c for c in config.get("contexts") or [] if isinstance(c, dict)}
    clusters = {c.get("name"): c for c in config.get("clusters") or [] if isinstance(c, dict)}
    chosen = context or next(iter(contexts), None)
    details = (contexts.get(chosen) or {}).get("context") or {}
    entry = dict((clusters.get(details.get("cluster")) or {}).get("cluster") or {})
    ca_file = entry.pop("certificate-authority", None)
    if ca_file and "certificate-authority-data" not in entry:
        ca_path = Path(str(ca_file))
        if not ca_path.is_absolute():
            ca_path = path.resolve().parent / ca_path
        try:
            entry["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
        except OSError as e:
            raise InstallError(
                f"cannot read the certificate authority {ca_path} named in {path}: "
                f"{e.strerror or e}."
            ) from e
    return entry


def _check_reachable(cluster: _Cluster) -> None:
    client, role = cluster.client, cluster.role
    try:
        client.server_version()
    except UnreachableError as e:
        raise InstallError(
            f"cannot reach the {role} cluster at {client.server}: {_reason_of(e)}. Check "
            f"that the address in {cluster.access.kubeconfig} is right and the cluster is up."
        ) from e
    except TLSError as e:
        raise InstallError(
            f"cannot reach the {role} cluster at {client.server}: its TLS certificate is not "
            f"trusted by the certificate authority in {cluster.access.kubeconfig}."
        ) from e
    except UnauthorizedError as e:
        raise InstallError(
            f"the {role} cluster at {client.server} rejected the credentials in "
            f"{cluster.access.kubeconfig} (401 Unauthorized); they are wrong or expired."
        ) from e
    except KubeError as e:
        raise InstallError(
            f"cannot reach the {role} cluster at {client.server}: {e.message}"
        ) from e


def _check_permissions(cluster: _Cluster, needs: Sequence[Permission], *, hint: str = "") -> None:
    """Refuse with every missing permission named; ``hint`` is another way out, if any."""
    missing: list[Permission] = []
    for need in needs:
        try:
            allowed = cluster.client.self_subject_access_review(
                need.verb,
                need.group,
                need.resource,
                need.namespace,
                subresource=need.subresource,
            )
        except UnauthorizedError as e:
            raise InstallError(
                f"the {cluster.role} cluster at {cluster.client.server} rejected the "
                f"credentials in {cluster.access.kubeconfig} (401 Unauthorized)."
            ) from e
        except KubeError as e:
            raise InstallError(
                f"cannot check the installer's permissions in the {cluster.role} cluster: "
                f"{e.message}"
            ) from e
        if not allowed:
            missing.append(need)
    if missing:
        raise InstallError(_missing_message(cluster, missing, hint=hint))


def _missing_message(cluster: _Cluster, missing: Sequence[Permission], *, hint: str = "") -> str:
    described = [m.describe() for m in missing]
    listing = described[0] if len(described) == 1 else ", ".join(described)
    return (
        f"the installer lacks permission to {listing} in the {cluster.role} cluster; ask an "
        f"admin of the {cluster.role} cluster to grant it, or use an admin's kubeconfig "
        f"(--{cluster.role}-kubeconfig){'; ' + hint if hint else ''}. Nothing was changed."
    )


def _forbidden(cluster: _Cluster, what: str, e: ForbiddenError) -> InstallError:
    return InstallError(
        f"the installer lacks permission to {what} in the {cluster.role} cluster: {e.message}"
    )


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


def _chart_crds(directory: Path | None) -> list[dict[str, Any]]:
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


# -- install --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Isolation:
    """The consumer's isolation policy as validation found it; the write phase applies it."""

    name: str
    #: The policy and its binding to apply; empty: no API is bound, remove them if they exist.
    objects: list[dict[str, Any]]
    exists: bool


@dataclass(kw_only=True)
class _Plan:
    """Everything validation found out; the write phase only executes it."""

    consumer: _Cluster
    provider: _Cluster | None
    helm: Helm
    chart: str
    chart_dir: Path | None
    namespace_exists: bool
    consumer_name: str
    resources: list[BoundResource]
    access: AccessResult | None
    #: None: the isolation policy is not applied (robot token, opted out, or not served).
    isolation: _Isolation | None
    secret_name: str
    existing_secret: dict[str, Any] | None
    release: Release | None
    values: dict[str, Any]
    run_helm: bool


def install(opts: InstallOptions, *, report: Report, run: Runner | None = None) -> None:
    """Install or update the connector in the consumer; see the module docstring."""
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
    plan = _validate(opts, report=report, run=run)
    _execute(opts, plan, report=report)
    if opts.wait:
        _wait_ready(plan.consumer.client, opts.connection_name, opts.timeout, report=report)
    else:
        report(
            f"Not waiting for ClusterConnection {opts.connection_name} to become Ready "
            f"(--no-wait); check with: kubectl get clusterconnection {opts.connection_name}"
        )


def _validate(opts: InstallOptions, *, report: Report, run: Runner | None) -> _Plan:
    consumer = _open_cluster(opts.consumer, "consumer")
    _check_reachable(consumer)
    provider: _Cluster | None = None
    if opts.provider is not None:
        provider = _open_cluster(opts.provider, "provider")
    chart, chart_dir = find_chart(opts.chart, opts.chart_version)
    try:
        helm_binary = find_helm(opts.helm, **({"run": run} if run else {}))
    except HelmError as e:
        raise InstallError(str(e)) from e
    helm = Helm(
        helm_binary,
        kubeconfig=opts.consumer.kubeconfig,
        context=opts.consumer.context,
        timeout=opts.timeout,
        **({"run": run} if run else {}),
    )

    _check_permissions(consumer, consumer_permissions(opts.namespace))
    client = consumer.client
    try:
        namespace_exists = _exists(client, NAMESPACES, opts.namespace)
        if not namespace_exists:
            _check_permissions(consumer, [Permission(verb="create", resource="namespaces")])
        consumer_name = opts.consumer_cluster_name or _default_consumer_name(client)
        secret_name = opts.secret_name or default_secret_name(
            opts.connection_name, robot=opts.robot is not None
        )
        existing_secret = _get(client, SECRETS, secret_name, opts.namespace)
        try:
            connection = _get(client, CLUSTER_CONNECTIONS, opts.connection_name)
        except NotFoundError:
            connection = None  # the connector's CRDs are not installed yet
    except ForbiddenError as e:
        raise _forbidden(consumer, "read what install needs", e) from e
    except KubeError as e:
        raise InstallError(f"cannot read the consumer cluster: {e.message}") from e
    _check_ours(existing_secret, f"Secret {opts.namespace}/{secret_name}", "--secret-name")
    _check_ours(connection, f"ClusterConnection {opts.connection_name}", "--name")
    report(
        f"Consumer cluster {client.server} is reachable and the installer may install the "
        f"connector there (consumer name in the provider: {consumer_name})."
    )

    access: AccessResult | None = None
    isolation: _Isolation | None = None
    if provider is not None:
        _check_reachable(provider)
        _check_permissions(
            provider,
            [
                Permission(
                    verb="list",
                    group="apiextensions.k8s.io",
                    resource="customresourcedefinitions",
                )
            ],
        )
        offered = _offered_apis(provider)
        resources = [bound_resource(a) for a in select_apis(offered, opts.bound_apis)]
        access = provider_access(AccessRequest(consumer_name=consumer_name, resources=resources))
        _check_permissions(provider, provider_permissions(access))
        report(
            f"Provider cluster {provider.client.server} is reachable and offers "
            f"{_count(len(offered), 'bindable API')}"
            + (f": {', '.join(a.name for a in offered)}." if offered else ".")
        )
        isolation = _plan_isolation(
            provider, opts.isolation_policy, consumer_name, resources, report=report
        )
        if not resources:
            report(
                f"Warning: no API is bound yet. Label provider CRDs with {BINDABLE_LABEL}=true "
                "and rerun install with --upgrade to grant the connector access to them."
            )
    else:
        assert opts.robot is not None
        resources = _robot_resources(opts.robot, opts.bound_apis, report=report)

    release, values, run_helm = _plan_release(opts, helm, chart_dir, consumer_name, resources)
    return _Plan(
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


def _plan_isolation(
    provider: _Cluster,
    wanted: bool | None,
    consumer_name: str,
    resources: Sequence[BoundResource],
    *,
    report: Report,
) -> _Isolation | None:
    """Whether and what to apply of the consumer's isolation policy (``wanted`` as in
    :attr:`InstallOptions.isolation_policy`); refuses or warns if the provider lacks the API."""
    if wanted is False:
        report(
            "Provider: the isolation policy is neither applied nor changed (--no-isolation-policy)."
        )
        return None
    client = provider.client
    name = policy_name(consumer_name)
    try:
        existing = _get(client, VALIDATING_ADMISSION_POLICIES, name)
    except NotFoundError:
        # Not the object, the API: the provider does not serve ValidatingAdmissionPolicy v1.
        what = (
            f"the provider cluster at {client.server} does not serve ValidatingAdmissionPolicy "
            f"({ADMISSION_API_VERSION}; Kubernetes 1.30 or newer)"
        )
        if wanted:
            raise InstallError(
                f"{what}, so --isolation-policy cannot be honoured. Upgrade the provider, or "
                "pass --no-isolation-policy to install without it. Nothing was changed."
            ) from None
        report(
            f"Warning: {what}; installing without the isolation policy. RBAC alone lets this "
            "consumer's provider identity overwrite other consumers' objects of the same APIs "
            "(see docs/security.md). Pass --isolation-policy to require the policy, or "
            "--no-isolation-policy to install without it and without this warning."
        )
        return None
    except ForbiddenError:
        existing = None  # the permission check below names what is missing
    except KubeError as e:
        raise InstallError(f"cannot read the provider's admission policies: {e.message}") from e
    try:
        objects = isolation_policy(consumer_name, list(resources)) if resources else []
    except InvalidInputError as e:
        raise InstallError(f"cannot build the isolation policy: {e}") from e
    verbs = ("get", "create", "patch") if objects else ("get", "delete")
    _check_permissions(
        provider,
        isolation_permissions(verbs),
        hint="or pass --no-isolation-policy to install without the isolation policy",
    )
    return _Isolation(name=name, objects=objects, exists=existing is not None)


def _default_consumer_name(client: KubeClient) -> str:
    from connector.manager import default_consumer_cluster_name

    return default_consumer_cluster_name(client)


def _check_ours(obj: Mapping[str, Any] | None, what: str, flag: str) -> None:
    if obj is None:
        return
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        raise InstallError(
            f"{what} already exists and was not created by api-connector install; choose "
            f"another name with {flag}, or delete it first."
        )


def _offered_apis(provider: _Cluster) -> list[OfferedAPI]:
    try:
        crds, _ = provider.client.list(
            CUSTOM_RESOURCE_DEFINITIONS, label_selector=f"{BINDABLE_LABEL}=true"
        )
    except KubeError as e:
        raise InstallError(f"cannot list the provider's CRDs: {e.message}") from e
    result = pull(
        PullRequest(
            connection_name="installer",
            provider_crds=crds,
            consumer_crds=[],
            pull_behavior="Never",
            now=_now(),
        )
    )
    return list(result.offered)


def _robot_resources(
    robot: RobotToken, bound_apis: Sequence[str], *, report: Report
) -> list[BoundResource]:
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
            f"Binding {_count(len(resources), 'API')} named by --bound-api; the provider's "
            "offered APIs were not listed."
        )
        return resources
    try:
        crds, _ = client.list(CUSTOM_RESOURCE_DEFINITIONS, label_selector=f"{BINDABLE_LABEL}=true")
    except KubeError as e:
        raise InstallError(
            f"cannot list the provider's APIs through the robot token at {client.server}: "
            f"{_reason_of(e) if isinstance(e, UnreachableError) else e.message}. Pass "
            "--bound-api GROUP/PLURAL for each API to bind instead."
        ) from e
    finally:
        client.close()
    offered = pull(
        PullRequest(
            connection_name="installer",
            provider_crds=crds,
            consumer_crds=[],
            pull_behavior="Never",
            now=_now(),
        )
    ).offered
    report(f"The provider control plane offers {_count(len(offered), 'bindable API')}.")
    return [bound_resource(a) for a in select_apis(offered, bound_apis)]


def _plan_release(
    opts: InstallOptions,
    helm: Helm,
    chart_dir: Path | None,
    consumer_name: str,
    resources: Sequence[BoundResource],
) -> tuple[Release | None, dict[str, Any], bool]:
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
    same_chart = chart_dir is None or release.chart == _chart_version(chart_dir)
    if release.status == "deployed" and same_chart and current == values:
        return release, values, False
    raise InstallError(
        f"the Helm release {RELEASE} already exists in namespace {opts.namespace} (status "
        f"{release.status}, chart {release.chart}) with other values; rerun with --upgrade to "
        "update it."
    )


def _execute(opts: InstallOptions, plan: _Plan, *, report: Report) -> None:
    if plan.provider is not None:
        assert plan.access is not None
        kubeconfig = _provision_provider(plan.provider, plan.access, plan, report=report)
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
        crds = _chart_crds(plan.chart_dir)
        for crd in crds:
            client.apply(CUSTOM_RESOURCE_DEFINITIONS, crd, FIELD_MANAGER)
        _wait_established(client, crds)
        if crds:
            report(f"Applied the connector's {_count(len(crds), 'CRD')}.")
        client.apply(SECRETS, _secret(opts, plan.secret_name, secret_data), FIELD_MANAGER)
        report(
            f"Secret {opts.namespace}/{plan.secret_name} holds the provider credentials "
            f"({secret_kind})."
        )
    except KubeError as e:
        raise InstallError(f"cannot write to the consumer cluster: {e.message}") from e

    _install_release(opts, plan, report=report)

    connection = {
        "apiVersion": CLUSTER_CONNECTIONS.api_version,
        "kind": CLUSTER_CONNECTIONS.kind,
        "metadata": {"name": opts.connection_name, "labels": dict(INSTALLER_LABELS)},
        "spec": {
            "secretRef": {
                "kind": secret_kind,
                "name": plan.secret_name,
                "namespace": opts.namespace,
            },
            "crdManagement": {"pullBehavior": "Pull"},
        },
    }
    try:
        client.apply(CLUSTER_CONNECTIONS, connection, FIELD_MANAGER)
    except KubeError as e:
        raise InstallError(
            f"cannot apply ClusterConnection {opts.connection_name}: {e.message}"
        ) from e
    report(f"ClusterConnection {opts.connection_name} points at that Secret.")


def _install_release(opts: InstallOptions, plan: _Plan, *, report: Report) -> None:
    if not plan.run_helm:
        report(
            f"Helm release {RELEASE} in namespace {opts.namespace} is already installed with "
            "these values; left as it is."
        )
        return
    fresh = plan.release is None
    try:
        plan.helm.install(
            RELEASE,
            plan.chart,
            opts.namespace,
            plan.values,
            upgrade=opts.upgrade,
            version=opts.chart_version if plan.chart_dir is None else None,
            skip_crds=plan.chart_dir is not None,
        )
    except HelmError as e:
        if fresh:
            _roll_back_release(plan.helm, opts.namespace)
        raise InstallError(
            f"{e} The other objects are in place; rerun install with the same arguments once "
            "the cause is fixed."
        ) from e
    verb = "installed" if fresh else "upgraded"
    report(f"Helm release {RELEASE} {verb} in namespace {opts.namespace} ({plan.chart}).")


def _roll_back_release(helm: Helm, namespace: str) -> None:
    # A failed first install leaves a release in state "failed" that would block a rerun
    # without --upgrade; it was created by this run, so remove it.
    try:
        if helm.release(RELEASE, namespace) is not None:
            helm.uninstall(RELEASE, namespace)
    except HelmError:
        pass


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


def _provision_provider(
    provider: _Cluster, access: AccessResult, plan: _Plan, *, report: Report
) -> str:
    """Apply the consumer's scoped access in the provider; return a kubeconfig for it."""
    client = provider.client
    # The policy first: on a first install, the identity never exists unconfined.
    _apply_isolation(client, plan.isolation, access, plan.consumer_name, report=report)
    try:
        for obj in access.objects:
            client.apply(_PROVIDER_RESOURCES[obj["kind"]], obj, FIELD_MANAGER)
    except KubeError as e:
        raise InstallError(
            f"cannot write the consumer's access to the provider: {e.message}"
        ) from e
    names = ", ".join(a.crd_name for a in plan.resources) or "no API yet"
    report(
        f"Provider: ServiceAccount {access.namespace}/{access.service_account} may use "
        f"{names} (and read CRDs, create namespaces), nothing else."
    )
    user = f"system:serviceaccount:{access.namespace}:{access.service_account}"
    reused = _reusable_kubeconfig(plan, provider, user)
    if reused is not None:
        report("Provider: the token stored by an earlier install still works; kept it.")
        return reused
    token, how = _service_account_token(client, access)
    report(f"Provider: got a token for that ServiceAccount ({how}).")
    return scoped_kubeconfig(
        cluster=provider.cluster_entry,
        token=token,
        user=f"{access.namespace}-{access.service_account}",
        namespace=access.namespace,
    )


def _apply_isolation(
    client: KubeClient,
    isolation: _Isolation | None,
    access: AccessResult,
    consumer_name: str,
    *,
    report: Report,
) -> None:
    if isolation is None:
        return
    try:
        if not isolation.objects:
            if isolation.exists:
                _delete(client, VALIDATING_ADMISSION_POLICY_BINDINGS, isolation.name)
                _delete(client, VALIDATING_ADMISSION_POLICIES, isolation.name)
                report(
                    f"Provider: removed the isolation policy {isolation.name}; no API is bound, "
                    "so there is nothing to confine."
                )
            return
        for obj in isolation.objects:
            client.apply(_PROVIDER_RESOURCES[obj["kind"]], obj, FIELD_MANAGER)
    except KubeError as e:
        raise InstallError(
            f"cannot write the isolation policy {isolation.name} to the provider: {e.message}"
        ) from e
    report(
        f"Provider: ValidatingAdmissionPolicy {isolation.name} (and its binding) lets "
        f"ServiceAccount {access.namespace}/{access.service_account} write only objects "
        f"labelled {LABEL_CONSUMER_CLUSTER}={label_value(consumer_name)}."
    )


def _reusable_kubeconfig(plan: _Plan, provider: _Cluster, user: str) -> str | None:
    """The kubeconfig stored by an earlier run, if it is for this identity and still good."""
    secret = plan.existing_secret
    encoded = ((secret or {}).get("data") or {}).get("kubeconfig")
    if not encoded:
        return None
    try:
        text = base64.b64decode(encoded).decode()
        config = yaml.safe_load(text)
        users = config["users"]
        token = str(users[0]["user"]["token"])
        cluster = config["clusters"][0]["cluster"]
    except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError, binascii.Error):
        return None
    if cluster.get("server") != provider.cluster_entry.get("server") or cluster.get(
        "certificate-authority-data"
    ) != provider.cluster_entry.get("certificate-authority-data"):
        return None
    claims = token_claims(token)
    if claims.get("sub") != user:
        return None
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires - time.time() < TOKEN_RENEW_BEFORE:
        return None
    try:
        with client_from_kubeconfig(text, name="provider-scoped") as scoped:
            works = scoped.self_subject_access_review(
                "list", "apiextensions.k8s.io", "customresourcedefinitions"
            )
    except KubeError:
        return None
    return text if works else None


def _service_account_token(client: KubeClient, access: AccessResult) -> tuple[str, str]:
    """A token of the consumer's ServiceAccount and how it was obtained.

    Preferred: the ``kubernetes.io/service-account-token`` Secret, which the provider's token
    controller fills with a token that does not expire (revoked by deleting the Secret).
    Without a token controller (e.g. a bare kube-apiserver) the Secret stays empty; after
    ``TOKEN_SECRET_WAIT`` seconds the TokenRequest API is asked for a token valid for a
    year (or less, if the provider caps it), which a rerun of install renews.
    """
    while True:
        try:
            secret = client.get(SECRETS, access.token_secret, access.namespace)
        except KubeError as e:
            raise InstallError(
                f"cannot read the token Secret {access.namespace}/{access.token_secret} in the "
                f"provider: {e.message}"
            ) from e
        encoded = (secret.get("data") or {}).get("token")
        if encoded:
            return base64.b64decode(encoded).decode(), "from its token Secret, no expiry"
        if _age(secret) >= TOKEN_SECRET_WAIT:
            break
        time.sleep(0.5)
    token, expires = _token_request(client, access)
    return token, f"TokenRequest, expires {expires}; rerun install before then to renew it"


def _age(obj: Mapping[str, Any]) -> float:
    created = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return TOKEN_SECRET_WAIT
    return (datetime.now(UTC) - when).total_seconds()


def _token_request(client: KubeClient, access: AccessResult) -> tuple[str, str]:
    # KubeClient has no call for subresources created by POST; the generated client does
    # it, with our error translation around it.
    from kubernetes.client import AuthenticationV1TokenRequest, CoreV1Api, V1TokenRequestSpec

    # No audiences: the provider's API server audience, which is what the connector talks to.
    body = AuthenticationV1TokenRequest(
        api_version="authentication.k8s.io/v1",
        kind="TokenRequest",
        spec=V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_REQUEST_SECONDS),
    )
    try:
        response = CoreV1Api(client.api_client).create_namespaced_service_account_token(
            access.service_account,
            access.namespace,
            body,
            _preload_content=False,
            _request_timeout=(client.connect_timeout, client.read_timeout),
        )
        data = json.loads(response.data)  # type: ignore[attr-defined]
    except ApiException as e:
        error = error_from_api_exception(e, server=client.server)
        raise InstallError(f"the provider refused a token for the ServiceAccount: {error}") from e
    except urllib3.exceptions.HTTPError as e:
        error = error_from_transport(e, server=client.server)
        raise InstallError(f"cannot get a token from the provider: {error}") from e
    status = data.get("status") or {}
    token = status.get("token")
    if not token:
        raise InstallError("the provider's TokenRequest answer holds no token.")
    return str(token), str(status.get("expirationTimestamp") or "(unknown)")


def _wait_established(client: KubeClient, crds: Sequence[Mapping[str, Any]]) -> None:
    deadline = time.monotonic() + CRD_ESTABLISHED_TIMEOUT
    for crd in crds:
        name = str(crd["metadata"]["name"])
        while True:
            current = client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
            if _condition(current, "Established").get("status") == "True":
                break
            if time.monotonic() > deadline:
                raise InstallError(f"the CRD {name} did not become Established in the consumer.")
            time.sleep(0.2)


def _wait_ready(client: KubeClient, name: str, timeout: float, *, report: Report) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            connection = client.get(CLUSTER_CONNECTIONS, name)
        except KubeError as e:
            state = f"cannot read it: {e.message}"
            ready: dict[str, Any] = {}
        else:
            ready = _condition(connection, "Ready")
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
                f"ClusterConnection {name} did not become Ready within {_duration(timeout)}: "
                f"{state}. Everything installed stays in place; fix the cause and rerun "
                "install (or check: kubectl describe clusterconnection " + name + ")."
            )
        time.sleep(min(READY_POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


# -- uninstall ------------------------------------------------------------------------------


def uninstall(opts: UninstallOptions, *, report: Report, run: Runner | None = None) -> None:
    """Remove the connector from the consumer; see the module docstring."""
    consumer = _open_cluster(opts.consumer, "consumer")
    _check_reachable(consumer)
    provider: _Cluster | None = None
    if opts.provider is not None:
        provider = _open_cluster(opts.provider, "provider")
        _check_reachable(provider)
    client = consumer.client
    revoke: tuple[str, bool] | None = None
    try:
        helm = Helm(
            find_helm(opts.helm, **({"run": run} if run else {})),
            kubeconfig=opts.consumer.kubeconfig,
            context=opts.consumer.context,
            timeout=opts.timeout,
            **({"run": run} if run else {}),
        )
        release = helm.release(RELEASE, opts.namespace)
        if provider is not None:
            # Before anything is removed: the release's values name the consumer, and a
            # missing permission in the provider must stop the uninstall before it starts.
            revoke = _revocation_target(opts, provider, consumer, helm, release)
        if release is not None:
            helm.uninstall(RELEASE, opts.namespace)
    except HelmError as e:
        raise InstallError(str(e)) from e
    did = release is not None
    if did:
        report(f"Uninstalled Helm release {RELEASE} from namespace {opts.namespace}.")
        _wait_connector_gone(client, opts.namespace, opts.timeout, report=report)
    try:
        if opts.all_:
            did = _delete_installed_objects(client, opts.namespace, report=report) or did
        stripped = _strip_finalizers(client)
    except ForbiddenError as e:
        raise _forbidden(consumer, "remove what install created", e) from e
    except KubeError as e:
        raise InstallError(f"cannot clean up the consumer cluster: {e.message}") from e
    if stripped:
        report(
            f"Removed the connector's finalizer from {_count(stripped, 'bound object')}, so "
            "none stays stuck in deletion."
        )
    untouched = _PROVIDER_UNTOUCHED
    if provider is not None and revoke is not None:
        # After the connector is gone, so that it does not run into a revoked identity.
        did = _revoke_provider(provider, *revoke, report=report) or did
        untouched = ""
    if not did and not stripped:
        extra = "" if opts.all_ else " (pass --all to also look for connections and Secrets)"
        report(
            f"Nothing to uninstall: no Helm release {RELEASE} in namespace {opts.namespace}"
            + (
                " and no connection or Secret created by api-connector install."
                if opts.all_
                else "."
            )
            + extra
        )
    elif not opts.all_:
        report(
            "ClusterConnections and their Secrets were kept; uninstall --all removes those "
            f"created by api-connector install. {untouched}".rstrip()
        )
    elif untouched:
        report(untouched)


_PROVIDER_UNTOUCHED = (
    "Nothing in the provider was touched; uninstall --provider-kubeconfig also removes this "
    "consumer's provider identity and isolation policy."
)


def _revocation_target(
    opts: UninstallOptions,
    provider: _Cluster,
    consumer: _Cluster,
    helm: Helm,
    release: Release | None,
) -> tuple[str, bool]:
    """The consumer's name in the provider, and whether it was derived rather than known.

    Checks that the installer may remove what install created there for that name.
    """
    name = opts.consumer_cluster_name
    if not name and release is not None:
        value = helm.values(RELEASE, opts.namespace).get("consumerClusterDisplayName")
        name = value if isinstance(value, str) else None
    derived = not name
    if not name:
        try:
            name = _default_consumer_name(consumer.client)
        except KubeError as e:
            raise InstallError(
                f"cannot derive the consumer's name in the provider from its kube-system "
                f"namespace ({e.message}); pass --consumer-cluster-name."
            ) from e
    access = provider_access(AccessRequest(consumer_name=name, resources=[]))
    _check_permissions(provider, revoke_permissions(access))
    return name, derived


def revocation_order(consumer_name: str) -> list[tuple[Resource, str, str | None]]:
    """What install creates in the provider for ``consumer_name``, in the order to delete it.

    The ClusterRoleBinding first (access ends at once), the ServiceAccount before its
    namespace (its tokens stop working at once, even where namespace deletion takes long),
    the isolation policy last (never an unconfined identity).
    """
    access = provider_access(AccessRequest(consumer_name=consumer_name, resources=[]))
    name = policy_name(consumer_name)
    identity = [
        (
            _PROVIDER_RESOURCES[str(obj["kind"])],
            str(obj["metadata"]["name"]),
            obj["metadata"].get("namespace"),
        )
        for obj in reversed(access.objects)
    ]
    return [
        *identity,
        (VALIDATING_ADMISSION_POLICY_BINDINGS, name, None),
        (VALIDATING_ADMISSION_POLICIES, name, None),
    ]


def _revoke_provider(
    provider: _Cluster, consumer_name: str, derived: bool, *, report: Report
) -> bool:
    """Delete what install created in the provider for ``consumer_name``; whether any was.

    The identity goes first (its ClusterRoleBinding, so that its access ends at once), the
    isolation policy last: removing the policy first would leave a working identity
    unconfined. Only objects carrying install's labels for this consumer are deleted; the
    twins of the consumer's objects are never touched.
    """
    client = provider.client
    ours = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CONSUMER_CLUSTER: label_value(consumer_name)}
    removed = kept = 0
    try:
        for res, obj_name, namespace in revocation_order(consumer_name):
            kind = res.kind
            where = f"{namespace}/{obj_name}" if namespace else obj_name
            try:
                current = _get(client, res, obj_name, namespace)
            except NotFoundError:
                continue  # the API itself is not served: no isolation policy there
            if current is None:
                continue
            meta = current.get("metadata") or {}
            labels = meta.get("labels") or {}
            if any(labels.get(key) != value for key, value in ours.items()):
                kept += 1
                report(
                    f"Provider: left {kind} {where} in place; it lacks the labels install puts "
                    f"on what it creates for consumer {consumer_name}."
                )
                continue
            removed += 1
            if meta.get("deletionTimestamp"):
                report(f"Provider: {kind} {where} is being deleted already.")
            else:
                _delete(client, res, obj_name, namespace)
                report(f"Provider: deleted {kind} {where}.")
    except KubeError as e:
        raise InstallError(
            f"cannot remove consumer {consumer_name}'s identity and isolation policy from the "
            f"provider: {e.message}. Rerun uninstall to finish."
        ) from e
    if removed and not kept:
        report(
            f"Consumer {consumer_name}'s provider identity and isolation policy are removed; "
            "its objects in the provider stay."
        )
    if removed or kept:
        return True
    hint = (
        " That name was derived from the consumer's kube-system namespace; if install was "
        "given --consumer-cluster-name, pass the same name to uninstall."
        if derived
        else ""
    )
    report(
        f"Provider: no identity or isolation policy of consumer {consumer_name} found; "
        f"nothing to remove there.{hint}"
    )
    return False


def _wait_connector_gone(
    client: KubeClient, namespace: str, timeout: float, *, report: Report
) -> None:
    """Wait until no connector pod runs, so that none re-adds a finalizer we remove."""
    selector = f"app.kubernetes.io/instance={RELEASE}"
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            pods, _ = client.list(_PODS, namespace, selector)
        except KubeError:
            return  # cannot list pods: nothing to wait for that we could see
        if not pods:
            return
        if not told:
            report(f"Waiting for {_count(len(pods), 'connector pod')} to stop.")
            told = True
        if time.monotonic() >= deadline:
            raise InstallError(
                f"the connector pods in namespace {namespace} did not stop within "
                f"{_duration(timeout)}; rerun uninstall once they are gone."
            )
        time.sleep(1.0)


def _delete_installed_objects(client: KubeClient, namespace: str, *, report: Report) -> bool:
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    did = False
    try:
        connections, _ = client.list(CLUSTER_CONNECTIONS, label_selector=selector)
    except NotFoundError:
        connections = []  # the connector's CRDs are gone, and with them every connection
    for connection in connections:
        name = connection["metadata"]["name"]
        _delete(client, CLUSTER_CONNECTIONS, name)
        report(f"Deleted ClusterConnection {name}.")
        did = True
    secrets, _ = client.list(SECRETS, namespace, selector)
    for secret in secrets:
        name = secret["metadata"]["name"]
        _delete(client, SECRETS, name, namespace)
        report(f"Deleted Secret {namespace}/{name}.")
        did = True
    return did


def _strip_finalizers(client: KubeClient) -> int:
    """Remove the connector's finalizer from every object of every pulled CRD; the count."""
    crds, _ = client.list(CUSTOM_RESOURCE_DEFINITIONS, label_selector=LABEL_CONNECTION)
    stripped = 0
    for crd in crds:
        try:
            res = Resource.from_crd(crd)
        except ValueError:
            continue
        try:
            objects, _ = client.list(res)
        except NotFoundError:
            continue
        for obj in objects:
            if _remove_finalizer(client, res, obj):
                stripped += 1
    return stripped


def _remove_finalizer(client: KubeClient, res: Resource, obj: dict[str, Any]) -> bool:
    for _ in range(5):
        meta = obj.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return False
        kept = [f for f in finalizers if f != FINALIZER]
        patch = [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "replace", "path": "/metadata/finalizers", "value": kept},
        ]
        try:
            client.patch(res, meta["name"], meta.get("namespace"), patch, "json")
            return True
        except NotFoundError:
            return False
        except (ConflictError, InvalidError):
            # Someone changed the finalizers meanwhile (the test op failed): read again.
            try:
                obj = client.get(res, meta["name"], meta.get("namespace"))
            except NotFoundError:
                return False
    return False


# -- small helpers --------------------------------------------------------------------------


def _get(
    client: KubeClient, res: Resource, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    try:
        return client.get(res, name, namespace)
    except NotFoundError as e:
        if e.reason == "NotFound" and _is_object_not_found(e):
            return None
        raise


def _is_object_not_found(e: NotFoundError) -> bool:
    # A missing API (the CRD is not installed) is also a 404, but says "the server could not
    # find the requested resource" without naming an object.
    return "could not find the requested resource" not in e.message


def _exists(client: KubeClient, res: Resource, name: str) -> bool:
    return _get(client, res, name) is not None


def _delete(client: KubeClient, res: Resource, name: str, namespace: str | None = None) -> None:
    with contextlib.suppress(NotFoundError):
        client.delete(res, name, namespace)


def _condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return {}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
