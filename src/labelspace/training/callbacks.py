"""Trainer callbacks: hooks called at fixed points of training, and early stopping.

Subclass `Callback` and override the hooks you need; each receives the trainer and its
`TrainerState`. Set ``state.should_stop = True`` to end training after the current step.

Example:
    >>> class PrintLoss(Callback):
    ...     def on_log(self, trainer, state, logs):
    ...         print(f"step {state.global_step}: loss {logs['loss']:.3f}")
    >>> stopper = EarlyStoppingCallback(patience=2)
    >>> state = TrainerState(metric_name="macro_f1", greater_is_better=True)
    >>> for value in (0.30, 0.35, 0.34, 0.33):
    ...     improved = state.record_metric(value)
    ...     stopper.on_evaluate(None, state, {"macro_f1": value})
    >>> state.should_stop, state.best_metric
    (True, 0.35)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Callback", "EarlyStoppingCallback", "TrainerState"]


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint (``trainer_state.json``)."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    max_steps: int = 0
    metric_name: str | None = None
    greater_is_better: bool = True
    best_metric: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    should_stop: bool = False
    texts_seen: int = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def record_metric(self, value: float) -> bool:
        """Record an evaluation's value of the chosen metric; True when it is the best so far."""
        improved = self.best_metric is None or (
            value > self.best_metric if self.greater_is_better else value < self.best_metric
        )
        if improved:
            self.best_metric = float(value)
            self.best_step = self.global_step
            self.evaluations_without_improvement = 0
        else:
            self.evaluations_without_improvement += 1
        return improved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        return cls(**known)


class Callback:
    """Base class: every hook does nothing. ``trainer`` is the running `Trainer`."""

    def on_train_begin(self, trainer: Any, state: TrainerState) -> None:
        """Before the first step (also after resuming)."""

    def on_step_end(self, trainer: Any, state: TrainerState) -> None:
        """After each optimizer step."""

    def on_log(self, trainer: Any, state: TrainerState, logs: dict[str, float]) -> None:
        """When training values are logged (loss, learning rate, texts/s)."""

    def on_evaluate(self, trainer: Any, state: TrainerState, metrics: dict[str, Any]) -> None:
        """After an evaluation on the eval dataset (``state`` already holds the updated best metric)."""

    def on_save(self, trainer: Any, state: TrainerState, path: str) -> None:
        """After a checkpoint has been written to ``path``."""

    def on_train_end(self, trainer: Any, state: TrainerState) -> None:
        """After the last step."""


class EarlyStoppingCallback(Callback):
    """Stop when the eval metric has not improved for ``patience`` evaluations in a row.

    Args:
        patience: evaluations without improvement before stopping (>= 1).
    """

    def __init__(self, patience: int) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        self.patience = patience

    def on_evaluate(self, trainer: Any, state: TrainerState, metrics: dict[str, Any]) -> None:
        if state.evaluations_without_improvement >= self.patience:
            state.should_stop = True
