"""Training: `Trainer`, `TrainingArguments`, callbacks and checkpoints.

The data-parallel helpers the losses use live a layer below, in `labelspace.parallel`. Names are
imported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Callback", "Trainer", "TrainingArguments"]


def __getattr__(name: str) -> Any:
    if name in ("Trainer", "TrainingArguments"):
        from labelspace.training import trainer

        return getattr(trainer, name)
    if name == "Callback":
        from labelspace.training import callbacks

        return callbacks.Callback
    raise AttributeError(f"module 'labelspace.training' has no attribute {name!r}")
