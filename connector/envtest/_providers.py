"""The development runtime's providers: for local clusters, what Crossplane's Deployment
runtime does for a Provider package in a real cluster, done with a local process.

Long because, like the function runtime, it is one sequence whose steps share state (the
registry, Crossplane's CA, each provider's certificate, identity and ports), followed by the
one step every caller takes next (``connect_cluster``).

Under ``--package-runtime=External`` Crossplane pulls a Provider's package and installs its
CRDs, but runs nothing, and it installs the CRDs only once the package runtime has named,
in the revision's ``status.tlsServerSecretName``, the Secret that holds the provider's
serving certificate (the CA bundle of its conversion webhooks). This runtime, beside the
function runtime (``_functions``) whose registry it shares:

1. builds each provider's package with ``crossplane xpkg build`` from the ``package/``
   folder ``tools/build.sh`` copies beside the binary (``crossplane.yaml`` and the CRDs of
   the provider's release), and pushes it to the local registry;
2. issues the provider a serving certificate signed by Crossplane's CA, puts it into the
   Secret ``<provider>-tls-server`` and into a folder (``TLS_SERVER_CERTS_DIR``);
3. creates the ``Provider`` objects, and applies what a package runtime owns into each
   ProviderRevision's status (server-side, on the status subresource):
   ``tlsServerSecretName``, then ``RuntimeHealthy=True`` once the process runs;
4. once Crossplane serves the provider's CRDs, starts the provider binary as a local
   process: its own identity on the cluster (a kubeconfig, like the ServiceAccount the
   Deployment runtime would give it), its webhook and metrics servers on ports of its own
   (``WEBHOOK_PORT``, ``METRICS_BIND_ADDRESS``, which ``tools/provider-kubernetes/overlay``
   adds), and waits until the Provider is Healthy.

What a provider manages elsewhere is configured as in any cluster: for provider-kubernetes,
a ``ProviderConfig`` whose credentials are a kubeconfig Secret (``connect_cluster``).
Everything it starts dies with the process that started it (see ``_process``).
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from connector.envtest import _process
from connector.envtest._certs import CertificateAuthority
from connector.envtest._errors import ClusterStartError
from connector.envtest._functions import (
    HEALTHY_REASON,
    PARENT_LABEL,
    RUNTIME_HEALTHY,
    EndpointWriter,
    function_health,
)
from connector.envtest._package_runtime import FIELD_MANAGER, PackageRuntime
from connector.kube import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    SECRETS,
    KubeClient,
    KubeError,
    NotFoundError,
    Resource,
)
from functions.common.clock import now_rfc3339

if TYPE_CHECKING:
    from connector.envtest._cluster import Cluster

log = structlog.get_logger(__name__)

PROVIDERS = Resource("pkg.crossplane.io", "v1", "providers", "Provider", namespaced=False)
PROVIDER_REVISIONS = Resource(
    "pkg.crossplane.io", "v1", "providerrevisions", "ProviderRevision", namespaced=False
)
#: provider-kubernetes' ProviderConfig: which cluster its Objects are applied to.
KUBERNETES_PROVIDER_CONFIGS = Resource(
    "kubernetes.crossplane.io", "v1alpha1", "providerconfigs", "ProviderConfig", False
)
#: The ProviderConfig the crd-puller's Composition names by default (``providerConfigName``).
CONSUMER_PROVIDER_CONFIG = "consumer"
#: The consumer identity provider-kubernetes delivers CRDs as, and its ClusterRole there.
CRD_DELIVERY_USER = "api-connector-crd-delivery"


@dataclass(frozen=True)
class ProviderSource:
    """A Crossplane provider the runtime installs and runs.

    ``name`` is the Provider's name (its package metadata's); ``tool`` the
    ``tools/build.sh`` tool whose binary it runs, with the package folder ``package/``
    beside it; ``crds`` the CRDs its controllers watch (it starts once Crossplane serves
    them); ``args`` its flags.
    """

    name: str
    tool: str
    crds: tuple[str, ...]
    args: tuple[str, ...] = ()


#: provider-kubernetes: ``Object`` applies a manifest to the cluster of a ProviderConfig.
#: It checks each Object every 10 s (``--poll``; 10 minutes by default) so that a change
#: in the other cluster, such as a CRD becoming Established, shows within seconds.
PROVIDER_KUBERNETES = ProviderSource(
    name="provider-kubernetes",
    tool="provider-kubernetes",
    crds=(
        "objects.kubernetes.crossplane.io",
        "providerconfigs.kubernetes.crossplane.io",
        "providerconfigusages.kubernetes.crossplane.io",
        "observedobjectcollections.kubernetes.crossplane.io",
    ),
    args=("--poll=10s",),
)


def provider_status_patch(
    revision: Mapping[str, Any], secrets: Mapping[str, str], *, running: bool, now: str
) -> dict[str, Any] | None:
    """What the runtime owns in a ProviderRevision's status, to apply server-side, or None
    if the revision shows it already or its provider is not one of ``secrets`` (provider
    name -> TLS Secret name): the Secret's name, and ``RuntimeHealthy=True`` once the
    provider's process runs (``running``; ``now`` is the transition time)."""
    labels = (revision.get("metadata") or {}).get("labels") or {}
    secret = secrets.get(labels.get(PARENT_LABEL, ""))
    if secret is None:
        return None
    status = revision.get("status") or {}
    healthy = any(
        c.get("type") == RUNTIME_HEALTHY
        and c.get("status") == "True"
        and c.get("reason") == HEALTHY_REASON
        for c in status.get("conditions") or []
    )
    if status.get("tlsServerSecretName") == secret and (healthy or not running):
        return None
    patch: dict[str, Any] = {"tlsServerSecretName": secret}
    if running:
        patch["conditions"] = [
            {
                "type": RUNTIME_HEALTHY,
                "status": "True",
                "reason": HEALTHY_REASON,
                "message": "Run as a local process by the development runtime.",
                "lastTransitionTime": now,
            }
        ]
    return patch


class ProviderStatusWriter(EndpointWriter):
    """Writes what a package runtime owns into the ProviderRevisions of the served
    providers (see ``provider_status_patch``); lists then watches, like the function
    runtime's writer. ``mark_running(name)`` adds ``RuntimeHealthy`` for that provider."""

    resource = PROVIDER_REVISIONS

    def __init__(self, kube: KubeClient, secrets: Mapping[str, str]) -> None:
        super().__init__(kube, secrets)
        self._running: set[str] = set()

    def mark_running(self, provider: str) -> None:
        self._running.add(provider)
        revisions, _ = self._kube.list(
            PROVIDER_REVISIONS, label_selector=f"{PARENT_LABEL}={provider}"
        )
        for revision in revisions:
            self.reconcile(revision)

    def reconcile(self, revision: Mapping[str, Any]) -> None:
        meta = revision.get("metadata") or {}
        name = str(meta.get("name") or "")
        provider = str((meta.get("labels") or {}).get(PARENT_LABEL) or "")
        if provider not in self._endpoints:
            if name not in self._reported:
                self._reported.add(name)
                log.warning(
                    "A ProviderRevision belongs to a Provider this development runtime does "
                    "not run; nothing runs its controllers.",
                    revision=name,
                    provider=provider,
                )
            return
        status = provider_status_patch(
            revision, self._endpoints, running=provider in self._running, now=now_rfc3339()
        )
        if status is None:
            return
        body = {
            "apiVersion": PROVIDER_REVISIONS.api_version,
            "kind": PROVIDER_REVISIONS.kind,
            "metadata": {"name": name},
            "status": status,
        }
        try:
            self._kube.apply_status(PROVIDER_REVISIONS, body, FIELD_MANAGER)
        except NotFoundError:
            return
        log.info(
            "Wrote the runtime status of a ProviderRevision.",
            revision=name,
            tls_server_secret=status["tlsServerSecretName"],
            runtime_healthy="conditions" in status,
        )


class ProviderRuntime(PackageRuntime):
    """The provider packages and processes of one Crossplane.

    Files live in ``directory``: ``packages/<name>.xpkg``, ``providers/<name>.log``,
    ``providers/<name>/tls/`` and ``providers/<name>/kubeconfig``.
    """

    def __init__(
        self,
        *,
        directory: Path,
        cluster: Cluster,
        kube_factory: Callable[[], KubeClient],
        providers: Sequence[ProviderSource],
        tools: Mapping[str, Path],
        registry: str,
        stop_timeout: float,
        namespace: str,
    ) -> None:
        if not registry:
            raise ValueError("providers need the package registry of the function runtime")
        super().__init__(
            directory=directory,
            kube_factory=kube_factory,
            tools=tools,
            stop_timeout=stop_timeout,
            namespace=namespace,
            packages=[p.name for p in providers],
            kind="provider",
        )
        self.cluster = cluster
        self.providers = tuple(providers)
        self._registry = registry
        self._last = ""
        self.packages: dict[str, str] = {}

    def running(self) -> bool:
        return self._alive(len(self.providers))

    def start(self, ca: CertificateAuthority, *, deadline: float, timeout: float) -> None:
        """Packages, certificates, Provider objects; then each provider's process once its
        CRDs are served; then wait until every Provider is Healthy."""
        self._push_packages()
        secrets = {
            p.name: self._serving_tls(p.name, self.dir / "providers" / p.name / "tls", ca)
            for p in self.providers
        }

        def make(kube: KubeClient) -> ProviderStatusWriter:
            return ProviderStatusWriter(kube, secrets)

        writer = self._start_writer(make, "envtest-provider-revisions")
        self._create_providers()
        with self._kube_factory() as kube:
            for provider in self.providers:
                self._wait(
                    kube,
                    f"wait for Crossplane to serve the CRDs of {provider.name}",
                    lambda p=provider: self._crds_served(kube, p),  # type: ignore[misc]
                    deadline,
                    timeout,
                )
                self._start_process(provider, deadline, timeout)
                try:
                    writer.mark_running(provider.name)
                except KubeError as e:
                    step = f"mark the runtime of {provider.name} healthy"
                    raise ClusterStartError(step, str(e)) from e
            for provider in self.providers:
                self._wait(
                    kube,
                    f"wait for the Provider {provider.name} to be Healthy",
                    lambda p=provider: self._healthy(kube, p),  # type: ignore[misc]
                    deadline,
                    timeout,
                )

    # -- steps ---------------------------------------------------------------------------

    def _push_packages(self) -> None:
        for provider in self.providers:
            # ``tools/build.sh`` copies the package folder beside the binary. The package has
            # no examples; without an examples root the CLI looks in ./examples.
            root = self._tools[provider.tool].parent / "package"
            self.packages[provider.name] = self._build_and_push(
                provider.name, root, self._registry, examples_root=root / "examples"
            )

    def _create_providers(self) -> None:
        with self._kube_factory() as kube:
            for provider in self.providers:
                body = {
                    "apiVersion": PROVIDERS.api_version,
                    "kind": PROVIDERS.kind,
                    "metadata": {"name": provider.name},
                    "spec": {"package": self.packages[provider.name]},
                }
                try:
                    kube.apply(PROVIDERS, body, FIELD_MANAGER)
                except KubeError as e:
                    raise ClusterStartError(f"create the Provider {provider.name}", str(e)) from e

    def _crds_served(self, kube: KubeClient, provider: ProviderSource) -> bool:
        for crd in provider.crds:
            got = kube.get(CUSTOM_RESOURCE_DEFINITIONS, crd)
            conditions = (got.get("status") or {}).get("conditions") or []
            if not any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            ):
                self._last = f"CRD {crd} is not established"
                return False
        return True

    def _healthy(self, kube: KubeClient, provider: ProviderSource) -> bool:
        healthy, why = function_health(kube.get(PROVIDERS, provider.name))
        self._last = why
        return healthy

    def _wait(
        self,
        kube: KubeClient,
        step: str,
        check: Callable[[], bool],
        deadline: float,
        timeout: float,
    ) -> None:
        while True:
            if self._stopping.is_set():
                raise ClusterStartError(step, "cancelled: Crossplane is being stopped")
            try:
                if check():
                    return
            except NotFoundError as e:
                self._last = str(e)
            except KubeError as e:
                self._last = str(e)
            for role, proc in list(self._procs.items()):
                if proc.poll() is not None:
                    raise ClusterStartError(
                        step,
                        f"{role} exited with code {proc.returncode}",
                        log_path=self._log_of(role),
                    )
            if time.monotonic() >= deadline:
                raise ClusterStartError(
                    step, f"not within the start-up timeout of {timeout:.0f} s ({self._last})"
                )
            time.sleep(0.5)

    def _start_process(self, provider: ProviderSource, deadline: float, timeout: float) -> None:
        from connector.envtest._cluster import ADMIN_GROUPS, free_port

        step = f"start the provider {provider.name}"
        home = self.dir / "providers" / provider.name
        kubeconfig = self.cluster.mint_kubeconfig(
            provider.name, groups=ADMIN_GROUPS, path=home / "kubeconfig"
        )
        metrics = f"127.0.0.1:{free_port()}"
        env = {
            "KUBECONFIG": str(kubeconfig),
            "TLS_SERVER_CERTS_DIR": str(home / "tls"),
            "WEBHOOK_PORT": str(free_port()),
            "METRICS_BIND_ADDRESS": metrics,
        }
        argv = [str(self._tools[provider.tool]), *provider.args]
        log_path = self._log_of(provider.name)
        proc = self._launch(provider.name, argv, log_path, step, cwd=home, env=env)

        def ready() -> bool:
            # The metrics server starts with the manager, after its caches are set up.
            try:
                with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2) as response:
                    return bool(response.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        _process.wait_ready(
            proc,
            role=provider.name,
            ready=ready,
            log_path=log_path,
            step=step,
            deadline=deadline,
            timeout=timeout,
            cancelled=self._stopping.is_set,
        )

    def _log_of(self, role: str) -> Path:
        return self.dir / "providers" / f"{role}.log"


def connect_cluster(
    kube: KubeClient,
    target: Cluster,
    *,
    name: str = CONSUMER_PROVIDER_CONFIG,
    namespace: str,
) -> None:
    """Let provider-kubernetes reach ``target``: a ProviderConfig ``name`` whose credentials
    are the kubeconfig (Secret ``<name>-kubeconfig`` in ``namespace``) of an identity in
    ``target`` that may read, create and update CRDs there, and nothing else; no delete,
    since CRDs delivered to a consumer are never deleted (objects of their APIs may exist).
    """
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CRD_DELIVERY_USER},
        "rules": [
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CRD_DELIVERY_USER},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CRD_DELIVERY_USER,
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CRD_DELIVERY_USER}
        ],
    }
    secret_name = f"{name}-kubeconfig"
    config = {
        "apiVersion": KUBERNETES_PROVIDER_CONFIGS.api_version,
        "kind": KUBERNETES_PROVIDER_CONFIGS.kind,
        "metadata": {"name": name},
        "spec": {
            "credentials": {
                "source": "Secret",
                "secretRef": {"namespace": namespace, "name": secret_name, "key": "kubeconfig"},
            }
        },
    }
    try:
        with target.kube_client() as consumer:
            consumer.apply(CLUSTER_ROLES, role, FIELD_MANAGER)
            consumer.apply(CLUSTER_ROLE_BINDINGS, binding, FIELD_MANAGER)
        kubeconfig = target.mint_kubeconfig(CRD_DELIVERY_USER).read_bytes()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace},
            "type": "Opaque",
            "data": {"kubeconfig": base64.b64encode(kubeconfig).decode()},
        }
        kube.apply(SECRETS, secret, FIELD_MANAGER)
        kube.apply(KUBERNETES_PROVIDER_CONFIGS, config, FIELD_MANAGER)
    except KubeError as e:
        step = f"create the ProviderConfig {name} for cluster '{target.name}'"
        raise ClusterStartError(step, str(e)) from e
