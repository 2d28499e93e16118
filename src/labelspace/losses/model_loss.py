"""Deprecated: the model-level losses moved to `labelspace.objectives` (this path works for one release).

``from labelspace.losses.model_loss import CombinedLoss`` still works, with a DeprecationWarning;
import from `labelspace.objectives` instead.

Example:
    >>> import warnings
    >>> from labelspace.objectives import CombinedLoss
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from labelspace.losses.model_loss import CombinedLoss as OldCombinedLoss
    >>> OldCombinedLoss is CombinedLoss, "labelspace.objectives" in str(caught[0].message)
    (True, True)
"""

from __future__ import annotations

from typing import Any

from labelspace.losses.moved import moved_name

#: old name -> the module that holds it now
DEPRECATED_ALIASES = {
    name: "labelspace.objectives"
    for name in (
        "CombinedLoss",
        "EmbeddingCache",
        "HeadObjective",
        "MetricObjective",
        "ModelLoss",
        "PairScoreObjective",
        "RankingObjective",
        "as_model_loss",
        "encoder_of",
        "pair_batch_relation",
    )
}

__all__ = sorted(DEPRECATED_ALIASES)


def __getattr__(name: str) -> Any:
    if name not in DEPRECATED_ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from labelspace import objectives  # noqa: F401  (a deprecated path: objectives sit a layer above losses)

    return moved_name(__name__, name, DEPRECATED_ALIASES[name])
