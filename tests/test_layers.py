"""The map in docs/architecture.md holds: no module imports from a layer above its own,
no two packages of one layer import each other, and there is no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "camtrace"

# docs/architecture.md, "Layers": each imports only its own package and the layers below
LAYERS = {
    "errors": -1,
    "io": 0,
    "_version": 0,
    "hardware": 0,
    "schema": 0,
    "registry": 0,
    "processes": 0,
    "data": 1,
    "models": 2,
    "attacks": 3,
    "training": 3,
    "evaluation": 4,
    "defenses": 4,
    "workflows": 5,
    "web": 6,
    "cli": 7,
    "__init__": 8,  # the lazy public API over everything
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> set[str]:
    """camtrace modules that ``name`` imports at run time (lazy imports in functions count;
    imports under ``if TYPE_CHECKING:`` do not)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != name}


def top(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_package_has_a_layer() -> None:
    assert {top(m) for m in MODULES} - {"configs"} <= set(LAYERS)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if top(m) != "configs"))
def test_no_import_from_a_layer_above_or_beside(name: str) -> None:
    mine = top(name)
    for other in imports_of(name):
        theirs = top(other)
        if theirs in (mine, "configs"):
            continue
        assert LAYERS[theirs] < LAYERS[mine], (
            f"{name} (layer {mine}) imports {other} (layer {theirs}): "
            "see docs/architecture.md, Layers"
        )


def test_no_import_cycle() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])


def test_attacks_know_a_detector_only_as_a_module() -> None:
    """docs/architecture.md: outside generative/, attacks import no model class, registry or
    checkpoint, only eval_mode, and of the data layer only the codec's JPEG."""
    allowed = {"camtrace.models.inference", "camtrace.data.codec"}
    for name in MODULES:
        if not name.startswith("camtrace.attacks") or name.startswith(
            "camtrace.attacks.generative"
        ):
            continue
        below = {m for m in imports_of(name) if top(m) in ("models", "data", "training")}
        assert below <= allowed, f"{name} imports {sorted(below - allowed)}"
