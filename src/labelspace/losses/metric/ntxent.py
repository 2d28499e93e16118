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

Cost: lse_a is one masked logsumexp per row of the B x B similarity matrix, so time and memory
are O(B^2) (pytorch-metric-learning builds a positives x negatives matrix, O(B^3) for a batch
of a few classes). The graph keeps one B x B float matrix.

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

import torch

from labelspace.distances import BaseDistance, CosineSimilarity
from labelspace.losses.base import (
    MetricLoss,
    PositiveWeighting,
    Reduction,
    check_embeddings,
    check_positive_weighting,
    compute_input,
    positive_weights,
    reduce_pair_losses,
)
from labelspace.relations import IndicesTuple, Relation, Rule


class NTXentLoss(MetricLoss):
    """NT-Xent / supervised InfoNCE over positive pairs (see the module docstring for the formula).

    Args:
        temperature: T, dividing the similarities (default 0.07, as pytorch-metric-learning).
        distance: default `CosineSimilarity`; a distance (not ``is_inverted``) is negated.
        reduction: default ``"mean"`` (MeanReducer over the positive pairs).
        positive_weighting: ``"none"`` or ``"jaccard"`` (weight each positive pair's loss by the
            Jaccard similarity of the two label sets).
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a Relation.
    """

    default_reduction: Reduction = "mean"

    def __init__(
        self,
        temperature: float = 0.07,
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
            CosineSimilarity() if distance is None else distance,
            reduction,
            rule=rule,
            min_shared=min_shared,
            pos_threshold=pos_threshold,
            neg_threshold=neg_threshold,
        )
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        check_positive_weighting(positive_weighting)
        self.temperature = float(temperature)
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
        matrix = self.distance(compute_input(embeddings))
        scale = (1.0 if self.distance.is_inverted else -1.0) / self.temperature
        logits = matrix * scale  # s / T: the only B x B float this loss keeps for backward
        del matrix
        anchors, positives = torch.where(relation.positive)
        positive_logits = logits[anchors, positives]  # indexing saves the indices, not `logits`
        # Keep only each anchor's negatives for its logsumexp. Rows without any negative stay
        # finite (a row of -inf would give a NaN gradient) and their lse is set to -inf below.
        has_negative = relation.negative.any(dim=1)
        logits.masked_fill_(~relation.negative & has_negative[:, None], float("-inf"))
        lse = torch.logsumexp(logits, dim=1)
        lse = torch.where(has_negative, lse, torch.full_like(lse, float("-inf")))
        # softplus(lse - s) = log(1 + exp(lse - s)): -log softmax of the positive, 0 when the anchor has no
        # negative. logaddexp(0, .) is exact everywhere (F.softplus switches to the identity above 20).
        margins = lse[anchors] - positive_logits
        losses = torch.logaddexp(torch.zeros_like(margins), margins)
        if weight is not None:
            weight = weight[anchors, positives].to(losses.dtype)
        return reduce_pair_losses(losses, self.reduction, weight=weight)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, reduction={self.reduction!r}, "
            f"positive_weighting={self.positive_weighting!r}"
        )
