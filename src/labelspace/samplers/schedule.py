"""`MultiDatasetSchedule`: which train dataset each batch of an epoch comes from."""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import Any

import numpy as np

from labelspace.samplers.base import check_int
from labelspace.samplers.names import MULTI_DATASET_SAMPLING

__all__ = ["MultiDatasetSchedule"]


class MultiDatasetSchedule:
    """The dataset name of every batch of an epoch, when several train datasets share a run.

    - ``"proportional"``: every dataset's batches once per epoch (``len(sampler)`` of them),
      interleaved in a random order drawn from ``(seed, epoch)``;
    - ``"round_robin"``: one batch of each dataset in turn (in the dict's order), until the
      dataset with the fewest batches has given all of its batches.

    With one dataset both modes give its batches in order. The order depends only on the seed,
    the epoch and the samplers' ``len()`` when `epoch` is called, so a resumed run trains on
    the datasets in the same order as the uninterrupted one.

    Args:
        samplers: dataset name -> its batch sampler (anything with ``len()``: batches per epoch).
        mode: ``"proportional"`` or ``"round_robin"`` (`MULTI_DATASET_SAMPLING`).
        seed: the seed of the interleaving.

    Example:
        >>> schedule = MultiDatasetSchedule({"labeled": [[0], [1]], "pairs": [[0]]}, "round_robin", seed=0)
        >>> schedule.epoch(0), schedule.batches_per_epoch
        (['labeled', 'pairs'], 2)
        >>> schedule = MultiDatasetSchedule({"labeled": [[0], [1]], "pairs": [[0]]}, "proportional", seed=0)
        >>> sorted(schedule.epoch(3)), schedule.batches_per_epoch
        (['labeled', 'labeled', 'pairs'], 3)
    """

    def __init__(self, samplers: Mapping[str, Sized], mode: str = "proportional", seed: int = 0) -> None:
        if not isinstance(samplers, Mapping) or not samplers:
            raise ValueError(f"samplers must be a non-empty dict dataset name -> sampler, got {samplers!r}")
        if mode not in MULTI_DATASET_SAMPLING:
            raise ValueError(f"mode must be one of {', '.join(MULTI_DATASET_SAMPLING)}, got {mode!r}")
        self.samplers: dict[str, Any] = dict(samplers)
        self.mode = mode
        self.seed = check_int("seed", seed, 0)

    def _lengths(self) -> dict[str, int]:
        return {name: len(sampler) for name, sampler in self.samplers.items()}

    @property
    def batches_per_epoch(self) -> int:
        """Batches in an epoch: ``len(self.epoch(e))`` for every ``e``."""
        lengths = self._lengths()
        if len(lengths) > 1 and self.mode == "round_robin":
            return len(lengths) * min(lengths.values())
        return sum(lengths.values())

    def epoch(self, epoch: int) -> list[str]:
        """The dataset name of each batch of ``epoch``, in training order (deterministic from the seed and epoch)."""
        epoch = check_int("epoch", epoch, 0)
        lengths = self._lengths()
        names = list(lengths)
        if len(names) == 1:
            return names * lengths[names[0]]
        if self.mode == "round_robin":
            return names * min(lengths.values())
        order = [name for name in names for _ in range(lengths[name])]
        rng = np.random.default_rng([self.seed, epoch, 0x5C4E])
        return [order[i] for i in rng.permutation(len(order)).tolist()]

    def __repr__(self) -> str:
        return f"MultiDatasetSchedule({list(self.samplers)}, mode={self.mode!r}, seed={self.seed})"
