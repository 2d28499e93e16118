"""What every metric loss shares: reading labels / relations / indices, and reductions.

A metric loss is called like pytorch-metric-learning's: ``loss(embeddings, labels=None,
indices_tuple=None)``. ``labels`` is a 1-D tensor of class ids, a B x num_labels 0/1 matrix,
or a `Relation`; ``indices_tuple`` (from a miner) takes precedence when given. Subclasses
implement `compute` on the resolved inputs and return per-element loss values, which a
reduction turns into a scalar.

Reductions (the ``reduction`` argument), matching pytorch-metric-learning's reducers:

- ``"mean"``: mean over all elements (`MeanReducer`).
- ``"mean_nonzero"``: mean over the elements greater than zero (`AvgNonZeroReducer`).
- ``"sum"``: sum of the elements.
- ``"none"``: the unreduced per-element tensor.

When there is nothing to average (no pairs, no positive element), the loss is
``0 * embeddings.sum()``: zero, still attached to the graph, never NaN.
"""

from __future__ import annotations

from typing import Literal

import torch

from labelspace.distances import BaseDistance
from labelspace.relations import IndicesTuple, Relation, Rule, resolve_relation

Reduction = Literal["mean", "mean_nonzero", "sum", "none"]
REDUCTIONS = ("mean", "mean_nonzero", "sum", "none")


def zero_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """A zero that keeps the graph (and a zero gradient) through ``embeddings``."""
    return (embeddings * 0).sum().float()


def reduce(values: torch.Tensor, reduction: Reduction, embeddings: torch.Tensor) -> torch.Tensor:
    """Reduce per-element losses as pytorch-metric-learning's reducer of the same meaning."""
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum() if values.numel() else zero_loss(embeddings)
    if reduction == "mean_nonzero":
        values = values[values > 0]
    if values.numel() == 0:
        return zero_loss(embeddings)
    return values.mean()


def check_embeddings(embeddings: torch.Tensor) -> None:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"embeddings must be a 2-D tensor (batch x dim), got {shape}")


class MetricLoss(torch.nn.Module):
    """Base class of labelspace's metric losses.

    Args:
        distance: the distance or similarity the loss works in (each loss has its default).
        reduction: how per-element losses become one value (each loss has its default).
        rule, min_shared, pos_threshold, neg_threshold: how multi-hot labels become a
            `Relation` (see `labelspace.relations`); ignored for 1-D labels and when a
            Relation or an indices_tuple is given.
    """

    default_reduction: Reduction = "mean"

    def __init__(
        self,
        distance: BaseDistance,
        reduction: Reduction | None = None,
        *,
        rule: Rule = "overlap",
        min_shared: int = 1,
        pos_threshold: float = 0.5,
        neg_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        reduction = reduction or self.default_reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
        self.distance = distance
        self.reduction: Reduction = reduction
        self.rule: Rule = rule
        self.min_shared = min_shared
        self.pos_threshold = pos_threshold
        self.neg_threshold = neg_threshold

    def relation(
        self, embeddings: torch.Tensor, labels: torch.Tensor | Relation | None, indices_tuple: IndicesTuple | None
    ) -> Relation:
        """The batch's relation, on the embeddings' device."""
        if isinstance(labels, torch.Tensor):
            labels = labels.to(embeddings.device)
        relation = resolve_relation(
            labels,
            indices_tuple,
            embeddings.shape[0],
            rule=self.rule,
            min_shared=self.min_shared,
            pos_threshold=self.pos_threshold,
            neg_threshold=self.neg_threshold,
        )
        return relation if relation.device == embeddings.device else relation.to(embeddings.device)

    def reduce(self, values: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return reduce(values, self.reduction, embeddings)
