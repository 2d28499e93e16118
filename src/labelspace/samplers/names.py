"""The sampler and scheduling names, and the check of a sampler choice: nothing here imports torch or NumPy.

`labelspace.training.arguments` validates ``TrainingArguments`` with these when the CLI starts,
before torch is loaded; the samplers themselves live in the other modules of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MULTI_DATASET_SAMPLING", "SAMPLERS", "check_sampler_choice"]

SAMPLERS: tuple[str, ...] = ("random", "no_duplicates", "m_per_label", "balanced", "length_grouped", "pk")
"""The sampler names `build_sampler` (and ``TrainingArguments.sampler``) accept."""

MULTI_DATASET_SAMPLING: tuple[str, ...] = ("proportional", "round_robin")
"""The ``mode`` values of `MultiDatasetSchedule` (``TrainingArguments.multi_dataset_sampling``)."""


def check_sampler_choice(choice: Any, where: str = "sampler") -> None:
    """Raise a ValueError naming ``where`` unless ``choice`` is a name of `SAMPLERS` or a sampler object.

    A sampler object is anything iterable with ``__len__`` (not a mapping or bytes). With the default
    ``where="sampler"`` (the ``TrainingArguments.sampler`` value) a non-empty dict of such choices,
    one per train dataset, is accepted too.

    Example:
        >>> check_sampler_choice("pk")
        >>> check_sampler_choice({"labeled": "pk", "pairs": [[0, 1]]})
        >>> check_sampler_choice("fast")
        Traceback (most recent call last):
        ...
        ValueError: sampler must be one of random, no_duplicates, m_per_label, balanced, length_grouped, pk or a \
sampler object, got 'fast'
    """
    if isinstance(choice, str):
        if choice not in SAMPLERS:
            raise ValueError(f"{where} must be one of {', '.join(SAMPLERS)} or a sampler object, got {choice!r}")
        return
    if isinstance(choice, Mapping) and where == "sampler":
        if not choice:
            raise ValueError("sampler is an empty dict: give a sampler per train dataset name")
        for name, value in choice.items():
            check_sampler_choice(value, f"sampler[{name!r}]")
        return
    if isinstance(choice, (Mapping, bytes)) or not hasattr(choice, "__iter__") or not hasattr(choice, "__len__"):
        raise ValueError(
            f"{where} must be one of {', '.join(SAMPLERS)} or a sampler object (an iterable of lists of item "
            f"indices with __len__, e.g. a torch BatchSampler), got a {type(choice).__name__}"
        )
