"""The contrastive loss's fused kernel: both reduced terms from the B x B matrix, block by block.

Same value and gradient as `ContrastiveLoss.reference` for the reductions ``"mean"``,
``"mean_nonzero"`` and ``"sum"``: one pass over cache-sized row blocks computes the sums and the
counts of both sides; the backward pass recomputes the active pairs per block instead of keeping
B x B loss tensors, so the only B x B tensor saved is the matrix itself (already kept by the
distance). Sums are accumulated in float64.
"""

from __future__ import annotations

import torch

from labelspace.losses.base import row_blocks

__all__ = ["contrastive_terms"]


def side_losses(values: torch.Tensor, mask: torch.Tensor, margin: float, sign: float) -> torch.Tensor:
    """relu(sign * (values - margin)) where ``mask``, else 0 (``values`` is a fresh slice, reused in place)."""
    losses = (values - margin).mul_(sign).relu_()
    return losses.masked_fill_(~mask, 0)


class ContrastiveTerms(torch.autograd.Function):
    """Positive term plus negative term of the contrastive loss, each reduced, from the B x B matrix."""

    @staticmethod
    def forward(ctx, matrix, positive, negative, weight, pos_margin, neg_margin, inverted, reduction):  # noqa: ANN001
        pos_sign, neg_sign = (-1.0, 1.0) if inverted else (1.0, -1.0)
        totals = torch.zeros(4, dtype=torch.float64, device=matrix.device)  # pos sum, pos count, neg sum, neg count
        for rows in row_blocks(matrix.shape[0], matrix.shape[1], matrix.device):
            block = matrix[rows]
            positive_losses = side_losses(block, positive[rows], pos_margin, pos_sign)
            negative_losses = side_losses(block, negative[rows], neg_margin, neg_sign)
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
            active_positive = side_losses(block, positive[rows], pos_margin, pos_sign) > 0
            active_negative = side_losses(block, negative[rows], neg_margin, neg_sign) > 0
            out = result[rows]
            if weight is None:
                torch.mul(active_positive, pos_scale, out=out)
            else:
                torch.where(active_positive, weight[rows].to(matrix.dtype) * pos_scale, out.new_zeros(()), out=out)
            out.add_(active_negative * neg_scale)
        return result, None, None, None, None, None, None, None


def contrastive_terms(
    matrix: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weight: torch.Tensor | None,
    pos_margin: float,
    neg_margin: float,
    inverted: bool,
    reduction: str,
) -> torch.Tensor:
    """The reduced contrastive loss (``reduction`` "mean", "mean_nonzero" or "sum") of a distance matrix.

    ``inverted`` is the distance's ``is_inverted`` (a similarity); ``weight`` weighs the positive pairs.
    """
    if weight is not None:
        weight = weight.to(matrix.dtype)
    return ContrastiveTerms.apply(matrix, positive, negative, weight, pos_margin, neg_margin, inverted, reduction)
