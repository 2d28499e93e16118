"""TripletLoss on embeddings: sentence-transformers' ``TripletLoss`` without the encoder call."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from labelspace.losses.base import check_columns
from labelspace.losses.reduction import zero_loss
from labelspace.precision import upcast_half

__all__ = ["TRIPLET_DISTANCES", "TripletDistance", "TripletLoss"]

TripletDistance = Literal["euclidean", "cosine", "manhattan"]
TRIPLET_DISTANCES = ("euclidean", "cosine", "manhattan")


class TripletLoss(torch.nn.Module):
    r"""Margin loss on explicit (anchor, positive, negative) triplets.

    For anchors :math:`a_i`, positives :math:`p_i` and K >= 1 columns of negatives :math:`n^{(k)}_i`,

    .. math::

        L = \frac{1}{K B} \sum_{k=1}^{K} \sum_{i=1}^{B}
            \max\bigl(0,\; d(a_i, p_i) - d(a_i, n^{(k)}_i) + m\bigr)

    with :math:`m` the ``margin`` and :math:`d` one of

    - ``"euclidean"`` (default): :math:`\lVert a - b \rVert_2`;
    - ``"cosine"``: :math:`1 - \cos(a, b)`;
    - ``"manhattan"``: :math:`\lVert a - b \rVert_1`.

    With one negative column (K = 1) this is sentence-transformers' ``TripletLoss`` (its
    ``distance_metric=TripletDistanceMetric.EUCLIDEAN / COSINE / MANHATTAN`` and ``triplet_margin``,
    default 5), to which it is equal. sentence-transformers accepts exactly one negative column;
    with several, each negative makes its own triplet with the anchor and positive and the loss is
    the mean over all B K triplets.

    ``labels`` is accepted (the trainer passes the anchors' labels when a batch carries them) and
    ignored: the triplets are explicit, there are no in-batch negatives to mask.

    Args:
        distance: ``"euclidean"``, ``"cosine"`` or ``"manhattan"``.
        margin: how much farther than the positive each negative should be (default 5.0, as
            sentence-transformers; with ``"cosine"`` distances lie in [0, 2], so pick a margin below 2).

    Example:
        >>> import torch
        >>> from labelspace.losses.text import TripletLoss
        >>> anchors = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
        >>> positives = torch.tensor([[0.0, 1.0], [1.0, 2.0]])
        >>> negatives = torch.tensor([[0.0, 3.0], [1.0, 8.0]])
        >>> float(TripletLoss(margin=5.0)(anchors, positives, negatives))  # (max(0, 1 - 3 + 5) + max(0, 1 - 7 + 5)) / 2
        1.5
    """

    def __init__(self, distance: TripletDistance = "euclidean", margin: float = 5.0) -> None:
        super().__init__()
        if distance not in TRIPLET_DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(TRIPLET_DISTANCES)}; got {distance!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise ValueError(f"margin must be a number; got {margin!r}")
        self.distance: TripletDistance = distance
        self.margin = float(margin)

    def distances(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Row-wise distances :math:`d(\\text{first}_i, \\text{second}_i)` (broadcasting over leading dims)."""
        if self.distance == "euclidean":
            return torch.linalg.vector_norm(first - second, ord=2, dim=-1)
        if self.distance == "manhattan":
            return (first - second).abs().sum(dim=-1)
        return 1 - (F.normalize(first, p=2, dim=-1) * F.normalize(second, p=2, dim=-1)).sum(dim=-1)

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        *negatives: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean hinge over the triplets (see the class docstring); ``labels`` is ignored."""
        if not negatives:
            raise ValueError(
                "TripletLoss needs (anchor, positive, negative) triplets: got anchors and positives only "
                "(use MultipleNegativesRankingLoss for pairs)"
            )
        columns = (anchors, positives, *negatives)
        if not isinstance(anchors, torch.Tensor) or anchors.dim() != 2:
            raise ValueError("anchors must be a 2-D tensor (batch x dim)")
        for column in columns[1:]:
            if not isinstance(column, torch.Tensor) or column.shape != anchors.shape:
                shape = tuple(column.shape) if isinstance(column, torch.Tensor) else type(column).__name__
                raise ValueError(
                    f"positives and negatives must have the anchors' shape {tuple(anchors.shape)}, got {shape}"
                )
        check_columns(columns)  # finite (an empty batch gives a zero loss)
        anchors, positives = upcast_half(anchors), upcast_half(positives)
        stacked = torch.stack([upcast_half(column) for column in negatives])  # K x B x d
        if anchors.shape[0] == 0:
            return zero_loss(torch.cat([anchors, positives, stacked.flatten(0, 1)]))
        positive = self.distances(anchors, positives)  # B
        negative = self.distances(anchors.unsqueeze(0), stacked)  # K x B
        return F.relu(positive.unsqueeze(0) - negative + self.margin).mean()

    def extra_repr(self) -> str:
        return f"distance={self.distance!r}, margin={self.margin}"
