"""The fused circle-loss kernel: per-anchor losses of a B x B' cosine matrix in row blocks, one B x B' tensor kept.

Computes what `labelspace.losses.metric.circle.circle_reference` computes, with the gradient
written out: the forward pass works on cache-sized blocks of rows in place (masked exponents, a
per-anchor shift per side so nothing overflows, masked row sums) and keeps a single B x B' matrix
for the backward pass, the gradient of the inner sum w.r.t. S (softmax weight times ±gamma [.]_+).
The softplus and the mask of anchors without positives or negatives act on length-B vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from labelspace.losses.base import row_blocks

__all__ = ["circle_rows"]


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
    """Per-anchor circle losses (length B) of a B x B' cosine-similarity matrix; 0 for anchors lacking a side.

    ``positive`` and ``negative`` are disjoint B x B' boolean masks. Differentiable w.r.t. ``mat``.

    Example:
        >>> mat = torch.ones(2, 3)
        >>> positive, negative = torch.tensor([[0, 1, 0], [0, 0, 0]]), torch.tensor([[0, 0, 1], [0, 0, 1]])
        >>> # anchor 0: softplus(-80 * 0.4 * 0.4 + 80 * 1.4 * 0.6) = softplus(54.4); anchor 1 has no positive
        >>> [round(value, 4) for value in circle_rows(mat, positive, negative).tolist()]
        [54.4, 0.0]
    """
    if mat.dim() != 2 or positive.shape != mat.shape or negative.shape != mat.shape:
        raise ValueError("mat, positive and negative must be B x B' tensors of one shape")
    positive, negative = positive.bool(), negative.bool()
    inner = _CircleRows.apply(mat, positive, negative, float(gamma), float(m))
    both = positive.any(dim=1) & negative.any(dim=1)
    return F.softplus(inner) * both.to(inner.dtype)
