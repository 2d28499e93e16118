"""Rare labels: thresholds shrunk toward the fallback by their positives, and macro-F1 over the rarest quarter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.evaluation import classification_report, tune_thresholds
from labelspace.evaluation.classification import rarest_labels
from labelspace.evaluation.report import decision_report, write_report
from labelspace.evaluation.thresholds import ThresholdResult, shrink_thresholds
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

# Hand-built dev data: 10 texts, 5 labels with 6, 1, 2, 4 and 0 positives. Scores are multiples of 1/16,
# so every midpoint below is exact in float64.
Y_DEV = np.array(
    [
        [1, 1, 0, 1, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)
SCORES = (
    np.array(
        [
            [15, 6, 2, 13, 3],
            [14, 2, 12, 3, 1],
            [13, 3, 1, 12, 2],
            [12, 1, 11, 2, 3],
            [11, 2, 3, 11, 1],
            [10, 1, 2, 3, 2],
            [4, 3, 1, 10, 4],
            [5, 2, 13, 2, 1],
            [3, 1, 2, 1, 2],
            [2, 4, 1, 3, 1],
        ],
        dtype=np.float64,
    )
    / 16
)
POSITIVES = Y_DEV.sum(axis=0)  # [6, 1, 2, 4, 0]


def brute_force_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    """Best-F1 cut over the distinct scores (highest cut on ties), returned as the midpoint to the next lower score."""
    distinct = np.unique(scores)[::-1]
    best, threshold = -1.0, float("nan")
    for position, cut in enumerate(distinct):
        f1 = skm.f1_score(truth, scores >= cut, zero_division=0)
        if f1 > best:
            lower = distinct[position + 1] if position + 1 < len(distinct) else None
            best, threshold = f1, float(cut if lower is None else (cut + lower) / 2)
    return threshold


OWN = np.array([brute_force_threshold(Y_DEV[:, label], SCORES[:, label]) for label in range(5)])
GLOBAL = brute_force_threshold(Y_DEV.ravel(), SCORES.ravel())  # micro-F1 over all (text, label) cells


def check_hand_built_case() -> None:
    """The brute-force cuts the expectations rest on, checked by hand."""
    # By hand: label 1's only positive scores 6/16, next lower 4/16 -> 5/16; label 2's positives 12/16, 11/16
    # with 13/16 a negative above them: F1 0.8 at >= 11/16 -> (11 + 3) / 32; label 3: 4 positives at 13, 12,
    # 11, 10 (/16) -> (10 + 3) / 32. Over all cells the 13 positives score >= 6/16 and one negative (13/16 of
    # label 2) does: micro-F1 26/27 at >= 6/16 beats 24/26 at >= 10/16; the next lower score is 5/16.
    assert OWN.tolist() == [15 / 32, 5 / 16, 14 / 32, 13 / 32, OWN[4]]
    assert GLOBAL == (6 + 5) / 32


@pytest.mark.parametrize("fallback", ["global", 0.5])
def test_rare_labels_are_shrunk_toward_the_fallback_by_their_positives(fallback):
    check_hand_built_case()
    result = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback=fallback)
    toward = GLOBAL if fallback == "global" else 0.5
    k = 5
    expected = (POSITIVES * OWN + k * toward) / (POSITIVES + k)
    expected[4] = toward  # no positive: the fallback itself
    expected[0] = OWN[0]  # enough positives: its own cut
    np.testing.assert_allclose(result.thresholds, expected, rtol=0, atol=1e-12)
    assert result.fell_back.tolist() == [False, True, True, True, True]
    rare = result.thresholds[1:4]
    assert not np.allclose(rare, toward)  # not all left at the fallback
    assert len(np.unique(rare)) == 3
    assert result.thresholds[4] == toward
    assert result.rare_labels == "shrink"
    assert result.global_threshold == (GLOBAL if fallback == "global" else None)
    # The reported precision/recall/F1 are those of the thresholds returned.
    f1 = skm.f1_score(Y_DEV, np.greater_equal(SCORES, result.thresholds), average=None, zero_division=0)
    np.testing.assert_allclose(result.f_score, f1, atol=1e-12)


def test_global_reproduces_the_old_fallback_exactly():
    result = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback="global", rare_labels="global")
    assert result.thresholds.tolist() == [OWN[0], GLOBAL, GLOBAL, GLOBAL, GLOBAL]
    number = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback=0.42, rare_labels="global")
    assert number.thresholds.tolist() == [OWN[0], 0.42, 0.42, 0.42, 0.42]
    assert number.rare_labels == "global" and number.global_threshold is None
    # Labels with enough positives are untouched by the rule for rare ones.
    shrunk = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback="global")
    assert shrunk.thresholds[0] == result.thresholds[0]


def test_joint_objective_keeps_shrunk_rare_labels_fixed():
    per_label = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback="global")
    joint = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback="global", objective="micro_f1")
    np.testing.assert_array_equal(joint.thresholds[1:], per_label.thresholds[1:])
    assert joint.thresholds[1] == pytest.approx((OWN[1] + 5 * GLOBAL) / 6, abs=1e-12)
    assert joint.objective_score >= joint.extra["objective_start"]


def test_shrink_thresholds_formula_and_errors():
    own, positives = np.array([0.9, 0.2, 0.7, 0.6]), np.array([1, 4, 0, 3])
    got = shrink_thresholds(own, positives, fallback=0.4, strength=4)
    np.testing.assert_allclose(got, [(0.9 + 1.6) / 5, (0.8 + 1.6) / 8, 0.4, (1.8 + 1.6) / 7], atol=1e-15)
    # A label with no positive may carry an infinite "own" cut; it still gets the fallback.
    assert shrink_thresholds([np.inf], [0], 0.3, 5).tolist() == [0.3]
    with pytest.raises(ValueError, match="strength"):
        shrink_thresholds(own, positives, 0.4, 0)
    with pytest.raises(ValueError, match="one length"):
        shrink_thresholds(own, positives[:2], 0.4, 4)
    with pytest.raises(ValueError, match="rare_labels must be one of"):
        tune_thresholds(Y_DEV, SCORES, rare_labels="median")


def test_rare_labels_rule_round_trips_and_old_records_read_as_global():
    result = tune_thresholds(Y_DEV, SCORES, min_positives=5, fallback="global")
    restored = ThresholdResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert restored.rare_labels == "shrink"
    np.testing.assert_array_equal(restored.thresholds, result.thresholds)
    old = result.to_dict()
    del old["rare_labels"]
    assert ThresholdResult.from_dict(old).rare_labels == "global"


# ---------------------------------------------------------------------------------- rarest quarter


def test_rarest_labels_picks_a_quarter_rarest_first_ties_by_column():
    assert rarest_labels([40, 3, 12, 3, 7]).tolist() == [1, 3]  # ceil(5 / 4) = 2
    assert rarest_labels([5, 1, 9]).tolist() == [1]  # at least one label
    assert rarest_labels(np.arange(8, 0, -1)).tolist() == [7, 6]
    with pytest.raises(ValueError, match="label_frequency"):
        rarest_labels([])


def _report_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y_true = (rng.random((60, 8)) < np.linspace(0.05, 0.6, 8)).astype(int)
    scores = np.clip(0.35 * y_true + rng.random(y_true.shape) * 0.7, 0, 1)
    train_counts = np.array([50, 4, 70, 3, 90, 60, 80, 40])  # rarest in training: columns 3 and 1
    return y_true, scores, train_counts


def test_rarest_quarter_macro_f1_matches_sklearn():
    y_true, scores, train_counts = _report_case()
    thresholds = np.full(8, 0.5)
    predictions = scores >= thresholds
    by_train = classification_report(y_true, scores, thresholds=thresholds, label_frequency=train_counts)
    expected_train = skm.f1_score(y_true[:, [3, 1]], predictions[:, [3, 1]], average="macro", zero_division=0)
    assert by_train["macro_f1_rarest_quarter"] == pytest.approx(expected_train, abs=1e-12)
    # Without training counts: the two labels with the fewest positives in the evaluated data.
    here = classification_report(y_true, scores, thresholds=thresholds)
    rarest_here = np.argsort(y_true.sum(axis=0), kind="stable")[:2]
    assert sorted(rarest_here.tolist()) != [1, 3]  # the two choices differ on this case
    expected_here = skm.f1_score(y_true[:, rarest_here], predictions[:, rarest_here], average="macro", zero_division=0)
    assert here["macro_f1_rarest_quarter"] == pytest.approx(expected_here, abs=1e-12)
    assert by_train["macro_f1_rarest_quarter"] != pytest.approx(here["macro_f1_rarest_quarter"])
    with pytest.raises(ValueError, match="one count per label"):
        classification_report(y_true, scores, label_frequency=[1, 2, 3])


def test_decision_report_and_html_show_the_rarest_quarter(tmp_path):
    y_true, scores, train_counts = _report_case()
    decided = np.zeros(y_true.shape, dtype=bool)
    decided[:, [1, 3]] = y_true[:, [1, 3]] == 1  # the two rarest training labels decided perfectly
    report = decision_report(y_true, scores, predictions=decided, label_frequency=train_counts)
    assert report["macro_f1_rarest_quarter"] == 1.0
    path = write_report(
        tmp_path / "report.html",
        label_names=[f"l{i}" for i in range(8)],
        y_true=y_true,
        probabilities=scores,
        thresholds=0.5,
        predictions=decided,
        label_frequency=train_counts,
    )
    text = path.read_text()
    assert "<td>macro_f1_rarest_quarter</td><td>1.0000</td>" in text


# ---------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rare")
    labels = demo("train").label_set.names
    model = LabelspaceModel.from_pretrained(tiny_model_folder(folder / "tiny"), labels=labels, seed=0)
    model.save(folder / "run" / "model")
    save(demo("dev"), folder / "dev.jsonl")
    return {"run": folder / "run", "dev": folder / "dev.jsonl"}


def test_cli_tune_thresholds_shrinks_rare_labels_by_default(run_cli, run_folder, tmp_path):
    shrunk_run, global_run = tmp_path / "shrink", tmp_path / "global"
    shutil.copytree(run_folder["run"], shrunk_run)
    shutil.copytree(run_folder["run"], global_run)
    dev = ["--data", str(run_folder["dev"]), "--min-positives", "100", "--quiet"]  # every label is rare
    code, stdout, stderr = run_cli("tune-thresholds", str(shrunk_run), *dev)
    assert code == 0, stderr
    assert "shrunk toward the fallback" in stdout
    code, _, stderr = run_cli("tune-thresholds", str(global_run), *dev, "--rare-labels", "global")
    assert code == 0, stderr
    shrunk = LabelspaceModel.from_pretrained(shrunk_run / "model")
    flat = LabelspaceModel.from_pretrained(global_run / "model")
    global_threshold = flat.metadata["thresholds"]["global_threshold"]
    assert np.allclose(flat.thresholds, global_threshold) and flat.metadata["thresholds"]["rare_labels"] == "global"
    assert shrunk.metadata["thresholds"]["rare_labels"] == "shrink"
    assert not np.allclose(shrunk.thresholds, global_threshold)
    # The same numbers as the library computes on the same probabilities.
    probabilities = shrunk.predict_proba(demo("dev").texts, batch_size=32)
    y_dev = demo("dev").labels.to_dense()
    expected = tune_thresholds(y_dev, probabilities, min_positives=100, fallback="global")
    np.testing.assert_allclose(shrunk.thresholds, expected.thresholds, atol=1e-6)


def test_cli_rejects_an_unknown_rare_labels_rule(run_cli, run_folder):
    code, _, stderr = run_cli(
        "tune-thresholds", str(run_folder["run"]), "--data", str(run_folder["dev"]), "--rare-labels", "median"
    )
    assert code == 2 and "Traceback" not in stderr
    assert stderr == "labelspace: error: --rare-labels: expected one of shrink, global; got 'median'\n"


def test_cli_evaluate_shows_the_rarest_quarter(run_cli, run_folder, tmp_path):
    out = tmp_path / "metrics.json"
    code, stdout, stderr = run_cli(
        "evaluate", str(run_folder["run"]), "--data", str(run_folder["dev"]), "--json", str(out), "--quiet"
    )
    assert code == 0, stderr
    assert "macro_f1_rarest_quarter" in stdout
    metrics = json.loads(out.read_text())
    model = LabelspaceModel.from_pretrained(run_folder["run"] / "model")
    probabilities = model.predict_proba(demo("dev").texts, batch_size=32)
    y_dev = demo("dev").labels.to_dense()
    decided = model.decide(probabilities)
    rarest = np.argsort(y_dev.sum(axis=0), kind="stable")[:3]  # 12 labels -> 3
    expected = skm.f1_score(y_dev[:, rarest], decided[:, rarest], average="macro", zero_division=0)
    assert metrics["macro_f1_rarest_quarter"] == pytest.approx(expected, abs=1e-9)
