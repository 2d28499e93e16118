"""FastAP (Cakir et al., 2019), as pytorch-metric-learning's `FastAPLoss`, for single- and multi-label batches.

Each anchor ranks the rest of the batch by distance; FastAP approximates its average precision
with soft histograms of the distances of its relevant (positive) and irrelevant (negative) items
over ``num_bins`` bins: every distance adds a triangular pulse to the two bins around it. With
multi-hot labels, relevant means a positive of the `Relation` (by default: shares a label).
Anchors without a relevant item are left out, as in pytorch-metric-learning.

pytorch-metric-learning builds a (num_bins + 1) x B x B pulse tensor; here each distance is
scattered into its two bins, so memory and time are O(B^2) (a handful of B x B tensors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance, LpDistance
from labelspace.losses.base import MetricLoss, Reduction, check_embeddings, compute_input, reduce, zero_loss
from labelspace.relations import IndicesTuple, Relation, Rule, check_indices_tuple


def miner_weights(indices_tuple: IndicesTuple | None, size: int, dtype: torch.dtype, device: torch.device):
    """Per-item weights from how often each item occurs in ``indices_tuple`` (pytorch-metric-learning's
    ``convert_to_weights``): count / max count, 0 for absent items; all ones without a tuple."""
    if indices_tuple is None:
        return torch.ones(size, dtype=dtype, device=device)
    checked = check_indices_tuple(indices_tuple, size)
    if all(t.numel() == 0 for t in checked):
        return torch.ones(size, dtype=dtype, device=device)
    indices = torch.cat([t.to(device) for t in checked])
    counts = torch.bincount(indices, minlength=size).to(dtype)
    return counts / counts.max()


class FastAPLoss(MetricLoss):
    """FastAP: ``L = mean_i [1 - (1/N_i+) sum_k h+_ik H+_ik / H_ik]`` over anchors i with a relevant item.

    ``h+_ik`` is anchor i's soft histogram of relevant items in distance bin k (a triangular pulse
    of width ``2**power / num_bins`` around each bin centre ``0, delta, ..., 2**power``), ``H+`` and
    ``H`` the cumulative histograms of relevant and of relevant + irrelevant items, ``N_i+`` the
    number of relevant items. Same defaults and values as pytorch-metric-learning's ``FastAPLoss``
    (``LpDistance(power=2)``, i.e. squared Euclidean distance of normalised embeddings in [0, 4]).

    With an ``indices_tuple`` (a miner's output) each anchor's loss is weighted by how often it
    occurs in the tuple, as pytorch-metric-learning does; relevance still comes from ``labels``, or
    from the tuple's pairs when no labels are given.

    Args:
        num_bins: number of histogram bins.
        distance: an ``LpDistance`` with ``p=2`` and normalised embeddings (default ``LpDistance(power=2)``).
        reduction: default ``"mean"`` over the anchors with a relevant item.
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a `Relation`.

    Example:
        >>> import torch
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1]])  # item 1 shares a label with both others
        >>> loss = FastAPLoss(num_bins=4)
        >>> round(loss(embeddings, labels).item(), 4)  # anchors 0, 2: AP 1; anchor 1: AP 1 at distance 2
        0.0
        >>> round(loss(embeddings, torch.tensor([0, 1, 0])).item(), 4)  # 0 and 2 find each other last: AP 1/2
        0.5
    """

    default_reduction: Reduction = "mean"

    def __init__(
        self,
        num_bins: int = 10,
        distance: BaseDistance | None = None,
        reduction: Reduction | None = None,
        *,
        rule: Rule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> None:
        distance = LpDistance(power=2) if distance is None else distance
        if not (isinstance(distance, LpDistance) and distance.normalize_embeddings and distance.p == 2):
            raise ValueError("FastAPLoss needs an LpDistance with p=2 and normalize_embeddings=True")
        super().__init__(
            distance,
            reduction,
            rule=rule,
            min_shared=min_shared,
            pos_threshold=pos_threshold,
            neg_threshold=neg_threshold,
        )
        if int(num_bins) < 1:
            raise ValueError(f"num_bins must be at least 1, got {num_bins}")
        self.num_bins = int(num_bins)
        self.num_edges = self.num_bins + 1

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        work = compute_input(embeddings)
        size, dtype, device = work.shape[0], work.dtype, work.device
        relation = self.relation(embeddings, labels, indices_tuple if labels is None else None)
        weights = miner_weights(indices_tuple, size, dtype, device)
        positive, negative = relation.positive, relation.negative
        num_relevant = positive.sum(dim=1)
        anchors = num_relevant > 0
        if not bool(anchors.any()):
            return work.new_zeros(0) if self.reduction == "none" else zero_loss(work)
        bins = self.num_bins
        delta = 2.0**self.distance.power / bins  # bin centres 0, delta, ..., 2**power: the distance's range
        if type(self.distance) is LpDistance and self.distance.power == 2:
            # squared distance in bin units, (|x|^2 + |y|^2 - 2 x.y) / delta, as one matrix product of
            # [x, |x|^2, 1] and [-2 y, 1, |y|^2] / delta (|x| is 1, or 0 for a zero embedding)
            normalized = self.distance.maybe_normalize(work)
            norms = normalized.pow(2).sum(dim=1, keepdim=True)
            ones = torch.ones_like(norms)
            left = torch.cat([normalized, norms, ones], dim=1)
            right = torch.cat([normalized * (-2.0 / delta), ones / delta, norms / delta], dim=1)
            position = left @ right.T
        else:
            position = self.distance(work) / delta
        # A distance at position t (in bins) puts a triangular pulse 1 - |t - k| on bins k = floor(t) and
        # floor(t) + 1 only: weights 1 - frac and frac. Outside [0, bins] (rounding) it is clamped in.
        position = position.clamp(0, bins)
        lower = position.detach().long().clamp_(0, bins - 1)  # clamp_ also keeps a NaN in range
        fraction = position - lower
        # One scatter for both histograms: columns [0, bins) positives, [bins, 2 bins) negatives, rest ignored.
        column = torch.where(positive, 0, torch.where(negative, bins, 2 * bins)).add_(lower)
        with torch.no_grad():
            counts = torch.zeros(size, 3 * bins, dtype=dtype, device=device)
            counts.scatter_add_(1, column, torch.ones((), dtype=dtype, device=device).expand(size, size))
        fractions = torch.zeros(size, 3 * bins, dtype=dtype, device=device).scatter_add(1, column, fraction)

        def histogram(part: int) -> torch.Tensor:
            # bin k gets (1 - frac) from the distances with floor(t) = k and frac from those with floor(t) = k - 1
            count = counts[:, part * bins : (part + 1) * bins]
            weight = fractions[:, part * bins : (part + 1) * bins]
            return F.pad(count - weight, (0, 1)) + F.pad(weight, (1, 0))

        positive_histogram = histogram(0)
        negative_histogram = histogram(1)
        positive_cumulative = torch.cumsum(positive_histogram, dim=1)
        cumulative = torch.cumsum(positive_histogram + negative_histogram, dim=1)
        product = positive_histogram * positive_cumulative
        safe = (product > 0) & (cumulative > 0)
        if not bool(safe.any()):
            return work.new_zeros(0) if self.reduction == "none" else zero_loss(work)
        precision = torch.where(safe, product / torch.where(safe, cumulative, 1), 0).sum(dim=1)
        fast_ap = precision[anchors] / num_relevant[anchors].to(dtype)
        losses = (1 - fast_ap) * weights[anchors]
        return reduce(losses, self.reduction, work).to(dtype)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, reduction={self.reduction!r}"
