"""Triplet margin mining, as pytorch-metric-learning's `TripletMarginMiner`.

Scans every (anchor, positive, negative) triplet of the batch and keeps those whose margin
``m = d(a, n) - d(a, p)`` (``s(a, p) - s(a, n)`` for similarities) is in the chosen range:

- ``"all"``: ``m <= margin`` (violates the margin);
- ``"hard"``: ``m <= 0`` as well (the negative is at least as close as the positive);
- ``"semihard"``: ``0 < m <= margin``;
- ``"easy"``: ``m > margin``.

The scan runs chunk by chunk over the positive pairs (a, p), each against every candidate
negative, so memory is the B x B distance matrix plus work tensors of ``max(CHUNK_ELEMENTS, B)``
elements, plus the returned triplets; never a B x B x B tensor.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from labelspace.distances import BaseDistance, LpDistance
from labelspace.miners.base import BaseMiner
from labelspace.relations import Relation, RelationRule, Rule

TripletType = Literal["all", "hard", "semihard", "easy"]
TRIPLET_TYPES = ("all", "hard", "semihard", "easy")
CHUNK_ELEMENTS = 1 << 22
"""Largest work tensor (elements) of the scan; a chunk is at least one row of B."""


class TripletMarginMiner(BaseMiner):
    """Triplets by margin: keep ``(a, p, n)`` with ``d(a,n) - d(a,p) <= margin`` (``"all"``; others: module doc).

    Returns ``(a, p, n)`` in the order of pytorch-metric-learning's ``get_all_triplets_indices``
    (anchor, then positive, then negative, increasing), with the same defaults
    (``margin=0.2``, ``type_of_triplets="all"``, ``LpDistance()``).

    Args:
        margin: the margin the triplets are measured against.
        type_of_triplets: ``"all"``, ``"hard"``, ``"semihard"`` or ``"easy"``.
        distance: default ``LpDistance()`` (Euclidean on L2-normalised embeddings).
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

    Example:
        >>> import torch
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
        >>> labels = torch.tensor([0, 0, 1])
        >>> miner = TripletMarginMiner(margin=0.2, type_of_triplets="hard")
        >>> [t.tolist() for t in miner(embeddings, labels)]  # item 2 is closer to both than they are to each other
        [[0, 1], [1, 0], [2, 2]]
    """

    def __init__(
        self,
        margin: float = 0.2,
        type_of_triplets: TripletType = "all",
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
        if type_of_triplets not in TRIPLET_TYPES:
            raise ValueError(f"type_of_triplets must be one of {', '.join(TRIPLET_TYPES)}; got {type_of_triplets!r}")
        self.margin = margin
        self.type_of_triplets: TripletType = type_of_triplets

    def keep(self, triplet_margin: torch.Tensor) -> torch.Tensor:
        """Which triplets to return, given their margins (pytorch-metric-learning's conditions)."""
        if self.type_of_triplets == "easy":
            return triplet_margin > self.margin
        condition = triplet_margin <= self.margin
        if self.type_of_triplets == "hard":
            condition &= triplet_margin <= 0
        elif self.type_of_triplets == "semihard":
            condition &= triplet_margin > 0
        return condition

    def mine(self, embeddings: torch.Tensor, relation: Relation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = embeddings.shape[0]
        negative = relation.negative
        anchors, positives = torch.where(relation.positive & negative.any(dim=1, keepdim=True))
        if len(anchors) == 0:
            return anchors, positives, anchors.clone()
        matrix = self.distance(embeddings)
        step = max(1, CHUNK_ELEMENTS // max(size, 1))
        found = []
        for start in range(0, len(anchors), step):
            anchor, positive = anchors[start : start + step], positives[start : start + step]
            to_positive = matrix[anchor, positive][:, None]
            to_negative = matrix[anchor]
            triplet_margin = to_positive - to_negative if self.distance.is_inverted else to_negative - to_positive
            rows, negatives = torch.where(negative[anchor] & self.keep(triplet_margin))
            found.append((anchor[rows], positive[rows], negatives))
        if len(found) == 1:
            return found[0]
        return tuple(torch.cat(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"margin={self.margin}, type_of_triplets={self.type_of_triplets!r}"
