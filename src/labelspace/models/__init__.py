"""Models: the text encoder (transformer + pooling + normalisation) and classification heads."""

from __future__ import annotations

from labelspace.models.encoder import POOLING_MODES, Encoder
from labelspace.models.heads import ClassificationHead

__all__ = ["POOLING_MODES", "ClassificationHead", "Encoder"]
