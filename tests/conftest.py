"""Shared fixtures: where GoEmotions lives, and the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def goemotions_folder() -> Path | None:
    """The GoEmotions folder (LABELSPACE_GOEMOTIONS_DIR, else ../shared beside the repo), or None."""
    candidates = [os.environ.get("LABELSPACE_GOEMOTIONS_DIR"), REPO.parent / "shared" / "data" / "goemotions"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.tsv").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def goemotions_dir() -> Path:
    folder = goemotions_folder()
    if folder is None:
        pytest.skip("GoEmotions not found: set LABELSPACE_GOEMOTIONS_DIR or put it in ../shared/data/goemotions")
    return folder


@pytest.fixture
def run_cli(capsys):
    """Run `labelspace ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from labelspace.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
