"""Hard negatives mined with a model: labelled texts to (anchor, positive, negatives) triplets.

What users of sentence-transformers do with ``mine_hard_negatives``, for multi-label data: for every
anchor text, the negatives are the texts most similar to it (cosine of the model's embeddings) that
**share no label** with it (the negatives of `labelspace.relations.RelationRule`'s ``overlap`` rule),
and the positive is a text sharing at least one label with it (a positive of that rule).

- ``range_min`` skips the ``range_min`` most similar candidates (likely near duplicates or
  unlabelled positives, i.e. false negatives); ``max_score`` drops every candidate more similar
  than that before ranking (so ``range_min`` counts what is left).
- ``range_max`` bounds the ranks a negative may come from (candidates ranked ``range_min`` to
  ``range_max - 1``, 0-based); ``sampling="top"`` takes the ``num_negatives`` most similar of them,
  ``sampling="random"`` draws ``num_negatives`` of them at random (seeded). Without ``range_max``,
  random sampling draws among all candidates.
- ``positive``: ``"random"`` (default: a seeded uniform draw among the texts sharing a label, like
  the given positive of sentence-transformers' pairs, which knows nothing of the model),
  ``"most_similar"`` (an easy positive) or ``"least_similar"`` (a hard positive).
- Anchors without a positive (a label no other text carries, or no label) or with fewer than
  ``num_negatives`` candidates are skipped and counted. ``max_anchors`` keeps a seeded random subset.
- Duplicate texts count once, with the union of their labels, so no triplet repeats a text.

Embeddings are computed once; anchors go in blocks of ``block_size``: memory O(block_size x N).
The ``torch`` backend ranks a block's masked similarity matrix with one ``topk``; the ``faiss``
backend (``IndexFlatIP``, exact) searches the nearest texts and widens the search until every row
has enough candidates that share no label. Both give the same triplets (up to the order of exactly
tied similarities); ``auto`` picks faiss when installed.

Example:
    >>> import numpy as np
    >>> embeddings = np.array([[1.0, 0.0], [0.9, 0.3], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    >>> mined = mine_hard_negative_indices(embeddings, labels, backend="torch")
    >>> mined.anchors.tolist(), mined.negatives[:, 0].tolist()  # text 2 is the closest other-label text of 0 and 1
    ([0, 1, 2, 3, 4], [2, 2, 1, 1, 1])
    >>> mine_hard_negative_indices(embeddings, labels, range_min=1, backend="torch").negatives[:2, 0].tolist()
    [4, 4]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from labelspace.data.datasets import LabeledDataset, TripletDataset
from labelspace.evaluation.classification import check_label_matrix
from labelspace.evaluation.knn import BACKENDS, faiss_available
from labelspace.evaluation.retrieval import as_embedding_tensor
from labelspace.relations import RelationRule

POSITIVE_STRATEGIES = ("random", "most_similar", "least_similar")
SAMPLING = ("top", "random")
_OVERLAP = RelationRule("overlap")  # positives share a label, negatives (candidates) share none

__all__ = [
    "POSITIVE_STRATEGIES",
    "SAMPLING",
    "MinedTriplets",
    "mine_hard_negative_indices",
    "mine_hard_negatives",
]


@dataclass
class MinedTriplets:
    """Mined triplets as row indices of the labelled data, with their cosine similarities.

    ``anchors`` and ``positives`` (m,), ``negatives`` (m x num_negatives, most similar first for
    ``sampling="top"``), ``positive_scores`` (m,) and ``negative_scores`` (m x num_negatives).
    ``num_anchors`` anchors were tried; ``without_positive`` and ``without_negatives`` of them were
    skipped (no text sharing a label; fewer than ``num_negatives`` candidates sharing none).
    """

    anchors: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    positive_scores: np.ndarray
    negative_scores: np.ndarray
    num_anchors: int
    without_positive: int
    without_negatives: int

    def __len__(self) -> int:
        return len(self.anchors)

    def to_triplets(self, texts: Sequence[str]) -> TripletDataset:
        """The `TripletDataset` of these indices into ``texts`` (one negative: a list of str)."""
        pick = np.asarray(texts, dtype=object)
        negatives = pick[self.negatives] if len(self) else np.zeros((0, self.negatives.shape[1]), dtype=object)
        rows: list[str] | list[list[str]] = negatives[:, 0].tolist() if negatives.shape[1] == 1 else negatives.tolist()
        return TripletDataset(pick[self.anchors].tolist(), pick[self.positives].tolist(), rows)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_options(
    num_negatives: int,
    range_min: int,
    range_max: int | None,
    max_score: float | None,
    sampling: str,
    positive: str,
    max_anchors: int | None,
    backend: str,
    block_size: int,
) -> None:
    if not _is_int(num_negatives) or num_negatives < 1:
        raise ValueError(f"num_negatives must be an integer >= 1, got {num_negatives!r}")
    if not _is_int(range_min) or range_min < 0:
        raise ValueError(f"range_min must be an integer >= 0, got {range_min!r}")
    if range_max is not None and (not _is_int(range_max) or range_max < range_min + num_negatives):
        raise ValueError(
            f"range_max must be an integer >= range_min + num_negatives ({range_min + num_negatives}), "
            f"got {range_max!r}"
        )
    if max_score is not None and (not isinstance(max_score, (int, float)) or not math.isfinite(max_score)):
        raise ValueError(f"max_score must be a finite number (a cosine similarity) or None, got {max_score!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
    if positive not in POSITIVE_STRATEGIES:
        raise ValueError(f"positive must be one of {', '.join(POSITIVE_STRATEGIES)}, got {positive!r}")
    if max_anchors is not None and (not _is_int(max_anchors) or max_anchors < 1):
        raise ValueError(f"max_anchors must be an integer >= 1 or None, got {max_anchors!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise ValueError("backend='faiss' needs the faiss package (pip install faiss-cpu); or use 'torch'")
    if not _is_int(block_size) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")


def _distinct_rows(texts: Sequence[str] | None, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct text in order of appearance, distinct id of every row)."""
    if texts is None:
        rows = np.arange(num_rows)
        return rows, rows
    _, first, inverse = np.unique(np.asarray(list(texts), dtype=object), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def _ranked_candidates_torch(
    similarities: torch.Tensor, candidate: torch.Tensor, depth: int
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = similarities.masked_fill(~candidate, -math.inf)
    top = torch.topk(scores, depth, dim=1)
    return top.values, top.indices


def _ranked_candidates_faiss(
    index: Any, queries: torch.Tensor, candidate: torch.Tensor, depth: int, max_score: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``depth`` best candidates per row by faiss search, widened until every row has enough (or all)."""
    total = candidate.shape[1]
    candidate = candidate.cpu()
    query_array = np.ascontiguousarray(queries.float().cpu().numpy())
    width = min(total, depth + int((~candidate).sum(1).max()))
    while True:
        found, indices = index.search(query_array, width)
        values, indices = torch.from_numpy(found), torch.from_numpy(indices).long()
        valid = candidate.gather(1, indices)
        if max_score is not None:
            valid &= values <= max_score
        if width >= total or bool((valid.sum(1) >= depth).all()):
            break
        width = min(total, 2 * width)
    ranked = torch.where(valid, values, torch.full_like(values, -math.inf))
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :depth]
    return ranked.gather(1, order), indices.gather(1, order)


def mine_hard_negative_indices(
    embeddings: Any,
    labels: Any,
    texts: Sequence[str] | None = None,
    *,
    num_negatives: int = 1,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    sampling: str = "top",
    positive: str = "random",
    max_anchors: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    block_size: int = 1024,
    device: str | torch.device | None = None,
    show_progress_bar: bool = False,
) -> MinedTriplets:
    """Mine (anchor, positive, negatives) as row indices from embeddings (n x d) and 0/1 labels (n x L).

    ``texts`` (optional, n) lets duplicate texts count once (see the module docstring for every
    option). Deterministic for a given ``seed``.
    """
    _check_options(num_negatives, range_min, range_max, max_score, sampling, positive, max_anchors, backend, block_size)
    vectors = as_embedding_tensor(embeddings, "embeddings").float()
    label_matrix = check_label_matrix(labels, "labels")
    if len(label_matrix) != len(vectors):
        raise ValueError(f"labels has {len(label_matrix)} rows but embeddings has {len(vectors)}")
    if texts is not None and len(texts) != len(vectors):
        raise ValueError(f"texts has {len(texts)} items but embeddings has {len(vectors)} rows")
    target = torch.device(device) if device is not None else torch.device("cpu")
    keep, group = _distinct_rows(texts, len(vectors))
    union = np.zeros((len(keep), label_matrix.shape[1]), dtype=bool)
    np.logical_or.at(union, group, label_matrix)
    vectors = F.normalize(vectors[torch.from_numpy(keep)], dim=1).to(target)
    label_tensor = torch.from_numpy(union.astype(np.float32)).to(target)
    total = len(keep)

    generator = torch.Generator().manual_seed(int(seed))
    anchors = torch.arange(total)
    if max_anchors is not None and max_anchors < total:
        anchors = torch.randperm(total, generator=generator)[:max_anchors].sort().values
    use_faiss = backend == "faiss" or (backend == "auto" and faiss_available())
    index = None
    if use_faiss and total:
        import faiss

        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors.cpu().numpy()))
    # How deep each anchor's candidate ranking must go: to range_max, or to the last negative taken.
    depth = range_min + num_negatives if sampling == "top" else total
    depth = min(range_max if range_max is not None else depth, total)
    window = max(depth - range_min, 0)

    kept: list[tuple[torch.Tensor, ...]] = []
    without_positive = without_negatives = 0
    starts = range(0, len(anchors), block_size)
    for start in tqdm(starts, desc="Mining", unit="block", disable=not show_progress_bar):
        block = anchors[start : start + block_size].to(target)
        rows = torch.arange(len(block), device=target)
        is_positive, is_candidate, _ = _OVERLAP.masks(label_tensor[block], label_tensor)
        is_positive[rows, block] = False
        is_candidate[rows, block] = False
        needs_similarities = index is None or positive != "random"
        similarities = vectors[block] @ vectors.T if needs_similarities else None
        if max_score is not None and index is None:
            is_candidate &= similarities <= max_score

        if positive == "random":
            keys = torch.rand(is_positive.shape, generator=generator).to(target)
            chosen_positive = torch.where(is_positive, keys, torch.full_like(keys, -1.0)).argmax(1)
        elif positive == "most_similar":
            chosen_positive = similarities.masked_fill(~is_positive, -math.inf).argmax(1)
        else:
            chosen_positive = similarities.masked_fill(~is_positive, math.inf).argmin(1)
        has_positive = is_positive.any(1)

        if index is None:
            ranked_scores, ranked_indices = _ranked_candidates_torch(similarities, is_candidate, depth)
        else:
            ranked_scores, ranked_indices = _ranked_candidates_faiss(
                index, vectors[block], is_candidate, depth, max_score
            )
            ranked_scores, ranked_indices = ranked_scores.to(target), ranked_indices.to(target)
        scores, indices = ranked_scores[:, range_min:], ranked_indices[:, range_min:]
        if sampling == "random" and window > 0:
            keys = torch.rand((len(block), window), generator=generator).to(target)
            keys = torch.where(torch.isfinite(scores), keys, torch.full_like(keys, -1.0))
            picked = torch.topk(keys, min(num_negatives, window), dim=1).indices.sort(1).values
            scores, indices = scores.gather(1, picked), indices.gather(1, picked)
        scores, indices = scores[:, :num_negatives], indices[:, :num_negatives]
        has_negatives = (scores.shape[1] == num_negatives) & torch.isfinite(scores).all(1)

        ok = has_positive & has_negatives
        without_positive += int((~has_positive).sum())
        without_negatives += int((has_positive & ~has_negatives).sum())
        positive_scores = (vectors[block] * vectors[chosen_positive]).sum(1)
        kept.append(tuple(t[ok].cpu() for t in (block, chosen_positive, indices, positive_scores, scores)))

    if kept:
        anchor_ids, positive_ids, negative_ids, positive_scores, negative_scores = (
            torch.cat(parts).numpy() for parts in zip(*kept, strict=True)
        )
    else:
        anchor_ids = positive_ids = np.zeros(0, dtype=np.int64)
        negative_ids = np.zeros((0, num_negatives), dtype=np.int64)
        positive_scores, negative_scores = np.zeros(0, np.float32), np.zeros((0, num_negatives), np.float32)
    return MinedTriplets(
        anchors=keep[anchor_ids],
        positives=keep[positive_ids],
        negatives=keep[negative_ids].reshape(-1, num_negatives),
        positive_scores=positive_scores,
        negative_scores=negative_scores.reshape(-1, num_negatives),
        num_anchors=len(anchors),
        without_positive=without_positive,
        without_negatives=without_negatives,
    )


def mine_hard_negatives(
    model: Any,
    dataset: LabeledDataset,
    *,
    num_negatives: int = 1,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    sampling: str = "top",
    positive: str = "random",
    max_anchors: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    backend: str = "auto",
    block_size: int = 1024,
    show_progress_bar: bool = False,
) -> TripletDataset:
    """Triplets of ``dataset``'s texts with hard negatives by ``model`` (anything with ``encode``).

    The texts are encoded once (``model.encode(texts, batch_size=..., show_progress_bar=...)``), then
    `mine_hard_negative_indices` picks the triplets.

    Example:
        >>> import tempfile
        >>> from labelspace.data.builtin import demo
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()))
        >>> triplets = mine_hard_negatives(model, demo("dev"), num_negatives=2)
        >>> triplets.num_negatives, len(triplets) > 0
        (2, True)
    """
    if not isinstance(dataset, LabeledDataset):
        raise ValueError(f"mining needs labelled data (a LabeledDataset), got {type(dataset).__name__}")
    embeddings = model.encode(dataset.texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
    mined = mine_hard_negative_indices(
        embeddings,
        dataset.labels,
        dataset.texts,
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        sampling=sampling,
        positive=positive,
        max_anchors=max_anchors,
        seed=seed,
        backend=backend,
        block_size=block_size,
        show_progress_bar=show_progress_bar,
    )
    return mined.to_triplets(dataset.texts)
