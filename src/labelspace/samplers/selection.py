"""Choosing a sampler by name, and checking what any sampler gives: the sampler side of the Trainer.

`build_sampler` turns ``TrainingArguments.sampler`` (a name of `SAMPLERS` or a sampler object) into
the sampler of one train dataset; `checked_batch` validates each batch a sampler yields;
`has_state` and `sampler_state` say what a checkpoint keeps of a sampler.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.samplers.base import check_int
from labelspace.samplers.labels import MPerLabelSampler, MultiLabelBalancedSampler, PKSampler
from labelspace.samplers.names import check_sampler_choice
from labelspace.samplers.texts import LengthGroupedSampler, NoDuplicatesSampler

__all__ = ["build_sampler", "checked_batch", "has_state", "sampler_state"]

_LABEL_SAMPLERS = ("m_per_label", "balanced", "pk")  # the names that draw batches from the labels
_MEGA_BATCH_FACTOR = {"random": 1, "length_grouped": 50}  # "random" is a length-grouped pass without grouping


def build_sampler(
    choice: Any,
    dataset: LabeledDataset | PairDataset | TripletDataset,
    *,
    batch_size: int,
    seed: int,
    m_per_label: int | None = None,
    per_label: int | None = None,
    drop_last: bool = False,
    dataset_name: str = "train",
) -> Any:
    """The batch sampler of one train dataset: ``choice`` is a name of `SAMPLERS` or a sampler object.

    A sampler object is returned as it is (it must have at least one batch). A name builds:

    - ``"random"``: `LengthGroupedSampler` with ``mega_batch_factor=1`` (a shuffled pass);
    - ``"length_grouped"``: `LengthGroupedSampler` with ``mega_batch_factor=50``;
    - ``"no_duplicates"``: `NoDuplicatesSampler` (no text twice in a batch);
    - ``"m_per_label"``: `MPerLabelSampler` with ``m=m_per_label``;
    - ``"balanced"``: `MultiLabelBalancedSampler`;
    - ``"pk"``: `PKSampler` with ``per_label`` (K) items for each of ``batch_size // per_label`` labels.

    The text samplers read the texts (pairs: the first texts, triplets: the anchors); the label
    samplers need labels (a `LabeledDataset`, or a `PairDataset` that carries them).

    Args:
        choice: a sampler name or object.
        dataset: the train dataset.
        batch_size: the global batch (all processes together: they split each batch evenly).
        seed: the sampler's seed (its epochs depend only on the seed and the epoch).
        m_per_label: items per label of ``"m_per_label"`` (needed for that choice).
        per_label: K of ``"pk"`` (needed for that choice; ``batch_size`` must be a multiple of it).
        drop_last: drop the short last batch of ``"random"``, ``"length_grouped"`` and
            ``"no_duplicates"`` (needed with several processes, which split every batch evenly).
        dataset_name: the dataset's name in error messages.

    Example:
        >>> from labelspace.data.builtin import demo
        >>> sampler = build_sampler("pk", demo("train"), batch_size=8, seed=0, per_label=4)
        >>> type(sampler).__name__, sampler.labels_per_batch, sampler.per_label
        ('PKSampler', 2, 4)
        >>> build_sampler("m_per_label", demo("train"), batch_size=8, seed=0)
        Traceback (most recent call last):
        ...
        ValueError: the sampler of train dataset 'train': sampler='m_per_label' needs m_per_label (items per label)
    """
    where = f"the sampler of train dataset {dataset_name!r}"
    check_sampler_choice(choice, where)
    if not isinstance(choice, str):
        if len(choice) < 1:
            raise ValueError(f"{where} ({type(choice).__name__}) has no batches")
        return choice
    if isinstance(dataset, LabeledDataset):
        texts, labels = dataset.texts, dataset.labels
    elif isinstance(dataset, PairDataset):
        texts, labels = dataset.text1, dataset.labels
    elif isinstance(dataset, TripletDataset):
        texts, labels = dataset.anchors, None
    else:
        raise TypeError(
            f"train dataset {dataset_name!r} is a {type(dataset).__name__}: "
            "expected a LabeledDataset, PairDataset or TripletDataset"
        )
    if choice in _LABEL_SAMPLERS and labels is None:
        raise ValueError(
            f"sampler={choice!r} needs labeled data (or pairs that carry labels); "
            f"train dataset {dataset_name!r} is a {type(dataset).__name__} without labels"
        )
    try:
        if choice == "m_per_label":
            if m_per_label is None:
                raise ValueError("sampler='m_per_label' needs m_per_label (items per label)")
            return MPerLabelSampler(labels, m=m_per_label, batch_size=batch_size, seed=seed)
        if choice == "pk":
            if per_label is None:
                raise ValueError("sampler='pk' needs per_label (K, items per label)")
            per_label = check_int("per_label", per_label, 1)
            if check_int("batch_size", batch_size, 1) % per_label:
                raise ValueError(
                    f"with sampler='pk', batch_size ({batch_size}) must be a multiple of per_label ({per_label})"
                )
            return PKSampler(labels, labels_per_batch=batch_size // per_label, per_label=per_label, seed=seed)
        if choice == "balanced":
            return MultiLabelBalancedSampler(labels, batch_size=batch_size, seed=seed)
        if choice == "no_duplicates":
            return NoDuplicatesSampler(texts, batch_size=batch_size, seed=seed, drop_last=drop_last)
        return LengthGroupedSampler(
            texts, batch_size=batch_size, seed=seed, mega_batch_factor=_MEGA_BATCH_FACTOR[choice], drop_last=drop_last
        )
    except ValueError as error:  # the sampler's own check: say which dataset it is about
        raise ValueError(f"{where}: {error}") from error


def checked_batch(indices: Any, dataset_size: int, source: str) -> list[int]:
    """``indices`` (a list, array or tensor from a sampler) as a list of ints, checked against the dataset.

    A batch must be a non-empty 1-D sequence of integer item indices in ``[0, dataset_size)``;
    anything else is a ValueError that starts with ``source`` (which sampler, which dataset).

    Example:
        >>> checked_batch(np.array([3, 0]), 4, "my sampler")
        [3, 0]
        >>> checked_batch([1, 4], 4, "my sampler")
        Traceback (most recent call last):
        ...
        ValueError: my sampler gave item index 4, outside the dataset's 4 items (0 to 3)
    """
    try:
        array = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices)
    except (TypeError, ValueError) as error:  # ragged lists, objects numpy cannot read
        raise ValueError(f"{source} gave a batch that is not a list of integer item indices ({error})") from None
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{source} gave a batch of shape {array.shape} and dtype {array.dtype}: "
            "expected a non-empty list of integer item indices"
        )
    outside = array[(array < 0) | (array >= dataset_size)]
    if outside.size:
        raise ValueError(
            f"{source} gave item index {int(outside[0])}, outside the dataset's {dataset_size} items "
            f"(0 to {dataset_size - 1})"
        )
    return array.tolist()


def has_state(sampler: Any) -> bool:
    """Whether a sampler saves and restores its position (``state_dict`` and ``load_state_dict``).

    Example:
        >>> has_state(PKSampler(np.eye(3), labels_per_batch=1, per_label=1)), has_state([[0, 1], [2]])
        (True, False)
    """
    return callable(getattr(sampler, "state_dict", None)) and callable(getattr(sampler, "load_state_dict", None))


def sampler_state(sampler: Any) -> dict[str, Any]:
    """What a checkpoint keeps of a sampler: its ``state_dict()`` as JSON values, or its class name when it has none.

    Example:
        >>> sampler_state([[0, 1], [2]])
        {'sampler': 'list', 'stateless': True}
        >>> sampler_state(PKSampler(np.eye(3), labels_per_batch=1, per_label=1))["batches_yielded"]
        0
    """
    if has_state(sampler):
        return _json_ready(sampler.state_dict())
    return {"sampler": type(sampler).__name__, "stateless": True}


def _json_ready(value: Any) -> Any:
    """``value`` with tensors and NumPy values turned into lists / Python numbers and callables left out."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value
