"""Per-label threshold tuning (exact search) against grids and brute force, fallbacks and decision rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labelspace.evaluation import (
    DECISION_RULES,
    ThresholdResult,
    apply_decision_rule,
    binarize,
    f1_score,
    fbeta_score,
    tune_global_threshold,
    tune_thresholds,
)

GRID = np.linspace(0, 1, 1001)


def counts_at(y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray):
    """Per label and per threshold (columns of ``thresholds``, shape T x L or T): tp, predicted, actual."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim == 1:
        thresholds = np.repeat(thresholds[:, None], y_true.shape[1], axis=1)
    predicted_mask = scores[None, :, :] >= thresholds[:, None, :]  # T x N x L
    true_positives = (predicted_mask & y_true[None].astype(bool)).sum(1)
    return true_positives, predicted_mask.sum(1), y_true.sum(0)[None, :]


def fbeta_table(y_true, scores, thresholds, beta=1.0):
    true_positives, predicted, actual = counts_at(y_true, scores, thresholds)
    beta2 = beta * beta
    denominator = beta2 * actual + predicted
    return np.where(denominator > 0, (1 + beta2) * true_positives / np.maximum(denominator, 1), 0.0)


def random_data(seed: int, num_samples: int, num_labels: int, *, structured: bool, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((num_samples, num_labels)) < rng.uniform(0.05, 0.4, num_labels)).astype(np.int64)
    if structured:  # informative scores: positives higher on average
        scores = np.clip(0.35 * y_true + rng.normal(0.35, 0.2, y_true.shape), 0, 1)
    else:
        scores = rng.random(y_true.shape)
    if decimals is not None:
        scores = scores.round(decimals)  # ties
    return y_true, scores


CASES = [
    (seed, size, labels, structured, decimals)
    for seed in range(4)
    for size, labels in ((12, 3), (150, 6), (600, 4))
    for structured in (False, True)
    for decimals in (None, 2)
]


@pytest.mark.parametrize(("seed", "size", "labels", "structured", "decimals"), CASES)
def test_tuned_f1_beats_every_grid_threshold(seed, size, labels, structured, decimals):
    y_true, scores = random_data(seed, size, labels, structured=structured, decimals=decimals)
    result = tune_thresholds(y_true, scores, min_positives=1)
    tuned_f1 = f1_score(y_true, scores, thresholds=result.thresholds, average=None)
    grid_best = fbeta_table(y_true, scores, GRID).max(0)
    has_positive = y_true.sum(0) >= 1
    assert (tuned_f1[has_positive] >= grid_best[has_positive] - 1e-12).all()
    np.testing.assert_allclose(result.f_score, tuned_f1)
    assert not result.fell_back[has_positive].any()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_tuned_fbeta_is_the_exact_optimum_over_all_cuts(seed, beta):
    y_true, scores = random_data(seed, 90, 5, structured=True, decimals=3)
    result = tune_thresholds(y_true, scores, metric="fbeta", beta=beta, min_positives=1)
    # Brute force: every distinct score as a cut, plus one above everything.
    candidates = np.append(np.unique(scores), 2.0)
    best = fbeta_table(y_true, scores, candidates, beta=beta).max(0)
    tuned = fbeta_score(y_true, scores, beta=beta, thresholds=result.thresholds, average=None)
    has_positive = y_true.sum(0) >= 1
    np.testing.assert_allclose(tuned[has_positive], best[has_positive], atol=1e-12)


def test_threshold_is_the_midpoint_below_the_chosen_score():
    y_true = np.array([[1], [1], [0], [0]])
    scores = np.array([[0.9], [0.6], [0.5], [0.1]])
    result = tune_thresholds(y_true, scores, min_positives=1)
    assert result.thresholds[0] == pytest.approx(0.55)
    # The lowest score chosen (predict everything): the threshold is that score.
    everything = tune_thresholds(np.array([[1], [1]]), np.array([[0.3], [0.2]]), min_positives=1)
    assert everything.thresholds.tolist() == [0.2]


def test_adjacent_float32_scores_are_still_separated():
    high = np.float32(0.5)
    low = np.nextafter(high, np.float32(0))
    scores = np.array([[high], [low], [low]], dtype=np.float32)
    y_true = np.array([[1], [0], [0]])
    result = tune_thresholds(y_true, scores, min_positives=1)
    assert result.f_score[0] == 1.0
    np.testing.assert_array_equal(binarize(scores, result.thresholds)[:, 0], [True, False, False])
    as_torch = torch.from_numpy(scores) >= torch.tensor(result.thresholds, dtype=torch.float32)
    assert as_torch[:, 0].tolist() == [True, False, False]


def test_float32_scores_reproduce_in_float32_comparisons():
    y_true, scores = random_data(5, 500, 8, structured=True)
    scores32 = scores.astype(np.float32)
    result = tune_thresholds(y_true, scores32, min_positives=1)
    in_torch = (torch.from_numpy(scores32) >= torch.tensor(result.thresholds, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(f1_score(y_true, in_torch, average=None), result.f_score)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
def test_target_precision_is_met_with_the_most_predictions(seed, target):
    y_true, scores = random_data(seed, 300, 5, structured=True, decimals=3)
    result = tune_thresholds(y_true, scores, target_precision=target, min_positives=1)
    assert result.metric == "target_precision" and result.target == target
    true_positives, predicted, _ = counts_at(y_true, scores, result.thresholds[None, :])
    reached = result.target_reached
    assert (true_positives[0][reached] >= target * predicted[0][reached] - 1e-9).all()
    assert (predicted[0][~reached] == 0).all()  # out of reach: predicts nothing
    grid_tp, grid_predicted, _ = counts_at(y_true, scores, GRID)
    meets = (grid_predicted > 0) & (grid_tp >= target * grid_predicted)
    # No grid threshold meeting the target predicts more (the tuned one is the lowest such threshold).
    assert (np.where(meets, grid_predicted, 0) <= predicted[0]).all()
    assert not meets[:, ~reached].any()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.3, 0.8, 1.0])
def test_target_recall_is_met_with_the_fewest_predictions(seed, target):
    y_true, scores = random_data(seed, 300, 5, structured=False, decimals=2)
    result = tune_thresholds(y_true, scores, target_recall=target, min_positives=1)
    true_positives, predicted, actual = counts_at(y_true, scores, result.thresholds[None, :])
    assert (true_positives[0] >= target * actual[0] - 1e-9).all()
    assert result.target_reached.all()
    grid_tp, grid_predicted, grid_actual = counts_at(y_true, scores, GRID)
    meets = grid_tp >= target * grid_actual
    assert (np.where(meets, grid_predicted, np.iinfo(np.int64).max) >= predicted[0]).all()


def test_unreachable_precision_predicts_nothing():
    y_true = np.array([[0], [1], [0], [1]])
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    result = tune_thresholds(y_true, scores, target_precision=1.0, min_positives=1)
    assert not result.target_reached[0]
    assert result.thresholds[0] > 0.9
    assert not binarize(scores, result.thresholds).any()


def test_labels_with_few_positives_fall_back():
    y_true, scores = random_data(0, 200, 4, structured=True)
    y_true[:, 1] = 0
    y_true[:3, 1] = 1  # three positives
    y_true[:, 3] = 0  # none
    result = tune_thresholds(y_true, scores, min_positives=5, fallback=0.42, rare_labels="global")
    assert result.fell_back.tolist() == [False, True, False, True]
    assert result.thresholds[1] == result.thresholds[3] == 0.42
    assert result.global_threshold is None
    tuned_alone = tune_thresholds(y_true, scores, min_positives=0)
    np.testing.assert_array_equal(result.thresholds[[0, 2]], tuned_alone.thresholds[[0, 2]])


def test_global_fallback_uses_the_micro_f1_threshold():
    y_true, scores = random_data(1, 300, 5, structured=True, decimals=2)
    y_true[:, 0] = 0
    y_true[0, 0] = 1
    result = tune_thresholds(y_true, scores, min_positives=5, fallback="global", rare_labels="global")
    expected = tune_global_threshold(y_true, scores, metric="micro_f1")
    assert result.global_threshold == expected
    assert result.fell_back.tolist() == [True, False, False, False, False]
    assert result.thresholds[0] == expected


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1"])
def test_global_threshold_beats_the_grid_and_matches_brute_force(seed, metric):
    y_true, scores = random_data(seed, 120, 6, structured=seed % 2 == 0, decimals=3 if seed > 2 else None)
    threshold = tune_global_threshold(y_true, scores, metric=metric)
    average = "micro" if metric == "micro_f1" else "macro"
    tuned = f1_score(y_true, scores, thresholds=threshold, average=average)
    candidates = np.concatenate([GRID, np.unique(scores)])
    table = fbeta_table(y_true, scores, candidates)  # per candidate x label
    if average == "macro":
        best = table.mean(1).max()
    else:
        true_positives, predicted, actual = counts_at(y_true, scores, candidates)
        best = (2 * true_positives.sum(1) / (actual.sum() + predicted.sum(1))).max()
    assert tuned == pytest.approx(best, abs=1e-9)
    assert tuned >= best - 1e-9


def test_threshold_result_json_round_trip():
    y_true, scores = random_data(2, 100, 4, structured=True)
    y_true[:, 2] = 0
    result = tune_thresholds(y_true, scores, fallback="global")
    restored = ThresholdResult.from_dict(json.loads(json.dumps(result.to_dict())))
    np.testing.assert_array_equal(restored.thresholds, result.thresholds)
    np.testing.assert_array_equal(restored.fell_back, result.fell_back)
    np.testing.assert_array_equal(restored.f_score, result.f_score)
    assert restored.global_threshold == result.global_threshold
    assert restored.metric == "f1" and restored.extra == {"min_positives": 5, "fallback": "global"}
    assert ThresholdResult.from_dict({"thresholds": [0.1, 0.2]}).fell_back.tolist() == [False, False]
    np.testing.assert_array_equal(result.apply(scores), binarize(scores, result.thresholds))


def test_inputs_torch_and_labelmatrix():
    from labelspace.data import LabelMatrix

    y_true, scores = random_data(3, 80, 3, structured=True)
    expected = tune_thresholds(y_true, scores, min_positives=1).thresholds
    got = tune_thresholds(LabelMatrix.from_dense(y_true), torch.from_numpy(scores), min_positives=1).thresholds
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5]], target_precision=0.5, target_recall=0.5), "at most one"),
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5]], fallback="median"), "fallback"),
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5]], beta=2.0), "metric='fbeta'"),
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5]], metric="accuracy"), "metric must be one of"),
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5]], target_precision=1.5), "target_precision"),
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5]], min_positives=-1), "min_positives"),
        (lambda: tune_thresholds([[1, 0]], [[0.5, 0.5, 0.1]]), "shape of y_true"),
        (lambda: tune_thresholds(np.zeros((0, 2)), np.zeros((0, 2))), "at least one sample"),
        (lambda: tune_global_threshold([[0, 0]], [[0.5, 0.5]]), "no positive"),
        (lambda: tune_global_threshold([[1, 0]], [[0.5, 0.5]], metric="f1"), "metric must be one of"),
        (lambda: apply_decision_rule([[0.5, 0.5]], rule="argmax"), "rule must be one of"),
        (lambda: apply_decision_rule([[0.5, 0.5]], rule="top_k", k=3), "k must be"),
        (lambda: apply_decision_rule([[0.5, 0.5]], thresholds=[0.1, 0.2, 0.3]), "length num_labels=2"),
    ],
)
def test_validation_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_decision_rules_on_hand_made_cases():
    scores = np.array([[0.1, 0.3, 0.2], [0.6, 0.7, 0.1], [0.2, 0.2, 0.9]])
    thresholds = np.array([0.5, 0.5, 0.95])
    assert DECISION_RULES == ("threshold", "at_least_one", "top_k")
    plain = apply_decision_rule(scores, thresholds)
    assert plain.tolist() == [[False, False, False], [True, True, False], [False, False, False]]
    at_least_one = apply_decision_rule(scores, thresholds, rule="at_least_one")
    # Empty rows get their top label; the others keep their thresholded labels.
    assert at_least_one.tolist() == [[False, True, False], [True, True, False], [False, False, True]]
    top_two = apply_decision_rule(scores, thresholds, rule="top_k", k=2)
    assert top_two.sum(1).tolist() == [2, 2, 2]
    assert top_two[:2].tolist() == [[False, True, True], [True, True, False]]
    assert top_two[2, 2] and top_two[2, :2].sum() == 1  # a tie at 0.2: either one
    assert apply_decision_rule(scores, rule="top_k", k=1).tolist() == [
        [False, True, False],
        [False, True, False],
        [False, False, True],
    ]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_picks_exactly_k_highest(k):
    rng = np.random.default_rng(k)
    scores = rng.random((50, 7))
    predictions = apply_decision_rule(scores, rule="top_k", k=k)
    assert (predictions.sum(1) == k).all()
    kth_highest = np.sort(scores, axis=1)[:, -k]
    np.testing.assert_array_equal(predictions, scores >= kth_highest[:, None])


@settings(max_examples=80, deadline=None)
@given(data=st.data(), num_samples=st.integers(1, 15))
def test_property_tuned_f1_equals_brute_force(data, num_samples):
    truth = np.array(data.draw(st.lists(st.integers(0, 1), min_size=num_samples, max_size=num_samples)))[:, None]
    values = data.draw(
        st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]), min_size=num_samples, max_size=num_samples)
    )
    scores = np.array(values)[:, None]
    result = tune_thresholds(truth, scores, min_positives=1)
    if truth.sum() == 0:
        assert result.fell_back[0]
        return
    candidates = np.append(np.unique(scores), 2.0)
    best = fbeta_table(truth, scores, candidates).max()
    assert f1_score(truth, scores, thresholds=result.thresholds, average="macro") == pytest.approx(best, abs=1e-12)
