"""No module of labelspace uses another module's private (``_name``) helpers: what is shared gets a public name."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "labelspace"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_module(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path, src: Path = SRC) -> list[str]:
    """``file:line: what`` for each private name ``path`` (under ``src``) takes from another labelspace module."""
    current, is_package = module_name(path, src), path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    module_aliases: dict[str, str] = {}  # local name -> labelspace module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = imported_module(node, current, is_package)
            if source.split(".")[0] != "labelspace" or source == current:
                continue
            for alias in node.names:
                if is_private(alias.name):
                    found.append(f"{path.relative_to(src)}:{node.lineno}: from {source} import {alias.name}")
                module_aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "labelspace" and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and is_private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
        ):
            found.append(f"{path.relative_to(src)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_checker_sees_private_imports_and_attributes(tmp_path):
    folder = tmp_path / "labelspace" / "data"
    folder.mkdir(parents=True)
    probe = folder / "probe.py"
    probe.write_text(
        "from labelspace.data.readers import _texts, load\n"
        "from .tables import _decode\n"
        "from . import tables as t\n"
        "from .probe import _self_is_fine\n"
        "t._column_of_byte(b'', 0, 'csv', ',')\n"
        "t.__name__\n",
        encoding="utf-8",
    )
    assert private_uses(probe, src=tmp_path) == [
        "labelspace/data/probe.py:1: from labelspace.data.readers import _texts",
        "labelspace/data/probe.py:2: from labelspace.data.tables import _decode",
        "labelspace/data/probe.py:5: t._column_of_byte",
    ]


def test_no_module_imports_a_private_name_from_another():
    found = [use for path in sorted(PACKAGE.rglob("*.py")) for use in private_uses(path)]
    assert found == [], "private helpers used across modules (give them a public name):\n" + "\n".join(found)
