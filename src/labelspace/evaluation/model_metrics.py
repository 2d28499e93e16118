"""Metrics of a model on a dataset of any kind: what the Trainer's evaluation and `labelspace evaluate` share.

- Labeled data, model with a head: `classification_report` with the model's thresholds.
- Labeled data, embedding model (no head): `retrieval_metrics`, leave-one-out over the data set
  (each text queries all the others; relevant = shares a label, or graded by Jaccard).
- Scored pairs: Spearman and Pearson correlation between the cosine similarity of the two texts and
  the score.
- Triplets: ``triplet_accuracy``, the share of anchors more similar (cosine) to their positive than
  to every one of their negatives.

The functions on embeddings (`row_cosine`, `triplet_accuracy`, `pair_correlations`) are the
functional core; `evaluate_model` encodes the texts with the model and calls them.

Example:
    >>> import numpy as np
    >>> anchors, positives = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.9, 0.1], [1.0, 0.0]])
    >>> negatives = np.array([[0.0, 1.0], [0.1, 0.9]])
    >>> triplet_accuracy(anchors, positives, negatives)
    0.5
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.evaluation.classification import classification_report
from labelspace.evaluation.retrieval import retrieval_metrics

if TYPE_CHECKING:  # pragma: no cover
    from labelspace.models.model import LabelspaceModel

__all__ = ["evaluate_model", "pair_correlations", "row_cosine", "triplet_accuracy"]


def _matrix(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_items x dim), got shape {array.shape}")
    return array


def row_cosine(first: Any, second: Any) -> np.ndarray:
    """Cosine similarity of each row of ``first`` with the same row of ``second`` (float64, length n).

    Example:
        >>> row_cosine([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 3.0]]).round(4).tolist()
        [1.0, 0.7071]
    """
    left, right = _matrix(first, "first"), _matrix(second, "second")
    if left.shape != right.shape:
        raise ValueError(f"first and second must have one shape, got {left.shape} and {right.shape}")
    left = left / np.maximum(np.linalg.norm(left, axis=1, keepdims=True), 1e-12)
    right = right / np.maximum(np.linalg.norm(right, axis=1, keepdims=True), 1e-12)
    return (left * right).sum(axis=1)


def triplet_accuracy(anchors: Any, positives: Any, negatives: Any, owners: Any = None) -> float:
    """Share of anchors with ``cos(anchor, positive) > cos(anchor, negative)`` for all of their negatives.

    ``anchors`` and ``positives`` are n x d. ``negatives`` is n x d (one negative per anchor) or,
    with ``owners``, M x d where ``owners[j]`` is the anchor index of negative j (any number of
    negatives per anchor). A tie counts as a miss. NaN for no anchor.

    Example:
        >>> anchors, positives = [[1.0, 0.0]], [[0.9, 0.1]]
        >>> triplet_accuracy(anchors, positives, [[0.0, 1.0], [0.95, 0.05]], owners=[0, 0])
        0.0
    """
    anchor, positive = _matrix(anchors, "anchors"), _matrix(positives, "positives")
    negative = _matrix(negatives, "negatives")
    if positive.shape != anchor.shape:
        raise ValueError(f"positives must have the shape of anchors {anchor.shape}, got {positive.shape}")
    if owners is None:
        if negative.shape != anchor.shape:
            raise ValueError(
                f"negatives must have the shape of anchors {anchor.shape} (or give owners), got {negative.shape}"
            )
        owner = np.arange(len(anchor))
    else:
        owner = np.asarray(owners)
        if owner.shape != (len(negative),) or not np.issubdtype(owner.dtype, np.integer):
            raise ValueError(f"owners must hold one integer anchor index per negative ({len(negative)})")
        if owner.size and (owner.min() < 0 or owner.max() >= len(anchor)):
            raise ValueError(f"owners must be anchor indices in [0, {len(anchor) - 1}]")
    if len(anchor) == 0:
        return float("nan")
    positive_similarity = row_cosine(anchor, positive)
    negative_similarity = row_cosine(anchor[owner], negative)
    misses = np.bincount(owner, weights=positive_similarity[owner] <= negative_similarity, minlength=len(anchor))
    return float((misses == 0).mean())


def pair_correlations(first: Any, second: Any, scores: Any) -> dict[str, float]:
    """``spearman`` and ``pearson`` correlation of the rows' cosine similarity with ``scores`` (scipy).

    Example:
        >>> first, second = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], [[1.0, 0.1], [1.0, 1.0], [0.0, 1.0]]
        >>> pair_correlations(first, second, [0.9, 0.5, 0.1])["spearman"]
        1.0
    """
    from scipy.stats import pearsonr, spearmanr

    cosine = row_cosine(first, second)
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != cosine.shape:
        raise ValueError(f"scores must hold one value per pair ({len(cosine)}), got shape {values.shape}")
    if len(values) < 2:
        raise ValueError(f"a correlation needs at least 2 pairs, got {len(values)}")
    return {
        "spearman": float(spearmanr(cosine, values).statistic),
        "pearson": float(pearsonr(cosine, values).statistic),
    }


def evaluate_model(
    model: LabelspaceModel,
    dataset: LabeledDataset | PairDataset | TripletDataset,
    batch_size: int = 64,
    *,
    relevance: str = "overlap",
    k: int = 10,
    show_progress_bar: bool = False,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``dataset`` (see the module docstring); the model's train/eval mode is kept.

    Labeled data with a head: `classification_report` with the model's thresholds (``macro_f1``,
    ``micro_f1``, ...). Labeled data without a head: `retrieval_metrics` with ``relevance`` and
    ``k`` (``map_at_r``, ``ndcg_at_k``, ``precision_at_1``, ``r_precision``, ...). Pairs:
    ``spearman``, ``pearson``, ``num_pairs``. Triplets: ``triplet_accuracy``, ``num_triplets``.
    """

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)

    was_training = model.training
    model.eval()
    try:
        if isinstance(dataset, LabeledDataset):
            y_true = dataset.labels.to_dense()
            if model.head is not None:
                probabilities = model.predict_proba(
                    dataset.texts, batch_size=batch_size, show_progress_bar=show_progress_bar
                )
                names = model.label_set.names if model.label_set is not None else None
                return classification_report(y_true, probabilities, thresholds=model.thresholds, label_names=names)
            return retrieval_metrics(encode(dataset.texts), y_true, k=k, relevance=relevance)
        if isinstance(dataset, PairDataset):
            metrics: dict[str, Any] = pair_correlations(encode(dataset.text1), encode(dataset.text2), dataset.scores)
            return {**metrics, "num_pairs": len(dataset)}
        if isinstance(dataset, TripletDataset):
            negatives = [dataset.negatives_of(i) for i in range(len(dataset))]
            owners = np.repeat(np.arange(len(dataset)), [len(row) for row in negatives])
            flat = [text for row in negatives for text in row]
            accuracy = triplet_accuracy(encode(dataset.anchors), encode(dataset.positives), encode(flat), owners)
            return {"triplet_accuracy": accuracy, "num_triplets": len(dataset)}
        raise TypeError(f"cannot evaluate on {type(dataset).__name__}: expected labeled, pair or triplet data")
    finally:
        model.train(was_training)
