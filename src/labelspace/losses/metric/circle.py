"""Circle loss (Sun et al., 2020), pair form, on the B x B masks of a `Relation`.

Same meaning, defaults and reduction as pytorch-metric-learning's ``CircleLoss``. With cosine
similarities S, relaxation m and scale gamma (O_p = 1 + m, O_n = -m, Δ_p = 1 - m, Δ_n = m), for
each anchor i with positives P_i and negatives N_i:

    l_i = softplus( logsumexp_{p in P_i}( -gamma [O_p - S_ip]_+ (S_ip - Δ_p) )
                  + logsumexp_{n in N_i}(  gamma [S_in - O_n]_+ (S_in - Δ_n) ) )

where the weights [.]_+ are constants for the gradient (detached), as in the paper. An anchor
without positives or without negatives has l_i = 0, and the loss is the mean of the l_i that are
above zero (pytorch-metric-learning's ``AvgNonZeroReducer``; 0 when there is none).

`circle_reference` below is the formula, differentiated by autograd. The loss runs it for a
cosine similarity of your own (a subclass); for `CosineSimilarity` itself it runs the fused
kernel (`labelspace.losses.metric._kernels.circle`), the same values and gradients from row
blocks that keep one B x B tensor for the backward pass (`CircleLoss.uses_kernel`).

Notes:
    - Only `CosineSimilarity` (or a subclass) is accepted, as in pytorch-metric-learning.
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

from typing import Any

import torch
import torch.nn.functional as F

from labelspace.distances import CosineSimilarity
from labelspace.losses.base import MetricLoss, Reduction, check_disjoint, check_embeddings
from labelspace.losses.metric._kernels import builtin_distance
from labelspace.losses.metric._kernels.circle import circle_rows
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule

__all__ = ["CircleLoss", "circle_reference", "circle_rows"]


def circle_reference(
    mat: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, m: float, gamma: float
) -> torch.Tensor:
    """Per-anchor circle losses (length B) of a cosine-similarity matrix, as the formula reads."""
    optimum_p, optimum_n, delta_p, delta_n = 1 + m, -m, 1 - m, m
    alpha_p = (optimum_p - mat).detach().relu()  # the weights are constants for the gradient
    alpha_n = (mat - optimum_n).detach().relu()
    lowest = torch.finfo(mat.dtype).min  # left out of a logsumexp, and no NaN gradient for a row without pairs
    positive_logits = (-gamma * alpha_p * (mat - delta_p)).masked_fill(~positive, lowest)
    negative_logits = (gamma * alpha_n * (mat - delta_n)).masked_fill(~negative, lowest)
    losses = F.softplus(positive_logits.logsumexp(dim=1) + negative_logits.logsumexp(dim=1))
    return torch.where(positive.any(dim=1) & negative.any(dim=1), losses, 0.0)


class CircleLoss(MetricLoss):
    """Circle loss: mean_{i: l_i>0} softplus(lse_{p∈P_i}(-γ[1+m-S_ip]_+(S_ip-1+m)) + lse_{n∈N_i}(γ[S_in+m]_+(S_in-m))).

    Args:
        m: the relaxation margin (default 0.4, as pytorch-metric-learning).
        gamma: the scale (default 80).
        distance: must be `CosineSimilarity` (the default).
        reduction: default ``"mean_nonzero"`` (pytorch-metric-learning's AvgNonZeroReducer) over
            the B anchors; ``"none"`` gives the B per-anchor losses.
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

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
        relation: RelationRule | str | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        distance = CosineSimilarity() if distance is None else distance
        if not isinstance(distance, CosineSimilarity):
            raise ValueError(
                f"CircleLoss works on cosine similarities: distance must be CosineSimilarity, got {distance}"
            )
        super().__init__(
            distance,
            reduction,
            relation=relation,
            **deprecated_relation_keywords,
        )
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.m = float(m)
        self.gamma = float(gamma)

    def uses_kernel(self) -> bool:
        """Whether `forward` runs the fused kernel: for `CosineSimilarity` itself, with every reduction.

        A subclass of your own (which may redefine the matrix) runs `circle_reference`.
        """
        return builtin_distance(self.distance)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        embeddings = upcast_half(embeddings)
        relation = self.relation(embeddings, labels, indices_tuple)
        if indices_tuple is not None or isinstance(labels, Relation):
            check_disjoint(relation)
        mat = self.distance(embeddings)
        rows = circle_rows if self.uses_kernel() else circle_reference
        losses = rows(mat, relation.positive, relation.negative, m=self.m, gamma=self.gamma)
        # The shared zero loss is float32; keep float64 float64.
        return self.reduce(losses, embeddings).to(losses.dtype)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, reduction={self.reduction!r}"
