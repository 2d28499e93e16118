"""Batch-hard mining (Hermans et al., 2017), as pytorch-metric-learning's `BatchHardMiner`.

For every anchor that has at least one positive and one negative in the batch: its hardest
positive (the farthest) and its hardest negative (the closest). With multi-hot labels the
positives and negatives come from the `Relation` (by default: the farthest item sharing a
label, the closest sharing none). One B x B distance matrix, no loop over items.
"""

from __future__ import annotations

from typing import Any

import torch

from labelspace.distances import BaseDistance, LpDistance
from labelspace.miners.base import BaseMiner
from labelspace.relations import Relation, RelationRule, Rule


class BatchHardMiner(BaseMiner):
    """Batch-hard triplets: ``(a, argmax_{p in P(a)} d(a, p), argmin_{n in N(a)} d(a, n))`` for each usable anchor a.

    For similarities the hardest positive is the least similar and the hardest negative the most
    similar. Returns ``(a, p, n)`` with the anchors in increasing order; ties go to the lowest
    index (``torch.max`` / ``torch.min`` order), as in pytorch-metric-learning.

    Args:
        distance: default ``LpDistance()`` (Euclidean on L2-normalised embeddings).
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

    Example:
        >>> import torch
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> labels = torch.tensor([[1, 0], [1, 1], [1, 0], [0, 1]])
        >>> [t.tolist() for t in BatchHardMiner()(embeddings, labels)]  # item 1 has no negative
        [[0, 2, 3], [2, 0, 1], [3, 3, 2]]
    """

    def __init__(
        self,
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

    def mine(self, embeddings: torch.Tensor, relation: Relation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        positive, negative = relation.positive, relation.negative
        anchors = torch.where(positive.any(dim=1) & negative.any(dim=1))[0]
        if len(anchors) == 0:
            return anchors, anchors.clone(), anchors.clone()
        matrix = self.distance(embeddings)
        inf = float("inf")
        if self.distance.is_inverted:
            hardest_positive = torch.where(positive, matrix, inf).min(dim=1).indices
            hardest_negative = torch.where(negative, matrix, -inf).max(dim=1).indices
        else:
            hardest_positive = torch.where(positive, matrix, -inf).max(dim=1).indices
            hardest_negative = torch.where(negative, matrix, inf).min(dim=1).indices
        return anchors, hardest_positive[anchors], hardest_negative[anchors]
