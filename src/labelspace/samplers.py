"""Batch samplers: which items share a batch.

Every sampler here is an iterable of lists of item indices, usable as
``torch.utils.data.DataLoader(dataset, batch_sampler=sampler)``. All of them are

- seeded: the batches of an epoch depend only on ``(seed, epoch)``; ``set_epoch(epoch)``
  changes the order deterministically (call it at the start of every epoch, as with
  ``DistributedSampler``);
- sized: ``len(sampler)`` is the number of batches per epoch;
- resumable: ``state_dict()`` holds the seed, the epoch and the number of batches already
  yielded in the current epoch; after ``load_state_dict(state)`` the next iteration yields
  exactly the remaining batches the uninterrupted run would have produced. When the epoch is
  exhausted the counter goes back to 0 (the epoch number does not change by itself).

Note on resuming with ``DataLoader(num_workers > 0)``: the loader pulls batches from the
sampler ahead of the training loop (``prefetch_factor * num_workers`` of them), so the
sampler's counter runs ahead of the batches actually trained on. For exact resume in that
case save ``{**sampler.state_dict(), "batches_yielded": batches_trained_on}``.

Samplers:

- `MPerLabelSampler`: P x K batches (P labels, m items per label), multi-label aware.
- `PKSampler`: P x K batches whose P labels are drawn inversely to their frequency; rare labels
  with fewer than K items come with all of them.
- `MultiLabelBalancedSampler`: labels drawn inversely to how often they were drawn, so rare
  labels are seen about as often as frequent ones.
- `NoDuplicatesSampler`: a shuffled pass with no text twice in a batch (in-batch negatives).
- `LengthGroupedSampler`: batches of similar length (less padding).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from heapq import nlargest
from typing import Any

import numpy as np

from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelMatrix

__all__ = [
    "LengthGroupedSampler",
    "MPerLabelSampler",
    "MultiLabelBalancedSampler",
    "NoDuplicatesSampler",
    "PKSampler",
]


# ----------------------------------------------------------------------------- validation helpers


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _as_label_matrix(labels: Any) -> LabelMatrix:
    if isinstance(labels, LabeledDataset):
        return labels.labels
    if isinstance(labels, LabelMatrix):
        return labels
    if isinstance(labels, np.ndarray) or hasattr(labels, "detach"):
        return LabelMatrix.from_dense(labels)
    raise TypeError(f"labels must be a LabelMatrix, a LabeledDataset or a 2-D 0/1 array, got {type(labels).__name__}")


def _as_texts(texts: Any) -> list[str]:
    if isinstance(texts, LabeledDataset):
        return texts.texts
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a sequence of str or a LabeledDataset, got {type(texts).__name__}")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
    return list(texts)


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


# ----------------------------------------------------------------------------- base class


class _StatefulBatchSampler:
    """Seeded, epoch-aware, resumable batch sampler; subclasses implement ``_make_batches(rng)``."""

    def __init__(self, seed: int) -> None:
        self.seed = _check_int("seed", seed, 0)
        self.epoch = 0
        self._yielded = 0
        self._cache: tuple[int, int, list[list[int]]] | None = None

    # subclasses -------------------------------------------------------------
    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    # epoch handling ---------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` from now on.

        Changing the epoch restarts the batch counter; setting the current epoch again keeps it,
        so that ``load_state_dict(state)`` followed by ``set_epoch(state["epoch"])`` still resumes.
        """
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self._yielded = 0
        self.epoch = epoch

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, 0x6C61_6265])

    def _epoch_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[:2] != (self.seed, self.epoch):
            self._cache = (self.seed, self.epoch, self._make_batches(self._rng(self.epoch)))
        return self._cache[2]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._epoch_batches()
        while self._yielded < len(batches):
            batch = batches[self._yielded]
            self._yielded += 1
            yield list(batch)
        self._yielded = 0

    def __len__(self) -> int:
        return len(self._epoch_batches())

    # checkpointing ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"sampler", "seed", "epoch", "batches_yielded"}``: everything needed to resume mid-epoch."""
        return {
            "sampler": type(self).__name__,
            "seed": self.seed,
            "epoch": self.epoch,
            "batches_yielded": self._yielded,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; the next iteration continues with the next batch of that epoch."""
        missing = [key for key in ("seed", "epoch", "batches_yielded") if key not in state]
        if missing:
            raise KeyError(f"sampler state is missing {', '.join(missing)}")
        kind = state.get("sampler", type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f"state was saved by a {kind}, cannot load it into a {type(self).__name__}")
        self.seed = _check_int("state['seed']", state["seed"], 0)
        self.epoch = _check_int("state['epoch']", state["epoch"], 0)
        yielded = _check_int("state['batches_yielded']", state["batches_yielded"], 0)
        total = len(self)
        if yielded > total:
            raise ValueError(f"state['batches_yielded'] is {yielded} but an epoch has only {total} batches")
        self._yielded = yielded

    def _zip_batch_labels(self) -> list[tuple[list[int], list[int]]]:
        """This epoch's batches with the labels ``_make_batches`` recorded in ``self._batch_labels``."""
        batches = self._epoch_batches()
        recorded = getattr(self, "_batch_labels", None)
        if recorded is None or recorded[:2] != (self.seed, self.epoch):
            self._cache = None  # the batches came from a cache filled before the labels were recorded
            batches = self._epoch_batches()
            recorded = self._batch_labels  # type: ignore[attr-defined]
        return [(list(b), list(ls)) for b, ls in zip(batches, recorded[2], strict=True)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batches={len(self)}, seed={self.seed}, epoch={self.epoch})"


# ----------------------------------------------------------------------------- P x K


class MPerLabelSampler(_StatefulBatchSampler):
    """P x K batches for multi-label data: ``P = batch_size // m`` labels, ``m`` items each.

    For every batch, P distinct labels are picked uniformly at random among the *usable*
    labels, and for each label m distinct items carrying it are drawn. Multi-label aware: an
    item drawn for one label may carry others, but no item appears twice in a batch (a label
    whose remaining items cannot give m new ones is passed over for another label).
    ``batch[i * m:(i + 1) * m]`` are the items drawn for the i-th label of the batch
    (`batches_with_labels` returns the labels too).

    Labels with fewer than ``m`` items are **skipped** (never picked), so every chosen label
    really has m distinct items in the batch; items without labels are never drawn.

    Args:
        labels: a `LabelMatrix` or a `LabeledDataset`.
        m: items per label (>= 1).
        batch_size: a multiple of ``m``.
        seed: random seed.
        length_before_new_iter: items per epoch (default: the number of labelled items);
            an epoch has ``length_before_new_iter // batch_size`` batches.

    Example:
        >>> from labelspace.data import LabelMatrix
        >>> labels = LabelMatrix.from_lists([[0], [0, 1], [1], [1, 2], [2], [0, 2], []], num_labels=3)
        >>> sampler = MPerLabelSampler(labels, m=2, batch_size=4, seed=0)
        >>> len(sampler)
        1
        >>> batch = next(iter(sampler))
        >>> len(batch), len(set(batch)), 6 in batch
        (4, 4, False)
    """

    def __init__(
        self,
        labels: LabelMatrix | LabeledDataset,
        m: int,
        batch_size: int,
        *,
        seed: int = 0,
        length_before_new_iter: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.labels = _as_label_matrix(labels)
        self.m = _check_int("m", m, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if self.batch_size % self.m:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of m ({self.m})")
        self.labels_per_batch = self.batch_size // self.m
        counts = self.labels.label_counts()
        self.usable_labels = np.flatnonzero(counts >= self.m)
        if len(self.usable_labels) < self.labels_per_batch:
            raise ValueError(
                f"m * number of usable labels ({self.m} * {len(self.usable_labels)} = "
                f"{self.m * len(self.usable_labels)}) is smaller than batch_size ({self.batch_size}): "
                f"a batch needs {self.labels_per_batch} labels with at least m={self.m} items each "
                f"(labels with fewer than m items are skipped); lower m or batch_size"
            )
        labelled = int((self.labels.cardinality() > 0).sum())
        if length_before_new_iter is None:
            length_before_new_iter = labelled
        self.length_before_new_iter = _check_int("length_before_new_iter", length_before_new_iter, 1)
        if self.length_before_new_iter < self.batch_size:
            raise ValueError(
                f"length_before_new_iter ({self.length_before_new_iter}) must be >= batch_size ({self.batch_size})"
            )
        self.num_batches = self.length_before_new_iter // self.batch_size
        self._batch_labels: tuple[int, int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def _plan(self, rng: np.random.Generator) -> tuple[list[list[int]], list[list[int]]]:
        csc = self.labels.to_csc()
        indptr, indices = csc.indptr, csc.indices
        m, per_batch = self.m, self.labels_per_batch
        batches: list[list[int]] = []
        batch_labels: list[list[int]] = []
        for _ in range(self.num_batches):
            batch: list[int] = []
            in_batch: set[int] = set()
            chosen: list[int] = []
            for label in rng.permutation(self.usable_labels).tolist():
                items = indices[indptr[label] : indptr[label + 1]]
                # Drawing m + |batch| distinct items leaves at least m outside the batch.
                take = min(len(items), m + len(batch))
                drawn = items[rng.choice(len(items), size=take, replace=False)].tolist()
                fresh = [item for item in drawn if item not in in_batch][:m]
                if len(fresh) < m:
                    continue
                batch.extend(fresh)
                in_batch.update(fresh)
                chosen.append(label)
                if len(chosen) == per_batch:
                    break
            if len(chosen) < per_batch:
                raise RuntimeError(
                    f"could not find {per_batch} labels with {m} items not already in the batch; "
                    "the labels overlap too much for this m and batch_size"
                )
            batches.append(batch)
            batch_labels.append(chosen)
        return batches, batch_labels

    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:
        batches, batch_labels = self._plan(rng)
        self._batch_labels = (self.seed, self.epoch, batch_labels)
        return batches

    def batches_with_labels(self) -> list[tuple[list[int], list[int]]]:
        """This epoch's batches with the P label ids each was built from (the i-th label owns ``m`` items)."""
        return self._zip_batch_labels()


class PKSampler(_StatefulBatchSampler):
    """P x K batches with rare labels chosen more often: the batch-hard triplet recipe, multi-label aware.

    Each batch is built in two steps.

    1. **P distinct labels**, drawn one after another without replacement: each draw picks label
       ``l`` with probability ``w_l / (sum of w over the labels not drawn yet)``, where
       ``w_l = count_l ** -power`` and ``count_l`` is the number of items carrying ``l``. With
       the default ``power=1`` labels are chosen inversely to their frequency; ``power=0`` is
       uniform. Labels without items are never drawn. (Implemented as an exponential race:
       ``key_l = E_l / w_l`` with ``E_l ~ Exp(1)``, the P smallest keys in increasing order,
       which has exactly this distribution.)
    2. **K items per chosen label**, in the order the labels were drawn: ``min(K, r_l)`` items
       drawn uniformly without replacement among the ``r_l`` items that carry ``l`` and are not
       in the batch yet. A rare label with fewer than K items is **kept** with all its items
       (not dropped as in `MPerLabelSampler`). An item is never in a batch twice: an item drawn
       for one label may also carry a label drawn later, which then draws only from its
       remaining items.

    So a batch holds at most P*K distinct items, and each chosen label is carried by at least
    ``min(K, count_l)`` of them. Items without labels are never drawn. An epoch has
    ``num_batches`` batches, by default ``ceil(labelled items / (P * K))``: as many items as a
    pass over the labelled data would take (fewer when rare labels give short batches); items
    of rare labels are seen several times per epoch, items of frequent labels maybe not at all.
    `batches_with_labels` gives the P labels of each batch, in the order they were drawn.

    Args:
        labels: a `LabelMatrix`, a `LabeledDataset` or a 2-D 0/1 array.
        labels_per_batch: P, distinct labels per batch (at most the number of labels with items).
        per_label: K, items drawn for each chosen label.
        power: exponent of the inverse frequency (>= 0); 1 by default.
        seed: random seed.
        num_batches: batches per epoch (default ``ceil(labelled items / (P * K))``).

    Example:
        >>> from labelspace.data import LabelMatrix
        >>> labels = LabelMatrix.from_lists([[0]] * 20 + [[1]] * 20 + [[2], [2, 0]], num_labels=3)
        >>> sampler = PKSampler(labels, labels_per_batch=2, per_label=4, seed=0)
        >>> len(sampler)  # ceil(42 / 8)
        6
        >>> sampler.label_probabilities().round(3).tolist()  # first draw: 1/21, 1/20, 1/2, normalised
        [0.08, 0.084, 0.837]
        >>> batch, chosen = sampler.batches_with_labels()[0]
        >>> len(batch) <= 8 and len(set(batch)) == len(batch) and len(set(chosen)) == 2
        True
    """

    def __init__(
        self,
        labels: LabelMatrix | LabeledDataset,
        labels_per_batch: int,
        per_label: int,
        *,
        power: float = 1.0,
        seed: int = 0,
        num_batches: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.labels = _as_label_matrix(labels)
        self.labels_per_batch = _check_int("labels_per_batch", labels_per_batch, 1)
        self.per_label = _check_int("per_label", per_label, 1)
        if isinstance(power, bool) or not isinstance(power, (int, float, np.integer, np.floating)):
            raise TypeError(f"power must be a number, got {type(power).__name__}")
        if not (np.isfinite(power) and power >= 0):
            raise ValueError(f"power must be a finite number >= 0, got {power}")
        self.power = float(power)
        self._counts = self.labels.label_counts()
        self.usable_labels = np.flatnonzero(self._counts > 0)
        if len(self.usable_labels) < self.labels_per_batch:
            raise ValueError(
                f"labels_per_batch ({self.labels_per_batch}) is larger than the number of labels with at least "
                f"one item ({len(self.usable_labels)})"
            )
        labelled = int((self.labels.cardinality() > 0).sum())
        if num_batches is None:
            num_batches = -(-labelled // (self.labels_per_batch * self.per_label))
        self.num_batches = _check_int("num_batches", num_batches, 1)
        self._batch_labels: tuple[int, int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def label_probabilities(self) -> np.ndarray:
        """Probability of each label (length L) to be the first label drawn for a batch: ``w / sum(w)``."""
        weights = np.zeros(self.labels.num_labels, dtype=np.float64)
        usable = self.usable_labels
        weights[usable] = self._counts[usable].astype(np.float64) ** -self.power
        return weights / weights.sum()

    def _choose_labels(self, rng: np.random.Generator) -> np.ndarray:
        """(num_batches, P) label ids, each row drawn as described in the class docstring."""
        usable = self.usable_labels
        scale = self._counts[usable].astype(np.float64) ** self.power  # 1 / w
        per_batch = self.labels_per_batch
        chosen = np.empty((self.num_batches, per_batch), dtype=np.int64)
        rows_per_chunk = max(1, (1 << 20) // len(usable))  # keys of at most ~1M labels at a time
        for start in range(0, self.num_batches, rows_per_chunk):
            rows = min(rows_per_chunk, self.num_batches - start)
            keys = rng.exponential(size=(rows, len(usable))) * scale
            smallest = np.argpartition(keys, per_batch - 1, axis=1)[:, :per_batch]
            order = np.argsort(np.take_along_axis(keys, smallest, axis=1), axis=1, kind="stable")
            chosen[start : start + rows] = usable[np.take_along_axis(smallest, order, axis=1)]
        return chosen

    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:
        csc = self.labels.to_csc()
        indptr, indices = csc.indptr, csc.indices
        per_label = self.per_label
        chosen = self._choose_labels(rng)
        batches: list[list[int]] = []
        for labels_of_batch in chosen.tolist():
            batch: list[int] = []
            in_batch: set[int] = set()
            for label in labels_of_batch:
                items = indices[indptr[label] : indptr[label + 1]]
                # At most len(batch) of the label's items are in the batch already, so drawing
                # K + len(batch) distinct ones leaves K new ones whenever the label has them.
                take = min(len(items), per_label + len(batch))
                drawn = items[rng.choice(len(items), size=take, replace=False)].tolist()
                fresh = [item for item in drawn if item not in in_batch][:per_label]
                batch.extend(fresh)
                in_batch.update(fresh)
            batches.append(batch)
        self._batch_labels = (self.seed, self.epoch, chosen.tolist())
        return batches

    def batches_with_labels(self) -> list[tuple[list[int], list[int]]]:
        """This epoch's batches with the P label ids each was built from, in the order they were drawn."""
        return self._zip_batch_labels()

    _SHAPE_KEYS = ("labels_per_batch", "per_label", "power", "num_batches")

    def state_dict(self) -> dict[str, Any]:
        """The base state plus P, K, ``power`` and ``num_batches``, checked on load."""
        return {**super().state_dict(), **{key: getattr(self, key) for key in self._SHAPE_KEYS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; refuses a state saved with another P, K, power or epoch length."""
        for key in self._SHAPE_KEYS:
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state was saved by a PKSampler with {key}={state[key]!r}, "
                    f"this one has {key}={getattr(self, key)!r}"
                )
        super().load_state_dict(state)


# ----------------------------------------------------------------------------- balanced


class MultiLabelBalancedSampler(_StatefulBatchSampler):
    """Batches in which rare labels are drawn about as often as frequent ones.

    Repeatedly draws a label with probability inversely proportional to how often each label
    has been drawn so far in the epoch (counts start at 1 and restart every epoch, so that an
    epoch depends only on ``(seed, epoch)``), then a random item carrying that label; an item
    is never repeated within a batch (a label whose items are all in the batch already is not
    drawn again for that batch). Labels are drawn in numpy chunks of up to 16 with the
    probabilities updated between chunks. Labels with no items and items with no labels are
    never drawn.

    Args:
        labels: a `LabelMatrix` or a `LabeledDataset`.
        batch_size: items per batch (at most the number of labelled items).
        seed: random seed.
        num_batches: batches per epoch (default: labelled items // batch_size, at least 1).

    Example:
        >>> from labelspace.data import LabelMatrix
        >>> labels = LabelMatrix.from_lists([[0]] * 50 + [[1]] * 2 + [[0, 2]], num_labels=3)
        >>> sampler = MultiLabelBalancedSampler(labels, batch_size=4, seed=0, num_batches=3)
        >>> [len(batch) for batch in sampler]
        [4, 4, 4]
    """

    chunk_size = 16

    def __init__(
        self,
        labels: LabelMatrix | LabeledDataset,
        batch_size: int,
        *,
        seed: int = 0,
        num_batches: int | None = None,
    ) -> None:
        super().__init__(seed)
        self.labels = _as_label_matrix(labels)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        labelled = int((self.labels.cardinality() > 0).sum())
        if labelled == 0:
            raise ValueError("labels has no labelled items to draw from")
        if self.batch_size > labelled:
            raise ValueError(f"batch_size ({self.batch_size}) is larger than the number of labelled items ({labelled})")
        if num_batches is None:
            num_batches = max(1, labelled // self.batch_size)
        self.num_batches = _check_int("num_batches", num_batches, 1)
        counts = self.labels.label_counts()
        self.usable_labels = np.flatnonzero(counts > 0)
        self._batch_labels: tuple[int, int, list[list[int]]] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def _make_batches(self, rng: np.random.Generator) -> list[list[int]]:
        csc = self.labels.to_csc()
        usable = self.usable_labels
        starts = csc.indptr[usable].astype(np.int64)
        sizes = (csc.indptr[usable + 1] - csc.indptr[usable]).astype(np.int64)
        indices = csc.indices
        num = len(usable)
        drawn_counts = np.ones(num, dtype=np.float64)
        batches: list[list[int]] = []
        batch_labels: list[list[int]] = []
        for _ in range(self.num_batches):
            batch: list[int] = []
            labels_of_batch: list[int] = []
            in_batch: set[int] = set()
            available = np.ones(num, dtype=bool)
            while len(batch) < self.batch_size:
                weights = np.where(available, 1.0 / drawn_counts, 0.0)
                total = weights.sum()
                if total <= 0:  # pragma: no cover - cannot happen when batch_size <= labelled items
                    raise RuntimeError("ran out of labelled items while filling a batch")
                k = min(self.chunk_size, self.batch_size - len(batch))
                chosen = rng.choice(num, size=k, p=weights / total)
                positions = starts[chosen] + (rng.random(k) * sizes[chosen]).astype(np.int64)
                items = indices[positions]
                for label, item in zip(chosen.tolist(), items.tolist(), strict=True):
                    if not available[label]:
                        continue
                    if item in in_batch:
                        item = self._redraw(label, starts, sizes, indices, in_batch, rng)
                        if item is None:
                            available[label] = False
                            continue
                    batch.append(item)
                    in_batch.add(item)
                    labels_of_batch.append(int(usable[label]))
                    drawn_counts[label] += 1
            batches.append(batch)
            batch_labels.append(labels_of_batch)
        self._batch_labels = (self.seed, self.epoch, batch_labels)
        return batches

    @staticmethod
    def _redraw(
        label: int,
        starts: np.ndarray,
        sizes: np.ndarray,
        indices: np.ndarray,
        in_batch: set[int],
        rng: np.random.Generator,
    ) -> int | None:
        """A random item of ``label`` not in the batch, or None when it has none left."""
        start, size = int(starts[label]), int(sizes[label])
        for position in rng.integers(0, size, size=8).tolist():
            item = int(indices[start + position])
            if item not in in_batch:
                return item
        fresh = [item for item in indices[start : start + size].tolist() if item not in in_batch]
        if not fresh:
            return None
        return fresh[int(rng.integers(len(fresh)))]

    def batches_with_labels(self) -> list[tuple[list[int], list[int]]]:
        """This epoch's batches with the label drawn for each item (same order)."""
        return self._zip_batch_labels()


# ----------------------------------------------------------------------------- no duplicates


class NoDuplicatesSampler(_StatefulBatchSampler):
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
        self.texts = _as_texts(texts)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if not self.texts:
            raise ValueError("texts is empty")
        self.drop_last = bool(drop_last)
        self.group_by_length = bool(group_by_length)
        self.mega_batch_factor = _check_int("mega_batch_factor", mega_batch_factor, 1)
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


class LengthGroupedSampler(_StatefulBatchSampler):
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
        self.texts = _as_texts(texts)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.mega_batch_factor = _check_int("mega_batch_factor", mega_batch_factor, 1)
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
