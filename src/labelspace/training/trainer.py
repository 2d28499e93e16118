"""`Trainer`: fine-tune a `LabelspaceModel` with metric, text and head losses.

One optimizer step takes ``gradient_accumulation_steps`` batches; each batch comes from one of
the training datasets (labeled, pairs or triplets), chosen by the epoch's `MultiDatasetSchedule`,
and goes through that dataset's loss. The pieces live beside this module:

- `labelspace.training.arguments`: `TrainingArguments`, every setting and its default;
- `labelspace.training.optim`: AdamW parameter groups and the learning-rate schedule;
- `labelspace.training.callbacks`: progress bar, logging, TensorBoard, evaluation with the best
  model kept, checkpoints, early stopping: all callbacks, run after every step;
- `labelspace.training.evaluation`: evaluation on the decisions the model ships, with thresholds
  tuned on the eval set when ``tune_thresholds`` is on;
- `labelspace.training.checkpoint`: checkpoint files, the run fingerprint, exact resume;
- `labelspace.samplers`: which items share a batch (`build_sampler`) and which dataset each batch
  of an epoch comes from (`MultiDatasetSchedule`).

Run folder (``output_dir``), each file written once per run except the logs and checkpoints::

    model/              the final model (the best one when evaluating), a LabelspaceModel folder
    best-model/         the best model so far (while training with an eval dataset)
    baseline-model/     the frozen baseline candidate (encoder as loaded + linear-probe head), kept
                        for a resumed run and removed at the end (``baseline_candidate``)
    checkpoints/        checkpoint-<step>/ folders (model, optimizer, scheduler, samplers, RNG)
    train_log.jsonl     one JSON object per log / evaluation
    metrics.json        the evaluation of the model in model/ (see `Trainer.train`)
    tensorboard/        event files when ``tensorboard=True``
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelspace import parallel as distributed
from labelspace.data.batch import make_batch
from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.evaluation.model_metrics import (
    evaluate_model as evaluate_model,
)  # what evaluate_shipped runs without a head
from labelspace.files import atomic_write_text
from labelspace.losses import BCEHeadLoss, CoSENTLoss, MultipleNegativesRankingLoss, MultiSimilarityLoss
from labelspace.models.model import LabelspaceModel
from labelspace.objectives import ModelLoss, as_model_loss, sum_components
from labelspace.samplers import SAMPLERS, MultiDatasetSchedule, build_sampler, checked_batch, has_state, sampler_state
from labelspace.training.arguments import SCHEDULERS, TrainingArguments
from labelspace.training.callbacks import (
    Callback,
    EarlyStoppingCallback,
    EvaluationCallback,
    StepOutcome,
    TrainerState,
    default_callbacks,
)
from labelspace.training.checkpoint import (
    check_same_run,
    find_latest_checkpoint,
    json_ready,
    prune_checkpoints,
    read_checkpoint_state,
    restore_rng_state,
    run_fingerprint,
    write_checkpoint,
)
from labelspace.training.evaluation import FINE_TUNED, FROZEN_BASELINE, Evaluation, evaluate_shipped, select_candidate
from labelspace.training.optim import build_optimizer, build_scheduler
from labelspace.training.probe import linear_probe
from labelspace.training.scoring import baseline_scoring, check_scoring_request, tune_run_scoring

__all__ = ["SAMPLERS", "SCHEDULERS", "TrainOutput", "Trainer", "TrainingArguments"]

Dataset = LabeledDataset | PairDataset | TripletDataset


@dataclass
class TrainOutput:
    """What `Trainer.train` returns.

    ``metrics`` is the evaluation of the final model (what ``metrics.json`` holds, without the
    reports); ``reports`` the decision reports of labeled data with a head (`Evaluation.reports`);
    ``scoring`` the record of its scoring mode (`labelspace.training.scoring`; None for a model without labels).
    """

    global_step: int
    training_loss: float
    metrics: dict[str, Any] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    model_path: str | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    scoring: dict[str, Any] | None = None


@dataclass
class BaselineCandidate:
    """The frozen baseline: its evaluation on the eval set and the weights and decisions that would ship.

    ``state`` is the whole model's state dict on the CPU (the encoder as loaded, the probe head).
    """

    evaluation: Evaluation
    state: dict[str, torch.Tensor]
    thresholds: np.ndarray
    decision_rule: str
    top_k: int
    tuning_record: Any = None


def default_loss(dataset: Dataset, model: LabelspaceModel) -> torch.nn.Module:
    """The loss used when none is given: by the kind of data, and whether the model has a head."""
    if isinstance(dataset, LabeledDataset):
        return BCEHeadLoss() if model.head is not None else MultiSimilarityLoss()
    if isinstance(dataset, PairDataset) and not np.all(dataset.scores == 1.0):
        return CoSENTLoss()
    return MultipleNegativesRankingLoss()


class Trainer:
    """Train a `LabelspaceModel` on one or several datasets, each with its loss.

    Args:
        model: the `LabelspaceModel` to train (a head is needed for head losses).
        train_dataset: a `LabeledDataset`, `PairDataset` or `TripletDataset`, or a dict name -> dataset.
        loss: a loss (any labelspace loss, a `CombinedLoss`, or a `ModelLoss`), a ``(metric loss,
            miner)`` tuple, or a dict name -> loss matching ``train_dataset``. Default per dataset:
            `BCEHeadLoss` for labeled data with a head, `MultiSimilarityLoss` without,
            `MultipleNegativesRankingLoss` for triplets and all-positive pairs, `CoSENTLoss` for scored pairs.
        eval_dataset: evaluated every ``eval_steps`` (and at the end).
        args: `TrainingArguments`.
        callbacks: extra `Callback` objects; they run after the built-in ones (`default_callbacks`).

    Example:
        >>> import tempfile
        >>> from labelspace import LabelspaceModel, Trainer, TrainingArguments
        >>> from labelspace.data import LabeledDataset
        >>> from labelspace.losses import BCEHeadLoss, MultiSimilarityLoss
        >>> from labelspace.models.testing import tiny_model_folder
        >>> from labelspace.objectives import CombinedLoss
        >>> texts = ["refund please", "app crashes", "refund and crash", "love it"] * 4
        >>> labels = [["billing"], ["bug"], ["billing", "bug"], ["praise"]] * 4
        >>> data = LabeledDataset.from_label_names(texts, labels)
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
        >>> loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)])
        >>> args = TrainingArguments(max_steps=3, batch_size=8, show_progress_bar=False)
        >>> output = Trainer(model, data, loss, eval_dataset=data, args=args).train()
        >>> output.global_step, "macro_f1" in output.metrics
        (3, True)
    """

    def __init__(
        self,
        model: LabelspaceModel,
        train_dataset: Dataset | Mapping[str, Dataset],
        loss: Any = None,
        eval_dataset: Dataset | None = None,
        args: TrainingArguments | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> None:
        if not isinstance(model, LabelspaceModel):
            raise TypeError(f"model must be a LabelspaceModel, got {type(model).__name__}")
        self.model = model
        self.args = args or TrainingArguments()
        if isinstance(train_dataset, Mapping):
            if not train_dataset:
                raise ValueError("train_dataset is an empty dict")
            self.datasets: dict[str, Dataset] = dict(train_dataset)
        else:
            self.datasets = {"train": train_dataset}
        for name, dataset in self.datasets.items():
            if not isinstance(dataset, (LabeledDataset, PairDataset, TripletDataset)):
                raise TypeError(
                    f"train dataset {name!r} is a {type(dataset).__name__}: expected a LabeledDataset, "
                    "PairDataset or TripletDataset"
                )
            if len(dataset) == 0:
                raise ValueError(f"train dataset {name!r} is empty")
        self.losses = self._resolve_losses(loss)
        self.eval_dataset = eval_dataset
        check_scoring_request(  # before training, not after it
            self.args.scoring,
            model,
            has_train=bool(self._labeled_train_data()),
            has_dev=isinstance(eval_dataset, LabeledDataset),
        )
        self.callbacks: list[Callback] = default_callbacks(self.args, evaluate=eval_dataset is not None)
        self.callbacks += list(callbacks or [])
        if self.args.early_stopping_patience is not None:
            if eval_dataset is None:
                raise ValueError("early_stopping_patience needs an eval_dataset")
            self.callbacks.append(EarlyStoppingCallback(self.args.early_stopping_patience))
        self.device = torch.device(self.args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.args.mixed_precision != "no" and self.device.type != "cuda":
            raise ValueError(f"mixed_precision={self.args.mixed_precision!r} needs a CUDA device, got {self.device}")
        self.output_dir = Path(self.args.output_dir) if self.args.output_dir else None
        self.state = TrainerState()
        self.samplers: dict[str, Any] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.schedule: MultiDatasetSchedule | None = None  # which dataset each batch of an epoch comes from
        self.epoch_length = 0  # batches in the current epoch
        self.last_step = StepOutcome(0.0, 0)
        self.baseline: BaselineCandidate | None = None

    # ------------------------------------------------------------------ setup
    def _check_per_dataset(self, mapping: Mapping[str, Any], what: str) -> None:
        """A ``{train dataset name: value}`` dict (losses, samplers) must name exactly the train datasets."""
        missing = sorted(set(self.datasets) - set(mapping))
        extra = sorted(set(mapping) - set(self.datasets))
        if missing or extra:
            raise ValueError(
                f"the {what} dict must have the train datasets' names ({', '.join(self.datasets)}); "
                f"missing: {missing or 'none'}, unknown: {extra or 'none'}"
            )

    def _resolve_losses(self, loss: Any) -> dict[str, ModelLoss]:
        if isinstance(loss, Mapping):
            self._check_per_dataset(loss, "loss")
            chosen = dict(loss)
        else:
            chosen = {name: loss for name in self.datasets}
        resolved: dict[str, ModelLoss] = {}
        for name, dataset in self.datasets.items():
            item = chosen[name] if chosen[name] is not None else default_loss(dataset, self.model)
            model_loss = as_model_loss(*item) if isinstance(item, tuple) else as_model_loss(item)
            model_loss.check_dataset(dataset, name)
            resolved[name] = model_loss
        return resolved

    def _sampler_choice(self, name: str) -> Any:
        """The ``TrainingArguments.sampler`` entry (a name or a sampler object) for train dataset ``name``."""
        choice = self.args.sampler
        if isinstance(choice, Mapping):
            self._check_per_dataset(choice, "sampler")
            return choice[name]
        if not isinstance(choice, str) and len(self.datasets) > 1:
            raise ValueError(
                f"sampler is one {type(choice).__name__} object but there are {len(self.datasets)} train datasets "
                f"({', '.join(self.datasets)}): give a dict dataset name -> sampler"
            )
        return choice

    def _setup(self) -> None:
        """Seeds, device, samplers, schedule, optimizer, scheduler and a fresh state for a run."""
        args = self.args
        distributed.init_from_environment()
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        self.model.to(self.device)
        distributed.broadcast_parameters(self.model)
        self.samplers = {
            name: build_sampler(
                self._sampler_choice(name),
                dataset,
                batch_size=args.batch_size * distributed.world_size(),
                seed=args.seed,
                m_per_label=args.m_per_label,
                per_label=args.pk_shape()[1],
                drop_last=distributed.is_distributed(),
                dataset_name=name,
            )
            for name, dataset in self.datasets.items()
        }
        self.schedule = MultiDatasetSchedule(self.samplers, args.multi_dataset_sampling, seed=args.seed)
        steps_per_epoch = max(1, math.ceil(self.schedule.batches_per_epoch / args.gradient_accumulation_steps))
        total_steps = args.max_steps or steps_per_epoch * args.num_epochs
        self.optimizer = build_optimizer(self.model, self.losses.values(), args)
        self.scheduler = build_scheduler(self.optimizer, args, total_steps)
        self._parameters = [p for p in self.model.parameters() if p.requires_grad]
        self._parameters += [p for loss in self.losses.values() for p in loss.parameters() if p.requires_grad]
        self._scaler = torch.amp.GradScaler("cuda") if args.mixed_precision == "fp16" else None
        self._autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision)
        self._loss_sum, self._loss_steps = 0.0, 0
        self.state = TrainerState(
            max_steps=total_steps, metric_name=self._metric_name(), greater_is_better=self._greater_is_better()
        )
        if distributed.is_main_process() and self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint: str | os.PathLike[str] | bool | None = None) -> TrainOutput:
        """Run training; ``resume_from_checkpoint=True`` continues from the newest checkpoint in ``output_dir``.

        Each step trains on the next ``gradient_accumulation_steps`` batches of the epoch's schedule
        (`_optimizer_step`), then the callbacks run (`labelspace.training.callbacks`: progress, logs,
        evaluation and best model, checkpoints, then yours). At the end (`_finish`) the best weights
        come back, the model that ships is evaluated once more (its thresholds tuned when
        ``tune_thresholds`` is on), and ``model/`` and ``metrics.json`` are written, once.
        """
        self._setup()
        self.model.set_index(None)  # the encoder is about to change: an index of its embeddings would be stale
        if resume_from_checkpoint:
            self._resume(resume_from_checkpoint)
        if self.state.global_step == 0:
            self._start_head()
        elif self._wants_baseline() and distributed.is_main_process():
            self.baseline = self._read_baseline()
        state = self.state
        self.fire("on_train_begin")
        self.model.train()
        with stop_between_steps_on_interrupt() as interrupted:
            self._train_loop(state, interrupted)
        return self._finish()

    # ------------------------------------------------------------------ probe and baseline
    def _labeled_train_data(self) -> list[LabeledDataset]:
        return [dataset for dataset in self.datasets.values() if isinstance(dataset, LabeledDataset)]

    def _wants_baseline(self) -> bool:
        """A frozen baseline candidate: asked for, a classification head, labeled train and eval data."""
        head = self.model.head
        return (
            self.args.baseline_candidate
            and head is not None
            and head.kind != "regression"
            and isinstance(self.eval_dataset, LabeledDataset)
            and bool(self._labeled_train_data())
            and self.args.scoring in ("auto", "head")  # the baseline scores with its head
        )

    def _start_head(self) -> None:
        """A fresh run: fit the linear probe (`labelspace.training.probe`) when ``head_init="probe"`` or a
        frozen baseline candidate is wanted; start the head from it with ``"probe"``; evaluate the baseline.

        Every process fits the same probe (the weights are then broadcast from rank 0); the baseline is
        evaluated on the main process only, like every evaluation.
        """
        args, model = self.args, self.model
        wants_baseline = self._wants_baseline()
        if model.head is None or not (args.head_init == "probe" or wants_baseline):
            return
        probe = linear_probe(model, self._labeled_train_data(), C=args.probe_c, batch_size=args.eval_batch_size)
        if probe is None:
            return
        if args.head_init == "probe" and not model.head_is_trained:  # a trained head is not thrown away
            model.head.load_state_dict(probe.state_dict())
            distributed.broadcast_parameters(model)
        if wants_baseline and distributed.is_main_process():
            self.baseline = self._evaluate_baseline(probe.state_dict())
        model.train()

    def _evaluate_baseline(self, probe_state: Mapping[str, torch.Tensor]) -> BaselineCandidate:
        """Evaluate the model as loaded with the probe head, like a fine-tuned one; the model is left as it was.

        With ``output_dir`` the baseline is also saved to ``baseline-model/``, so a resumed run has it.
        """
        model, head = self.model, self.model.head
        assert head is not None
        kept_head = {key: value.detach().clone() for key, value in head.state_dict().items()}
        kept = (model.thresholds.copy(), model.decision_rule, model.top_k, model.metadata.get("thresholds"))
        head.load_state_dict(probe_state)
        evaluation = evaluate_shipped(model, self.eval_dataset, self.args)
        candidate = BaselineCandidate(
            evaluation,
            {key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
            model.thresholds.copy(),
            model.decision_rule,
            model.top_k,
            model.metadata.get("thresholds"),
        )
        if self.output_dir is not None:
            model.save(self.output_dir / "baseline-model", overwrite=True)
        head.load_state_dict(kept_head)
        model.thresholds, model.decision_rule, model.top_k = kept[0], kept[1], kept[2]
        if kept[3] is None:
            model.metadata.pop("thresholds", None)
        else:
            model.metadata["thresholds"] = kept[3]
        return candidate

    def _read_baseline(self) -> BaselineCandidate | None:
        """After a resume: the baseline candidate saved in ``baseline-model/`` (None when there is none)."""
        folder = self.output_dir / "baseline-model" if self.output_dir is not None else None
        if folder is None or not folder.is_dir():
            return None
        saved = LabelspaceModel.from_pretrained(folder)
        evaluation = evaluate_shipped(saved, self.eval_dataset, self.args)  # tunes as at the start: same thresholds
        return BaselineCandidate(
            evaluation,
            saved.state_dict(),
            saved.thresholds.copy(),
            saved.decision_rule,
            saved.top_k,
            saved.metadata.get("thresholds"),
        )

    def _ship_baseline(self) -> None:
        """Put the baseline candidate's weights, thresholds and decision rule into the model."""
        baseline = self.baseline
        assert baseline is not None
        self.model.load_state_dict(baseline.state)
        self.model.to(self.device)
        self.model.set_thresholds(baseline.thresholds)
        self.model.set_decision_rule(baseline.decision_rule, baseline.top_k)
        if baseline.tuning_record is None:
            self.model.metadata.pop("thresholds", None)
        else:
            self.model.metadata["thresholds"] = baseline.tuning_record

    # ------------------------------------------------------------------ loop
    def _train_loop(self, state: TrainerState, interrupted: Callable[[], bool]) -> None:
        """Optimizer steps until ``max_steps``, an early stop, or a Ctrl-C (raised between two steps)."""
        while state.global_step < state.max_steps and not state.should_stop:
            for sampler in self.samplers.values():  # first: a sampler's length may depend on its epoch
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(state.epoch)
            schedule = self.schedule.epoch(state.epoch)
            self.epoch_length = len(schedule)
            iterators = self._epoch_iterators(schedule)
            while state.batches_in_epoch < len(schedule) and state.global_step < state.max_steps:
                start = state.batches_in_epoch
                group = schedule[start : start + self.args.gradient_accumulation_steps]
                self.last_step = self._optimizer_step(group, iterators)
                state.global_step += 1
                state.texts_seen += self.last_step.texts
                state.batches_in_epoch += len(group)
                epoch_done = state.batches_in_epoch >= len(schedule)
                if epoch_done:
                    state.epoch, state.batches_in_epoch = state.epoch + 1, 0
                self.fire("on_step_end")
                if interrupted():
                    raise KeyboardInterrupt
                state.should_stop = self._agree_on_stop(state.should_stop)
                if state.should_stop or epoch_done:
                    break

    def fire(self, hook: str, *values: Any) -> None:
        """Call ``hook`` (``"on_step_end"``, ``"on_log"``...) of every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(self, self.state, *values)

    def _epoch_iterators(self, schedule: list[str]) -> dict[str, Iterator[Any]]:
        """Each sampler's batches for the epoch; a stateless sampler skips what a resumed run already trained on."""
        iterators = {}
        for name, sampler in self.samplers.items():
            iterators[name] = iter(sampler)
            if not has_state(sampler):
                for _ in range(schedule[: self.state.batches_in_epoch].count(name)):
                    self._next_batch(iterators, name)
        return iterators

    def _next_batch(self, iterators: dict[str, Iterator[Any]], name: str) -> list[int]:
        """The next batch of dataset ``name``'s sampler, checked (`checked_batch`)."""
        sampler = self.samplers[name]
        source = f"the sampler of train dataset {name!r} ({type(sampler).__name__})"
        try:
            indices = next(iterators[name])
        except StopIteration:
            raise ValueError(f"{source} ran out of batches before the {len(sampler)} its len() promised") from None
        return checked_batch(indices, len(self.datasets[name]), source)

    def _optimizer_step(self, group: list[str], iterators: dict[str, Iterator[Any]]) -> StepOutcome:
        """Forward and backward on each batch of ``group`` (gradients averaged over it), then one optimizer step."""
        assert self.optimizer is not None and self.scheduler is not None
        world, rank, scaler = distributed.world_size(), distributed.rank(), self._scaler
        step_loss, texts, parts = 0.0, 0, {}
        for name in group:
            indices = self._next_batch(iterators, name)
            if world > 1:  # every process takes its share of the global batch
                share = len(indices) // world
                indices = indices[rank * share : (rank + 1) * share]
            batch = make_batch(self.datasets[name], indices).to(self.device)
            with torch.autocast(self.device.type, dtype=self._autocast, enabled=self._autocast is not None):
                components = self.losses[name].components(self.model, batch)
                loss = sum_components(components) / len(group)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            step_loss += float(loss.detach())
            texts += batch.num_texts() * world
            if len(components) > 1:
                for key, value in components.items():
                    part = value.detach() / len(group)
                    parts[key] = parts[key] + part if key in parts else part
        distributed.average_gradients(self._parameters)
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        if self.args.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._parameters, self.args.max_grad_norm)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if world > 1:  # log the global loss, not this process's share
            reduced = torch.tensor([step_loss], device=self.device)
            torch.distributed.all_reduce(reduced)
            step_loss = float(reduced.item()) / world
        self._loss_sum, self._loss_steps = self._loss_sum + step_loss, self._loss_steps + 1
        return StepOutcome(step_loss, texts, parts)

    def _agree_on_stop(self, should_stop: bool) -> bool:
        if not distributed.is_distributed():
            return should_stop
        flag = torch.tensor([1.0 if should_stop else 0.0], device=self.device)  # NCCL needs a CUDA tensor
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def _finish(self) -> TrainOutput:
        """Restore the best weights, evaluate the model that ships, write ``model/`` and ``metrics.json`` once.

        ``metrics.json`` holds the metrics of that final evaluation and, for labeled data with a
        head, ``"dev"``: the decision reports (``"global 0.5"``, and ``"tuned"`` when the thresholds
        were tuned; ``"argmax"`` for a single-label head), as `Evaluation` describes.

        First the scoring mode of the model that ships is chosen (``scoring``, `tune_run_scoring`: the kNN
        index is built and the mode picked on the eval set), so that the thresholds are tuned for that mode;
        ``metrics.json`` and the model's metadata keep the record under ``"scoring"``.

        With a frozen baseline candidate (``baseline_candidate``) the fine-tuned model and the baseline
        are compared on the eval metric (`select_candidate`: the baseline ships only when strictly
        better); ``metrics.json`` then also holds ``"candidates"`` (each one's value), ``"shipped"`` (its
        name) and ``"shipped_because"``, and the model's metadata ``training.selection`` the same record.
        """
        evaluation = next((c for c in self.callbacks if isinstance(c, EvaluationCallback)), None)
        if evaluation is not None and self.args.load_best_model_at_end:
            evaluation.restore_best(self)
        main = distributed.is_main_process()
        # The scoring mode first: the final evaluation tunes the thresholds for it, and the candidates compare in it.
        scoring = (
            tune_run_scoring(
                self.model, self._labeled_train_data(), self.eval_dataset, self.args, metric=self.state.metric_name
            )
            if main
            else None
        )
        final = evaluate_shipped(self.model, self.eval_dataset, self.args) if main and evaluation else Evaluation({})
        selection = None
        if main and evaluation is not None and self.baseline is not None and self.state.metric_name:
            candidates = {FINE_TUNED: final, FROZEN_BASELINE: self.baseline.evaluation}
            selection = select_candidate(
                candidates, self.state.metric_name, greater_is_better=self.state.greater_is_better
            )
            if selection["shipped"] == FROZEN_BASELINE:
                self._ship_baseline()
                final = self.baseline.evaluation
                scoring = baseline_scoring(self.model, scoring)
        self.model.train()
        self.model.head_is_trained = self.model.head is not None
        model_path = None
        if scoring is not None:
            self.model.metadata["scoring"] = scoring
        if main and self.output_dir is not None:
            self.model.metadata.update(self._metadata())
            if selection is not None:
                self.model.metadata["training"]["selection"] = selection
            model_path = str(self.model.save(self.output_dir / "model", overwrite=True))
            if final.metrics:
                saved = {**final.metrics, "dev": final.reports} if final.reports else dict(final.metrics)
                if selection is not None:
                    saved.update(candidates=selection["candidates"], shipped=selection["shipped"])
                    saved["shipped_because"] = selection["reason"]
                if scoring is not None:
                    saved["scoring"] = scoring
                atomic_write_text(self.output_dir / "metrics.json", json.dumps(saved, indent=2) + "\n")
            shutil.rmtree(self.output_dir / "baseline-model", ignore_errors=True)  # only kept for a resume
        self.fire("on_train_end")
        state = self.state
        return TrainOutput(
            global_step=state.global_step,
            training_loss=self._loss_sum / max(1, self._loss_steps),
            metrics=final.metrics,
            best_metric=state.best_metric,
            best_step=state.best_step,
            model_path=model_path,
            reports=final.reports,
            selection=selection,
            scoring=scoring,
        )

    def _label_counts(self) -> dict[str, int] | None:
        """Training positives per label name over the labelled datasets (None without labels): what picks the
        rarest quarter of labels when the model is evaluated later (`labelspace evaluate`)."""
        if self.model.label_set is None:
            return None
        names = self.model.label_set.names
        counts = dict.fromkeys(names, 0)
        for dataset in self.datasets.values():
            if isinstance(dataset, LabeledDataset):
                totals = dataset.labels.to_dense().sum(axis=0)
                for name, total in zip(dataset.label_set.names, totals.tolist(), strict=True):
                    if name in counts:
                        counts[name] += int(total)
        return counts

    def _metadata(self) -> dict[str, Any]:
        return {
            "training": {
                "steps": self.state.global_step,
                "losses": {name: loss.name for name, loss in self.losses.items()},
                "datasets": {name: {"kind": type(ds).__name__, "size": len(ds)} for name, ds in self.datasets.items()},
                "label_counts": self._label_counts(),
                "args": {k: v for k, v in self.args.to_dict().items() if k != "output_dir"},
                "eval_metric": self.state.metric_name,
                "best_metric": self.state.best_metric,
                "best_step": self.state.best_step,
            }
        }

    # ------------------------------------------------------------------ evaluation
    def _metric_name(self) -> str | None:
        if self.args.eval_metric:
            return self.args.eval_metric
        dataset = self.eval_dataset
        if dataset is None:
            return None
        if isinstance(dataset, LabeledDataset):
            return "macro_f1" if self.model.head is not None else "map_at_r"
        if isinstance(dataset, PairDataset):
            return "spearman"
        return "triplet_accuracy"

    def _greater_is_better(self) -> bool:
        if self.args.greater_is_better is not None:
            return self.args.greater_is_better
        name = self._metric_name() or ""
        return "loss" not in name

    def evaluate(self, dataset: Dataset | None = None) -> dict[str, Any]:
        """Metrics of the model on ``dataset`` (default: the eval dataset) with its thresholds and decision rule.

        See `labelspace.training.evaluation.evaluate_shipped`; nothing is tuned here.
        """
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("no dataset to evaluate: pass one or give the Trainer an eval_dataset")
        return evaluate_shipped(self.model, dataset, self.args, tune=False).metrics

    def evaluate_for_selection(self) -> Evaluation:
        """The evaluation that picks the best model: on the eval dataset, thresholds tuned when ``tune_thresholds``."""
        if self.eval_dataset is None:
            raise ValueError("no eval_dataset to evaluate on")
        return evaluate_shipped(self.model, self.eval_dataset, self.args)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write ``output_dir/checkpoints/checkpoint-<step>`` (main process only) and prune old ones."""
        if self.output_dir is None:
            raise ValueError("save_checkpoint needs TrainingArguments(output_dir=...)")
        path = None
        if distributed.is_main_process():
            assert self.optimizer is not None and self.scheduler is not None
            payload = {
                "trainer_state": self.state.to_dict(),
                "scheduler": json_ready(self.scheduler.state_dict()),
                "samplers": {name: sampler_state(sampler) for name, sampler in self.samplers.items()},
                "args": self.args.to_dict(),
                "world_size": distributed.world_size(),
                "fingerprint": self.run_fingerprint(),
            }
            checkpoints = self.output_dir / "checkpoints"
            path = write_checkpoint(
                checkpoints,
                self.state.global_step,
                write_model=self.model.write_into,
                optimizer=self.optimizer,
                state=payload,
            )
            prune_checkpoints(checkpoints, self.args.save_total_limit)
            self.fire("on_save", str(path))
        if distributed.is_distributed():
            torch.distributed.barrier()
        return path

    def run_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with the run that resumes it: labels, model shape, losses, training data."""
        return run_fingerprint(self.model, self.losses, self.datasets)

    def _resume(self, resume_from_checkpoint: str | os.PathLike[str] | bool) -> None:
        if resume_from_checkpoint is True:
            if self.output_dir is None:
                raise ValueError("resume_from_checkpoint=True needs TrainingArguments(output_dir=...)")
            folder = find_latest_checkpoint(self.output_dir / "checkpoints")
            if folder is None:
                return  # nothing saved yet: start from the beginning
        else:
            folder = Path(resume_from_checkpoint)
        payload, optimizer_state, rng_tensors = read_checkpoint_state(folder)
        saved_batch = payload.get("args", {}).get("batch_size")
        saved_world = payload.get("world_size", 1)
        if (saved_batch, saved_world) != (self.args.batch_size, distributed.world_size()):
            raise ValueError(
                f"{folder} was written by a run with batch_size {saved_batch} on {saved_world} process(es); "
                f"resume with the same (now: batch_size {self.args.batch_size} on {distributed.world_size()})"
            )
        check_same_run(folder, payload.get("fingerprint"), self.run_fingerprint())
        saved = LabelspaceModel.from_pretrained(folder)
        self.model.load_state_dict(saved.state_dict())
        self.model.to(self.device)
        assert self.optimizer is not None and self.scheduler is not None
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(payload["scheduler"])
        for name, sampler in self.samplers.items():
            if name not in payload["samplers"]:
                raise ValueError(f"{folder} has no sampler state for dataset {name!r}")
            if has_state(sampler):
                sampler.load_state_dict(payload["samplers"][name])
        restored = TrainerState.from_dict(payload["trainer_state"])
        restored.max_steps = self.state.max_steps
        self.state = restored
        stateless = [f"{name!r} ({type(s).__name__})" for name, s in self.samplers.items() if not has_state(s)]
        if stateless and restored.batches_in_epoch:
            warnings.warn(
                f"the sampler of train dataset {', '.join(stateless)} has no state_dict/load_state_dict: resuming "
                f"restarts its epoch and skips the batches already trained on, which gives the uninterrupted "
                "run's batches only if its order depends on nothing but the epoch",
                stacklevel=3,
            )
        restore_rng_state(rng_tensors, payload["rng"])


@contextlib.contextmanager
def stop_between_steps_on_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn a Ctrl-C during training into a KeyboardInterrupt between two steps; a second one raises at once.

    Python's default handler raises KeyboardInterrupt wherever the main thread happens to be, and
    when that is a ``__del__`` run by the garbage collector (a tokenizer's regex objects, say) Python
    prints "Exception ignored" and training goes on. This handler only records the first Ctrl-C;
    the loop raises after the step and its checkpoint are complete. Outside the main thread (where
    signals cannot be handled) nothing changes.

    Example:
        >>> with stop_between_steps_on_interrupt() as interrupted:
        ...     interrupted()
        False
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[bool] = []

    def record(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(True)
        print("labelspace: stopping after this step (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)
