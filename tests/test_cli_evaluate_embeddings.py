"""`labelspace evaluate` on embedding models (retrieval, Spearman, triplet accuracy) and single-label heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from labelspace.data import LabeledDataset, PairDataset, TripletDataset, load, save
from labelspace.data.builtin import demo
from labelspace.evaluation.model_metrics import evaluate_model, triplet_accuracy
from labelspace.evaluation.retrieval import retrieval_metrics
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

RETRIEVAL_KEYS = ("map_at_r", "ndcg_at_k", "precision_at_1", "r_precision", "precision_at_k", "mrr")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """An embedding-only model folder, the bare encoder folder, demo dev data, triplets and scored pairs."""
    folder = tmp_path_factory.mktemp("embeddings")
    encoder = tiny_model_folder(folder / "tiny")
    LabelspaceModel.from_pretrained(encoder).save(folder / "run" / "model")
    dev = demo("dev")
    save(dev, folder / "dev.jsonl")
    rng = np.random.default_rng(0)
    texts = dev.texts
    rows = rng.choice(len(texts), size=(40, 5))
    triplets = TripletDataset(
        [texts[i] for i in rows[:, 0]],
        [texts[i] for i in rows[:, 1]],
        [[texts[i] for i in row] for row in rows[:, 2:]],
    )
    save(triplets, folder / "triplets.jsonl")
    pairs = PairDataset([texts[i] for i in rows[:, 0]], [texts[i] for i in rows[:, 1]], rng.random(40).round(3))
    save(pairs, folder / "pairs.jsonl")
    return {
        "encoder": encoder,
        "run": folder / "run",
        "dev": folder / "dev.jsonl",
        "triplets": folder / "triplets.jsonl",
        "pairs": folder / "pairs.jsonl",
    }


def _one_line_error(code: int, stderr: str) -> str:
    assert code == 2, stderr
    assert stderr.startswith("labelspace: error: ") and stderr.count("\n") == 1, stderr
    return stderr


@pytest.mark.parametrize("relevance", ["overlap", "jaccard"])
def test_retrieval_metrics_of_a_model_without_head(run_cli, files, tmp_path, relevance):
    out = tmp_path / "metrics.json"
    code, stdout, stderr = run_cli(
        "evaluate", str(files["run"]), "--data", str(files["dev"]), "--relevance", relevance, "--json", str(out)
    )
    assert code == 0, stderr
    for name in ("MAP@R", "NDCG@10", "P@1", "R-precision"):
        assert name in stdout
    result = json.loads(out.read_text())
    assert result["kind"] == "labeled" and result["relevance"] == relevance and result["k"] == 10
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    dev = load(files["dev"])
    expected = retrieval_metrics(model.encode(dev.texts), dev.labels.to_dense(), relevance=relevance)
    for key in RETRIEVAL_KEYS:
        assert result[key] == pytest.approx(expected[key], abs=1e-6), key
    assert result["num_evaluated_queries"] == expected["num_evaluated_queries"] == len(dev)


def test_jaccard_relevance_changes_ndcg_only(run_cli, files, tmp_path):
    results = {}
    for relevance in ("overlap", "jaccard"):
        out = tmp_path / f"{relevance}.json"
        code, _, stderr = run_cli(
            "evaluate", str(files["run"]), "--data", str(files["dev"]), "--relevance", relevance, "--json", str(out)
        )
        assert code == 0, stderr
        results[relevance] = json.loads(out.read_text())
    assert results["jaccard"]["ndcg_at_k"] != pytest.approx(results["overlap"]["ndcg_at_k"], abs=1e-4)
    for key in ("map_at_r", "precision_at_1", "r_precision"):
        assert results["jaccard"][key] == pytest.approx(results["overlap"][key], abs=1e-12)


def test_retrieval_known_answer_with_duplicated_texts(run_cli, files, tmp_path):
    # Each text appears twice with the same label: its duplicate (cosine 1) is its only relevant
    # neighbour and comes first, so every metric is 1 whatever the encoder.
    texts = ["the invoice is wrong", "app crashes on login", "export my data to csv please"]
    data = LabeledDataset.from_label_names(texts * 2, [["billing"], ["bug"], ["data-export"]] * 2)
    save(data, tmp_path / "twins.jsonl")
    code, _, stderr = run_cli(
        "evaluate", str(files["encoder"]), "--data", str(tmp_path / "twins.jsonl"), "--json", str(tmp_path / "m.json")
    )
    assert code == 0, stderr
    result = json.loads((tmp_path / "m.json").read_text())
    for key in ("map_at_r", "precision_at_1", "r_precision", "ndcg_at_k", "mrr"):
        assert result[key] == pytest.approx(1.0), key
    assert result["precision_at_k"] == pytest.approx(1 / 5)  # k is capped at the 5 other texts


def test_triplet_accuracy_against_every_negative(run_cli, files, tmp_path):
    out = tmp_path / "t.json"
    code, stdout, stderr = run_cli("evaluate", str(files["run"]), "--data", str(files["triplets"]), "--json", str(out))
    assert code == 0, stderr
    assert "triplet accuracy" in stdout
    result = json.loads(out.read_text())
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    triplets = load(files["triplets"])

    def unit(texts: list[str]) -> np.ndarray:
        vectors = model.encode(texts).astype(np.float64)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    anchors, positives = unit(triplets.anchors), unit(triplets.positives)
    negatives = np.stack([unit([row[k] for row in triplets.negatives]) for k in range(3)], axis=1)
    positive_cosine = (anchors * positives).sum(1)
    negative_cosine = np.einsum("nd,nkd->nk", anchors, negatives)
    every = float((positive_cosine[:, None] > negative_cosine).all(1).mean())
    first_only = float((positive_cosine > negative_cosine[:, 0]).mean())
    assert every < first_only  # the data tells the two rules apart
    assert result["kind"] == "triplets" and result["num_triplets"] == 40
    assert result["triplet_accuracy"] == pytest.approx(every, abs=1e-9)


def test_spearman_on_scored_pairs(run_cli, files, tmp_path):
    out = tmp_path / "p.json"
    code, stdout, stderr = run_cli("evaluate", str(files["run"]), "--data", str(files["pairs"]), "--json", str(out))
    assert code == 0, stderr
    assert "Spearman" in stdout
    result = json.loads(out.read_text())
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    pairs = load(files["pairs"])
    first, second = model.encode(pairs.text1), model.encode(pairs.text2)
    cosine = (first * second).sum(1) / np.linalg.norm(first, axis=1) / np.linalg.norm(second, axis=1)
    assert result["kind"] == "pairs" and result["num_pairs"] == 40
    assert result["spearman"] == pytest.approx(spearmanr(cosine, pairs.scores).statistic, abs=1e-6)


def test_report_needs_a_head(run_cli, files, tmp_path):
    stderr = _one_line_error(
        *run_cli("evaluate", str(files["run"]), "--data", str(files["dev"]), "--report", str(tmp_path / "r.html"))[::2]
    )
    assert "--report" in stderr and "no classification head" in stderr
    assert not (tmp_path / "r.html").exists()
    stderr = _one_line_error(
        *run_cli("evaluate", str(files["run"]), "--data", str(files["dev"]), "--relevance", "exact")[::2]
    )
    assert "--relevance" in stderr


def test_model_with_head_adds_retrieval_and_scores_triplets(run_cli, files, tmp_path):
    labels = demo("train").label_set.names
    model = LabelspaceModel.from_pretrained(files["encoder"], labels=labels, seed=0)
    model.save(tmp_path / "head")
    out = tmp_path / "m.json"
    code, stdout, stderr = run_cli(
        "evaluate", str(tmp_path / "head"), "--data", str(files["dev"]), "--retrieval", "--json", str(out), "--quiet"
    )
    assert code == 0, stderr
    result = json.loads(out.read_text())
    assert "macro_f1" in result and "MAP@R" in stdout
    dev = load(files["dev"])
    aligned = LabeledDataset.from_label_names(
        dev.texts, [dev.label_names(i) for i in range(len(dev))], label_set=model.label_set
    )
    expected = retrieval_metrics(model.encode(aligned.texts), aligned.labels.to_dense())
    for key in RETRIEVAL_KEYS:
        assert result["retrieval"][key] == pytest.approx(expected[key], abs=1e-6), key
    code, _, stderr = run_cli(
        "evaluate", str(tmp_path / "head"), "--data", str(files["triplets"]), "--kind", "triplets", "--json", str(out)
    )
    assert code == 0, stderr
    assert json.loads(out.read_text())["triplet_accuracy"] == pytest.approx(
        evaluate_model(model, load(files["triplets"]))["triplet_accuracy"]
    )


def test_evaluate_model_is_the_trainers():
    from labelspace.training import trainer

    assert trainer.evaluate_model is evaluate_model


def test_triplet_accuracy_with_owners_matches_the_dense_form():
    rng = np.random.default_rng(1)
    anchors, positives, negatives = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), rng.normal(size=(30, 2, 4))
    flat, owners = negatives.reshape(60, 4), np.repeat(np.arange(30), 2)
    cosine = lambda a, b: (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)  # noqa: E731
    expected = (cosine(anchors, positives)[:, None] > cosine(anchors[:, None], negatives)).all(1).mean()
    assert triplet_accuracy(anchors, positives, flat, owners) == pytest.approx(expected)
    assert triplet_accuracy(anchors, positives, negatives[:, 0]) == pytest.approx(
        (cosine(anchors, positives) > cosine(anchors, negatives[:, 0])).mean()
    )


# ----------------------------------------------------------------------------- single-label (softmax) heads


def test_single_label_head_predicts_the_argmax(run_cli, files, tmp_path):
    labels = ["billing", "bug", "praise"]
    model = LabelspaceModel.from_pretrained(files["encoder"], labels=labels, head_kind="single_label", seed=0)
    assert (model.decision_rule, model.top_k) == ("top_k", 1)
    texts = demo("dev").texts[:12]
    probabilities = model.predict_proba(texts)
    assert probabilities.max() < 0.5  # a threshold of 0.5 would predict nothing
    argmax = [labels[i] for i in probabilities.argmax(1)]
    assert model.predict(texts) == [[name] for name in argmax]
    model.save(tmp_path / "softmax")
    assert LabelspaceModel.from_pretrained(tmp_path / "softmax").decision_rule == "top_k"
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    code, stdout, stderr = run_cli("predict", str(tmp_path / "softmax"), "--input", str(tmp_path / "texts.txt"))
    assert code == 0, stderr
    assert [json.loads(line)["labels"] for line in stdout.splitlines()] == [[name] for name in argmax]
    subset = LabeledDataset.from_label_names(texts, [[name] for name in argmax], label_set=model.label_set)
    save(subset, tmp_path / "argmax.jsonl")
    code, _, stderr = run_cli(
        "evaluate", str(tmp_path / "softmax"), "--data", str(tmp_path / "argmax.jsonl"), "--json", str(tmp_path / "m")
    )
    assert code == 0, stderr
    result = json.loads((tmp_path / "m").read_text())
    assert result["decision_rule"] == "top_k" and result["top_k"] == 1 and result["subset_accuracy"] == 1.0


def test_multi_label_head_keeps_the_threshold_rule(files):
    model = LabelspaceModel.from_pretrained(files["encoder"], labels=["a", "b"], seed=0)
    assert model.decision_rule == "threshold"
