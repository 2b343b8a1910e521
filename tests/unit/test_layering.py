"""The layering rule: stages under functions/ never talk to a Kubernetes API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("kubernetes", "connector", "urllib3", "requests", "socket", "http.client")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


STAGE_FILES = sorted(
    p for p in (ROOT / "functions").rglob("*.py") if "gen" not in p.relative_to(ROOT).parts
)


def test_there_are_stage_modules_to_check() -> None:
    assert len(STAGE_FILES) >= 5


@pytest.mark.parametrize("path", STAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_stage_modules_import_no_kubernetes_client_or_network_library(path: Path) -> None:
    bad = [
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: functions/ must stay pure"


#: Only the client layer talks to Kubernetes; envtest runs the API servers and keeps its own.
CLIENT_LAYER = ("connector/kube/", "connector/envtest/")
CLIENT_LIBRARIES = ("kubernetes", "urllib3")
CONNECTOR_FILES = sorted(
    p
    for p in (ROOT / "connector").rglob("*.py")
    if not str(p.relative_to(ROOT)).startswith(CLIENT_LAYER)
)


@pytest.mark.parametrize("path", CONNECTOR_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_client_layer_imports_a_kubernetes_client(path: Path) -> None:
    bad = [
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in CLIENT_LIBRARIES)
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: only connector/kube/ may"


#: The connector's layers, lowest first: a module imports only from its own layer or below.
CONNECTOR_LAYERS = ("kube", "runtime", "controllers", "cli")


def _connector_modules() -> dict[str, Path]:
    modules = {}
    for path in (ROOT / "connector").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return CONNECTOR_LAYERS.index(parts[1]) if parts[1:2] and parts[1] in CONNECTOR_LAYERS else None


def test_connector_layers_import_only_downwards_and_without_cycles() -> None:
    modules = _connector_modules()
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    upward = [
        f"{name} imports {dep}"
        for name, deps in graph.items()
        for dep in deps
        if (mine := _layer(name)) is not None
        and (theirs := _layer(dep)) is not None
        and theirs > mine
    ]
    assert not upward, upward

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            name, path = stack.pop()
            for dep in graph[name]:
                if dep == start:
                    return [*path, start]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
        return None

    layered = [name for name in graph if _layer(name) is not None]
    cycles = [cycle for name in layered if (cycle := cycle_from(name)) is not None]
    assert not cycles, f"import cycles: {cycles}"
