"""Issue 12: `labelspace index build`, and model folders with no, a sound, or a damaged kNN index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.evaluation.thresholds import tune_thresholds
from labelspace.models import LabelspaceModel
from labelspace.models.scoring import INDEX_FILE, INDEX_METADATA_FILE
from labelspace.models.testing import tiny_model_folder

TRAIN_SIZE = 96


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "encoder")


@pytest.fixture(scope="module")
def saved_model(tiny, tmp_path_factory) -> Path:
    """A run folder whose model/ has a head over the demo labels and no index."""
    run = tmp_path_factory.mktemp("saved") / "run"
    LabelspaceModel.from_pretrained(tiny, labels=demo("train").label_set, seed=1).save(run / "model")
    return run


@pytest.fixture
def run(saved_model, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(saved_model, copy)
    return copy


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo")
    save(demo("train").subset(range(TRAIN_SIZE)), folder / "train.jsonl")
    save(demo("dev"), folder / "dev.jsonl")
    return folder / "train.jsonl", folder / "dev.jsonl"


def test_build_adds_an_index_and_the_model_keeps_its_head_mode(run_cli, run, demo_files):
    train, _ = demo_files
    before = LabelspaceModel.from_pretrained(run)
    texts = demo("dev").texts
    assert before.index is None and not (run / "model" / INDEX_FILE).exists()
    code, stdout, stderr = run_cli("index", "build", str(run), "--data", str(train), "--quiet")
    assert code == 0, stderr
    assert f"wrote a kNN index of {TRAIN_SIZE} examples (float16)" in stdout
    assert "scoring: head (no --dev data to choose on: the model keeps its scoring mode)" in stdout
    after = LabelspaceModel.from_pretrained(run)
    assert after.scoring.mode == "head" and len(after.index) == TRAIN_SIZE
    assert after.index.texts == demo("train").texts[:TRAIN_SIZE] and after.index.precision == "float16"
    np.testing.assert_allclose(  # the index holds the model's own embeddings of the data (float16)
        after.index.embeddings.float().numpy(), before.encode(after.index.texts), rtol=1e-3, atol=1e-3
    )
    np.testing.assert_array_equal(after.index.labels, demo("train").labels.to_dense()[:TRAIN_SIZE].astype(bool))
    np.testing.assert_allclose(after.predict_proba(texts), before.predict_proba(texts), atol=1e-6)  # same scores
    assert after.metadata["scoring"]["index"] == {"size": TRAIN_SIZE, "precision": "float16"}


def test_build_with_dev_sets_the_mode_and_retunes_the_thresholds_for_it(run_cli, run, demo_files):
    train, dev = demo_files
    code, stdout, stderr = run_cli(
        "index", "build", str(run / "model"), "--data", str(train), "--dev", str(dev), "--scoring", "knn",
        "--k", "5", "--precision", "float32", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    assert "scoring: knn: dev macro_f1" in stdout and "tuned" in stdout
    model = LabelspaceModel.from_pretrained(run)
    assert (model.scoring.mode, model.scoring.k, model.index.precision) == ("knn", 5, "float32")
    texts, truth = demo("dev").texts, demo("dev").labels.to_dense()
    knn = model.index.knn_probabilities(model.encode(texts), k=5)
    np.testing.assert_allclose(model.predict_proba(texts), knn, atol=1e-6)
    # The thresholds are those training would tune on these kNN scores (default settings, rare labels global).
    expected = tune_thresholds(truth, knn, objective="macro_f1", min_positives=5, fallback="global").thresholds
    np.testing.assert_allclose(model.thresholds, expected, atol=1e-6)
    assert model.metadata["thresholds"]["tuned_on"] == str(dev)
    assert model.metadata["scoring"]["mode"] == "knn" and model.metadata["scoring"]["dev"]["knn"] is not None


def test_build_with_dev_and_auto_records_the_mode_it_chose(run_cli, run, demo_files):
    train, dev = demo_files
    code, stdout, stderr = run_cli("index", "build", str(run), "--data", str(train), "--dev", str(dev), "--quiet")
    assert code == 0, stderr
    model = LabelspaceModel.from_pretrained(run)
    record = json.loads((run / "model" / "labelspace.json").read_text())["metadata"]["scoring"]
    assert record["requested"] == "auto" and record["mode"] == model.scoring.mode
    scores, ranked = record["dev"], ("head", "hybrid", "knn")  # ties go to the head, then the larger head weight
    best = max(scores[name] for name in ranked)
    assert record["mode"] == next(name for name in ranked if scores[name] == best)
    assert model.metadata["thresholds"]["tuned_on"] == str(dev)


def test_a_folder_without_an_index_keeps_working_in_head_mode(run_cli, run):
    code, stdout, stderr = run_cli("predict", str(run), "so happy today")
    assert code == 0, stderr
    model = LabelspaceModel.from_pretrained(run)
    scores = json.loads(stdout.splitlines()[0])["scores"]
    head = model.head_probabilities(model.encode(["so happy today"]))[0]
    np.testing.assert_allclose([scores[name] for name in model.label_set.names], head, atol=1e-5)


def test_a_damaged_index_is_one_line_naming_the_file_and_the_rebuild_command(run_cli, run, demo_files):
    train, _ = demo_files
    assert run_cli("index", "build", str(run), "--data", str(train), "--quiet")[0] == 0
    damaged = run / "model" / INDEX_FILE
    damaged.write_bytes(b"not a safetensors file at all")
    code, stdout, stderr = run_cli("predict", str(run), "so happy today")
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1 and str(damaged) in stderr and "labelspace index build" in stderr
    # The command the message names repairs it, saying what it replaces.
    code, _, stderr = run_cli("index", "build", str(run), "--data", str(train), "--quiet")
    assert code == 0 and "labelspace: warning: the old kNN index is replaced" in stderr
    assert run_cli("predict", str(run), "so happy today")[0] == 0
    assert len(LabelspaceModel.from_pretrained(run).index) == TRAIN_SIZE


def test_a_missing_index_file_of_a_knn_model_is_rebuilt(run_cli, run, demo_files):
    train, dev = demo_files
    assert run_cli("index", "build", str(run), "--data", str(train), "--dev", str(dev), "--scoring", "knn")[0] == 0
    (run / "model" / INDEX_METADATA_FILE).unlink()
    code, _, stderr = run_cli("predict", str(run), "so happy today")
    assert code == 2 and INDEX_METADATA_FILE in stderr and len(stderr.splitlines()) == 1
    code, _, stderr = run_cli("index", "build", str(run), "--data", str(train), "--quiet")
    assert code == 0, stderr
    assert LabelspaceModel.from_pretrained(run).scoring.mode == "knn"  # no --dev: the mode stays


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--scoring", "best"], "--scoring: expected one of auto, head, knn, hybrid; got 'best'"),
        (["--precision", "float8"], "--precision: expected one of float16, float32; got 'float8'"),
        (["--scoring", "hybrid"], "--scoring hybrid tunes the head's weight on dev data: give --dev FILE"),
    ],
)
def test_bad_options_are_one_line_errors(run_cli, run, demo_files, options, message):
    code, stdout, stderr = run_cli("index", "build", str(run), "--data", str(demo_files[0]), *options)
    assert (code, stdout, stderr) == (2, "", f"labelspace: error: {message}\n")


def test_bad_data_and_folders_are_one_line_errors(run_cli, run, tiny, tmp_path):
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"text": "hi", "labels": ["no_such_label"]}])
    code, _, stderr = run_cli("index", "build", str(run), "--data", str(unknown), "--quiet")
    assert code == 2 and len(stderr.splitlines()) == 1 and str(unknown) in stderr and "no_such_label" in stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    code, _, stderr = run_cli("index", "build", str(run), "--data", str(empty), "--quiet")
    assert code == 2 and len(stderr.splitlines()) == 1 and str(empty) in stderr
    embedder = LabelspaceModel.from_pretrained(tiny).save(tmp_path / "embedder")
    labelled = write_jsonl(tmp_path / "ok.jsonl", [{"text": "hi", "labels": ["billing"]}])
    code, _, stderr = run_cli("index", "build", str(embedder), "--data", str(labelled), "--quiet")
    assert code == 2 and stderr.startswith(f"labelspace: error: {embedder} has no labels") and "Traceback" not in stderr
    assert not (embedder / INDEX_FILE).exists() and not (run / "model" / INDEX_FILE).exists()
