"""The import graph of src/labelspace follows the layers of docs/architecture.md.

Read with `ast` (nothing is imported): every ``import`` of a labelspace module, at module top or
inside a function, must point to the importer's own layer or a lower one. Imports inside
functions are refused altogether (they are how upward imports and cycles hide), except the lazy
``__getattr__`` of a package's ``__init__`` that keeps ``import labelspace`` cheap and the
deprecated aliases listed below, which go away in the next release.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "labelspace"

# Lowest first; a module's layer is the one of its longest matching prefix.
LAYERS: dict[str, int] = {
    "labelspace.data": 1,
    "labelspace.relations": 1,
    "labelspace.distances": 1,
    "labelspace.parallel": 1,
    "labelspace.errors": 1,
    "labelspace.files": 1,
    "labelspace.precision": 1,
    "labelspace.miners": 2,
    "labelspace.samplers": 2,
    "labelspace.losses": 2,
    "labelspace.models": 3,
    "labelspace.objectives": 3,
    "labelspace.evaluation": 3,
    "labelspace.training": 4,
    "labelspace.inference": 4,
    "labelspace.recipes": 4,
    "labelspace.serve": 5,
    "labelspace.integrations": 5,
    "labelspace.commands": 6,
    "labelspace.cli": 6,
    "labelspace.__main__": 6,
}

# (importing module, imported module prefix): why the rule does not apply.
DEPRECATED_ALIASES: dict[tuple[str, str], str] = {
    ("labelspace.losses", "labelspace.objectives"): "old import path of the model-level losses, one release",
    ("labelspace.losses.text", "labelspace.objectives"): "old import path of the cached / GIST losses, one release",
    ("labelspace.losses.model_loss", "labelspace.objectives"): "old module of the objectives, one release",
    ("labelspace.losses.text.cached", "labelspace.objectives"): "old module of the cached losses, one release",
    ("labelspace.losses.text.gist", "labelspace.objectives"): "old module of the GIST losses, one release",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    matches = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The labelspace modules an import statement names (``from labelspace import x`` names labelspace.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "labelspace"]
    module = node.module or ""
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([module] if module else []))
    if module.split(".")[0] != "labelspace":
        return []
    if module == "labelspace":
        return [f"labelspace.{alias.name}" for alias in node.names]
    return [module]


def in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def enclosing_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node.name
    return None


def import_edges() -> list[tuple[str, str, int, str | None]]:
    """(importer, imported, line, enclosing function or None) for every labelspace import in src/."""
    edges = []
    for path in sorted(SOURCE.rglob("*.py")):
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or in_type_checking(node, parents):
                continue
            for imported in imported_modules(node, importer, path.name == "__init__.py"):
                edges.append((importer, imported, node.lineno, enclosing_function(node, parents)))
    return edges


def allowed_alias(importer: str, imported: str) -> bool:
    return any(
        importer == source and (imported == target or imported.startswith(target + "."))
        for source, target in DEPRECATED_ALIASES
    )


def test_every_module_has_a_layer() -> None:
    missing = sorted({importer for importer, *_ in import_edges() if importer != "labelspace"} - {""})
    missing = [name for name in missing if layer_of(name) is None]
    assert not missing, f"add these modules to LAYERS and docs/architecture.md: {missing}"


def test_imports_point_down() -> None:
    upward = []
    for importer, imported, line, _ in import_edges():
        if importer == "labelspace":  # the package root re-exports the public names lazily
            continue
        source, target = layer_of(importer), layer_of(imported)
        if source is None or target is None or target <= source or allowed_alias(importer, imported):
            continue
        upward.append(f"{importer}:{line} (layer {source}) imports {imported} (layer {target})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_imports_inside_functions() -> None:
    hidden = []
    for importer, imported, line, function in import_edges():
        if function is None or allowed_alias(importer, imported):
            continue
        if function == "__getattr__" and (SOURCE.parent / Path(*importer.split("."), "__init__.py")).exists():
            continue  # a package's lazy public names, to keep `import labelspace...` cheap
        hidden.append(f"{importer}:{line} imports {imported} inside {function}()")
    assert not hidden, "imports inside functions (move them to the top of the module):\n" + "\n".join(hidden)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from labelspace.training import trainer\n", "labelspace.training"),
        ("def f():\n    from labelspace.cli import app\n", "labelspace.cli"),
    ],
)
def test_the_checker_sees_upward_imports(tmp_path: Path, source: str, expected: str) -> None:
    """The checker itself: an upward import in a layer-2 module is reported, also inside a function."""
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
    imported = imported_modules(node, "labelspace.losses.base", is_package=False)
    assert imported == [expected]
    assert layer_of(imported[0]) > layer_of("labelspace.losses.base")


def test_relative_imports_resolve() -> None:
    node = ast.parse("from ..relations import Relation\n").body[0]
    assert imported_modules(node, "labelspace.losses.base", is_package=False) == ["labelspace.relations"]
    node = ast.parse("from . import base\n").body[0]
    assert imported_modules(node, "labelspace.miners", is_package=True) == ["labelspace.miners"]
