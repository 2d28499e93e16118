"""Samplers that build batches from the labels: P x K (`MPerLabelSampler`, `PKSampler`) and `MultiLabelBalancedSampler`.

All of them are multi-label aware (an item drawn for one label may carry others, no item is
twice in a batch) and never draw items without labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelMatrix
from labelspace.samplers.base import StatefulBatchSampler, as_label_matrix, check_int

__all__ = ["MPerLabelSampler", "MultiLabelBalancedSampler", "PKSampler"]


# ----------------------------------------------------------------------------- P x K


class MPerLabelSampler(StatefulBatchSampler):
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
        self.labels = as_label_matrix(labels)
        self.m = check_int("m", m, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
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
        self.length_before_new_iter = check_int("length_before_new_iter", length_before_new_iter, 1)
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


class PKSampler(StatefulBatchSampler):
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
        self.labels = as_label_matrix(labels)
        self.labels_per_batch = check_int("labels_per_batch", labels_per_batch, 1)
        self.per_label = check_int("per_label", per_label, 1)
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
        self.num_batches = check_int("num_batches", num_batches, 1)
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


class MultiLabelBalancedSampler(StatefulBatchSampler):
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
        self.labels = as_label_matrix(labels)
        self.batch_size = check_int("batch_size", batch_size, 1)
        labelled = int((self.labels.cardinality() > 0).sum())
        if labelled == 0:
            raise ValueError("labels has no labelled items to draw from")
        if self.batch_size > labelled:
            raise ValueError(f"batch_size ({self.batch_size}) is larger than the number of labelled items ({labelled})")
        if num_batches is None:
            num_batches = max(1, labelled // self.batch_size)
        self.num_batches = check_int("num_batches", num_batches, 1)
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
