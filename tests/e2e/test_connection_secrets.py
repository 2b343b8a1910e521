"""Connection Secrets: what the provider writes for an object's
``spec.writeConnectionSecretToRef`` arrives in the consumer, follows rotations, and goes when
it is no longer asked for; a consumer Secret the connector did not write is never touched.

The test plays Crossplane's part in the provider (the real one is in tests/crossplane_e2e):
it writes the connection Secret as Crossplane does, typed ``connection.crossplane.io/v1alpha1``
and controlled by the twin.
"""

from __future__ import annotations

import base64
from typing import Any

from connector.kube.resources import CONFIG_MAPS, SECRETS
from tests.e2e.conftest import World
from tests.e2e.harness import (
    NOP,
    apply,
    condition,
    events_of,
    eventually,
    get,
    load,
    nop_admission,
    unique,
    warning_events,
)

CONNECTION = "ConnectionSecretSynced"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def claim(namespace: str, name: str = "db", secret: str | None = "db-conn") -> dict[str, Any]:
    (doc,) = load("consumer/40-nopresource.yaml")
    doc["metadata"].update(name=name, namespace=namespace)
    doc["spec"]["compositeDeletePolicy"] = "Background"
    if secret is not None:
        doc["spec"]["writeConnectionSecretToRef"] = {"name": secret}
    return dict(doc)


def write_connection_secret(
    world: World,
    twin: dict[str, Any],
    data: dict[str, str],
    *,
    controller: dict[str, Any] | None = None,
) -> None:
    """What Crossplane does for a claim: the Secret its ref names, controlled by it (or by
    ``controller``, an object that exists: the garbage collector deletes a Secret whose
    controller does not)."""
    meta = twin["metadata"]
    owner = controller or twin
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": twin["spec"]["writeConnectionSecretToRef"]["name"],
            "namespace": meta["namespace"],
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "type": "connection.crossplane.io/v1alpha1",
        "data": {k: b64(v) for k, v in data.items()},
    }
    apply(world.provider, secret, SECRETS)


def copied(world: World, namespace: str, name: str = "db-conn") -> dict[str, str] | None:
    secret = get(world.consumer, SECRETS, name, namespace)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def verdict(world: World, namespace: str, name: str = "db") -> str | None:
    reason = condition(get(world.consumer, NOP, name, namespace), CONNECTION).get("reason")
    return None if reason is None else str(reason)


def twin_asking(world: World, namespace: str, secret: str, name: str = "db") -> Any:
    def ready() -> Any:
        twin = get(world.provider, NOP, name, namespace)
        ref = ((twin or {}).get("spec") or {}).get("writeConnectionSecretToRef") or {}
        return twin if ref.get("name") == secret else None

    return eventually(ready)


def test_a_connection_secret_arrives_is_rotated_renamed_and_removed(
    world: World, namespace: str
) -> None:
    apply(world.consumer, claim(namespace))
    eventually(lambda: verdict(world, namespace) == "Waiting")
    twin = twin_asking(world, namespace, "db-conn")
    write_connection_secret(world, twin, {"endpoint": "db.example", "password": "first"})

    eventually(lambda: copied(world, namespace) == {"endpoint": "db.example", "password": "first"})
    secret = world.consumer.get(SECRETS, "db-conn", namespace)
    assert secret["type"] == "connection.crossplane.io/v1alpha1"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "api-connector"
    consumer_obj = world.consumer.get(NOP, "db", namespace)
    [owner] = secret["metadata"]["ownerReferences"]
    assert owner["uid"] == consumer_obj["metadata"]["uid"]
    eventually(lambda: verdict(world, namespace) == "Synced")
    assert condition(get(world.consumer, NOP, "db", namespace), "APIBound")["status"] == "True"

    # Rotated in the provider: the copy follows (a watch, not a poll: the connector's
    # resync is an hour).
    write_connection_secret(world, twin, {"endpoint": "db.example", "password": "second"})
    eventually(lambda: (copied(world, namespace) or {}).get("password") == "second")

    # Deleted by hand in the consumer: written again.
    world.consumer.delete(SECRETS, "db-conn", namespace)
    eventually(lambda: (copied(world, namespace) or {}).get("password") == "second")

    # Renamed: the new name is written, the old one deleted.
    apply(world.consumer, claim(namespace, secret="db-conn-2"))
    twin = twin_asking(world, namespace, "db-conn-2")
    write_connection_secret(world, twin, {"password": "third"})
    eventually(lambda: copied(world, namespace, "db-conn-2") == {"password": "third"})
    eventually(lambda: copied(world, namespace) is None)

    # No longer asked for: deleted, and the condition goes.
    apply(world.consumer, claim(namespace, secret=None))
    eventually(lambda: copied(world, namespace, "db-conn-2") is None)
    eventually(lambda: verdict(world, namespace) is None)


def test_a_secret_whose_condition_was_never_written_goes_when_no_longer_asked_for(
    world: World, namespace: str
) -> None:
    # The consumer refuses the object's status writes (an admission policy): the connector
    # copies the Secret, and its ConnectionSecretSynced condition, the usual record that a
    # Secret exists, is never written.
    refusing = nop_admission(
        world.consumer,
        unique("no-status"),
        namespace,
        expression="false",
        message="status writes are refused here",
        resources=["nopresources/status"],
    )

    def status_refused() -> bool:
        try:
            world.consumer.patch(
                NOP, "db", namespace, {"status": {"probe": "x"}}, subresource="status"
            )
        except Exception as exc:
            return "status writes are refused here" in str(exc)
        return False

    with refusing:
        apply(world.consumer, claim(namespace, secret=None))
        eventually(status_refused)
        apply(world.consumer, claim(namespace))
        twin = twin_asking(world, namespace, "db-conn")
        write_connection_secret(world, twin, {"password": "p"})
        eventually(lambda: copied(world, namespace) == {"password": "p"})
        assert verdict(world, namespace) is None, "the status write was refused"
        # What no condition can say, a Warning Event does.
        eventually(
            lambda: [e["reason"] for e in warning_events(world.consumer, namespace, "db")]
            == ["StatusRefused"]
        )

        # No longer asked for, before any status was written: the Secret still goes.
        apply(world.consumer, claim(namespace, secret=None))
        eventually(lambda: copied(world, namespace) is None)
    # Status writes allowed again (once the API server has dropped the policy): the next
    # pass, here at once because the object changes (retries back off up to a minute),
    # brings its conditions up to date.
    eventually(lambda: not status_refused())
    world.consumer.patch(NOP, "db", namespace, {"metadata": {"annotations": {"test/wake": "1"}}})
    eventually(
        lambda: condition(get(world.consumer, NOP, "db", namespace), "APIBound").get("status")
        == "True"
    )
    # And the recovery is told, once.
    eventually(
        lambda: [
            e["reason"]
            for e in events_of(world.consumer, namespace, "db")
            if e["reason"] == "StatusAccepted"
        ]
        == ["StatusAccepted"]
    )


def test_deleting_the_object_deletes_its_connection_secret(world: World, namespace: str) -> None:
    apply(world.consumer, claim(namespace))
    twin = twin_asking(world, namespace, "db-conn")
    write_connection_secret(world, twin, {"password": "p"})
    eventually(lambda: copied(world, namespace) is not None)
    world.consumer.delete(NOP, "db", namespace)
    eventually(lambda: get(world.consumer, NOP, "db", namespace) is None)
    assert copied(world, namespace) is None


def test_a_secret_the_connector_did_not_write_is_never_overwritten(
    world: World, namespace: str
) -> None:
    theirs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-conn", "namespace": namespace},
        "type": "Opaque",
        "data": {"mine": b64("keep me")},
    }
    world.consumer.create(SECRETS, theirs)
    apply(world.consumer, claim(namespace))
    twin = twin_asking(world, namespace, "db-conn")
    write_connection_secret(world, twin, {"password": "p"})

    eventually(lambda: verdict(world, namespace) == "ConnectionSecretConflict")
    assert copied(world, namespace) == {"mine": "keep me"}
    obj = world.consumer.get(NOP, "db", namespace)
    assert condition(obj, "APIBound")["status"] == "True"  # the object itself keeps syncing
    assert [e["reason"] for e in warning_events(world.consumer, namespace, "db")] == [
        "ConnectionSecretConflict"
    ]

    # Deleting the object leaves their Secret alone too.
    world.consumer.delete(NOP, "db", namespace)
    eventually(lambda: get(world.consumer, NOP, "db", namespace) is None)
    assert copied(world, namespace) == {"mine": "keep me"}


def test_a_provider_secret_the_twin_does_not_control_is_not_copied(
    world: World, namespace: str
) -> None:
    apply(world.consumer, claim(namespace))
    twin = twin_asking(world, namespace, "db-conn")
    # Someone else's Secret that the consumer named: Crossplane would not propagate it either.
    someone = world.provider.create(
        CONFIG_MAPS,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "someone-else", "namespace": twin["metadata"]["namespace"]},
        },
    )
    write_connection_secret(world, twin, {"password": "not yours"}, controller=someone)
    # A Secret another object controls does not wake this one (its events are mapped by
    # controller): its next change or resync looks. Change it now.
    world.consumer.patch(NOP, "db", namespace, {"metadata": {"annotations": {"test/wake": "1"}}})
    eventually(lambda: verdict(world, namespace) == "ProviderSecretNotControlled")
    assert copied(world, namespace) is None
