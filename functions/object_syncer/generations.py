"""``observedGeneration`` in the consumer object's terms: what a provider's number stands for.

The twin's generation moves on its own, so a provider ``observedGeneration`` is mapped to
the consumer generation the twin reflects (:func:`consumer_generation`), and every one in a
copied status is rewritten (:func:`consumer_terms`). docs/semantics.md explains the rule.
"""

from __future__ import annotations

from typing import Any

from functions.common import (
    ANNOTATION_CONSUMER_GENERATION,
    LABEL_CONSUMER_UID,
    Obj,
    label_value,
    metadata,
    status_conditions,
    string_map,
)
from functions.common.objects import status_copy


def consumer_terms(twin: Obj, consumer: Obj) -> dict[str, Any]:
    """The twin's status, every ``observedGeneration`` in it rewritten by
    ``consumer_generation``; one that maps to nothing is dropped."""
    status = status_copy(twin)
    conditions = status_conditions(status)
    if conditions:
        status["conditions"] = [
            _mapped(c, twin, consumer) if isinstance(c, dict) else c for c in conditions
        ]
    return _mapped(status, twin, consumer)


def consumer_generation(observed: object, twin: Obj, consumer: Obj) -> int | None:
    """The consumer generation a provider ``observedGeneration`` of ``twin`` stands for.

    Tools (kstatus, Argo CD, Flux) compare an ``observedGeneration`` with the object's own
    ``metadata.generation``: equal means the status describes the current spec, lower means
    it is out of date. The twin's generation moves on its own (Crossplane writes
    ``compositionRef``, ``resourceRef``, ... into its spec), so the provider's number says
    nothing in the consumer. The rule:

    - the twin reflects consumer generation A (its ``consumer-generation`` annotation, if the
      twin belongs to this consumer object, i.e. carries its uid, and A is not ahead of it);
    - a provider value at or above the twin's ``metadata.generation`` describes the twin as it
      is, so it stands for A; while both objects are being deleted, for the consumer's
      current generation, since the twin's deletion is the consumer's;
    - a lower value describes an older twin spec, which reflected A or an earlier
      generation: it stands for one less than what the twin reflects, so that it reads as
      out of date (the exact older generation is not known, and not claimed);
    - without a known A, every value reads as out of date: the consumer's generation - 1.

    None when the consumer has no generation, or the value is not an integer.
    """
    generation = as_int(metadata(consumer).get("generation"))
    value = as_int(observed)
    if generation is None or value is None:
        return None
    if metadata(consumer).get("deletionTimestamp") and metadata(twin).get("deletionTimestamp"):
        current: int | None = generation
    else:
        current = _reflected_generation(twin, consumer, generation)
    twin_generation = as_int(metadata(twin).get("generation"))
    if current is not None and (twin_generation is None or value >= twin_generation):
        return current
    return max((current if current is not None else generation) - 1, 0)


def _reflected_generation(twin: Obj, consumer: Obj, generation: int) -> int | None:
    """The consumer generation the twin's content reflects, if known."""
    uid = metadata(consumer).get("uid")
    if (
        isinstance(uid, str)
        and uid
        and string_map(twin, "labels").get(LABEL_CONSUMER_UID) != label_value(uid)
    ):
        return None  # an earlier consumer object of that name left it
    value = string_map(twin, "annotations").get(ANNOTATION_CONSUMER_GENERATION, "")
    if not (value.isascii() and value.isdigit()) or int(value) > generation:
        return None
    return int(value)


def _mapped(item: dict[str, Any], twin: Obj, consumer: Obj) -> dict[str, Any]:
    if "observedGeneration" not in item:
        return item
    out = dict(item)
    mapped = consumer_generation(out.pop("observedGeneration"), twin, consumer)
    if mapped is not None:
        out["observedGeneration"] = mapped
    return out


def as_int(value: object) -> int | None:
    """``value`` if it is a JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
