"""The triplet margin loss's kernels: all triplets without listing them, listed triplets without the matrix.

`TripletMarginLoss.reference` lists the triplets and gathers their distances from the B x B matrix,
so all triplets of a batch cost O(number of triplets) memory, up to O(B^3). Here:

- `all_triplets_loss`: every (a, p, n) of a relation, reduced, computed chunk by chunk over the
  positive pairs (a, p), each chunk against every candidate negative, with a hand-written gradient:
  the work tensors hold at most ``max(chunk_elements, B)`` elements each, on top of the B x B
  distance matrix and its B x B gradient, so memory is O(B^2).
- `listed_triplet_distances`: d(a, p) and d(a, n) of T listed triplets from the T gathered rows
  (no B x B matrix at all, e.g. for batch-hard mining), or gathered from the B x B matrix with an
  ``index_select`` whose backward is a fast ``index_add``.

Both reproduce the built-in distances (`labelspace.losses.metric._kernels.builtin_distance`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance, LpDistance
from labelspace.losses.reduction import zero_loss
from labelspace.relations import Relation

__all__ = ["all_triplets_loss", "listed_triplet_distances"]


class AllTripletsLoss(torch.autograd.Function):
    """Reduced triplet margin loss over every (a, p, n) with (a, p) a positive pair, n a negative of a.

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
        chunk_elements: int,
    ) -> torch.Tensor:
        size = matrix.shape[0]
        sign = -1.0 if inverted else 1.0  # violation = sign * (d_ap - d_an) + margin
        grad = torch.zeros_like(matrix)
        total = torch.zeros((), dtype=torch.float64, device=matrix.device)
        count = torch.zeros((), dtype=torch.long, device=matrix.device)
        step = max(1, chunk_elements // max(size, 1))
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
        return (grad_output * grad, None, None, None, None, None, None, None, None, None)


def all_triplets_loss(
    distance: BaseDistance,
    embeddings: torch.Tensor,
    relation: Relation,
    margin: float,
    swap: bool,
    smooth: bool,
    reduction: str,
    chunk_elements: int,
) -> torch.Tensor:
    """The loss over every triplet of ``relation``, reduced (``"mean"``, ``"mean_nonzero"``, ``"sum"``).

    ``embeddings`` are already upcast; no triplet gives the differentiable zero without a distance matrix.
    """
    usable = relation.positive & relation.negative.any(dim=1, keepdim=True)
    if not bool(usable.any()):
        return zero_loss(embeddings)
    anchors, positives = torch.where(usable)
    matrix = distance(embeddings)
    return AllTripletsLoss.apply(
        matrix,
        anchors,
        positives,
        relation.negative,
        margin,
        swap,
        smooth,
        distance.is_inverted,
        reduction,
        chunk_elements,
    )


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


def listed_triplet_distances(
    distance: BaseDistance,
    embeddings: torch.Tensor,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    *,
    swap: bool,
    use_rows: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """d(a, p) and d(a, n) of each listed triplet; with ``swap``, d(a, n) is the closer of d(a, n) and d(p, n).

    ``use_rows``: from the gathered rows (O(T * dim)), else gathered from the B x B matrix.
    """
    pairs = [(anchors, positives), (anchors, negatives)] + ([(positives, negatives)] if swap else [])
    if use_rows:
        distances = row_distances(distance, distance.maybe_normalize(embeddings), pairs)
    else:
        size = embeddings.shape[0]
        flat = distance(embeddings).reshape(-1)  # index_select: its backward is a fast index_add
        distances = [flat.index_select(0, first * size + second) for first, second in pairs]
    to_positive, to_negative = distances[0], distances[1]
    if swap:
        to_negative = distance.smallest(to_negative, distances[2])
    return to_positive, to_negative
