"""Reductions: how per-element loss values become one number, for every kind of loss.

One module serves the metric losses, the pair and text losses and the head losses, matching
pytorch-metric-learning's reducers (the ``reduction`` argument):

- ``"mean"``: mean over all elements (`MeanReducer`).
- ``"mean_nonzero"``: mean over the elements greater than zero (`AvgNonZeroReducer`).
- ``"sum"``: sum of the elements.
- ``"none"``: the unreduced per-element tensor.

When there is nothing to average (no pairs, no positive element), the loss is
``0 * embeddings.sum()`` (`zero_loss`): zero, still attached to the graph, never NaN.

Example:
    >>> import torch
    >>> values = torch.tensor([0.0, 2.0, 4.0])
    >>> reduce(values, "mean", values).item(), reduce(values, "mean_nonzero", values).item()
    (2.0, 3.0)
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["REDUCTIONS", "Reduction", "check_reduction", "reduce", "reduce_pair_losses", "zero_loss"]

Reduction = Literal["mean", "mean_nonzero", "sum", "none"]
REDUCTIONS = ("mean", "mean_nonzero", "sum", "none")


def check_reduction(reduction: str, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    """A ValueError naming the choices when ``reduction`` is not one of ``allowed`` (default: `REDUCTIONS`)."""
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(allowed)}; got {reduction!r}")


def zero_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """A zero in the embeddings' dtype that keeps the graph (and a zero gradient) through them."""
    return (embeddings * 0).sum()


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


def reduce_pair_losses(
    losses: torch.Tensor,
    reduction: Reduction,
    *,
    mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce non-negative per-pair losses like pytorch-metric-learning's reducers, optionally weighted.

    ``losses`` is either a 1-D tensor of per-pair losses (``mask`` None) or a B x B matrix that is
    zero outside ``mask``; ``weight`` has the shape of ``losses``. ``"mean"`` is sum(w l) / sum(w)
    over the pairs, ``"mean_nonzero"`` the same over the pairs with l > 0, ``"sum"`` is sum(w l);
    with no pair to average (or zero total weight) the result is 0, still attached to the graph, never NaN.
    """
    weighted = losses if weight is None else losses * weight
    if reduction == "none":
        return weighted if mask is None else weighted[mask]
    total = weighted.sum()
    if reduction == "sum":
        return total
    if reduction == "mean_nonzero":
        counted = losses > 0  # losses are zero outside the mask, so this lies inside it
    elif reduction == "mean":
        counted = mask if mask is not None else torch.ones_like(losses, dtype=torch.bool)
    else:  # pragma: no cover - validated in MetricLoss.__init__
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if weight is None:
        denominator = counted.sum()
    else:
        denominator = torch.where(counted, weight, torch.zeros((), dtype=weight.dtype, device=weight.device)).sum()
    denominator = denominator.to(total.dtype)
    # No pair counted: total is 0 too (its gradient is 0), so dividing by 1 gives the zero loss without a sync.
    return total / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
