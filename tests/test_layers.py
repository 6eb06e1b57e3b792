"""The module graph keeps DESIGN.md's layer order: no upward import (not even one inside a
function), no cycle, a table for every named choice, and short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vaelab"

# DESIGN.md, "The layers", lowest first; modules of one layer may import each other (no cycles).
LAYERS = [
    ["errors"],
    ["config", "device"],
    ["data"],
    ["models"],
    ["objectives", "distributed", "runfolder"],
    ["training"],
    ["evaluation"],
    ["exploration"],
    ["plots"],
    ["workflows"],
    ["cli", "__main__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in SRC.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every vaelab module that `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaelab"):
            names = {f"{node.module}.{a.name}" for a in node.names}
            found |= names
            if not names <= MODULES and node.module != "vaelab":  # `from vaelab.x import y`
                found.add(node.module)  # needs x itself unless every y is a submodule of x
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vaelab")}
    return found & MODULES


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYER[parts[1]] if len(parts) > 1 else len(LAYERS)  # `vaelab` itself: the top


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in SRC.rglob("*.py")}


def test_every_module_has_a_layer() -> None:
    tops = {module_name(p).split(".")[1] for p in SRC.rglob("*.py") if p != SRC / "__init__.py"}
    assert tops <= set(LAYER), f"modules without a layer: {tops - set(LAYER)}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = [f"{m} -> {d}" for m, deps in graph().items() if m.count(".") or m == "vaelab"
              for d in deps if layer(d) > layer(m)]
    assert not upward


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in edges.get(m, ()):
            d = d if d in edges else d.rsplit(".", 1)[0]
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(d):], d]))
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_a_detected_upward_import_would_fail(tmp_path: Path) -> None:
    """The checks above read real import statements (a guard against a vacuous scan)."""
    assert "vaelab.training" in graph()["vaelab.workflows.run"]
    assert "vaelab.models" in graph()["vaelab.training"]


def test_importing_models_does_not_import_training() -> None:
    code = ("import sys, vaelab.models; "
            "print(' '.join(m for m in sys.modules if m.startswith('vaelab')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "vaelab.models" in loaded
    assert not {"vaelab.training", "vaelab.runfolder", "vaelab.plots",
                "vaelab.workflows"} & set(loaded)


def test_named_choices_have_one_table_each() -> None:
    from vaelab import config
    from vaelab.models.likelihoods import LIKELIHOODS
    from vaelab.objectives import OBJECTIVES

    assert tuple(LIKELIHOODS) == config.LIKELIHOOD_NAMES
    assert tuple(OBJECTIVES) == config.OBJECTIVE_NAMES


def test_no_function_is_longer_than_80_lines() -> None:
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{module_name(path)}.{node.name}: {lines} lines")
    assert not long
