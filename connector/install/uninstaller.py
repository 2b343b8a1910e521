"""``uninstall``: take the connector out of the consumer, and revoke its identity in the provider.

Order matters twice. In the consumer, the Helm release goes first and its pods are waited
for, so that no connector re-adds the finalizer that is then removed from every bound
object. In the provider (given an admin's kubeconfig), the consumer's identity goes before
its isolation policy, never the other way round, which would leave a live identity
unconfined. Objects in the provider (the twins of the consumer's objects) are never deleted.
"""

from __future__ import annotations

import contextlib
from typing import Any

from connector.helm import Helm, HelmError, Release, Runner
from connector.install.clusters import Cluster, check_reachable, default_consumer_name, open_cluster
from connector.install.identity import PROVIDER_RESOURCES
from connector.install.options import (
    RELEASE,
    InstallError,
    Report,
    UninstallOptions,
    counted,
)
from connector.install.permissions import check_permissions, forbidden, revoke_permissions
from connector.install.release import open_helm, wait_connector_gone
from connector.kube import (
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    SECRETS,
    ConflictError,
    ForbiddenError,
    InvalidError,
    KubeClient,
    KubeError,
    NotFoundError,
    Resource,
)
from connector.kube.resources import (
    ROLE_BINDINGS,
    VALIDATING_ADMISSION_POLICIES,
    VALIDATING_ADMISSION_POLICY_BINDINGS,
)
from functions.binder import AccessRequest, provider_access
from functions.binder.isolation import policy_name
from functions.binder.placement import OBJECTS_ROLE_BINDING, consumer_labels
from functions.common import (
    FINALIZER,
    LABEL_CONNECTION,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from functions.common.placement import PLACEMENT_ISOLATED

__all__ = ["revocation_order", "uninstall"]

_PROVIDER_UNTOUCHED = (
    "Nothing in the provider was touched; uninstall --provider-kubeconfig also removes this "
    "consumer's provider identity and isolation policy."
)


def uninstall(  # noqa: PLR0912 - the uninstall's steps in order, each skipped when not asked for
    opts: UninstallOptions, *, report: Report, run: Runner | None = None
) -> None:
    """Remove the connector from the consumer; see :mod:`connector.install`."""
    consumer = open_cluster(opts.consumer, "consumer")
    check_reachable(consumer)
    provider: Cluster | None = None
    if opts.provider is not None:
        provider = open_cluster(opts.provider, "provider")
        check_reachable(provider)
    client = consumer.client
    revoke: tuple[str, bool] | None = None
    helm = open_helm(opts.consumer, binary=opts.helm, timeout=opts.timeout, run=run)
    try:
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
        wait_connector_gone(client, opts.namespace, opts.timeout, report=report)
    try:
        if opts.all_:
            did = _delete_installed_objects(client, opts.namespace, report=report) or did
        stripped = _strip_finalizers(client)
    except ForbiddenError as e:
        raise forbidden(consumer, "remove what install created", e) from e
    except KubeError as e:
        raise InstallError(f"cannot clean up the consumer cluster: {e.message}") from e
    if stripped:
        report(
            f"Removed the connector's finalizer from {counted(stripped, 'bound object')}, so "
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


def _revocation_target(
    opts: UninstallOptions,
    provider: Cluster,
    consumer: Cluster,
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
            name = default_consumer_name(consumer.client)
        except KubeError as e:
            raise InstallError(
                f"cannot derive the consumer's name in the provider from its kube-system "
                f"namespace ({e.message}); pass --consumer-cluster-name."
            ) from e
    access = provider_access(AccessRequest(consumer_name=name, resources=[]))
    check_permissions(provider, revoke_permissions(access))
    return name, derived


def revocation_order(consumer_name: str) -> list[tuple[Resource, str, str | None]]:
    """What install creates in the provider for ``consumer_name``, in the order to delete it.

    The ClusterRoleBinding first (access ends at once), the ServiceAccount before its
    namespace (its tokens stop working at once, even where namespace deletion takes long),
    the isolation policy last (never an unconfined identity). The isolated placement's
    objects are included, whichever placement install used (what is not there is skipped):
    its objects role, and its placement policy after the ClusterRoleBinding that let the
    identity create namespaces and RoleBindings. The RoleBindings in the consumer's own
    namespaces are not listed here: they are found by label (``_revoke_provider``).
    """
    access = provider_access(
        AccessRequest(consumer_name=consumer_name, resources=[], placement=PLACEMENT_ISOLATED)
    )
    name = policy_name(consumer_name)
    identity = [
        (
            PROVIDER_RESOURCES[str(obj["kind"])],
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
    provider: Cluster, consumer_name: str, derived: bool, *, report: Report
) -> bool:
    """Delete what install created in the provider for ``consumer_name``; whether any was.

    The identity goes first (its ClusterRoleBinding, so that its access ends at once), the
    isolation policy last: removing the policy first would leave a working identity
    unconfined. Only objects carrying install's labels for this consumer are deleted; the
    twins of the consumer's objects are never touched.
    """
    client = provider.client
    ours = consumer_labels(consumer_name)
    removed = kept = 0
    try:
        # First: the grants in the consumer's own namespaces (isolated placement) end its
        # access to its objects there at once. The namespaces and the twins in them stay.
        selector = ",".join(f"{key}={value}" for key, value in ours.items())
        bindings, _ = client.list(ROLE_BINDINGS, None, label_selector=selector)
        grants = [
            b for b in bindings if (b.get("metadata") or {}).get("name") == OBJECTS_ROLE_BINDING
        ]
        for binding in grants:
            meta = binding["metadata"]
            _delete(client, ROLE_BINDINGS, str(meta["name"]), str(meta["namespace"]))
        removed += len(grants)
        if grants:
            report(
                f"Provider: deleted consumer {consumer_name}'s RoleBindings in "
                f"{counted(len(grants), 'namespace')} of its own; the namespaces and the "
                "objects in them stay."
            )
        for res, obj_name, namespace in revocation_order(consumer_name):
            kind = res.kind
            where = f"{namespace}/{obj_name}" if namespace else obj_name
            try:
                current = client.get_or_none(res, obj_name, namespace)
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


def _delete_installed_objects(client: KubeClient, namespace: str, *, report: Report) -> bool:
    """Delete the ClusterConnections and Secrets install created; whether there were any."""
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


def _delete(client: KubeClient, res: Resource, name: str, namespace: str | None = None) -> None:
    with contextlib.suppress(NotFoundError):  # already gone: what we wanted
        client.delete(res, name, namespace)
