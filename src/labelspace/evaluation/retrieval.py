"""Retrieval metrics for embeddings of multi-label (or single-label) items.

Each query ranks the reference items by similarity (cosine or dot product). Relevance:

- ``overlap`` (default): a reference is relevant when it shares at least one label with the
  query (a positive of `labelspace.relations.RelationRule`'s ``overlap`` rule); every relevant
  item has gain 1.
- ``jaccard``: the gain of a reference is the Jaccard similarity of the two label sets (graded,
  used by NDCG); the binary metrics count a reference as relevant when Jaccard > 0, which is the
  same set as ``overlap``.
- 1-D integer labels (one class per item): relevant when the classes are equal (gain 1).

Definitions (those of pytorch-metric-learning's AccuracyCalculator with ``k=None``, whose values
the tests reproduce): ``R`` is the number of relevant references of a query (the query itself
never counts). ``precision_at_1``; ``precision_at_k`` (relevant among the first k, over k, with
k capped at the number of references); ``r_precision`` (relevant among the first R, over R);
``map_at_r`` (MAP@R: sum over the first R ranks of precision@i at each relevant rank, over R);
``ndcg_at_k`` (DCG of the first k gains with 1/log2(rank + 1) discounts over the ideal DCG);
``mrr`` (1 / rank of the first relevant reference, over the whole ranking). Queries with no
relevant reference (for example items without labels) are left out of every average, as PML
does; ``num_evaluated_queries`` says how many remain. R-based metrics always look as deep as R,
whatever ``k`` is.

Ties in similarity: neighbours come in the order ``torch.topk`` returns them; MRR counts only
the non-relevant references strictly more similar than the best relevant one.

Queries are processed in blocks of ``block_size``, so memory stays O(block_size x N).

Example:
    >>> import torch
    >>> embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 1]])
    >>> metrics = retrieval_metrics(embeddings, labels, k=2)
    >>> metrics["precision_at_1"], metrics["r_precision"], metrics["mrr"]
    (0.5, 0.625, 0.75)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from labelspace.evaluation.classification import to_numpy
from labelspace.relations import RelationRule, jaccard_similarity, shared_label_counts

RELEVANCE = ("overlap", "jaccard")
SIMILARITIES = ("cosine", "dot")

__all__ = ["RELEVANCE", "SIMILARITIES", "retrieval_metrics"]


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def _to_tensor(values: Any, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach()
    return torch.from_numpy(to_numpy(values, name).copy())


def as_embedding_tensor(embeddings: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A 2-D float tensor (float64 stays float64, everything else becomes float32) with finite values."""
    tensor = _to_tensor(embeddings, name)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D (num_items x dim), got shape {tuple(tensor.shape)}")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.float64 if tensor.dtype == torch.float64 else torch.float32)
    if device is not None:
        tensor = tensor.to(device)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must hold finite values (no NaN or inf)")
    return tensor


def as_label_tensor(labels: Any, name: str, device: torch.device) -> torch.Tensor:
    """1-D int64 class ids, or a 2-D float32 0/1 multi-hot matrix (LabelMatrix accepted)."""
    tensor = _to_tensor(labels, name)
    if tensor.dim() == 1:
        if tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise ValueError(f"{name} given as 1-D must hold integer class ids, got dtype {tensor.dtype}")
        return tensor.to(device=device, dtype=torch.int64)
    if tensor.dim() == 2:
        if tensor.numel() and not ((tensor == 0) | (tensor == 1)).all():
            raise ValueError(f"{name} given as 2-D must hold only 0/1 values (multi-hot labels)")
        return tensor.to(device=device, dtype=torch.float32)
    raise ValueError(f"{name} must be 1-D class ids or a 2-D multi-hot matrix, got shape {tuple(tensor.shape)}")


def _check_options(k: int, relevance: str, similarity: str, block_size: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if relevance not in RELEVANCE:
        raise ValueError(f"relevance must be one of {RELEVANCE}, got {relevance!r}")
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")


def _check_pairing(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    references: torch.Tensor,
    reference_labels: torch.Tensor,
    exclude_self: bool,
) -> None:
    if len(query_labels) != len(queries):
        raise ValueError(f"query_labels has {len(query_labels)} rows but query_embeddings has {len(queries)}")
    if len(reference_labels) != len(references):
        raise ValueError(
            f"reference_labels has {len(reference_labels)} rows but reference_embeddings has {len(references)}"
        )
    if queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"query and reference embeddings must have one dimension, got {queries.shape[1]} and {references.shape[1]}"
        )
    if query_labels.dim() != reference_labels.dim() or query_labels.shape[1:] != reference_labels.shape[1:]:
        raise ValueError(
            "query_labels and reference_labels must be of one kind (both 1-D class ids or both multi-hot with "
            f"the same number of labels), got shapes {tuple(query_labels.shape)} and {tuple(reference_labels.shape)}"
        )
    if exclude_self and len(references) < len(queries):
        raise ValueError(
            "exclude_self=True means query i is reference i, so the reference set needs at least as many rows as "
            f"the queries ({len(queries)}), got {len(references)}"
        )
    if len(references) - int(exclude_self) < 1:
        raise ValueError("there is no reference item to retrieve (need at least one besides the query itself)")


# ----------------------------------------------------------------------------------------------
# Computation
# ----------------------------------------------------------------------------------------------


_RELEVANT = RelationRule("overlap")
"""Relevant references are the positives of the ``overlap`` rule: at least one shared label."""


def _relevance_block(
    query_labels: torch.Tensor, reference_labels: torch.Tensor, graded: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevant bool b x N, gain float64 b x N) for a block of queries."""
    if query_labels.dim() == 1 or not graded:
        relevant, _, _ = _RELEVANT.masks(query_labels, reference_labels)
        return relevant, relevant.to(torch.float64)
    shared = shared_label_counts(query_labels, reference_labels).double()
    query_counts = query_labels.sum(1, keepdim=True).double()
    reference_counts = reference_labels.sum(1)[None, :].double()
    relevant, _, _ = _RELEVANT.decide(shared, query_counts, reference_counts)
    return relevant, jaccard_similarity(shared, query_counts, reference_counts)


def _block_metrics(
    similarities: torch.Tensor, relevant: torch.Tensor, gain: torch.Tensor, k: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-query metric values of one block, and the mask of queries with a relevant reference."""
    num_relevant = relevant.sum(1)
    depth = min(max(k, int(num_relevant.max())), similarities.shape[1])
    order = torch.topk(similarities, depth, dim=1).indices
    ranked = torch.gather(relevant, 1, order).to(torch.float64)
    ranked_gain = torch.gather(gain, 1, order)
    ranks = torch.arange(1, depth + 1, device=similarities.device, dtype=torch.float64)
    within_r = ranks[None, :] <= num_relevant[:, None]
    divisor = num_relevant.clamp_min(1).to(torch.float64)

    discount = 1.0 / torch.log2(ranks[:k] + 1)
    ideal_gain = torch.topk(gain, k, dim=1).values
    ideal_dcg = (ideal_gain * discount).sum(1)
    dcg = (ranked_gain[:, :k] * discount).sum(1)

    best_relevant = torch.where(relevant, similarities, torch.full_like(similarities, -math.inf)).max(1).values
    rank_of_first = 1 + ((similarities > best_relevant[:, None]) & ~relevant).sum(1)

    values = {
        "precision_at_1": ranked[:, 0],
        "precision_at_k": ranked[:, :k].sum(1) / k,
        "r_precision": (ranked * within_r).sum(1) / divisor,
        "map_at_r": (ranked * within_r * ranked.cumsum(1) / ranks).sum(1) / divisor,
        "ndcg_at_k": dcg / ideal_dcg.clamp_min(torch.finfo(torch.float64).tiny),
        "mrr": 1.0 / rank_of_first.to(torch.float64),
    }
    return num_relevant > 0, values


def retrieval_metrics(
    query_embeddings: Any,
    query_labels: Any,
    reference_embeddings: Any = None,
    reference_labels: Any = None,
    *,
    k: int = 10,
    relevance: str = "overlap",
    similarity: str = "cosine",
    exclude_self: bool | None = None,
    block_size: int = 1024,
) -> dict[str, float]:
    """Precision@1, precision@k, R-precision, MAP@R, NDCG@k and MRR of label-aware retrieval.

    Without a reference set the queries are searched among themselves and each query's own row
    is excluded. ``exclude_self`` (default: True exactly when no reference set is given) with a
    reference set means query i is reference i (the first rows of the reference set are the
    queries, PML's ``ref_includes_query``). Returns floats (NaN when no query has a relevant
    reference) plus ``k`` (as used, capped at the number of references), ``num_queries`` and
    ``num_evaluated_queries``.

    Example:
        >>> import numpy as np
        >>> queries, references = np.eye(2), np.array([[1.0, 0.1], [0.1, 1.0], [0.7, 0.7]])
        >>> metrics = retrieval_metrics(queries, [0, 1], references, [1, 1, 0], k=2)
        >>> metrics["precision_at_1"], metrics["mrr"], metrics["map_at_r"]
        (0.5, 0.75, 0.25)
    """
    _check_options(k, relevance, similarity, block_size)
    if (reference_embeddings is None) != (reference_labels is None):
        raise ValueError("give both reference_embeddings and reference_labels, or neither")
    queries = as_embedding_tensor(query_embeddings, "query_embeddings")
    device = queries.device
    query_label_tensor = as_label_tensor(query_labels, "query_labels", device)
    if reference_embeddings is None:
        references, reference_label_tensor = queries, query_label_tensor
        exclude_self = True if exclude_self is None else bool(exclude_self)
    else:
        references = as_embedding_tensor(reference_embeddings, "reference_embeddings", device)
        reference_label_tensor = as_label_tensor(reference_labels, "reference_labels", device)
        exclude_self = False if exclude_self is None else bool(exclude_self)
    _check_pairing(queries, query_label_tensor, references, reference_label_tensor, exclude_self)

    if references.dtype != queries.dtype:
        queries, references = queries.double(), references.double()
    if similarity == "cosine":
        queries, references = F.normalize(queries, dim=1), F.normalize(references, dim=1)
    k_used = min(k, len(references) - int(exclude_self))
    names = ("precision_at_1", "precision_at_k", "r_precision", "map_at_r", "ndcg_at_k", "mrr")
    totals = dict.fromkeys(names, 0.0)
    evaluated = 0
    for start in range(0, len(queries), block_size):
        stop = min(start + block_size, len(queries))
        similarities = queries[start:stop] @ references.T
        relevant, gain = _relevance_block(
            query_label_tensor[start:stop], reference_label_tensor, graded=relevance == "jaccard"
        )
        if exclude_self:
            rows = torch.arange(stop - start, device=device)
            similarities[rows, rows + start] = -math.inf
            relevant[rows, rows + start] = False
            gain[rows, rows + start] = 0.0
        has_relevant, values = _block_metrics(similarities, relevant, gain, k_used)
        evaluated += int(has_relevant.sum())
        for name in names:
            totals[name] += float(values[name][has_relevant].sum())

    metrics: dict[str, Any] = {name: totals[name] / evaluated if evaluated else math.nan for name in names}
    metrics.update(k=k_used, num_queries=len(queries), num_evaluated_queries=evaluated)
    return metrics
