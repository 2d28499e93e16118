"""What every labelspace sampler shares: argument checks and the seeded, resumable base class.

`StatefulBatchSampler` holds the seed, the epoch and the number of batches already yielded,
caches the batches of the current epoch and implements ``__iter__``, ``set_epoch``,
``state_dict`` and ``load_state_dict``; a subclass only says how to draw one epoch's batches
(``_make_batches(rng)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelMatrix

__all__ = ["StatefulBatchSampler", "as_label_matrix", "as_texts", "check_int"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` when it is an integer >= ``minimum`` (TypeError / ValueError naming ``name`` otherwise).

    Example:
        >>> check_int("batch_size", 4, 1)
        4
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_label_matrix(labels: Any) -> LabelMatrix:
    """The `LabelMatrix` of a `LabeledDataset`, a `LabelMatrix` itself, or one built from a 2-D 0/1 array or tensor."""
    if isinstance(labels, LabeledDataset):
        return labels.labels
    if isinstance(labels, LabelMatrix):
        return labels
    if isinstance(labels, np.ndarray) or hasattr(labels, "detach"):
        return LabelMatrix.from_dense(labels)
    raise TypeError(f"labels must be a LabelMatrix, a LabeledDataset or a 2-D 0/1 array, got {type(labels).__name__}")


def as_texts(texts: Any) -> list[str]:
    """The texts of a `LabeledDataset`, or a sequence of str checked item by item."""
    if isinstance(texts, LabeledDataset):
        return texts.texts
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a sequence of str or a LabeledDataset, got {type(texts).__name__}")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
    return list(texts)


class StatefulBatchSampler:
    """Seeded, epoch-aware, resumable batch sampler; subclasses implement ``_make_batches(rng)``.

    The batches of an epoch are drawn once from a generator seeded with ``(seed, epoch)`` and
    cached; iterating yields those not yielded yet, so that ``load_state_dict`` can resume
    mid-epoch.

    Example:
        >>> class Halves(StatefulBatchSampler):
        ...     def _make_batches(self, rng):
        ...         order = rng.permutation(4).tolist()
        ...         return [order[:2], order[2:]]
        >>> sampler = Halves(seed=0)
        >>> first = next(iter(sampler))
        >>> state = sampler.state_dict()
        >>> state["batches_yielded"]
        1
        >>> again = Halves(seed=0)
        >>> again.load_state_dict(state)
        >>> rest = list(again)
        >>> len(rest), rest == list(sampler)  # the rest of the epoch, as the uninterrupted run gives it
        (1, True)
    """

    def __init__(self, seed: int) -> None:
        self.seed = check_int("seed", seed, 0)
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
        epoch = check_int("epoch", epoch, 0)
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
        self.seed = check_int("state['seed']", state["seed"], 0)
        self.epoch = check_int("state['epoch']", state["epoch"], 0)
        yielded = check_int("state['batches_yielded']", state["batches_yielded"], 0)
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
