"""Real Crossplane on a local provider: its APIs are served, the stages' Functions and the
example function are installed and called over mutual TLS, and claims and namespaced XRs
composed with the example function become Ready.

One Crossplane serves the whole session (the ``crossplane_provider`` fixture); each test
works in names of its own.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.envtest import (
    DEFAULT_FUNCTIONS,
    FUNCTION_REVISIONS,
    FUNCTIONS,
    Cluster,
    Crossplane,
    eventually,
)
from connector.envtest._process import pid_alive
from connector.kube import (
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    KubeClient,
    NotFoundError,
    Resource,
)
from connector.kube.resources import COMPOSITIONS, XRDS, XRDS_V2

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "crossplane"
CLI = ROOT / ".venv" / "bin" / "api-connector"
NOP_CLAIMS = Resource("nop.example.org", "v1alpha1", "nopresources", "NopResource", True)
NOP_XRS = Resource("nop.example.org", "v1alpha1", "xnopresources", "XNopResource", False)
NOP_APPS = Resource("app.example.org", "v1alpha1", "nopapps", "NopApp", True)
BINDABLE = "connect.upbound.io/bindable"

pytestmark = pytest.mark.timeout(600)


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            found: dict[str, Any] = c
            return found
    return {}


@pytest.fixture(scope="module")
def kube(crossplane_provider: Crossplane) -> Iterator[KubeClient]:
    with crossplane_provider.cluster.kube_client() as client:
        yield client


@pytest.fixture(scope="module")
def nop_api(kube: KubeClient) -> str:
    """The walkthrough's NopResource API as a platform team defines it, established."""
    for path in (EXAMPLES / "nop" / "xrd.yaml", EXAMPLES / "nop" / "composition.yaml"):
        obj = load(path)
        kube.apply(XRDS if obj["kind"] == XRDS.kind else COMPOSITIONS, obj, "test")

    def offered() -> bool:
        xrd = kube.get(XRDS, "xnopresources.nop.example.org")
        return condition(xrd, "Offered").get("status") == "True"

    eventually(offered, what="the NopResource claim API to be offered", timeout=60)
    return "nopresources.nop.example.org"


@pytest.fixture(scope="module")
def nop_app_api(kube: KubeClient) -> str:
    """The namespaced NopApp XR API (Crossplane v2), established."""
    xrd = load(EXAMPLES / "namespaced" / "xrd.yaml")
    kube.apply(XRDS_V2, xrd, "test")
    kube.apply(COMPOSITIONS, load(EXAMPLES / "namespaced" / "composition.yaml"), "test")

    def established() -> bool:
        got = kube.get(XRDS, "nopapps.app.example.org")
        return condition(got, "Established").get("status") == "True"

    eventually(established, what="the NopApp API to be established", timeout=60)
    return "nopapps.app.example.org"


@pytest.fixture
def xp_namespace(kube: KubeClient) -> Iterator[str]:
    name = f"xp-{uuid.uuid4().hex[:8]}"
    kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFoundError):
        kube.delete(NAMESPACES, name)


# -- Crossplane and its Functions ----------------------------------------------------------


def test_crossplane_serves_xrds_and_functions(kube: KubeClient) -> None:
    for name in (
        "compositeresourcedefinitions.apiextensions.crossplane.io",
        "compositions.apiextensions.crossplane.io",
        "functions.pkg.crossplane.io",
        "functionrevisions.pkg.crossplane.io",
    ):
        crd = kube.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        assert condition(crd, "Established").get("status") == "True", name
    kube.list(XRDS)
    names = {f["metadata"]["name"] for f in kube.list(FUNCTIONS)[0]}
    assert names >= {f.name for f in DEFAULT_FUNCTIONS}


@pytest.mark.parametrize("name", [f.name for f in DEFAULT_FUNCTIONS])
def test_each_function_is_healthy_with_its_endpoint_in_the_active_revision(
    crossplane_provider: Crossplane, kube: KubeClient, name: str
) -> None:
    function = kube.get(FUNCTIONS, name)
    assert condition(function, "Healthy").get("status") == "True"
    assert condition(function, "Installed").get("status") == "True"
    assert function["spec"]["package"] == crossplane_provider.packages[name]
    assert function["spec"]["package"].startswith(f"{crossplane_provider.registry}/{name}:")
    revisions, _ = kube.list(FUNCTION_REVISIONS, label_selector=f"pkg.crossplane.io/package={name}")
    [active] = [r for r in revisions if r["spec"]["desiredState"] == "Active"]
    # Crossplane pulled the package from the local registry ...
    assert active["status"]["resolvedImage"] == crossplane_provider.packages[name]
    assert active["status"]["capabilities"] == ["composition"]
    # ... and calls the server the runtime started, with the certificate it made.
    assert active["status"]["endpoint"] == crossplane_provider.endpoints[name]
    assert active["status"]["endpoint"].startswith("127.0.0.1:")
    assert active["status"]["tlsServerSecretName"] == f"{name}-tls-server"
    assert condition(active, "RuntimeHealthy").get("status") == "True"


# -- composing with the example function ---------------------------------------------------


def test_a_claim_composed_by_the_example_function_becomes_ready(
    kube: KubeClient, nop_api: str, xp_namespace: str
) -> None:
    crd = kube.get(CUSTOM_RESOURCE_DEFINITIONS, nop_api)
    # The bindable label on the XRD reaches the claim CRD Crossplane generates.
    assert crd["metadata"]["labels"][BINDABLE] == "true"
    claim = {
        "apiVersion": "nop.example.org/v1alpha1",
        "kind": "NopResource",
        "metadata": {"name": "my-resource", "namespace": xp_namespace},
        "spec": {"coolField": "Synchronized resource", "compositeDeletePolicy": "Foreground"},
    }
    kube.create(NOP_CLAIMS, claim)

    # Crossplane called function-nop over mutual TLS and composed what it returned.
    def ready() -> dict[str, Any]:
        got = kube.get(NOP_CLAIMS, "my-resource", xp_namespace)
        assert condition(got, "Ready").get("status") == "True", got.get("status")
        return got

    got = eventually(ready, what="the claim to be Ready=True", timeout=90)
    assert condition(got, "Synced").get("status") == "True"
    xr = got["spec"]["resourceRef"]["name"]
    [config_map] = [
        cm
        for cm in kube.list(CONFIG_MAPS, xp_namespace)[0]
        if cm["metadata"].get("labels", {}).get("crossplane.io/composite") == xr
    ]
    assert config_map["data"] == {"coolField": "Synchronized resource"}

    # Foreground: the XR and what it composed go first (the garbage collector's work), then
    # the claim.
    kube.delete(NOP_CLAIMS, "my-resource", xp_namespace)

    def all_gone() -> bool:
        for res, name, ns in (
            (NOP_CLAIMS, "my-resource", xp_namespace),
            (NOP_XRS, xr, None),
            (CONFIG_MAPS, config_map["metadata"]["name"], xp_namespace),
        ):
            try:
                kube.get(res, name, ns)
                return False
            except NotFoundError:
                pass
        return True

    eventually(all_gone, what="the claim, its XR and its ConfigMap to be gone", timeout=90)


def test_a_namespaced_xr_composed_by_the_example_function_becomes_ready(
    kube: KubeClient, nop_app_api: str, xp_namespace: str
) -> None:
    crd = kube.get(CUSTOM_RESOURCE_DEFINITIONS, nop_app_api)
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["metadata"]["labels"][BINDABLE] == "true"
    app = load(EXAMPLES / "namespaced" / "nopapp.yaml")
    app["metadata"]["namespace"] = xp_namespace
    kube.create(NOP_APPS, app)

    def ready() -> dict[str, Any]:
        got = kube.get(NOP_APPS, "my-app", xp_namespace)
        assert condition(got, "Ready").get("status") == "True", got.get("status")
        return got

    eventually(ready, what="the NopApp to be Ready=True", timeout=90)
    [config_map] = [
        cm
        for cm in kube.list(CONFIG_MAPS, xp_namespace)[0]
        if cm["metadata"].get("labels", {}).get("crossplane.io/composite") == "my-app"
    ]
    assert config_map["data"] == {"coolField": "Synchronized app"}


def test_a_new_revision_of_a_function_gets_its_endpoint_too(
    crossplane_provider: Crossplane, kube: KubeClient, crossplane: Path
) -> None:
    # The binder stage: no other test composes with it.
    name = "function-connector-binder"
    old = crossplane_provider.packages[name]
    new = f"{old.rpartition(':')[0]}:v0.0.0-new-revision"
    xpkg = crossplane_provider.dir / "packages" / f"{name}.xpkg"
    subprocess.run(
        [str(crossplane), "xpkg", "push", "-f", str(xpkg), new],
        check=True,
        capture_output=True,
        timeout=120,
    )

    kube.patch(FUNCTIONS, name, None, {"spec": {"package": new}})
    try:

        def served() -> bool:
            revisions, _ = kube.list(
                FUNCTION_REVISIONS, label_selector=f"pkg.crossplane.io/package={name}"
            )
            [active] = [r for r in revisions if r["spec"]["desiredState"] == "Active"]
            assert active["spec"]["image"] == new, active["spec"]
            assert active["status"].get("endpoint") == crossplane_provider.endpoints[name]
            function = kube.get(FUNCTIONS, name)
            return condition(function, "Healthy").get("status") == "True"

        eventually(served, what=f"the new revision of {name} to be served", timeout=90)
    finally:
        kube.patch(FUNCTIONS, name, None, {"spec": {"package": old}})


# -- the CLI -------------------------------------------------------------------------------


def test_cli_up_crossplane_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    directory = tmp_path / "clusters"
    up = subprocess.run(
        [str(CLI), "clusters", "up", "--dir", str(directory), "--detach", "--crossplane"],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((directory / "clusters.json").read_text())
        pids = [state["supervisor_pid"], *state["crossplane"]["pids"].values()] + [
            pid for info in state["clusters"].values() for pid in info["pids"].values()
        ]
        assert set(state["crossplane"]["pids"]) == {
            "crossplane",
            "registry",
            *(f.name for f in DEFAULT_FUNCTIONS),
        }
        assert "function-nop" in up.stdout
        provider = Cluster("provider", directory)
        with provider.kube_client(kubeconfig=directory / "provider.kubeconfig") as kube:
            for function in DEFAULT_FUNCTIONS:
                got = kube.get(FUNCTIONS, function.name)
                assert condition(got, "Healthy").get("status") == "True"
            kube.list(XRDS)
        # A namespace deleted in either cluster goes away.
        for name in ("consumer", "provider"):
            cluster = Cluster(name, directory)
            with cluster.kube_client(kubeconfig=directory / f"{name}.kubeconfig") as kube:
                kube.create(NAMESPACES, {"metadata": {"name": "doomed"}})
                kube.create(CONFIG_MAPS, {"metadata": {"name": "c", "namespace": "doomed"}})
                kube.delete(NAMESPACES, "doomed")

                def gone(kube: KubeClient = kube) -> bool:
                    try:
                        kube.get(NAMESPACES, "doomed")
                    except NotFoundError:
                        return True
                    return False

                eventually(gone, what=f"namespace doomed to be gone in {name}", timeout=60)
    finally:
        down = subprocess.run(
            [str(CLI), "clusters", "down", "--dir", str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not (directory / "provider-crossplane").exists()
    assert not (directory / "clusters.json").exists()
