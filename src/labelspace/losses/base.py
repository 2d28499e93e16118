"""What every metric loss shares: reading labels / relations / indices and checking the batch.

A metric loss is called like pytorch-metric-learning's: ``loss(embeddings, labels=None,
indices_tuple=None)``. ``labels`` is a 1-D tensor of class ids, a B x num_labels 0/1 matrix,
or a `Relation`; ``indices_tuple`` (from a miner) takes precedence when given. The relation
comes from the loss's `RelationRule` (``relation=``), the reduction from
`labelspace.losses.reduction`, the half-precision upcast from `labelspace.precision`.

Bad batches are refused the same way by every metric loss and miner (`check_embeddings`,
`labelspace.relations.resolve_relation`): an empty batch, NaN or inf embeddings (the error
names the rows) and labels that are not a tensor or a `Relation` (a Python list) raise
ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from labelspace.distances import BaseDistance
from labelspace.losses.reduction import REDUCTIONS, Reduction, check_reduction, reduce, reduce_pair_losses, zero_loss
from labelspace.precision import upcast_half
from labelspace.relations import IndicesTuple, Relation, RelationRule, Rule

# The upcast's name before it moved to labelspace.precision (one release of overlap).
compute_input = upcast_half

__all__ = [
    "REDUCTIONS",
    "MetricLoss",
    "Reduction",
    "check_embeddings",
    "compute_input",
    "reduce",
    "reduce_pair_losses",
    "upcast_half",
    "zero_loss",
]

PositiveWeighting = Literal["none", "jaccard"]
POSITIVE_WEIGHTINGS = ("none", "jaccard")


# Non-finite rows named in the error message; more are counted, not listed.
SHOWN_ROWS = 10


def check_embeddings(embeddings: torch.Tensor, name: str = "embeddings", *, allow_empty: bool = False) -> None:
    """Refuse what no loss or miner can use: not a 2-D tensor, an empty batch, NaN or inf values.

    One rule for every metric loss, miner and embedding-level text loss: a non-finite value is a
    ValueError naming its rows, never a NaN loss from some losses and a finite one from others
    (a NaN row would otherwise spread to every anchor's loss, or be silently skipped by a mask).
    The check is one vectorised ``isfinite().all()``; on a GPU that is one synchronisation per call.
    ``allow_empty`` lets the text losses keep their zero loss for an empty batch.

    Example:
        >>> check_embeddings(torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, float("inf")]]))
        Traceback (most recent call last):
        ...
        ValueError: embeddings rows 1, 2 are not finite (NaN or inf)
        >>> check_embeddings(torch.zeros(0, 8))
        Traceback (most recent call last):
        ...
        ValueError: the batch is empty (embeddings has 0 rows): a loss or miner needs at least one item
    """
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise ValueError(f"{name} must be a 2-D tensor (batch x dim), got {shape}")
    if embeddings.shape[0] == 0 and not allow_empty:
        raise ValueError(f"the batch is empty ({name} has 0 rows): a loss or miner needs at least one item")
    finite = torch.isfinite(embeddings.detach())
    if bool(finite.all()):
        return
    rows = torch.where(~finite.all(dim=1))[0].tolist()
    shown = ", ".join(str(row) for row in rows[:SHOWN_ROWS])
    more = f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    plural = len(rows) > 1
    raise ValueError(
        f"{name} row{'s' if plural else ''} {shown}{more} {'are' if plural else 'is'} not finite (NaN or inf)"
    )


def check_columns(columns: Sequence[torch.Tensor]) -> None:
    """`check_embeddings` on each column of an ``(anchors, positives, *negatives)`` text batch, named in errors.

    An empty batch is allowed here: the text losses give it a zero loss.
    """
    for position, column in enumerate(columns):  # a few columns, not items
        name = ("anchors", "positives")[position] if position < 2 else f"negatives[{position - 2}]"
        check_embeddings(column, name, allow_empty=True)


def check_positive_weighting(positive_weighting: str) -> None:
    if positive_weighting not in POSITIVE_WEIGHTINGS:
        raise ValueError(
            f"positive_weighting must be one of {', '.join(POSITIVE_WEIGHTINGS)}; got {positive_weighting!r}"
        )


def positive_weights(
    positive_weighting: str,
    relation: Relation,
    labels: torch.Tensor | Relation | None,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor | None:
    """B x B weights for the positive pairs, or None when unweighted (see the module docstring)."""
    if positive_weighting == "none":
        return None
    if relation.weight is not None:
        return relation.weight
    if isinstance(labels, Relation) and labels.weight is not None:
        if labels.batch_size != batch_size:
            raise ValueError(f"the relation covers {labels.batch_size} items but the batch has {batch_size}")
        return labels.weight.to(device)
    if isinstance(labels, torch.Tensor):
        if labels.shape[0] != batch_size:
            raise ValueError(f"labels have {labels.shape[0]} rows but the batch has {batch_size} embeddings")
        return Relation.from_labels(labels.to(device), rule="jaccard").weight
    raise ValueError(
        f"positive_weighting={positive_weighting!r} weighs positive pairs by the Jaccard similarity of their "
        "label sets: pass labels (class ids or a multi-hot matrix, also alongside an indices_tuple) or a Relation "
        "with weights, e.g. Relation.from_labels(labels, rule='jaccard')"
    )


# Row-blocked losses process about this many elements at a time on CPU, so temporaries stay in cache.
BLOCK_ELEMENTS = 1 << 20


def row_blocks(rows: int, cols: int, device: torch.device) -> list[slice]:
    """Slices of rows covering a rows x cols matrix in cache-sized blocks (one block off the CPU)."""
    step = rows if device.type != "cpu" else max(1, BLOCK_ELEMENTS // max(cols, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def check_disjoint(relation: Relation) -> None:
    """A pair is either positive or negative (pytorch-metric-learning asserts the same)."""
    if bool((relation.positive & relation.negative).any()):
        raise ValueError("a pair is both positive and negative: each pair must be either positive or negative")


class MetricLoss(torch.nn.Module):
    """Base class of labelspace's metric losses.

    Args:
        distance: the distance or similarity the loss works in (each loss has its default).
        reduction: how per-element losses become one value (each loss has its default).
        relation: how multi-hot labels become a `Relation`: a `RelationRule` or its name
            (``"overlap"``, the default, ``"jaccard"``, ``"exact"``); ignored for 1-D labels and
            when a Relation or an indices_tuple is given. ``rule``, ``min_shared``,
            ``pos_threshold`` and ``neg_threshold`` are its deprecated spelling.
    """

    default_reduction: Reduction = "mean"

    def __init__(
        self,
        distance: BaseDistance,
        reduction: Reduction | None = None,
        *,
        relation: RelationRule | Rule | None = None,
        **deprecated_relation_keywords: Any,
    ) -> None:
        super().__init__()
        reduction = reduction or self.default_reduction
        check_reduction(reduction)
        self.distance = distance
        self.reduction: Reduction = reduction
        self.relation_rule = RelationRule.of(relation, owner=type(self).__name__, **deprecated_relation_keywords)

    def relation(
        self, embeddings: torch.Tensor, labels: torch.Tensor | Relation | None, indices_tuple: IndicesTuple | None
    ) -> Relation:
        """The batch's relation, on the embeddings' device."""
        return self.relation_rule.resolve(labels, indices_tuple, embeddings)

    def reduce(self, values: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return reduce(values, self.reduction, embeddings)
