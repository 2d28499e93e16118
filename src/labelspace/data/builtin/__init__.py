"""Datasets that come with labelspace: the embedded demo set and a GoEmotions loader."""

from labelspace.data.builtin.demo import DEMO_LABELS, demo
from labelspace.data.builtin.goemotions import GOEMOTIONS_LABELS, goemotions

__all__ = ["DEMO_LABELS", "GOEMOTIONS_LABELS", "demo", "goemotions"]
