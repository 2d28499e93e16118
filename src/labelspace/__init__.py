"""labelspace: metric learning for multi-label text.

Train, evaluate and serve text embedding models and classifiers where one text can carry
several labels. See the README for a tour.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labelspace")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["LabelspaceModel", "Trainer", "TrainingArguments", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy, so that `import labelspace` stays cheap (no torch / transformers until needed).
    if name == "LabelspaceModel":
        from labelspace.models import LabelspaceModel

        return LabelspaceModel
    if name in ("Trainer", "TrainingArguments"):
        from labelspace import training

        return getattr(training, name)
    raise AttributeError(f"module 'labelspace' has no attribute {name!r}")
