"""Text losses: the functional core of sentence-transformers' losses, and the losses that run the encoder.

On embeddings (the encoder call stays outside, so any model's embeddings can be used):
`MultipleNegativesRankingLoss` and `TripletLoss` (``loss(anchors, positives, *negatives,
labels=None)``; the former with multi-label false-negative masking), `CoSENTLoss` and `AnglELoss`
(``loss(embeddings1, embeddings2, scores)``).

The model-level losses that embed the texts themselves, `CachedMultipleNegativesRankingLoss`
(GradCache), `GISTEmbedLoss` and `CachedGISTEmbedLoss`, moved to `labelspace.objectives`; their
names still import from here for one release, with a DeprecationWarning.

Example:
    >>> import torch
    >>> from labelspace.losses.text import CoSENTLoss, MultipleNegativesRankingLoss, TripletLoss
    >>> g = torch.Generator().manual_seed(0)
    >>> anchors, positives = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    >>> bool(MultipleNegativesRankingLoss()(anchors, positives) > 0)
    True
    >>> bool(CoSENTLoss()(anchors, positives, torch.tensor([0.1, 0.9, 0.4, 0.0])) > 0)
    True
    >>> bool(TripletLoss()(anchors, positives, torch.randn(4, 8, generator=g)) > 0)
    True
"""

from __future__ import annotations

from typing import Any

from labelspace.losses.moved import moved_name
from labelspace.losses.text.pairs import AnglELoss, CoSENTLoss
from labelspace.losses.text.ranking import MultipleNegativesRankingLoss
from labelspace.losses.text.triplet import TripletLoss

__all__ = [
    "AnglELoss",
    "CachedGISTEmbedLoss",
    "CachedMultipleNegativesRankingLoss",
    "CoSENTLoss",
    "GISTEmbedLoss",
    "MultipleNegativesRankingLoss",
    "TripletLoss",
]

#: old name -> the module that holds it now (deprecated paths, for one release)
DEPRECATED_ALIASES = {
    "CachedMultipleNegativesRankingLoss": "labelspace.objectives",
    "GISTEmbedLoss": "labelspace.objectives",
    "CachedGISTEmbedLoss": "labelspace.objectives",
}


def __getattr__(name: str) -> Any:
    if name not in DEPRECATED_ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from labelspace import objectives  # noqa: F401  (a deprecated path: objectives sit a layer above losses)

    return moved_name(__name__, name, DEPRECATED_ALIASES[name])


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
