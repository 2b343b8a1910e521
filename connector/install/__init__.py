"""``api-connector install`` / ``uninstall``: put the connector into a consumer, or take it out.

The connector's own equivalent of ``up controlplane api-connector install/uninstall``.

``install`` runs in two phases:

1. **Validate, writing nothing**: both kubeconfigs and contexts can be used, both clusters
   answer, the installer's identity may do everything the install does (SelfSubjectAccess
   Reviews), the chart and helm are found, the provider's offered APIs are listed, an
   existing Helm release, Secret or ClusterConnection does not belong to someone else,
   and whether the provider serves ValidatingAdmissionPolicy for the isolation policy.
2. **Write, each step idempotent**: on the provider (with an admin's kubeconfig) the
   consumer's isolation policy (the binder's ``isolation_policy``: its identity may write
   only objects labelled as its own), the per-consumer namespace, ServiceAccount, token
   Secret and a ClusterRole limited to the offered APIs (the binder's ``provider_access``),
   then a kubeconfig for that identity; in the consumer the namespace, the connector's
   CRDs, the credentials Secret, the Helm release and the ClusterConnection. Then, with
   ``wait``, until the connection is Ready.

With ``skip_connection`` only the connector itself is installed (CRDs and the release), and
the ClusterConnections already in the consumer are used as they are. A release of the same
name that another chart installed (Upbound's API Connector) is replaced with ``upgrade``
(:mod:`~connector.install.takeover`), keeping every connection, binding, pulled CRD and
object. ``dry_run`` runs phase 1 and prints what phase 2 would do.

A failure in phase 2 leaves what was written in place and a rerun with the same arguments
completes it; the one exception is a first ``helm install`` that fails, whose release is
uninstalled again so that the rerun is not blocked by a failed release.

``uninstall`` removes the Helm release, with ``all_`` also the ClusterConnections and
Secrets the installer created, and finally the connector's finalizer from every bound
object, so that nothing stays stuck in deletion. Given the provider's admin kubeconfig, it
then revokes what install created there for this consumer: its identity first, then its
isolation policy (never the other way round, which would leave a live identity
unconfined). It never deletes the provider's twins of the consumer's objects.

Side effects go through :class:`~connector.kube.KubeClient` and :class:`~connector.helm.Helm`;
progress is reported through the ``report`` callable (one sentence per call), and failures a
user must act on are :class:`InstallError` with a message saying what to fix. Nothing here
prints or logs secret material.

The modules, one concern each:

- :mod:`~connector.install.options` — the options, constants and :class:`InstallError`;
- :mod:`~connector.install.values` — ``--set`` parsing, merging values, ``boundAPIs``;
- :mod:`~connector.install.clusters` — opening both clusters, checking they answer;
- :mod:`~connector.install.permissions` — what the installer must be allowed, and checking it;
- :mod:`~connector.install.apis` — which offered APIs are bound;
- :mod:`~connector.install.isolation` — the consumer's isolation policy in the provider;
- :mod:`~connector.install.identity` — the consumer's provider identity and its token;
- :mod:`~connector.install.release` — the chart, the Helm release, and the waits;
- :mod:`~connector.install.takeover` — replacing a release of another chart (Upbound's);
- :mod:`~connector.install.adoption` — a connection's adoption opt-in (``--adopt``);
- :mod:`~connector.install.installer` — ``install``: validate, then write (or, with
  ``dry_run``, say what it would write);
- :mod:`~connector.install.uninstaller` — ``uninstall`` and revocation.
"""

from __future__ import annotations

from connector.install.apis import resources_from_flags, select_apis
from connector.install.identity import request_token, scoped_kubeconfig, token_claims
from connector.install.installer import install
from connector.install.options import (
    DEFAULT_CONNECTION,
    DEFAULT_NAMESPACE,
    FIELD_MANAGER,
    RELEASE,
    ClusterAccess,
    InstallError,
    InstallOptions,
    Report,
    RobotToken,
    UninstallOptions,
    default_secret_name,
)
from connector.install.permissions import (
    Permission,
    consumer_permissions,
    isolation_permissions,
    provider_permissions,
    revoke_permissions,
)
from connector.install.release import find_chart
from connector.install.uninstaller import revocation_order, uninstall
from connector.install.values import merge_values, parse_set, union_bound_apis

__all__ = [
    "DEFAULT_CONNECTION",
    "DEFAULT_NAMESPACE",
    "FIELD_MANAGER",
    "RELEASE",
    "ClusterAccess",
    "InstallError",
    "InstallOptions",
    "Permission",
    "Report",
    "RobotToken",
    "UninstallOptions",
    "consumer_permissions",
    "default_secret_name",
    "find_chart",
    "install",
    "isolation_permissions",
    "merge_values",
    "parse_set",
    "provider_permissions",
    "request_token",
    "resources_from_flags",
    "revocation_order",
    "revoke_permissions",
    "scoped_kubeconfig",
    "select_apis",
    "token_claims",
    "uninstall",
    "union_bound_apis",
]
