"""Batch samplers: which items share a batch, and which train dataset each batch comes from.

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

Choosing and scheduling (what the Trainer uses):

- `build_sampler`: a name of `SAMPLERS` (``TrainingArguments.sampler``) or a sampler object -> the
  sampler of one train dataset.
- `MultiDatasetSchedule`: the dataset name of each batch of an epoch, with several train datasets.
- `checked_batch`, `has_state`, `sampler_state`: check a batch a sampler gave; what a checkpoint
  keeps of a sampler.

Modules: ``base`` (the seeded, resumable base class), ``labels`` (P x K and balanced), ``texts``
(no duplicates, length grouping), ``selection`` (by name, checks, state), ``schedule``
(several datasets), ``names`` (`SAMPLERS`, `MULTI_DATASET_SAMPLING`, `check_sampler_choice`).
The names are loaded lazily, so that ``labelspace.samplers.names`` can be read without torch
(``TrainingArguments`` is checked when the CLI starts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from labelspace.samplers.names import MULTI_DATASET_SAMPLING, SAMPLERS, check_sampler_choice

if TYPE_CHECKING:
    from labelspace.samplers.base import StatefulBatchSampler
    from labelspace.samplers.labels import MPerLabelSampler, MultiLabelBalancedSampler, PKSampler
    from labelspace.samplers.schedule import MultiDatasetSchedule
    from labelspace.samplers.selection import build_sampler, checked_batch, has_state, sampler_state
    from labelspace.samplers.texts import LengthGroupedSampler, NoDuplicatesSampler

_MODULE_OF = {
    "StatefulBatchSampler": "base",
    "MPerLabelSampler": "labels",
    "MultiLabelBalancedSampler": "labels",
    "PKSampler": "labels",
    "MultiDatasetSchedule": "schedule",
    "build_sampler": "selection",
    "checked_batch": "selection",
    "has_state": "selection",
    "sampler_state": "selection",
    "LengthGroupedSampler": "texts",
    "NoDuplicatesSampler": "texts",
}

__all__ = [
    "MULTI_DATASET_SAMPLING",
    "SAMPLERS",
    "LengthGroupedSampler",
    "MPerLabelSampler",
    "MultiDatasetSchedule",
    "MultiLabelBalancedSampler",
    "NoDuplicatesSampler",
    "PKSampler",
    "StatefulBatchSampler",
    "build_sampler",
    "check_sampler_choice",
    "checked_batch",
    "has_state",
    "sampler_state",
]


def __getattr__(name: str) -> Any:
    # Lazy: the sampler modules import NumPy and (through labelspace.data) torch.
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'labelspace.samplers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"labelspace.samplers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
