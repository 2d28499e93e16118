"""Issue 10 items 1, 6 and 7: resume refuses another run's data; Ctrl-C says how to resume; bugs keep their traceback.

CLI items run `labelspace` in a real subprocess.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from labelspace.data import LabeledDataset, save
from labelspace.data.builtin import demo
from labelspace.models.testing import tiny_model_folder


def labelspace(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labelspace.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> dict[str, Path]:
    """A run of 4 steps with checkpoints every 2 steps, and the files to resume it with."""
    folder = tmp_path_factory.mktemp("resume")
    tiny = tiny_model_folder(folder / "tiny")
    data = demo("train").subset(range(32))
    save(data, folder / "train.jsonl")
    renamed = [[f"renamed-{name}" for name in data.label_names(i)] for i in range(len(data))]
    save(LabeledDataset.from_label_names(data.texts, renamed), folder / "renamed.jsonl")
    save(data.subset(range(31)), folder / "shorter.jsonl")
    (folder / "run.yaml").write_text(yaml.safe_dump({"training": {"save_steps": 2}}))
    run = folder / "run"
    result = labelspace(*common(tiny, folder / "train.jsonl", run, folder / "run.yaml"), "--max-steps", "4")
    assert result.returncode == 0, result.stderr
    return {"folder": folder, "tiny": tiny, "run": run}


def common(tiny: Path, train: Path, run: Path, config: Path) -> list[str]:
    return ["train", "--config", str(config), "--model", str(tiny), "--train", str(train), "--out", str(run),
            "--batch-size", "8", "--max-seq-length", "16", "--quiet"]  # fmt: skip


@pytest.mark.parametrize(
    ("data_file", "extra", "expected"),
    [
        ("renamed.jsonl", [], "other labels"),
        ("shorter.jsonl", [], "other training data (train: 32 rows, hash"),
        ("train.jsonl", ["--loss", "ntxent+bce"], "other losses"),
        ("train.jsonl", ["--pooling", "cls"], "other model (pooling: mean then, cls now)"),
    ],
)
def test_resume_refuses_a_run_that_differs(trained_run, data_file, extra, expected):
    folder, run = trained_run["folder"], trained_run["run"]
    weights = (run / "model" / "model.safetensors").read_bytes()
    result = labelspace(
        *common(trained_run["tiny"], folder / data_file, run, folder / "run.yaml"), "--max-steps", "6", "--resume",
        *extra,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot resume" in result.stderr and expected in result.stderr
    assert "checkpoint-4" in result.stderr
    assert (run / "model" / "model.safetensors").read_bytes() == weights


def test_resume_with_the_same_run_continues(trained_run, tmp_path):
    folder = trained_run["folder"]
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(trained_run["run"]), str(copy)], check=True)
    result = labelspace(
        *common(trained_run["tiny"], folder / "train.jsonl", copy, folder / "run.yaml"), "--max-steps", "6", "--resume"
    )
    assert result.returncode == 0, result.stderr
    assert (copy / "checkpoints" / "checkpoint-6").is_dir()


def test_ctrl_c_says_how_to_resume(trained_run, tmp_path):
    folder = trained_run["folder"]
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"training": {"save_steps": 1}}))
    command = [
        sys.executable,
        "-m",
        "labelspace.cli",
        *common(trained_run["tiny"], folder / "train.jsonl", run, config),
    ]
    process = subprocess.Popen([*command, "--max-steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints").is_dir() or not any((run / "checkpoints").glob("checkpoint-*")):
            assert time.monotonic() < deadline and process.poll() is None, "no checkpoint appeared"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "labelspace: interrupted (resume with --resume)"
    assert "Traceback" not in stderr


def test_a_bug_shows_its_traceback_and_asks_for_a_report(run_cli, monkeypatch, tmp_path):
    import labelspace.data.check as check

    data = tmp_path / "d.jsonl"
    save(demo("dev").subset(range(4)), data)

    def broken(*args, **kwargs):
        return [][1]  # an IndexError where a check would raise ValueError: a bug

    monkeypatch.setattr(check, "describe", broken)
    code, _, stderr = run_cli("data", "check", str(data))
    assert code == 1
    assert "Traceback" in stderr and "IndexError" in stderr
    assert stderr.strip().splitlines()[-1].startswith("labelspace: internal error (IndexError): this is a bug")

    def numpy_bug(*args, **kwargs):
        return np.zeros(3).reshape(2, 2)  # a ValueError raised inside numpy, not by our checks

    monkeypatch.setattr(check, "describe", numpy_bug)
    code, _, stderr = run_cli("data", "check", str(data))
    assert code == 1 and "Traceback" in stderr and "internal error (ValueError)" in stderr


def test_our_own_checks_and_missing_files_stay_one_line(run_cli, tmp_path):
    code, _, stderr = run_cli("train", "--train", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r"))
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert "missing.jsonl" in stderr and "Errno" not in stderr
    code, _, stderr = run_cli("train", "--train", "x.jsonl", "--out", str(tmp_path / "r"), "--loss", "nope")
    assert (
        code == 2
        and stderr == "labelspace: error: unknown loss 'nope' in 'nope'; choose from " + stderr.split("choose from ")[1]
    )
