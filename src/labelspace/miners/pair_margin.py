"""Pair-margin mining, as pytorch-metric-learning's `PairMarginMiner`.

Keeps the positive pairs that are farther apart than ``pos_margin`` and the negative pairs that
are closer than ``neg_margin`` (with a similarity, e.g. `CosineSimilarity`: positives less
similar than ``pos_margin``, negatives more similar than ``neg_margin``). The positives and
negatives come from the batch's `Relation`, so multi-hot labels and pairs the relation ignores
work as they do everywhere in labelspace.

Output order is pytorch-metric-learning's: anchor-major, then by index (row-major over the B x B
matrix), so ``(a1, p, a2, n)`` equals its output exactly. Cost: one B x B distance matrix, two
comparisons and two ``torch.where``.
"""

from __future__ import annotations

from typing import Any

import torch

from labelspace.distances import BaseDistance, LpDistance
from labelspace.miners.base import BaseMiner
from labelspace.relations import Relation, RelationRule, Rule


class PairMarginMiner(BaseMiner):
    """Keeps (a,p) with d_ap > pos_margin and (a,n) with d_an < neg_margin (similarities: S_ap < pos, S_an > neg).

    Returns ``(a1, p, a2, n)``, row-major (see the module docstring).

    Args:
        pos_margin: positives within this distance are easy and dropped (default 0.2, as
            pytorch-metric-learning).
        neg_margin: negatives beyond this distance are easy and dropped (default 0.8).
        distance: default `LpDistance` (Euclidean on L2-normalised embeddings).
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

    Example:
        >>> import torch
        >>> from labelspace.miners.pair_margin import PairMarginMiner
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.99, 0.141]])
        >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 0]])
        >>> # positives: d(0,1) = 0.894, d(1,2) = 0.632, d(1,3) = 0.766 are hard, d(0,3) = 0.141 is easy;
        >>> # negatives: d(0,2) = 1.414 and d(2,3) = 1.31 are both easy
        >>> [t.tolist() for t in PairMarginMiner()(embeddings, labels)]
        [[0, 1, 1, 1, 2, 3], [1, 0, 2, 3, 1, 1], [], []]
    """

    def __init__(
        self,
        pos_margin: float = 0.2,
        neg_margin: float = 0.8,
        distance: BaseDistance | None = None,
        *,
        relation: RelationRule | Rule | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__(
            LpDistance() if distance is None else distance,
            relation=relation,
            **deprecated_relation_keywords,
        )
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)

    def mine(
        self, embeddings: torch.Tensor, relation: Relation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mat = self.distance(embeddings)
        if self.distance.is_inverted:
            hard_positive = relation.positive & (mat < self.pos_margin)
            hard_negative = relation.negative & (mat > self.neg_margin)
        else:
            hard_positive = relation.positive & (mat > self.pos_margin)
            hard_negative = relation.negative & (mat < self.neg_margin)
        anchors_positive, positives = torch.where(hard_positive)
        anchors_negative, negatives = torch.where(hard_negative)
        return anchors_positive, positives, anchors_negative, negatives

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"
