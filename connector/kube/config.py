"""Build a :class:`KubeClient` from a kubeconfig, the in-cluster identity, or a robot token.

Long because every builder shares the one validation of the kubeconfig it is given (which
refuses programs and local files in Secrets) and the one Configuration it fills.

Each builder fills a fresh ``kubernetes.client.Configuration``; the library's global default
configuration is never read or written, so one process can hold clients for any number of
clusters. Every problem with the credentials is a :class:`ConfigError` whose message says
what is wrong and where, and never contains secret material (tokens, keys, certificates).

TLS verification is always on, unless a kubeconfig explicitly sets
``insecure-skip-tls-verify`` (the user's choice, logged as a warning). A robot-token client
trusts the system CAs, or only ``ca_data`` when given.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)
from kubernetes.config.kube_config import KubeConfigLoader

from connector.kube.client import KubeClient
from connector.kube.errors import KubeError
from connector.kube.metrics import Metrics

__all__ = [
    "CONSUMER_BURST",
    "CONSUMER_QPS",
    "ConfigError",
    "ContextNotFoundError",
    "client_from_kubeconfig",
    "client_from_kubeconfig_file",
    "client_from_robot_token",
    "client_in_cluster",
    "cluster_of_context",
    "configuration_from_kubeconfig",
    "spaces_server_url",
]

log = structlog.get_logger(__name__)

SPACES_API_PATH = "/apis/spaces.upbound.io/v1beta1"

#: The client-side rate limit of the connector's consumer client (``run --consumer-qps``,
#: ``--consumer-burst``): requests per second, and how many may go at once after a quiet
#: spell. Twice a provider client's (the builders' default, 50 and 100), because every new
#: object costs the consumer two writes (its finalizer, then its status) for one write of
#: its twin in the provider: at equal limits, users would see their objects bound at half
#: the pace their twins are created. The consumer is the cluster the connector runs in; the
#: API server's own priority and fairness still protects it.
CONSUMER_QPS = 100.0
CONSUMER_BURST = 200


class ConfigError(KubeError):
    """Credentials or connection settings that cannot be used; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="InvalidConfig")


class ContextNotFoundError(ConfigError):
    """The chosen context (or the current-context) is not in the kubeconfig.

    ``context`` is the name looked for, ``available`` the contexts the kubeconfig defines, so
    that a command line can say which flag takes one of them.
    """

    def __init__(self, context: str, available: list[str]) -> None:
        super().__init__(f"context {context!r} not found; available: {_available(available)}.")
        self.context = context
        self.available = available


def _names(entries: list[Any]) -> list[str]:
    return [str(e.get("name")) for e in entries if isinstance(e, Mapping) and e.get("name")]


def _named(entries: list[Any], name: str) -> Mapping[str, Any] | None:
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return entry
    return None


def _section(config: Mapping[str, Any], key: str) -> list[Any]:
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"The kubeconfig's {key!r} is not a list.")
    return value


def _available(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _parse_kubeconfig(kubeconfig: str | bytes) -> dict[str, Any]:
    if isinstance(kubeconfig, bytes):
        try:
            kubeconfig = kubeconfig.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError("The kubeconfig is not UTF-8 text.") from e
    if not kubeconfig.strip():
        raise ConfigError("The kubeconfig is empty.")
    try:
        config = yaml.safe_load(kubeconfig)
    except yaml.MarkedYAMLError as e:
        # Only the problem and its position: the YAML library's own message quotes the
        # offending line, which may hold a token or a key.
        where = ""
        if e.problem_mark is not None:
            where = f" at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}"
        raise ConfigError(
            f"The kubeconfig is not valid YAML: {e.problem or 'syntax error'}{where}."
        ) from None
    except yaml.YAMLError:
        raise ConfigError("The kubeconfig is not valid YAML.") from None
    if not isinstance(config, dict):
        raise ConfigError("The kubeconfig is not a YAML mapping (expected kind: Config).")
    return config


def _check_kubeconfig(  # noqa: PLR0912 - one check per kubeconfig field, each with its own message
    config: Mapping[str, Any], context: str | None, *, warn: bool = True
) -> str:
    """Validate the parts the chosen context needs; return the context's name.

    ``warn``: log that the context's cluster skips TLS verification (once per client built).
    """
    contexts = _section(config, "contexts")
    clusters = _section(config, "clusters")
    users = _section(config, "users")
    if not clusters:
        raise ConfigError("The kubeconfig defines no clusters.")
    if not contexts:
        raise ConfigError("The kubeconfig defines no contexts.")
    context_names = _names(contexts)
    if context is None:
        context = str(config.get("current-context") or "")
        if not context:
            if len(context_names) != 1:
                raise ConfigError(
                    "The kubeconfig sets no current-context and no context was chosen; "
                    f"available: {_available(context_names)}."
                )
            context = context_names[0]
    entry = _named(contexts, context)
    if entry is None:
        raise ContextNotFoundError(context, context_names)
    details = entry.get("context")
    if not isinstance(details, Mapping):
        raise ConfigError(f"The kubeconfig's context {context!r} has no 'context' section.")
    cluster_name = details.get("cluster")
    if not cluster_name:
        raise ConfigError(f"The kubeconfig's context {context!r} names no cluster.")
    cluster_entry = _named(clusters, str(cluster_name))
    if cluster_entry is None:
        raise ConfigError(
            f"The kubeconfig's context {context!r} refers to cluster {cluster_name!r}, which it "
            f"does not define; clusters: {_available(_names(clusters))}."
        )
    cluster = cluster_entry.get("cluster")
    server = cluster.get("server") if isinstance(cluster, Mapping) else None
    if not server or not isinstance(server, str):
        raise ConfigError(f"The kubeconfig's cluster {cluster_name!r} has no server address.")
    parts = urlsplit(server)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"The kubeconfig's cluster {cluster_name!r} has a server address that is not an "
            f"http(s) URL: {server!r}."
        )
    user_name = details.get("user")
    if user_name and _named(users, str(user_name)) is None:
        raise ConfigError(
            f"The kubeconfig's context {context!r} refers to user {user_name!r}, which it does "
            f"not define; users: {_available(_names(users))}."
        )
    if warn and isinstance(cluster, Mapping) and cluster.get("insecure-skip-tls-verify"):
        log.warning(
            "The kubeconfig disables TLS verification for this cluster; the connection is not "
            "protected against impersonation.",
            cluster=str(cluster_name),
        )
    return context


def configuration_from_kubeconfig(
    kubeconfig: str | bytes,
    context: str | None = None,
    *,
    base_path: str | None = None,
    self_contained: bool = False,
) -> Configuration:
    """A fresh ``Configuration`` for ``context`` of the kubeconfig content ``kubeconfig``.

    ``base_path`` resolves relative file references (only meaningful for a file on disk).
    ``self_contained`` refuses a context whose user or cluster would run a program
    (``exec``, ``auth-provider``) or read a local file (``tokenFile``, ``client-key``, ...):
    set it for a kubeconfig that is data from a Secret rather than the operator's own file.
    """
    config = _parse_kubeconfig(kubeconfig)
    chosen = _check_kubeconfig(config, context)
    if self_contained:
        _require_self_contained(config, chosen)
    configuration = Configuration()
    try:
        loader = KubeConfigLoader(  # type: ignore[no-untyped-call]
            config_dict=config, active_context=chosen, config_base_path=base_path or ""
        )
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    except ConfigException as e:
        # The library's messages name keys and entries, never their values.
        raise ConfigError(f"The kubeconfig's context {chosen!r} cannot be used: {e}") from e
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(
            f"The kubeconfig's context {chosen!r} cannot be used: {type(e).__name__} while "
            "loading its credentials or certificates."
        ) from e
    _harden(configuration)
    return configuration


def cluster_of_context(
    kubeconfig: str | bytes, context: str | None = None, *, base_path: str | None = None
) -> dict[str, Any]:
    """The ``cluster`` entry (server, CA, TLS settings) that ``context`` uses, self-contained.

    A ``certificate-authority`` file (relative to ``base_path``) is read into
    ``certificate-authority-data``, so that the entry can be copied into a kubeconfig that is
    used elsewhere, e.g. one stored in a Secret. The user's credentials are not part of it.
    """
    config = _parse_kubeconfig(kubeconfig)
    chosen = _check_kubeconfig(config, context, warn=False)
    details = (_named(_section(config, "contexts"), chosen) or {}).get("context") or {}
    cluster_name = str(details.get("cluster"))
    entry = dict((_named(_section(config, "clusters"), cluster_name) or {}).get("cluster") or {})
    ca_file = entry.pop("certificate-authority", None)
    if ca_file and "certificate-authority-data" not in entry:
        ca_path = Path(str(ca_file))
        if not ca_path.is_absolute() and base_path:
            ca_path = Path(base_path) / ca_path
        try:
            entry["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
        except OSError as e:
            raise ConfigError(
                f"The certificate authority {ca_path} of the kubeconfig's cluster "
                f"{cluster_name!r} cannot be read: {e.strerror or e}."
            ) from e
    return entry


#: Settings that make the client run a program or read a file on the connector's own disk.
#: In a kubeconfig from a Secret they would let whoever may write that Secret run commands
#: as the connector, or send its files (e.g. its service-account token) to any server.
_LOCAL_USER_KEYS = ("exec", "auth-provider", "tokenFile", "client-certificate", "client-key")
_LOCAL_CLUSTER_KEYS = ("certificate-authority",)


def _require_self_contained(config: Mapping[str, Any], context: str) -> None:
    details = (_named(_section(config, "contexts"), context) or {}).get("context") or {}
    checks = (
        ("user", _section(config, "users"), _LOCAL_USER_KEYS),
        ("cluster", _section(config, "clusters"), _LOCAL_CLUSTER_KEYS),
    )
    for kind, entries, keys in checks:
        name = details.get(kind)
        entry = _named(entries, str(name)) if name else None
        settings = entry.get(kind) if entry is not None else None
        if not isinstance(settings, Mapping):
            continue
        used = [key for key in keys if settings.get(key)]
        if used:
            raise ConfigError(
                f"The kubeconfig's {kind} {name!r} uses {', '.join(used)}, which would run a "
                "program or read a file inside the connector; a kubeconfig in a Secret must "
                "carry its credentials as data (token, client-certificate-data, "
                "client-key-data, certificate-authority-data)."
            )


def _harden(configuration: Configuration) -> None:
    # The client layer owns retries (Retry-After) and callers own backoff; urllib3's silent
    # retries would hide outages and make "unreachable" slow to report.
    configuration.retries = False
    # TCP keepalive as client-go dials (probes after 30 s idle, 9 probes 15 s apart): a
    # connection whose peer vanished without a word (a NAT or load balancer forgot it) fails
    # instead of holding a watch open for nothing. A peer that is there but hung still
    # acknowledges the probes; connector.kube.liveness notices that one.
    configuration.keep_alive = True


def _client_kwargs(
    *,
    name: str,
    connect_timeout: float,
    read_timeout: float,
    qps: float | None,
    burst: int,
    max_retries: int,
    metrics: Metrics | None,
) -> dict[str, Any]:
    return {
        "name": name,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "qps": qps,
        "burst": burst,
        "max_retries": max_retries,
        "metrics": metrics,
    }


def client_from_kubeconfig(
    kubeconfig: str | bytes,
    context: str | None = None,
    *,
    name: str = "",
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    qps: float | None = 50.0,
    burst: int = 100,
    max_retries: int = 3,
    metrics: Metrics | None = None,
    base_path: str | None = None,
    self_contained: bool = False,
) -> KubeClient:
    """A client for ``context`` (default: the current context) of a kubeconfig's YAML content.

    ``self_contained``: see :func:`configuration_from_kubeconfig`.
    """
    configuration = configuration_from_kubeconfig(
        kubeconfig, context, base_path=base_path, self_contained=self_contained
    )
    return KubeClient(
        ApiClient(configuration),
        **_client_kwargs(
            name=name,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            qps=qps,
            burst=burst,
            max_retries=max_retries,
            metrics=metrics,
        ),
    )


def client_from_kubeconfig_file(
    path: str | os.PathLike[str],
    context: str | None = None,
    *,
    name: str = "",
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    qps: float | None = 50.0,
    burst: int = 100,
    max_retries: int = 3,
    metrics: Metrics | None = None,
) -> KubeClient:
    """Like :func:`client_from_kubeconfig`, reading a file (relative paths resolve next to it)."""
    file = Path(path)
    try:
        content = file.read_bytes()
    except OSError as e:
        raise ConfigError(f"The kubeconfig file {str(file)!r} cannot be read: {e.strerror}.") from e
    return client_from_kubeconfig(
        content,
        context,
        name=name,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        qps=qps,
        burst=burst,
        max_retries=max_retries,
        metrics=metrics,
        base_path=str(file.resolve().parent),
    )


def client_in_cluster(
    *,
    name: str = "in-cluster",
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    qps: float | None = 50.0,
    burst: int = 100,
    max_retries: int = 3,
    metrics: Metrics | None = None,
) -> KubeClient:
    """A client for the cluster this Pod runs in, as its ServiceAccount (token re-read)."""
    configuration = Configuration()
    try:
        loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=SERVICE_TOKEN_FILENAME,
            cert_filename=SERVICE_CERT_FILENAME,
            try_refresh_token=True,
        )
        loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    except ConfigException as e:
        raise ConfigError(f"The in-cluster configuration cannot be loaded: {e}") from e
    _harden(configuration)
    return KubeClient(
        ApiClient(configuration),
        **_client_kwargs(
            name=name,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            qps=qps,
            burst=burst,
            max_retries=max_retries,
            metrics=metrics,
        ),
    )


def _dns_label(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise ConfigError(f"The robot-token credentials have an empty {what}.")
    if "/" in value or value in (".", ".."):
        raise ConfigError(f"The robot-token credentials' {what} {value!r} is not a valid name.")
    return quote(value, safe="")


def spaces_server_url(spaces_base_url: str, group: str, control_plane: str) -> str:
    """The API server URL of an Upbound Spaces control plane.

    ``<spacesBaseURL>/apis/spaces.upbound.io/v1beta1/namespaces/<group>/controlplanes/
    <controlPlane>/k8s``; a base URL without a scheme gets ``https://``, trailing slashes
    are dropped, and only ``https`` is accepted because a bearer token goes over it.
    """
    base = spaces_base_url.strip()
    if not base:
        raise ConfigError("The robot-token credentials have an empty spacesBaseURL.")
    if "://" not in base:
        base = f"https://{base}"
    parts = urlsplit(base)
    if parts.scheme != "https":
        raise ConfigError(
            f"The spacesBaseURL {spaces_base_url!r} must use https: the robot token must not "
            "travel in clear text."
        )
    if not parts.hostname:
        raise ConfigError(f"The spacesBaseURL {spaces_base_url!r} has no host name.")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            "The spacesBaseURL must be a plain URL without credentials, query or fragment."
        )
    prefix = f"https://{parts.netloc}{parts.path.rstrip('/')}"
    return (
        f"{prefix}{SPACES_API_PATH}/namespaces/{_dns_label(group, 'controlPlaneGroupName')}"
        f"/controlplanes/{_dns_label(control_plane, 'controlPlaneName')}/k8s"
    )


def client_from_robot_token(
    token: str,
    organization: str,
    spaces_base_url: str,
    group: str,
    control_plane: str,
    *,
    ca_data: str | bytes | None = None,
    name: str = "",
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    qps: float | None = 50.0,
    burst: int = 100,
    max_retries: int = 3,
    metrics: Metrics | None = None,
) -> KubeClient:
    """A client for an Upbound Spaces control plane, authenticating with a robot token.

    ``organization`` is kept on the client for logs and labels; the Spaces API does not need
    it in requests. ``ca_data`` (PEM) replaces the system CAs, for private Spaces and tests.
    """
    token = token.strip()
    if not token:
        raise ConfigError("The robot-token credentials have an empty token.")
    if any(c.isspace() for c in token):
        raise ConfigError("The robot token contains whitespace; it must be a single word.")
    configuration = Configuration()
    configuration.host = spaces_server_url(spaces_base_url, group, control_plane)
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    configuration.verify_ssl = True
    if ca_data is not None:
        pem = ca_data.decode("ascii") if isinstance(ca_data, bytes) else ca_data
        if "BEGIN CERTIFICATE" not in pem:
            raise ConfigError("The CA data for the Spaces endpoint is not a PEM certificate.")
        configuration.ca_cert_data = pem
    _harden(configuration)
    return KubeClient(
        ApiClient(configuration),
        organization=organization.strip() or None,
        **_client_kwargs(
            name=name or f"{group}/{control_plane}",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            qps=qps,
            burst=burst,
            max_retries=max_retries,
            metrics=metrics,
        ),
    )
