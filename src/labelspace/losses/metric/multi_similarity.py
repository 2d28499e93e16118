"""Multi-similarity loss (Wang et al., 2019) on the B x B masks of a `Relation`.

Same meaning, defaults and reduction as pytorch-metric-learning's ``MultiSimilarityLoss``. For each
anchor i with positives P_i and negatives N_i, and a similarity S (default `CosineSimilarity`):

    l_i = 1/alpha log(1 + sum_{p in P_i} exp(-alpha (S_ip - base)))
        + 1/beta  log(1 + sum_{n in N_i} exp( beta (S_in - base)))

and the loss is the mean of l_i over all B anchors: an anchor without positives (or negatives)
contributes 0 for that term and still counts in the mean, as in pytorch-metric-learning. With a
distance (``is_inverted`` False, e.g. `LpDistance`) the signs flip: ``S - base`` becomes
``base - d``; `multi_similarity_reference` writes both as the distance's ``margin``.

`multi_similarity_reference` below is the formula, differentiated by autograd. The loss runs it
for a distance of your own; for labelspace's distances it runs the fused kernel
(`labelspace.losses.metric._kernels.multi_similarity`), the same values and gradients from row
blocks that keep one B x B tensor for the backward pass (`MultiSimilarityLoss.uses_kernel`).

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

from typing import Any

import torch

from labelspace.distances import BaseDistance, CosineSimilarity
from labelspace.losses.base import MetricLoss, Reduction, check_disjoint, check_embeddings
from labelspace.losses.metric._kernels import builtin_distance
from labelspace.losses.metric._kernels.multi_similarity import multi_similarity_rows
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule

__all__ = ["MultiSimilarityLoss", "multi_similarity_reference", "multi_similarity_rows"]


def multi_similarity_reference(
    mat: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    distance: BaseDistance,
    *,
    alpha: float,
    beta: float,
    base: float,
) -> torch.Tensor:
    """Per-anchor multi-similarity losses (length B) of ``mat = distance(embeddings)``, as the formula reads."""
    lowest = torch.finfo(mat.dtype).min  # left out of a logsumexp, and no NaN gradient for a row without pairs
    pull = (alpha * distance.margin(base, mat)).masked_fill(~positive, lowest)  # a positive farther than base
    push = (beta * distance.margin(mat, base)).masked_fill(~negative, lowest)  # a negative closer than base
    zero = mat.new_zeros(())
    # log(1 + sum_j e^{x_j}) = logaddexp(0, logsumexp_j x_j), accurate also when the sum is tiny
    return torch.logaddexp(zero, pull.logsumexp(dim=1)) / alpha + torch.logaddexp(zero, push.logsumexp(dim=1)) / beta


class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity: mean_i [1/α log(1 + Σ_{p∈P_i} e^{-α(S_ip-base)}) + 1/β log(1 + Σ_{n∈N_i} e^{β(S_in-base)})].

    Args:
        alpha: the scale of the positive terms (default 2, as pytorch-metric-learning).
        beta: the scale of the negative terms (default 50).
        base: the similarity the terms are centred on (default 0.5).
        distance: default `CosineSimilarity`.
        reduction: default ``"mean"`` over all B anchors (pytorch-metric-learning's MeanReducer);
            ``"none"`` gives the B per-anchor losses.
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

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
        relation: RelationRule | str | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__(
            CosineSimilarity() if distance is None else distance,
            reduction,
            relation=relation,
            **deprecated_relation_keywords,
        )
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be positive, got alpha={alpha}, beta={beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)

    def uses_kernel(self) -> bool:
        """Whether `forward` runs the fused kernel: for labelspace's own distances, with every reduction.

        The kernel takes the margin's sign from ``is_inverted``; a distance of your own (a subclass,
        which may redefine ``margin``) runs `multi_similarity_reference`, which calls it.
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
        settings = {"alpha": self.alpha, "beta": self.beta, "base": self.base}
        if self.uses_kernel():
            inverted = self.distance.is_inverted
            losses = multi_similarity_rows(mat, relation.positive, relation.negative, inverted=inverted, **settings)
        else:
            losses = multi_similarity_reference(mat, relation.positive, relation.negative, self.distance, **settings)
        # The shared zero loss is float32; keep float64 float64.
        return self.reduce(losses, embeddings).to(losses.dtype)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, reduction={self.reduction!r}"
