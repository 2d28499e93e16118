"""k-nearest-neighbour label scores from embeddings, and their mix with a classifier head.

`KNNClassifier` scores each label by the votes of the k most similar fitted items:
``score[label] = sum of the weights of the neighbours carrying the label / sum of all k weights``,
so scores lie in [0, 1]. With ``weighting="similarity"`` a neighbour's weight is its similarity
clamped at 0 (a dissimilar neighbour does not vote); when all k weights are 0 the row falls back
to uniform weights. With ``weighting="uniform"`` every neighbour weighs 1.

Two exact search backends give the same neighbours: ``faiss`` (``IndexFlatIP`` on float32
vectors, L2-normalised for cosine) and ``torch`` (blockwise matrix product + ``topk``).
``auto`` picks faiss when it is installed, torch otherwise.

Example:
    >>> import numpy as np
    >>> embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> labels = np.array([[1, 0], [1, 1], [0, 1]])
    >>> knn = KNNClassifier(k=2, backend="torch").fit(embeddings, labels)
    >>> knn.predict_proba(np.array([[1.0, 0.05]])).round(3).tolist()
    [[1.0, 0.5]]
    >>> knn.predict_proba(embeddings, exclude_self=True).round(2).tolist()  # leave-one-out
    [[1.0, 1.0], [0.9, 0.1], [1.0, 1.0]]
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelspace.evaluation.classification import check_label_matrix, check_probabilities, f1_score
from labelspace.evaluation.retrieval import SIMILARITIES, as_embedding_tensor
from labelspace.evaluation.thresholds import tune_thresholds as tune_label_thresholds

BACKENDS = ("auto", "faiss", "torch")
WEIGHTINGS = ("similarity", "uniform")
MIXING_METRICS = ("macro_f1", "micro_f1")

__all__ = ["BACKENDS", "MIXING_METRICS", "WEIGHTINGS", "KNNClassifier", "hybrid_scores", "tune_mixing_weight"]


def faiss_available() -> bool:
    """Whether the optional faiss package can be imported."""
    return importlib.util.find_spec("faiss") is not None


class KNNClassifier:
    """Multi-label scores from the similarity-weighted votes of the k nearest fitted items.

    Example:
        >>> knn = KNNClassifier(k=1, backend="torch").fit([[1.0, 0.0], [0.0, 1.0]], [[1, 0], [0, 1]])
        >>> knn.predict_proba([[0.8, 0.2]]).tolist()
        [[1.0, 0.0]]
    """

    def __init__(
        self,
        k: int = 10,
        similarity: str = "cosine",
        backend: str = "auto",
        weighting: str = "similarity",
        block_size: int = 1024,
    ) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "faiss" and not faiss_available():
            raise ValueError("backend='faiss' needs the faiss package (pip install faiss-cpu); or use 'torch'")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
            raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
        self.k = k
        self.similarity = similarity
        self.backend = backend
        self.weighting = weighting
        self.block_size = block_size
        self._embeddings: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._index: Any = None

    @property
    def resolved_backend(self) -> str:
        """The backend actually used: "auto" becomes "faiss" when installed, else "torch"."""
        if self.backend == "auto":
            return "faiss" if faiss_available() else "torch"
        return self.backend

    @property
    def num_fitted(self) -> int:
        return 0 if self._embeddings is None else len(self._embeddings)

    def _prepare(self, embeddings: Any, name: str) -> torch.Tensor:
        tensor = as_embedding_tensor(embeddings, name, torch.device("cpu")).float()
        return F.normalize(tensor, dim=1) if self.similarity == "cosine" else tensor

    def fit(self, embeddings: Any, labels: Any) -> KNNClassifier:
        """Remember the embeddings (n x d) and their multi-hot labels (n x L); returns self."""
        vectors = self._prepare(embeddings, "embeddings")
        label_matrix = check_label_matrix(labels, "labels")
        if len(label_matrix) != len(vectors):
            raise ValueError(f"labels has {len(label_matrix)} rows but embeddings has {len(vectors)}")
        if len(vectors) == 0:
            raise ValueError("fit needs at least one embedding")
        self._embeddings = vectors
        self._labels = torch.from_numpy(label_matrix.astype(np.float64))
        self._index = None
        if self.resolved_backend == "faiss":
            import faiss

            self._index = faiss.IndexFlatIP(vectors.shape[1])
            self._index.add(np.ascontiguousarray(vectors.numpy()))
        return self

    def _check_query(self, embeddings: Any, exclude_self: bool) -> tuple[torch.Tensor, int]:
        if self._embeddings is None:
            raise ValueError("call fit(embeddings, labels) before querying the classifier")
        queries = self._prepare(embeddings, "embeddings")
        if queries.shape[1] != self._embeddings.shape[1]:
            raise ValueError(
                f"embeddings must have dimension {self._embeddings.shape[1]} (as fitted), got {queries.shape[1]}"
            )
        if exclude_self and len(queries) != self.num_fitted:
            raise ValueError(
                f"exclude_self=True queries the fitted set itself, so embeddings needs {self.num_fitted} rows, "
                f"got {len(queries)}"
            )
        neighbours = min(self.k, self.num_fitted - int(exclude_self))
        if neighbours < 1:
            raise ValueError("no neighbour left: exclude_self=True on a classifier fitted with one item")
        return queries, neighbours

    def _search_torch(self, queries: torch.Tensor, neighbours: int, exclude_self: bool) -> tuple[torch.Tensor, ...]:
        found_similarities, found_indices = [], []
        for start in range(0, len(queries), self.block_size):
            similarities = queries[start : start + self.block_size] @ self._embeddings.T
            if exclude_self:
                rows = torch.arange(len(similarities))
                similarities[rows, rows + start] = -math.inf
            top = torch.topk(similarities, neighbours, dim=1)
            found_similarities.append(top.values)
            found_indices.append(top.indices)
        return torch.cat(found_similarities), torch.cat(found_indices)

    def _search_faiss(self, queries: torch.Tensor, neighbours: int, exclude_self: bool) -> tuple[torch.Tensor, ...]:
        similarities, indices = self._index.search(
            np.ascontiguousarray(queries.numpy()), neighbours + int(exclude_self)
        )
        similarities, indices = torch.from_numpy(similarities), torch.from_numpy(indices).long()
        if exclude_self:
            # Drop each row's own index; a row whose own index was not found (ties) drops its last neighbour.
            dropped = indices == torch.arange(len(indices))[:, None]
            dropped[~dropped.any(1), -1] = True
            similarities = similarities[~dropped].reshape(len(indices), neighbours)
            indices = indices[~dropped].reshape(len(indices), neighbours)
        return similarities, indices

    def kneighbors(self, embeddings: Any, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, indices), each n x k, most similar first; k is capped at the fitted items available."""
        queries, neighbours = self._check_query(embeddings, exclude_self)
        if len(queries) == 0:
            return np.zeros((0, neighbours), dtype=np.float32), np.zeros((0, neighbours), dtype=np.int64)
        search = (
            self._search_faiss if self.resolved_backend == "faiss" and self._index is not None else self._search_torch
        )
        similarities, indices = search(queries, neighbours, exclude_self)
        return similarities.numpy(), indices.numpy()

    def predict_proba(self, embeddings: Any, exclude_self: bool = False) -> np.ndarray:
        """n x L label scores in [0, 1]; ``exclude_self`` leaves each fitted item out of its own vote."""
        similarities, indices = self.kneighbors(embeddings, exclude_self)
        weights = torch.from_numpy(similarities).double()
        if self.weighting == "uniform":
            weights = torch.ones_like(weights)
        else:
            weights = weights.clamp_min(0.0)
            weights[weights.sum(1) == 0] = 1.0
        weights = weights / weights.sum(1, keepdim=True)
        index_tensor = torch.from_numpy(indices)
        block_starts = [*range(0, len(index_tensor), self.block_size), len(index_tensor)]
        scores = [
            torch.einsum("nk,nkl->nl", weights[start:stop], self._labels[index_tensor[start:stop]])
            for start, stop in zip(block_starts[:-1], block_starts[1:], strict=True)
        ]
        if not scores:
            return np.zeros((0, self._labels.shape[1]))
        return torch.cat(scores).clamp(0.0, 1.0).numpy()


def hybrid_scores(head_probabilities: Any, knn_probabilities: Any, weight: float) -> np.ndarray:
    """``weight * head + (1 - weight) * knn``: a convex mix of two n x L probability matrices.

    Example:
        >>> hybrid_scores([[0.8, 0.2]], [[0.4, 0.6]], weight=0.25).round(6).tolist()
        [[0.5, 0.5]]
    """
    if not isinstance(weight, (int, float, np.floating)) or not 0 <= weight <= 1:
        raise ValueError(f"weight must be a float in [0, 1], got {weight!r}")
    head = check_probabilities(head_probabilities, name="head_probabilities")
    knn = check_probabilities(knn_probabilities, head.shape, name="knn_probabilities")
    return weight * head + (1 - weight) * knn


def tune_mixing_weight(
    y_true: Any,
    head_probabilities: Any,
    knn_probabilities: Any,
    *,
    metric: str = "macro_f1",
    weights: Sequence[float] | np.ndarray = np.linspace(0, 1, 11),
    tune_thresholds: bool = True,
) -> tuple[float, float]:
    """(best weight, its score): the head/kNN mix with the best macro- or micro-F1 on (y_true, probabilities).

    For each candidate weight the mixed scores are thresholded at per-label thresholds tuned on
    the same data (`tune_thresholds`, default options) or, with ``tune_thresholds=False``, at 0.5.
    Scores measured on the tuning data are optimistic: confirm on held-out data. Ties go to the
    first weight listed.

    Example:
        >>> y = [[1, 0], [0, 1], [1, 1]]
        >>> head, knn = [[0.9, 0.1], [0.6, 0.4], [0.7, 0.8]], [[0.6, 0.4], [0.2, 0.9], [0.8, 0.7]]
        >>> tune_mixing_weight(y, head, knn, weights=[0.0, 0.5, 1.0], tune_thresholds=False)
        (0.0, 1.0)
    """
    if metric not in MIXING_METRICS:
        raise ValueError(f"metric must be one of {MIXING_METRICS}, got {metric!r}")
    candidates = np.asarray(weights, dtype=np.float64)
    if candidates.ndim != 1 or candidates.size == 0 or (candidates < 0).any() or (candidates > 1).any():
        raise ValueError(f"weights must be a non-empty 1-D list of floats in [0, 1], got {weights!r}")
    truth = check_label_matrix(y_true)
    head = check_probabilities(head_probabilities, truth.shape, name="head_probabilities")
    knn = check_probabilities(knn_probabilities, truth.shape, name="knn_probabilities")
    average = "macro" if metric == "macro_f1" else "micro"
    results = []
    for weight in candidates:
        mixed = weight * head + (1 - weight) * knn
        thresholds = tune_label_thresholds(truth, mixed).thresholds if tune_thresholds else 0.5
        results.append(f1_score(truth, mixed, thresholds=thresholds, average=average))
    best = int(np.argmax(results))
    return float(candidates[best]), float(results[best])
