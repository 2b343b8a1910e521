"""Building clients from credentials: clear errors, correct URLs, no secrets in messages."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from connector.kube.client import KubeClient
from connector.kube.config import (
    ConfigError,
    ContextNotFoundError,
    client_from_kubeconfig,
    client_from_kubeconfig_file,
    client_from_robot_token,
    cluster_of_context,
    spaces_server_url,
)
from connector.kube.errors import KubeError

SECRET_TOKEN = "s3cr3t-t0ken-value"
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def kubeconfig(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "prov", "cluster": {"server": "https://127.0.0.1:6443"}},
            {"name": "other", "cluster": {"server": "https://127.0.0.1:7443/"}},
        ],
        "users": [{"name": "admin", "user": {"token": SECRET_TOKEN}}],
        "contexts": [
            {"name": "provider", "context": {"cluster": "prov", "user": "admin"}},
            {"name": "second", "context": {"cluster": "other", "user": "admin"}},
        ],
        "current-context": "provider",
    }
    config.update(overrides)
    return config


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config)


@dataclass
class ErrorCase:
    reason: str
    kubeconfig: str | bytes
    context: str | None
    want: str


ERROR_CASES = [
    ErrorCase("empty content", "", None, "The kubeconfig is empty."),
    ErrorCase(
        "malformed YAML quotes neither the line nor the token",
        f"users:\n- name: admin\n  user: {{token: {SECRET_TOKEN}\n",
        None,
        "The kubeconfig is not valid YAML",
    ),
    ErrorCase("not a mapping", "- a\n- b\n", None, "not a YAML mapping"),
    ErrorCase("not UTF-8", b"\xff\xfe\x00", None, "not UTF-8"),
    ErrorCase(
        "no clusters", dump(kubeconfig(clusters=[])), None, "The kubeconfig defines no clusters."
    ),
    ErrorCase(
        "no contexts", dump(kubeconfig(contexts=[])), None, "The kubeconfig defines no contexts."
    ),
    ErrorCase(
        "unknown context lists the available ones",
        dump(kubeconfig()),
        "x",
        "context 'x' not found; available: provider, second.",
    ),
    ErrorCase(
        "no current context and several to choose from",
        dump(kubeconfig(**{"current-context": ""})),
        None,
        "sets no current-context and no context was chosen; available: provider, second.",
    ),
    ErrorCase(
        "context names a missing cluster",
        dump(kubeconfig(contexts=[{"name": "c", "context": {"cluster": "gone", "user": "admin"}}])),
        "c",
        "refers to cluster 'gone', which it does not define; clusters: prov, other.",
    ),
    ErrorCase(
        "context names a missing user",
        dump(kubeconfig(contexts=[{"name": "c", "context": {"cluster": "prov", "user": "bob"}}])),
        "c",
        "refers to user 'bob', which it does not define; users: admin.",
    ),
    ErrorCase(
        "cluster without a server",
        dump(kubeconfig(clusters=[{"name": "prov", "cluster": {}}])),
        None,
        "The kubeconfig's cluster 'prov' has no server address.",
    ),
    ErrorCase(
        "server that is not a URL",
        dump(kubeconfig(clusters=[{"name": "prov", "cluster": {"server": "127.0.0.1:6443"}}])),
        None,
        "is not an http(s) URL",
    ),
    ErrorCase(
        "clusters that are not a list",
        dump(kubeconfig(clusters={"prov": {}})),
        None,
        "The kubeconfig's 'clusters' is not a list.",
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.reason)
def test_an_unusable_kubeconfig_raises_a_config_error_saying_why(case: ErrorCase) -> None:
    with pytest.raises(ConfigError) as raised:
        client_from_kubeconfig(case.kubeconfig, case.context)
    message = str(raised.value)
    assert case.want in message, f"-want {case.want!r}\n+got  {message!r}"
    assert SECRET_TOKEN not in message
    assert isinstance(raised.value, KubeError)


def test_a_kubeconfig_with_a_token_builds_a_client_for_the_chosen_context() -> None:
    default_host = Configuration.get_default_copy().host
    client = client_from_kubeconfig(dump(kubeconfig()), "second", name="provider")
    assert client.server == "https://127.0.0.1:7443"
    assert client.name == "provider"
    assert client.api_client.configuration.verify_ssl is True
    # The library's global default configuration is neither read nor written.
    assert Configuration.get_default_copy().host == default_host
    headers = client._headers("GET", "/api", {})  # what every request sends
    assert headers["authorization"] == f"Bearer {SECRET_TOKEN}"
    assert SECRET_TOKEN not in repr(client)


def test_the_current_context_is_used_when_none_is_chosen() -> None:
    client = client_from_kubeconfig(dump(kubeconfig()).encode())
    assert client.server == "https://127.0.0.1:6443"


def test_a_single_context_is_used_even_without_current_context() -> None:
    config = kubeconfig(contexts=[{"name": "only", "context": {"cluster": "other"}}])
    config.pop("current-context")
    assert client_from_kubeconfig(dump(config)).server == "https://127.0.0.1:7443"


def test_embedded_certificate_data_is_accepted() -> None:
    b64 = base64.b64encode(FAKE_PEM.encode()).decode()
    config = kubeconfig(
        clusters=[
            {
                "name": "prov",
                "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": b64},
            }
        ]
    )
    client = client_from_kubeconfig(dump(config))
    assert client.api_client.configuration.ssl_ca_cert


def test_a_kubeconfig_file_that_cannot_be_read_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        client_from_kubeconfig_file(tmp_path / "missing.kubeconfig")


def test_a_kubeconfig_file_builds_a_client(tmp_path: Any) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(dump(kubeconfig()))
    assert client_from_kubeconfig_file(path).server == "https://127.0.0.1:6443"


@dataclass
class URLCase:
    reason: str
    base: str
    want: str


URL_CASES = [
    URLCase(
        "a host without a scheme gets https",
        "spaces.example.com",
        "https://spaces.example.com/apis/spaces.upbound.io/v1beta1/namespaces/default"
        "/controlplanes/ctp/k8s",
    ),
    URLCase(
        "trailing slashes are dropped",
        "https://spaces.example.com///",
        "https://spaces.example.com/apis/spaces.upbound.io/v1beta1/namespaces/default"
        "/controlplanes/ctp/k8s",
    ),
    URLCase(
        "a port and a path prefix are kept",
        "https://127.0.0.1:8443/proxy/",
        "https://127.0.0.1:8443/proxy/apis/spaces.upbound.io/v1beta1/namespaces/default"
        "/controlplanes/ctp/k8s",
    ),
    URLCase(
        "surrounding whitespace from a Secret is ignored",
        "  eu-west.spaces.upbound.io\n",
        "https://eu-west.spaces.upbound.io/apis/spaces.upbound.io/v1beta1/namespaces/default"
        "/controlplanes/ctp/k8s",
    ),
]


@pytest.mark.parametrize("case", URL_CASES, ids=lambda c: c.reason)
def test_the_spaces_url_names_the_control_plane(case: URLCase) -> None:
    assert spaces_server_url(case.base, "default", "ctp") == case.want


@pytest.mark.parametrize(
    ("base", "group", "control_plane", "want"),
    [
        ("http://spaces.example.com", "g", "c", "must use https"),
        ("", "g", "c", "empty spacesBaseURL"),
        ("https://", "g", "c", "has no host name"),
        ("https://user:pw@spaces.example.com", "g", "c", "without credentials"),
        ("spaces.example.com", "", "c", "empty controlPlaneGroupName"),
        ("spaces.example.com", "g", " ", "empty controlPlaneName"),
        ("spaces.example.com", "a/b", "c", "is not a valid name"),
    ],
)
def test_an_unusable_spaces_address_is_a_config_error(
    base: str, group: str, control_plane: str, want: str
) -> None:
    with pytest.raises(ConfigError, match=want):
        spaces_server_url(base, group, control_plane)


def test_a_robot_token_client_uses_bearer_auth_and_verifies_tls() -> None:
    client = client_from_robot_token(
        f" {SECRET_TOKEN}\n", "acme", "spaces.example.com/", "default", "ctp", ca_data=FAKE_PEM
    )
    configuration = client.api_client.configuration
    assert client.server == (
        "https://spaces.example.com/apis/spaces.upbound.io/v1beta1/namespaces/default"
        "/controlplanes/ctp/k8s"
    )
    assert configuration.verify_ssl is True
    assert configuration.ca_cert_data == FAKE_PEM
    assert client.organization == "acme"
    headers = client._headers("GET", "/version", {})  # what every request sends
    assert headers["authorization"] == f"Bearer {SECRET_TOKEN}"


def test_a_robot_token_client_trusts_the_system_cas_by_default() -> None:
    client = client_from_robot_token(SECRET_TOKEN, "acme", "spaces.example.com", "g", "c")
    configuration = client.api_client.configuration
    assert configuration.verify_ssl is True
    assert configuration.ca_cert_data is None
    assert configuration.ssl_ca_cert is None


@pytest.mark.parametrize(
    ("token", "ca_data", "want"),
    [
        ("  \n", None, "empty token"),
        ("two words", None, "contains whitespace"),
        (SECRET_TOKEN, "not a certificate", "not a PEM certificate"),
    ],
)
def test_unusable_robot_token_credentials_are_config_errors(
    token: str, ca_data: str | None, want: str
) -> None:
    with pytest.raises(ConfigError, match=want) as raised:
        client_from_robot_token(token, "acme", "spaces.example.com", "g", "c", ca_data=ca_data)
    assert SECRET_TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    ("section", "settings", "used"),
    [
        ("users", {"exec": {"command": "sh", "apiVersion": "v1"}}, "exec"),
        ("users", {"auth-provider": {"name": "oidc"}}, "auth-provider"),
        ("users", {"tokenFile": "/var/run/secrets/token"}, "tokenFile"),
        ("users", {"client-certificate": "/c.crt", "client-key": "/c.key"}, "client-key"),
        ("clusters", {"certificate-authority": "/etc/ca.crt"}, "certificate-authority"),
    ],
)
def test_a_kubeconfig_from_a_secret_may_not_run_programs_or_read_local_files(
    section: str, settings: dict[str, Any], used: str
) -> None:
    config = kubeconfig()
    entry = config[section][0]
    key = "user" if section == "users" else "cluster"
    entry[key] = {**entry[key], **settings}
    with pytest.raises(ConfigError, match=used) as raised:
        client_from_kubeconfig(dump(config), self_contained=True)
    assert "as data" in str(raised.value)


def test_a_kubeconfig_carrying_its_credentials_as_data_is_self_contained() -> None:
    client = client_from_kubeconfig(dump(kubeconfig()), self_contained=True)
    assert client.server == "https://127.0.0.1:6443"


def test_a_missing_context_says_which_ones_there_are() -> None:
    with pytest.raises(ContextNotFoundError) as raised:
        client_from_kubeconfig(dump(kubeconfig()), "x")
    assert (raised.value.context, raised.value.available) == ("x", ["provider", "second"])


@dataclass
class ClusterCase:
    reason: str
    cluster: dict[str, Any]
    context: str | None
    want: dict[str, Any]


CA_PEM = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    "case",
    [
        ClusterCase(
            "the current context's cluster, as it is",
            {"server": "https://127.0.0.1:6443", "tls-server-name": "kubernetes"},
            None,
            {"server": "https://127.0.0.1:6443", "tls-server-name": "kubernetes"},
        ),
        ClusterCase(
            "the chosen context's cluster",
            {"server": "https://127.0.0.1:6443"},
            "second",
            {"server": "https://127.0.0.1:7443/"},
        ),
        ClusterCase(
            "a CA file relative to the kubeconfig is embedded",
            {"server": "https://127.0.0.1:6443", "certificate-authority": "ca.crt"},
            None,
            {
                "server": "https://127.0.0.1:6443",
                "certificate-authority-data": base64.b64encode(CA_PEM).decode(),
            },
        ),
        ClusterCase(
            "embedded CA data wins over a file",
            {
                "server": "https://127.0.0.1:6443",
                "certificate-authority": "elsewhere.crt",
                "certificate-authority-data": "Q0E=",
            },
            None,
            {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="},
        ),
    ],
    ids=lambda c: c.reason,
)
def test_cluster_of_context(case: ClusterCase, tmp_path: Any) -> None:
    (tmp_path / "ca.crt").write_bytes(CA_PEM)
    config = kubeconfig()
    config["clusters"][0]["cluster"] = case.cluster
    got = cluster_of_context(dump(config), case.context, base_path=str(tmp_path))
    assert got == case.want, case.reason


def test_cluster_of_context_names_an_unreadable_ca_file(tmp_path: Any) -> None:
    config = kubeconfig()
    config["clusters"][0]["cluster"]["certificate-authority"] = "missing.crt"
    with pytest.raises(ConfigError) as raised:
        cluster_of_context(dump(config), base_path=str(tmp_path))
    assert str(raised.value) == (
        f"The certificate authority {tmp_path / 'missing.crt'} of the kubeconfig's cluster "
        "'prov' cannot be read: No such file or directory."
    )


def test_every_request_asks_the_configurations_hook_for_a_fresh_token() -> None:
    # How an in-cluster client re-reads its projected token, and exec/OIDC users refresh.
    configuration = Configuration(host="https://127.0.0.1:6443")
    configuration.api_key = {"BearerToken": "old"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    tokens = iter(["first", "second"])

    def refresh(config: Configuration) -> None:
        config.api_key["BearerToken"] = next(tokens)

    configuration.refresh_api_key_hook = refresh
    client = KubeClient(ApiClient(configuration), qps=None)
    assert client._headers("GET", "/api", {})["authorization"] == "Bearer first"
    headers = client._headers("PUT", "/api", {"Accept": "application/json"})
    assert headers["authorization"] == "Bearer second"
    assert headers["User-Agent"] == "api-connector"
    assert headers["Accept"] == "application/json"
