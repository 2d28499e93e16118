"""Multi-label classification metrics: a functional core on numpy arrays and a thin stateful class.

Every function takes ``y_true`` (n x L, 0/1: numpy, torch, nested lists or a
`labelspace.data.LabelMatrix`) and ``scores_or_pred`` (n x L). The dtype of the second
argument says what it is:

- bool or integer dtype: predictions already made (values must be 0/1); ``thresholds`` is ignored.
- floating dtype: scores (probabilities or logits), turned into predictions by `binarize`,
  positive when ``score >= threshold`` (one threshold, or one per label).

Zero division follows scikit-learn: a precision, recall or F-score whose denominator is zero
(no predicted positives, no true positives, neither) takes the value ``zero_division``
(default 0.0, sklearn's "warn" value). With ``zero_division=nan`` those entries are left out
of the averages, as sklearn does. Ranking metrics (`roc_auc_per_label`,
`average_precision_per_label`) are NaN for labels with no positives or no negatives, and their
macro means ignore NaN.

Example:
    >>> import numpy as np
    >>> y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    >>> scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4], [0.8, 0.3, 0.1]])
    >>> round(f1_score(y_true, scores, average="micro"), 4)
    0.8889
    >>> f1_score(y_true, scores, average=None).round(4).tolist()
    [1.0, 0.6667, 1.0]
    >>> round(macro_roc_auc(y_true, scores), 4)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

AVERAGES = ("micro", "macro", "weighted", "samples", None)

__all__ = [
    "AVERAGES",
    "MultiLabelMetrics",
    "average_precision_per_label",
    "binarize",
    "classification_report",
    "confusion_matrices",
    "f1_score",
    "fbeta_score",
    "hamming_loss",
    "jaccard_samples",
    "macro_average_precision",
    "macro_roc_auc",
    "precision_recall_fscore_support",
    "precision_score",
    "rarest_labels",
    "recall_score",
    "roc_auc_per_label",
    "subset_accuracy",
]


# ----------------------------------------------------------------------------------------------
# Input conversion and validation (kept apart from the computations below)
# ----------------------------------------------------------------------------------------------


def to_numpy(values: Any, name: str) -> np.ndarray:
    """One numpy array from a numpy array, torch tensor, LabelMatrix (``.to_dense()``) or nested lists."""
    if hasattr(values, "to_dense") and not hasattr(values, "detach"):
        values = values.to_dense()  # LabelMatrix
    elif hasattr(values, "toarray"):
        values = values.toarray()  # scipy sparse
    if hasattr(values, "detach"):
        tensor = values.detach().cpu()
        if tensor.is_floating_point() and tensor.element_size() < 4:
            tensor = tensor.float()  # float16 / bfloat16 have no (exact) numpy twin
        values = tensor.numpy()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array-like of numbers, could not convert it: {error}") from None
    if array.dtype == object:
        raise ValueError(f"{name} must be a rectangular array of numbers, got ragged or non-numeric values")
    return array


def check_label_matrix(y_true: Any, name: str = "y_true") -> np.ndarray:
    """y_true as an n x L bool array; raises ValueError unless it is 2-D and holds only 0/1."""
    array = to_numpy(y_true, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_samples x num_labels), got shape {array.shape}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold 0/1 numbers, got dtype {array.dtype}")
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 values (multi-hot labels)")
    return array.astype(bool)


def check_scores(scores: Any, shape: tuple[int, int] | None = None, name: str = "scores") -> np.ndarray:
    """Scores as a 2-D float array with no NaN; ``shape`` (when given) must match."""
    array = to_numpy(scores, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_samples x num_labels), got shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{name} must have the shape of y_true {tuple(shape)}, got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} must not contain NaN")
    return array


def check_probabilities(scores: Any, shape: tuple[int, int] | None = None, name: str = "scores") -> np.ndarray:
    """Like `check_scores`, and every value must lie in [0, 1]."""
    array = check_scores(scores, shape, name)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got values in [{array.min():.4g}, {array.max():.4g}]"
        )
    return array


def check_thresholds(thresholds: Any, num_labels: int, name: str = "thresholds") -> np.ndarray:
    """A float or a length-L vector of thresholds, as a float array that broadcasts over n x L."""
    array = to_numpy(thresholds, name)
    if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise ValueError(f"{name} must be a float or a vector of floats, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim == 0:
        if np.isnan(array):
            raise ValueError(f"{name} must not be NaN")
        return array
    if array.ndim != 1 or array.shape[0] != num_labels:
        raise ValueError(
            f"{name} must be a float or a vector of length num_labels={num_labels}, got shape {array.shape}"
        )
    if np.isnan(array).any():
        raise ValueError(f"{name} must not contain NaN")
    return array


def is_prediction_array(array: np.ndarray) -> bool:
    """Bool and integer arrays are predictions; floating arrays are scores."""
    return array.dtype == bool or np.issubdtype(array.dtype, np.integer)


def check_targets(y_true: Any, scores_or_pred: Any, thresholds: Any = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) as two n x L bool arrays; float scores are binarized with ``thresholds``."""
    truth = check_label_matrix(y_true)
    candidate = to_numpy(scores_or_pred, "scores_or_pred")
    if is_prediction_array(candidate):
        predictions = check_label_matrix(candidate, "scores_or_pred (integer/bool predictions)")
        if predictions.shape != truth.shape:
            raise ValueError(f"scores_or_pred must have the shape of y_true {truth.shape}, got {predictions.shape}")
        return truth, predictions
    scores = check_scores(candidate, truth.shape, "scores_or_pred")
    return truth, scores >= check_thresholds(thresholds, truth.shape[1])


def check_average(average: str | None) -> None:
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")


def check_zero_division(zero_division: float) -> float:
    if not isinstance(zero_division, (int, float)) or not (math.isnan(zero_division) or 0 <= zero_division <= 1):
        raise ValueError(f"zero_division must be a float in [0, 1] or nan, got {zero_division!r}")
    return float(zero_division)


# ----------------------------------------------------------------------------------------------
# Computation
# ----------------------------------------------------------------------------------------------


def binarize(scores: Any, thresholds: Any = 0.5) -> np.ndarray:
    """Predictions ``scores >= thresholds`` as a bool array; one threshold or one per label (column).

    Example:
        >>> binarize([[0.2, 0.5], [0.7, 0.1]], thresholds=[0.5, 0.1]).tolist()
        [[False, True], [True, True]]
    """
    array = check_scores(scores)
    return array >= check_thresholds(thresholds, array.shape[1])


def divide(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    """numerator / denominator elementwise, ``zero_division`` where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, zero_division, numerator / safe)


def nan_average(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted mean ignoring NaN (sklearn's rule: all weights zero -> plain mean; all NaN -> NaN)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None or np.sum(weights[keep]) == 0:
        return float(np.mean(values[keep]))
    return float(np.average(values[keep], weights=weights[keep]))


def confusion_counts(truth: np.ndarray, predictions: np.ndarray, axis: int = 0) -> tuple[np.ndarray, ...]:
    """(true positives, predicted positives, actual positives) summed along ``axis``."""
    true_positives = np.count_nonzero(truth & predictions, axis=axis)
    return true_positives, np.count_nonzero(predictions, axis=axis), np.count_nonzero(truth, axis=axis)


def _precision_recall_fscore(
    truth: np.ndarray, predictions: np.ndarray, beta: float, average: str | None, zero_division: float
) -> tuple[Any, Any, Any, np.ndarray]:
    true_positives, predicted, actual = confusion_counts(truth, predictions, axis=1 if average == "samples" else 0)
    support = np.count_nonzero(truth, axis=0)
    if average == "micro":
        true_positives, predicted, actual = (
            np.sum(count, keepdims=True) for count in (true_positives, predicted, actual)
        )
    precision = divide(true_positives, predicted, zero_division)
    recall = divide(true_positives, actual, zero_division)
    if math.isinf(beta):
        fscore = recall
    elif beta == 0:
        fscore = precision
    else:
        beta2 = beta * beta
        fscore = divide((1 + beta2) * true_positives, beta2 * actual + predicted, zero_division)
    if average is None:
        return precision, recall, fscore, support
    weights = actual if average == "weighted" else None
    return nan_average(precision, weights), nan_average(recall, weights), nan_average(fscore, weights), support


def precision_recall_fscore_support(
    y_true: Any,
    scores_or_pred: Any,
    *,
    beta: float = 1.0,
    thresholds: Any = 0.5,
    average: str | None = "micro",
    zero_division: float = 0.0,
) -> tuple[Any, Any, Any, np.ndarray]:
    """Precision, recall, F-beta (floats, or per-label arrays when ``average`` is None) and per-label support.

    Same definitions as ``sklearn.metrics.precision_recall_fscore_support`` on multi-label input
    (support is always the per-label count of true positives in y_true).

    Example:
        >>> p, r, f, support = precision_recall_fscore_support([[1, 0], [1, 1]], [[1, 1], [0, 1]], average="macro")
        >>> round(p, 4), round(r, 4), round(f, 4), support.tolist()
        (0.75, 0.75, 0.6667, [2, 1])
    """
    check_average(average)
    zero_division = check_zero_division(zero_division)
    if not isinstance(beta, (int, float)) or beta < 0 or math.isnan(beta):
        raise ValueError(f"beta must be a float >= 0, got {beta!r}")
    truth, predictions = check_targets(y_true, scores_or_pred, thresholds)
    return _precision_recall_fscore(truth, predictions, float(beta), average, zero_division)


def precision_score(
    y_true: Any,
    scores_or_pred: Any,
    *,
    thresholds: Any = 0.5,
    average: str | None = "micro",
    zero_division: float = 0.0,
) -> Any:
    """Precision tp / (tp + fp), averaged as ``average`` says (None: per-label array)."""
    return precision_recall_fscore_support(
        y_true, scores_or_pred, thresholds=thresholds, average=average, zero_division=zero_division
    )[0]


def recall_score(
    y_true: Any,
    scores_or_pred: Any,
    *,
    thresholds: Any = 0.5,
    average: str | None = "micro",
    zero_division: float = 0.0,
) -> Any:
    """Recall tp / (tp + fn), averaged as ``average`` says (None: per-label array)."""
    return precision_recall_fscore_support(
        y_true, scores_or_pred, thresholds=thresholds, average=average, zero_division=zero_division
    )[1]


def fbeta_score(
    y_true: Any,
    scores_or_pred: Any,
    *,
    beta: float,
    thresholds: Any = 0.5,
    average: str | None = "micro",
    zero_division: float = 0.0,
) -> Any:
    """F-beta (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp); beta > 1 favours recall."""
    return precision_recall_fscore_support(
        y_true, scores_or_pred, beta=beta, thresholds=thresholds, average=average, zero_division=zero_division
    )[2]


def f1_score(
    y_true: Any,
    scores_or_pred: Any,
    *,
    thresholds: Any = 0.5,
    average: str | None = "micro",
    zero_division: float = 0.0,
) -> Any:
    """F1, the harmonic mean of precision and recall, averaged as ``average`` says (None: per-label array)."""
    return fbeta_score(
        y_true, scores_or_pred, beta=1.0, thresholds=thresholds, average=average, zero_division=zero_division
    )


def _hamming_loss(truth: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(truth != predictions)) if truth.size else float("nan")


def _subset_accuracy(truth: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.all(truth == predictions, axis=1))) if len(truth) else float("nan")


def _jaccard_samples(truth: np.ndarray, predictions: np.ndarray, zero_division: float) -> float:
    intersection = np.count_nonzero(truth & predictions, axis=1)
    union = np.count_nonzero(truth | predictions, axis=1)
    return nan_average(divide(intersection, union, zero_division))


def hamming_loss(y_true: Any, scores_or_pred: Any, *, thresholds: Any = 0.5) -> float:
    """Fraction of (sample, label) cells predicted wrong."""
    return _hamming_loss(*check_targets(y_true, scores_or_pred, thresholds))


def subset_accuracy(y_true: Any, scores_or_pred: Any, *, thresholds: Any = 0.5) -> float:
    """Fraction of samples whose whole label set is predicted exactly (exact match ratio)."""
    return _subset_accuracy(*check_targets(y_true, scores_or_pred, thresholds))


def jaccard_samples(y_true: Any, scores_or_pred: Any, *, thresholds: Any = 0.5, zero_division: float = 0.0) -> float:
    """Mean over samples of |true & predicted| / |true | predicted| (``zero_division`` when both are empty)."""
    zero_division = check_zero_division(zero_division)
    return _jaccard_samples(*check_targets(y_true, scores_or_pred, thresholds), zero_division)


def confusion_matrices(y_true: Any, scores_or_pred: Any, *, thresholds: Any = 0.5) -> np.ndarray:
    """L x 2 x 2 counts ``[[tn, fp], [fn, tp]]`` per label, as sklearn's multilabel_confusion_matrix."""
    truth, predictions = check_targets(y_true, scores_or_pred, thresholds)
    true_positives, predicted, actual = confusion_counts(truth, predictions)
    false_positives = predicted - true_positives
    false_negatives = actual - true_positives
    true_negatives = truth.shape[0] - true_positives - false_positives - false_negatives
    return np.stack([true_negatives, false_positives, false_negatives, true_positives], axis=1).reshape(-1, 2, 2)


def _label_balance(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positives per label, whether the label has both positives and negatives)."""
    positives = np.count_nonzero(truth, axis=0)
    return positives, (positives > 0) & (positives < truth.shape[0])


def _ranking_inputs(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    truth = check_label_matrix(y_true)
    values = check_scores(scores, truth.shape)
    return truth, values, *_label_balance(truth)


def _roc_auc(truth: np.ndarray, scores: np.ndarray, positives: np.ndarray, defined: np.ndarray) -> np.ndarray:
    # Mann-Whitney U with average ranks for ties: the area under the (trapezoidal) ROC curve.
    ranks = rankdata(scores, axis=0) if scores.size else np.zeros(scores.shape)
    negatives = truth.shape[0] - positives
    positive_rank_sums = np.sum(ranks * truth, axis=0)
    pairs = np.where(defined, positives * negatives, 1).astype(np.float64)
    auc = (positive_rank_sums - positives * (positives + 1) / 2.0) / pairs
    return np.where(defined, auc, np.nan)


def _average_precision(truth: np.ndarray, scores: np.ndarray, positives: np.ndarray, defined: np.ndarray) -> np.ndarray:
    # AP = mean over positives of the precision at the end of the group of tied scores holding it.
    num_samples = truth.shape[0]
    if num_samples == 0:
        return np.full(truth.shape[1], np.nan)
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    sorted_truth = np.take_along_axis(truth, order, axis=0)
    precision = np.cumsum(sorted_truth, axis=0) / np.arange(1, num_samples + 1)[:, None]
    positions = np.arange(num_samples)[:, None]
    group_end = np.ones_like(sorted_truth)
    group_end[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    next_group_end = np.minimum.accumulate(np.where(group_end, positions, num_samples)[::-1], axis=0)[::-1]
    precision_at_group_end = np.take_along_axis(precision, next_group_end, axis=0)
    average_precision = np.sum(precision_at_group_end * sorted_truth, axis=0) / np.maximum(positives, 1)
    return np.where(defined, average_precision, np.nan)


def roc_auc_per_label(y_true: Any, scores: Any) -> np.ndarray:
    """ROC AUC of each label's scores (ties count one half); NaN for labels with no positives or no negatives."""
    return _roc_auc(*_ranking_inputs(y_true, scores))


def average_precision_per_label(y_true: Any, scores: Any) -> np.ndarray:
    """Average precision of each label (sklearn's step-wise definition); NaN for labels without both classes."""
    return _average_precision(*_ranking_inputs(y_true, scores))


def macro_roc_auc(y_true: Any, scores: Any) -> float:
    """Mean ROC AUC over the labels where it is defined (NaN when it is defined for none)."""
    return nan_average(roc_auc_per_label(y_true, scores))


def macro_average_precision(y_true: Any, scores: Any) -> float:
    """Mean average precision over the labels where it is defined (NaN when it is defined for none)."""
    return nan_average(average_precision_per_label(y_true, scores))


def json_float(value: Any) -> float | None:
    """A Python float, or None for NaN/inf so ``json.dumps`` writes valid JSON."""
    value = float(value)
    return value if math.isfinite(value) else None


def check_label_names(label_names: Sequence[str] | None, num_labels: int) -> list[str]:
    if label_names is None:
        return [str(index) for index in range(num_labels)]
    names = [str(name) for name in label_names]
    if len(names) != num_labels:
        raise ValueError(f"label_names must have num_labels={num_labels} names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError("label_names must be unique")
    return names


def rarest_labels(frequency: Any, fraction: float = 0.25) -> np.ndarray:
    """Columns of the ``ceil(fraction * L)`` rarest labels (at least one), rarest first.

    ``frequency`` holds one count (or rate) per label, e.g. positives in the training data. Ties go
    to the lower column, so the choice is deterministic.

    Example:
        >>> rarest_labels([40, 3, 12, 3, 7]).tolist()
        [1, 3]
    """
    counts = to_numpy(frequency, "label_frequency")
    if counts.ndim != 1 or counts.shape[0] == 0 or not np.issubdtype(counts.dtype, np.number):
        raise ValueError(f"label_frequency must be a non-empty 1-D array of numbers, got shape {counts.shape}")
    if np.isnan(counts.astype(np.float64)).any():
        raise ValueError("label_frequency must not contain NaN")
    if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a float in (0, 1], got {fraction!r}")
    keep = max(1, math.ceil(fraction * counts.shape[0]))
    return np.argsort(counts, kind="stable")[:keep]


def classification_report(
    y_true: Any,
    scores: Any,
    *,
    thresholds: Any = 0.5,
    label_names: Sequence[str] | None = None,
    label_frequency: Any = None,
) -> dict[str, Any]:
    """Every metric of this module in one JSON-serialisable dict (NaN becomes None), with a per-label table.

    ``scores`` may be float scores (thresholded) or bool/int predictions (then the ranking metrics
    are computed on the 0/1 predictions and each label's ``threshold`` is None).

    ``macro_f1_rarest_quarter`` is the macro-F1 over the rarest quarter of the labels (`rarest_labels`,
    at least one label): rarest by ``label_frequency`` (one count per label, e.g. the training
    positives) when given, else by the positives in ``y_true``. A macro average hides rare labels
    that are never predicted; this row shows them.

    Example:
        >>> import json
        >>> report = classification_report([[1, 0], [0, 1], [1, 1]], [[0.9, 0.2], [0.3, 0.6], [0.7, 0.4]],
        ...                                label_names=["joy", "anger"])
        >>> round(report["macro_f1"], 4), report["per_label"]["anger"]["recall"], report["num_samples"]
        (0.8333, 0.5, 3)
        >>> report["per_label"]["joy"]["roc_auc"], report["per_label"]["joy"]["threshold"]
        (1.0, 0.5)
        >>> _ = json.dumps(report)
        >>> rare = classification_report([[1, 0], [0, 1], [1, 1]], [[0.9, 0.2], [0.3, 0.6], [0.7, 0.4]],
        ...                              label_frequency=[120, 3])  # anger is the rare one in training
        >>> round(rare["macro_f1_rarest_quarter"], 4)
        0.6667
    """
    truth = check_label_matrix(y_true)
    raw = to_numpy(scores, "scores")
    given_predictions = is_prediction_array(raw)
    if given_predictions:
        predictions = check_label_matrix(raw, "scores (integer/bool predictions)")
        if predictions.shape != truth.shape:
            raise ValueError(f"scores must have the shape of y_true {truth.shape}, got {predictions.shape}")
        values = predictions.astype(np.float64)
        per_label_thresholds: list[float | None] = [None] * truth.shape[1]
    else:
        values = check_scores(raw, truth.shape)
        threshold_array = check_thresholds(thresholds, truth.shape[1])
        predictions = values >= threshold_array
        per_label_thresholds = [float(t) for t in np.broadcast_to(threshold_array, (truth.shape[1],))]
    names = check_label_names(label_names, truth.shape[1])

    report: dict[str, Any] = {}
    for average in ("micro", "macro", "weighted", "samples"):
        precision, recall, fscore, _ = _precision_recall_fscore(truth, predictions, 1.0, average, 0.0)
        report[f"{average}_precision"] = json_float(precision)
        report[f"{average}_recall"] = json_float(recall)
        report[f"{average}_f1"] = json_float(fscore)
    precision, recall, fscore, support = _precision_recall_fscore(truth, predictions, 1.0, None, 0.0)
    if label_frequency is None:
        label_frequency = support
    elif to_numpy(label_frequency, "label_frequency").shape != (truth.shape[1],):
        shape = to_numpy(label_frequency, "label_frequency").shape
        raise ValueError(f"label_frequency must hold one count per label ({truth.shape[1]}), got shape {shape}")
    rare = rarest_labels(label_frequency) if truth.shape[1] else np.zeros(0, dtype=np.int64)
    report["macro_f1_rarest_quarter"] = nan_average(fscore[rare])
    report["samples_jaccard"] = _jaccard_samples(truth, predictions, 0.0)
    report["hamming_loss"] = _hamming_loss(truth, predictions)
    report["subset_accuracy"] = _subset_accuracy(truth, predictions)
    positives, defined = _label_balance(truth)
    roc_auc = _roc_auc(truth, values, positives, defined)
    average_precision = _average_precision(truth, values, positives, defined)
    report["macro_roc_auc"] = nan_average(roc_auc)
    report["macro_average_precision"] = nan_average(average_precision)
    report = {key: json_float(value) for key, value in report.items()}
    report["num_samples"] = int(truth.shape[0])
    report["num_labels"] = int(truth.shape[1])

    columns = zip(
        names, precision, recall, fscore, support, per_label_thresholds, roc_auc, average_precision, strict=True
    )
    report["per_label"] = {
        name: {
            "precision": json_float(p),
            "recall": json_float(r),
            "f1": json_float(f),
            "support": int(s),
            "threshold": t,
            "roc_auc": json_float(auc),
            "average_precision": json_float(ap),
        }
        for name, p, r, f, s, t, auc, ap in columns
    }
    return report


class MultiLabelMetrics:
    """Accumulates (y_true, scores) batches and reports `classification_report` over all of them.

    Scores are kept (not just counts) because ROC AUC and average precision need every score.

    Example:
        >>> metrics = MultiLabelMetrics(num_labels=2, label_names=["joy", "anger"])
        >>> metrics.update([[1, 0], [0, 1]], [[0.9, 0.2], [0.3, 0.6]])
        >>> metrics.update([[1, 1]], [[0.7, 0.4]])
        >>> round(metrics.compute()["macro_f1"], 4)
        0.8333
        >>> metrics.reset(); metrics.num_samples
        0
    """

    def __init__(self, num_labels: int, thresholds: Any = 0.5, label_names: Sequence[str] | None = None) -> None:
        if not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        self.num_labels = int(num_labels)
        self.thresholds = check_thresholds(thresholds, self.num_labels)
        self.label_names = check_label_names(label_names, self.num_labels)
        self._truth: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []

    @property
    def num_samples(self) -> int:
        return sum(len(batch) for batch in self._truth)

    def update(self, y_true: Any, scores: Any) -> None:
        """Add one batch: y_true (b x L, 0/1) and float scores or bool/int predictions (b x L)."""
        truth = check_label_matrix(y_true)
        if truth.shape[1] != self.num_labels:
            raise ValueError(f"y_true must have num_labels={self.num_labels} columns, got shape {truth.shape}")
        raw = to_numpy(scores, "scores")
        if self._scores and is_prediction_array(raw) != is_prediction_array(self._scores[0]):
            raise ValueError("scores must keep one kind across updates: float scores or bool/int predictions")
        values = check_label_matrix(raw, "scores") if is_prediction_array(raw) else check_scores(raw)
        if values.shape != truth.shape:
            raise ValueError(f"scores must have the shape of y_true {truth.shape}, got {values.shape}")
        self._truth.append(truth)
        self._scores.append(values)

    def compute(self) -> dict[str, Any]:
        """`classification_report` over every sample seen since the last reset."""
        if not self._truth:
            raise ValueError("compute() called before any update()")
        return classification_report(
            np.concatenate(self._truth),
            np.concatenate(self._scores),
            thresholds=self.thresholds,
            label_names=self.label_names,
        )

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._truth.clear()
        self._scores.clear()
