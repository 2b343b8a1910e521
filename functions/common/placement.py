"""Placement of twins on the provider: which provider namespace a consumer namespace maps to.

``Default``: a twin has its consumer object's namespace (what manifests written for Upbound's
connector expect). Several consumers of one provider then share namespaces, and RBAC cannot
keep one consumer's identity from reading another's twins there.

``Isolated``: each consumer namespace maps to a provider namespace of that consumer alone,
``<consumer hash>-<consumer>-<namespace>``, so that the consumer's identity can be granted
its objects (and their connection Secrets) per namespace, and nothing outside them:

- the first 8 characters are a hash of the consumer cluster's name, then a dash, so no
  consumer's prefix is a prefix of another's: a name that starts with one consumer's
  prefix never starts with another's (the admission policy that lets a consumer create only
  namespaces with its own prefix relies on it);
- the consumer's name (up to 16 characters) and the namespace follow, for people reading
  ``kubectl get namespaces``;
- a namespace too long for the 63 characters left is cut, and a hash of the whole name
  appended, so two consumer namespaces never share a provider namespace.

Reversible: a twin's origin annotations (``connect.upbound.io/consumer-namespace``) name its
consumer namespace in full, and the provider namespace carries the same annotation and the
consumer's labels. Cluster-scoped objects have no namespace in either placement.

Pure: stdlib only.
"""

from __future__ import annotations

import functools
import hashlib
import re

from functions.common.errors import InvalidInputError

__all__ = [
    "PLACEMENTS",
    "PLACEMENT_DEFAULT",
    "PLACEMENT_ISOLATED",
    "check_placement",
    "isolated_prefix",
    "placement_of",
    "provider_namespace",
]

PLACEMENT_DEFAULT = "Default"
PLACEMENT_ISOLATED = "Isolated"
PLACEMENTS = (PLACEMENT_DEFAULT, PLACEMENT_ISOLATED)

_MAX = 63
_HASH = 8
_CONSUMER_CHARS = 16
_NS_HASH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")


def _digest(value: str, length: int) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def check_placement(value: str | None, field: str = "placement") -> str:
    """``value`` as a placement (absent or empty: ``Default``); anything else is refused."""
    if value in (None, ""):
        return PLACEMENT_DEFAULT
    if value not in PLACEMENTS:
        raise InvalidInputError(field, f"must be one of {', '.join(PLACEMENTS)}, got {value}")
    return str(value)


def placement_of(connection: dict[str, object] | None) -> str:
    """A ClusterConnection's ``spec.placement`` (the CRD allows only ``Default`` and
    ``Isolated``, and defaults it to ``Default``)."""
    spec = (connection or {}).get("spec")
    value = spec.get("placement") if isinstance(spec, dict) else None
    return PLACEMENT_ISOLATED if value == PLACEMENT_ISOLATED else PLACEMENT_DEFAULT


def isolated_prefix(consumer_cluster: str) -> str:
    """How every provider namespace of ``consumer_cluster`` starts in the isolated placement
    (at most 26 characters, ending in a dash)."""
    if not consumer_cluster:
        raise InvalidInputError("consumer_cluster", "is required")
    readable = _INVALID.sub("-", consumer_cluster.lower())[:_CONSUMER_CHARS].strip("-")
    head = _digest(consumer_cluster, _HASH)
    return f"{head}-{readable}-" if readable else f"{head}-"


@functools.lru_cache(maxsize=4096)
def provider_namespace(consumer_cluster: str, namespace: str, placement: str) -> str:
    """The provider namespace of ``consumer_cluster``'s consumer ``namespace`` (module doc).

    Cached: a syncer asks for it on every pass of every object (two hashes each)."""
    if check_placement(placement) == PLACEMENT_DEFAULT:
        return namespace
    if not namespace:
        raise InvalidInputError("namespace", "is required")
    prefix = isolated_prefix(consumer_cluster)
    room = _MAX - len(prefix)
    if len(namespace) <= room and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace):
        return prefix + namespace
    # Too long (or not a DNS label, which a consumer namespace always is): cut, and tell
    # apart by a hash of the whole name.
    cut = _INVALID.sub("-", namespace.lower())[: room - _NS_HASH - 1].strip("-")
    tail = _digest(f"{consumer_cluster}/{namespace}", _NS_HASH)
    return f"{prefix}{cut}-{tail}" if cut else prefix + tail
