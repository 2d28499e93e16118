"""The base of the losses the trainer calls, ``loss(model, batch)``, and the embedding pass they share.

A `ModelLoss` sees the model and a `TextBatch`; `components` names the weighted parts of the
loss (one for a single loss, one per component for `CombinedLoss`) and ``forward`` returns their
sum. `EmbeddingCache` embeds each column of a batch once, so that several losses on the same
batch share one encoder pass.

Example:
    >>> import tempfile
    >>> from labelspace.data.batch import TextBatch
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()))
    >>> cache = EmbeddingCache(model, TextBatch("pairs", [["a cat", "a dog"], ["the kitten", "the puppy"]]))
    >>> [tuple(column.shape) for column in cache.columns()] == [(2, model.encoder.dimension)] * 2
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from labelspace.data.batch import TextBatch, make_batch
from labelspace.data.datasets import PairDataset

__all__ = ["EmbeddingCache", "ModelLoss", "encoder_of", "sum_components"]


def encoder_of(model: nn.Module) -> nn.Module:
    """The `Encoder` of a `LabelspaceModel` (or the encoder itself)."""
    return getattr(model, "encoder", model)


class EmbeddingCache:
    """Embeds each column of a batch once (with gradients) and hands the result to every loss that asks."""

    def __init__(self, model: nn.Module, batch: TextBatch) -> None:
        self.model = model
        self.batch = batch
        self._columns: dict[int, torch.Tensor] = {}

    def column(self, index: int) -> torch.Tensor:
        """Embeddings (B x d) of column ``index`` of the batch."""
        if index not in self._columns:
            self._columns[index] = encoder_of(self.model).embed(self.batch.columns[index])
        return self._columns[index]

    def columns(self) -> list[torch.Tensor]:
        """Embeddings of every column (the missing ones embedded together: length chunks pack better)."""
        missing = [i for i, _ in enumerate(self.batch.columns) if i not in self._columns]
        if len(missing) > 1:
            texts = [text for i in missing for text in self.batch.columns[i]]
            embeddings = encoder_of(self.model).embed(texts)
            sizes = [len(self.batch.columns[i]) for i in missing]
            for i, part in zip(missing, embeddings.split(sizes), strict=True):
                self._columns[i] = part
        return [self.column(i) for i, _ in enumerate(self.batch.columns)]


def sum_components(components: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of `ModelLoss.components`: the sum of the parts, in order.

    Example:
        >>> import torch
        >>> float(sum_components({"a": torch.tensor(1.5), "b": torch.tensor(0.25)}))
        1.75
    """
    if not components:
        raise ValueError("a loss needs at least one component, got none")
    parts = iter(components.values())
    total = next(parts)
    for part in parts:
        total = total + part
    return total


class ModelLoss(nn.Module):
    """Base of the losses the trainer calls: ``loss(model, batch, cache=None) -> scalar``.

    ``components(model, batch, cache=None)`` returns the named, already weighted parts of the loss
    (``{self.name: value}`` for a single loss), and ``forward`` their sum, so the trainer logs
    each part without a side channel. A subclass implements ``forward`` (a loss of one part) or
    ``components`` (several parts); the other one follows.

    ``batch_kinds`` lists the batch kinds (``"labeled"``, ``"pairs"``, ``"triplets"``) the loss accepts;
    ``cache`` lets several losses share one embedding pass (`CombinedLoss` passes one).

    Example:
        >>> import torch
        >>> from labelspace.data.batch import TextBatch
        >>> class Norm(ModelLoss):
        ...     def forward(self, model, batch, cache=None):
        ...         return model.weight.norm()
        >>> loss, model = Norm(), torch.nn.Linear(2, 1, bias=False)
        >>> parts = loss.components(model, TextBatch("pairs", [["a"], ["b"]]))
        >>> list(parts) == ["Norm"] and torch.equal(parts["Norm"], model.weight.norm())
        True
    """

    batch_kinds: tuple[str, ...] = ("labeled", "pairs", "triplets")
    #: True for in-batch ranking losses that read every (anchor, positive) pair as a positive.
    pairs_are_positives: bool = False

    def check_dataset(self, dataset: Any, name: str = "train") -> None:
        """Raise a clear error, before training starts, when this loss cannot learn from ``dataset``."""
        kind = make_batch(dataset, [0]).kind
        if kind not in self.batch_kinds:
            raise ValueError(
                f"{self.name} trains on {' or '.join(self.batch_kinds)} data, but dataset {name!r} holds {kind} "
                "data (pick a loss that fits the data, or convert it with labelspace.data.convert)"
            )
        if self.pairs_are_positives and isinstance(dataset, PairDataset):
            scores = np.asarray(dataset.scores, dtype=np.float64)
            below = int((scores < 0.5).sum())
            if below:
                raise ValueError(
                    f"{self.name} treats every pair as (anchor, positive), but {below} of the {len(scores)} pairs "
                    f"of dataset {name!r} have a score below 0.5: use cosent or angle for scored pairs, or keep "
                    "only the positive pairs"
                )

    def check_batch(self, batch: TextBatch) -> None:
        """Raise a clear error when the batch kind does not fit this loss."""
        if batch.kind not in self.batch_kinds:
            raise ValueError(
                f"{self.name} trains on {' or '.join(self.batch_kinds)} data, got a {batch.kind} batch "
                "(pick a loss that fits the dataset, or convert the dataset with labelspace.data.convert)"
            )

    @property
    def name(self) -> str:
        """Display name (the key of this loss's part in `components` and in the logs)."""
        return type(self).__name__

    def components(
        self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None
    ) -> dict[str, torch.Tensor]:
        """The named, already weighted parts of the loss (name -> scalar tensor); their sum is the loss."""
        if type(self).forward is ModelLoss.forward:
            raise NotImplementedError(f"{type(self).__name__} must implement forward() or components()")
        return {self.name: self(model, batch, cache)}

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        """The loss: the sum of `components`."""
        if type(self).components is ModelLoss.components:
            raise NotImplementedError(f"{type(self).__name__} must implement forward() or components()")
        return sum_components(self.components(model, batch, cache))
