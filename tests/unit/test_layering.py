"""The layering rules, checked on every import statement of the project's own code.

Layers, lowest first (docs/architecture.md draws them):

    0  functions.common                 vocabulary shared by the stages
    1  functions.<stage>.types          the stages' data contracts
    2  functions.<stage> (logic)        pure stage logic
    3  functions.adapters, .proto       what every stage's adapters share: descriptors, codec
    4  functions.<stage>.fn, .grpc_service   a stage's adapters
    5  connector.kube, stages client,   the client layer and the leaf modules of the product
       server, helm, shipped, logs
    6  connector.runtime                informers, work queues, controller base, Events, leases
    7  connector.controllers            the reconcilers
    8  connector.manager, envtest       what assembles controllers; the local clusters
    9  connector.install                installing into clusters (uses the manager's naming)
   10  connector.cli                    the command line

An import may only point to a lower layer or stay inside its own unit (a package such as
``connector.kube`` or a stage). On top of that: stage logic imports only the standard
library; only ``connector.kube`` (and the local-cluster tooling ``connector.envtest``) imports
a Kubernetes client or an HTTP library; and no two modules import each other, directly or in
a circle, even through imports deferred into functions.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("binder", "crd_puller", "object_syncer")
#: Modules of a stage that are adapters around its logic, not logic.
ADAPTER_MODULES = ("fn", "grpc_service")
#: Only these units may talk to Kubernetes or HTTP directly.
CLIENT_LIBRARIES = ("kubernetes", "urllib3", "requests", "http.client")
CLIENT_UNITS = ("connector.kube", "connector.envtest")
#: A module longer than this needs a reason at its top (a docstring line "Long because ...").
MAX_LINES = 500
UNKNOWN = 99


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def unit(self) -> str:
        parts = self.name.split(".")
        if parts[0] == "functions" and len(parts) > 1 and parts[1] in STAGES:
            return ".".join(parts[:2])
        return ".".join(parts[:2]) if len(parts) > 1 else parts[0]

    @property
    def layer(self) -> int:
        return layer_of(self.name)


def layer_of(name: str) -> int:
    parts = name.split(".")
    if parts[0] == "functions":
        if len(parts) == 1 or parts[1] == "common":
            return 0
        if parts[1] in STAGES:
            leaf = parts[2] if len(parts) > 2 else ""
            if leaf == "types":
                return 1
            return 4 if leaf in ADAPTER_MODULES else 2
        return 3  # functions.proto, functions.adapters
    second = parts[1] if len(parts) > 1 else ""
    return {
        "kube": 5,
        "stages": 5,
        "server": 5,
        "helm": 5,
        "shipped": 5,
        "logs": 5,
        "runtime": 6,
        "controllers": 7,
        "manager": 8,
        "envtest": 8,
        "install": 9,
        "cli": 10,
    }.get(second, 0 if not second else UNKNOWN)


def _own_modules() -> list[Module]:
    out = []
    for top in ("connector", "functions"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "gen" in rel.parts or "_chart" in rel.parts:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(Module(".".join(parts), path))
    return out


MODULES = _own_modules()
BY_NAME = {m.name: m for m in MODULES}


def _imports(module: Module) -> Iterator[str]:
    """Every module ``module`` imports, deferred imports included, relative ones resolved."""
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # ``from package import module`` imports the submodule too.
            for alias in node.names:
                if f"{base}.{alias.name}" in BY_NAME:
                    yield f"{base}.{alias.name}"


def _own(name: str) -> str | None:
    """The project module that ``name`` refers to (itself or its nearest package)."""
    while name:
        if name in BY_NAME:
            return name
        name = name.rpartition(".")[0]
    return None


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 40
    unknown = [m.name for m in MODULES if m.layer == UNKNOWN]
    assert not unknown, f"add these modules to a layer in {__file__}: {unknown}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_imports_point_down(module: Module) -> None:
    upward = []
    for imported in _imports(module):
        target = _own(imported)
        if target is None or target == module.name:
            continue
        other = BY_NAME[target]
        if other.unit != module.unit and other.layer >= module.layer:
            upward.append(f"{target} (layer {other.layer})")
    assert not upward, (
        f"{module.name} (layer {module.layer}) imports {upward}: imports must point to a "
        "lower layer (see the docstring of this test)"
    )


STAGE_LOGIC = [m for m in MODULES if m.name.startswith("functions.") and m.layer <= 2]


@pytest.mark.parametrize("module", STAGE_LOGIC, ids=lambda m: m.name)
def test_stage_logic_imports_only_the_standard_library(module: Module) -> None:
    foreign = sorted(
        {
            name
            for name in _imports(module)
            if name.split(".")[0] not in sys.stdlib_module_names and _own(name) is None
        }
    )
    assert not foreign, f"{module.name} is stage logic and imports {foreign}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_only_the_client_layer_talks_to_kubernetes(module: Module) -> None:
    if module.unit in CLIENT_UNITS:
        return
    bad = sorted(
        {
            name
            for name in _imports(module)
            if any(name == lib or name.startswith(lib + ".") for lib in CLIENT_LIBRARIES)
        }
    )
    assert not bad, f"{module.name} imports {bad}: only {CLIENT_UNITS} may"


def test_there_is_no_import_circle() -> None:
    graph: dict[str, set[str]] = {m.name: set() for m in MODULES}
    for m in MODULES:
        for imported in _imports(m):
            target = _own(imported)
            # A package's __init__ re-exporting its modules is not a circle with them.
            if target and target != m.name and not m.name.startswith(target + "."):
                graph[m.name].add(target)
    circles = _strongly_connected(graph)
    assert not circles, f"import circles: {circles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_long_modules_say_why_at_their_top(module: Module) -> None:
    text = module.path.read_text()
    lines = text.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "Long because" in doc, (
        f"{module.name} has {lines} lines (> {MAX_LINES}): split it by concern, or say at the "
        "top of its docstring why it is one module ('Long because ...')"
    )
