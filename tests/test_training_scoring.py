"""Issue 12: the scoring mode (head, knn, hybrid) chosen on dev by training, its record, and `labelspace train`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score as sklearn_f1

import labelspace.training.trainer as trainer_module
from labelspace.data import LabeledDataset, save
from labelspace.data.builtin import demo
from labelspace.evaluation import classification_report
from labelspace.evaluation.thresholds import tune_thresholds
from labelspace.models import LabelspaceModel
from labelspace.models.scoring import INDEX_FILE, INDEX_METADATA_FILE
from labelspace.models.testing import tiny_model_folder
from labelspace.training import Trainer, TrainingArguments
from labelspace.training.evaluation import FROZEN_BASELINE, select_candidate
from labelspace.training.scoring import HYBRID_HEAD_WEIGHTS, describe_scoring, tune_scoring

#: Dev texts of the hand-built neighbourhood; the first half carries label x, the second half y.
GROUPS = 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def neighbourhood(dimension: int, swapped: tuple[int, ...] = ()) -> tuple[LabeledDataset, LabeledDataset, dict]:
    """(train, dev, text -> embedding): dev text i lies on axis i; its two training neighbours lie at cosine 0.8
    (its own label) and 0.7 (the other label), so 2-NN similarity votes give its label 0.8 / 1.5 = 0.533 and the
    other 0.467; every other training text is orthogonal to it. For the texts in ``swapped`` the wrong label is
    the closer one."""
    vectors: dict[str, np.ndarray] = {}
    train_texts, train_labels, dev_texts, dev_labels = [], [], [], []
    for group in range(GROUPS):
        own, other = (["x"], ["y"]) if group < GROUPS // 2 else (["y"], ["x"])
        axis = np.zeros(dimension)
        axis[group] = 1.0
        dev_texts.append(f"dev {group}")
        dev_labels.append(own)
        vectors[f"dev {group}"] = axis
        near, far = (0.7, 0.8) if group in swapped else (0.8, 0.7)
        for name, labels, cosine, side in (("same", own, near, GROUPS), ("other", other, far, GROUPS + 1)):
            side_axis = np.zeros(dimension)
            side_axis[side] = 1.0
            text = f"train {group} {name}"
            vectors[text] = cosine * axis + np.sqrt(1 - cosine**2) * side_axis
            train_texts.append(text)
            train_labels.append(labels)
    train = LabeledDataset.from_label_names(train_texts, train_labels)
    dev = LabeledDataset.from_label_names(dev_texts, dev_labels, label_set=train.label_set)
    return train, dev, vectors


def scripted_model(tiny: Path, vectors: dict, *, head_right: bool) -> LabelspaceModel:
    """The tiny model with its embeddings taken from ``vectors`` and a head that is right (0.9 on the true label,
    0.1 on the other) or exactly wrong on every dev text."""
    model = LabelspaceModel.from_pretrained(tiny, labels=["x", "y"])

    def encode(texts, batch_size=32, show_progress_bar=None, **options):
        return np.stack([vectors[text] for text in texts]).astype(np.float32)

    def head_probabilities(embeddings):
        group = np.asarray(embeddings)[:, :GROUPS].argmax(axis=1)
        truth = np.stack([group < GROUPS // 2, group >= GROUPS // 2], axis=1)
        return np.where(truth if head_right else ~truth, 0.9, 0.1).astype(np.float32)

    model.encode = encode
    model.head_probabilities = head_probabilities
    return model


def test_auto_picks_knn_when_the_label_is_the_neighbourhood_and_the_head_is_wrong(tiny):
    model = LabelspaceModel.from_pretrained(tiny, labels=["x", "y"])
    train, dev, vectors = neighbourhood(model.encoder.dimension)
    model = scripted_model(tiny, vectors, head_right=False)
    record = tune_scoring(model, train, dev, k=2, precision="float32")
    assert (record["mode"], record["head_weight"], record["k"]) == ("knn", 0.0, 2)
    assert (model.scoring.mode, model.scoring.k) == ("knn", 2)
    # kNN ranks every dev text right: F1 1. The head is exactly wrong, and so is every mix with w >= 0.1
    # (0.8 w > 0.067 (1 - w)): the best cut then predicts every text, F1 = 2 * 10 / (10 + 20) per label.
    assert record["dev"]["knn"] == pytest.approx(1.0)
    assert record["dev"]["head"] == pytest.approx(2 / 3)
    assert record["dev"]["hybrid"] == pytest.approx(2 / 3)
    first = model.index.knn_probabilities(vectors["dev 0"][None, :], k=2)
    np.testing.assert_allclose(first, [[0.8 / 1.5, 0.7 / 1.5]], atol=1e-6)
    assert len(model.index) == 2 * GROUPS and model.index.texts == train.texts
    assert "knn has the best dev objective" in record["reason"]


def test_auto_keeps_the_head_when_it_is_perfect_and_ties_go_to_the_head(tiny):
    model = LabelspaceModel.from_pretrained(tiny, labels=["x", "y"])
    train, dev, vectors = neighbourhood(model.encoder.dimension, swapped=(0, GROUPS // 2))
    model = scripted_model(tiny, vectors, head_right=True)
    record = tune_scoring(model, train, dev, k=2, precision="float32")
    # kNN is wrong on one text of each label: the best cut gets 9 of 10 with one false positive, F1 0.9.
    assert record["dev"]["knn"] == pytest.approx(0.9)
    assert record["dev"]["head"] == pytest.approx(1.0)
    # w = 0.9 keeps the head's perfect order (0.81 + 0.047 > 0.09 + 0.053): a tie with the head, which wins it.
    assert (record["dev"]["hybrid"], record["dev"]["hybrid_head_weight"]) == (pytest.approx(1.0), 0.9)
    assert (record["mode"], record["head_weight"], model.scoring.mode) == ("head", 1.0, "head")
    assert "ties" in record["reason"]
    assert model.index is not None  # the index is attached all the same (similar() reads it)


def test_an_explicit_hybrid_tunes_its_head_weight(tiny):
    model = LabelspaceModel.from_pretrained(tiny, labels=["x", "y"])
    train, dev, vectors = neighbourhood(model.encoder.dimension, swapped=(0, GROUPS // 2))
    model = scripted_model(tiny, vectors, head_right=True)
    record = tune_scoring(model, train, dev, requested="hybrid", k=2)
    assert (record["mode"], record["head_weight"], record["requested"]) == ("hybrid", 0.9, "hybrid")
    assert (model.scoring.mode, model.scoring.head_weight) == ("hybrid", 0.9)
    assert describe_scoring(record) == (
        "scoring: hybrid (head weight 0.9): dev macro_f1 1.0000 vs head 1.0000, knn 0.9000 (hybrid was asked for)"
    )


def knn_votes(train_embeddings, labels, queries, k):
    """Similarity-weighted votes of the k most cosine-similar training texts, written out with numpy."""
    train_unit = train_embeddings / np.linalg.norm(train_embeddings, axis=1, keepdims=True)
    query_unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarities = query_unit @ train_unit.T
    nearest = np.argsort(-similarities, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(similarities, nearest, axis=1), 0, None)
    weights[weights.sum(axis=1) == 0] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkl->nl", weights, labels[nearest].astype(np.float64))


def test_the_record_equals_an_independent_recomputation(tiny):
    train, dev = demo("train").subset(range(96)), demo("dev")
    model = LabelspaceModel.from_pretrained(tiny, labels=train.label_set, seed=3)
    record = tune_scoring(model, train, dev, k=5, precision="float32")
    train_embeddings, dev_embeddings = model.encode(train.texts, batch_size=64), model.encode(dev.texts, batch_size=64)
    head = model.head.predict_proba(torch.from_numpy(dev_embeddings)).detach().numpy()
    knn = knn_votes(train_embeddings, train.labels.to_dense(), dev_embeddings, 5)
    truth = dev.labels.to_dense()
    present = truth.any(axis=0)  # sklearn's macro average over the labels dev holds

    def macro_f1(scores):
        thresholds = tune_thresholds(truth, scores).thresholds
        return sklearn_f1(truth[:, present], (scores >= thresholds)[:, present], average="macro", zero_division=0)

    assert present.all(), "the demo dev split holds every label"
    expected = {"head": macro_f1(head), "knn": macro_f1(knn)}
    mixes = [macro_f1(weight * head + (1 - weight) * knn) for weight in HYBRID_HEAD_WEIGHTS]
    expected["hybrid"] = max(mixes)
    for name, value in expected.items():
        assert record["dev"][name] == pytest.approx(value, abs=1e-9), name
    assert record["dev"]["hybrid_head_weight"] == HYBRID_HEAD_WEIGHTS[int(np.argmax(mixes))]
    ranked = ["head", "hybrid", "knn"]  # strictly better wins; ties go to the larger head weight
    best = max(expected.values())
    assert record["mode"] == next(name for name in ranked if expected[name] == pytest.approx(best, abs=1e-12))
    assert record["index"] == {"size": 96, "precision": "float32"} and record["objective"] == "macro_f1"


def test_a_model_without_a_head_can_only_use_knn(tiny):
    train, dev = demo("train").subset(range(48)), demo("dev")
    bare = LabelspaceModel.from_pretrained(tiny, labels=train.label_set)
    model = LabelspaceModel(bare.encoder, None, train.label_set)
    record = tune_scoring(model, train, dev, k=3)
    assert record["mode"] == "knn" and record["dev"]["head"] is None and record["dev"]["knn"] is not None
    with pytest.raises(ValueError, match="needs a classification head"):
        tune_scoring(model, train, dev, requested="hybrid")


def test_bad_requests_are_clear_errors(tiny):
    model = LabelspaceModel.from_pretrained(tiny, labels=["x", "y"])
    data = LabeledDataset.from_label_names(["a", "b"], [["x"], ["y"]])
    with pytest.raises(ValueError, match="scoring must be one of auto, head, knn, hybrid, got 'best'"):
        tune_scoring(model, data, data, requested="best")
    with pytest.raises(ValueError, match="tunes the head's weight on dev data"):
        tune_scoring(model, data, None, requested="hybrid")
    with pytest.raises(ValueError, match="scoring must be one of auto, head, knn, hybrid, got 'best'"):
        TrainingArguments(scoring="best")
    with pytest.raises(ValueError, match="tunes the head's weight on dev data"):  # before training, not after
        Trainer(model, data, args=TrainingArguments(scoring="hybrid", max_steps=1, show_progress_bar=False))


# ----------------------------------------------------------------------------- the Trainer's scoring step


def test_the_trainer_without_dev_data_ships_the_head_and_says_why(tiny):
    data = demo("train").subset(range(32))
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set)
    args = TrainingArguments(max_steps=1, batch_size=16, show_progress_bar=False)
    output = Trainer(model, data, args=args).train()
    assert output.scoring["mode"] == "head" and model.index is None
    assert output.scoring["reason"] == "no labelled dev data: auto means head."
    assert model.metadata["scoring"] == output.scoring


def test_when_the_frozen_baseline_ships_it_scores_with_its_head(tiny, tmp_path, monkeypatch):
    def baseline_wins(candidates, metric, greater_is_better=True):
        return {**select_candidate(candidates, metric, greater_is_better=greater_is_better), "shipped": FROZEN_BASELINE}

    monkeypatch.setattr(trainer_module, "select_candidate", baseline_wins)
    train, dev = demo("train").subset(range(48)), demo("dev")
    model = LabelspaceModel.from_pretrained(tiny, labels=train.label_set)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        batch_size=16,
        baseline_candidate=True,
        tune_thresholds=True,
        scoring="knn",  # a forced mode: the baseline (head only) does not compete
        show_progress_bar=False,
    )
    output = Trainer(model, train, eval_dataset=dev, args=args).train()
    assert output.selection is None and output.scoring["mode"] == "knn"
    model = LabelspaceModel.from_pretrained(tiny, labels=train.label_set)
    args = dataclasses.replace(args, output_dir=str(tmp_path / "auto"), scoring="auto")
    output = Trainer(model, train, eval_dataset=dev, args=args).train()
    assert output.selection["shipped"] == FROZEN_BASELINE
    # The index held the fine-tuned encoder's embeddings: it does not fit the baseline, which ships in head mode.
    assert (output.scoring["mode"], model.scoring.mode, model.index) == ("head", "head", None)
    assert output.scoring["fine_tuned"]["index"]["size"] == 48
    folder = tmp_path / "auto" / "model"
    assert not (folder / INDEX_FILE).exists() and not (folder / INDEX_METADATA_FILE).exists()
    saved = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert saved["scoring"] == output.scoring and saved["shipped"] == FROZEN_BASELINE
    assert LabelspaceModel.from_pretrained(folder).scoring.mode == "head"


# ----------------------------------------------------------------------------- labelspace train --scoring


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo")
    save(demo("train").subset(range(96)), folder / "train.jsonl")
    save(demo("dev"), folder / "dev.jsonl")
    return folder / "train.jsonl", folder / "dev.jsonl"


def train_run(run_cli, tiny, train, out, *extra):
    args = ["train", "--model", str(tiny), "--train", str(train), "--out", str(out), "--epochs", "1"]
    args += ["--batch-size", "16", "--max-seq-length", "32", "--quiet", *extra]
    return run_cli(*args)


def dev_macro_f1(model: LabelspaceModel) -> float:
    """Macro-F1 on the demo dev split of the model's own decisions (its mode, thresholds and rule)."""
    source = demo("dev").with_label_set(model.label_set)[0]  # columns in the model's label order
    decided = model.decide(model.predict_proba(source.texts))
    return classification_report(source.labels.to_dense(), decided.astype(int))["macro_f1"]


@pytest.mark.parametrize("scoring", ["auto", "knn"])
def test_labelspace_train_chooses_saves_and_reloads_the_scoring(run_cli, tiny, demo_files, tmp_path, scoring):
    train, dev = demo_files
    out = tmp_path / "run"
    code, stdout, stderr = train_run(run_cli, tiny, train, out, "--dev", str(dev), "--scoring", scoring)
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["scoring"]
    assert record["requested"] == scoring and record["index"]["size"] == 96
    assert describe_scoring(record) in stdout
    model = LabelspaceModel.from_pretrained(out)  # a run folder: its model/
    assert model.metadata["scoring"] == record
    assert model.scoring.to_dict() == {key: record[key] for key in ("mode", "head_weight", "k")}
    assert (out / "model" / INDEX_FILE).is_file() and model.index.texts == demo("train").texts[:96]
    # The reloaded model decides as the trained one did: its dev macro-F1 is the one metrics.json reports.
    assert dev_macro_f1(model) == pytest.approx(metrics["dev"]["tuned"]["macro_f1"], abs=1e-9)
    if scoring == "knn":
        assert model.scoring.mode == "knn" and "candidates" not in metrics  # the baseline does not compete
        embeddings = model.encode(demo("dev").texts)
        np.testing.assert_allclose(
            model.predict_proba(demo("dev").texts), model.index.knn_probabilities(embeddings, k=10), atol=1e-6
        )
    elif metrics.get("shipped") == "fine_tuned":
        assert metrics["candidates"]["fine_tuned"]["macro_f1"] == pytest.approx(dev_macro_f1(model), abs=1e-9)


def test_labelspace_train_without_dev_says_auto_means_head(run_cli, tiny, demo_files, tmp_path):
    train, _ = demo_files
    code, stdout, stderr = train_run(run_cli, tiny, train, tmp_path / "run", "--max-steps", "1")
    assert code == 0, stderr
    assert "scoring: head (no labelled dev data: auto means head)" in stdout
    model = LabelspaceModel.from_pretrained(tmp_path / "run")
    assert model.scoring.mode == "head" and model.index is None


def test_labelspace_train_refuses_a_bad_scoring_in_one_line(run_cli, tiny, demo_files, tmp_path):
    train, _ = demo_files
    code, stdout, stderr = train_run(run_cli, tiny, train, tmp_path / "run", "--scoring", "best")
    assert code == 2 and "Traceback" not in stderr
    assert stderr == "labelspace: error: --scoring: expected one of auto, head, knn, hybrid; got 'best'\n"
    code, _, stderr = train_run(run_cli, tiny, train, tmp_path / "run2", "--scoring", "hybrid")
    assert code == 2 and "tunes the head's weight on dev data" in stderr and len(stderr.splitlines()) == 1
