"""What every miner shares: labels / multi-hot labels / a Relation in, an indices_tuple out.

A miner looks at the embeddings of a batch and picks the pairs or triplets worth training on.
It is called as ``miner(embeddings, labels)`` where ``labels`` is a 1-D tensor of class ids,
a B x num_labels 0/1 matrix, or a `Relation`, and returns pytorch-metric-learning's
``indices_tuple``: ``(a, p, n)`` for triplet miners, ``(a1, p, a2, n)`` for pair miners,
ready for any labelspace (or pytorch-metric-learning) loss. Mining runs without gradients.
Bad batches are refused as the losses refuse them: an empty batch, NaN or inf embeddings
(naming the rows) and labels that are not a tensor or a `Relation` raise ValueError.
"""

from __future__ import annotations

from typing import Any

import torch

from labelspace.distances import BaseDistance
from labelspace.losses.base import check_embeddings
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule, Rule


class BaseMiner(torch.nn.Module):
    """Base class of labelspace's miners; subclasses implement `mine` on float32 or float64 embeddings.

    Args:
        distance: the distance or similarity the miner ranks pairs by.
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.
    """

    def __init__(
        self,
        distance: BaseDistance,
        *,
        relation: RelationRule | Rule | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__()
        self.distance = distance
        self.relation_rule = RelationRule.of(relation, owner=type(self).__name__, **deprecated_relation_keywords)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | Relation) -> IndicesTuple:
        check_embeddings(embeddings)  # the losses' rule: 2-D, not empty, finite
        with torch.no_grad():
            relation = self.relation_rule.resolve(labels, None, embeddings)
            return self.mine(upcast_half(embeddings.detach()), relation)

    def mine(self, embeddings: torch.Tensor, relation: Relation) -> IndicesTuple:
        raise NotImplementedError
