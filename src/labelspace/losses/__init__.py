"""Losses. Head losses (`BCEHeadLoss`, `FocalLoss`, `AsymmetricLoss`, ...) take ``(logits, targets)``.
Metric losses take ``(embeddings, labels=None, indices_tuple=None)`` like
pytorch-metric-learning's, with labels as class ids, a multi-hot matrix or a `Relation`.

Example:
    >>> import torch
    >>> from labelspace.losses import MultiSimilarityLoss
    >>> embeddings = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    >>> labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0], [0, 0], [1, 0], [0, 1]])
    >>> bool(MultiSimilarityLoss()(embeddings, labels) > 0)
    True
"""

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
from labelspace.losses.model_loss import CombinedLoss, ModelLoss, as_model_loss
from labelspace.losses.text import (
    AnglELoss,
    CachedGISTEmbedLoss,
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    GISTEmbedLoss,
    MultipleNegativesRankingLoss,
    TripletLoss,
)

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
