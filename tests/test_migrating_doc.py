"""docs/migrating.md: every Python block runs (the blocks of a section in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"


def sections() -> dict[str, list[str]]:
    """Section title -> its ```python blocks, in order."""
    found: dict[str, list[str]] = {}
    title = None
    for part in re.split(r"^(## .+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE):
        if part.startswith("## "):
            title = part[3:].strip()
        elif title is not None:
            found[title] = re.findall(r"^```python\n(.*?)^```", part, flags=re.MULTILINE | re.DOTALL)
    return found


def test_every_section_has_a_before_and_an_after_block():
    found = sections()
    assert len(found) == 4
    assert all(len(blocks) >= 2 for blocks in found.values()), {title: len(b) for title, b in found.items()}


@pytest.mark.parametrize("title", list(sections()))
def test_the_section_runs(title, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "migrating_doc"}
    for number, block in enumerate(sections()[title]):
        code = compile(block, f"{DOC.name}[{title}][block {number}]", "exec")
        exec(code, namespace)  # noqa: S102 - the doc's own snippets
