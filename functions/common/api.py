"""Names of the user-facing API, kept identical to Upbound's API Connector."""

from __future__ import annotations

CONNECT_GROUP = "connect.upbound.io"
CONNECT_VERSION = "v1alpha1"

#: On a provider CRD: this API may be bound by consumers.
BINDABLE_LABEL = "connect.upbound.io/bindable"

#: On a Crossplane XRD (Crossplane copies it to the CRDs it generates): which of the XRD's
#: CRDs are offered, ``claim``, ``composite`` or ``both``. Unset: the claim of an XRD that
#: may have one (scope LegacyCluster, every Crossplane v1 XRD), else the composite resource.
OFFER_LABEL = "connect.upbound.io/offer"
OFFER_CLAIM = "claim"
OFFER_COMPOSITE = "composite"
OFFER_BOTH = "both"

#: On a provider twin: the object is managed by a connector.
MANAGED_LABEL = "connect.upbound.io/managed"

#: Origin of a provider twin. Values longer than a label allows are hashed (see
#: ``functions.common.objects.label_value``); the annotations below carry them in full.
LABEL_CONSUMER_CLUSTER = "connect.upbound.io/consumer-cluster"
LABEL_CONSUMER_NAMESPACE = "connect.upbound.io/consumer-namespace"
LABEL_CONSUMER_NAME = "connect.upbound.io/consumer-name"
LABEL_CONSUMER_UID = "connect.upbound.io/consumer-uid"
ANNOTATION_ORIGIN_NAMESPACE = "connect.upbound.io/consumer-namespace"
ANNOTATION_ORIGIN_NAME = "connect.upbound.io/consumer-name"

#: On a provider twin this connector adopted from another connector (``spec.adoption``), so
#: that what was adopted can be listed (``kubectl get <plural> -A -l <this label>=true``).
LABEL_ADOPTED = "connect.upbound.io/adopted"

#: On a consumer CRD: the ClusterConnection that installed and owns it.
LABEL_CONNECTION = "connect.upbound.io/connection"

#: On a consumer object: held until its provider twin is gone.
FINALIZER = "connect.upbound.io/finalizer"

#: On a provider twin: the consumer object's ``metadata.generation`` its content reflects, so
#: that the provider's status can be reported in the consumer object's own generation terms.
ANNOTATION_CONSUMER_GENERATION = "connect.upbound.io/consumer-generation"

#: On a consumer object: ``Orphan`` keeps the provider twin when the object is deleted.
ANNOTATION_DELETION_POLICY = "connect.upbound.io/deletion-policy"

#: On a desired object the connector writes: a short hash of everything it wrote, so that a
#: field removed at the source is noticed although the target keeps extra fields.
ANNOTATION_APPLIED_HASH = "connect.upbound.io/applied-hash"

#: ``ClusterConnection.spec.adoption.policy``: whether provider objects another connector
#: created (labelled managed, claimed by no consumer's origin labels) are adopted.
ADOPTION_NEVER = "Never"
ADOPTION_ADOPT_MANAGED = "AdoptManaged"

#: Written by ``kubectl apply`` in one cluster; meaningless (and large) in the other.
ANNOTATION_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

#: The standard label naming the tool that manages an object, and our value for it.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "api-connector"

#: The field manager of the connector's own writes (server-side apply and the rest).
FIELD_MANAGER = MANAGED_BY

#: Where the connector's release, credentials Secrets and leader Lease live by convention.
DEFAULT_NAMESPACE = "upbound-system"

#: The Secret type Crossplane gives connection Secrets (a claim's, a legacy XR's); a v2
#: namespaced XR's composed connection Secret carries it by convention (docs/semantics.md).
CONNECTION_SECRET_TYPE = "connection.crossplane.io/v1alpha1"

#: On a consumer Secret the connector wrote from a provider connection Secret: the bound
#: API (``<plural>.<group>``, hashed if long) of the object it belongs to. Together with
#: ``app.kubernetes.io/managed-by=api-connector`` and an ownerReference to that object, it
#: tells the connector's Secrets from everyone else's, which are never overwritten.
LABEL_CONNECTION_SECRET_FOR = "connect.upbound.io/connection-secret-for"

#: Condition types the stages write.
CONDITION_READY = "Ready"
CONDITION_CRDS_SYNCED = "CRDsSynced"
CONDITION_API_BOUND = "APIBound"
#: On a consumer object that asks for a connection Secret: whether it is copied.
CONDITION_CONNECTION_SECRET = "ConnectionSecretSynced"
