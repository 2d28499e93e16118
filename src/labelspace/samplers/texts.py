"""Samplers that build batches from the texts: `NoDuplicatesSampler` (in-batch negatives) and `LengthGroupedSampler`."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from heapq import nlargest

import numpy as np

from labelspace.data.datasets import LabeledDataset
from labelspace.samplers.base import StatefulBatchSampler, as_texts, check_int

__all__ = ["LengthGroupedSampler", "NoDuplicatesSampler"]


def _length_grouped_order(
    lengths: np.ndarray,
    batch_size: int,
    mega_batch_factor: int,
    rng: np.random.Generator,
    text_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Shuffle, cut into mega-batches of ``batch_size * mega_batch_factor``, sort each by length (longest first).

    With ``text_ids``, the k-th copy of a text within a mega-batch goes to the k-th "round"
    (first copies sorted by length, then second copies, ...), so that sorting does not put
    identical texts side by side.
    """
    order = rng.permutation(len(lengths))
    mega = batch_size * mega_batch_factor
    chunks = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        if text_ids is None:
            chunks.append(chunk[np.argsort(-lengths[chunk], kind="stable")])
            continue
        ids = text_ids[chunk]
        by_text = np.argsort(ids, kind="stable")
        sorted_ids = ids[by_text]
        first = np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(ids)), 0))
        rank = np.empty(len(ids), dtype=np.int64)
        rank[by_text] = np.arange(len(ids)) - group_start
        chunks.append(chunk[np.lexsort((-lengths[chunk], rank))])
    return np.concatenate(chunks) if chunks else order


# ----------------------------------------------------------------------------- no duplicates


class NoDuplicatesSampler(StatefulBatchSampler):
    """A shuffled pass over the data with no text (exact string) twice in a batch.

    Needed for losses with in-batch negatives (MultipleNegativesRankingLoss and friends): a
    duplicate text would be its own false negative. Items whose text is already in the
    current batch are deferred to the next batches (deferred items go first, the most
    repeated texts first). Every item
    appears exactly once per epoch (unless ``drop_last`` drops short batches). Heavy
    duplication can make an epoch a few batches longer than ``ceil(n / batch_size)``, and
    the last batches shorter; ``len()`` is exact.

    Args:
        texts: the texts (or a `LabeledDataset`).
        batch_size: items per batch.
        seed: random seed.
        drop_last: drop batches shorter than ``batch_size``.
        group_by_length: order the pass like `LengthGroupedSampler` (similar lengths share
            a batch, batch order shuffled) before removing duplicates.
        mega_batch_factor: mega-batch size in batches, for ``group_by_length``.

    Example:
        >>> sampler = NoDuplicatesSampler(["a", "a", "b", "c", "a", "d"], batch_size=2, seed=0)
        >>> batches = list(sampler)
        >>> sorted(i for batch in batches for i in batch)
        [0, 1, 2, 3, 4, 5]
        >>> all(len({["a", "a", "b", "c", "a", "d"][i] for i in b}) == len(b) for b in batches)
        True
    """

    def __init__(
        self,
        texts: Sequence[str] | LabeledDataset,
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        group_by_length: bool = False,
        mega_batch_factor: int = 50,
    ) -> None:
        super().__init__(seed)
        self.texts = as_texts(texts)
        self.batch_size = check_int("batch_size", batch_size, 1)
        if not self.texts:
            raise ValueError("texts is empty")
        self.drop_last = bool(drop_last)
        self.group_by_length = bool(group_by_length)
        self.mega_batch_factor = check_int("mega_batch_factor", mega_batch_factor, 1)
        # Integer id per distinct text: cheaper set membership than strings.
        ids: dict[str, int] = {}
        self._text_ids = np.fromiter((ids.setdefault(t, len(ids)) for t in self.texts), dtype=np.int64)
        self._lengths = np.fromiter((len(t) for t in self.texts), dtype=np.int64, count=len(self.texts))

    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:
        if self.group_by_length:
            order = _length_grouped_order(self._lengths, self.batch_size, self.mega_batch_factor, rng, self._text_ids)
        else:
            order = rng.permutation(len(self.texts))
        text_ids = self._text_ids[order].tolist()
        order_list = order.tolist()
        size = self.batch_size
        batches: list[list[int]] = []
        # Deferred items grouped by text. Each batch first takes one item of each of the (up to
        # batch_size) texts with the most deferred copies (ties: first deferred first), which
        # spreads heavily repeated texts over the epoch instead of leaving them for the end.
        pending: dict[int, deque[int]] = {}
        cursor, n = 0, len(order_list)
        while cursor < n or pending:
            batch: list[int] = []
            seen: set[int] = set()
            for text_id in nlargest(size, pending, key=lambda t: len(pending[t])):
                queue = pending[text_id]
                batch.append(queue.popleft())
                seen.add(text_id)
                if not queue:
                    del pending[text_id]
            while len(batch) < size and cursor < n:
                item, text_id = order_list[cursor], text_ids[cursor]
                cursor += 1
                if text_id in seen:
                    pending.setdefault(text_id, deque()).append(item)
                else:
                    batch.append(item)
                    seen.add(text_id)
            batches.append(batch)
        if self.drop_last:
            batches = [batch for batch in batches if len(batch) == size]
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches)).tolist()]
        return batches


# ----------------------------------------------------------------------------- length grouping


class LengthGroupedSampler(StatefulBatchSampler):
    """Batches of texts of similar length: less padding, faster training.

    Shuffle, cut into mega-batches of ``batch_size * mega_batch_factor`` items, sort each
    mega-batch by length (characters, or ``lengths`` when given), split into batches and
    shuffle the batch order.

    Args:
        texts: the texts (or a `LabeledDataset`).
        batch_size: items per batch.
        seed: random seed.
        mega_batch_factor: mega-batch size in batches (1 = no grouping beyond a batch).
        drop_last: drop the batches shorter than ``batch_size``.
        lengths: precomputed lengths (e.g. token counts), one per text, used instead of ``len(text)``.

    Example:
        >>> texts = ["a", "a much longer text here", "bb", "another long sentence!", "c", "dd"]
        >>> sampler = LengthGroupedSampler(texts, batch_size=2, seed=0)
        >>> sorted(sorted(len(texts[i]) for i in batch) for batch in sampler)
        [[1, 1], [2, 2], [22, 23]]
    """

    def __init__(
        self,
        texts: Sequence[str] | LabeledDataset,
        batch_size: int,
        *,
        seed: int = 0,
        mega_batch_factor: int = 50,
        drop_last: bool = False,
        lengths: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        super().__init__(seed)
        self.texts = as_texts(texts)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.mega_batch_factor = check_int("mega_batch_factor", mega_batch_factor, 1)
        self.drop_last = bool(drop_last)
        if not self.texts:
            raise ValueError("texts is empty")
        if lengths is None:
            self._lengths = np.fromiter((len(t) for t in self.texts), dtype=np.int64, count=len(self.texts))
        else:
            self._lengths = np.asarray(lengths, dtype=np.int64)
            if self._lengths.shape != (len(self.texts),):
                raise ValueError(f"lengths must have one entry per text ({len(self.texts)}), got {self._lengths.shape}")

    def __len__(self) -> int:
        n = len(self.texts)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:
        order = _length_grouped_order(self._lengths, self.batch_size, self.mega_batch_factor, rng).tolist()
        size = self.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        return [batches[i] for i in rng.permutation(len(batches)).tolist()]
