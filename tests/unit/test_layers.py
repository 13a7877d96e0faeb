"""The package's parts import only the parts below them, and no module imports itself round.

docs/ARCHITECTURE.md draws the layers; this reads every ``import`` of the package
(also those inside functions and under ``TYPE_CHECKING``) and holds them to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "orac_node"

RANK = {
    "errors": 0,
    "wire": 1,
    "config": 2,
    "models": 2,
    "audio": 3,
    "ingest": 4,
    "decode": 5,
    "mqtt": 6,
    "jobs": 6,
    "client": 7,
    "consumers": 7,
    "ops": 8,
    "console": 8,
    "pipeline": 9,
    "bench": 9,
    "homeassistant": 10,
    "node": 11,
    "cli": 12,
}
"""Layers, bottom first: a part may use parts of a lower rank only (same rank: neither)."""
STANDALONE = {"__init__", "bootstrap", "whisperbuild"}
"""Machine setup that runs before the package's dependencies are in place (the standard
library only): they import nothing of the package; any part may import them."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[tuple[str, ...]]:
    """Every orac_node import of ``path``: the dotted names it could mean, in order.

    ``from orac_node.pipeline import messages`` means the module
    ``orac_node.pipeline.messages`` when there is one, else a name that the
    package ``orac_node.pipeline`` defines.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name,) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.update((f"{base}.{alias.name}", base) for alias in node.names)
    return {names for names in found if names[-1].split(".")[0] == "orac_node"}


def _modules() -> dict[str, set[str]]:
    imports = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}
    return {
        name: {next(n for n in names if n in imports) for names in found}
        for name, found in imports.items()
    }


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {_part(name) for name in _modules()}
    assert parts - STANDALONE == set(RANK)


def test_parts_import_only_the_layers_below_them() -> None:
    wrong = []
    for module, targets in _modules().items():
        part = _part(module)
        for target in targets:
            other = _part(target)
            if (
                other == part
                or other == "__init__"
                or (other in STANDALONE and part not in STANDALONE)
            ):
                continue
            if part in STANDALONE or RANK[other] >= RANK[part]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_module_imports_itself_round() -> None:
    graph = _modules()
    cycles = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(" -> ".join([*path[path.index(module) :], module]))
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            if target != module:
                visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []
