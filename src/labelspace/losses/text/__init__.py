"""Text losses: the functional core of sentence-transformers' losses, and the losses that run the encoder.

On embeddings (the encoder call stays outside, so any model's embeddings can be used):
`MultipleNegativesRankingLoss` and `TripletLoss` (``loss(anchors, positives, *negatives,
labels=None)``; the former with multi-label false-negative masking), `CoSENTLoss` and `AnglELoss`
(``loss(embeddings1, embeddings2, scores)``).

Model-level (``loss(model, batch)``, they embed the texts themselves): `CachedMultipleNegativesRankingLoss`
(GradCache), `GISTEmbedLoss` and `CachedGISTEmbedLoss` (a guide model filters false negatives).
These three are imported on first use, as they build on `labelspace.losses.model_loss`, which
imports this package.

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

_LAZY = {
    "CachedMultipleNegativesRankingLoss": "labelspace.losses.text.cached",
    "GISTEmbedLoss": "labelspace.losses.text.gist",
    "CachedGISTEmbedLoss": "labelspace.losses.text.gist",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
