"""Trainer callbacks: hooks called at fixed points of training; logging, evaluation and checkpoints are callbacks too.

Subclass `Callback` and override the hooks you need; each receives the trainer and its
`TrainerState`. Set ``state.should_stop = True`` to end training after the current step.

The trainer's own work after each optimizer step is done by built-in callbacks
(`default_callbacks`), which run before yours, in this order:

- `ProgressBarCallback`: the progress bar, with the loss and texts/s;
- `LoggingCallback`: averages the loss (and each part of a combined loss) over ``logging_steps``
  steps, calls ``on_log``, and writes ``train_log.jsonl`` (training logs and evaluations);
- `TensorBoardCallback`: the same values as TensorBoard scalars (``tensorboard=True``);
- `EvaluationCallback`: evaluates every ``eval_steps`` steps (default: at the end of each epoch)
  and at the last step, calls ``on_evaluate``, and keeps the best model (``best-model/``);
- `CheckpointCallback`: writes a checkpoint every ``save_steps`` steps (default: each epoch).

``on_step_end`` sees the state after the step: at the end of an epoch ``state.epoch`` already
counts it and ``state.batches_in_epoch`` is 0. ``epoch`` in the logs is fractional (1.5: half of
the second epoch done).

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

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from labelspace import parallel as distributed
from labelspace.models.model import LabelspaceModel
from labelspace.training.arguments import TrainingArguments

__all__ = [
    "Callback",
    "CheckpointCallback",
    "EarlyStoppingCallback",
    "EvaluationCallback",
    "LoggingCallback",
    "ProgressBarCallback",
    "StepOutcome",
    "TensorBoardCallback",
    "TrainerState",
    "default_callbacks",
]


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


@dataclass
class StepOutcome:
    """What the last optimizer step did (``trainer.last_step``): its loss, texts and loss parts.

    ``loss`` is the mean over the processes; ``parts`` holds the detached part of each loss with
    several parts (``CombinedLoss``), averaged over the step's batches.
    """

    loss: float
    texts: int
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


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
        """After the last step, once ``model/`` and ``metrics.json`` are written."""


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


def fractional_epoch(trainer: Any, state: TrainerState) -> float:
    """Epochs done, with the current one's fraction: ``epoch + batches_in_epoch / batches per epoch``."""
    return state.epoch + state.batches_in_epoch / max(1, trainer.epoch_length)


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics dict, as floats (per-label tables and None left out)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None
    }


def evaluation_entry(trainer: Any, state: TrainerState, metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``train_log.jsonl`` / ``log_history`` entry of an evaluation."""
    improved = state.best_step == state.global_step
    return {
        "step": state.global_step,
        "epoch": fractional_epoch(trainer, state),
        "eval": scalars(metrics),
        "best": improved,
    }


class ProgressBarCallback(Callback):
    """A tqdm progress bar over the run's steps (main process), showing the logged loss and texts/s."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, trainer: Any, state: TrainerState) -> None:
        if distributed.is_main_process():
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="Training", unit="step")

    def on_step_end(self, trainer: Any, state: TrainerState) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, trainer: Any, state: TrainerState, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", texts_per_s=f"{logs['texts_per_second']:.1f}")

    def on_train_end(self, trainer: Any, state: TrainerState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LoggingCallback(Callback):
    """Training values averaged over ``logging_steps`` steps (and at the last step); ``train_log.jsonl``.

    A log holds ``step``, ``epoch``, ``loss``, ``learning_rate``, ``texts_per_second`` (evaluation and
    checkpoint time left out) and ``loss_<part>`` for each part of a loss with several parts. Logs and
    evaluations go to ``state.log_history`` and, one JSON object a line, to ``output_dir/train_log.jsonl``
    (main process).
    """

    def __init__(self) -> None:
        self._start_window()

    def _start_window(self) -> None:
        self.loss, self.steps, self.texts = 0.0, 0, 0
        self.parts: dict[str, torch.Tensor] = {}
        self.started = time.perf_counter()

    def _record(self, trainer: Any, state: TrainerState, entry: dict[str, Any]) -> None:
        state.log_history.append(entry)
        if trainer.output_dir is not None:
            with (trainer.output_dir / "train_log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def on_train_begin(self, trainer: Any, state: TrainerState) -> None:
        self._start_window()

    def on_step_end(self, trainer: Any, state: TrainerState) -> None:
        step = trainer.last_step
        self.loss, self.steps, self.texts = self.loss + step.loss, self.steps + 1, self.texts + step.texts
        for name, value in step.parts.items():
            self.parts[name] = self.parts[name] + value if name in self.parts else value
        if state.global_step % trainer.args.logging_steps and state.global_step != state.max_steps:
            return
        logs = {
            "step": state.global_step,
            "epoch": fractional_epoch(trainer, state),
            "loss": self.loss / self.steps,
            "learning_rate": trainer.scheduler.get_last_lr()[0],
            "texts_per_second": self.texts / max(time.perf_counter() - self.started, 1e-9),
        }
        logs.update({f"loss_{name}": float(total) / self.steps for name, total in self.parts.items()})
        self._start_window()
        if distributed.is_main_process():
            self._record(trainer, state, logs)
            trainer.fire("on_log", logs)

    def on_evaluate(self, trainer: Any, state: TrainerState, metrics: dict[str, Any]) -> None:
        self._record(trainer, state, evaluation_entry(trainer, state, metrics))
        self.started = time.perf_counter()  # texts/s counts training time only

    def on_save(self, trainer: Any, state: TrainerState, path: str) -> None:
        self.started = time.perf_counter()


class TensorBoardCallback(Callback):
    """TensorBoard scalars ``train/<name>`` and ``eval/<metric>`` in ``output_dir/tensorboard`` (main process)."""

    def __init__(self) -> None:
        self.writer: Any = None

    def on_train_begin(self, trainer: Any, state: TrainerState) -> None:
        if not distributed.is_main_process() or trainer.output_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency: only when asked for
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise RuntimeError("tensorboard=True needs the tensorboard package: pip install tensorboard") from error
        self.writer = SummaryWriter(log_dir=str(trainer.output_dir / "tensorboard"))

    def on_log(self, trainer: Any, state: TrainerState, logs: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in logs.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, logs["step"])

    def on_evaluate(self, trainer: Any, state: TrainerState, metrics: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in scalars(metrics).items():
                self.writer.add_scalar(f"eval/{key}", value, state.global_step)

    def on_train_end(self, trainer: Any, state: TrainerState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EvaluationCallback(Callback):
    """Evaluate on the eval dataset and keep the best model (main process).

    Evaluates every ``eval_steps`` steps (None: at the end of each epoch) and at the last step,
    with `Trainer.evaluate_for_selection` (the decisions the model ships, thresholds tuned first with
    ``tune_thresholds``). ``state.record_metric`` tracks the best value of ``state.metric_name``;
    the best weights are kept in memory and written to ``output_dir/best-model``. `restore_best`
    puts them back at the end (from ``best-model/`` after a resume).
    """

    def __init__(self) -> None:
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_step_end(self, trainer: Any, state: TrainerState) -> None:
        every = trainer.args.eval_steps
        due = (every is not None and state.global_step % every == 0) or (every is None and state.batches_in_epoch == 0)
        if (due or state.global_step == state.max_steps) and distributed.is_main_process():
            self.evaluate(trainer, state)

    def evaluate(self, trainer: Any, state: TrainerState) -> dict[str, Any]:
        """One evaluation: record the metric, keep the model when it is the best, call ``on_evaluate``."""
        metrics = trainer.evaluate_for_selection().metrics
        name = state.metric_name
        if name not in metrics or metrics[name] is None:
            raise ValueError(f"eval_metric {name!r} is not among the evaluation metrics: {', '.join(scalars(metrics))}")
        if state.record_metric(float(metrics[name])):
            self.best_state = {key: value.detach().cpu().clone() for key, value in trainer.model.state_dict().items()}
            if trainer.output_dir is not None:
                trainer.model.save(trainer.output_dir / "best-model", overwrite=True)
        trainer.fire("on_evaluate", metrics)
        trainer.model.train()
        return metrics

    def restore_best(self, trainer: Any) -> None:
        """Load the best weights into ``trainer.model`` (nothing when no evaluation was recorded)."""
        best = self.best_state
        folder = trainer.output_dir / "best-model" if trainer.output_dir is not None else None
        if best is None and folder is not None and folder.is_dir():
            best = LabelspaceModel.from_pretrained(folder).state_dict()
        if best is not None:
            trainer.model.load_state_dict(best)
            trainer.model.to(trainer.device)


class CheckpointCallback(Callback):
    """Write a checkpoint (`Trainer.save_checkpoint`) every ``save_steps`` steps, or at the end of each epoch."""

    def on_step_end(self, trainer: Any, state: TrainerState) -> None:
        every = trainer.args.save_steps
        due = (every is not None and state.global_step % every == 0) or (every is None and state.batches_in_epoch == 0)
        if due and trainer.output_dir is not None:
            trainer.save_checkpoint()


def default_callbacks(args: TrainingArguments, *, evaluate: bool) -> list[Callback]:
    """The built-in callbacks for ``args``, in the order they run (an `EvaluationCallback` when ``evaluate``)."""
    chosen: list[Callback] = [ProgressBarCallback()] if args.show_progress_bar else []
    chosen.append(LoggingCallback())
    if args.tensorboard:
        chosen.append(TensorBoardCallback())
    if evaluate:
        chosen.append(EvaluationCallback())
    chosen.append(CheckpointCallback())
    return chosen
