"""Per-label decision thresholds tuned by exact search, and the rules that turn scores into label sets.

Exact search: for each label the scores are sorted once (descending). Predicting positive when
``score >= cut`` can only change at a distinct score, so the candidate cuts are the distinct
scores (plus "predict nothing"); cumulative sums of the sorted labels give the true positives of
every cut at once. The whole search is one ``argsort(axis=0)`` and a few vectorised passes:
O(N log N) per label, no loop over labels or cuts.

The returned threshold is not the chosen score itself but the midpoint between it and the next
lower distinct score (the chosen score when there is none, or when the two are adjacent floats),
computed in the scores' own dtype. Any threshold in that gap gives the same predictions on the
tuning data, so `binarize(scores, result.thresholds)` reproduces the tuned metric exactly, and the
midpoint is the choice least sensitive to small score shifts on new data. Among cuts with the
same best F-score the highest one (fewest predicted positives) wins.

Example:
    >>> import numpy as np
    >>> y_true = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    >>> scores = np.array([[0.9, 0.2], [0.6, 0.8], [0.5, 0.3], [0.1, 0.7]])
    >>> result = tune_thresholds(y_true, scores, min_positives=1)
    >>> result.thresholds.tolist()
    [0.55, 0.25]
    >>> result.f_score.tolist()
    [1.0, 0.8]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelspace.evaluation.classification import (
    check_label_matrix,
    check_scores,
    check_thresholds,
    confusion_counts,
    divide,
)

DECISION_RULES = ("threshold", "at_least_one", "top_k")
TUNING_METRICS = ("f1", "fbeta")
GLOBAL_METRICS = ("micro_f1", "macro_f1")

__all__ = [
    "DECISION_RULES",
    "GLOBAL_METRICS",
    "TUNING_METRICS",
    "ThresholdResult",
    "apply_decision_rule",
    "tune_global_threshold",
    "tune_thresholds",
]


@dataclass
class ThresholdResult:
    """Tuned per-label thresholds and how they were found.

    ``thresholds`` (float, one per label) are meant for `binarize` (positive when score >= threshold).
    ``fell_back`` marks labels with too few positives, which got the fallback instead;
    ``global_threshold`` is the micro-F1 threshold used for them when the fallback was "global".
    ``metric`` is "f1", "fbeta", "target_precision" or "target_recall"; ``target`` the target value.
    ``precision``, ``recall`` and ``f_score`` (F-beta with ``beta``) are measured on the tuning data
    at the returned thresholds; ``target_reached`` is False where a precision target was out of
    reach (that label then predicts nothing on the tuning data). ``extra`` holds JSON-friendly
    provenance (min_positives, fallback).

    Example:
        >>> result = ThresholdResult(thresholds=np.array([0.3, 0.5]), fell_back=np.array([False, True]),
        ...                          global_threshold=None, metric="f1")
        >>> ThresholdResult.from_dict(result.to_dict()).thresholds.tolist()
        [0.3, 0.5]
    """

    thresholds: np.ndarray
    fell_back: np.ndarray
    global_threshold: float | None
    metric: str
    beta: float = 1.0
    target: float | None = None
    target_reached: np.ndarray | None = None
    precision: np.ndarray | None = None
    recall: np.ndarray | None = None
    f_score: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self.fell_back = np.asarray(self.fell_back, dtype=bool)
        if self.thresholds.ndim != 1 or self.fell_back.shape != self.thresholds.shape:
            raise ValueError(
                f"thresholds and fell_back must be 1-D of one length, got {self.thresholds.shape} "
                f"and {self.fell_back.shape}"
            )
        if self.target_reached is None:
            self.target_reached = np.ones_like(self.fell_back)
        self.target_reached = np.asarray(self.target_reached, dtype=bool)
        for name in ("precision", "recall", "f_score"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, dtype=np.float64))

    @property
    def num_labels(self) -> int:
        return int(self.thresholds.shape[0])

    def apply(self, scores: Any) -> np.ndarray:
        """Bool predictions ``scores >= thresholds`` for an n x L score matrix."""
        values = check_scores(scores)
        return values >= check_thresholds(self.thresholds, values.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists and Python scalars)."""

        def as_list(values: np.ndarray | None) -> list | None:
            return None if values is None else values.tolist()

        return {
            "thresholds": self.thresholds.tolist(),
            "fell_back": self.fell_back.tolist(),
            "global_threshold": None if self.global_threshold is None else float(self.global_threshold),
            "metric": self.metric,
            "beta": float(self.beta),
            "target": None if self.target is None else float(self.target),
            "target_reached": as_list(self.target_reached),
            "precision": as_list(self.precision),
            "recall": as_list(self.recall),
            "f_score": as_list(self.f_score),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdResult:
        """Inverse of `to_dict`; keys other than ``thresholds`` are optional."""
        if "thresholds" not in data:
            raise ValueError("a ThresholdResult dict needs a 'thresholds' list")
        thresholds = np.asarray(data["thresholds"], dtype=np.float64)
        return cls(
            thresholds=thresholds,
            fell_back=data.get("fell_back") or np.zeros(thresholds.shape, dtype=bool),
            global_threshold=data.get("global_threshold"),
            metric=data.get("metric", "f1"),
            beta=data.get("beta", 1.0),
            target=data.get("target"),
            target_reached=data.get("target_reached"),
            precision=data.get("precision"),
            recall=data.get("recall"),
            f_score=data.get("f_score"),
            extra=dict(data.get("extra") or {}),
        )


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _check_inputs(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    truth = check_label_matrix(y_true)
    if truth.shape[0] == 0 or truth.shape[1] == 0:
        raise ValueError(f"y_true must have at least one sample and one label, got shape {truth.shape}")
    values = check_scores(scores, truth.shape)
    return truth, values


def _check_fraction(value: float | None, name: str) -> None:
    if value is not None and (not isinstance(value, (int, float)) or not 0 < value <= 1):
        raise ValueError(f"{name} must be a float in (0, 1], got {value!r}")


# ----------------------------------------------------------------------------------------------
# Exact search
# ----------------------------------------------------------------------------------------------


def _descending_statistics(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per column, cutting after position i of the descending sort: (sorted scores, tp, predicted, group end).

    Only positions at a group end (the last of a run of tied scores) are reachable cuts.
    """
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    true_positives = np.cumsum(np.take_along_axis(truth, order, axis=0), axis=0)
    predicted = np.arange(1, scores.shape[0] + 1)[:, None]
    group_end = np.ones(scores.shape, dtype=bool)
    group_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    return sorted_scores, true_positives, predicted, group_end


def _cut_thresholds(sorted_scores: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Threshold per column reproducing the cut after sorted position ``cut`` (-1: predict nothing)."""
    num_samples = sorted_scores.shape[0]
    columns = np.arange(sorted_scores.shape[1])
    chosen = sorted_scores[np.clip(cut, 0, num_samples - 1), columns]
    has_lower = cut < num_samples - 1
    next_lower = sorted_scores[np.clip(cut + 1, 0, num_samples - 1), columns]
    with np.errstate(invalid="ignore", over="ignore"):
        midpoint = next_lower + (chosen - next_lower) / 2
    usable = has_lower & np.isfinite(midpoint) & (midpoint > next_lower) & (midpoint <= chosen)
    thresholds = np.where(usable, midpoint, chosen)
    above_everything = np.nextafter(sorted_scores[0], np.asarray(np.inf, dtype=sorted_scores.dtype))
    return np.where(cut < 0, above_everything, thresholds).astype(np.float64)


def _best_fbeta_cut(
    true_positives: np.ndarray, predicted: np.ndarray, group_end: np.ndarray, beta: float
) -> np.ndarray:
    """Sorted position of the best F-beta cut per column; -1 (predict nothing) when no cut beats F = 0."""
    positives = true_positives[-1]
    beta2 = beta * beta
    fscore = (1 + beta2) * true_positives / (beta2 * positives + predicted)
    fscore = np.where(group_end, fscore, -1.0)
    cut = np.argmax(fscore, axis=0)
    best = np.take_along_axis(fscore, cut[None], axis=0)[0]
    return np.where(best > 0, cut, -1)


def _target_cut(
    true_positives: np.ndarray,
    predicted: np.ndarray,
    group_end: np.ndarray,
    *,
    precision: float | None,
    recall: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cut, reached): lowest cut with precision >= target, or highest cut with recall >= target."""
    num_samples = true_positives.shape[0]
    if precision is not None:
        meets = group_end & (true_positives / predicted >= precision)
        reached = meets.any(axis=0)
        cut = num_samples - 1 - np.argmax(meets[::-1], axis=0)
    else:
        positives = true_positives[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            meets = group_end & (positives > 0) & (true_positives / np.maximum(positives, 1) >= recall)
        reached = meets.any(axis=0)
        cut = np.argmax(meets, axis=0)
    return np.where(reached, cut, -1), reached


def _micro_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    flat_truth, flat_scores = truth.reshape(-1, 1), scores.reshape(-1, 1)
    sorted_scores, true_positives, predicted, group_end = _descending_statistics(flat_truth, flat_scores)
    cut = _best_fbeta_cut(true_positives, predicted, group_end, 1.0)
    return float(_cut_thresholds(sorted_scores, cut)[0])


def _macro_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    # Per column, the F1 change each sorted position brings; summing them in one global descending
    # order telescopes, at every global group end, to the sum of the per-label F1 values.
    sorted_scores, true_positives, predicted, _ = _descending_statistics(truth, scores)
    f1 = 2 * true_positives / (true_positives[-1] + predicted)
    change = np.diff(f1, axis=0, prepend=0.0)
    order = np.argsort(-sorted_scores.ravel(), kind="stable")
    global_scores = sorted_scores.ravel()[order]
    macro_sum = np.cumsum(change.ravel()[order])
    group_end = np.ones(global_scores.shape, dtype=bool)
    group_end[:-1] = global_scores[:-1] != global_scores[1:]
    candidate = np.where(group_end, macro_sum, -1.0)
    cut = int(np.argmax(candidate))
    cut = cut if candidate[cut] > 0 else -1
    return float(_cut_thresholds(global_scores[:, None], np.array([cut]))[0])


def tune_global_threshold(y_true: Any, scores: Any, metric: str = "micro_f1") -> float:
    """The single threshold (shared by all labels) maximising micro-F1 or macro-F1, by exact search.

    Example:
        >>> tune_global_threshold([[1, 0], [0, 1], [0, 0]], [[0.8, 0.3], [0.4, 0.6], [0.2, 0.5]])
        0.55
    """
    if metric not in GLOBAL_METRICS:
        raise ValueError(f"metric must be one of {GLOBAL_METRICS}, got {metric!r}")
    truth, values = _check_inputs(y_true, scores)
    if not truth.any():
        raise ValueError("y_true has no positive label, so no threshold can be tuned")
    return _micro_f1_threshold(truth, values) if metric == "micro_f1" else _macro_f1_threshold(truth, values)


def tune_thresholds(
    y_true: Any,
    scores: Any,
    *,
    metric: str = "f1",
    beta: float = 1.0,
    target_precision: float | None = None,
    target_recall: float | None = None,
    min_positives: int = 5,
    fallback: float | str = 0.5,
) -> ThresholdResult:
    """One threshold per label by exact search: best F1 / F-beta, or a precision or recall target.

    - metric "f1" (beta must stay 1) or "fbeta": the cut maximising the label's F-beta.
    - ``target_precision``: the lowest threshold whose precision >= target (most recall); when no
      cut reaches it, a threshold just above the label's highest score (predicts nothing) and
      ``target_reached`` False.
    - ``target_recall``: the highest threshold whose recall >= target (most precision).
    Labels with fewer than ``min_positives`` positives get ``fallback``: a float, or "global" for
    one micro-F1 threshold tuned over all labels (`tune_global_threshold`).

    Example:
        >>> result = tune_thresholds([[1], [1], [0], [0]], [[0.9], [0.4], [0.6], [0.1]], min_positives=1,
        ...                          target_recall=1.0)
        >>> result.thresholds.tolist(), result.precision.tolist()
        ([0.25], [0.6666666666666666])
    """
    if metric not in TUNING_METRICS:
        raise ValueError(f"metric must be one of {TUNING_METRICS}, got {metric!r}")
    if not isinstance(beta, (int, float)) or not 0 < beta < math.inf:
        raise ValueError(f"beta must be a finite float > 0, got {beta!r}")
    if metric == "f1" and beta != 1:
        raise ValueError(f"metric='f1' means beta=1, got beta={beta}; use metric='fbeta'")
    if target_precision is not None and target_recall is not None:
        raise ValueError("give at most one of target_precision and target_recall")
    _check_fraction(target_precision, "target_precision")
    _check_fraction(target_recall, "target_recall")
    if not isinstance(min_positives, (int, np.integer)) or isinstance(min_positives, bool) or min_positives < 0:
        raise ValueError(f"min_positives must be an integer >= 0, got {min_positives!r}")
    if isinstance(fallback, str):
        if fallback != "global":
            raise ValueError(f"fallback must be a float or 'global', got {fallback!r}")
    elif not isinstance(fallback, (int, float)) or math.isnan(fallback):
        raise ValueError(f"fallback must be a float or 'global', got {fallback!r}")
    truth, values = _check_inputs(y_true, scores)

    sorted_scores, true_positives, predicted, group_end = _descending_statistics(truth, values)
    if target_precision is None and target_recall is None:
        cut = _best_fbeta_cut(true_positives, predicted, group_end, float(beta))
        reached = np.ones(truth.shape[1], dtype=bool)
        metric_name, target = metric, None
    else:
        cut, reached = _target_cut(
            true_positives, predicted, group_end, precision=target_precision, recall=target_recall
        )
        metric_name = "target_precision" if target_precision is not None else "target_recall"
        target = float(target_precision if target_precision is not None else target_recall)
    thresholds = _cut_thresholds(sorted_scores, cut)

    fell_back = true_positives[-1] < min_positives
    global_threshold = None
    if fell_back.any():
        if fallback == "global":
            global_threshold = tune_global_threshold(truth, values, "micro_f1")
            thresholds = np.where(fell_back, global_threshold, thresholds)
        else:
            thresholds = np.where(fell_back, float(fallback), thresholds)
        reached = reached | fell_back

    hits, predicted_count, actual = confusion_counts(truth, values >= thresholds)
    beta2 = float(beta) ** 2
    return ThresholdResult(
        thresholds=thresholds,
        fell_back=fell_back,
        global_threshold=global_threshold,
        metric=metric_name,
        beta=float(beta),
        target=target,
        target_reached=reached,
        precision=divide(hits, predicted_count, 0.0),
        recall=divide(hits, actual, 0.0),
        f_score=divide((1 + beta2) * hits, beta2 * actual + predicted_count, 0.0),
        extra={"min_positives": int(min_positives), "fallback": fallback},
    )


def apply_decision_rule(scores: Any, thresholds: Any = 0.5, rule: str = "threshold", k: int = 1) -> np.ndarray:
    """Bool n x L predictions from scores by a decision rule.

    - "threshold": ``scores >= thresholds`` (a float or one per label).
    - "at_least_one": the same, then every row with no label gets its top-scoring label.
    - "top_k": the ``k`` highest-scoring labels of every row, thresholds ignored (ties: any k of them).

    Example:
        >>> apply_decision_rule([[0.2, 0.4], [0.9, 0.1]], 0.5, rule="at_least_one").tolist()
        [[False, True], [True, False]]
        >>> apply_decision_rule([[0.2, 0.4, 0.3]], rule="top_k", k=2).tolist()
        [[False, True, True]]
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"rule must be one of {DECISION_RULES}, got {rule!r}")
    values = check_scores(scores)
    num_labels = values.shape[1]
    if rule == "top_k":
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= num_labels:
            raise ValueError(f"k must be an integer in [1, num_labels={num_labels}], got {k!r}")
        predictions = np.zeros(values.shape, dtype=bool)
        if values.shape[0]:
            top = np.argpartition(-values, k - 1, axis=1)[:, :k]
            np.put_along_axis(predictions, top, True, axis=1)
        return predictions
    predictions = values >= check_thresholds(thresholds, num_labels)
    if rule == "at_least_one" and num_labels:
        empty_rows = ~predictions.any(axis=1)
        predictions[empty_rows, np.argmax(values[empty_rows], axis=1)] = True
    return predictions
