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

import torch

from labelspace.distances import BaseDistance, LpDistance
from labelspace.losses.base import (
    MetricLoss,
    PositiveWeighting,
    Reduction,
    check_embeddings,
    check_positive_weighting,
    compute_input,
    positive_weights,
    reduce_pair_losses,
    row_blocks,
)
from labelspace.relations import IndicesTuple, Relation, Rule


def _side_losses(values: torch.Tensor, mask: torch.Tensor, margin: float, sign: float) -> torch.Tensor:
    """relu(sign * (values - margin)) where ``mask``, else 0."""
    losses = (values - margin).mul_(sign).relu_()
    return losses.masked_fill_(~mask, 0)


class _ContrastiveTerms(torch.autograd.Function):
    """Both reduced terms of the contrastive loss from the B x B matrix, row block by row block.

    One pass over cache-sized row blocks computes the sums and the counts of both sides; the
    backward pass recomputes the active pairs per block instead of keeping B x B loss tensors,
    so the only B x B tensor saved is the matrix itself (already kept by the distance).
    """

    @staticmethod
    def forward(ctx, matrix, positive, negative, weight, pos_margin, neg_margin, inverted, reduction):  # noqa: ANN001
        pos_sign, neg_sign = (-1.0, 1.0) if inverted else (1.0, -1.0)
        totals = torch.zeros(4, dtype=torch.float64, device=matrix.device)  # pos sum, pos count, neg sum, neg count
        for rows in row_blocks(matrix.shape[0], matrix.shape[1], matrix.device):
            block = matrix[rows]
            positive_losses = _side_losses(block, positive[rows], pos_margin, pos_sign)
            negative_losses = _side_losses(block, negative[rows], neg_margin, neg_sign)
            counted_positive = positive_losses > 0 if reduction == "mean_nonzero" else positive[rows]
            counted_negative = negative_losses > 0 if reduction == "mean_nonzero" else negative[rows]
            if weight is None:
                totals[0] += positive_losses.sum(dtype=torch.float64)
                totals[1] += counted_positive.sum()
            else:
                block_weight = weight[rows].to(matrix.dtype)
                totals[0] += (positive_losses * block_weight).sum(dtype=torch.float64)
                totals[1] += torch.where(counted_positive, block_weight, 0).sum(dtype=torch.float64)
            totals[2] += negative_losses.sum(dtype=torch.float64)
            totals[3] += counted_negative.sum()
        if reduction == "sum":
            totals[1] = totals[3] = 1.0
        pos_denominator = totals[1].clamp(min=1e-300) if weight is not None else totals[1].clamp(min=1)
        neg_denominator = totals[3].clamp(min=1)
        value = totals[0] / pos_denominator + totals[2] / neg_denominator
        ctx.save_for_backward(matrix, positive, negative, weight, pos_denominator, neg_denominator)
        ctx.settings = (pos_margin, neg_margin, pos_sign, neg_sign)
        return value.to(matrix.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        matrix, positive, negative, weight, pos_denominator, neg_denominator = ctx.saved_tensors
        pos_margin, neg_margin, pos_sign, neg_sign = ctx.settings
        pos_scale = (grad.double() * pos_sign / pos_denominator).to(matrix.dtype)
        neg_scale = (grad.double() * neg_sign / neg_denominator).to(matrix.dtype)
        result = torch.empty_like(matrix)
        for rows in row_blocks(matrix.shape[0], matrix.shape[1], matrix.device):
            block = matrix[rows]
            active_positive = _side_losses(block, positive[rows], pos_margin, pos_sign) > 0
            active_negative = _side_losses(block, negative[rows], neg_margin, neg_sign) > 0
            out = result[rows]
            if weight is None:
                torch.mul(active_positive, pos_scale, out=out)
            else:
                torch.where(active_positive, weight[rows].to(matrix.dtype) * pos_scale, out.new_zeros(()), out=out)
            out.add_(active_negative * neg_scale)
        return result, None, None, None, None, None, None, None


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
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a Relation.
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
        rule: Rule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            LpDistance() if distance is None else distance,
            reduction,
            rule=rule,
            min_shared=min_shared,
            pos_threshold=pos_threshold,
            neg_threshold=neg_threshold,
        )
        check_positive_weighting(positive_weighting)
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.positive_weighting: PositiveWeighting = positive_weighting

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        relation = self.relation(embeddings, labels, indices_tuple)
        weight = positive_weights(self.positive_weighting, relation, labels, embeddings.shape[0], embeddings.device)
        inputs = compute_input(embeddings)
        matrix = self.distance(inputs)
        if self.reduction != "none":
            if weight is not None:
                weight = weight.to(matrix.dtype)
            return _ContrastiveTerms.apply(
                matrix,
                relation.positive,
                relation.negative,
                weight,
                self.pos_margin,
                self.neg_margin,
                self.distance.is_inverted,
                self.reduction,
            )
        # Each B x B loss matrix is made once and then masked and clamped in place.
        if self.distance.is_inverted:
            positive_losses = self.pos_margin - matrix
            negative_losses = matrix - self.neg_margin
        else:
            positive_losses = matrix - self.pos_margin
            negative_losses = self.neg_margin - matrix
        del matrix
        positive_losses = positive_losses.masked_fill_(~relation.positive, 0).relu_()
        negative_losses = negative_losses.masked_fill_(~relation.negative, 0).relu_()
        if weight is not None:
            weight = weight.to(positive_losses.dtype)
        positive_term = reduce_pair_losses(positive_losses, self.reduction, mask=relation.positive, weight=weight)
        negative_term = reduce_pair_losses(negative_losses, self.reduction, mask=relation.negative)
        if self.reduction == "none":
            return torch.cat([positive_term, negative_term])
        return positive_term + negative_term

    def extra_repr(self) -> str:
        return (
            f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, reduction={self.reduction!r}, "
            f"positive_weighting={self.positive_weighting!r}"
        )
