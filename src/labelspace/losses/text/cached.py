"""Deprecated: the GradCache losses moved to `labelspace.objectives` (this path works for one release).

`CachedMultipleNegativesRankingLoss` is now in `labelspace.objectives` (module
`labelspace.objectives.cached`), the GradCache machinery (`grad_cache_loss`,
`embed_mini_batches`, `RandomState`, ...) in `labelspace.objectives.gradcache`. The names still
import from here, with a DeprecationWarning. `shares_label_rows` is
``RelationRule().false_negative_mask(labels[begin:end], labels)``.

Example:
    >>> import warnings
    >>> from labelspace.objectives import CachedMultipleNegativesRankingLoss
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from labelspace.losses.text.cached import CachedMultipleNegativesRankingLoss as Old
    >>> Old is CachedMultipleNegativesRankingLoss, caught[0].category.__name__
    (True, 'DeprecationWarning')
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from labelspace.losses.moved import moved_name
from labelspace.relations import RelationRule

#: old name -> the module that holds it now
DEPRECATED_ALIASES = {
    "CachedMultipleNegativesRankingLoss": "labelspace.objectives",
    **{
        name: "labelspace.objectives.gradcache"
        for name in (
            "MiniBatch",
            "RandomState",
            "RowLoss",
            "check_mini_batch_size",
            "embed_mini_batches",
            "grad_cache_loss",
            "row_chunks",
        )
    },
}

__all__ = sorted([*DEPRECATED_ALIASES, "shares_label_rows"])

_OVERLAP = RelationRule()


def shares_label_rows(labels: torch.Tensor, begin: int, end: int) -> torch.Tensor:
    """Deprecated: rows ``begin:end`` of the overlap false-negative mask (n x B).

    Use ``RelationRule().false_negative_mask(labels[begin:end], labels)``.

    Example:
        >>> import torch, warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     shares_label_rows(torch.tensor([[1, 0], [1, 1], [0, 1]]), 0, 1).tolist()
        [[True, True, False]]
    """
    warnings.warn(
        "shares_label_rows(labels, begin, end) is deprecated; use "
        "RelationRule().false_negative_mask(labels[begin:end], labels) (labelspace.relations) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return _OVERLAP.false_negative_mask(labels[begin:end], labels)


def __getattr__(name: str) -> Any:
    if name not in DEPRECATED_ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from labelspace import objectives  # noqa: F401  (a deprecated path: objectives sit a layer above losses)

    return moved_name(__name__, name, DEPRECATED_ALIASES[name])
