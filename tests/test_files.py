"""labelspace.files: every writer gives files the umask's mode and leaves no temporary file; user text
files that are not UTF-8 are one line naming the file (issue 10, items 5 and 9)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from labelspace.data import LabelSet, save
from labelspace.data.builtin import demo
from labelspace.files import atomic_write, read_text
from labelspace.models.heads import ClassificationHead


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "tsv", "parquet"])
def test_data_files_are_written_0644_under_umask_022(umask_022, tmp_path, suffix):
    target = tmp_path / f"train.{suffix}"
    save(demo("dev").subset(range(5)), target)
    assert mode(target) == 0o644  # mkstemp alone gives 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_label_sets_and_heads_are_written_0644_under_umask_022(umask_022, tmp_path):
    LabelSet(["a", "b"]).save(tmp_path / "labels.json")
    ClassificationHead(4, 2).save(tmp_path / "head")
    for path in (
        tmp_path / "labels.json",
        tmp_path / "head" / "head.safetensors",
        tmp_path / "head" / "head_config.json",
    ):
        assert mode(path) == 0o644, path  # safetensors alone writes 0600
    head = ClassificationHead(4, 2)
    head.save(tmp_path / "head")
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            head.state_dict().values(), ClassificationHead.load(tmp_path / "head").state_dict().values(), strict=True
        )
    )
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["head.safetensors", "head_config.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("old")

    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_text_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("joy\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels.txt:2: byte 0xe9 at byte 4 of the line is not valid UTF-8"):
        read_text(path)
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfjoy\n")
    assert read_text(bom) == "joy\n"
    with pytest.raises(FileNotFoundError, match="missing.txt: file not found"):
        read_text(tmp_path / "missing.txt")


def test_latin1_labels_file_and_yaml_config_are_one_line(run_cli, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("joy\ncaf\xe9\n".encode("latin-1"))
    data = tmp_path / "d.tsv"
    data.write_text("hello\t0\tx1\n")
    code, _, stderr = run_cli("data", "check", str(data), "--labels-file", str(labels))
    assert code == 2 and stderr.count("\n") == 1 and f"{labels}:2: byte 0xe9" in stderr
    config = tmp_path / "run.yaml"
    config.write_bytes("train: caf\xe9.tsv\n".encode("latin-1"))
    code, _, stderr = run_cli("train", "--config", str(config))
    assert code == 2 and stderr.count("\n") == 1 and f"{config}:1: byte 0xe9" in stderr
