"""`labelspace train --out RUN` never mixes two runs (issue 10, item 2), checked through a real subprocess.

An existing run needs ``--resume`` (continue) or ``--overwrite`` (clear it first); a non-empty folder
that is not a run needs ``--overwrite`` too. Before this, a second ``train --out RUN`` replaced
``model/`` silently, kept the old ``checkpoints/`` and appended to ``train_log.jsonl``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.models.testing import tiny_model_folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("runs")
    save(demo("train").subset(range(32)), folder / "train.jsonl")
    return tiny_model_folder(folder / "tiny"), folder / "train.jsonl"


def train(setup: tuple[Path, Path], out: Path, *flags: str) -> subprocess.CompletedProcess:
    tiny, data = setup
    command = [sys.executable, "-m", "labelspace.cli", "train", "--model", str(tiny), "--train", str(data)]
    command += ["--out", str(out), "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "16", "--quiet"]
    return subprocess.run(command + list(flags), capture_output=True, text=True, timeout=300)


def test_an_existing_run_needs_resume_or_overwrite(setup, tmp_path):
    out = tmp_path / "run"
    assert train(setup, out).returncode == 0
    weights = (out / "model" / "model.safetensors").read_bytes()
    log = (out / "train_log.jsonl").read_text()
    again = train(setup, out, "--lr", "0.5")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr == (
        f"labelspace: error: --out {out} already holds a run: "
        "pass --resume to continue it or --overwrite to replace it\n"
    )
    assert (out / "model" / "model.safetensors").read_bytes() == weights  # nothing was touched
    assert (out / "train_log.jsonl").read_text() == log

    stale = out / "checkpoints" / "checkpoint-999"
    stale.mkdir(parents=True)
    replaced = train(setup, out, "--overwrite", "--lr", "0.5")
    assert replaced.returncode == 0, replaced.stderr
    assert not stale.exists()  # the old run was cleared, not merged
    assert (out / "train_log.jsonl").read_text().count('"step": 2,') == 1
    assert (out / "model" / "model.safetensors").read_bytes() != weights


def test_a_non_empty_folder_that_is_not_a_run_needs_overwrite(setup, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.txt").write_text("mine")
    refused = train(setup, out)
    assert refused.returncode == 2 and "holds files that are not a labelspace run" in refused.stderr
    assert (out / "thesis.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--resume", "--overwrite"), "give one of them"),
        (("--resume",), "holds no run to continue"),
    ],
)
def test_resume_and_overwrite_conflicts_are_one_line(setup, tmp_path, flags, message):
    result = train(setup, tmp_path / "empty", *flags)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


def test_overwrite_never_deletes_an_input_inside_the_run_folder(setup, tmp_path):
    out = tmp_path / "run"
    assert train(setup, out).returncode == 0
    inside = out / "train-copy.jsonl"
    inside.write_bytes(setup[1].read_bytes())
    tiny, _ = setup
    command = [sys.executable, "-m", "labelspace.cli", "train", "--model", str(tiny), "--train", str(inside)]
    result = subprocess.run(
        [*command, "--out", str(out), "--overwrite", "--max-steps", "1", "--quiet"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "--overwrite would delete --train" in result.stderr
    assert inside.is_file() and (out / "model").is_dir()
