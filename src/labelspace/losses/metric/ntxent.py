"""NT-Xent (normalized temperature-scaled cross entropy): supervised InfoNCE over a relation.

Same meaning and defaults as pytorch-metric-learning's ``NTXentLoss`` (SimCLR / SupCon family),
computed on the B x B masks of a `Relation`, so it works unchanged on single-label, multi-label
and mined pair data. With similarities s (default `CosineSimilarity`; for a distance d such as
`LpDistance`, s = -d) and temperature T, each positive pair (a, p) is a softmax classification
of p against the negatives N(a) of its anchor:

    l(a, p) = -log( exp(s_ap / T) / (exp(s_ap / T) + sum_(n in N(a)) exp(s_an / T)) )
            = softplus(lse_a - s_ap / T),        lse_a = logsumexp_(n in N(a)) s_an / T

The loss is the mean of l(a, p) over all positive pairs (pytorch-metric-learning's
``MeanReducer``). A positive pair whose anchor has no negative costs 0 and still counts in the
mean, as there; a batch without positive pairs (or without any negative) gives 0.

Implementation: `ntxent_reference` below (called by `NTXentLoss.reference`) is the first line of
the formula, each positive beside its anchor's negatives (a positives x B matrix, O(B^3) for a
batch of a few classes, as pytorch-metric-learning's positives x negatives matrix). `forward` runs
it, or, where `NTXentLoss.uses_kernel` says so, the kernel of ``_kernels/ntxent.py``, the second line: lse_a
is one masked logsumexp per row of the B x B similarity matrix, so time and memory are O(B^2)
and the graph keeps one B x B float matrix.

Multi-label graded positives: with ``positive_weighting="jaccard"`` each positive pair's loss
is weighted by the Jaccard similarity w(a, p) = |Y_a ∩ Y_p| / |Y_a ∪ Y_p| of the label sets:

    L = sum_(a,p) w(a, p) l(a, p) / sum_(a,p) w(a, p)

The weights are ``relation.weight`` when the relation has them (``rule="jaccard"``, or a
`Relation` built with ``Relation.from_labels(labels, rule="jaccard")``); otherwise they are
computed from ``labels`` (1-D class ids give weight 1 to every positive, so the result equals
``"none"``). Without label sets to weigh by (an ``indices_tuple`` and no labels, or a Relation
without weights) the loss raises ``ValueError``.

Notes:
    - ``indices_tuple`` (from a miner) takes precedence over ``labels``. Pairs become B x B masks,
      so a pair listed twice counts once (pytorch-metric-learning would count it twice), and
      ``(a, p, n)`` triplets are read as the pairs (a, p) and (a, n).
    - pytorch-metric-learning returns 0 when every index list holds at most one pair; here a
      single positive with a single negative pair still counts. It also adds ``finfo.tiny``
      inside its log, which caps each pair's loss near 87 (float32); there is no cap here.
    - float16 / bfloat16 embeddings are upcast to float32 for the similarity matrix and the loss
      is float32; float64 stays float64.
    - ``reduction="none"`` returns one loss per positive pair in anchor-major order (weighted
      when weighting); ``"mean_nonzero"`` and ``"sum"`` are also accepted.

Example:
    >>> import torch
    >>> from labelspace.losses.metric.ntxent import NTXentLoss
    >>> embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    >>> # positives 0~1 (Jaccard 1/2), 0~2 (Jaccard 1/3); item 0 has no negative, 1 and 2 are negatives
    >>> # l(0,1) = l(0,2) = 0; l(1,0) = softplus((0.8 - 0.6) / 0.5); l(2,0) = softplus((0.8 - 0.0) / 0.5)
    >>> loss = NTXentLoss(temperature=0.5)
    >>> round(loss(embeddings, labels).item(), 4)  # (0.9130 + 1.7839) / 4
    0.6742
    >>> weighted = NTXentLoss(temperature=0.5, positive_weighting="jaccard")
    >>> round(weighted(embeddings, labels).item(), 4)  # (0.9130 / 2 + 1.7839 / 3) / (2 / 2 + 2 / 3)
    0.6307
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance, CosineSimilarity
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
from labelspace.losses.metric._kernels.ntxent import ntxent_pair_losses
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule

__all__ = ["NTXentLoss", "ntxent_reference"]


def ntxent_reference(
    matrix: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    weight: torch.Tensor | None,
    *,
    temperature: float,
    distance: BaseDistance,
    reduction: Reduction,
) -> torch.Tensor:
    """The NT-Xent loss of a B x B similarity (or distance) matrix, as the formula reads.

    Each positive pair (a, p) is -log softmax of its logit s_ap / T among itself and the logits of its
    anchor's negatives (a distance d gives s = -d, ``distance.is_inverted`` says which), weighted by
    ``weight[a, p]`` (B x B, or None), then reduced; ``reduction="none"`` lists the pair losses.

    Example:
        >>> import torch
        >>> from labelspace.distances import CosineSimilarity
        >>> matrix = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> positive = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
        >>> negative = ~positive & ~torch.eye(3, dtype=torch.bool)  # 0~2 and 1~2, similarity 0
        >>> options = dict(temperature=0.5, distance=CosineSimilarity())
        >>> losses = ntxent_reference(matrix, positive, negative, None, reduction="none", **options)
        >>> [round(value, 4) for value in losses.tolist()]  # -log(e^1 / (e^1 + e^0)), for (0, 1) and (1, 0)
        [0.3133, 0.3133]
        >>> round(ntxent_reference(matrix, positive, negative, None, reduction="mean", **options).item(), 4)
        0.3133
    """
    logits = (matrix if distance.is_inverted else -matrix) / temperature
    anchors, positives = torch.where(positive)
    negatives = logits[anchors].masked_fill(~negative[anchors], float("-inf"))
    candidates = torch.cat([logits[anchors, positives, None], negatives], dim=1)  # the positive first
    losses = -F.log_softmax(candidates, dim=1)[:, 0]
    if weight is not None:
        weight = weight[anchors, positives].to(losses.dtype)
    return reduce_pair_losses(losses, reduction, weight=weight)


class NTXentLoss(MetricLoss):
    """NT-Xent / supervised InfoNCE over positive pairs (see the module docstring for the formula).

    Args:
        temperature: T, dividing the similarities (default 0.07, as pytorch-metric-learning).
        distance: default `CosineSimilarity`; a distance (not ``is_inverted``) is negated.
        reduction: default ``"mean"`` (MeanReducer over the positive pairs).
        positive_weighting: ``"none"`` or ``"jaccard"`` (weight each positive pair's loss by the
            Jaccard similarity of the two label sets).
        relation: how multi-hot labels become a Relation: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.
    """

    default_reduction: Reduction = "mean"

    def __init__(
        self,
        temperature: float = 0.07,
        distance: BaseDistance | None = None,
        reduction: Reduction | None = None,
        positive_weighting: PositiveWeighting = "none",
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
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        check_positive_weighting(positive_weighting)
        self.temperature = float(temperature)
        self.positive_weighting: PositiveWeighting = positive_weighting

    def reference(self, embeddings: torch.Tensor, relation: Relation, weight: torch.Tensor | None) -> torch.Tensor:
        """`ntxent_reference` of this loss's similarity matrix and the relation's masks."""
        return ntxent_reference(
            self.distance(upcast_half(embeddings)),
            relation.positive,
            relation.negative,
            weight,
            temperature=self.temperature,
            distance=self.distance,
            reduction=self.reduction,
        )

    def uses_kernel(self) -> bool:
        """Whether `forward` runs the O(B^2) kernel (``_kernels/ntxent.py``) instead of `reference`.

        It serves every reduction of the built-in distances; any other `BaseDistance` subclass gets
        `reference` (one row of logits per positive pair), as in the other metric losses.
        """
        return builtin_distance(self.distance)

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
        matrix = self.distance(upcast_half(embeddings))
        logits = matrix * ((1.0 if self.distance.is_inverted else -1.0) / self.temperature)
        del matrix  # the logits are the only B x B float this loss keeps for backward
        anchors, positives, losses = ntxent_pair_losses(logits, relation.positive, relation.negative)
        if weight is not None:
            weight = weight[anchors, positives].to(losses.dtype)
        return reduce_pair_losses(losses, self.reduction, weight=weight)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, reduction={self.reduction!r}, "
            f"positive_weighting={self.positive_weighting!r}"
        )
