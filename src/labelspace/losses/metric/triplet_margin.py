"""Triplet margin loss, as pytorch-metric-learning's `TripletMarginLoss`, for single- and multi-label batches.

Triplets come from an ``indices_tuple`` (a miner's ``(a, p, n)``, or ``(a1, p, a2, n)`` pairs joined
on their anchors as pytorch-metric-learning does), else from the batch's `Relation`: every anchor,
every positive of it and every negative of it (``triplets_per_anchor="all"``), or that many random
(positive, negative) draws per anchor.

Memory. With all triplets of a batch the loss is computed chunk by chunk over the positive pairs
(a, p), each chunk against every candidate negative, with a hand-written gradient: the work
tensors hold at most ``max(CHUNK_ELEMENTS, B)`` elements each, on top of the B x B distance
matrix and its B x B gradient, so memory is O(B^2), never O(B^3) nor O(number of triplets).
With explicit triplets (a miner's output, ``reduction="none"``, ``triplets_per_anchor=k``) the
work is per triplet: distances of the T gathered rows when ``T * dim <= max(B^2, ROWS_ELEMENTS)``
(batch-hard mining: no B x B matrix at all), else gathers from the B x B matrix.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance, DotProductSimilarity, LpDistance
from labelspace.losses.base import MetricLoss, Reduction, check_embeddings, compute_input, reduce, zero_loss
from labelspace.relations import IndicesTuple, Relation, Rule, check_indices_tuple

CHUNK_ELEMENTS = 1 << 22
"""Largest work tensor (elements) of the all-triplets computation; a chunk is at least one row of B."""
ROWS_ELEMENTS = 1 << 22
"""Explicit triplets use gathered rows (no B x B matrix) while ``T * dim <= max(B * B, ROWS_ELEMENTS)``."""


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


def row_distances(
    distance: BaseDistance, normalized: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]]
) -> list[torch.Tensor]:
    """``distance`` between rows ``first[i]`` and ``second[i]`` of already normalised embeddings, per pair list.

    One ``index_select`` for all the rows (its backward is a fast ``index_add``).
    """
    rows = normalized.index_select(0, torch.cat([index for pair in pairs for index in pair]))
    pieces = rows.split([len(index) for pair in pairs for index in pair])
    values = []
    for first, second in zip(pieces[0::2], pieces[1::2], strict=True):
        if isinstance(distance, LpDistance):
            value = torch.linalg.vector_norm(first - second, ord=distance.p, dim=1)
        else:
            value = (first * second).sum(dim=1)
        values.append(value**distance.power if distance.power != 1 else value)
    return values


class _AllTripletsLoss(torch.autograd.Function):
    """Reduced triplet margin loss over every (a, p, n) with p in the positive pairs, n a negative of a.

    Chunked over positive pairs, the gradient w.r.t. the distance matrix accumulated in the forward.
    """

    @staticmethod
    def forward(
        ctx,
        matrix: torch.Tensor,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        negative: torch.Tensor,
        margin: float,
        swap: bool,
        smooth: bool,
        inverted: bool,
        reduction: str,
    ) -> torch.Tensor:
        size = matrix.shape[0]
        sign = -1.0 if inverted else 1.0  # violation = sign * (d_ap - d_an) + margin
        grad = torch.zeros_like(matrix)
        total = torch.zeros((), dtype=torch.float64, device=matrix.device)
        count = torch.zeros((), dtype=torch.long, device=matrix.device)
        step = max(1, CHUNK_ELEMENTS // max(size, 1))
        for start in range(0, len(anchors), step):
            anchor, positive = anchors[start : start + step], positives[start : start + step]
            to_negative = matrix[anchor]  # (k, B): d(a, n) for every candidate n
            if swap:
                from_positive = matrix[positive]  # d(p, n)
                farther = torch.maximum if inverted else torch.minimum
                to_negative_used = farther(to_negative, from_positive)
            else:
                to_negative_used = to_negative
            violation = sign * (matrix[anchor, positive][:, None] - to_negative_used) + margin
            losses = F.softplus(violation) if smooth else F.relu(violation)
            keep = negative[anchor]
            if reduction == "mean_nonzero":
                keep = keep & (losses > 0)
            total += torch.where(keep, losses, 0).sum(dtype=torch.float64)
            count += keep.sum()
            if not ctx.needs_input_grad[0]:
                continue
            slope = torch.sigmoid(violation) if smooth else (violation > 0).to(matrix.dtype)
            slope = torch.where(keep, slope, 0)
            grad.index_put_((anchor, positive), sign * slope.sum(dim=1), accumulate=True)
            if swap:
                # torch.minimum / maximum send the gradient to the chosen side, half to each on ties.
                chosen = (to_negative < from_positive) if not inverted else (to_negative > from_positive)
                share = chosen.to(matrix.dtype) + 0.5 * (to_negative == from_positive).to(matrix.dtype)
                grad.index_add_(0, anchor, -sign * slope * share)
                grad.index_add_(0, positive, -sign * slope * (1 - share))
            else:
                grad.index_add_(0, anchor, -sign * slope)
        if reduction in ("mean", "mean_nonzero"):
            denominator = max(int(count), 1)
            total = total / denominator
            grad = grad / denominator
        ctx.save_for_backward(grad)
        return total.to(matrix.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: ANN205
        (grad,) = ctx.saved_tensors
        return (grad_output * grad, None, None, None, None, None, None, None, None)


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
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a `Relation`.

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
        rule: Rule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            LpDistance() if distance is None else distance,
            reduction,
            rule=rule,
            min_shared=min_shared,
            pos_threshold=pos_threshold,
            neg_threshold=neg_threshold,
        )
        if triplets_per_anchor != "all" and (
            isinstance(triplets_per_anchor, bool) or not isinstance(triplets_per_anchor, int) or triplets_per_anchor < 1
        ):
            raise ValueError(f'triplets_per_anchor must be "all" or a positive int, got {triplets_per_anchor!r}')
        self.margin = float(margin)
        self.swap = bool(swap)
        self.smooth_loss = bool(smooth_loss)
        self.triplets_per_anchor = triplets_per_anchor

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | Relation | None = None,
        indices_tuple: IndicesTuple | None = None,
    ) -> torch.Tensor:
        check_embeddings(embeddings)
        work = compute_input(embeddings)
        if indices_tuple is not None:
            checked = check_indices_tuple(indices_tuple, embeddings.shape[0])
            anchors, positives, negatives = as_triplets(tuple(t.to(embeddings.device) for t in checked))
            return self.explicit_triplets(work, anchors, positives, negatives)
        relation = self.relation(embeddings, labels, None)
        if self.triplets_per_anchor != "all":
            return self.explicit_triplets(work, *sample_triplets(relation, self.triplets_per_anchor))
        if self.reduction == "none":
            return self.explicit_triplets(work, *relation.triplet_indices())
        return self.all_triplets(work, relation)

    def triplet_losses(self, positive_distances: torch.Tensor, negative_distances: torch.Tensor) -> torch.Tensor:
        if self.distance.is_inverted:
            violation = negative_distances - positive_distances + self.margin
        else:
            violation = positive_distances - negative_distances + self.margin
        return F.softplus(violation) if self.smooth_loss else F.relu(violation)

    def explicit_triplets(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Loss of the given triplets (per-triplet work; O(T) memory beyond the embeddings)."""
        if len(anchors) == 0:
            return embeddings.new_zeros(0) if self.reduction == "none" else zero_loss(embeddings)
        size, dim = embeddings.shape
        pairs = [(anchors, positives), (anchors, negatives)] + ([(positives, negatives)] if self.swap else [])
        if self.uses_row_distances(len(anchors), size, dim):
            normalized = self.distance.maybe_normalize(embeddings)
            distances = row_distances(self.distance, normalized, pairs)
        else:
            matrix = self.distance(embeddings)
            flat = matrix.reshape(-1)  # index_select: its backward is a fast index_add
            distances = [flat.index_select(0, first * size + second) for first, second in pairs]
        to_positive, to_negative = distances[0], distances[1]
        if self.swap:
            farther = torch.maximum if self.distance.is_inverted else torch.minimum
            to_negative = farther(to_negative, distances[2])
        return reduce(self.triplet_losses(to_positive, to_negative), self.reduction, embeddings).to(embeddings.dtype)

    def uses_row_distances(self, num_triplets: int, size: int, dim: int) -> bool:
        """Explicit triplets: distances of gathered rows (True) or gathers from the B x B matrix (False)."""
        return isinstance(self.distance, (LpDistance, DotProductSimilarity)) and num_triplets * dim <= max(
            size * size, ROWS_ELEMENTS
        )

    def all_triplets(self, embeddings: torch.Tensor, relation: Relation) -> torch.Tensor:
        """Loss over every triplet of the relation, chunked, O(B^2) memory."""
        positive, negative = relation.positive, relation.negative
        usable = positive & negative.any(dim=1, keepdim=True)
        if not bool(usable.any()):
            return zero_loss(embeddings)
        anchors, positives = torch.where(usable)
        matrix = self.distance(embeddings)
        return _AllTripletsLoss.apply(
            matrix,
            anchors,
            positives,
            negative,
            self.margin,
            self.swap,
            self.smooth_loss,
            self.distance.is_inverted,
            self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, swap={self.swap}, smooth_loss={self.smooth_loss}, "
            f"triplets_per_anchor={self.triplets_per_anchor!r}, reduction={self.reduction!r}"
        )
