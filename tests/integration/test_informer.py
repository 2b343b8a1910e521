"""Informers against real kube-apiservers: they converge, relist after 410, stop promptly."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from connector.envtest import Cluster, eventually
from connector.kube.client import KubeClient
from connector.kube.config import client_from_kubeconfig, client_from_kubeconfig_file
from connector.kube.errors import ForbiddenError, NotFoundError, UnreachableError
from connector.kube.metrics import Metrics, serve
from connector.kube.resources import (
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    Resource,
)
from connector.runtime.informer import Backoff, Informer


class Recorder:
    """A handler that records (type, name) and the objects it was given, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.objects: list[dict[str, Any]] = []

    def __call__(self, event_type: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((event_type, obj["metadata"]["name"]))
            self.objects.append(obj)

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.events)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.objects.clear()


@pytest.fixture
def client(provider: Cluster) -> Iterator[KubeClient]:
    with client_from_kubeconfig_file(provider.kubeconfig, name="provider") as c:
        yield c


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def informers() -> Iterator[list[Informer]]:
    """Informers a test starts; all are stopped afterwards, even when the test fails."""
    started: list[Informer] = []
    yield started
    for informer in started:
        informer.stop()


def configmap(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels}}


def test_an_informer_converges_on_adds_updates_and_deletes(
    client: KubeClient, namespace: str, recorder: Recorder, informers: list[Informer]
) -> None:
    client.create(CONFIG_MAPS, configmap("existing", namespace))
    informer = Informer(client, CONFIG_MAPS, namespace=namespace, handler=recorder, name="cms")
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)
    assert informer.has_synced
    assert recorder.snapshot() == [("ADDED", "existing")]

    client.create(CONFIG_MAPS, configmap("new", namespace))
    client.patch(CONFIG_MAPS, "existing", namespace, {"data": {"k": "v"}})
    client.delete(CONFIG_MAPS, "new", namespace)

    eventually(lambda: recorder.snapshot()[-1:] == [("DELETED", "new")])
    assert recorder.snapshot() == [
        ("ADDED", "existing"),
        ("ADDED", "new"),
        ("MODIFIED", "existing"),
        ("DELETED", "new"),
    ]
    cached = informer.get(namespace, "existing")
    assert cached is not None
    assert cached["data"] == {"k": "v"}
    assert cached["kind"] == "ConfigMap"
    assert informer.get(namespace, "new") is None
    assert [o["metadata"]["name"] for o in informer.list()] == ["existing"]
    assert informer.healthy
    assert informer.last_error is None


def test_the_cache_hands_out_copies(
    client: KubeClient, namespace: str, recorder: Recorder, informers: list[Informer]
) -> None:
    client.create(CONFIG_MAPS, configmap("c", namespace))
    informer = Informer(client, CONFIG_MAPS, namespace=namespace, handler=recorder, name="cms")
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)
    mine = informer.get(namespace, "c")
    assert mine is not None
    mine["metadata"]["name"] = "changed"
    recorder.objects[0]["metadata"]["labels"] = {"mutated": "yes"}
    cached = informer.get(namespace, "c")
    assert cached is not None
    assert cached["metadata"]["name"] == "c"
    assert not cached["metadata"].get("labels")


def test_a_label_selector_limits_the_cache(
    client: KubeClient, namespace: str, recorder: Recorder, informers: list[Informer]
) -> None:
    informer = Informer(
        client,
        CONFIG_MAPS,
        namespace=namespace,
        label_selector="connect.upbound.io/managed=true",
        handler=recorder,
        name="managed",
    )
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)
    client.create(CONFIG_MAPS, configmap("other", namespace))
    managed = {"connect.upbound.io/managed": "true"}
    client.create(CONFIG_MAPS, configmap("ours", namespace, **managed))
    eventually(lambda: recorder.snapshot() == [("ADDED", "ours")])
    assert informer.get(namespace, "other") is None


def test_resync_redelivers_every_cached_object_without_a_change(
    client: KubeClient, namespace: str, recorder: Recorder, informers: list[Informer]
) -> None:
    client.create(CONFIG_MAPS, configmap("a", namespace))
    informer = Informer(
        client,
        CONFIG_MAPS,
        namespace=namespace,
        handler=recorder,
        name="resync",
        resync_period=0.2,
    )
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)
    eventually(lambda: recorder.snapshot().count(("MODIFIED", "a")) >= 2)


def test_stop_interrupts_an_idle_watch_promptly(
    client: KubeClient, namespace: str, recorder: Recorder
) -> None:
    informer = Informer(
        client, CONFIG_MAPS, namespace=namespace, handler=recorder, name="idle"
    )  # the default, long server-side watch timeout
    informer.start()
    assert informer.wait_synced(10)
    time.sleep(0.3)  # let it settle into the watch
    started = time.monotonic()
    informer.stop()
    assert time.monotonic() - started < 1
    assert not informer.healthy


def test_a_handler_that_raises_does_not_stop_the_informer(
    client: KubeClient, namespace: str, recorder: Recorder, informers: list[Informer]
) -> None:
    def flaky(event_type: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] == "bad":
            raise RuntimeError("handler bug")
        recorder(event_type, obj)

    informer = Informer(client, CONFIG_MAPS, namespace=namespace, handler=flaky, name="flaky")
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)
    client.create(CONFIG_MAPS, configmap("bad", namespace))
    client.create(CONFIG_MAPS, configmap("good", namespace))
    eventually(lambda: ("ADDED", "good") in recorder.snapshot())
    assert informer.get(namespace, "bad") is not None


# -- 410 and relisting ----------------------------------------------------------------------


def gadget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def serve_crd(client: KubeClient, crd: dict[str, Any]) -> Resource:
    client.create(CUSTOM_RESOURCE_DEFINITIONS, crd)
    res = Resource.from_crd(crd)

    def served() -> bool:
        try:
            client.list(res, "default")
        except NotFoundError:
            return False
        return True

    eventually(served)
    return res


def remove_crd(client: KubeClient, name: str) -> None:
    client.delete(CUSTOM_RESOURCE_DEFINITIONS, name)

    def gone() -> bool:
        try:
            client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        except NotFoundError:
            return True
        return False

    eventually(gone, timeout=30)


@pytest.fixture
def gadgets(client: KubeClient, namespace: str) -> Iterator[tuple[Resource, dict[str, Any]]]:
    crd = gadget_crd(f"{namespace}.test.example.org")
    res = serve_crd(client, crd)
    yield res, crd
    with contextlib.suppress(NotFoundError):
        client.delete(CUSTOM_RESOURCE_DEFINITIONS, crd["metadata"]["name"])


def gadget(name: str, namespace: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"n": 1}}


def test_after_410_the_informer_relists_and_reports_what_vanished_as_deleted(
    client: KubeClient,
    namespace: str,
    recorder: Recorder,
    gadgets: tuple[Resource, dict[str, Any]],
) -> None:
    res, crd = gadgets
    client.create(res, gadget("a", namespace))
    client.create(res, gadget("b", namespace))
    informer = Informer(
        client, res, namespace=namespace, handler=recorder, name="gadgets", watch_timeout_seconds=1
    )
    informer.list_and_replace()
    assert sorted(recorder.snapshot()) == [("ADDED", "a"), ("ADDED", "b")]
    stale_version = informer.resource_version

    # While the informer is not watching, the API is re-created: its objects are gone, a new
    # one exists, and the new watch cache starts after the informer's resourceVersion.
    remove_crd(client, crd["metadata"]["name"])
    serve_crd(client, crd)
    client.create(res, gadget("c", namespace))
    recorder.clear()

    with capture_logs() as logs:
        assert informer.step() == 0.0, "a 410 relists at once, without backoff"
    assert any("too old" in entry["event"] for entry in logs)
    assert informer.last_error is None
    assert recorder.snapshot() == [], "nothing is delivered until the relist"

    assert informer.step() == 0.0  # relist, then one (1 s) watch session
    assert sorted(recorder.snapshot()) == [("ADDED", "c"), ("DELETED", "a"), ("DELETED", "b")]
    assert [o["metadata"]["name"] for o in informer.list()] == ["c"]
    assert int(informer.resource_version) > int(stale_version)


def test_a_running_informer_converges_when_its_api_is_recreated(
    client: KubeClient,
    namespace: str,
    recorder: Recorder,
    informers: list[Informer],
    gadgets: tuple[Resource, dict[str, Any]],
) -> None:
    res, crd = gadgets
    client.create(res, gadget("a", namespace))
    informer = Informer(
        client,
        res,
        namespace=namespace,
        handler=recorder,
        name="gadgets",
        backoff=Backoff(base=0.05, cap=0.5),
    )
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)

    remove_crd(client, crd["metadata"]["name"])
    serve_crd(client, crd)
    client.create(res, gadget("b", namespace))

    eventually(lambda: [o["metadata"]["name"] for o in informer.list()] == ["b"], timeout=30)
    # The cache is updated before the handler is called: wait for the handler too.
    eventually(lambda: recorder.snapshot()[-1:] == [("ADDED", "b")], timeout=10)
    assert ("DELETED", "a") in recorder.snapshot()
    eventually(lambda: informer.healthy)


# -- failures -------------------------------------------------------------------------------


def test_an_unreachable_server_is_reported_backed_off_and_logged_once(
    provider: Cluster, recorder: Recorder
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load(provider.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    registry = CollectorRegistry()
    with client_from_kubeconfig(yaml.safe_dump(config), name="nowhere") as nowhere:
        informer = Informer(
            nowhere,
            CONFIG_MAPS,
            handler=recorder,
            name="nowhere",
            backoff=Backoff(base=0.01, cap=0.08),
            metrics=Metrics(registry),
        )
        with capture_logs() as logs:
            delays = [informer.step() for _ in range(5)]
    assert isinstance(informer.last_error, UnreachableError)
    assert not informer.has_synced
    assert not informer.healthy
    assert not informer.wait_synced(0.01)
    # Capped, jittered exponential backoff: within [d/2, d] for d = 0.01, 0.02, 0.04, 0.08, 0.08.
    for delay, ceiling in zip(delays, (0.01, 0.02, 0.04, 0.08, 0.08), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1, "an unchanged error is logged once, not per retry"
    assert f"127.0.0.1:{port}" in warnings[0]["error"]
    assert registry.get_sample_value("api_connector_informer_healthy", {"informer": "nowhere"}) == 0


def test_a_forbidden_list_is_reported_as_the_last_error(
    provider: Cluster, namespace: str, recorder: Recorder
) -> None:
    with client_from_kubeconfig_file(provider.mint_kubeconfig("no-secrets")) as restricted:
        informer = Informer(
            restricted,
            SECRETS,
            namespace=namespace,
            handler=recorder,
            name="secrets",
            backoff=Backoff(base=0.01, cap=0.01),
        )
        informer.step()
    assert isinstance(informer.last_error, ForbiddenError)
    assert not informer.healthy


def test_each_change_of_health_is_called_back_once(
    provider: Cluster, client: KubeClient, namespace: str, recorder: Recorder
) -> None:
    # A controller learns of an outage (and of the first list) from this callback: the
    # connection controller polled last_error every second before.
    user = f"late-grant-{namespace}"
    seen: list[tuple[bool, str | None]] = []
    with client_from_kubeconfig_file(provider.mint_kubeconfig(user)) as restricted:
        informer = Informer(
            restricted,
            SECRETS,
            namespace=namespace,
            handler=recorder,
            name="health",
            backoff=Backoff(base=0.01, cap=0.01),
            watch_timeout_seconds=1,
            on_health_change=lambda: seen.append(
                (
                    informer.has_synced,
                    type(informer.last_error).__name__ if informer.last_error else None,
                )
            ),
        )
        informer.step()
        informer.step()
        assert seen == [(False, "ForbiddenError")], "a failure is told once, not per retry"

        rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}
        client.create(ROLES, {"metadata": {"name": user, "namespace": namespace}, "rules": [rule]})
        client.create(
            ROLE_BINDINGS,
            {
                "metadata": {"name": user, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
                "subjects": [{"kind": "User", "name": user}],
            },
        )

        def listed() -> bool:
            informer.step()
            return informer.has_synced

        eventually(listed)
        informer.step()
    assert seen == [(False, "ForbiddenError"), (True, None)], "listed: called back once more"


def test_readyz_follows_the_health_of_the_informers(
    client: KubeClient, namespace: str, recorder: Recorder
) -> None:
    registry = CollectorRegistry()
    informer = Informer(
        client,
        CONFIG_MAPS,
        namespace=namespace,
        handler=recorder,
        name="ready",
        metrics=Metrics(registry),
    )
    server = serve("127.0.0.1:0", registry=registry, ready=lambda: informer.healthy)
    base = "http://{}:{}".format(*server.address)

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return e.code

    try:
        assert status("/readyz") == 503
        assert status("/healthz") == 200
        informer.start()
        assert informer.wait_synced(10)
        eventually(lambda: status("/readyz") == 200)

        def metrics() -> str:
            with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
                return str(response.read().decode())

        # The health gauge is set just after the cache counts as synced.
        eventually(
            lambda: 'api_connector_informer_healthy{informer="ready"} 1.0' in metrics(),
            timeout=10,
        )
        informer.stop()
        assert status("/readyz") == 503
    finally:
        informer.stop()
        server.shutdown()


def test_a_transform_trims_what_is_cached_and_delivered(
    client: KubeClient, namespace: str, recorder: Recorder, informers: list[Informer]
) -> None:
    def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"].pop("managedFields", None)
        return obj

    client.create(CONFIG_MAPS, configmap("listed", namespace))
    informer = Informer(
        client,
        CONFIG_MAPS,
        namespace=namespace,
        handler=recorder,
        name="trimmed",
        transform=without_managed_fields,
    )
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(10)
    client.create(CONFIG_MAPS, configmap("watched", namespace))
    eventually(lambda: informer.get(namespace, "watched") is not None)
    for name in ("listed", "watched"):
        cached = informer.get(namespace, name)
        assert cached is not None
        assert "managedFields" not in cached["metadata"]
        assert cached["metadata"]["resourceVersion"]
    assert all("managedFields" not in o["metadata"] for o in recorder.objects)
