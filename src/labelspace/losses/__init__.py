"""Losses. Head losses (`BCEHeadLoss`, `FocalLoss`, `AsymmetricLoss`, ...) take ``(logits, targets)``.
Metric losses take ``(embeddings, labels=None, indices_tuple=None)`` like
pytorch-metric-learning's, with labels as class ids, a multi-hot matrix or a `Relation`.
The losses that call the model (`CombinedLoss`, `ModelLoss`, `as_model_loss`, the cached and
GIST losses) live in `labelspace.objectives`; their old names here are deprecated aliases.

Example:
    >>> import torch
    >>> from labelspace.losses import MultiSimilarityLoss
    >>> embeddings = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [0, 0], [1, 0], [0, 1]])
    >>> bool(MultiSimilarityLoss()(embeddings, labels) > 0)
    True
"""

from typing import Any

from labelspace.losses.base import MetricLoss
from labelspace.losses.head import (
    AsymmetricLoss,
    BCEHeadLoss,
    FocalLoss,
    RegressionHeadLoss,
    SoftmaxHeadLoss,
)
from labelspace.losses.metric.circle import CircleLoss
from labelspace.losses.metric.contrastive import ContrastiveLoss
from labelspace.losses.metric.fastap import FastAPLoss
from labelspace.losses.metric.multi_similarity import MultiSimilarityLoss
from labelspace.losses.metric.ntxent import NTXentLoss
from labelspace.losses.metric.triplet_margin import TripletMarginLoss
from labelspace.losses.moved import moved_name
from labelspace.losses.text import AnglELoss, CoSENTLoss, MultipleNegativesRankingLoss, TripletLoss

__all__ = [
    "CombinedLoss",
    "ModelLoss",
    "as_model_loss",
    "AnglELoss",
    "CoSENTLoss",
    "MultipleNegativesRankingLoss",
    "CachedMultipleNegativesRankingLoss",
    "GISTEmbedLoss",
    "CachedGISTEmbedLoss",
    "TripletLoss",
    "AsymmetricLoss",
    "BCEHeadLoss",
    "FocalLoss",
    "RegressionHeadLoss",
    "SoftmaxHeadLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "FastAPLoss",
    "MetricLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "TripletMarginLoss",
]

#: old name -> the module that holds it now: the model-level losses moved to labelspace.objectives
#: (deprecated paths, for one release)
DEPRECATED_ALIASES = {
    name: "labelspace.objectives"
    for name in (
        "CombinedLoss",
        "ModelLoss",
        "as_model_loss",
        "CachedMultipleNegativesRankingLoss",
        "GISTEmbedLoss",
        "CachedGISTEmbedLoss",
    )
}


def __getattr__(name: str) -> Any:
    if name not in DEPRECATED_ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from labelspace import objectives  # noqa: F401  (a deprecated path: objectives sit a layer above losses)

    return moved_name(__name__, name, DEPRECATED_ALIASES[name])
