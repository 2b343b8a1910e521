"""Kubernetes-style status conditions, with ``lastTransitionTime`` kept across no-op updates."""

from __future__ import annotations

from typing import Any

Condition = dict[str, Any]


def status_conditions(status: Any) -> list[Condition]:
    """The ``conditions`` of a status (anything: objects come from users and servers), as
    the list it holds; ``[]`` when there is no status or no list there. Not a copy."""
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return conditions if isinstance(conditions, list) else []


def object_conditions(obj: Any) -> list[Condition]:
    """The ``status.conditions`` of an object, as :func:`status_conditions` reads them."""
    return status_conditions(obj.get("status") if isinstance(obj, dict) else None)


def find_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    """Return the condition of ``type_`` in ``conditions``, or None (entries that are not
    objects are passed over)."""
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def set_condition(
    conditions: list[Condition] | None,
    *,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return a copy of ``conditions`` with ``type_`` set.

    ``lastTransitionTime`` moves to ``now`` only when the status changes, so that writing
    the same condition twice yields an identical list (and the caller writes nothing).
    """
    previous = find_condition(conditions, type_)
    transition = now
    if (
        previous is not None
        and previous.get("status") == status
        and previous.get("lastTransitionTime")
    ):
        transition = str(previous["lastTransitionTime"])
    new: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    kept = [c for c in conditions or [] if isinstance(c, dict)]
    out = [dict(c) for c in kept if c.get("type") != type_]
    out.append(new)
    # Stable order: the order in which types first appeared, new types last.
    order = [c.get("type") for c in kept]
    out.sort(key=lambda c: order.index(c.get("type")) if c.get("type") in order else len(order))
    return out
