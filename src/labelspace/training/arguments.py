"""`TrainingArguments`: everything that shapes a training run, and the one place its defaults live.

The recommended recipe of ``labelspace train`` (`labelspace.recipes.RECOMMENDED`) takes its
training values from these defaults, so the library and the command line agree.

Example:
    >>> args = TrainingArguments(max_steps=10, batch_size=16)
    >>> args.num_epochs, args.learning_rate, args.head_lr()
    (3, 0.0001, 0.02)
    >>> TrainingArguments(scheduler="step")
    Traceback (most recent call last):
    ...
    ValueError: scheduler must be one of linear, cosine, constant, got 'step'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from labelspace.evaluation.thresholds import DECISION_RULES, OBJECTIVES
from labelspace.models.scoring import SCORING_MODES
from labelspace.samplers.names import MULTI_DATASET_SAMPLING, check_sampler_choice

__all__ = [
    "DEFAULT_PER_LABEL",
    "HEAD_INITS",
    "HEAD_LEARNING_RATE_FACTOR",
    "MIXED_PRECISION",
    "PROBE_C",
    "PROBE_MAX_ITER",
    "SCHEDULERS",
    "SCORING_CHOICES",
    "TrainingArguments",
    "default_values",
    "fit_to_data_size",
    "head_learning_rate_for",
]

DEFAULT_PER_LABEL = 4  # K of sampler="pk" when per_label is not given
#: The head's learning rate is this many times the encoder's unless ``head_learning_rate`` is set.
HEAD_LEARNING_RATE_FACTOR = 200
SCHEDULERS: tuple[str, ...] = ("linear", "cosine", "constant")
MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")
#: How a fresh run's classification head starts: the linear probe on frozen embeddings, or at random.
HEAD_INITS: tuple[str, ...] = ("probe", "random")
#: How the model that ships scores labels (`TrainingArguments.scoring`): chosen on dev, or one of the modes.
SCORING_CHOICES: tuple[str, ...] = ("auto", *SCORING_MODES)
#: ``max_iter`` of the linear probe's ``LogisticRegression`` (its ``C`` is ``TrainingArguments.probe_c``).
PROBE_MAX_ITER = 1000
#: The linear probe's default inverse regularisation strength, scikit-learn's ``C``.
PROBE_C = 10.0


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
        head_learning_rate: learning rate of the classification head (default: ``HEAD_LEARNING_RATE_FACTOR``
            (200) x ``learning_rate``, 2e-2 with the default encoder rate): a fresh linear head on
            L2-normalised embeddings needs large weights, so it learns much faster than the encoder.
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
        head_init: how the classification head of a fresh run starts (not on resume): ``"probe"`` (fitted
            by logistic regression on the frozen embeddings of the labeled training data,
            `labelspace.training.probe`) or ``"random"`` (the head's own initialisation).
        probe_c: ``C`` of the linear probe's ``LogisticRegression(C=probe_c, max_iter=PROBE_MAX_ITER)``.
        baseline_candidate: with a head, labeled train and eval data, also evaluate the frozen baseline
            (the untrained encoder with the linear-probe head, thresholds tuned like the fine-tuned
            model's) on the eval set at the start, and ship it instead of the fine-tuned model when it
            scores strictly better on ``eval_metric``; ``metrics.json`` says which shipped and why.
            Costs one CPU copy of the starting weights while training. Off by default here (a library
            user's model is not silently swapped for its starting weights); `labelspace train` turns it on.
        scoring: how the model that ships scores labels (`labelspace.training.scoring`): ``"auto"`` (default)
            builds a kNN index of the labeled training data and picks ``head``, ``knn`` or ``hybrid`` (head
            weight tuned) by the dev ``eval_metric`` (macro_f1 unless micro_f1), after the best weights are
            back and before the final threshold tuning; ``auto`` means ``head`` without labeled train and
            eval data. ``"head"`` builds no index; ``"knn"`` and ``"hybrid"`` are used as asked (``hybrid``
            needs an eval set). With ``baseline_candidate``, the fine-tuned model is compared in its chosen
            mode; the baseline (head only) competes only with ``auto`` or ``head``.
        eval_steps: evaluate every this many steps (None: at the end of each epoch).
        eval_metric: the metric that picks the best model (default: ``macro_f1`` for a model with a
            head, ``map_at_r`` for labeled data without one, ``spearman`` for pairs,
            ``triplet_accuracy`` for triplets). With a head it is measured on the decisions the model
            ships: its thresholds and decision rule, tuned first when ``tune_thresholds`` is on.
        greater_is_better: direction of ``eval_metric`` (default: True, False for names containing "loss").
        early_stopping_patience: stop after this many evaluations without improvement (None: never).
        load_best_model_at_end: end with the weights of the best evaluation.
        tune_thresholds: at every evaluation on labeled data, tune one threshold per label of a
            multi-label head on the eval set (`labelspace.evaluation.tune_thresholds`, F1, labels with
            fewer than ``min_positives`` positives get one global micro-F1 threshold) and apply
            ``decision_rule``; the best model is picked on those decisions and is saved with them.
            Off by default in the library (the model keeps its thresholds); ``labelspace train``
            turns it on.
        decision_rule: the rule a model with tuned thresholds ships with: ``"threshold"``,
            ``"at_least_one"`` (a text with no label gets its most probable one) or ``"top_k"``.
        min_positives: labels with fewer eval positives than this get the global threshold.
        threshold_objective: what the thresholds are tuned for (``macro_f1``: each label on its own;
            ``micro_f1``, ``samples_f1``, ``samples_jaccard``: jointly).
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
    num_epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-4
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
    head_init: str = "probe"
    probe_c: float = PROBE_C
    baseline_candidate: bool = False
    scoring: str = "auto"
    eval_steps: int | None = None
    eval_metric: str | None = None
    greater_is_better: bool | None = None
    early_stopping_patience: int | None = None
    load_best_model_at_end: bool = True
    tune_thresholds: bool = False
    decision_rule: str = "at_least_one"
    min_positives: int = 5
    threshold_objective: str = "macro_f1"
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
        positive_int("min_positives")
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
        check_sampler_choice(self.sampler)
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
                    f"{name} is set but no dataset uses sampler='pk' (sampler is {sampler_record(self.sampler)!r})",
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
        _check(
            self.decision_rule in DECISION_RULES,
            f"decision_rule must be one of {', '.join(DECISION_RULES)}, got {self.decision_rule!r}",
        )
        _check(
            self.threshold_objective in OBJECTIVES,
            f"threshold_objective must be one of {', '.join(OBJECTIVES)}, got {self.threshold_objective!r}",
        )
        _check(
            self.head_init in HEAD_INITS, f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}"
        )
        _check(
            isinstance(self.probe_c, (int, float)) and not isinstance(self.probe_c, bool) and self.probe_c > 0,
            f"probe_c must be a number > 0, got {self.probe_c!r}",
        )
        _check(
            self.scoring in SCORING_CHOICES,
            f"scoring must be one of {', '.join(SCORING_CHOICES)}, got {self.scoring!r}",
        )
        _check(
            isinstance(self.baseline_candidate, bool),
            f"baseline_candidate must be true or false, got {self.baseline_candidate!r}",
        )
        _check(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")

    def head_lr(self) -> float:
        """The head's learning rate: ``head_learning_rate``, or ``HEAD_LEARNING_RATE_FACTOR * learning_rate``."""
        return head_learning_rate_for(self.learning_rate, self.head_learning_rate)

    def pk_shape(self) -> tuple[int, int]:
        """(P, K) of ``sampler="pk"`` per process: labels per batch and items per label."""
        per_label = self.per_label or DEFAULT_PER_LABEL
        return self.batch_size // per_label, per_label

    def to_dict(self) -> dict[str, Any]:
        """The arguments as JSON-safe values; a sampler object is recorded by its class name."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}  # asdict would deep-copy a sampler
        values["sampler"] = sampler_record(self.sampler)
        return values


def _sampler_names(choice: Any) -> list[str]:
    """The sampler names used by a ``TrainingArguments.sampler`` value (objects are left out)."""
    values = list(choice.values()) if isinstance(choice, Mapping) else [choice]
    return [value for value in values if isinstance(value, str)]


def sampler_record(choice: Any) -> Any:
    """JSON-safe record of a ``TrainingArguments.sampler`` value: names as they are, objects by class name."""
    if isinstance(choice, Mapping):
        return {str(name): sampler_record(value) for name, value in choice.items()}
    return choice if isinstance(choice, str) else type(choice).__name__


def head_learning_rate_for(learning_rate: float, head_learning_rate: float | None = None) -> float:
    """``head_learning_rate`` when given, else ``HEAD_LEARNING_RATE_FACTOR * learning_rate``."""
    return head_learning_rate if head_learning_rate is not None else HEAD_LEARNING_RATE_FACTOR * learning_rate


def default_values() -> dict[str, Any]:
    """Every `TrainingArguments` field with its default, read without building (and validating) an instance.

    Example:
        >>> defaults = default_values()
        >>> defaults["num_epochs"], defaults["learning_rate"], defaults["sampler"]
        (3, 0.0001, 'random')
    """
    return {item.name: item.default for item in fields(TrainingArguments) if item.default is not MISSING}


#: `fit_to_data_size`: a small training set gets enough epochs for at least this many optimizer steps...
FITTED_MIN_STEPS = 150
#: ...but never more than this many epochs.
FITTED_MAX_EPOCHS = 10
#: Training texts per label from which the encoder gets the full default learning rate (fewer: scaled down).
FITTED_FULL_RATE_TEXTS_PER_LABEL = 500
#: Evaluations without improvement on the dev objective before a fitted run stops.
FITTED_EARLY_STOPPING_PATIENCE = 2


def fit_to_data_size(
    num_texts: int, num_labels: int, *, batch_size: int | None = None, has_dev: bool = True
) -> dict[str, Any]:
    """Epochs, learning rates, warmup and early stopping scaled to the training set: the rule ``labelspace train``
    applies to each of these settings the user does not give (flags and config values always win).

    The defaults (3 epochs, encoder lr 1e-4) suit tens of thousands of texts; on a few hundred they
    give a fresh head a few dozen steps to converge while the encoder moves at full speed on little
    evidence per label. So, with ``steps = ceil(num_texts / batch_size)`` per epoch:

    - ``num_epochs``: the default, raised to ``ceil(FITTED_MIN_STEPS / steps)`` (at most
      ``FITTED_MAX_EPOCHS``) when the default would give fewer than ``FITTED_MIN_STEPS`` (150) steps;
    - ``learning_rate`` (encoder): the default times ``min(1, sqrt(num_texts / num_labels /
      FITTED_FULL_RATE_TEXTS_PER_LABEL))``, two significant digits: fewer texts per label, smaller
      encoder updates (the total encoder movement, rate x steps, stays near the default's);
    - ``head_learning_rate``: the default's (``HEAD_LEARNING_RATE_FACTOR`` x the default encoder rate),
      not scaled: the head learns from scratch whatever the data size;
    - ``warmup_ratio``: the default 10 % of the (fitted) steps, so warmup grows with the epochs;
    - ``early_stopping_patience``: ``FITTED_EARLY_STOPPING_PATIENCE`` evaluations (one per epoch) on the
      dev objective when there is a dev set (None without one); the best evaluation is kept
      (``load_best_model_at_end``).

    Example:
        >>> fitted = fit_to_data_size(480, 12)  # the demo set: 15 steps an epoch, 40 texts per label
        >>> fitted["num_epochs"], fitted["learning_rate"], fitted["head_learning_rate"], fitted["warmup_ratio"]
        (10, 2.8e-05, 0.02, 0.1)
        >>> fitted["early_stopping_patience"]
        2
        >>> fitted = fit_to_data_size(43410, 28, has_dev=False)  # GoEmotions: the defaults
        >>> fitted["num_epochs"], fitted["learning_rate"], fitted["early_stopping_patience"]
        (3, 0.0001, None)
    """
    defaults = default_values()
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    for name, value in (("num_texts", num_texts), ("num_labels", num_labels), ("batch_size", batch_size)):
        _check(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"{name} must be a positive integer, got {value!r}",
        )
    steps_per_epoch = math.ceil(num_texts / batch_size)
    epochs = defaults["num_epochs"]
    if epochs * steps_per_epoch < FITTED_MIN_STEPS:
        epochs = max(epochs, min(FITTED_MAX_EPOCHS, math.ceil(FITTED_MIN_STEPS / steps_per_epoch)))
    scale = min(1.0, math.sqrt(num_texts / num_labels / FITTED_FULL_RATE_TEXTS_PER_LABEL))
    return {
        "num_epochs": epochs,
        "learning_rate": float(f"{defaults['learning_rate'] * scale:.2g}"),
        "head_learning_rate": head_learning_rate_for(defaults["learning_rate"], defaults["head_learning_rate"]),
        "warmup_ratio": defaults["warmup_ratio"],
        "early_stopping_patience": FITTED_EARLY_STOPPING_PATIENCE if has_dev else None,
    }
