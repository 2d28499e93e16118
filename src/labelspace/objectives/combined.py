"""`CombinedLoss`: a weighted sum of model-level losses that share one embedding pass.

Example:
    >>> import tempfile
    >>> from labelspace.data import LabeledDataset
    >>> from labelspace.data.batch import make_batch
    >>> from labelspace.losses import BCEHeadLoss, MultiSimilarityLoss
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"], [["x"], ["x", "y"], ["y"], []])
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
    >>> loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 0.5)])
    >>> parts = loss.components(model, make_batch(data, [0, 1, 2, 3]))
    >>> sorted(parts), bool(sum(parts.values()) > 0)
    (['BCEHeadLoss', 'MultiSimilarityLoss'], True)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from labelspace.data.batch import TextBatch
from labelspace.objectives.base import EmbeddingCache, ModelLoss
from labelspace.objectives.wrappers import as_model_loss

__all__ = ["CombinedLoss"]

BATCH_KINDS = ("labeled", "pairs", "triplets")


class CombinedLoss(ModelLoss):
    """A weighted sum of losses, ``sum(weight * loss(model, batch))``, sharing one embedding pass.

    Any labelspace loss can be a component (it is wrapped with `as_model_loss`); a ``(metric loss,
    miner)`` tuple pairs a metric loss with its miner. `components` returns ``{name: weight *
    value}`` per component, named after the loss (``name_2``, ``name_3``, ... when a name repeats);
    ``forward`` returns their sum. ``last_values`` (the unweighted floats of the last call) is
    deprecated: use `components`.

    Args:
        losses: ``[(loss, weight), ...]`` where ``loss`` is a loss or a ``(loss, miner)`` tuple.
    """

    def __init__(self, losses: Sequence[tuple[Any, float]]) -> None:
        super().__init__()
        if not losses:
            raise ValueError("CombinedLoss needs at least one (loss, weight) pair")
        wrapped: list[ModelLoss] = []
        weights: list[float] = []
        for position, item in enumerate(losses):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"losses[{position}] must be a (loss, weight) pair, got {item!r}")
            loss, weight = item
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"losses[{position}]: the weight must be a number >= 0, got {weight!r}")
            wrapped.append(as_model_loss(*loss) if isinstance(loss, (tuple, list)) else as_model_loss(loss))
            weights.append(float(weight))
        kinds = set(wrapped[0].batch_kinds)
        for loss in wrapped[1:]:
            kinds &= set(loss.batch_kinds)
        if not kinds:
            names = ", ".join(loss.name for loss in wrapped)
            raise ValueError(f"the combined losses ({names}) accept no common kind of batch")
        self.batch_kinds = tuple(kind for kind in BATCH_KINDS if kind in kinds)
        self.losses = nn.ModuleList(wrapped)
        self.weights = weights
        self._last_unweighted: dict[str, torch.Tensor] = {}

    def check_dataset(self, dataset: Any, name: str = "train") -> None:
        super().check_dataset(dataset, name)
        for loss in self.losses:
            loss.check_dataset(dataset, name)

    def names(self) -> list[str]:
        """The components' names, in order: each loss's name, ``_2``, ``_3``, ... appended when it repeats."""
        names: list[str] = []
        for loss in self.losses:
            name, suffix = loss.name, 2
            while name in names:
                name, suffix = f"{loss.name}_{suffix}", suffix + 1
            names.append(name)
        return names

    def components(
        self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None
    ) -> dict[str, torch.Tensor]:
        """``{component name: weight * value}`` in the order of the losses (see `names`)."""
        self.check_batch(batch)
        cache = cache or EmbeddingCache(model, batch)
        parts: dict[str, torch.Tensor] = {}
        unweighted: dict[str, torch.Tensor] = {}
        for name, loss, weight in zip(self.names(), self.losses, self.weights, strict=True):
            value = loss(model, batch, cache)
            parts[name] = weight * value
            unweighted[name] = value.detach()
        self._last_unweighted = unweighted
        return parts

    @property
    def last_values(self) -> dict[str, float]:
        """Deprecated (use `components`): the unweighted value of each component in the last call."""
        warnings.warn(
            "CombinedLoss.last_values is deprecated and goes away in the next release; use "
            "CombinedLoss.components(model, batch), which returns the weighted part of each loss by name",
            DeprecationWarning,
            stacklevel=2,
        )
        return {name: float(value) for name, value in self._last_unweighted.items()}

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
