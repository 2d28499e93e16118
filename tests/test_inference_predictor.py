"""One scoring path: the model, `Predictor`, `labelspace predict`, `labelspace evaluate` and the Trainer's evaluation
decide the same labels; kNN / hybrid scoring and the kNN index survive a save and load; `Predictor.similar`;
a damaged or missing index is one clear error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.evaluation import tune_thresholds
from labelspace.inference import Predictor
from labelspace.models import LabelspaceModel
from labelspace.models.scoring import INDEX_FILE, INDEX_METADATA_FILE, LabelIndex, ScoringMode
from labelspace.models.testing import tiny_model_folder
from labelspace.training.arguments import TrainingArguments
from labelspace.training.evaluation import evaluate_shipped

REBUILD = "labelspace index build"


def _one_line_error(code: int, stderr: str) -> str:
    assert code == 2, stderr
    assert stderr.startswith("labelspace: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def _sklearn_metrics(y_true: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """The classification metrics of 0/1 decisions, recomputed with scikit-learn."""
    y_pred = decided.astype(int)
    return {
        "macro_f1": skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
        "micro_f1": skm.f1_score(y_true, y_pred, average="micro", zero_division=0),
        "samples_f1": skm.f1_score(y_true, y_pred, average="samples", zero_division=0),
        "hamming_loss": skm.hamming_loss(y_true, y_pred),
        "subset_accuracy": skm.accuracy_score(y_true, y_pred),
    }


def _hand_decisions(probabilities: np.ndarray, thresholds: np.ndarray, rule: str, k: int) -> np.ndarray:
    """The decision rules written out independently: thresholds; at least the best label; the k best labels."""
    if rule == "top_k":
        decided = np.zeros(probabilities.shape, dtype=bool)
        best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        np.put_along_axis(decided, best, True, axis=1)
        return decided
    decided = probabilities >= thresholds
    if rule == "at_least_one":
        empty = ~decided.any(axis=1)
        decided[empty, probabilities[empty].argmax(axis=1)] = True
    return decided


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, object]:
    """A tiny model with thresholds tuned on the demo dev set, the demo splits, and the demo test texts on disk."""
    folder = tmp_path_factory.mktemp("predictor")
    train = demo("train")
    model = LabelspaceModel.from_pretrained(tiny_model_folder(folder / "tiny"), labels=train.label_set, seed=0)
    model.eval()
    dev = demo("dev")
    tuned = tune_thresholds(dev.labels.to_dense(), model.predict_proba(dev.texts), min_positives=1)
    model.set_thresholds(tuned.thresholds + 0.02)  # a little stricter: some test texts pass no threshold
    test = demo("test")
    save(test, folder / "test.jsonl")
    (folder / "test.txt").write_text("".join(text + "\n" for text in test.texts), encoding="utf-8")
    return {"folder": folder, "model": model, "train": train, "test": test}


# ----------------------------------------------------------------------------- one decision path


@pytest.mark.parametrize(("rule", "top_k"), [("at_least_one", 1), ("top_k", 2)])
def test_model_predictor_cli_and_trainer_decide_the_same_labels(run_cli, tiny, tmp_path, rule, top_k):
    model: LabelspaceModel = tiny["model"]
    test = tiny["test"]
    model.set_decision_rule(rule, top_k)
    run = tmp_path / "run"
    model.save(run / "model")
    texts = list(test.texts)
    y_true = test.labels.to_dense()

    predictor = Predictor.load(run)
    probabilities = predictor.predict_proba(texts)
    decided = predictor.decide(probabilities)
    hand = _hand_decisions(probabilities, model.thresholds, rule, top_k)
    np.testing.assert_array_equal(decided, hand)
    if rule == "at_least_one":  # the rule matters here: some texts pass no threshold
        assert (~(probabilities >= model.thresholds).any(axis=1)).any()
    expected = [set(np.asarray(predictor.label_names)[row]) for row in decided]

    from_model = model.predict(texts)
    from_predictor = Predictor(model).predict(texts)
    from_loaded = predictor.predict(texts)
    assert [set(labels) for labels in from_model] == expected
    assert from_predictor == from_model and from_loaded == from_model  # same labels, same order

    code, _, stderr = run_cli(
        "predict", str(run), "--input", str(tiny["folder"] / "test.txt"), "--output", str(tmp_path / "p.jsonl")
    )
    assert code == 0, stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["text"] for row in rows] == texts
    assert [row["labels"] for row in rows] == from_model
    scores = np.array([[row["scores"][name] for name in predictor.label_names] for row in rows])
    np.testing.assert_allclose(scores, probabilities, atol=2e-6)

    recomputed = _sklearn_metrics(y_true, decided)
    code, _, stderr = run_cli(
        "evaluate",
        str(run),
        "--data",
        str(tiny["folder"] / "test.jsonl"),
        "--json",
        str(tmp_path / "m.json"),
        "--quiet",
    )
    assert code == 0, stderr
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["decision_rule"] == rule and result["scoring"]["mode"] == "head" and result["backend"] == "torch"
    shipped = evaluate_shipped(LabelspaceModel.from_pretrained(run), test, TrainingArguments(), tune=False).metrics
    for key, value in recomputed.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key
        assert shipped[key] == pytest.approx(value, abs=1e-9), key


def _index_from_train(model: LabelspaceModel, train, precision: str = "float16") -> LabelIndex:
    embeddings = model.encode(train.texts)
    return LabelIndex(
        embeddings, train.labels.to_dense(), model.label_set.names, texts=train.texts, precision=precision
    )


def test_cli_scores_a_hybrid_model_through_its_mode(run_cli, tiny, tmp_path):
    """`predict` and `evaluate` use the saved scoring mode (hybrid here), not the head alone."""
    model = LabelspaceModel.from_pretrained(tiny["folder"] / "tiny", labels=tiny["train"].label_set, seed=0)
    model.set_index(_index_from_train(model, tiny["train"]))
    model.set_scoring("hybrid", head_weight=0.3, k=5)
    model.set_thresholds(0.3)
    model.save(tmp_path / "hybrid")
    test = tiny["test"]
    hybrid = Predictor.load(tmp_path / "hybrid").predict_proba(test.texts)
    head = model.head_probabilities(model.encode(test.texts))
    assert np.abs(hybrid - head).max() > 0.05  # the modes give different scores
    code, stdout, stderr = run_cli("predict", str(tmp_path / "hybrid"), *test.texts[:3])
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    names = model.label_set.names
    got = np.array([[row["scores"][name] for name in names] for row in rows])
    np.testing.assert_allclose(got, hybrid[:3], atol=2e-6)
    code, _, stderr = run_cli(
        "evaluate", str(tmp_path / "hybrid"), "--data", str(tiny["folder"] / "test.jsonl"), "--json",
        str(tmp_path / "m.json"), "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["scoring"] == {"mode": "hybrid", "head_weight": 0.3, "k": 5}
    expected = _sklearn_metrics(test.labels.to_dense(), hybrid >= 0.3)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key


def test_a_model_with_an_index_and_no_head_predicts(run_cli, tiny, tmp_path):
    encoder = LabelspaceModel.from_pretrained(tiny["folder"] / "tiny")
    model = LabelspaceModel(encoder.encoder, None, tiny["train"].label_set, thresholds=[0.4] * 12)
    model.set_index(_index_from_train(model, tiny["train"], "float32"))
    model.set_scoring("knn", k=3)
    model.save(tmp_path / "knn")
    texts = list(tiny["test"].texts[:4])
    code, stdout, stderr = run_cli("predict", str(tmp_path / "knn"), *texts)
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [row["labels"] for row in rows] == model.predict(texts)
    expected = model.index.knn_probabilities(model.encode(texts), k=3)
    got = np.array([[row["scores"][name] for name in model.label_set.names] for row in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    code, _, stderr = run_cli(
        "evaluate",
        str(tmp_path / "knn"),
        "--data",
        str(tiny["folder"] / "test.jsonl"),
        "--json",
        str(tmp_path / "m.json"),
    )
    assert code == 0, stderr
    assert json.loads((tmp_path / "m.json").read_text())["scoring"]["mode"] == "knn"


def test_a_model_with_neither_head_nor_index_cannot_predict(run_cli, tiny, tmp_path):
    LabelspaceModel.from_pretrained(tiny["folder"] / "tiny").save(tmp_path / "embedder")
    stderr = _one_line_error(*run_cli("predict", str(tmp_path / "embedder"), "hello")[::2])
    assert "neither a classification head nor a kNN index" in stderr and str(tmp_path / "embedder") in stderr
    assert REBUILD in stderr


def test_backend_and_threads_options(run_cli, tiny, tmp_path):
    tiny["model"].save(tmp_path / "model")
    code, stdout, stderr = run_cli("predict", str(tmp_path / "model"), "hello", "--threads", "1", "--backend", "torch")
    assert code == 0, stderr
    assert json.loads(stdout)["labels"] == tiny["model"].predict(["hello"])[0]
    stderr = _one_line_error(*run_cli("predict", str(tmp_path / "model"), "hello", "--backend", "tensorrt")[::2])
    assert "--backend" in stderr and "torch, onnx, onnx-int8" in stderr
    code, _, stderr = run_cli("predict", str(tmp_path / "model"), "hello", "--threads", "0")
    assert code == 2 and "--threads" in stderr
    stderr = _one_line_error(
        *run_cli("evaluate", str(tmp_path / "model"), "--data", str(tiny["folder"] / "test.jsonl"), "--backend", "x")[
            ::2
        ]
    )
    assert "--backend" in stderr


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_backend_without_its_files_names_the_export_command(run_cli, tiny, tmp_path, backend):
    run = tmp_path / "run"
    tiny["model"].save(run / "model")
    export = f"labelspace export {run} --format onnx"
    stderr = _one_line_error(*run_cli("predict", str(run), "hello", "--backend", backend)[::2])
    assert export in stderr
    stderr = _one_line_error(
        *run_cli("evaluate", str(run), "--data", str(tiny["folder"] / "test.jsonl"), "--backend", backend)[::2]
    )
    assert export in stderr


# ----------------------------------------------------------------------------- kNN and hybrid round trip


def _numpy_knn(queries: np.ndarray, examples: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows without a tie at the k-th neighbour): cosine top-k, weights = similarity clamped at 0."""
    q = queries.astype(np.float64) / np.linalg.norm(queries, axis=1, keepdims=True)
    e = examples.astype(np.float64) / np.linalg.norm(examples, axis=1, keepdims=True)
    similarities = q @ e.T
    order = np.argsort(-similarities, axis=1, kind="stable")
    top = np.take_along_axis(similarities, order[:, : k + 1], axis=1)
    clear = top[:, k - 1] - top[:, k] > 1e-5  # the k-th neighbour is not tied with the next one
    weights = np.clip(top[:, :k], 0, None)
    weights[weights.sum(axis=1) == 0] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    scores = np.einsum("nk,nkl->nl", weights, labels[order[:, :k]].astype(np.float64))
    return scores, clear


@pytest.mark.parametrize("precision", ["float16", "float32"])
def test_knn_and_hybrid_survive_save_and_load(tiny, tmp_path, precision):
    model = LabelspaceModel.from_pretrained(tiny["folder"] / "tiny", labels=tiny["train"].label_set, seed=0)
    index = _index_from_train(model, tiny["train"], precision)
    model.set_index(index)
    texts = list(tiny["test"].texts)
    queries = model.encode(texts)
    examples = index.embeddings.float().numpy()
    knn, clear = _numpy_knn(queries, examples, tiny["train"].labels.to_dense(), k=7)
    assert clear.mean() > 0.9
    head = model.head_probabilities(queries)
    for mode in ("hybrid", "knn"):
        model.set_scoring(mode, head_weight=0.3, k=7)
        before = model.predict_proba(texts)
        folder = model.save(tmp_path / mode)
        assert (folder / INDEX_FILE).is_file() and (folder / INDEX_METADATA_FILE).is_file()
        loaded = LabelspaceModel.from_pretrained(folder)
        assert loaded.scoring == ScoringMode(mode, head_weight=0.3, k=7)
        assert loaded.index.precision == precision and loaded.index.embeddings.dtype == getattr(torch, precision)
        assert torch.equal(loaded.index.embeddings, index.embeddings)
        np.testing.assert_array_equal(loaded.index.labels, index.labels)
        assert loaded.index.texts == list(tiny["train"].texts) and loaded.index.label_names == model.label_set.names
        after = Predictor.load(folder).predict_proba(texts)
        np.testing.assert_allclose(after, before, atol=1e-5)
        expected = knn if mode == "knn" else 0.3 * head + 0.7 * knn
        np.testing.assert_allclose(after[clear], expected[clear], atol=1e-4)


def test_similar_returns_the_nearest_labelled_examples(tiny):
    model = LabelspaceModel.from_pretrained(tiny["folder"] / "tiny", labels=tiny["train"].label_set, seed=0)
    train = tiny["train"]
    with pytest.raises(ValueError, match="no kNN index.*labelspace index build"):
        Predictor(model).similar(["hello"])
    model.set_index(_index_from_train(model, train, "float32"))
    texts = list(tiny["test"].texts[:10])
    found = Predictor(model).similar(texts, k=4)
    queries = model.encode(texts).astype(np.float64)
    examples = model.encode(train.texts).astype(np.float64)
    similarities = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        examples / np.linalg.norm(examples, axis=1, keepdims=True)
    ).T
    dense = train.labels.to_dense()
    names = train.label_set.names
    for row, neighbours in enumerate(found):
        assert len(neighbours) == 4
        expected = np.sort(similarities[row])[::-1][:4]
        np.testing.assert_allclose([n.score for n in neighbours], expected, atol=1e-5)
        for neighbour in neighbours:
            assert neighbour.score == pytest.approx(similarities[row, neighbour.index], abs=1e-5)
            assert neighbour.text == train.texts[neighbour.index]
            assert neighbour.labels == [names[j] for j in np.flatnonzero(dense[neighbour.index])]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        Predictor(model).similar(texts, k=0)


# ----------------------------------------------------------------------------- a damaged or missing index


@pytest.fixture(scope="module")
def indexed(tiny, tmp_path_factory) -> Path:
    """A model folder with a head, a kNN index and hybrid scoring."""
    model = LabelspaceModel.from_pretrained(tiny["folder"] / "tiny", labels=tiny["train"].label_set, seed=0)
    model.set_index(_index_from_train(model, tiny["train"]))
    model.set_scoring("hybrid", head_weight=0.5, k=5)
    return model.save(tmp_path_factory.mktemp("indexed") / "model")


def _damage(folder: Path, how: str) -> Path:
    """Damage the index in ``folder``; returns the file the error must name."""
    tensors, metadata = folder / INDEX_FILE, folder / INDEX_METADATA_FILE
    rng = np.random.default_rng(0)
    if how == "random tensors":
        tensors.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return tensors
    if how == "truncated tensors":
        tensors.write_bytes(tensors.read_bytes()[: os.path.getsize(tensors) // 2])
        return tensors
    if how == "missing tensors":
        tensors.unlink()
        return tensors
    if how == "random description":
        metadata.write_bytes(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
        return metadata
    if how == "truncated description":
        metadata.write_bytes(metadata.read_bytes()[:40])
        return metadata
    metadata.unlink()
    return metadata


@pytest.mark.parametrize(
    "how",
    [
        "random tensors",
        "truncated tensors",
        "missing tensors",
        "random description",
        "truncated description",
        "missing description",
    ],
)
def test_a_damaged_or_missing_index_is_one_clear_error(run_cli, indexed, tmp_path, how):
    folder = tmp_path / "run" / "model"
    shutil.copytree(indexed, folder)
    named = _damage(folder, how)
    with pytest.raises((ValueError, FileNotFoundError)) as caught:
        LabelspaceModel.from_pretrained(folder)
    assert str(named) in str(caught.value) and REBUILD in str(caught.value)
    stderr = _one_line_error(*run_cli("predict", str(folder.parent), "hello")[::2])
    assert str(named) in stderr and REBUILD in stderr
