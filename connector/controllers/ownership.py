"""Field ownership of a twin created with POST, handed over to server-side apply.

The connector creates a twin it has never seen with a plain create (POST): one request that
either creates the object or fails with AlreadyExists, so an object of the same name that
another consumer (or nobody) owns is never touched, with no read before the write. Later
changes are server-side applies. But a create records its fields under the manager's
*Update* entry in ``metadata.managedFields``, and an apply only removes fields that its
*Apply* entry owns: a field the consumer later drops would stay in the provider forever.

So before the first apply to such a twin, its Update entry is turned into an Apply entry
(what client-go's ``csaupgrade`` does for kubectl): one JSON patch that changes the entry's
``operation``, guarded by ``test`` operations so that it applies only to the entry it was
computed from. If an Apply entry exists as well, the two are merged (the union of their
field sets), which needs the full entries: read live, written back with a merge patch
conditional on the resourceVersion.

The provider cache keeps, for twins that need this, a summary of the entries (manager,
operation, subresource; no field sets), and nothing for the others: the full entries would
double the memory of every cached twin. :func:`hand_over` does the whole hand-over, with
the three requests it may need passed in.

Taking over from *another* manager works the same way (:func:`take_over`): its entries'
field sets move into ours, so that our next apply owns those fields alone and removes the
ones it no longer sets. ``install`` does it for connector CRDs another chart installed, and
for CRDs another connector pulled; the object syncer for a twin it adopts from the connector
that created it (:func:`label_owners` finds that connector: it owns the twin's
``connect.upbound.io/managed`` label).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection
from typing import Any

from connector.kube.errors import ConflictError, InvalidError, KubeError
from functions.common.objects import Obj

#: The key in a cached twin's metadata holding the summary (not a Kubernetes field; the
#: apply and every stage ignore it).
SUMMARY = "managedFields"


def _entries(obj: Obj) -> list[dict[str, Any]]:
    entries = (obj.get("metadata") or {}).get("managedFields")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _ours(entry: dict[str, Any], manager: str, operation: str) -> bool:
    return (
        entry.get("manager") == manager
        and entry.get("operation") == operation
        and not entry.get("subresource")
    )


def needs_upgrade(obj: Obj, manager: str) -> bool:
    """Whether ``manager`` owns fields of ``obj`` through an Update (a create or a PUT)."""
    return any(_ours(e, manager, "Update") for e in _entries(obj))


def summarize(obj: Obj, manager: str) -> Obj:
    """``obj`` with ``managedFields`` reduced to what :func:`upgrade` needs, or dropped."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    entries = _entries(obj)
    meta.pop("managedFields", None)
    if any(_ours(e, manager, "Update") for e in entries):
        meta[SUMMARY] = [
            {k: e[k] for k in ("manager", "operation", "subresource") if k in e} for e in entries
        ]
    return obj


def upgrade_patch(obj: Obj, manager: str) -> list[dict[str, Any]] | None:
    """A JSON patch turning ``manager``'s Update entry into its Apply entry, from a summary
    or full entries; ``None`` when there is nothing to do or an Apply entry exists too (then
    use :func:`merged_entries` on the full entries)."""
    entries = _entries(obj)
    if any(_ours(e, manager, "Apply") for e in entries):
        return None
    for i, entry in enumerate(entries):
        if _ours(entry, manager, "Update"):
            path = f"/metadata/managedFields/{i}"
            return [
                {"op": "test", "path": f"{path}/manager", "value": manager},
                {"op": "test", "path": f"{path}/operation", "value": "Update"},
                {"op": "replace", "path": f"{path}/operation", "value": "Apply"},
            ]
    return None


def merged_entries(obj: Obj, manager: str) -> list[dict[str, Any]] | None:
    """Full ``managedFields`` with ``manager``'s Update entry merged into its Apply entry;
    ``None`` if it has no Update entry."""
    entries = _entries(obj)
    update = next((e for e in entries if _ours(e, manager, "Update")), None)
    if update is None:
        return None
    apply = next((e for e in entries if _ours(e, manager, "Apply")), None)
    merged: list[dict[str, Any]] = []
    for entry in entries:
        if entry is update:
            if apply is None:
                merged.append({**entry, "operation": "Apply"})
            continue
        if entry is apply:
            fields = _union(apply.get("fieldsV1") or {}, update.get("fieldsV1") or {})
            merged.append({**entry, "fieldsV1": fields})
            continue
        merged.append(entry)
    return merged


def hand_over(
    twin: Obj,
    manager: str,
    *,
    json_patch: Callable[[list[dict[str, Any]]], object],
    read_live: Callable[[], Obj],
    merge_patch: Callable[[dict[str, Any]], object],
) -> None:
    """Turn ``manager``'s Update entry of ``twin`` into its Apply entry on the server.

    ``twin`` is the twin as last seen (a summary does). The guarded JSON patch computed
    from it comes first; if there is none (an Apply entry exists too) or the server refuses
    it (a ``test`` failed: the summary was stale), the entries are merged from the live
    object and written back with a merge patch conditional on its resourceVersion.
    """
    patch = upgrade_patch(twin, manager)
    if patch is not None:
        try:
            json_patch(patch)
            return
        except (ConflictError, InvalidError):
            pass  # a stale summary: do it from the live object
    live = read_live()
    entries = merged_entries(live, manager)
    if entries is None:
        return
    rv = live["metadata"]["resourceVersion"]
    try:
        merge_patch({"metadata": {"resourceVersion": rv, "managedFields": entries}})
    except InvalidError as exc:
        # Not the twin's content at fault: never report it as a rejected object.
        raise KubeError(f"Handing field ownership to server-side apply failed: {exc}") from exc


def label_owners(obj: Obj, label: str) -> list[str]:
    """The field managers owning ``obj``'s label ``label`` (from full ``managedFields``)."""
    key = f"f:{label}"
    owners = {
        str(e.get("manager"))
        for e in _entries(obj)
        if not e.get("subresource")
        and key in (((e.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:labels") or {})
    }
    return sorted(owners)


def take_over(
    obj: Obj,
    manager: str,
    others: Collection[str],
    *,
    labels: Collection[str] | None = None,
    annotations: Collection[str] | None = None,
) -> list[dict[str, Any]] | None:
    """Full ``managedFields`` of ``obj`` with what the entries of the managers ``others`` own
    (status writers aside) moved into ``manager``'s Apply entry; None if none of them owns
    anything. ``labels``/``annotations``, when given, limit what is taken of those to these
    keys; the rest stays with its owner (an object keeps labels it was given by others).
    """
    entries = _entries(obj)
    apply = next((e for e in entries if _ours(e, manager, "Apply")), None)
    taken = [
        e
        for e in entries
        if e is not apply and e.get("manager") in others and not e.get("subresource")
    ]
    if not taken:
        return None
    fields: dict[str, Any] = {}
    for entry in taken:
        fields = _union(fields, entry.get("fieldsV1") or {})
    fields = copy.deepcopy(fields)  # _union shares subtrees with the entries; prune a copy
    _limit(fields, labels, annotations)
    base = apply or {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": taken[0].get("apiVersion"),
        "time": taken[0].get("time"),
        "fieldsType": "FieldsV1",
    }
    ours = {**base, "fieldsV1": _union((apply or {}).get("fieldsV1") or {}, fields)}
    out: list[dict[str, Any]] = []
    placed = False
    for entry in entries:
        if entry is apply or any(entry is t for t in taken):
            if not placed:  # where the first of them was
                out.append({k: v for k, v in ours.items() if v is not None})
                placed = True
            if entry is not apply:
                kept = _residue(entry.get("fieldsV1") or {}, labels, annotations)
                if kept:  # what was not taken stays its owner's
                    out.append({**entry, "fieldsV1": kept})
            continue
        out.append(entry)
    return out


_METADATA_MAPS = ("f:labels", "f:annotations")


def _limit(
    fields: dict[str, Any], labels: Collection[str] | None, annotations: Collection[str] | None
) -> None:
    """Drop from ``fields`` (in place) the label and annotation keys not to be taken."""
    metadata = fields.get("f:metadata")
    if not isinstance(metadata, dict):
        return
    for name, kept in zip(_METADATA_MAPS, (labels, annotations), strict=True):
        owned = metadata.get(name)
        if kept is not None and isinstance(owned, dict):
            wanted = {f"f:{k}" for k in kept}
            metadata[name] = {k: v for k, v in owned.items() if k in wanted or k == "."}


def _residue(
    fields: dict[str, Any], labels: Collection[str] | None, annotations: Collection[str] | None
) -> dict[str, Any]:
    """The label and annotation keys of ``fields`` that :func:`_limit` leaves out."""
    metadata = fields.get("f:metadata")
    if not isinstance(metadata, dict):
        return {}
    residue: dict[str, Any] = {}
    for name, kept in zip(_METADATA_MAPS, (labels, annotations), strict=True):
        owned = metadata.get(name)
        if kept is not None and isinstance(owned, dict):
            wanted = {f"f:{k}" for k in kept}
            left = {k: v for k, v in owned.items() if k not in wanted and k != "."}
            if left:
                residue[name] = left
    return {"f:metadata": residue} if residue else {}


def _union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The union of two ``fieldsV1`` sets (tries of ``f:``/``k:``/``v:``/``i:`` keys)."""
    out = dict(a)
    for key, value in b.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _union(out[key], value)
        else:
            out.setdefault(key, value)
    return out
