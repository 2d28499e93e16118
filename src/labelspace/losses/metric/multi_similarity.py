"""Multi-similarity loss (Wang et al., 2019) on the B x B masks of a `Relation`.

Same meaning, defaults and reduction as pytorch-metric-learning's ``MultiSimilarityLoss``. For each
anchor i with positives P_i and negatives N_i, and a similarity S (default `CosineSimilarity`):

    l_i = 1/alpha log(1 + sum_{p in P_i} exp(-alpha (S_ip - base)))
        + 1/beta  log(1 + sum_{n in N_i} exp( beta (S_in - base)))

and the loss is the mean of l_i over all B anchors: an anchor without positives (or negatives)
contributes 0 for that term and still counts in the mean, as in pytorch-metric-learning. With a
distance (``is_inverted`` False, e.g. `LpDistance`) the signs flip: ``S - base`` becomes
``base - d``.

Implementation: one custom autograd function over the B x B similarity matrix. The forward pass
works on blocks of rows in place (masked exponents, per-anchor shifts so nothing overflows, masked
row sums) and keeps a single B x B matrix for the backward pass: d loss / d S, the signed
per-anchor softmax weights. Nothing of size B x B x anything is built.

Notes:
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
from torch.autograd.function import once_differentiable

from labelspace.distances import BaseDistance, CosineSimilarity
from labelspace.losses.base import (
    MetricLoss,
    Reduction,
    check_disjoint,
    check_embeddings,
    compute_input,
    row_blocks,
)
from labelspace.relations import IndicesTuple, Relation, Rule


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
    exponent = torch.sub(mat, base)  # positives: alpha * margin(mat, base); negatives: beta * margin(base, mat)
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
    """Per-anchor multi-similarity losses (length B) of a B x B similarity (``inverted``) or distance matrix.

    ``positive`` and ``negative`` are disjoint B x B boolean masks. Differentiable w.r.t. ``mat``.
    """
    if mat.dim() != 2 or positive.shape != mat.shape or negative.shape != mat.shape:
        raise ValueError("mat, positive and negative must be B x B' tensors of one shape")
    return _MultiSimilarityRows.apply(
        mat, positive.bool(), negative.bool(), float(alpha), float(beta), float(base), bool(inverted)
    )


class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity: mean_i [1/α log(1 + Σ_{p∈P_i} e^{-α(S_ip-base)}) + 1/β log(1 + Σ_{n∈N_i} e^{β(S_in-base)})].

    Args:
        alpha: the scale of the positive terms (default 2, as pytorch-metric-learning).
        beta: the scale of the negative terms (default 50).
        base: the similarity the terms are centred on (default 0.5).
        distance: default `CosineSimilarity`.
        reduction: default ``"mean"`` over all B anchors (pytorch-metric-learning's MeanReducer);
            ``"none"`` gives the B per-anchor losses.
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a Relation.

    Example:
        >>> import torch
        >>> from labelspace.losses.metric.multi_similarity import MultiSimilarityLoss
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1]])  # 0~1 and 1~2 share a label, 0 and 2 none
        >>> # S(0,1) = S(1,2) = 0, S(0,2) = 1:
        >>> # anchors 0 and 2: 1/2 log(1 + e^{2 * 0.5}) + 1/50 log(1 + e^{50 * 0.5}) = 0.6566 + 0.5000
        >>> # anchor 1: 1/2 log(1 + 2 e^{2 * 0.5}) = 0.9310
        >>> round(MultiSimilarityLoss()(embeddings, labels).item(), 4)  # (2 * 1.1566 + 0.9310) / 3
        1.0814
    """

    default_reduction: Reduction = "mean"

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        distance: BaseDistance | None = None,
        reduction: Reduction | None = None,
        *,
        rule: Rule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            CosineSimilarity() if distance is None else distance,
            reduction,
            rule=rule,
            min_shared=min_shared,
            pos_threshold=pos_threshold,
            neg_threshold=neg_threshold,
        )
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be positive, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)

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
        losses = multi_similarity_rows(
            mat,
            relation.positive,
            relation.negative,
            alpha=self.alpha,
            beta=self.beta,
            base=self.base,
            inverted=self.distance.is_inverted,
        )
        # The shared zero loss is float32; keep float64 float64.
        return self.reduce(losses, embeddings).to(losses.dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, reduction={self.reduction!r}"
