"""Taking over a release of another chart: Upbound's API Connector, replaced in place.

A team that ran Upbound's API Connector has, in its consumer cluster, that chart's Helm
release ``api-connector`` in ``upbound-system``, the connector CRDs it installed, the
ClusterConnections and bindings they created, and the CRDs the old connector pulled, with
the users' objects in them. ``install --upgrade`` replaces the release with this project's
chart and keeps every one of those objects. What it does, in order (each step idempotent, so
a rerun completes an interrupted takeover):

1. **Stop the old connector**: the old release's workloads (Deployments, StatefulSets,
   DaemonSets) are deleted, so that the two connectors never act at once, as are its
   RoleBindings and ClusterRoleBindings whose ``roleRef`` this chart changes (a field the
   API server never lets change). Helm creates this chart's own right after.
2. **The connector CRDs** (ClusterConnection, ClusterAPIBinding, APIBinding) are brought to
   this project's schema in place: the fields other managers own (the old chart's helm, the
   old connector) are handed to the installer's server-side apply, which then applies this
   schema, so that what the old schema had and this one has not goes. A CRD is never
   deleted: its objects stay. A version the old CRD stored objects in that this schema does
   not serve refuses the takeover before anything is written.
3. **CRDs the old release templated** would be deleted by ``helm upgrade`` as resources the
   new chart does not render (this chart ships its CRDs in ``crds/``, which helm leaves
   alone), and with them every object of theirs. They are annotated
   ``helm.sh/resource-policy: keep`` for the upgrade, and the annotation is removed after.
4. **CRDs the old connector pulled** (named in a ClusterConnection's ``status.offeredAPIs``,
   present in the consumer without this connector's ``connect.upbound.io/connection``
   label) are labelled for that connection and their fields handed to the connector's
   field manager: the connector then updates them in place (never re-creates them), and
   a field the provider drops later goes from the consumer too.

Everything is planned before anything is written (:func:`plan_takeover`), and
:func:`describe` says it in sentences for ``--dry-run``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.controllers import ownership
from connector.helm import Helm, HelmError
from connector.install.options import (
    FIELD_MANAGER,
    RELEASE,
    InstallError,
    Report,
    counted,
)
from connector.install.release import ExistingRelease
from connector.kube import (
    CLUSTER_CONNECTIONS,
    CUSTOM_RESOURCE_DEFINITIONS,
    ConflictError,
    KubeClient,
    KubeError,
    NotFoundError,
    Resource,
)
from connector.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    DAEMON_SETS,
    DEPLOYMENTS,
    ROLE_BINDINGS,
    STATEFUL_SETS,
)
from functions.common import LABEL_CONNECTION, label_value
from functions.common.api import FIELD_MANAGER as CONNECTOR_FIELD_MANAGER

__all__ = [
    "CARRIED_VALUES",
    "KEEP_ANNOTATION",
    "CRDTakeover",
    "PulledCRD",
    "Removal",
    "Takeover",
    "describe",
    "plan_takeover",
    "protect_crds",
    "stop_old_connector",
    "take_over_connector_crd",
    "take_over_pulled_crds",
    "unprotect_crds",
]

#: The values of Upbound's chart that this chart understands the same way, and keeps.
CARRIED_VALUES = ("consumerClusterDisplayName", "pollInterval")
#: What keeps helm from deleting a resource the new chart does not render.
KEEP_ANNOTATION = "helm.sh/resource-policy"

_WORKLOADS = {r.kind: r for r in (DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS)}
_BINDINGS = {r.kind: r for r in (ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS)}


@dataclass(frozen=True, kw_only=True)
class Removal:
    """An object of the old release deleted before the upgrade."""

    res: Resource
    name: str
    namespace: str | None
    why: str

    def describe(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.res.kind} {where}"


@dataclass(frozen=True, kw_only=True)
class CRDTakeover:
    """A connector CRD that exists already and is brought to this project's schema."""

    name: str
    #: The field managers whose fields the installer takes over (none: only applied).
    managers: tuple[str, ...]
    #: How many objects of it exist; every one is kept.
    objects: int


@dataclass(frozen=True, kw_only=True)
class PulledCRD:
    """A CRD the old connector pulled, handed to one of the ClusterConnections."""

    name: str
    connection: str
    managers: tuple[str, ...]
    objects: int


@dataclass(frozen=True, kw_only=True)
class Takeover:
    old_chart: str
    #: Values of the old release this chart keeps (:data:`CARRIED_VALUES`).
    carried: dict[str, str]
    #: Other values of the old release, which this chart does not know.
    dropped: list[str]
    removals: list[Removal] = field(default_factory=list)
    crds: list[CRDTakeover] = field(default_factory=list)
    #: CRDs the old release's templates hold, kept from helm's deletion during the upgrade.
    protected: list[str] = field(default_factory=list)
    pulled: list[PulledCRD] = field(default_factory=list)


def plan_takeover(
    client: KubeClient,
    helm: Helm,
    existing: ExistingRelease,
    *,
    chart: str,
    namespace: str,
    values: Mapping[str, Any],
    chart_crds: Sequence[Mapping[str, Any]],
) -> Takeover:
    """What replacing ``existing`` with this chart changes; reads, never writes."""
    try:
        old = helm.manifest(RELEASE, namespace)
        new = helm.template(RELEASE, chart, namespace, values)
    except HelmError as e:
        raise InstallError(str(e)) from e
    carried = {
        key: str(existing.values[key])
        for key in CARRIED_VALUES
        if isinstance(existing.values.get(key), str | int) and str(existing.values[key])
    }
    takeover = Takeover(
        old_chart=existing.release.chart,
        carried=carried,
        dropped=sorted(k for k in existing.values if k not in CARRIED_VALUES),
    )
    try:
        takeover.removals.extend(_removals(client, old, new, namespace))
        takeover.protected.extend(
            sorted(
                str(doc["metadata"]["name"])
                for doc in old
                if doc.get("kind") == "CustomResourceDefinition"
                and client.get_or_none(CUSTOM_RESOURCE_DEFINITIONS, doc["metadata"]["name"])
            )
        )
        takeover.crds.extend(_connector_crds(client, chart_crds))
        takeover.pulled.extend(_pulled_crds(client))
    except KubeError as e:
        raise InstallError(f"cannot read what the old connector left: {e.message}") from e
    return takeover


def _key(doc: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    kind = str(doc.get("kind"))
    scoped = kind in _WORKLOADS or kind == "RoleBinding"
    return kind, str(meta.get("namespace") or namespace) if scoped else "", str(meta.get("name"))


def _removals(
    client: KubeClient,
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    namespace: str,
) -> list[Removal]:
    rendered = {_key(doc, namespace): doc for doc in new}
    out: list[Removal] = []
    for doc in old:
        kind, ns, name = _key(doc, namespace)
        if kind in _WORKLOADS:
            res = _WORKLOADS[kind]
            why = "it runs the old connector, which stops before this one starts"
        elif kind in _BINDINGS:
            res = _BINDINGS[kind]
            replacement = rendered.get((kind, ns, name))
            if replacement is None or replacement.get("roleRef") == doc.get("roleRef"):
                continue  # helm updates or deletes it itself
            why = (
                "its roleRef changes, which the API server never lets change in place; "
                "helm creates this chart's own"
            )
        else:
            continue
        if client.get_or_none(res, name, ns or None) is not None:
            out.append(Removal(res=res, name=name, namespace=ns or None, why=why))
    return out


def _foreign_managers(obj: Mapping[str, Any], *, ours: str) -> tuple[str, ...]:
    """The managers owning fields of ``obj`` other than ``ours`` (status writers aside)."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return tuple(
        sorted(
            {
                str(e.get("manager"))
                for e in entries
                if isinstance(e, dict) and not e.get("subresource") and e.get("manager") != ours
            }
        )
    )


def _count(client: KubeClient, crd: Mapping[str, Any]) -> int:
    try:
        items, _ = client.list(Resource.from_crd(crd))
    except (NotFoundError, ValueError):
        return 0  # not served (yet): no objects to lose
    return len(items)


def _connector_crds(
    client: KubeClient, chart_crds: Sequence[Mapping[str, Any]]
) -> list[CRDTakeover]:
    out: list[CRDTakeover] = []
    for doc in chart_crds:
        name = str(doc["metadata"]["name"])
        live = client.get_or_none(CUSTOM_RESOURCE_DEFINITIONS, name)
        if live is None:
            continue
        versions = {str(v.get("name")) for v in (doc.get("spec") or {}).get("versions") or []}
        stored = [str(v) for v in (live.get("status") or {}).get("storedVersions") or []]
        lost = [v for v in stored if v not in versions]
        if lost:
            raise InstallError(
                f"the CRD {name} holds objects stored as version {', '.join(lost)}, which "
                f"this chart's CRD does not serve ({', '.join(sorted(versions))}); taking it "
                "over would make them unreadable. Nothing was changed; migrate those objects "
                "to a served version first."
            )
        out.append(
            CRDTakeover(
                name=name,
                managers=_foreign_managers(live, ours=FIELD_MANAGER),
                objects=_count(client, live),
            )
        )
    return out


def _pulled_crds(client: KubeClient) -> list[PulledCRD]:
    try:
        connections, _ = client.list(CLUSTER_CONNECTIONS)
    except NotFoundError:
        return []  # no connector CRDs: nothing was pulled
    out: list[PulledCRD] = []
    seen: set[str] = set()
    for connection in sorted(connections, key=lambda c: str(c["metadata"]["name"])):
        offered = (connection.get("status") or {}).get("offeredAPIs") or []
        for entry in offered:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or name in seen:
                continue
            seen.add(name)
            crd = client.get_or_none(CUSTOM_RESOURCE_DEFINITIONS, name)
            if crd is None or LABEL_CONNECTION in ((crd["metadata"].get("labels")) or {}):
                continue  # not pulled yet, or a connection of this connector owns it
            out.append(
                PulledCRD(
                    name=name,
                    connection=str(connection["metadata"]["name"]),
                    managers=_foreign_managers(crd, ours=CONNECTOR_FIELD_MANAGER),
                    objects=_count(client, crd),
                )
            )
    return out


def describe(takeover: Takeover, namespace: str) -> list[str]:
    """The takeover in sentences, in the order it runs (``--dry-run``)."""
    lines = [
        f"Helm release {RELEASE} in namespace {namespace} was installed by another chart "
        f"({takeover.old_chart}); it is replaced by this project's chart."
    ]
    if takeover.carried:
        kept = ", ".join(f"{k}={v}" for k, v in takeover.carried.items())
        lines.append(f"Its values {kept} are kept.")
    if takeover.dropped:
        lines.append(
            f"Its other values ({', '.join(takeover.dropped)}) mean nothing to this chart and "
            "are dropped; pass this chart's equivalents with --set or --values."
        )
    for removal in takeover.removals:
        lines.append(f"Delete {removal.describe()} of the old release: {removal.why}.")
    for crd in takeover.crds:
        whose = (
            f"take over the fields of {', '.join(crd.managers)} and apply"
            if crd.managers
            else "apply"
        )
        lines.append(
            f"CRD {crd.name}: {whose} this project's schema in place, keeping its "
            f"{counted(crd.objects, 'object')}."
        )
    for name in takeover.protected:
        lines.append(
            f"CRD {name} is a template of the old release: annotate it {KEEP_ANNOTATION}=keep "
            "so that helm does not delete it (and its objects) during the upgrade, and remove "
            "the annotation after."
        )
    for pulled in takeover.pulled:
        lines.append(
            f"CRD {pulled.name}, pulled by the old connector: label it "
            f"{LABEL_CONNECTION}={label_value(pulled.connection)} and hand its fields to the "
            f"connector (updated in place, never re-created), keeping its "
            f"{counted(pulled.objects, 'object')}."
        )
    return lines


def stop_old_connector(client: KubeClient, takeover: Takeover, *, report: Report) -> None:
    for removal in takeover.removals:
        with contextlib.suppress(NotFoundError):  # gone already: what we wanted
            client.delete(removal.res, removal.name, removal.namespace, propagation="Background")
        report(f"Deleted {removal.describe()} of the old release ({removal.why}).")


def take_over_connector_crd(client: KubeClient, name: str, takeover: Takeover) -> None:
    """Hand the fields other managers own on connector CRD ``name`` to the installer's
    apply, so that the apply that follows leaves exactly this project's schema."""
    planned = next((c for c in takeover.crds if c.name == name), None)
    if planned is not None and planned.managers:
        _take_over_fields(client, name, FIELD_MANAGER, planned.managers)


def protect_crds(client: KubeClient, takeover: Takeover, *, report: Report) -> None:
    for name in takeover.protected:
        with contextlib.suppress(NotFoundError):
            client.patch(
                CUSTOM_RESOURCE_DEFINITIONS,
                name,
                None,
                {"metadata": {"annotations": {KEEP_ANNOTATION: "keep"}}},
                field_manager=FIELD_MANAGER,
            )
    if takeover.protected:
        report(
            f"Annotated {counted(len(takeover.protected), 'CRD')} of the old release "
            f"{KEEP_ANNOTATION}=keep for the upgrade, so that none is deleted."
        )


def unprotect_crds(client: KubeClient, takeover: Takeover) -> None:
    for name in takeover.protected:
        with contextlib.suppress(NotFoundError):
            client.patch(
                CUSTOM_RESOURCE_DEFINITIONS,
                name,
                None,
                {"metadata": {"annotations": {KEEP_ANNOTATION: None}}},
                field_manager=FIELD_MANAGER,
            )


def take_over_pulled_crds(client: KubeClient, takeover: Takeover, *, report: Report) -> None:
    for pulled in takeover.pulled:
        # As the connector's own field manager: the label and the fields become the
        # connection's, exactly as if its CRD-puller had created the CRD.
        try:
            client.patch(
                CUSTOM_RESOURCE_DEFINITIONS,
                pulled.name,
                None,
                {"metadata": {"labels": {LABEL_CONNECTION: label_value(pulled.connection)}}},
                field_manager=CONNECTOR_FIELD_MANAGER,
            )
        except NotFoundError:
            continue  # deleted meanwhile: nothing to take over
        _take_over_fields(
            client,
            pulled.name,
            CONNECTOR_FIELD_MANAGER,
            (*pulled.managers, CONNECTOR_FIELD_MANAGER),
        )
        report(
            f"CRD {pulled.name} now belongs to ClusterConnection {pulled.connection}, with its "
            f"{counted(pulled.objects, 'object')}."
        )


def _take_over_fields(client: KubeClient, name: str, manager: str, managers: Sequence[str]) -> None:
    """Move the fields ``managers`` own on CRD ``name`` into ``manager``'s Apply entry,
    conditional on the resourceVersion read (a concurrent change is retried)."""
    for _ in range(5):
        live = client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        entries = ownership.take_over(live, manager, managers)
        if entries is None:
            return
        rv = live["metadata"]["resourceVersion"]
        try:
            client.patch(
                CUSTOM_RESOURCE_DEFINITIONS,
                name,
                None,
                {"metadata": {"resourceVersion": rv, "managedFields": entries}},
            )
            return
        except ConflictError:
            continue  # changed since it was read: read again
    raise InstallError(f"the CRD {name} kept changing while its fields were taken over; rerun.")
