"""The fused multi-similarity kernel: per-anchor losses of a B x B' matrix in row blocks, one B x B' tensor kept.

Computes what `labelspace.losses.metric.multi_similarity.multi_similarity_reference` computes, with
the gradient written out: the forward pass works on cache-sized blocks of rows in place (masked
exponents, a per-anchor shift per side so nothing overflows, masked row sums) and keeps a single
B x B' matrix for the backward pass, d loss_i / d S_ij (the signed per-anchor softmax weights).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from labelspace.losses.base import row_blocks

__all__ = ["multi_similarity_rows"]


def _log_one_plus(shift: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """log(exp(-shift) + total) + shift = log(1 + sum exp(x)) given total = sum exp(x - shift), shift >= 0."""
    return torch.where(shift == 0, torch.log1p(total), shift + torch.log(torch.exp(-shift) + total))


def _multi_similarity_block(
    mat: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weights: torch.Tensor,
    alpha: float,
    beta: float,
    base: float,
    sign: float,
) -> torch.Tensor:
    """Per-anchor losses of a block of rows; writes d loss_i / d mat_ij into ``weights``."""
    neg_inf = torch.full((), float("-inf"), dtype=mat.dtype, device=mat.device)
    zero = torch.zeros((), dtype=mat.dtype, device=mat.device)
    exponent = torch.sub(mat, base)  # positives: alpha * margin(base, mat); negatives: beta * margin(mat, base)
    scratch = torch.mul(exponent, sign * alpha)
    exponent.mul_(-sign * beta)
    torch.where(positive, scratch, exponent, out=exponent)
    exponent.masked_fill_(~(positive | negative), float("-inf"))
    # Per-anchor shifts (>= 0: the "1 +" is exp(0) inside the log-sum-exp), one for each side.
    pos_shift = torch.where(positive, exponent, neg_inf, out=scratch).amax(dim=1).clamp_min_(0)
    neg_shift = torch.where(negative, exponent, neg_inf, out=scratch).amax(dim=1).clamp_min_(0)
    exponent.sub_(torch.where(positive, pos_shift[:, None], neg_shift[:, None], out=scratch)).exp_()
    pos_total = torch.where(positive, exponent, zero, out=scratch).sum(dim=1)
    neg_total = torch.where(negative, exponent, zero, out=scratch).sum(dim=1)
    losses = (1.0 / alpha) * _log_one_plus(pos_shift, pos_total) + (1.0 / beta) * _log_one_plus(neg_shift, neg_total)
    pos_scale = sign / (torch.exp(-pos_shift) + pos_total)
    neg_scale = -sign / (torch.exp(-neg_shift) + neg_total)
    torch.where(positive, pos_scale[:, None], neg_scale[:, None], out=weights).mul_(exponent)
    return losses


class _MultiSimilarityRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mat, positive, negative, alpha, beta, base, inverted):  # noqa: ANN001, ANN205
        sign = -1.0 if inverted else 1.0
        weights = mat.new_empty(mat.shape)  # contiguous, so its row blocks are too
        losses = mat.new_empty(mat.shape[0])
        for rows in row_blocks(mat.shape[0], mat.shape[1], mat.device):
            losses[rows] = _multi_similarity_block(
                mat[rows], positive[rows], negative[rows], weights[rows], alpha, beta, base, sign
            )
        ctx.save_for_backward(weights)
        return losses

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_losses):  # noqa: ANN001, ANN205
        (weights,) = ctx.saved_tensors
        return weights * grad_losses[:, None], None, None, None, None, None, None


def multi_similarity_rows(
    mat: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    inverted: bool = True,
) -> torch.Tensor:
    """Per-anchor multi-similarity losses (length B) of a B x B' similarity (``inverted``) or distance matrix.

    ``positive`` and ``negative`` are disjoint B x B' boolean masks. Differentiable w.r.t. ``mat``.

    Example:
        >>> mat = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
        >>> positive, negative = torch.tensor([[False, True], [False, False]]), torch.zeros(2, 2, dtype=torch.bool)
        >>> multi_similarity_rows(mat, positive, negative).tolist()  # anchor 0: 1/2 log(1 + e^0)
        [0.3465735912322998, 0.0]
    """
    if mat.dim() != 2 or positive.shape != mat.shape or negative.shape != mat.shape:
        raise ValueError("mat, positive and negative must be B x B' tensors of one shape")
    return _MultiSimilarityRows.apply(
        mat, positive.bool(), negative.bool(), float(alpha), float(beta), float(base), bool(inverted)
    )
