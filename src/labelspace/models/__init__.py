"""Models: the text encoder (transformer + pooling + normalisation), classification heads, and
`LabelspaceModel` (encoder + head + labels + thresholds, saved as one folder)."""

from __future__ import annotations

from labelspace.models.encoder import POOLING_MODES, Encoder
from labelspace.models.heads import ClassificationHead
from labelspace.models.model import DECISION_RULES, LabelspaceModel

__all__ = ["DECISION_RULES", "POOLING_MODES", "ClassificationHead", "Encoder", "LabelspaceModel"]
