"""The adoption opt-in of a ClusterConnection, as ``install --adopt/--no-adopt`` sets it.

``spec.adoption.policy: AdoptManaged`` lets the connector adopt provider objects another
connector created (labelled ``connect.upbound.io/managed=true``, claimed by no consumer
cluster's origin labels), which is how a consumer moves from Upbound's API Connector without
its objects reporting ``Conflict``; ``Never`` is the default. Install sets it on the
connection it creates, or, with ``--skip-connection``, on every ClusterConnection in the
consumer, writing only that field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connector.install.options import FIELD_MANAGER, InstallError, Report
from connector.kube import CLUSTER_CONNECTIONS, KubeClient, KubeError
from functions.common.api import ADOPTION_ADOPT_MANAGED, ADOPTION_NEVER

__all__ = ["adoption_sentence", "adoption_spec", "set_adoption"]


def adoption_spec(adopt: bool | None, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``spec.adoption`` of the connection install applies; None: leave the field out.

    Neither flag keeps an adoption an earlier install (or the user) turned on, since the
    installer's apply would otherwise drop the field it owns.
    """
    if adopt is not None:
        return {"policy": ADOPTION_ADOPT_MANAGED if adopt else ADOPTION_NEVER}
    adoption = ((current or {}).get("spec") or {}).get("adoption")
    if isinstance(adoption, dict) and adoption.get("policy") == ADOPTION_ADOPT_MANAGED:
        return dict(adoption)
    return None


def adoption_sentence(name: str, adopt: bool) -> str:
    if adopt:
        return (
            f"ClusterConnection {name} adopts provider objects another connector created "
            f"(spec.adoption.policy: {ADOPTION_ADOPT_MANAGED})."
        )
    return f"ClusterConnection {name} adopts nothing (spec.adoption.policy: {ADOPTION_NEVER})."


def set_adoption(
    client: KubeClient, names: Sequence[str], adopt: bool | None, *, report: Report
) -> None:
    """Set the adoption policy of connections install did not create, and only that field."""
    if adopt is None:
        return
    for name in names:
        try:
            client.apply(
                CLUSTER_CONNECTIONS,
                {
                    "apiVersion": CLUSTER_CONNECTIONS.api_version,
                    "kind": CLUSTER_CONNECTIONS.kind,
                    "metadata": {"name": name},
                    "spec": {"adoption": adoption_spec(adopt, None)},
                },
                FIELD_MANAGER,
            )
        except KubeError as e:
            raise InstallError(
                f"cannot set the adoption policy of ClusterConnection {name}: {e.message}"
            ) from e
        report(adoption_sentence(name, adopt))
