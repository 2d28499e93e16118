"""Per-label decision thresholds tuned by exact search, and the rules that turn scores into label sets.

This module is the one place for decision rules (`DECISION_RULES`, `check_decision_rule`,
`default_decision_rule`, `apply_decision_rule`): `labelspace.models.LabelspaceModel` stores a rule and
calls them, and the names stay importable from `labelspace.models.model`.

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

Business rules and objectives: a precision or recall target can be given per label by name, and
``objective`` other than "macro_f1" starts from the per-label optimum and moves one label's cut at
a time (coordinate ascent) while micro-F1 or a per-text metric improves on the tuning data:

    >>> y_true = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 0]])
    >>> scores = np.array([[0.875, 0.75], [0.75, 0.5], [0.25, 0.25], [0.125, 0.125], [0.0625, 0.0625]])
    >>> macro = tune_thresholds(y_true, scores, min_positives=1)  # label 1 alone: F1 0.5 at 3 predicted
    >>> macro.thresholds.tolist(), macro.objective_score
    ([0.5, 0.1875], 0.75)
    >>> micro = tune_thresholds(y_true, scores, min_positives=1, objective="micro_f1")
    >>> micro.extra["objective_start"], micro.objective_score, bool(micro.apply(scores)[:, 1].any())  # label 1 off
    (0.75, 0.8, False)
    >>> tune_thresholds(y_true, scores, min_positives=1, label_names=["billing", "security"],
    ...                 target_precision={"security": 1.0}).label_metrics
    ['f1', 'target_precision']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelspace.evaluation.classification import (
    binarize,
    check_label_matrix,
    check_label_names,
    check_scores,
    check_thresholds,
    confusion_counts,
    divide,
    f1_score,
    jaccard_samples,
)

DECISION_RULES = ("threshold", "at_least_one", "top_k")
TUNING_METRICS = ("f1", "fbeta")
GLOBAL_METRICS = ("micro_f1", "macro_f1")
OBJECTIVES = ("macro_f1", "micro_f1", "samples_f1", "samples_jaccard")
RARE_LABEL_RULES = ("shrink", "global")

__all__ = [
    "DECISION_RULES",
    "GLOBAL_METRICS",
    "OBJECTIVES",
    "RARE_LABEL_RULES",
    "TUNING_METRICS",
    "ThresholdResult",
    "apply_decision_rule",
    "check_decision_rule",
    "default_decision_rule",
    "label_positions",
    "per_label_targets",
    "shrink_thresholds",
    "tune_global_threshold",
    "tune_thresholds",
]


@dataclass
class ThresholdResult:
    """Tuned per-label thresholds and how they were found.

    ``thresholds`` (float, one per label) are meant for `binarize` (positive when score >= threshold).
    ``fell_back`` marks labels with fewer than ``min_positives`` positives; ``rare_labels`` says what they
    got: "global", the fallback itself, or "shrink", their own threshold shrunk toward the fallback
    (`shrink_thresholds`; the fallback itself for a label with no positive). ``global_threshold`` is the
    micro-F1 threshold used as the fallback when it was "global". Records saved before ``rare_labels``
    existed read back as "global", which is what they were.
    ``metric`` is "f1", "fbeta", or "target_precision" / "target_recall" when one target was given for
    every label (``target`` is then that value); ``label_metrics`` names each label's rule and
    ``targets`` each label's target (NaN where it has none), so per-label targets show there.
    ``precision``, ``recall`` and ``f_score`` (F-beta with ``beta``) are measured on the tuning data
    at the returned thresholds; ``target_reached`` is False where a precision target was out of
    reach (that label then predicts nothing on the tuning data). ``objective`` is the metric the
    thresholds were tuned for jointly (see `OBJECTIVES`) and ``objective_score`` its value on the
    tuning data. ``extra`` holds JSON-friendly provenance (min_positives, fallback; for a joint
    search also objective_start, the value at the per-label optimum, and rounds).

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
    objective: str = "macro_f1"
    objective_score: float | None = None
    label_metrics: list[str] | None = None
    targets: np.ndarray | None = None
    rare_labels: str = "global"

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self.fell_back = np.asarray(self.fell_back, dtype=bool)
        if self.thresholds.ndim != 1 or self.fell_back.shape != self.thresholds.shape:
            raise ValueError(
                f"thresholds and fell_back must be 1-D of one length, got {self.thresholds.shape} "
                f"and {self.fell_back.shape}"
            )
        if self.label_metrics is None:
            self.label_metrics = [self.metric] * self.num_labels
        self.label_metrics = [str(name) for name in self.label_metrics]
        if self.targets is None:
            self.targets = np.full(self.num_labels, np.nan if self.target is None else float(self.target))
        self.targets = np.array([np.nan if value is None else value for value in self.targets], dtype=np.float64)
        if len(self.label_metrics) != self.num_labels or self.targets.shape != self.thresholds.shape:
            raise ValueError(
                f"label_metrics and targets must have one entry per label ({self.num_labels}), got "
                f"{len(self.label_metrics)} and {self.targets.shape[0]}"
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
        return binarize(scores, self.thresholds)

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
            "objective": self.objective,
            "objective_score": None if self.objective_score is None else float(self.objective_score),
            "label_metrics": list(self.label_metrics),
            "targets": [None if math.isnan(value) else value for value in self.targets.tolist()],
            "rare_labels": self.rare_labels,
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
            objective=data.get("objective", "macro_f1"),
            objective_score=data.get("objective_score"),
            label_metrics=data.get("label_metrics"),
            targets=data.get("targets"),
            rare_labels=data.get("rare_labels", "global"),
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
    """Per column, cutting after position i of the descending sort: (sorted scores, tp, predicted, group end,
    order), ``order`` being the row indices in that sort.

    Only positions at a group end (the last of a run of tied scores) are reachable cuts.
    """
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    true_positives = np.cumsum(np.take_along_axis(truth, order, axis=0), axis=0)
    predicted = np.arange(1, scores.shape[0] + 1)[:, None]
    group_end = np.ones(scores.shape, dtype=bool)
    group_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    return sorted_scores, true_positives, predicted, group_end, order


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
    precision: np.ndarray | None,
    recall: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cut, reached): lowest cut with precision >= target, or highest cut with recall >= target.

    The target is one value per column; a NaN target is never reached.
    """
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
    sorted_scores, true_positives, predicted, group_end, _ = _descending_statistics(flat_truth, flat_scores)
    cut = _best_fbeta_cut(true_positives, predicted, group_end, 1.0)
    return float(_cut_thresholds(sorted_scores, cut)[0])


def _macro_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    # Per column, the F1 change each sorted position brings; summing them in one global descending
    # order telescopes, at every global group end, to the sum of the per-label F1 values.
    sorted_scores, true_positives, predicted, _, _ = _descending_statistics(truth, scores)
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


# ----------------------------------------------------------------------------------------------
# Joint search for micro-F1 and the per-text metrics
# ----------------------------------------------------------------------------------------------

#: A move must raise the objective by more than this (absorbs float rounding; guarantees termination).
_IMPROVEMENT = 1e-12


def _objective_score(truth: np.ndarray, predictions: np.ndarray, objective: str) -> float:
    """``objective`` of bool predictions, as `classification_report` measures it (zero division -> 0)."""
    if objective == "samples_jaccard":
        return float(jaccard_samples(truth, predictions))
    return float(f1_score(truth, predictions, average=objective.removesuffix("_f1")))


def _objective_by_cut(
    objective: str,
    label_truth: np.ndarray,
    label_order: np.ndarray,
    label_true_positives: np.ndarray,
    rest: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """The objective for every cut of one label, the other labels' predictions fixed.

    ``rest`` holds per-row counts over the other labels: (true ∩ predicted, predicted, true ∪ predicted)
    and the row's true-label count over all labels. Entry 0 of the result is "predict nothing",
    entry i + 1 the cut after sorted position i (positives: the first i + 1 rows of ``label_order``).
    Each row's value takes one of two values (label predicted or not), so the objective of every
    cut is the "nothing" value plus a cumulative sum of per-row gains in the label's score order.
    """
    intersection, predicted, union, row_truth = rest
    num_samples = label_truth.shape[0]
    if objective == "micro_f1":
        true_positives = intersection.sum() + np.concatenate(([0], label_true_positives))
        chosen = predicted.sum() + np.arange(num_samples + 1)
        return divide(2 * true_positives, row_truth.sum() + chosen, 0.0)
    hit = label_truth.astype(np.int64)
    if objective == "samples_f1":
        without = divide(2 * intersection, row_truth + predicted, 0.0)
        with_label = 2 * (intersection + hit) / (row_truth + predicted + 1)
    else:  # samples_jaccard
        without = divide(intersection, union + hit, 0.0)
        with_label = (intersection + hit) / (union + 1)
    gains = (with_label - without)[label_order]
    return (without.sum() + np.concatenate(([0.0], np.cumsum(gains)))) / num_samples


def _coordinate_ascent(
    truth: np.ndarray,
    predictions: np.ndarray,
    cuts: np.ndarray,
    free: np.ndarray,
    statistics: tuple[np.ndarray, ...],
    objective: str,
    max_rounds: int,
) -> tuple[np.ndarray, int]:
    """(cuts, rounds): move one free label's cut at a time to the one maximising ``objective``.

    ``predictions`` (n x L bool, updated in place) must be those of ``cuts`` for the free labels.
    A label moves only when that raises the objective (by more than `_IMPROVEMENT`), so every move
    is an improvement; it stops after a round over the free labels without a move, or ``max_rounds``.
    """
    _, true_positives, _, group_end, order = statistics
    cuts = cuts.copy()
    reachable = np.vstack([np.ones((1, truth.shape[1]), dtype=bool), group_end])  # row 0: predict nothing
    row_truth = truth.sum(axis=1)
    intersection = (truth & predictions).sum(axis=1)
    predicted = predictions.sum(axis=1)
    union = (truth | predictions).sum(axis=1)
    rounds, moved = 0, True
    while moved and rounds < max_rounds:
        rounds += 1
        moved = False
        for label in np.flatnonzero(free):
            label_truth, label_predictions = truth[:, label], predictions[:, label]
            rest = (
                intersection - (label_truth & label_predictions),
                predicted - label_predictions,
                union - (label_truth | label_predictions),
                row_truth,
            )
            by_cut = _objective_by_cut(objective, label_truth, order[:, label], true_positives[:, label], rest)
            best = int(np.argmax(np.where(reachable[:, label], by_cut, -np.inf)))
            if by_cut[best] > by_cut[cuts[label] + 1] + _IMPROVEMENT:
                cuts[label] = best - 1
                label_predictions = np.zeros(truth.shape[0], dtype=bool)
                label_predictions[order[:best, label]] = True
                predictions[:, label] = label_predictions
                intersection = rest[0] + (label_truth & label_predictions)
                predicted = rest[1] + label_predictions
                union = rest[2] + (label_truth | label_predictions)
                moved = True
    return cuts, rounds


# ----------------------------------------------------------------------------------------------
# Per-label targets
# ----------------------------------------------------------------------------------------------


def label_positions(names: Iterable[str], label_names: Sequence[str], what: str) -> list[int]:
    """The column of each name in ``label_names``, for rules given by label name.

    An unknown name is a ValueError naming ``what``, the unknown names and the known labels (the
    first 30 of them).

    Example:
        >>> label_positions(["anger"], ["joy", "anger"], "target_precision")
        [1]
        >>> label_positions(["fear"], ["joy", "anger"], "thresholds")
        Traceback (most recent call last):
        ...
        ValueError: thresholds: unknown label(s) fear; the labels are: joy, anger
    """
    known = list(label_names)
    index = {label: position for position, label in enumerate(known)}
    wanted = list(names)
    unknown = [str(name) for name in wanted if name not in index]
    if unknown:
        shown = ", ".join(known[:30]) + (f" and {len(known) - 30} more" if len(known) > 30 else "")
        raise ValueError(
            f"{what}: unknown label(s) {', '.join(unknown)}; "
            + (f"the labels are: {shown}" if known else "there are no labels")
        )
    return [index[name] for name in wanted]


def per_label_targets(
    target: float | Mapping[str, float] | None,
    what: str,
    label_names: Sequence[str] | None,
    num_labels: int | None = None,
) -> np.ndarray:
    """One target per label (NaN: none) from a number (every label) or a ``{label name: target}`` dict.

    Targets must lie in (0, 1]; errors name ``what`` (an argument or an option) and the label.

    Example:
        >>> per_label_targets({"anger": 0.9}, "target_precision", ["joy", "anger"]).tolist()
        [nan, 0.9]
    """
    if num_labels is None:
        if label_names is None:
            raise ValueError("give label_names or num_labels")
        num_labels = len(label_names)
    targets = np.full(num_labels, np.nan)
    if target is None:
        return targets
    if not isinstance(target, Mapping):
        _check_fraction(target, what)
        return np.full(num_labels, float(target))
    if label_names is None:
        raise ValueError(f"{what} by label name needs label_names (one name per column of scores)")
    positions = label_positions(target, label_names, what)
    for (label, value), position in zip(target.items(), positions, strict=True):
        _check_fraction(value, f"{what} of {label!r}")
        targets[position] = float(value)
    return targets


def shrink_thresholds(own: Any, positives: Any, fallback: float, strength: float) -> np.ndarray:
    """Thresholds of labels with few positives, shrunk toward ``fallback``: ``(n * own + k * fallback) / (n + k)``.

    ``n`` is each label's number of positives and ``k`` (``strength``) how many positives the fallback
    is worth: a label with ``k`` positives lands halfway, one with a single positive stays close to the
    fallback, and a label with no positive gets the fallback itself (its own threshold is meaningless).
    This is the usual empirical-Bayes compromise for a per-group estimate from few observations;
    `tune_thresholds` applies it with ``k = min_positives`` to the labels below ``min_positives``.

    Example:
        >>> shrink_thresholds([0.9, 0.2, 0.7], [1, 4, 0], fallback=0.4, strength=4).round(6).tolist()
        [0.5, 0.3, 0.4]
    """
    own_values = np.asarray(own, dtype=np.float64)
    counts = np.asarray(positives, dtype=np.float64)
    if own_values.ndim != 1 or counts.shape != own_values.shape:
        raise ValueError(f"own and positives must be 1-D of one length, got {own_values.shape} and {counts.shape}")
    if (counts < 0).any():
        raise ValueError("positives must be counts >= 0")
    if not isinstance(strength, (int, float, np.integer, np.floating)) or not 0 < strength < math.inf:
        raise ValueError(f"strength must be a finite number > 0, got {strength!r}")
    has_positives = counts > 0
    safe_own = np.where(has_positives, own_values, 0.0)
    shrunk = (counts * safe_own + strength * float(fallback)) / (counts + strength)
    return np.where(has_positives, shrunk, float(fallback))


def tune_thresholds(
    y_true: Any,
    scores: Any,
    *,
    metric: str = "f1",
    beta: float = 1.0,
    target_precision: float | Mapping[str, float] | None = None,
    target_recall: float | Mapping[str, float] | None = None,
    label_names: Sequence[str] | None = None,
    objective: str = "macro_f1",
    min_positives: int = 5,
    fallback: float | str = 0.5,
    max_rounds: int = 20,
    rare_labels: str = "shrink",
) -> ThresholdResult:
    """One threshold per label by exact search: best F1 / F-beta, a precision or recall target, or jointly.

    - metric "f1" (beta must stay 1) or "fbeta": the cut maximising the label's F-beta.
    - ``target_precision``: the lowest threshold whose precision >= target (most recall); when no
      cut reaches it, a threshold just above the label's highest score (predicts nothing) and
      ``target_reached`` False.
    - ``target_recall``: the highest threshold whose recall >= target (most precision).
    - A target is a number (every label) or a ``{label name: target}`` dict, with ``label_names``
      naming the columns; labels it does not name keep ``metric``. A label has at most one target.
    - ``objective`` (`OBJECTIVES`): "macro_f1" is the per-label optimum above. "micro_f1",
      "samples_f1" and "samples_jaccard" start there, then repeatedly give one label at a time the
      cut (among its distinct scores) that maximises the objective with the others fixed, until a
      round changes nothing or ``max_rounds`` rounds. Every move raises the objective on the tuning
      data, so it never ends below its start. Labels with a target or a fallback are not moved.
    Labels with fewer than ``min_positives`` positives are too few to trust their own cut. The fallback is
    ``fallback``: a float, or "global" for one micro-F1 threshold tuned over all labels
    (`tune_global_threshold`). With ``rare_labels="shrink"`` (default) such a label with ``n`` positives
    gets ``(n * own + k * fallback) / (n + k)``, ``own`` its threshold by the rules above and
    ``k = min_positives`` (`shrink_thresholds`); with no positive it gets the fallback. With
    ``rare_labels="global"`` every such label gets the fallback itself (the behaviour before "shrink").

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
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if rare_labels not in RARE_LABEL_RULES:
        raise ValueError(f"rare_labels must be one of {RARE_LABEL_RULES}, got {rare_labels!r}")
    if objective != "macro_f1" and metric != "f1":
        raise ValueError(f"objective={objective!r} is an F1 metric tuned jointly; it needs metric='f1', not {metric!r}")
    single_targets = {
        name: target
        for name, target in (("target_precision", target_precision), ("target_recall", target_recall))
        if target is not None and not isinstance(target, Mapping)
    }
    if len(single_targets) == 2:
        raise ValueError("give at most one of target_precision and target_recall")
    for name, target in single_targets.items():
        _check_fraction(target, name)
    if not isinstance(min_positives, (int, np.integer)) or isinstance(min_positives, bool) or min_positives < 0:
        raise ValueError(f"min_positives must be an integer >= 0, got {min_positives!r}")
    if not isinstance(max_rounds, (int, np.integer)) or isinstance(max_rounds, bool) or max_rounds < 1:
        raise ValueError(f"max_rounds must be an integer >= 1, got {max_rounds!r}")
    if isinstance(fallback, str):
        if fallback != "global":
            raise ValueError(f"fallback must be a float or 'global', got {fallback!r}")
    elif not isinstance(fallback, (int, float)) or math.isnan(fallback):
        raise ValueError(f"fallback must be a float or 'global', got {fallback!r}")
    truth, values = _check_inputs(y_true, scores)
    num_labels = truth.shape[1]
    names = None if label_names is None else check_label_names(label_names, num_labels)
    precision_targets = per_label_targets(target_precision, "target_precision", names, num_labels)
    recall_targets = per_label_targets(target_recall, "target_recall", names, num_labels)
    has_precision, has_recall = ~np.isnan(precision_targets), ~np.isnan(recall_targets)
    if (has_precision & has_recall).any():
        both = np.asarray(check_label_names(names, num_labels))[has_precision & has_recall]
        raise ValueError(
            f"give at most one of target_precision and target_recall per label; both name {', '.join(both)}"
        )

    statistics = _descending_statistics(truth, values)
    sorted_scores, true_positives, predicted, group_end, _ = statistics
    cut = _best_fbeta_cut(true_positives, predicted, group_end, float(beta))
    reached = np.ones(num_labels, dtype=bool)
    if has_precision.any():
        precision_cut, precision_reached = _target_cut(
            true_positives, predicted, group_end, precision=precision_targets, recall=None
        )
        cut = np.where(has_precision, precision_cut, cut)
        reached = np.where(has_precision, precision_reached, reached)
    if has_recall.any():
        recall_cut, recall_reached = _target_cut(
            true_positives, predicted, group_end, precision=None, recall=recall_targets
        )
        cut = np.where(has_recall, recall_cut, cut)
        reached = np.where(has_recall, recall_reached, reached)
    label_metrics = np.where(has_precision, "target_precision", np.where(has_recall, "target_recall", metric))
    # One number for every label keeps the old summary: metric "target_precision" / "target_recall".
    metric_name, single_target = metric, None
    for name, target in single_targets.items():
        metric_name, single_target = name, float(target)
    thresholds = _cut_thresholds(sorted_scores, cut)

    positives = true_positives[-1]
    fell_back = positives < min_positives
    global_threshold = None
    if fell_back.any():
        if fallback == "global":
            global_threshold = tune_global_threshold(truth, values, "micro_f1")
        fallback_threshold = global_threshold if fallback == "global" else float(fallback)
        if rare_labels == "shrink":
            rare = shrink_thresholds(thresholds[fell_back], positives[fell_back], fallback_threshold, min_positives)
            thresholds = thresholds.copy()
            thresholds[fell_back] = rare
        else:
            thresholds = np.where(fell_back, fallback_threshold, thresholds)
        reached = reached | fell_back

    extra: dict[str, Any] = {"min_positives": int(min_positives), "fallback": fallback}
    predictions = values >= thresholds
    if objective != "macro_f1":
        start = _objective_score(truth, predictions, objective)
        free = ~fell_back & ~has_precision & ~has_recall
        cuts, rounds = _coordinate_ascent(truth, predictions.copy(), cut, free, statistics, objective, max_rounds)
        moved = np.where(free, _cut_thresholds(sorted_scores, cuts), thresholds)
        moved_predictions = values >= moved
        # Every move was an improvement; the check keeps the promise even against float rounding.
        if _objective_score(truth, moved_predictions, objective) >= start:
            thresholds, predictions = moved, moved_predictions
        extra.update(objective_start=start, rounds=int(rounds))

    hits, predicted_count, actual = confusion_counts(truth, predictions)
    beta2 = float(beta) ** 2
    return ThresholdResult(
        thresholds=thresholds,
        fell_back=fell_back,
        global_threshold=global_threshold,
        metric=metric_name,
        beta=float(beta),
        target=single_target,
        target_reached=reached,
        precision=divide(hits, predicted_count, 0.0),
        recall=divide(hits, actual, 0.0),
        f_score=divide((1 + beta2) * hits, beta2 * actual + predicted_count, 0.0),
        extra=extra,
        objective=objective,
        objective_score=_objective_score(truth, predictions, objective),
        label_metrics=label_metrics.tolist(),
        targets=np.where(has_precision, precision_targets, recall_targets),
        rare_labels=rare_labels,
    )


def check_decision_rule(
    rule: str, top_k: int = 1, *, rule_name: str = "decision_rule", top_k_name: str = "top_k"
) -> None:
    """Raise a ValueError unless ``rule`` is one of `DECISION_RULES` and ``top_k`` a positive integer.

    ``rule_name`` and ``top_k_name`` are how the message names the two (an argument, an option, a key).

    Example:
        >>> check_decision_rule("top_k", 2)
        >>> check_decision_rule("argmax")
        Traceback (most recent call last):
        ...
        ValueError: decision_rule must be one of threshold, at_least_one, top_k, got 'argmax'
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"{rule_name} must be one of {', '.join(DECISION_RULES)}, got {rule!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"{top_k_name} must be a positive integer, got {top_k!r}")


def default_decision_rule(head: Any) -> str:
    """The decision rule a model starts with: ``"top_k"`` (k=1, the argmax) for a single-label head.

    A softmax head picks exactly one class per text, so its label is the most probable one rather
    than every label above a threshold; any other head starts with ``"threshold"``. ``head`` is a
    classification head (anything with a ``kind``), a head kind such as ``"single_label"``, or None
    (no head).

    Example:
        >>> from types import SimpleNamespace
        >>> default_decision_rule(SimpleNamespace(kind="single_label")), default_decision_rule(None)
        ('top_k', 'threshold')
    """
    kind = head if isinstance(head, str) else getattr(head, "kind", None)
    return "top_k" if kind == "single_label" else "threshold"


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
    check_decision_rule(rule, rule_name="rule")
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
