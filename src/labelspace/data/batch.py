"""`TextBatch`: the texts of one training batch, with their labels or scores.

The trainer draws indices with a sampler and turns them into a `TextBatch`; model-level losses
(`labelspace.losses.ModelLoss`) receive it together with the model. Three kinds of batch exist,
one per dataset type:

- ``"labeled"`` (from a `LabeledDataset`): ``columns == [texts]``, ``labels`` a B x L float 0/1 tensor.
- ``"pairs"`` (from a `PairDataset`): ``columns == [text1, text2]``, ``scores`` a B float tensor,
  and ``labels`` when the pair dataset carries the anchors' labels.
- ``"triplets"`` (from a `TripletDataset`): ``columns == [anchors, positives, negatives_1, ...]``.

Example:
    >>> from labelspace.data import LabeledDataset
    >>> data = LabeledDataset.from_label_names(["a", "b", "c"], [["x"], ["x", "y"], []])
    >>> batch = make_batch(data, [2, 0])
    >>> batch.kind, batch.columns, batch.labels.tolist()
    ('labeled', [['c', 'a']], [[0.0, 0.0], [1.0, 0.0]])
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset

__all__ = ["BATCH_KINDS", "BatchKind", "TextBatch", "make_batch"]

BatchKind = Literal["labeled", "pairs", "triplets"]
BATCH_KINDS: tuple[str, ...] = ("labeled", "pairs", "triplets")


@dataclass
class TextBatch:
    """One batch of texts: ``columns`` (lists of equal length B), optional ``labels`` and ``scores``."""

    kind: BatchKind
    columns: list[list[str]]
    labels: torch.Tensor | None = None
    scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in BATCH_KINDS:
            raise ValueError(f"kind must be one of {', '.join(BATCH_KINDS)}, got {self.kind!r}")
        if not self.columns:
            raise ValueError("a batch needs at least one column of texts")
        size = len(self.columns[0])
        if any(len(column) != size for column in self.columns):
            raise ValueError(f"every column of a batch must hold {size} texts, got {[len(c) for c in self.columns]}")
        for name, tensor in (("labels", self.labels), ("scores", self.scores)):
            if tensor is not None and tensor.shape[0] != size:
                raise ValueError(f"{name} has {tensor.shape[0]} rows but the batch has {size} texts")

    def __len__(self) -> int:
        return len(self.columns[0])

    @property
    def texts(self) -> list[str]:
        """The first column (the texts of a labeled batch, the anchors of pairs and triplets)."""
        return self.columns[0]

    def num_texts(self) -> int:
        """Texts in all columns together (what a texts/s rate counts)."""
        return sum(len(column) for column in self.columns)

    def text_keys(self) -> list[torch.Tensor]:
        """One int64 key per text of each column, equal for equal texts (in every process alike).

        The keys are 64-bit BLAKE2 digests of the UTF-8 text, so batches gathered from several
        processes can still tell which texts are the same.
        """
        return [
            torch.tensor(
                [
                    int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
                    for text in column
                ],
                dtype=torch.int64,
            )
            for column in self.columns
        ]

    def to(self, device: torch.device | str) -> TextBatch:
        """The same batch with its tensors on ``device``."""
        return TextBatch(
            self.kind,
            self.columns,
            None if self.labels is None else self.labels.to(device),
            None if self.scores is None else self.scores.to(device),
        )


def make_batch(dataset: LabeledDataset | PairDataset | TripletDataset, indices: Sequence[int]) -> TextBatch:
    """The `TextBatch` of ``dataset``'s items at ``indices`` (in that order)."""
    index = np.asarray(indices, dtype=np.int64)
    if isinstance(dataset, LabeledDataset):
        texts = [dataset.texts[i] for i in index.tolist()]
        labels = torch.from_numpy(dataset.labels.to_dense()[index].astype(np.float32)) if len(index) else None
        if labels is None:
            labels = torch.zeros((0, len(dataset.label_set)), dtype=torch.float32)
        return TextBatch("labeled", [texts], labels=labels)
    if isinstance(dataset, PairDataset):
        rows = index.tolist()
        scores = torch.from_numpy(np.asarray(dataset.scores, dtype=np.float32)[index])
        labels = None
        anchor_labels = getattr(dataset, "labels", None)
        if anchor_labels is not None:
            labels = torch.from_numpy(anchor_labels.to_dense()[index].astype(np.float32))
        return TextBatch(
            "pairs", [[dataset.text1[i] for i in rows], [dataset.text2[i] for i in rows]], labels=labels, scores=scores
        )
    if isinstance(dataset, TripletDataset):
        rows = index.tolist()
        columns = [[dataset.anchors[i] for i in rows], [dataset.positives[i] for i in rows]]
        negatives = [dataset.negatives_of(i) for i in rows]
        counts = {len(row) for row in negatives}
        if len(counts) > 1:
            raise ValueError(
                f"the triplets of a batch must all have the same number of negatives, got {sorted(counts)}"
            )
        columns.extend([list(column) for column in zip(*negatives, strict=True)] if negatives else [])
        return TextBatch("triplets", columns)
    raise TypeError(
        f"cannot make a batch from a {type(dataset).__name__}: expected a LabeledDataset, PairDataset or TripletDataset"
    )
