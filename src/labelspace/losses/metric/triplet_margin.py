"""Triplet margin loss, as pytorch-metric-learning's `TripletMarginLoss`, for single- and multi-label batches.

For each triplet (a, p, n), with a distance d (default `LpDistance`, smaller is closer):

    l(a, p, n) = [d(a, p) - d(a, n) + margin]_+        (softplus instead of [.]_+ with smooth_loss)

and with a similarity s (``distance.is_inverted``), [s(a, n) - s(a, p) + margin]_+; with ``swap``,
d(a, n) is replaced by d(p, n) when that is the smaller. The loss is the reduction of l over the
triplets (default ``"mean_nonzero"``: the mean over the triplets with l > 0).

Triplets come from an ``indices_tuple`` (a miner's ``(a, p, n)``, or ``(a1, p, a2, n)`` pairs joined
on their anchors as pytorch-metric-learning does), else from the batch's `Relation`: every anchor,
every positive of it and every negative of it (``triplets_per_anchor="all"``), or that many random
(positive, negative) draws per anchor.

Implementation: `triplet_margin_reference` below (called by `TripletMarginLoss.reference`) is the
formula on listed triplets, gathered from the B x B matrix. `forward` runs it, or, where
`TripletMarginLoss.uses_kernel` says so, the kernels of ``_kernels/triplet_margin.py``. Memory
there: all triplets of a batch, reduced, are computed chunk by chunk over the positive pairs (a, p),
each chunk against every candidate negative, with a hand-written gradient: work tensors of at most
``max(CHUNK_ELEMENTS, B)`` elements, on top of the B x B distance matrix and its B x B gradient, so
memory is O(B^2), never O(B^3) nor O(number of triplets). With listed triplets (a miner's output,
``reduction="none"``, ``triplets_per_anchor=k``) the work is per triplet: distances of the T
gathered rows when ``T * dim <= max(B^2, ROWS_ELEMENTS)`` (batch-hard mining: no B x B matrix at
all), else gathers from the B x B matrix.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance, LpDistance
from labelspace.losses.base import MetricLoss, Reduction, check_embeddings
from labelspace.losses.metric._kernels import builtin_distance
from labelspace.losses.metric._kernels.triplet_margin import all_triplets_loss, listed_triplet_distances
from labelspace.losses.reduction import reduce
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule, check_indices_tuple

__all__ = [
    "CHUNK_ELEMENTS",
    "ROWS_ELEMENTS",
    "TripletMarginLoss",
    "as_triplets",
    "pairs_to_triplets",
    "reduce_triplet_distances",
    "sample_triplets",
    "triplet_margin_reference",
]


def triplet_margin_reference(
    embeddings: torch.Tensor,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    margin: float,
    swap: bool,
    smooth_loss: bool,
    distance: BaseDistance,
    reduction: Reduction,
) -> torch.Tensor:
    """The triplet margin loss of the listed triplets ``(anchors, positives, negatives)``, as the formula reads.

    Their distances are gathered from the B x B matrix of ``embeddings``; with ``swap`` the
    positive-negative distance replaces the anchor-negative one where it is the closer
    (``distance.smallest``); then `reduce_triplet_distances`.

    Example:
        >>> import torch
        >>> from labelspace.distances import LpDistance
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> triplet = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])  # d(0,1) = sqrt(2), d(0,2) = 2
        >>> options = dict(margin=1.0, smooth_loss=False, distance=LpDistance(), reduction="mean")
        >>> round(triplet_margin_reference(embeddings, *triplet, swap=False, **options).item(), 4)  # sqrt(2) - 2 + 1
        0.4142
        >>> round(triplet_margin_reference(embeddings, *triplet, swap=True, **options).item(), 4)  # d(1,2) = sqrt(2)
        1.0
    """
    matrix = distance(embeddings)
    to_positive, to_negative = matrix[anchors, positives], matrix[anchors, negatives]
    if swap:  # the positive's distance to the negative, where that one is the closer
        to_negative = distance.smallest(to_negative, matrix[positives, negatives])
    return reduce_triplet_distances(
        to_positive,
        to_negative,
        embeddings,
        margin=margin,
        smooth_loss=smooth_loss,
        distance=distance,
        reduction=reduction,
    )


def reduce_triplet_distances(
    to_positive: torch.Tensor,
    to_negative: torch.Tensor,
    embeddings: torch.Tensor,
    *,
    margin: float,
    smooth_loss: bool,
    distance: BaseDistance,
    reduction: Reduction,
) -> torch.Tensor:
    """[margin - how much farther the negative is than the positive]_+ (softplus when smooth), reduced.

    ``to_positive`` and ``to_negative`` are the triplets' anchor-positive and anchor-negative distances;
    ``embeddings`` give the zero (on their graph) when there is no triplet to reduce.
    """
    violation = margin - distance.margin(to_positive, to_negative)
    losses = F.softplus(violation) if smooth_loss else F.relu(violation)
    return reduce(losses, reduction, embeddings)


CHUNK_ELEMENTS = 1 << 22
"""Largest work tensor (elements) of the all-triplets kernel; a chunk is at least one row of B."""
ROWS_ELEMENTS = 1 << 22
"""Listed triplets use gathered rows (no B x B matrix) while ``T * dim <= max(B * B, ROWS_ELEMENTS)``."""


class TripletMarginLoss(MetricLoss):
    """Triplet margin loss: ``L = mean over triplets with L > 0 of [d(a,p) - d(a,n) + margin]_+``.

    For similarities (``CosineSimilarity``, ``DotProductSimilarity``) the violation is
    ``s(a,n) - s(a,p) + margin``. Same defaults and values as pytorch-metric-learning's
    ``TripletMarginLoss`` (``LpDistance``, ``AvgNonZeroReducer``); multi-hot labels or a `Relation`
    give the positives and negatives of each anchor (by default: positive when sharing a label,
    negative when sharing none).

    Args:
        margin: the desired gap between the anchor-negative and the anchor-positive distance.
        swap: use the positive-negative distance instead of the anchor-negative one when it is
            the smaller (violates the margin more).
        smooth_loss: ``softplus`` of the violation instead of its positive part.
        triplets_per_anchor: ``"all"`` triplets of the batch, or that many random (positive,
            negative) draws per anchor; ignored when an ``indices_tuple`` is given.
        distance: default ``LpDistance()`` (Euclidean on L2-normalised embeddings).
        reduction: default ``"mean_nonzero"`` (mean of the triplets with a positive loss).
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``). ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.

    Example:
        >>> import torch
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1]])  # item 1 shares a label with both others
        >>> loss = TripletMarginLoss(margin=1.0)
        >>> round(loss(embeddings, labels).item(), 4)  # triplets (0, 1, 2) and (2, 1, 0): sqrt(2) - 2 + 1
        0.4142
    """

    default_reduction: Reduction = "mean_nonzero"

    def __init__(
        self,
        margin: float = 0.05,
        swap: bool = False,
        smooth_loss: bool = False,
        triplets_per_anchor: int | Literal["all"] = "all",
        distance: BaseDistance | None = None,
        reduction: Reduction | None = None,
        *,
        relation: RelationRule | str | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__(
            LpDistance() if distance is None else distance,
            reduction,
            relation=relation,
            **deprecated_relation_keywords,
        )
        if triplets_per_anchor != "all" and (
            isinstance(triplets_per_anchor, bool) or not isinstance(triplets_per_anchor, int) or triplets_per_anchor < 1
        ):
            raise ValueError(f'triplets_per_anchor must be "all" or a positive int, got {triplets_per_anchor!r}')
        self.margin = float(margin)
        self.swap = bool(swap)
        self.smooth_loss = bool(smooth_loss)
        self.triplets_per_anchor = triplets_per_anchor

    def reference(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """`triplet_margin_reference` of the listed triplets with this loss's options."""
        return triplet_margin_reference(
            upcast_half(embeddings),
            anchors,
            positives,
            negatives,
            margin=self.margin,
            swap=self.swap,
            smooth_loss=self.smooth_loss,
            distance=self.distance,
            reduction=self.reduction,
        )

    def reduce_triplets(
        self, to_positive: torch.Tensor, to_negative: torch.Tensor, embeddings: torch.Tensor
    ) -> torch.Tensor:
        """`reduce_triplet_distances` with this loss's margin, smoothing, distance and reduction."""
        return reduce_triplet_distances(
            to_positive,
            to_negative,
            embeddings,
            margin=self.margin,
            smooth_loss=self.smooth_loss,
            distance=self.distance,
            reduction=self.reduction,
        )

    def uses_kernel(self) -> bool:
        """Whether `forward` runs the kernels of ``_kernels/triplet_margin.py`` instead of `reference`.

        They serve the built-in distances, whose matrix, rows and margin they reproduce: all triplets
        of the batch, reduced (``triplets_per_anchor="all"`` and a reduction other than ``"none"``),
        in chunks without listing them; listed triplets (a miner's, sampled ones, ``"none"``) from
        gathered rows (`uses_row_distances`). A subclass of `BaseDistance` gets `reference`.
        """
        return builtin_distance(self.distance)

    def uses_row_distances(self, num_triplets: int, size: int, dim: int) -> bool:
        """Listed triplets in the kernel: distances of gathered rows (True) or gathers from the B x B matrix."""
        return num_triplets * dim <= max(size * size, ROWS_ELEMENTS)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        work = upcast_half(embeddings)
        if indices_tuple is not None:
            checked = check_indices_tuple(indices_tuple, embeddings.shape[0])
            triplets = as_triplets(tuple(t.to(embeddings.device) for t in checked))
        else:
            relation = self.relation(embeddings, labels, None)
            if self.triplets_per_anchor != "all":
                triplets = sample_triplets(relation, self.triplets_per_anchor)
            elif self.uses_kernel() and self.reduction != "none":
                return all_triplets_loss(
                    self.distance,
                    work,
                    relation,
                    self.margin,
                    self.swap,
                    self.smooth_loss,
                    self.reduction,
                    CHUNK_ELEMENTS,
                )
            else:
                triplets = relation.triplet_indices()
        if not self.uses_kernel():
            return self.reference(work, *triplets)
        use_rows = self.uses_row_distances(len(triplets[0]), *work.shape)
        distances = listed_triplet_distances(self.distance, work, *triplets, swap=self.swap, use_rows=use_rows)
        return self.reduce_triplets(*distances, work)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, swap={self.swap}, smooth_loss={self.smooth_loss}, "
            f"triplets_per_anchor={self.triplets_per_anchor!r}, reduction={self.reduction!r}"
        )


def pairs_to_triplets(
    anchors_positive: torch.Tensor, positives: torch.Tensor, anchors_negative: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Join positive and negative pairs on their anchor, as pytorch-metric-learning's ``convert_to_triplets``.

    Same triplets in the same order as ``torch.where(a1[:, None] == a2)`` (positive pair major, then
    negative pairs in their given order), without the P x N comparison matrix.
    """
    anchors_positive, positives = anchors_positive.long(), positives.long()
    anchors_negative, negatives = anchors_negative.long(), negatives.long()
    device = anchors_positive.device
    order = torch.argsort(anchors_negative, stable=True)
    sorted_anchors = anchors_negative[order].contiguous()
    start = torch.searchsorted(sorted_anchors, anchors_positive.contiguous(), side="left")
    end = torch.searchsorted(sorted_anchors, anchors_positive.contiguous(), side="right")
    counts = end - start
    rows = torch.repeat_interleave(torch.arange(len(anchors_positive), device=device), counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    offsets = torch.arange(len(rows), device=device) - first
    columns = order[start[rows] + offsets]
    return anchors_positive[rows], positives[rows], negatives[columns]


def as_triplets(indices_tuple: IndicesTuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, p, n)`` from a triplet or a pair indices_tuple."""
    if len(indices_tuple) == 3:
        anchors, positives, negatives = indices_tuple
        return anchors.long(), positives.long(), negatives.long()
    if len(indices_tuple) == 4:
        return pairs_to_triplets(*indices_tuple)
    raise ValueError(f"indices_tuple must have 3 (a, p, n) or 4 (a1, p, a2, n) tensors, got {len(indices_tuple)}")


def sample_triplets(
    relation: Relation, per_anchor: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``per_anchor`` random (positive, negative) draws, with replacement, for every anchor that has both.

    The distribution of pytorch-metric-learning's ``get_random_triplet_indices`` (uniform positive
    among the anchor's positives, uniform negative among its negatives), grouped by anchor.
    """
    positive, negative = relation.positive, relation.negative
    anchors = torch.where(positive.any(dim=1) & negative.any(dim=1))[0]
    if len(anchors) == 0:
        empty = torch.empty(0, dtype=torch.long, device=relation.device)
        return empty, empty.clone(), empty.clone()
    positives = torch.multinomial(positive[anchors].float(), per_anchor, replacement=True, generator=generator)
    negatives = torch.multinomial(negative[anchors].float(), per_anchor, replacement=True, generator=generator)
    return anchors.repeat_interleave(per_anchor), positives.reshape(-1), negatives.reshape(-1)
