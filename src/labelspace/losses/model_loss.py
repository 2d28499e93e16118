"""Model-level losses: what the `Trainer` calls, ``loss(model, batch)``.

Embedding-level losses (metric losses, text losses on embeddings, head losses) do not see the
encoder. The trainer needs one more step: embed the texts of a `TextBatch` and hand the right
tensors to the right loss. `as_model_loss` wraps any labelspace loss in the matching adapter:

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

Losses that run the encoder themselves (the cached / GradCache losses, `GISTEmbedLoss`) subclass
`ModelLoss` directly. `CombinedLoss` sums weighted model-level losses and embeds each column of
the batch once for all of them.

In a ``torchrun`` job the in-batch adapters gather the embeddings of every process (with their
gradients) before computing the loss, so the loss sees the global batch.

Example:
    >>> import tempfile, torch
    >>> from labelspace.data import LabeledDataset
    >>> from labelspace.data.batch import make_batch
    >>> from labelspace.losses import BCEHeadLoss, CombinedLoss, MultiSimilarityLoss
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"], [["x"], ["x", "y"], ["y"], []])
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
    >>> loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 0.5)])
    >>> value = loss(model, make_batch(data, [0, 1, 2, 3]))
    >>> bool(value > 0), sorted(loss.last_values)
    (True, ['BCEHeadLoss', 'MultiSimilarityLoss'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from labelspace import parallel as distributed
from labelspace.data.batch import TextBatch, make_batch
from labelspace.data.datasets import PairDataset
from labelspace.losses.base import MetricLoss
from labelspace.losses.head import HeadLoss
from labelspace.losses.text.pairs import CoSENTLoss
from labelspace.losses.text.ranking import MultipleNegativesRankingLoss
from labelspace.relations import Relation

__all__ = [
    "CombinedLoss",
    "EmbeddingCache",
    "HeadObjective",
    "MetricObjective",
    "ModelLoss",
    "PairScoreObjective",
    "RankingObjective",
    "as_model_loss",
    "encoder_of",
    "pair_batch_relation",
]


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


class ModelLoss(nn.Module):
    """Base of the losses the trainer calls: ``loss(model, batch, cache=None) -> scalar``.

    ``batch_kinds`` lists the batch kinds (``"labeled"``, ``"pairs"``, ``"triplets"``) the loss accepts;
    ``cache`` lets several losses share one embedding pass (`CombinedLoss` passes one).
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
        """Display name (used for the per-loss values in logs)."""
        return type(self).__name__

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(model, batch, cache)")


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


def _ranking_losses() -> tuple[type, ...]:
    from labelspace.losses import text

    return tuple(getattr(text, name) for name in ("MultipleNegativesRankingLoss", "TripletLoss") if hasattr(text, name))


def as_model_loss(loss: nn.Module, miner: nn.Module | None = None) -> ModelLoss:
    """Wrap ``loss`` in the adapter the trainer needs (model-level losses are returned as they are)."""
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
    if isinstance(loss, (MultipleNegativesRankingLoss, *_ranking_losses())):
        return RankingObjective(loss)
    if isinstance(loss, CoSENTLoss):
        return PairScoreObjective(loss)
    raise TypeError(
        f"cannot train with a {type(loss).__name__}: expected a labelspace metric, head or text loss, "
        "or a ModelLoss subclass"
    )


class CombinedLoss(ModelLoss):
    """A weighted sum of losses, ``sum(weight * loss(model, batch))``, sharing one embedding pass.

    Any labelspace loss can be a component (it is wrapped with `as_model_loss`); a ``(metric loss,
    miner)`` tuple pairs a metric loss with its miner. The value of each component from the last
    call is kept in ``last_values`` (name -> float) for logging.

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
            if isinstance(loss, (tuple, list)):
                wrapped.append(as_model_loss(*loss))
            else:
                wrapped.append(as_model_loss(loss))
            weights.append(float(weight))
        kinds = set(wrapped[0].batch_kinds)
        for loss in wrapped[1:]:
            kinds &= set(loss.batch_kinds)
        if not kinds:
            names = ", ".join(loss.name for loss in wrapped)
            raise ValueError(f"the combined losses ({names}) accept no common kind of batch")
        self.batch_kinds = tuple(kind for kind in ("labeled", "pairs", "triplets") if kind in kinds)
        self.losses = nn.ModuleList(wrapped)
        self.weights = weights
        self.last_values: dict[str, float] = {}

    def check_dataset(self, dataset: Any, name: str = "train") -> None:
        super().check_dataset(dataset, name)
        for loss in self.losses:
            loss.check_dataset(dataset, name)

    def forward(self, model: nn.Module, batch: TextBatch, cache: EmbeddingCache | None = None) -> torch.Tensor:
        self.check_batch(batch)
        cache = cache or EmbeddingCache(model, batch)
        total: torch.Tensor | None = None
        values: dict[str, float] = {}
        for loss, weight in zip(self.losses, self.weights, strict=True):
            value = loss(model, batch, cache)
            name = loss.name
            suffix = 2
            while name in values:
                name = f"{loss.name}_{suffix}"
                suffix += 1
            values[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        self.last_values = values
        assert total is not None
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
