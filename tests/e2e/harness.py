"""Helpers of the end-to-end tests: bounded waiting, manifests, CRDs, a running connector."""

from __future__ import annotations

import base64
import contextlib
import json
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from connector.envtest import eventually
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig
from connector.kube.errors import NotFoundError
from connector.kube.resources import (
    API_BINDINGS,
    CLUSTER_API_BINDINGS,
    CLUSTER_CONNECTIONS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    EVENTS,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
    Resource,
)
from connector.manager import Manager
from connector.stages import InProcessStages

ROOT = Path(__file__).resolve().parents[2]
WALKTHROUGH = ROOT / "examples" / "walkthrough"
CHART = ROOT / "package" / "helm" / "api-connector"
RELEASE = "api-connector"
RELEASE_NAMESPACE = "upbound-system"
NOP = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", True)

_KNOWN = {
    r.api_version + "/" + r.kind: r
    for r in (
        API_BINDINGS,
        CLUSTER_API_BINDINGS,
        CLUSTER_CONNECTIONS,
        CUSTOM_RESOURCE_DEFINITIONS,
        NAMESPACES,
        SECRETS,
        NOP,
    )
}

T = TypeVar("T")


def consistently(fn: Callable[[], bool], *, duration: float = 2.0, interval: float = 0.1) -> None:
    """Assert ``fn`` stays true for ``duration`` (used only to check that nothing happens)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert fn()
        time.sleep(interval)


def client(kubeconfig: Path | str) -> KubeClient:
    return client_from_kubeconfig(Path(kubeconfig).read_text())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def resource_for(obj: dict[str, Any]) -> Resource:
    return _KNOWN[f"{obj['apiVersion']}/{obj['kind']}"]


def load(path: str | Path, **values: str) -> list[dict[str, Any]]:
    """The documents of a walkthrough file, with ``${NAME}`` placeholders filled in."""
    text = (WALKTHROUGH / path).read_text()
    text = string.Template(text).safe_substitute(values) if values else text
    return [d for d in yaml.safe_load_all(text) if d]


def apply(kube: KubeClient, obj: dict[str, Any], res: Resource | None = None) -> dict[str, Any]:
    return kube.apply(res or resource_for(obj), obj, field_manager="e2e-test")


@contextlib.contextmanager
def nop_admission(
    kube: KubeClient,
    name: str,
    namespace: str,
    *,
    expression: str,
    message: str,
    resources: Sequence[str] = ("nopresources",),
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy named ``name`` (and its binding) refusing creates and
    updates of NopResources in ``namespace`` for which the CEL ``expression`` is false,
    with ``message``; removed on exit. Policies take a moment to apply: probe for it.
    ``resources`` may name the status subresource instead (``nopresources/status``)."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["nop.example.org"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": list(resources),
                    }
                ]
            },
            "validations": [{"expression": expression, "message": message}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    apply(kube, policy, VALIDATING_ADMISSION_POLICIES)
    apply(kube, binding, VALIDATING_ADMISSION_POLICY_BINDINGS)
    try:
        yield
    finally:
        kube.delete(VALIDATING_ADMISSION_POLICY_BINDINGS, name)
        kube.delete(VALIDATING_ADMISSION_POLICIES, name)


def apply_file(kube: KubeClient, path: str | Path, **values: str) -> list[dict[str, Any]]:
    return [apply(kube, doc) for doc in load(path, **values)]


def get(kube: KubeClient, res: Resource, name: str, namespace: str | None = None) -> Any:
    try:
        return kube.get(res, name, namespace)
    except NotFoundError:
        return None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def reason_of(kube: KubeClient, res: Resource, name: str, ns: str | None = None) -> str:
    return str(condition(get(kube, res, name, ns), "Ready").get("reason", ""))


def kubeconfig_secret(name: str, kubeconfig: str, *, namespace: str = "upbound-system") -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()},
    }


def connection(name: str, secret: str, *, kind: str = "KubeConfig", pull: str = "Pull") -> Any:
    return {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "ClusterConnection",
        "metadata": {"name": name},
        "spec": {
            "secretRef": {"kind": kind, "name": secret, "namespace": "upbound-system"},
            "crdManagement": {"pullBehavior": pull},
        },
    }


def binding(name: str, connection_name: str, *, namespace: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "connect.upbound.io/v1alpha1",
        "kind": "APIBinding" if namespace else "ClusterAPIBinding",
        "metadata": meta,
        "spec": {"connectionRef": {"kind": "ClusterConnection", "name": connection_name}},
    }


def crd(
    group: str,
    kind: str,
    *,
    scope: str = "Namespaced",
    versions: tuple[str, ...] = ("v1alpha1",),
    fields: tuple[str, ...] = ("coolField",),
    bindable: bool = True,
) -> dict[str, Any]:
    """A bindable provider CRD with a string field per ``fields`` and status.conditions."""
    plural = kind.lower() + "s"
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {f: {"type": "string"} for f in fields},
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "conditions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        }
                    },
                },
            },
        }
    }
    labels = {"connect.upbound.io/bindable": "true"} if bindable else {}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": labels},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": scope,
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == len(versions) - 1,
                    "schema": schema,
                    "subresources": {"status": {}},
                }
                for i, v in enumerate(versions)
            ],
        },
    }


def established(kube: KubeClient, name: str) -> bool:
    obj = get(kube, CUSTOM_RESOURCE_DEFINITIONS, name)
    return condition(obj, "Established").get("status") == "True"


def install_connector_crds(kube: KubeClient) -> None:
    """Install package/crds (what the Helm chart does) and wait until they are served."""
    names = []
    for path in sorted((ROOT / "package" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            apply(kube, doc)
            names.append(doc["metadata"]["name"])
    for name in names:
        eventually(lambda name=name: established(kube, name))


def warning_events(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    return events_of(kube, namespace, name, "Warning")


def events_of(
    kube: KubeClient, namespace: str, name: str, type_: str = "Normal"
) -> list[dict[str, Any]]:
    """The Events of that type about the object ``name`` in ``namespace``."""
    items, _ = kube.list(EVENTS, namespace)
    return [
        e
        for e in items
        if e.get("involvedObject", {}).get("name") == name and e.get("type") == type_
    ]


#: The chart's objects that make up the connector's identity and its permissions.
RBAC_KINDS = {
    "ServiceAccount": SERVICE_ACCOUNTS,
    "ClusterRole": CLUSTER_ROLES,
    "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
    "Role": ROLES,
    "RoleBinding": ROLE_BINDINGS,
}


class ChartIdentity:
    """The Helm chart's ServiceAccount and RBAC for the connector, applied to the consumer.

    The rules come from rendering the chart with the real helm, never from this file, so a
    test passing under this identity proves the chart grants enough. ``allow`` extends the
    chart's ``boundAPIs`` and applies the re-rendered rules, as ``helm upgrade`` would.
    """

    def __init__(self, admin: KubeClient, helm: Path, *, server: str, ca_pem: bytes) -> None:
        self._admin = admin
        self._helm = helm
        self._server = server
        self._ca_pem = ca_pem
        self._bound: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.applied: list[dict[str, Any]] = []

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}"

    def allow(self, group: str, *plurals: str) -> None:
        """Add ``group``'s ``plurals`` to ``boundAPIs`` and apply the re-rendered RBAC."""
        with self._lock:
            self._bound.setdefault(group, set()).update(plurals)
            self._apply()

    def render(self) -> list[dict[str, Any]]:
        bound = [
            {"group": group, "resources": sorted(plurals)}
            for group, plurals in sorted(self._bound.items())
        ]
        proc = subprocess.run(
            [
                str(self._helm),
                "template",
                RELEASE,
                str(CHART),
                "--namespace",
                RELEASE_NAMESPACE,
                "--set-json",
                f"boundAPIs={json.dumps(bound)}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] in RBAC_KINDS]

    def _apply(self) -> None:
        self.applied = [
            self._admin.apply(RBAC_KINDS[doc["kind"]], doc, field_manager="e2e-chart")
            for doc in self.render()
        ]

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig holding only a TokenRequest token of the chart's ServiceAccount (what
        the Pod would mount), for the consumer's server and CA."""
        with self._lock:
            if not self.applied:
                self._apply()
        return service_account_kubeconfig(
            self._admin, path, server=self._server, ca_pem=self._ca_pem
        )

    def remove(self) -> None:
        """Delete the cluster-wide objects, so that nothing outlives the e2e tests' cluster
        use (the namespaced ones go with upbound-system's other test objects)."""
        for obj in self.applied:
            res = RBAC_KINDS[obj["kind"]]
            if not res.namespaced:
                with contextlib.suppress(NotFoundError):
                    self._admin.delete(res, obj["metadata"]["name"])


def service_account_kubeconfig(
    admin: KubeClient,
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    name: str = RELEASE,
    namespace: str = RELEASE_NAMESPACE,
) -> Path:
    """A kubeconfig at ``path`` holding only a TokenRequest token of ServiceAccount
    ``namespace/name`` (what its Pod would mount), for ``server`` and its CA."""
    answer = admin.create_subresource(
        SERVICE_ACCOUNTS,
        name,
        namespace,
        "token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 4 * 3600},
        },
    )
    token = str(answer["status"]["token"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "consumer",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "consumer", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class RunningConnector:
    """A Manager running in this process, stopped by ``stop()``."""

    def __init__(
        self,
        kubeconfig: Path | str,
        *,
        consumer_cluster: str,
        permission_check_interval: float = 30.0,
    ) -> None:
        self.kube = client(kubeconfig)
        self.manager = Manager(
            self.kube,
            stages=InProcessStages(),
            consumer_cluster=consumer_cluster,
            resync_period=3600.0,
            workers=2,
            permission_check_interval=permission_check_interval,
        )

    def start(self) -> RunningConnector:
        self.manager.start()
        return self

    def stop(self) -> None:
        self.manager.stop()
