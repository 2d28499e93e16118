"""Circle loss (Sun et al., 2020), pair form, on the B x B masks of a `Relation`.

Same meaning, defaults and reduction as pytorch-metric-learning's ``CircleLoss``. With cosine
similarities S, relaxation m and scale gamma (O_p = 1 + m, O_n = -m, Δ_p = 1 - m, Δ_n = m), for
each anchor i with positives P_i and negatives N_i:

    l_i = softplus( logsumexp_{p in P_i}( -gamma [O_p - S_ip]_+ (S_ip - Δ_p) )
                  + logsumexp_{n in N_i}(  gamma [S_in - O_n]_+ (S_in - Δ_n) ) )

where the weights [.]_+ are constants for the gradient (detached), as in the paper. An anchor
without positives or without negatives has l_i = 0, and the loss is the mean of the l_i that are
above zero (pytorch-metric-learning's ``AvgNonZeroReducer``; 0 when there is none).

Implementation: one custom autograd function over the B x B similarity matrix. The forward pass
works on blocks of rows in place (masked exponents, per-anchor, per-side shifts so nothing
overflows, masked row sums) and keeps a single B x B matrix for the backward pass: the gradient
of the inner sum w.r.t. S (softmax weight times ±gamma [.]_+). The softplus, the mask of anchors
without positives or negatives and the reduction act on length-B vectors.

Notes:
    - Only `CosineSimilarity` is accepted, as in pytorch-metric-learning.
    - ``indices_tuple`` (from a miner) takes precedence over ``labels`` and becomes B x B masks,
      so a pair listed twice counts once, exactly as pytorch-metric-learning's matrix-based loss.
    - pytorch-metric-learning returns 0 when every index list holds at most one pair (a single
      positive and a single negative pair); here that pair still counts, as in the other
      labelspace losses.
    - A `Relation`'s ``weight`` is not used: every positive counts 1.
    - float16 / bfloat16 embeddings are upcast to float32 and the loss is float32; float64 stays
      float64.
    - ``reduction="none"`` returns the B per-anchor losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from labelspace.distances import CosineSimilarity
from labelspace.losses.base import (
    MetricLoss,
    Reduction,
    check_disjoint,
    check_embeddings,
    compute_input,
    row_blocks,
)
from labelspace.relations import IndicesTuple, Relation, Rule


def _side_shift(values: torch.Tensor, mask: torch.Tensor, scratch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row max of ``values`` over ``mask`` (0 for a row without any), and which rows have any."""
    neg_inf = torch.full((), float("-inf"), dtype=values.dtype, device=values.device)
    shift = torch.where(mask, values, neg_inf, out=scratch).amax(dim=1)
    present = mask.any(dim=1)
    return torch.where(present, shift, torch.zeros_like(shift)), present


def _circle_block(
    mat: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weights: torch.Tensor,
    gamma: float,
    m: float,
) -> torch.Tensor:
    """Per-anchor inner sums (before the softplus) of a block of rows; writes their gradient into ``weights``."""
    op, on, delta_p, delta_n = 1.0 + m, -m, 1.0 - m, m
    zero = torch.zeros((), dtype=mat.dtype, device=mat.device)
    gamma_t = torch.full((), gamma, dtype=mat.dtype, device=mat.device)
    # slope = d exponent / d S: -gamma [O_p - S]_+ on positives, gamma [S - O_n]_+ on negatives.
    scratch = torch.sub(mat, on)
    slope = torch.rsub(mat, op)
    torch.where(positive, slope, scratch, out=slope).relu_()
    slope.mul_(torch.where(positive, -gamma_t, gamma_t, out=scratch))
    exponent = torch.sub(mat, delta_p)
    torch.where(positive, exponent, torch.sub(mat, delta_n, out=scratch), out=exponent).mul_(slope)
    exponent.masked_fill_(~(positive | negative), float("-inf"))
    pos_shift, has_pos = _side_shift(exponent, positive, scratch)
    neg_shift, has_neg = _side_shift(exponent, negative, scratch)
    exponent.sub_(torch.where(positive, pos_shift[:, None], neg_shift[:, None], out=scratch)).exp_()
    pos_total = torch.where(positive, exponent, zero, out=scratch).sum(dim=1)
    neg_total = torch.where(negative, exponent, zero, out=scratch).sum(dim=1)
    pos_lse = torch.where(has_pos, pos_shift + torch.log(pos_total), zero)
    neg_lse = torch.where(has_neg, neg_shift + torch.log(neg_total), zero)
    pos_scale = torch.where(has_pos, 1.0 / pos_total, zero)
    neg_scale = torch.where(has_neg, 1.0 / neg_total, zero)
    torch.where(positive, pos_scale[:, None], neg_scale[:, None], out=weights).mul_(exponent).mul_(slope)
    return pos_lse + neg_lse


class _CircleRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mat, positive, negative, gamma, m):  # noqa: ANN001, ANN205
        weights = mat.new_empty(mat.shape)  # contiguous, so its row blocks are too
        inner = mat.new_empty(mat.shape[0])
        for rows in row_blocks(mat.shape[0], mat.shape[1], mat.device):
            inner[rows] = _circle_block(mat[rows], positive[rows], negative[rows], weights[rows], gamma, m)
        ctx.save_for_backward(weights)
        return inner

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_inner):  # noqa: ANN001, ANN205
        (weights,) = ctx.saved_tensors
        return weights * grad_inner[:, None], None, None, None, None


def circle_rows(
    mat: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, m: float = 0.4, gamma: float = 80.0
) -> torch.Tensor:
    """Per-anchor circle losses (length B) of a B x B cosine-similarity matrix; 0 for anchors lacking a side.

    ``positive`` and ``negative`` are disjoint B x B boolean masks. Differentiable w.r.t. ``mat``.
    """
    if mat.dim() != 2 or positive.shape != mat.shape or negative.shape != mat.shape:
        raise ValueError("mat, positive and negative must be B x B' tensors of one shape")
    positive, negative = positive.bool(), negative.bool()
    inner = _CircleRows.apply(mat, positive, negative, float(gamma), float(m))
    both = positive.any(dim=1) & negative.any(dim=1)
    return F.softplus(inner) * both.to(inner.dtype)


class CircleLoss(MetricLoss):
    """Circle loss: mean_{i: l_i>0} softplus(lse_{p∈P_i}(-γ[1+m-S_ip]_+(S_ip-1+m)) + lse_{n∈N_i}(γ[S_in+m]_+(S_in-m))).

    Args:
        m: the relaxation margin (default 0.4, as pytorch-metric-learning).
        gamma: the scale (default 80).
        distance: must be `CosineSimilarity` (the default).
        reduction: default ``"mean_nonzero"`` (pytorch-metric-learning's AvgNonZeroReducer) over
            the B anchors; ``"none"`` gives the B per-anchor losses.
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a Relation.

    Example:
        >>> import torch
        >>> from labelspace.losses.metric.circle import CircleLoss
        >>> embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1]])  # 0~1 and 1~2 share a label, 0 and 2 none
        >>> # S(0,1) = 1, S(0,2) = S(1,2) = 0; anchor 1 has no negative, so its loss is 0.
        >>> # anchor 0: softplus(-80 * 0.4 * 0.4 + 80 * 0.4 * -0.4) = softplus(-25.6)
        >>> # anchor 2: softplus(-80 * 1.4 * -0.6 + 80 * 0.4 * -0.4) = softplus(54.4)
        >>> round(CircleLoss()(embeddings, labels).item(), 4)  # mean of the two (both above zero)
        27.2
    """

    default_reduction: Reduction = "mean_nonzero"

    def __init__(
        self,
        m: float = 0.4,
        gamma: float = 80.0,
        distance: CosineSimilarity | None = None,
        reduction: Reduction | None = None,
        *,
        rule: Rule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> None:
        distance = CosineSimilarity() if distance is None else distance
        if not isinstance(distance, CosineSimilarity):
            raise ValueError(
                f"CircleLoss works on cosine similarities: distance must be CosineSimilarity, got {distance}"
            )
        super().__init__(
            distance,
            reduction,
            rule=rule,
            min_shared=min_shared,
            pos_threshold=pos_threshold,
            neg_threshold=neg_threshold,
        )
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.m = float(m)
        self.gamma = float(gamma)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        embeddings = compute_input(embeddings)
        relation = self.relation(embeddings, labels, indices_tuple)
        if indices_tuple is not None or isinstance(labels, Relation):
            check_disjoint(relation)
        mat = self.distance(embeddings)
        losses = circle_rows(mat, relation.positive, relation.negative, m=self.m, gamma=self.gamma)
        # The shared zero loss is float32; keep float64 float64.
        return self.reduce(losses, embeddings).to(losses.dtype)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, reduction={self.reduction!r}"
