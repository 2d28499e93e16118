"""Multi-similarity mining (Wang et al., 2019), as pytorch-metric-learning's `MultiSimilarityMiner`.

A positive pair (a, p) is kept when it is less similar than the anchor's most similar negative
plus ``epsilon``; a negative pair (a, n) when it is more similar than the anchor's least similar
positive minus ``epsilon``. With a distance instead of a similarity the comparisons flip. The
positives and negatives come from the batch's `Relation`, so with multi-hot labels "most similar
negative" means over the items sharing no label (rule ``overlap``), and pairs the relation
ignores (e.g. between the ``jaccard`` thresholds) are never returned.

Output order is pytorch-metric-learning's: anchors in increasing order, and within an anchor the
pairs by increasing similarity (distance) value, so ``(a1, p, a2, n)`` equals its output exactly
(ties, i.e. exactly equal values within an anchor, go to the lower index here).

Cost: one B x B similarity matrix, two masked row reductions and two masks, then the ordering:
when few pairs are mined (a trained model), one sort of their (anchor, value) keys; when many are
(more than 1/8 of all pairs, e.g. at initialisation), one row-wise sort of the matrix (on CPU,
of packed int64 (value, column) keys with numpy's vectorised sort), read through both masks.
"""

from __future__ import annotations

from typing import Any

import torch

from labelspace.distances import BaseDistance, CosineSimilarity
from labelspace.miners.base import BaseMiner
from labelspace.relations import Relation, RelationRule, Rule

# Above 1 / _DENSE_FRACTION of all pairs mined, sorting every row beats sorting the mined pairs.
_DENSE_FRACTION = 8


def _order_bits(values: torch.Tensor) -> torch.Tensor:
    """int32 whose signed order is the float32 order of ``values`` (-0.0 and 0.0 map to the same key)."""
    bits = torch.add(values, 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    return bits.bitwise_xor_(torch.bitwise_right_shift(bits, 31).bitwise_and_(0x7FFFFFFF))


def _sparse_pairs_by_value(mask: torch.Tensor, mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_pairs_by_value` with one sort of the mined pairs' (row, value) keys: cheap when they are few."""
    rows, cols = torch.where(mask)
    if rows.numel() < 2:
        return rows, cols
    values = mat[rows, cols]
    if values.dtype == torch.float32:
        order = torch.sort(rows * (1 << 32) + _order_bits(values), stable=True)[1]
    else:
        order = torch.sort(values + 0.0, stable=True)[1]
        order = order[torch.sort(rows[order], stable=True)[1]]
    return rows, cols[order]  # rows are already sorted, so only the columns move


def _sorted_columns(mat: torch.Tensor) -> torch.Tensor:
    """B x B' column indices of each row of ``mat`` by increasing value (ties: lower column)."""
    if mat.dtype != torch.float32:
        return torch.sort(mat, dim=1, stable=True)[1]
    columns = torch.arange(mat.shape[1], device=mat.device)
    keys = _order_bits(mat).to(torch.int64).bitwise_left_shift_(32).bitwise_or_(columns)  # unique per row
    if keys.device.type == "cpu":
        keys.numpy().sort(axis=1)  # in place; numpy's vectorised sort is several times faster on CPU
    else:
        keys = torch.sort(keys, dim=1)[0]
    return keys.bitwise_and_(0xFFFFFFFF)


def _pairs_by_value(
    mask: torch.Tensor, mat: torch.Tensor, sorted_columns: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (row, column) pairs of ``mask``: rows increasing, then ``mat`` values increasing (ties: lower column).

    ``sorted_columns`` (from `_sorted_columns`, or None) is used when many pairs are mined.
    """
    if sorted_columns is None:
        return _sparse_pairs_by_value(mask, mat)
    rows, ranks = torch.where(mask.gather(1, sorted_columns))
    return rows, sorted_columns[rows, ranks]


class MultiSimilarityMiner(BaseMiner):
    """Keeps (a,p) with S_ap - ε < max_{n∈N_a} S_an and (a,n) with S_an + ε > min_{p∈P_a} S_ap (flipped for distances).

    Returns ``(a1, p, a2, n)``, in pytorch-metric-learning's order (see the module docstring).

    Args:
        epsilon: the slack of both comparisons (default 0.1, as pytorch-metric-learning).
        distance: default `CosineSimilarity`.
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

    Example:
        >>> import torch
        >>> from labelspace.miners.multi_similarity import MultiSimilarityMiner
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8]])
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> # S(0,1) = 0 and S(2,3) = 0.96 for the positives; S(0,2) = 0.8, S(0,3) = 0.6,
        >>> # S(1,2) = 0.6, S(1,3) = 0.8 for the negatives
        >>> [t.tolist() for t in MultiSimilarityMiner()(embeddings, labels)]
        [[0, 1], [1, 0], [0, 0, 1, 1], [3, 2, 2, 3]]
    """

    def __init__(
        self,
        epsilon: float = 0.1,
        distance: BaseDistance | None = None,
        *,
        relation: RelationRule | Rule | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__(
            CosineSimilarity() if distance is None else distance,
            relation=relation,
            **deprecated_relation_keywords,
        )
        self.epsilon = float(epsilon)

    def mine(
        self, embeddings: torch.Tensor, relation: Relation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mat = self.distance(embeddings)
        positive, negative = relation.positive, relation.negative
        inf = torch.full((), float("inf"), dtype=mat.dtype, device=mat.device)
        scratch = torch.empty_like(mat)
        if self.distance.is_inverted:
            # Similarities: the hardest negative is the most similar, the hardest positive the least.
            hardest_negative = torch.where(negative, mat, -inf, out=scratch).amax(dim=1, keepdim=True)
            hardest_positive = torch.where(positive, mat, inf, out=scratch).amin(dim=1, keepdim=True)
            hard_positive = torch.lt(torch.sub(mat, self.epsilon, out=scratch), hardest_negative).logical_and_(positive)
            hard_negative = torch.gt(torch.add(mat, self.epsilon, out=scratch), hardest_positive).logical_and_(negative)
        else:
            hardest_negative = torch.where(negative, mat, inf, out=scratch).amin(dim=1, keepdim=True)
            hardest_positive = torch.where(positive, mat, -inf, out=scratch).amax(dim=1, keepdim=True)
            hard_positive = torch.gt(torch.add(mat, self.epsilon, out=scratch), hardest_negative).logical_and_(positive)
            hard_negative = torch.lt(torch.sub(mat, self.epsilon, out=scratch), hardest_positive).logical_and_(negative)
        del scratch
        # Order each anchor's pairs by value as pytorch-metric-learning does: sort the mined pairs when
        # they are few, else sort every row once and read both masks in that order.
        mined = int(torch.count_nonzero(hard_positive)) + int(torch.count_nonzero(hard_negative))
        dense = mined * _DENSE_FRACTION > mat.numel()
        sorted_columns = _sorted_columns(mat) if dense else None
        anchors_positive, positives = _pairs_by_value(hard_positive, mat, sorted_columns)
        anchors_negative, negatives = _pairs_by_value(hard_negative, mat, sorted_columns)
        return anchors_positive, positives, anchors_negative, negatives

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
