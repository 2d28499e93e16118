"""Multi-label classification metrics against scikit-learn, input handling, report and stateful class."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from labelspace.data import LabelMatrix
from labelspace.evaluation import (
    MultiLabelMetrics,
    average_precision_per_label,
    binarize,
    classification_report,
    confusion_matrices,
    f1_score,
    fbeta_score,
    hamming_loss,
    jaccard_samples,
    macro_average_precision,
    macro_roc_auc,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_per_label,
    subset_accuracy,
)

SHAPES = [(1, 3), (2, 2), (7, 3), (40, 5), (200, 12)]  # sklearn reads an n x 1 array as binary, not multi-label
SEEDS = range(3)
CASES = [(seed, shape) for seed in SEEDS for shape in SHAPES]
AVERAGE_NAMES = ["micro", "macro", "weighted", "samples", None]


def random_case(seed: int, shape: tuple[int, int], *, per_label_thresholds: bool):
    """y_true with an all-negative label and an empty row (when big enough), tied scores, thresholds."""
    rng = np.random.default_rng(seed)
    num_samples, num_labels = shape
    y_true = (rng.random(shape) < rng.uniform(0.1, 0.5)).astype(np.int64)
    if num_labels > 2:
        y_true[:, 1] = 0  # a label with no positive
    if num_samples > 2:
        y_true[0] = 0  # a row with no label
    scores = rng.random(shape).round(2)  # rounding makes ties
    thresholds = rng.uniform(0.2, 0.8, num_labels).round(2) if per_label_thresholds else 0.5
    return y_true, scores, thresholds


def sklearn_predictions(scores: np.ndarray, thresholds) -> np.ndarray:
    return (scores >= np.asarray(thresholds)).astype(int)


@pytest.mark.parametrize(("seed", "shape"), CASES)
@pytest.mark.parametrize("per_label_thresholds", [False, True])
@pytest.mark.parametrize("average", AVERAGE_NAMES)
def test_precision_recall_f_match_sklearn(seed, shape, per_label_thresholds, average):
    y_true, scores, thresholds = random_case(seed, shape, per_label_thresholds=per_label_thresholds)
    y_pred = sklearn_predictions(scores, thresholds)
    for zero_division in (0.0, 1.0, math.nan):
        check_against_sklearn(y_true, scores, y_pred, thresholds, average, zero_division)


def check_against_sklearn(y_true, scores, y_pred, thresholds, average, zero_division):
    for beta in (1.0, 0.5, 2.0):
        expected = skm.precision_recall_fscore_support(
            y_true, y_pred, beta=beta, average=average, zero_division=zero_division
        )
        got = precision_recall_fscore_support(
            y_true, scores, beta=beta, thresholds=thresholds, average=average, zero_division=zero_division
        )
        for ours, theirs in zip(got[:3], expected[:3], strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-6, equal_nan=True)
        if average is None:
            np.testing.assert_array_equal(got[3], expected[3])
    options = {"thresholds": thresholds, "average": average, "zero_division": zero_division}
    sk_options = {"average": average, "zero_division": zero_division}
    np.testing.assert_allclose(
        precision_score(y_true, scores, **options), skm.precision_score(y_true, y_pred, **sk_options), equal_nan=True
    )
    np.testing.assert_allclose(
        recall_score(y_true, scores, **options), skm.recall_score(y_true, y_pred, **sk_options), equal_nan=True
    )
    np.testing.assert_allclose(
        f1_score(y_true, scores, **options), skm.f1_score(y_true, y_pred, **sk_options), equal_nan=True
    )
    np.testing.assert_allclose(
        fbeta_score(y_true, scores, beta=3.0, **options),
        skm.fbeta_score(y_true, y_pred, beta=3.0, **sk_options),
        equal_nan=True,
    )


@pytest.mark.parametrize(("seed", "shape"), CASES)
@pytest.mark.parametrize("per_label_thresholds", [False, True])
def test_sample_metrics_and_confusion_match_sklearn(seed, shape, per_label_thresholds):
    y_true, scores, thresholds = random_case(seed, shape, per_label_thresholds=per_label_thresholds)
    y_pred = sklearn_predictions(scores, thresholds)
    assert hamming_loss(y_true, scores, thresholds=thresholds) == pytest.approx(skm.hamming_loss(y_true, y_pred))
    assert subset_accuracy(y_true, scores, thresholds=thresholds) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    for zero_division in (0.0, 1.0):
        expected = skm.jaccard_score(y_true, y_pred, average="samples", zero_division=zero_division)
        got = jaccard_samples(y_true, scores, thresholds=thresholds, zero_division=zero_division)
        assert got == pytest.approx(expected, abs=1e-6)
    np.testing.assert_array_equal(
        confusion_matrices(y_true, scores, thresholds=thresholds), skm.multilabel_confusion_matrix(y_true, y_pred)
    )


@pytest.mark.parametrize(("seed", "shape"), CASES)
def test_ranking_metrics_match_sklearn_and_are_nan_where_undefined(seed, shape):
    y_true, scores, _ = random_case(seed, shape, per_label_thresholds=False)
    positives = y_true.sum(0)
    defined = (positives > 0) & (positives < len(y_true))
    roc_auc = roc_auc_per_label(y_true, scores)
    average_precision = average_precision_per_label(y_true, scores)
    assert np.isnan(roc_auc[~defined]).all() and np.isnan(average_precision[~defined]).all()
    for label in np.flatnonzero(defined):
        assert roc_auc[label] == pytest.approx(skm.roc_auc_score(y_true[:, label], scores[:, label]), abs=1e-6)
        expected_ap = skm.average_precision_score(y_true[:, label], scores[:, label])
        assert average_precision[label] == pytest.approx(expected_ap, abs=1e-6)
    if defined.any():
        assert macro_roc_auc(y_true, scores) == pytest.approx(np.mean(roc_auc[defined]))
        assert macro_average_precision(y_true, scores) == pytest.approx(np.mean(average_precision[defined]))
    else:
        assert math.isnan(macro_roc_auc(y_true, scores))


@pytest.mark.parametrize("seed", range(3))
def test_single_label_column_matches_sklearn_binary(seed):
    # sklearn reads an n x 1 indicator as a binary target; per label, ours is the same binary problem.
    y_true, scores, _ = random_case(seed, (30, 1), per_label_thresholds=False)
    y_pred = (scores[:, 0] >= 0.5).astype(int)
    expected = skm.precision_recall_fscore_support(y_true[:, 0], y_pred, average="binary", zero_division=0)
    got = precision_recall_fscore_support(y_true, scores, average=None)
    for ours, theirs in zip(got[:3], expected[:3], strict=True):
        assert ours[0] == pytest.approx(theirs)
    assert f1_score(y_true, scores, average="macro") == pytest.approx(expected[2])


def test_ranking_metrics_with_heavy_ties_match_sklearn():
    rng = np.random.default_rng(3)
    y_true = (rng.random((300, 6)) < 0.3).astype(int)
    scores = rng.integers(0, 4, (300, 6)) / 4.0  # four distinct values per label
    for label in range(6):
        assert roc_auc_per_label(y_true, scores)[label] == pytest.approx(
            skm.roc_auc_score(y_true[:, label], scores[:, label]), abs=1e-9
        )
        assert average_precision_per_label(y_true, scores)[label] == pytest.approx(
            skm.average_precision_score(y_true[:, label], scores[:, label]), abs=1e-9
        )


def test_hand_computed_values():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4], [0.8, 0.3, 0.1]])
    # predictions [[1,0,1],[0,1,0],[1,0,0]]: tp 4, fp 0, fn 1
    assert f1_score(y_true, scores) == pytest.approx(8 / 9)
    assert recall_score(y_true, scores, average=None).tolist() == [1.0, 0.5, 1.0]
    assert hamming_loss(y_true, scores) == pytest.approx(1 / 9)
    assert subset_accuracy(y_true, scores) == pytest.approx(2 / 3)
    assert jaccard_samples(y_true, scores) == pytest.approx((1 + 1 + 0.5) / 3)


def test_predictions_versus_scores_by_dtype():
    y_true = np.array([[1, 0], [0, 1]])
    scores = np.array([[0.4, 0.6], [0.2, 0.9]])
    predictions = np.array([[1, 0], [0, 1]])
    # Integer and bool arrays are predictions: thresholds play no part.
    assert f1_score(y_true, predictions, thresholds=0.99) == 1.0
    assert f1_score(y_true, predictions.astype(bool)) == 1.0
    assert f1_score(y_true, torch.tensor(predictions)) == 1.0
    # Float arrays are scores, thresholded with >=.
    assert f1_score(y_true, scores, thresholds=0.4, average=None).tolist() == [1.0, 2 / 3]
    assert f1_score(y_true, predictions.astype(float)) == 1.0  # 0/1 floats threshold at 0.5 to themselves


def test_binarize_scalar_vector_and_equality():
    scores = np.array([[0.5, 0.2, 0.7], [0.49, 0.3, 0.7]])
    np.testing.assert_array_equal(binarize(scores), [[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(binarize(scores, [0.5, 0.3, 0.8]), [[True, False, False], [False, True, False]])
    np.testing.assert_array_equal(binarize(torch.tensor(scores, dtype=torch.bfloat16), 0.5).shape, (2, 3))


def test_inputs_numpy_torch_labelmatrix_and_lists_agree():
    y_true, scores, thresholds = random_case(0, (50, 6), per_label_thresholds=True)
    expected = f1_score(y_true, scores, thresholds=thresholds, average="macro")
    variants = [
        (torch.tensor(y_true), torch.tensor(scores)),
        (LabelMatrix.from_dense(y_true), scores.tolist()),
        (y_true.astype(bool), torch.tensor(scores, dtype=torch.float64)),
        (y_true.tolist(), scores),
    ]
    for truth, values in variants:
        got = f1_score(truth, values, thresholds=torch.tensor(thresholds), average="macro")
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: f1_score([[1, 0]], [[0.5, 0.5, 0.5]]), "shape of y_true"),
        (lambda: f1_score([[1, 2]], [[0.5, 0.5]]), "0/1"),
        (lambda: f1_score([1, 0], [0.5, 0.5]), "2-D"),
        (lambda: f1_score([[1, 0]], [[0.5, np.nan]]), "NaN"),
        (lambda: f1_score([[1, 0]], [[0.5, 0.5]], thresholds=[0.5, 0.5, 0.5]), "length num_labels=2"),
        (lambda: f1_score([[1, 0]], [[0.5, 0.5]], average="binary"), "average must be one of"),
        (lambda: f1_score([[1, 0]], [[1, 3]]), "0/1"),
        (lambda: f1_score([[1, 0]], [[0.5, 0.5]], zero_division=2.0), "zero_division"),
        (lambda: fbeta_score([[1, 0]], [[0.5, 0.5]], beta=-1.0), "beta"),
        (lambda: classification_report([[1, 0]], [[0.5, 0.5]], label_names=["a"]), "label_names"),
        (lambda: MultiLabelMetrics(num_labels=0), "num_labels"),
        (lambda: MultiLabelMetrics(num_labels=2, thresholds=[0.1]), "thresholds"),
    ],
)
def test_validation_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("seed", range(3))
def test_classification_report_matches_functions_and_is_json(seed):
    y_true, scores, thresholds = random_case(seed, (80, 5), per_label_thresholds=True)
    names = ["a", "b", "c", "d", "e"]
    report = classification_report(y_true, scores, thresholds=thresholds, label_names=names)
    json.loads(json.dumps(report, allow_nan=False))
    required = {
        "micro_precision", "micro_recall", "micro_f1", "macro_precision", "macro_recall", "macro_f1",
        "weighted_f1", "samples_precision", "samples_recall", "samples_f1", "samples_jaccard", "hamming_loss",
        "subset_accuracy", "macro_roc_auc", "macro_average_precision", "num_samples", "num_labels", "per_label",
    }  # fmt: skip
    assert required <= set(report)
    y_pred = sklearn_predictions(scores, thresholds)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert report["weighted_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0))
    assert report["samples_jaccard"] == pytest.approx(jaccard_samples(y_true, y_pred))
    assert report["macro_roc_auc"] == pytest.approx(macro_roc_auc(y_true, scores))
    assert report["num_samples"] == 80 and report["num_labels"] == 5
    assert list(report["per_label"]) == names
    per_label_f1 = f1_score(y_true, scores, thresholds=thresholds, average=None)
    for index, name in enumerate(names):
        entry = report["per_label"][name]
        assert entry["f1"] == pytest.approx(per_label_f1[index])
        assert entry["support"] == int(y_true[:, index].sum()) and isinstance(entry["support"], int)
        assert entry["threshold"] == pytest.approx(thresholds[index])
        assert set(entry) == {"precision", "recall", "f1", "support", "threshold", "roc_auc", "average_precision"}
    # label "b" has no positive: its ranking metrics are None (NaN in the functions).
    assert report["per_label"]["b"]["roc_auc"] is None and report["per_label"]["b"]["average_precision"] is None
    assert all(type(report[key]) is float for key in required - {"num_samples", "num_labels", "per_label"})


def test_classification_report_with_predictions_has_no_thresholds():
    report = classification_report([[1, 0], [0, 1]], np.array([[1, 0], [1, 1]], dtype=bool))
    assert report["per_label"]["0"]["threshold"] is None
    assert report["micro_precision"] == pytest.approx(2 / 3)


def test_multilabel_metrics_accumulates_batches():
    y_true, scores, thresholds = random_case(1, (90, 4), per_label_thresholds=True)
    metrics = MultiLabelMetrics(num_labels=4, thresholds=thresholds, label_names=list("wxyz"))
    for start in range(0, 90, 25):
        metrics.update(torch.tensor(y_true[start : start + 25]), torch.tensor(scores[start : start + 25]))
    expected = classification_report(y_true, scores, thresholds=thresholds, label_names=list("wxyz"))
    assert metrics.compute() == expected
    assert metrics.num_samples == 90
    metrics.reset()
    assert metrics.num_samples == 0
    with pytest.raises(ValueError, match="before any update"):
        metrics.compute()
    with pytest.raises(ValueError, match="num_labels=4"):
        metrics.update([[1, 0]], [[0.5, 0.5]])
    metrics.update([[1, 0, 0, 1]], [[0.5, 0.5, 0.1, 0.9]])
    with pytest.raises(ValueError, match="one kind"):
        metrics.update([[1, 0, 0, 1]], [[1, 0, 0, 1]])


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    num_samples=st.integers(1, 12),
    num_labels=st.integers(2, 5),
)
def test_property_per_label_and_micro_f1_match_sklearn(data, num_samples, num_labels):
    cells = num_samples * num_labels
    truth = np.array(data.draw(st.lists(st.integers(0, 1), min_size=cells, max_size=cells))).reshape(
        num_samples, num_labels
    )
    scores = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=cells, max_size=cells))
    ).reshape(num_samples, num_labels)
    predictions = (scores >= 0.5).astype(int)
    for average in AVERAGE_NAMES:
        np.testing.assert_allclose(
            f1_score(truth, scores, average=average),
            skm.f1_score(truth, predictions, average=average, zero_division=0),
            atol=1e-9,
        )
    assert hamming_loss(truth, scores) == pytest.approx(skm.hamming_loss(truth, predictions))
