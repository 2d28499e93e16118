"""Training: `Trainer`, `TrainingArguments`, callbacks and checkpoints.

Modules: ``arguments`` (`TrainingArguments`, the one place of training defaults), ``optim``
(optimizer groups, learning-rate schedule), ``callbacks`` (`Callback`, `TrainerState`, early
stopping, and the built-in progress / logging / TensorBoard / evaluation / checkpoint callbacks),
``evaluation`` (evaluation on the decisions the model ships, threshold tuning during the run),
``checkpoint`` (checkpoint files, run fingerprint), ``scoring`` (the kNN index and the scoring mode, head,
knn or hybrid, chosen on dev at the end of a run) and ``trainer`` (the loop).

The data-parallel helpers the losses use live a layer below, in `labelspace.parallel`. Names are
imported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "Callback",
    "EarlyStoppingCallback",
    "TrainOutput",
    "Trainer",
    "TrainerState",
    "TrainingArguments",
]

_HOMES = {
    "Trainer": "trainer",
    "TrainOutput": "trainer",
    "TrainingArguments": "arguments",
    "Callback": "callbacks",
    "EarlyStoppingCallback": "callbacks",
    "TrainerState": "callbacks",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"labelspace.training.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'labelspace.training' has no attribute {name!r}")
