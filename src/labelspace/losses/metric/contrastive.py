"""Contrastive loss: pull positive pairs within ``pos_margin``, push negative pairs beyond ``neg_margin``.

Same meaning and defaults as pytorch-metric-learning's ``ContrastiveLoss`` (Hadsell et al., 2006),
computed on the B x B masks of a `Relation`, so it works unchanged on single-label, multi-label
and mined pair / triplet data. With a distance d (default `LpDistance`, smaller is closer):

    l+(a, p) = relu(d(a, p) - pos_margin)        for each positive pair (a, p)
    l-(a, n) = relu(neg_margin - d(a, n))        for each negative pair (a, n)

and with a similarity s (``distance.is_inverted``, e.g. `CosineSimilarity`, larger is closer):

    l+(a, p) = relu(pos_margin - s(a, p))        l-(a, n) = relu(s(a, n) - neg_margin)

so with `CosineSimilarity` the usual margins are ``pos_margin=1, neg_margin=0``. The loss is the
reduction of the positive-pair losses plus, separately, the reduction of the negative-pair
losses (the default ``"mean_nonzero"`` is pytorch-metric-learning's ``AvgNonZeroReducer``:
the mean over the pairs whose loss is above zero, and zero when there is none).

Multi-label graded positives: with ``positive_weighting="jaccard"`` each positive pair's loss
is weighted by the Jaccard similarity w(a, p) = |Y_a ∩ Y_p| / |Y_a ∪ Y_p| of the two label sets,
and the positive term becomes a weighted mean over the positive pairs counted by the reduction
(for ``"mean_nonzero"``, those with l+ > 0):

    L = sum_(a,p) w(a, p) l+(a, p) / sum_(a,p: l+>0) w(a, p)  +  mean_(a,n: l->0) l-(a, n)

The weights are ``relation.weight`` when the relation has them (``rule="jaccard"``, or a
`Relation` built with ``Relation.from_labels(labels, rule="jaccard")``); otherwise they are
computed from ``labels`` (1-D class ids give weight 1 to every positive, so the result equals
``"none"``). Without label sets to weigh by (an ``indices_tuple`` and no labels, or a Relation
without weights) the loss raises ``ValueError``. Negative pairs are never weighted.

Notes:
    - ``indices_tuple`` (from a miner) takes precedence over ``labels``, as in
      pytorch-metric-learning. It becomes B x B masks, so a pair listed twice (for example a
      triplet tuple ``(a, p, n)`` repeating the pair (a, p) for each of its negatives) counts
      once here, where pytorch-metric-learning would count it once per listing.
    - pytorch-metric-learning returns 0 when every index list holds at most one pair (a single
      positive and a single negative pair); here that pair still counts.
    - float16 / bfloat16 embeddings are upcast to float32 for the distance matrix and the loss
      is float32; float64 stays float64.
    - ``reduction="none"`` returns the per-pair losses: the positive pairs, then the negative
      pairs, each in anchor-major order (`Relation.pair_indices`); positive losses are
      multiplied by their weight when weighting.

Implementation: `contrastive_reference` below is the formula above on the distance matrix and the
relation's masks (`ContrastiveLoss.reference` calls it). `forward` runs it, or, where
`ContrastiveLoss.uses_kernel` says so, the fused kernel of ``_kernels/contrastive.py`` (same value
and gradient, row-blocked, no B x B loss tensor kept for the backward pass).

Example:
    >>> import torch
    >>> from labelspace.losses.metric.contrastive import ContrastiveLoss
    >>> embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    >>> # positives 0~1 (Jaccard 1/2) and 0~2 (Jaccard 1/3), negative 1~2;
    >>> # distances d(0,1) = 0.8944, d(0,2) = 1.4142, d(1,2) = 0.6325
    >>> round(ContrastiveLoss()(embeddings, labels).item(), 4)  # (0.8944 + 1.4142) / 2 + (1 - 0.6325)
    1.5219
    >>> weighted = ContrastiveLoss(positive_weighting="jaccard")
    >>> round(weighted(embeddings, labels).item(), 4)  # (0.8944 / 2 + 1.4142 / 3) / (1/2 + 1/3) + 0.3675
    1.4699
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance, LpDistance
from labelspace.losses.base import (
    MetricLoss,
    PositiveWeighting,
    Reduction,
    check_embeddings,
    check_positive_weighting,
    positive_weights,
    reduce_pair_losses,
)
from labelspace.losses.metric._kernels import builtin_distance
from labelspace.losses.metric._kernels.contrastive import contrastive_terms
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule

__all__ = ["ContrastiveLoss", "contrastive_reference"]


def contrastive_reference(
    matrix: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weight: torch.Tensor | None,
    *,
    pos_margin: float,
    neg_margin: float,
    distance: BaseDistance,
    reduction: Reduction,
) -> torch.Tensor:
    """The contrastive loss of a B x B distance (or similarity) matrix, as the formula reads.

    relu of each positive pair's distance beyond ``pos_margin`` and of each negative pair's distance
    within ``neg_margin`` (``distance.margin`` says which way "beyond" points), the positive side
    reduced with its ``weight`` (B x B, or None), the negative side reduced on its own, then summed;
    ``reduction="none"`` lists the positive pair losses, then the negative ones.

    Example:
        >>> import torch
        >>> from labelspace.distances import LpDistance
        >>> matrix = torch.tensor([[0.0, 0.3, 0.4], [0.3, 0.0, 1.5], [0.4, 1.5, 0.0]])
        >>> positive = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
        >>> negative = ~positive & ~torch.eye(3, dtype=torch.bool)  # 0~2 at 0.4, 1~2 at 1.5
        >>> options = dict(pos_margin=0.0, neg_margin=1.0, distance=LpDistance())
        >>> loss = contrastive_reference(matrix, positive, negative, None, reduction="mean_nonzero", **options)
        >>> round(loss.item(), 4)  # positives: 0.3 - 0 (twice); negatives: 1 - 0.4 (twice), 1 - 1.5 < 0 (twice)
        0.9
        >>> loss = contrastive_reference(matrix, positive, negative, None, reduction="mean", **options)
        >>> round(loss.item(), 4)  # 0.3 + (0.6 + 0.6 + 0 + 0) / 4
        0.6
    """
    beyond_pos_margin = F.relu(distance.margin(pos_margin, matrix))
    within_neg_margin = F.relu(distance.margin(matrix, neg_margin))
    positive_losses = torch.where(positive, beyond_pos_margin, 0)
    negative_losses = torch.where(negative, within_neg_margin, 0)
    if weight is not None:
        weight = weight.to(matrix.dtype)
    positive_term = reduce_pair_losses(positive_losses, reduction, mask=positive, weight=weight)
    negative_term = reduce_pair_losses(negative_losses, reduction, mask=negative)
    if reduction == "none":
        return torch.cat([positive_term, negative_term])
    return positive_term + negative_term


class ContrastiveLoss(MetricLoss):
    """Contrastive loss on positive and negative pairs (see the module docstring for the formula).

    Args:
        pos_margin: positive pairs closer than this (distance) / more similar than this
            (similarity) cost nothing. Default 0, as pytorch-metric-learning.
        neg_margin: negative pairs farther than this (distance) / less similar than this
            (similarity) cost nothing. Default 1, as pytorch-metric-learning.
        distance: default `LpDistance` (Euclidean on L2-normalised embeddings).
        reduction: default ``"mean_nonzero"`` (AvgNonZeroReducer), applied to the positive and
            the negative pair losses separately, then summed.
        positive_weighting: ``"none"`` or ``"jaccard"`` (weight each positive pair's loss by the
            Jaccard similarity of the two label sets).
        relation: how multi-hot labels become a Relation: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.
    """

    default_reduction: Reduction = "mean_nonzero"

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: BaseDistance | None = None,
        reduction: Reduction | None = None,
        positive_weighting: PositiveWeighting = "none",
        *,
        relation: RelationRule | str | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__(
            LpDistance() if distance is None else distance,
            reduction,
            relation=relation,
            **deprecated_relation_keywords,
        )
        check_positive_weighting(positive_weighting)
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.positive_weighting: PositiveWeighting = positive_weighting

    def reference(self, embeddings: torch.Tensor, relation: Relation, weight: torch.Tensor | None) -> torch.Tensor:
        """`contrastive_reference` of this loss's distance matrix and the relation's masks."""
        return contrastive_reference(
            self.distance(upcast_half(embeddings)),
            relation.positive,
            relation.negative,
            weight,
            pos_margin=self.pos_margin,
            neg_margin=self.neg_margin,
            distance=self.distance,
            reduction=self.reduction,
        )

    def uses_kernel(self) -> bool:
        """Whether `forward` runs the fused kernel (``_kernels/contrastive.py``) instead of `reference`.

        The kernel reduces (``"mean"``, ``"mean_nonzero"``, ``"sum"``; not ``"none"``, which lists
        the pairs) and reads the built-in distances' margins from ``is_inverted``; a subclass of
        `BaseDistance` may define its own ``margin``, so it gets `reference`.
        """
        return self.reduction != "none" and builtin_distance(self.distance)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        relation = self.relation(embeddings, labels, indices_tuple)
        weight = positive_weights(self.positive_weighting, relation, labels, embeddings.shape[0], embeddings.device)
        if not self.uses_kernel():
            return self.reference(embeddings, relation, weight)
        return contrastive_terms(
            self.distance(upcast_half(embeddings)),
            relation.positive,
            relation.negative,
            weight,
            self.pos_margin,
            self.neg_margin,
            self.distance.is_inverted,
            self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, reduction={self.reduction!r}, "
            f"positive_weighting={self.positive_weighting!r}"
        )
