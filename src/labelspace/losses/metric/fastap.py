"""FastAP (Cakir et al., 2019), as pytorch-metric-learning's `FastAPLoss`, for single- and multi-label batches.

Each anchor ranks the rest of the batch by distance; FastAP approximates its average precision
with soft histograms of the distances of its relevant (positive) and irrelevant (negative) items
over ``num_bins`` bins: every distance adds a triangular pulse to the two bins around it. With
multi-hot labels, relevant means a positive of the `Relation` (by default: shares a label).
Anchors without a relevant item are left out, as in pytorch-metric-learning.

`soft_histograms` below is the formula: a (num_bins + 1) x B x B tensor of pulses, as
pytorch-metric-learning builds it. The loss runs it for a distance of your own (a subclass); for
`LpDistance` itself it runs the kernel `labelspace.losses.metric._kernels.fastap`, which scatters
each distance into its two bins, so memory and time are O(B^2) (`FastAPLoss.uses_kernel`). Both
feed `average_precision`.
"""

from __future__ import annotations

from typing import Any

import torch

from labelspace.distances import BaseDistance, LpDistance
from labelspace.losses.base import MetricLoss, Reduction, check_embeddings, reduce, zero_loss
from labelspace.losses.metric._kernels import builtin_distance
from labelspace.losses.metric._kernels.fastap import fastap_histograms
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule, check_indices_tuple

__all__ = ["FastAPLoss", "average_precision", "miner_weights", "soft_histograms"]


def soft_histograms(
    distances: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, num_bins: int, top: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each anchor's soft histograms of its positives' and negatives' distances, two B x (num_bins + 1) tensors.

    Bin k (centre k delta, delta = top / num_bins) gets the pulse max(0, 1 - |d - k delta| / delta) of each distance d.
    """
    centres = torch.linspace(0, top, num_bins + 1, dtype=distances.dtype, device=distances.device)
    pulses = (1 - (distances[:, :, None] - centres).abs() / (top / num_bins)).relu()  # B x B x (num_bins + 1)
    return (pulses * positive[:, :, None]).sum(dim=1), (pulses * negative[:, :, None]).sum(dim=1)


def average_precision(
    positive_histogram: torch.Tensor, negative_histogram: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_k h+_k H+_k / H_k per anchor (H: cumulative histograms), over the bins where it is defined; and those bins.

    Divided by the anchor's number of relevant items, this is FastAP's estimate of its average precision.
    """
    positive_cumulative = torch.cumsum(positive_histogram, dim=1)
    cumulative = torch.cumsum(positive_histogram + negative_histogram, dim=1)
    product = positive_histogram * positive_cumulative
    defined = (product > 0) & (cumulative > 0)
    return torch.where(defined, product / torch.where(defined, cumulative, 1), 0).sum(dim=1), defined


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
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

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
        relation: RelationRule | str | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        distance = LpDistance(power=2) if distance is None else distance
        if not (isinstance(distance, LpDistance) and distance.normalize_embeddings and distance.p == 2):
            raise ValueError("FastAPLoss needs an LpDistance with p=2 and normalize_embeddings=True")
        super().__init__(
            distance,
            reduction,
            relation=relation,
            **deprecated_relation_keywords,
        )
        if int(num_bins) < 1:
            raise ValueError(f"num_bins must be at least 1, got {num_bins}")
        self.num_bins = int(num_bins)
        self.num_edges = self.num_bins + 1

    def uses_kernel(self) -> bool:
        """Whether `forward` builds the histograms with the scatter kernel: for `LpDistance` itself, every reduction.

        A subclass of your own (which may redefine the matrix) gets `soft_histograms` of its matrix.
        """
        return builtin_distance(self.distance)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        work = upcast_half(embeddings)
        relation = self.relation(embeddings, labels, indices_tuple if labels is None else None)
        weights = miner_weights(indices_tuple, work.shape[0], work.dtype, work.device)
        positive, negative = relation.positive, relation.negative
        num_relevant = positive.sum(dim=1)
        anchors = num_relevant > 0
        if not bool(anchors.any()):
            return work.new_zeros(0) if self.reduction == "none" else zero_loss(work)
        if self.uses_kernel():
            histograms = fastap_histograms(work, self.distance, positive, negative, self.num_bins)
        else:
            histograms = soft_histograms(
                self.distance(work), positive, negative, self.num_bins, 2.0**self.distance.power
            )
        precision, defined = average_precision(*histograms)
        if not bool(defined.any()):
            return work.new_zeros(0) if self.reduction == "none" else zero_loss(work)
        fast_ap = precision[anchors] / num_relevant[anchors].to(work.dtype)
        losses = (1 - fast_ap) * weights[anchors]
        return reduce(losses, self.reduction, work).to(work.dtype)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, reduction={self.reduction!r}"
