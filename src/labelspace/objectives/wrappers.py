"""Adapters that turn an embedding-level loss into a `ModelLoss`: embed the batch, hand the right tensors on.

Embedding-level losses (metric losses, text losses on embeddings, head losses) do not see the
encoder. `as_model_loss` wraps any labelspace loss in the matching adapter:

- a metric loss (`ContrastiveLoss`, `MultiSimilarityLoss`, ...), optionally with a miner, on a
  labeled batch: ``loss(embeddings, labels, indices_tuple=miner(embeddings, labels))``; on explicit
  pairs or triplets the texts of all columns are embedded together and the pairs become the batch's
  `Relation` (`Relation.from_pairs`: a pair with score >= 0.5 or a triplet's anchor and positive are
  positives, texts of other rows are in-batch negatives unless ``in_batch_negatives=False``);
- a head loss (`BCEHeadLoss`, `FocalLoss`, ...) on a labeled batch: ``loss(model.head(embeddings), labels)``;
- `MultipleNegativesRankingLoss` / `TripletLoss` on pairs or triplets (one embedding per column,
  with the anchors' labels when the batch carries them);
- `CoSENTLoss` / `AnglELoss` on scored pairs, or on triplets read as scored pairs (anchor-positive
  1.0, anchor-negative 0.0, as `labelspace.data.convert.triplets_to_pairs` does).

Before training, `ModelLoss.check_dataset` refuses data a loss cannot learn from (a batch kind it
does not take, scored pairs that all carry one score, pairs with negative scores for a loss that
treats every pair as a positive), so a mismatch is an error before the first step.

In a ``torchrun`` job the in-batch adapters gather the embeddings of every process (with their
gradients) before computing the loss, so the loss sees the global batch.

Example:
    >>> import tempfile
    >>> from labelspace.data import LabeledDataset
    >>> from labelspace.data.batch import make_batch
    >>> from labelspace.losses import MultiSimilarityLoss
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"], [["x"], ["x", "y"], ["y"], []])
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
    >>> loss = as_model_loss(MultiSimilarityLoss())
    >>> type(loss).__name__, loss.name, bool(loss(model, make_batch(data, [0, 1, 2, 3])) > 0)
    ('MetricObjective', 'MultiSimilarityLoss', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from labelspace import parallel as distributed
from labelspace.data.batch import TextBatch
from labelspace.data.datasets import PairDataset
from labelspace.losses.base import MetricLoss
from labelspace.losses.head import HeadLoss
from labelspace.losses.text.pairs import CoSENTLoss
from labelspace.losses.text.ranking import MultipleNegativesRankingLoss
from labelspace.losses.text.triplet import TripletLoss
from labelspace.objectives.base import EmbeddingCache, ModelLoss
from labelspace.relations import Relation

__all__ = [
    "HeadObjective",
    "MetricObjective",
    "PairScoreObjective",
    "RankingObjective",
    "as_model_loss",
    "pair_batch_relation",
]


class _Wrapped(ModelLoss):
    """A model-level adapter around an embedding-level loss."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    @property
    def name(self) -> str:
        return type(self.loss).__name__


def pair_batch_relation(batch: TextBatch, keys: list[torch.Tensor], *, in_batch_negatives: bool = True) -> Relation:
    """The `Relation` over all texts of a pair or triplet batch, columns concatenated in order.

    ``keys`` are the texts' keys per column (`TextBatch.text_keys`, gathered like the embeddings).
    Pairs: row i's two texts are positives when its score is >= 0.5, explicit negatives otherwise.
    Triplets: anchor i and positive i are positives, anchor i and each of its negatives explicit
    negatives. See `Relation.from_pairs` for identical texts and in-batch negatives.
    """
    size = keys[0].shape[0]
    device = keys[0].device
    rows = torch.arange(size, device=device)
    if batch.kind == "pairs":
        assert batch.scores is not None
        scores = distributed.gather_without_grad(batch.scores.to(device))
        positive = scores >= 0.5
        positive_pairs = (rows[positive], size + rows[positive])
        negative_pairs = (rows[~positive], size + rows[~positive])
    else:
        negatives = len(keys) - 2
        positive_pairs = (rows, size + rows)
        negative_pairs = (rows.repeat(negatives), torch.cat([(2 + k) * size + rows for k in range(negatives)]))
    return Relation.from_pairs(torch.cat(keys), positive_pairs, negative_pairs, in_batch_negatives=in_batch_negatives)


class MetricObjective(_Wrapped):
    """A metric loss (and optional miner) on a labeled batch, or on explicit pairs or triplets.

    Labeled batches: ``loss(embeddings, labels, indices_tuple=miner(...))``. Pair and triplet
    batches: the texts of all columns are embedded and the pairs become the relation
    (`pair_batch_relation`), as an ``indices_tuple`` built from them would, plus in-batch
    negatives unless ``in_batch_negatives=False``.
    """

    batch_kinds = ("labeled", "pairs", "triplets")

    def __init__(self, loss: MetricLoss, miner: nn.Module | None = None, *, in_batch_negatives: bool = True) -> None:
        super().__init__(loss)
        self.miner = miner
        self.in_batch_negatives = bool(in_batch_negatives)

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        cache = cache or EmbeddingCache(model, batch)
        if batch.kind == "labeled":
            embeddings = distributed.gather_with_grad(cache.column(0))
            labels: torch.Tensor | Relation = distributed.gather_without_grad(batch.labels.to(embeddings.device))
        else:
            embeddings = torch.cat([distributed.gather_with_grad(column) for column in cache.columns()])
            keys = [distributed.gather_without_grad(key.to(embeddings.device)) for key in batch.text_keys()]
            labels = pair_batch_relation(batch, keys, in_batch_negatives=self.in_batch_negatives)
        indices_tuple = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, indices_tuple=indices_tuple)


class HeadObjective(_Wrapped):
    """A head loss on ``model.head(embeddings)`` and the labels of a labeled batch (no gathering: per item)."""

    batch_kinds = ("labeled",)

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        head = getattr(model, "head", None)
        if head is None:
            raise ValueError(f"{self.name} needs a model with a classification head (model.head is None)")
        cache = cache or EmbeddingCache(model, batch)
        logits = head(cache.column(0))
        return self.loss(logits, batch.labels.to(logits.device))


class RankingObjective(_Wrapped):
    """An in-batch ranking loss on pairs or triplets: ``loss(anchors, positives, *negatives, labels=...)``.

    `TripletLoss` needs triplets (it has no in-batch negatives); `MultipleNegativesRankingLoss`
    takes (anchor, positive) pairs or triplets.
    """

    batch_kinds = ("pairs", "triplets")
    pairs_are_positives = True

    def __init__(self, loss: nn.Module) -> None:
        super().__init__(loss)
        if not isinstance(loss, MultipleNegativesRankingLoss):
            self.batch_kinds = ("triplets",)

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        cache = cache or EmbeddingCache(model, batch)
        columns = [distributed.gather_with_grad(column) for column in cache.columns()]
        labels = batch.labels
        if labels is not None:
            labels = distributed.gather_without_grad(labels.to(columns[0].device))
        return self.loss(*columns, labels=labels)


class PairScoreObjective(_Wrapped):
    """A scored-pair loss (`CoSENTLoss`, `AnglELoss`): ``loss(embeddings1, embeddings2, scores)``.

    On a triplet batch the pairs are (anchor, positive) with score 1 and (anchor, negative) with
    score 0, the reading of `labelspace.data.convert.triplets_to_pairs`, so a triplet file trains
    AnglE / CoSENT, alone or beside `TripletLoss` on the same batch.
    """

    batch_kinds = ("pairs", "triplets")

    def check_dataset(self, dataset: Any, name: str = "train") -> None:
        super().check_dataset(dataset, name)
        if isinstance(dataset, PairDataset):
            distinct = np.unique(np.asarray(dataset.scores, dtype=np.float64))
            if len(distinct) < 2:
                raise ValueError(
                    f"{self.name} learns from the order of pair scores, but every pair of dataset {name!r} has "
                    f"score {distinct[0]:g}: it would learn nothing. Give pairs with different scores (e.g. "
                    "labelspace.data.convert.labeled_to_pairs: 1 for pairs sharing a label, 0 otherwise), or triplets"
                )

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        cache = cache or EmbeddingCache(model, batch)
        columns = [distributed.gather_with_grad(column) for column in cache.columns()]
        if batch.kind == "pairs":
            first, second = columns
            scores = distributed.gather_without_grad(batch.scores.to(first.device))
        else:
            anchors, others = columns[0], columns[1:]
            first = anchors.repeat(len(others), 1)
            second = torch.cat(others)
            scores = torch.cat(
                [
                    torch.ones(len(anchors), device=first.device),
                    torch.zeros(len(second) - len(anchors), device=first.device),
                ]
            )
        return self.loss(first, second, scores)


def as_model_loss(loss: nn.Module, miner: nn.Module | None = None) -> ModelLoss:
    """Wrap ``loss`` in the adapter the trainer needs (model-level losses are returned as they are).

    Example:
        >>> from labelspace.losses import BCEHeadLoss, CoSENTLoss, TripletLoss
        >>> [type(as_model_loss(loss)).__name__ for loss in (BCEHeadLoss(), CoSENTLoss(), TripletLoss())]
        ['HeadObjective', 'PairScoreObjective', 'RankingObjective']
    """
    if isinstance(loss, ModelLoss):
        if miner is not None:
            raise ValueError(f"a miner only goes with a metric loss, not with {type(loss).__name__}")
        return loss
    if isinstance(loss, MetricLoss):
        return MetricObjective(loss, miner)
    if miner is not None:
        raise ValueError(f"a miner only goes with a metric loss, not with {type(loss).__name__}")
    if isinstance(loss, HeadLoss):
        return HeadObjective(loss)
    if isinstance(loss, (MultipleNegativesRankingLoss, TripletLoss)):
        return RankingObjective(loss)
    if isinstance(loss, CoSENTLoss):
        return PairScoreObjective(loss)
    raise TypeError(
        f"cannot train with a {type(loss).__name__}: expected a labelspace metric, head or text loss, "
        "or a ModelLoss subclass"
    )
