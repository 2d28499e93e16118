"""`Trainer` and `TrainingArguments`: fine-tune a `LabelspaceModel` with metric, text and head losses.

One optimizer step takes ``gradient_accumulation_steps`` batches; each batch comes from one of
the training datasets (labeled, pairs or triplets) and goes through that dataset's loss.
AdamW with warmup then linear / cosine / constant decay, gradient clipping, evaluation every
``eval_steps`` on a chosen metric with early stopping and the best model kept, atomic
checkpoints that resume exactly, a progress bar with the loss and texts/s, optional TensorBoard,
callbacks, and data-parallel runs under ``torchrun``.

Run folder (``output_dir``)::

    model/              the final model (the best one when evaluating), a LabelspaceModel folder
    best-model/         the best model so far (while training with an eval dataset)
    checkpoints/        checkpoint-<step>/ folders (model, optimizer, scheduler, samplers, RNG)
    train_log.jsonl     one JSON object per log / evaluation
    metrics.json        the final evaluation metrics
    tensorboard/        event files when ``tensorboard=True``
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labelspace import parallel as distributed
from labelspace.data.batch import make_batch
from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset, dataset_fingerprint
from labelspace.evaluation.model_metrics import evaluate_model
from labelspace.losses.model_loss import ModelLoss, as_model_loss
from labelspace.models.model import LabelspaceModel
from labelspace.samplers import (
    LengthGroupedSampler,
    MPerLabelSampler,
    MultiLabelBalancedSampler,
    NoDuplicatesSampler,
    PKSampler,
)
from labelspace.training.callbacks import Callback, EarlyStoppingCallback, TrainerState
from labelspace.training.checkpoint import (
    find_latest_checkpoint,
    prune_checkpoints,
    read_checkpoint_state,
    restore_rng_state,
    write_checkpoint,
)

__all__ = ["SAMPLERS", "SCHEDULERS", "TrainOutput", "Trainer", "TrainingArguments"]

Dataset = LabeledDataset | PairDataset | TripletDataset
SAMPLERS: tuple[str, ...] = ("random", "no_duplicates", "m_per_label", "balanced", "length_grouped", "pk")
DEFAULT_PER_LABEL = 4  # K of sampler="pk" when per_label is not given
SCHEDULERS: tuple[str, ...] = ("linear", "cosine", "constant")
MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")
MULTI_DATASET_SAMPLING: tuple[str, ...] = ("proportional", "round_robin")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class TrainingArguments:
    """Everything that shapes a training run. Defaults are the ones we recommend for fine-tuning MiniLM.

    Args:
        output_dir: the run folder (model, checkpoints, logs); None keeps nothing on disk.
        num_epochs: passes over the training data (ignored when ``max_steps`` is set).
        max_steps: optimizer steps in all; overrides ``num_epochs``.
        batch_size: texts per batch per process (pairs / triplets: rows per batch).
        learning_rate: AdamW learning rate of the encoder.
        head_learning_rate: learning rate of the classification head (default: ``learning_rate``);
            a fresh head learns faster with a larger one.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: fraction of the steps with a linear warmup (``warmup_steps`` overrides it).
        scheduler: ``"linear"`` or ``"cosine"`` decay to 0 after warmup, or ``"constant"``.
        gradient_accumulation_steps: batches per optimizer step.
        max_grad_norm: clip the gradient norm to this (None: no clipping).
        seed: fixes data order, sampling, dropout and head initialisation.
        sampler: ``"random"``, ``"no_duplicates"`` (no text twice in a batch: for in-batch negatives),
            ``"m_per_label"`` (P labels x ``m_per_label`` items), ``"balanced"`` (rare labels drawn
            more often), ``"length_grouped"`` (similar lengths together: faster) or ``"pk"`` (`PKSampler`:
            P labels drawn inversely to their frequency x K items each, for batch-hard triplets).
            Or a sampler object: any iterable of lists of item indices with ``__len__`` (batches per
            epoch), e.g. a ``torch.utils.data.BatchSampler`` or a list of index lists; with several
            train datasets, a dict dataset name -> sampler object or name. A sampler object's
            batches are global batches (split between processes under ``torchrun``); its
            ``set_epoch(epoch)`` is called at the start of each epoch when it has one, and its
            ``state_dict()`` / ``load_state_dict()`` save and restore its position in checkpoints.
            One without them restarts its epoch on resume and skips the batches already trained on
            (exact when its order depends on nothing but the epoch; a warning says so).
            ``to_dict()`` records the object's class name.
        m_per_label: items per label for ``"m_per_label"``.
        labels_per_batch: P, labels per batch per process for ``"pk"``. When set, ``batch_size``
            becomes ``labels_per_batch * per_label`` (any other value is replaced); when None,
            P is ``batch_size // per_label`` (``batch_size`` must then be a multiple of ``per_label``).
        per_label: K, items per chosen label for ``"pk"`` (default 4); a label with fewer items
            brings all of them, so a batch may be shorter than P x K.
        multi_dataset_sampling: with several datasets, ``"proportional"`` (each dataset's batches
            once per epoch, interleaved at random) or ``"round_robin"`` (one batch of each in turn,
            until the smallest runs out).
        eval_steps: evaluate every this many steps (None: at the end of each epoch).
        eval_metric: the metric that picks the best model (default: ``macro_f1`` for a model with a
            head, ``map_at_r`` for labeled data without one, ``spearman`` for pairs,
            ``triplet_accuracy`` for triplets).
        greater_is_better: direction of ``eval_metric`` (default: True, False for names containing "loss").
        early_stopping_patience: stop after this many evaluations without improvement (None: never).
        load_best_model_at_end: end with the weights of the best evaluation.
        save_steps: write a checkpoint every this many steps (None: at the end of each epoch).
        save_total_limit: keep at most this many checkpoints (None: all).
        logging_steps: log the loss every this many steps.
        mixed_precision: ``"fp16"`` or ``"bf16"`` autocast on CUDA (``"no"`` on CPU).
        tensorboard: write TensorBoard event files to ``output_dir/tensorboard``.
        show_progress_bar: show a progress bar with the loss and texts/s.
        eval_batch_size: batch size for encoding during evaluation.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: CUDA when available).
    """

    output_dir: str | None = None
    num_epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    scheduler: str = "linear"
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    sampler: Any = "random"
    m_per_label: int = 4
    labels_per_batch: int | None = None
    per_label: int | None = None
    multi_dataset_sampling: str = "proportional"
    eval_steps: int | None = None
    eval_metric: str | None = None
    greater_is_better: bool | None = None
    early_stopping_patience: int | None = None
    load_best_model_at_end: bool = True
    save_steps: int | None = None
    save_total_limit: int | None = 2
    logging_steps: int = 10
    mixed_precision: str = "no"
    tensorboard: bool = False
    show_progress_bar: bool = True
    eval_batch_size: int = 64
    device: str | None = None

    def __post_init__(self) -> None:
        def positive_int(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be a positive integer, got {value!r}",
            )

        for name in ("num_epochs", "batch_size", "gradient_accumulation_steps", "m_per_label", "logging_steps"):
            positive_int(name)
        positive_int("eval_batch_size")
        for name in ("max_steps", "eval_steps", "save_steps", "save_total_limit", "early_stopping_patience"):
            positive_int(name, allow_none=True)
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate!r}")
        _check(
            self.head_learning_rate is None or self.head_learning_rate > 0,
            f"head_learning_rate must be > 0, got {self.head_learning_rate!r}",
        )
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        _check(
            self.warmup_steps is None or (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0),
            f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}",
        )
        _check(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}",
        )
        _check(
            self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}"
        )
        _check_sampler_choice(self.sampler)
        positive_int("labels_per_batch", allow_none=True)
        positive_int("per_label", allow_none=True)
        if "pk" in _sampler_names(self.sampler):
            per_label = self.per_label or DEFAULT_PER_LABEL
            if self.labels_per_batch is not None:
                self.batch_size = self.labels_per_batch * per_label
            _check(
                self.batch_size % per_label == 0,
                f"with sampler='pk', batch_size ({self.batch_size}) must be a multiple of per_label ({per_label}), "
                "or set labels_per_batch",
            )
        else:
            for name in ("labels_per_batch", "per_label"):
                _check(
                    getattr(self, name) is None,
                    f"{name} is set but no dataset uses sampler='pk' (sampler is {_sampler_record(self.sampler)!r})",
                )
        _check(
            self.mixed_precision in MIXED_PRECISION,
            f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}",
        )
        _check(
            self.multi_dataset_sampling in MULTI_DATASET_SAMPLING,
            f"multi_dataset_sampling must be one of {', '.join(MULTI_DATASET_SAMPLING)}, "
            f"got {self.multi_dataset_sampling!r}",
        )
        _check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")

    def pk_shape(self) -> tuple[int, int]:
        """(P, K) of ``sampler="pk"`` per process: labels per batch and items per label."""
        per_label = self.per_label or DEFAULT_PER_LABEL
        return self.batch_size // per_label, per_label

    def to_dict(self) -> dict[str, Any]:
        """The arguments as JSON-safe values; a sampler object is recorded by its class name."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}  # asdict would deep-copy a sampler
        values["sampler"] = _sampler_record(self.sampler)
        return values


def _sampler_names(choice: Any) -> list[str]:
    """The sampler names used by a ``TrainingArguments.sampler`` value (objects are left out)."""
    values = list(choice.values()) if isinstance(choice, Mapping) else [choice]
    return [value for value in values if isinstance(value, str)]


def _sampler_record(choice: Any) -> Any:
    """JSON-safe record of a ``TrainingArguments.sampler`` value: names as they are, objects by class name."""
    if isinstance(choice, Mapping):
        return {str(name): _sampler_record(value) for name, value in choice.items()}
    return choice if isinstance(choice, str) else type(choice).__name__


def _check_sampler_choice(choice: Any, where: str = "sampler") -> None:
    if isinstance(choice, str):
        _check(
            choice in SAMPLERS,
            f"{where} must be one of {', '.join(SAMPLERS)} or a sampler object, got {choice!r}",
        )
        return
    if isinstance(choice, Mapping) and where == "sampler":
        _check(len(choice) > 0, "sampler is an empty dict: give a sampler per train dataset name")
        for name, value in choice.items():
            _check_sampler_choice(value, f"sampler[{name!r}]")
        return
    _check(
        not isinstance(choice, (Mapping, bytes)) and hasattr(choice, "__iter__") and hasattr(choice, "__len__"),
        f"{where} must be one of {', '.join(SAMPLERS)} or a sampler object (an iterable of lists of item "
        f"indices with __len__, e.g. a torch BatchSampler), got a {type(choice).__name__}",
    )


@dataclass
class TrainOutput:
    """What `Trainer.train` returns."""

    global_step: int
    training_loss: float
    metrics: dict[str, Any] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    model_path: str | None = None


def _default_loss(dataset: Dataset, model: LabelspaceModel) -> nn.Module:
    from labelspace.losses import BCEHeadLoss, CoSENTLoss, MultipleNegativesRankingLoss, MultiSimilarityLoss

    if isinstance(dataset, LabeledDataset):
        return BCEHeadLoss() if model.head is not None else MultiSimilarityLoss()
    if isinstance(dataset, PairDataset) and not np.all(dataset.scores == 1.0):
        return CoSENTLoss()
    return MultipleNegativesRankingLoss()


def _lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


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
        callbacks: extra `Callback` objects.

    Example:
        >>> import tempfile
        >>> from labelspace import LabelspaceModel, Trainer, TrainingArguments
        >>> from labelspace.data import LabeledDataset
        >>> from labelspace.losses import BCEHeadLoss, CombinedLoss, MultiSimilarityLoss
        >>> from labelspace.models.testing import tiny_model_folder
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
        self.callbacks: list[Callback] = list(callbacks or [])
        if self.args.early_stopping_patience is not None:
            if eval_dataset is None:
                raise ValueError("early_stopping_patience needs an eval_dataset")
            self.callbacks.append(EarlyStoppingCallback(self.args.early_stopping_patience))
        self.device = torch.device(self.args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.args.mixed_precision != "no" and self.device.type != "cuda":
            raise ValueError(f"mixed_precision={self.args.mixed_precision!r} needs a CUDA device, got {self.device}")
        self.state = TrainerState()
        self.samplers: dict[str, Any] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self._tensorboard: Any = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_metrics: dict[str, Any] = {}

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
            item = chosen[name] if chosen[name] is not None else _default_loss(dataset, self.model)
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

    def _make_sampler(self, name: str, dataset: Dataset, global_batch: int) -> Any:
        args = self.args
        seed = args.seed
        choice = self._sampler_choice(name)
        if not isinstance(choice, str):
            if len(choice) < 1:
                raise ValueError(f"the sampler of train dataset {name!r} ({type(choice).__name__}) has no batches")
            return choice
        if isinstance(dataset, LabeledDataset):
            texts: list[str] = dataset.texts
        elif isinstance(dataset, PairDataset):
            texts = dataset.text1
        else:
            texts = dataset.anchors
        if choice in ("m_per_label", "balanced", "pk"):
            labels = dataset.labels if isinstance(dataset, (LabeledDataset, PairDataset)) else None
            if labels is None:
                raise ValueError(
                    f"sampler={choice!r} needs labeled data (or pairs that carry labels); "
                    f"train dataset {name!r} is a {type(dataset).__name__} without labels"
                )
            if choice == "m_per_label":
                return MPerLabelSampler(labels, m=args.m_per_label, batch_size=global_batch, seed=seed)
            if choice == "pk":  # P labels per process: P * world per global batch
                per_label = args.pk_shape()[1]
                return PKSampler(labels, labels_per_batch=global_batch // per_label, per_label=per_label, seed=seed)
            return MultiLabelBalancedSampler(labels, batch_size=global_batch, seed=seed)
        if choice == "no_duplicates":
            return NoDuplicatesSampler(
                texts, batch_size=global_batch, seed=seed, drop_last=distributed.is_distributed()
            )
        factor = 50 if choice == "length_grouped" else 1
        return LengthGroupedSampler(
            texts, batch_size=global_batch, seed=seed, mega_batch_factor=factor, drop_last=distributed.is_distributed()
        )

    def _next_batch(self, iterators: dict[str, Iterator[Any]], name: str) -> list[int]:
        """The next batch of dataset ``name``'s sampler, checked: a 1-D list of in-range item indices."""
        sampler = self.samplers[name]
        source = f"the sampler of train dataset {name!r} ({type(sampler).__name__})"
        try:
            indices = next(iterators[name])
        except StopIteration:
            raise ValueError(f"{source} ran out of batches before the {len(sampler)} its len() promised") from None
        array = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices)
        if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"{source} gave a batch of shape {array.shape} and dtype {array.dtype}: "
                "expected a non-empty list of integer item indices"
            )
        size = len(self.datasets[name])
        outside = array[(array < 0) | (array >= size)]
        if outside.size:
            raise ValueError(
                f"{source} gave item index {int(outside[0])}, outside the dataset's {size} items (0 to {size - 1})"
            )
        return array.tolist()

    def _schedule(self, epoch: int) -> list[str]:
        """The dataset name of each batch of ``epoch`` (deterministic from the seed and the epoch)."""
        names = list(self.samplers)
        if len(names) == 1:
            return names * len(self.samplers[names[0]])
        if self.args.multi_dataset_sampling == "round_robin":
            rounds = min(len(self.samplers[name]) for name in names)
            return names * rounds
        order = [name for name in names for _ in range(len(self.samplers[name]))]
        rng = np.random.default_rng([self.args.seed, epoch, 0x5C4E])
        return [order[i] for i in rng.permutation(len(order)).tolist()]

    def _steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self._schedule(0)) / self.args.gradient_accumulation_steps))

    def _build_optimizer(self, total_steps: int) -> None:
        args = self.args
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        decay_params, plain_params = [], []
        for name, parameter in self.model.encoder.named_parameters():
            if parameter.requires_grad:
                (plain_params if any(key in name for key in no_decay) else decay_params).append(parameter)
        groups: list[dict[str, Any]] = [
            {"params": decay_params, "weight_decay": args.weight_decay, "lr": args.learning_rate},
            {"params": plain_params, "weight_decay": 0.0, "lr": args.learning_rate},
        ]
        if self.model.head is not None:
            head_lr = args.head_learning_rate or args.learning_rate
            groups.append({"params": list(self.model.head.parameters()), "weight_decay": 0.0, "lr": head_lr})
        loss_params = [p for loss in self.losses.values() for p in loss.parameters() if p.requires_grad]
        if loss_params:
            groups.append({"params": loss_params, "weight_decay": 0.0, "lr": args.learning_rate})
        groups = [group for group in groups if group["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
        warmup = args.warmup_steps if args.warmup_steps is not None else int(args.warmup_ratio * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(args.scheduler, warmup, total_steps)
        )

    def _trainable_parameters(self) -> list[nn.Parameter]:
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        parameters += [p for loss in self.losses.values() for p in loss.parameters() if p.requires_grad]
        return parameters

    # ------------------------------------------------------------------ training
    def train(self, resume_from_checkpoint: str | os.PathLike[str] | bool | None = None) -> TrainOutput:
        """Run training; ``resume_from_checkpoint=True`` continues from the newest checkpoint in ``output_dir``."""
        args = self.args
        distributed.init_from_environment()
        world, rank = distributed.world_size(), distributed.rank()
        main = distributed.is_main_process()
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        self.model.to(self.device)
        distributed.broadcast_parameters(self.model)
        global_batch = args.batch_size * world
        self.samplers = {name: self._make_sampler(name, ds, global_batch) for name, ds in self.datasets.items()}
        steps_per_epoch = self._steps_per_epoch()
        total_steps = args.max_steps or steps_per_epoch * args.num_epochs
        self._build_optimizer(total_steps)
        assert self.optimizer is not None and self.scheduler is not None
        self.state = TrainerState(
            max_steps=total_steps,
            metric_name=self._metric_name(),
            greater_is_better=self._greater_is_better(),
        )
        output_dir = Path(args.output_dir) if args.output_dir else None
        if resume_from_checkpoint:
            self._resume(resume_from_checkpoint, output_dir)
        scaler = torch.amp.GradScaler("cuda") if args.mixed_precision == "fp16" else None
        autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision)
        if main and output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            if args.tensorboard:
                self._open_tensorboard(output_dir)
        progress = None
        if main and args.show_progress_bar:
            from tqdm.auto import tqdm

            progress = tqdm(total=total_steps, initial=self.state.global_step, desc="Training", unit="step")
        for callback in self.callbacks:
            callback.on_train_begin(self, self.state)

        self.model.train()
        parameters = self._trainable_parameters()
        running_loss, running_count, texts_since_log = 0.0, 0, 0
        loss_sum, loss_steps = 0.0, 0
        component_sums: dict[str, float] = {}
        log_started = time.perf_counter()
        state = self.state
        last_metrics: dict[str, Any] = {}
        while state.global_step < total_steps and not state.should_stop:
            schedule = self._schedule(state.epoch)
            iterators = {}
            for name, sampler in self.samplers.items():
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(state.epoch)
                iterators[name] = iter(sampler)
                if not _has_state(sampler):  # restarted its epoch: skip what a resumed run already trained on
                    for _ in range(schedule[: state.batches_in_epoch].count(name)):
                        self._next_batch(iterators, name)
            while state.batches_in_epoch < len(schedule) and state.global_step < total_steps:
                group = schedule[state.batches_in_epoch : state.batches_in_epoch + args.gradient_accumulation_steps]
                step_loss = 0.0
                step_texts = 0
                for name in group:
                    indices = self._next_batch(iterators, name)
                    if world > 1:
                        share = len(indices) // world
                        indices = indices[rank * share : (rank + 1) * share]
                    batch = make_batch(self.datasets[name], indices).to(self.device)
                    loss_fn = self.losses[name]
                    with torch.autocast(self.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        loss = loss_fn(self.model, batch) / len(group)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                    step_loss += float(loss.detach())
                    step_texts += batch.num_texts() * world
                    for key, value in getattr(loss_fn, "last_values", {}).items():
                        component_sums[key] = component_sums.get(key, 0.0) + value / len(group)
                state.batches_in_epoch += len(group)
                distributed.average_gradients(parameters)
                if scaler is not None:
                    scaler.unscale_(self.optimizer)
                if args.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
                if scaler is not None:
                    scaler.step(self.optimizer)
                    scaler.update()
                else:
                    self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.texts_seen += step_texts
                if world > 1:  # log the global loss, not rank 0's share
                    reduced = torch.tensor([step_loss], device=self.device)
                    torch.distributed.all_reduce(reduced)
                    step_loss = float(reduced.item()) / world
                running_loss += step_loss
                texts_since_log += step_texts
                running_count += 1
                loss_sum += step_loss
                loss_steps += 1
                for callback in self.callbacks:
                    callback.on_step_end(self, state)
                if progress is not None:
                    progress.update(1)
                if state.global_step % args.logging_steps == 0 or state.global_step == total_steps:
                    elapsed = max(time.perf_counter() - log_started, 1e-9)
                    logs = {
                        "step": state.global_step,
                        "epoch": state.epoch + state.batches_in_epoch / max(1, len(schedule)),
                        "loss": running_loss / max(1, running_count),
                        "learning_rate": self.scheduler.get_last_lr()[0],
                        "texts_per_second": texts_since_log / elapsed,
                    }
                    for key, value in component_sums.items():
                        logs[f"loss_{key}"] = value / max(1, running_count)
                    self._log(logs, output_dir, progress)
                    running_loss, running_count, texts_since_log = 0.0, 0, 0
                    component_sums = {}
                    log_started = time.perf_counter()
                epoch_done = state.batches_in_epoch >= len(schedule)
                evaluate_now = self.eval_dataset is not None and (
                    (args.eval_steps is not None and state.global_step % args.eval_steps == 0)
                    or (args.eval_steps is None and epoch_done)
                    or state.global_step == total_steps
                )
                if evaluate_now:
                    last_metrics = self._evaluate_and_track(output_dir)
                    log_started = time.perf_counter()
                if epoch_done:
                    state.epoch += 1
                    state.batches_in_epoch = 0
                save_now = output_dir is not None and (
                    (args.save_steps is not None and state.global_step % args.save_steps == 0)
                    or (args.save_steps is None and epoch_done)
                )
                if save_now:
                    self.save_checkpoint()
                    log_started = time.perf_counter()
                state.should_stop = self._agree_on_stop(state.should_stop)
                if state.should_stop or epoch_done:
                    break
        if progress is not None:
            progress.close()
        if self.eval_dataset is not None and args.load_best_model_at_end:
            self._restore_best(output_dir)
        model_path = None
        if main and output_dir is not None:
            self.model.metadata.update(self._metadata(last_metrics))
            model_path = str(self.model.save(output_dir / "model", overwrite=True))
            if last_metrics:
                (output_dir / "metrics.json").write_text(json.dumps(last_metrics, indent=2) + "\n", encoding="utf-8")
        for callback in self.callbacks:
            callback.on_train_end(self, state)
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        best = self._best_metrics
        return TrainOutput(
            global_step=state.global_step,
            training_loss=loss_sum / max(1, loss_steps),
            metrics=best or last_metrics,
            best_metric=state.best_metric,
            best_step=state.best_step,
            model_path=model_path,
        )

    def _agree_on_stop(self, should_stop: bool) -> bool:
        if not distributed.is_distributed():
            return should_stop
        flag = torch.tensor([1.0 if should_stop else 0.0], device=self.device)  # NCCL needs a CUDA tensor
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def _metadata(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "training": {
                "steps": self.state.global_step,
                "losses": {name: loss.name for name, loss in self.losses.items()},
                "datasets": {name: {"kind": type(ds).__name__, "size": len(ds)} for name, ds in self.datasets.items()},
                "args": {k: v for k, v in self.args.to_dict().items() if k != "output_dir"},
                "eval_metric": self.state.metric_name,
                "best_metric": self.state.best_metric,
                "best_step": self.state.best_step,
            }
        }

    # ------------------------------------------------------------------ logging
    def _log(self, logs: dict[str, Any], output_dir: Path | None, progress: Any) -> None:
        if not distributed.is_main_process():
            return
        self.state.log_history.append(logs)
        if progress is not None:
            progress.set_postfix(loss=f"{logs['loss']:.4f}", texts_per_s=f"{logs['texts_per_second']:.1f}")
        if output_dir is not None:
            with (output_dir / "train_log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(logs) + "\n")
        if self._tensorboard is not None:
            for key, value in logs.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(f"train/{key}", value, logs["step"])
        for callback in self.callbacks:
            callback.on_log(self, self.state, logs)

    def _open_tensorboard(self, output_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise RuntimeError("tensorboard=True needs the tensorboard package: pip install tensorboard") from error
        self._tensorboard = SummaryWriter(log_dir=str(output_dir / "tensorboard"))

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
        """Metrics of the model on ``dataset`` (default: the eval dataset); see `evaluate_model`."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("no dataset to evaluate: pass one or give the Trainer an eval_dataset")
        return evaluate_model(self.model, dataset, batch_size=self.args.eval_batch_size)

    def _evaluate_and_track(self, output_dir: Path | None) -> dict[str, Any]:
        state = self.state
        if not distributed.is_main_process():
            return {}
        metrics = self.evaluate()
        name = state.metric_name
        if name not in metrics or metrics[name] is None:
            raise ValueError(
                f"eval_metric {name!r} is not among the evaluation metrics: "
                f"{', '.join(k for k, v in metrics.items() if isinstance(v, float))}"
            )
        improved = state.record_metric(float(metrics[name]))
        if improved:
            self._best_metrics = metrics
            self._best_state = {key: value.detach().cpu().clone() for key, value in self.model.state_dict().items()}
            if output_dir is not None:
                self.model.save(output_dir / "best-model", overwrite=True)
        logs = {"step": state.global_step, "epoch": state.epoch, "eval": _scalars(metrics), "best": improved}
        state.log_history.append(logs)
        if output_dir is not None:
            with (output_dir / "train_log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(logs) + "\n")
        if self._tensorboard is not None:
            for key, value in _scalars(metrics).items():
                self._tensorboard.add_scalar(f"eval/{key}", value, state.global_step)
        for callback in self.callbacks:
            callback.on_evaluate(self, state, metrics)
        self.model.train()
        return metrics

    def _restore_best(self, output_dir: Path | None) -> None:
        best = self._best_state
        if best is None and output_dir is not None and (output_dir / "best-model").is_dir():
            best = LabelspaceModel.from_pretrained(output_dir / "best-model").state_dict()
        if best is not None:
            self.model.load_state_dict(best)
            self.model.to(self.device)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write ``output_dir/checkpoints/checkpoint-<step>`` (main process only) and prune old ones."""
        output_dir = Path(self.args.output_dir) if self.args.output_dir else None
        if output_dir is None:
            raise ValueError("save_checkpoint needs TrainingArguments(output_dir=...)")
        path = None
        if distributed.is_main_process():
            assert self.optimizer is not None and self.scheduler is not None
            payload = {
                "trainer_state": self.state.to_dict(),
                "scheduler": _json_ready(self.scheduler.state_dict()),
                "samplers": {name: _sampler_state(sampler) for name, sampler in self.samplers.items()},
                "args": self.args.to_dict(),
                "world_size": distributed.world_size(),
                "fingerprint": self.run_fingerprint(),
            }
            checkpoints = output_dir / "checkpoints"
            path = write_checkpoint(
                checkpoints,
                self.state.global_step,
                write_model=self.model.write_into,
                optimizer=self.optimizer,
                state=payload,
            )
            prune_checkpoints(checkpoints, self.args.save_total_limit)
            for callback in self.callbacks:
                callback.on_save(self, self.state, str(path))
        if distributed.is_distributed():
            torch.distributed.barrier()
        return path

    def run_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with the run that resumes it: labels, model shape, losses, training data."""
        encoder = self.model.encoder
        config = getattr(encoder.model, "config", None)
        shape = {
            key: getattr(config, key, None) for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
        }
        head = self.model.head
        return {
            "labels": self.model.label_set.names if self.model.label_set is not None else None,
            "model": {
                **shape,
                "pooling": encoder.pooling,
                "normalize": encoder.normalize,
                "head": None if head is None else {"kind": head.kind, "num_labels": head.num_labels},
            },
            "losses": {name: _describe_loss(loss) for name, loss in self.losses.items()},
            "data": {name: dataset_fingerprint(dataset) for name, dataset in self.datasets.items()},
        }

    def _check_same_run(self, folder: Path, saved: dict[str, Any] | None) -> None:
        """Refuse to resume ``folder`` with other labels, another model, other losses or other data."""
        if saved is None:  # a checkpoint from before fingerprints were recorded
            return
        current = _json_ready(self.run_fingerprint())
        what = {"labels": "labels", "model": "model", "losses": "losses", "data": "training data"}
        for key, name in what.items():
            before, now = saved.get(key, current[key]), current[key]
            if before == now:
                continue
            if isinstance(before, dict) and isinstance(now, dict):
                changed = sorted(part for part in set(before) | set(now) if before.get(part) != now.get(part))
                detail = "; ".join(
                    f"{part}: {_short(before.get(part))} then, {_short(now.get(part))} now" for part in changed
                )
            else:
                detail = f"{_short(before)} then, {_short(now)} now"
            raise ValueError(
                f"cannot resume {folder}: it was trained with other {name} ({detail}); resume with the same "
                "settings and data, or start a new run (--overwrite)"
            )

    def _resume(self, resume_from_checkpoint: str | os.PathLike[str] | bool, output_dir: Path | None) -> None:
        if resume_from_checkpoint is True:
            if output_dir is None:
                raise ValueError("resume_from_checkpoint=True needs TrainingArguments(output_dir=...)")
            folder = find_latest_checkpoint(output_dir / "checkpoints")
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
        self._check_same_run(folder, payload.get("fingerprint"))
        saved = LabelspaceModel.from_pretrained(folder)
        self.model.load_state_dict(saved.state_dict())
        self.model.to(self.device)
        assert self.optimizer is not None and self.scheduler is not None
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(payload["scheduler"])
        for name, sampler in self.samplers.items():
            if name not in payload["samplers"]:
                raise ValueError(f"{folder} has no sampler state for dataset {name!r}")
            if _has_state(sampler):
                sampler.load_state_dict(payload["samplers"][name])
        restored = TrainerState.from_dict(payload["trainer_state"])
        restored.max_steps = self.state.max_steps
        self.state = restored
        stateless = [f"{name!r} ({type(s).__name__})" for name, s in self.samplers.items() if not _has_state(s)]
        if stateless and restored.batches_in_epoch:
            warnings.warn(
                f"the sampler of train dataset {', '.join(stateless)} has no state_dict/load_state_dict: resuming "
                f"restarts its epoch and skips the batches already trained on, which gives the uninterrupted "
                "run's batches only if its order depends on nothing but the epoch",
                stacklevel=3,
            )
        restore_rng_state(rng_tensors, payload["rng"])
        best_folder = output_dir / "best-model" if output_dir is not None else None
        if best_folder is not None and best_folder.is_dir():
            self._best_state = LabelspaceModel.from_pretrained(best_folder).state_dict()


def _has_state(sampler: Any) -> bool:
    """Whether a sampler saves and restores its position (``state_dict`` and ``load_state_dict``)."""
    return callable(getattr(sampler, "state_dict", None)) and callable(getattr(sampler, "load_state_dict", None))


def _sampler_state(sampler: Any) -> dict[str, Any]:
    """What a checkpoint keeps of a sampler: its state_dict, or only its class name when it has none."""
    if _has_state(sampler):
        return _json_ready(sampler.state_dict())
    return {"sampler": type(sampler).__name__, "stateless": True}


def _short(value: Any) -> str:
    """A value for an error message: a data fingerprint as its row count and hash prefix."""
    if isinstance(value, dict) and "rows" in value and "hash" in value:
        return f"{value['rows']} rows, hash {str(value['hash'])[:8]}"
    return str(value)


def _describe_loss(loss: ModelLoss) -> Any:
    """A short JSON description of a model-level loss: its name, or its parts with their weights."""
    parts = getattr(loss, "losses", None)
    weights = getattr(loss, "weights", None)
    if parts is not None and weights is not None:
        return [[_describe_loss(part), weight] for part, weight in zip(parts, weights, strict=True)]
    return loss.name


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value) for key, value in metrics.items() if isinstance(value, (int, float)) and value is not None
    }
