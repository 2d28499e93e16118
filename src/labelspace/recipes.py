"""Training recipes: the configuration behind ``labelspace train`` and the defaults we recommend.

A `TrainConfig` is read from YAML and/or command-line flags. Losses are written as a spec,
``"multi_similarity+bce"`` or with weights ``"multi_similarity:1.0+bce:0.5"``; a text loss such as
``mnrl`` on labeled data trains on (anchor, positive) pairs drawn from the labeled set (two texts
sharing a label), as a second dataset beside the labeled one.

The recommended recipe for multi-label classification (what ``labelspace train --train T --dev D
--out O`` runs), and why:

- ``model: minilm`` (all-MiniLM-L6-v2, 22M parameters): fast enough to fine-tune on a CPU, strong
  sentence embeddings to start from, bundled so nothing is downloaded.
- ``loss: multi_similarity+bce``: the BCE head learns the labels; the multi-similarity loss pulls
  texts that share a label together in the embedding space (the relation is multi-label aware), which
  helps rare labels and makes the embeddings useful for kNN and retrieval too.
- ``learning_rate: 1e-4`` for the encoder, ``head_learning_rate: 2e-2`` for the fresh head (a linear
  head on L2-normalised embeddings needs large weights, so it learns much faster than the encoder), linear
  decay with 10% warmup, ``batch_size: 32``, ``max_seq_length: 128``, ``epochs: 3``. ``labelspace train``
  fits the epochs, learning rates, warmup and early stopping it is not given to the size of the
  training set (`fit_to_data`: small sets get more epochs at a smaller encoder rate, and early stopping
  on the dev objective).
- the ``bce`` head loss gets ``pos_weight="auto"`` (negatives / positives per label) when the training
  labels are skewed (`labels_are_skewed`) and no ``pos_weight`` is given.
- thresholds tuned per label on the dev set for F1 after training (labels with fewer than 5 dev
  positives keep a global threshold tuned for micro-F1), decision rule ``at_least_one``.

Loss specs take parameters too: ``"triplet_margin(margin=1.0)+bce(label_smoothing=0.1):0.5"``
(values are Python literals or bare words; the YAML config's ``loss_args:`` maps a loss name to the
same parameters, and the spec's own win). How each loss meets the data (`build_losses`):

- labeled data: metric and head losses train on the labeled batches; ``mnrl`` / ``cached_mnrl`` /
  ``gist`` / ``cached_gist`` on (anchor, positive) pairs of texts sharing a label; ``cosent`` /
  ``angle`` on scored pairs, half sharing a label (score 1) and half sharing none (score 0), or
  their Jaccard similarity with ``pair_score: jaccard``; ``triplet`` on (anchor, positive,
  negative) triplets. When ``triplet`` is in the spec, every text loss shares its triplet batches.
- pair or triplet data: every loss trains on the batches as they are; metric losses read the pairs
  as the batch's relation, ``cosent`` / ``angle`` read triplets as scored pairs.

A loss that cannot learn from the data it would get (a head loss on pairs, ``triplet`` on pairs,
``cosent`` on pairs that all carry one score) is an error before anything is written.

Example:
    >>> config = TrainConfig.from_dict({"train": "train.tsv", "out": "runs/x", "loss": "ntxent+bce:0.5"})
    >>> [(name, weight) for name, weight in parse_loss_spec(config.loss)]
    [('ntxent', 1.0), ('bce', 0.5)]
    >>> terms = parse_loss_terms("triplet_margin(margin=1.0, swap=true)+bce:0.5")
    >>> [(term.name, term.weight, term.args) for term in terms]
    [('triplet_margin', 1.0, {'margin': 1.0, 'swap': True}), ('bce', 0.5, {})]
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labelspace import losses, miners, objectives
from labelspace.data import LabeledDataset
from labelspace.data.convert import labeled_to_anchor_positive, labeled_to_pairs, labeled_to_triplets
from labelspace.evaluation.thresholds import OBJECTIVES
from labelspace.files import read_text
from labelspace.losses.head.bce import positive_counts
from labelspace.objectives import CombinedLoss
from labelspace.training.arguments import default_values, fit_to_data_size, head_learning_rate_for

__all__ = [
    "ALL_LOSSES",
    "HEAD_LOSSES",
    "LossTerm",
    "METRIC_LOSSES",
    "RECOMMENDED",
    "TEXT_LOSSES",
    "DATA_SIZE_SETTINGS",
    "SKEWED_LABEL_RATIO",
    "TrainConfig",
    "build_losses",
    "fit_to_data",
    "labels_are_skewed",
    "parse_loss_spec",
    "parse_loss_terms",
]

METRIC_LOSSES: tuple[str, ...] = (
    "contrastive",
    "ntxent",
    "triplet_margin",
    "batch_hard",
    "multi_similarity",
    "multi_similarity_mined",
    "circle",
    "fastap",
)
HEAD_LOSSES: tuple[str, ...] = ("bce", "bce_balanced", "focal", "asymmetric", "softmax")
TEXT_LOSSES: tuple[str, ...] = ("mnrl", "cached_mnrl", "gist", "cached_gist", "cosent", "angle", "triplet")
ALL_LOSSES = METRIC_LOSSES + HEAD_LOSSES + TEXT_LOSSES
#: Text losses that need a guide model (``guide_model`` / ``--guide-model``).
GUIDED_LOSSES: tuple[str, ...] = ("gist", "cached_gist")
#: How a text loss meets labeled data: the kind of generated dataset it trains on.
_TEXT_LOSS_DATA: dict[str, str] = {
    "mnrl": "pairs",
    "cached_mnrl": "pairs",
    "gist": "pairs",
    "cached_gist": "pairs",
    "cosent": "scored_pairs",
    "angle": "scored_pairs",
    "triplet": "triplets",
}
PAIR_SCORES: tuple[str, ...] = ("binary", "jaccard")

_TRAINING = default_values()
#: ``RECOMMENDED`` key -> the `TrainingArguments` field whose default it is.
TRAINING_DEFAULTS: dict[str, str] = {
    "sampler": "sampler",
    "epochs": "num_epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "warmup_ratio": "warmup_ratio",
    "scheduler": "scheduler",
    "seed": "seed",
    "decision_rule": "decision_rule",
    "min_positives": "min_positives",
    "objective": "threshold_objective",
}

#: The recipe ``labelspace train`` uses for anything not given (see the module docstring). The training
#: values are `TrainingArguments` defaults (``head_learning_rate`` resolved: `TrainingArguments.head_lr`);
#: the rest is what only the command chooses: the model, the loss spec, the input length, threshold
#: tuning (the library's Trainer leaves a model's thresholds alone unless asked), and how data is read.
RECOMMENDED: dict[str, Any] = {
    "model": "minilm",
    "loss": "multi_similarity+bce",
    **{key: _TRAINING[name] for key, name in TRAINING_DEFAULTS.items()},
    "head_learning_rate": head_learning_rate_for(_TRAINING["learning_rate"], _TRAINING["head_learning_rate"]),
    "max_seq_length": 128,
    "tune_thresholds": True,
    "pair_score": "binary",
    "unknown_labels": "error",
}


#: The `TrainConfig` settings `fit_to_data` chooses from the data size when the user gives none of them.
DATA_SIZE_SETTINGS: tuple[str, ...] = (
    "epochs",
    "learning_rate",
    "head_learning_rate",
    "warmup_ratio",
    "early_stopping_patience",
)
#: Training labels are skewed when the most frequent label has more than this many times the positives of the
#: rarest (labels without positives left out); the ``bce`` head loss then gets ``pos_weight="auto"`` by default.
SKEWED_LABEL_RATIO = 3.0


def fit_to_data(
    num_texts: int, num_labels: int, *, batch_size: int | None = None, has_dev: bool = True
) -> dict[str, Any]:
    """`DATA_SIZE_SETTINGS` for a training set of ``num_texts`` texts and ``num_labels`` labels, as `TrainConfig`
    values: the rule of `labelspace.training.arguments.fit_to_data_size`, which ``labelspace train`` applies
    to each of these settings given neither as a flag nor in the config file.

    Example:
        >>> fitted = fit_to_data(480, 12)
        >>> fitted["epochs"], fitted["learning_rate"], fitted["early_stopping_patience"]
        (10, 2.8e-05, 2)
    """
    fitted = fit_to_data_size(num_texts, num_labels, batch_size=batch_size, has_dev=has_dev)
    fitted["epochs"] = fitted.pop("num_epochs")
    return {key: fitted[key] for key in DATA_SIZE_SETTINGS}


def labels_are_skewed(labels: Any) -> bool:
    """Whether training labels (a `LabelMatrix` or dense 0/1 array) are skewed (`SKEWED_LABEL_RATIO`).

    Example:
        >>> import numpy as np
        >>> labels_are_skewed(np.array([[1, 0]] * 4 + [[0, 1]])), labels_are_skewed(np.array([[1, 0]] * 3 + [[0, 1]]))
        (True, False)
    """
    counts, _ = positive_counts(labels)
    present = counts[counts > 0]
    return bool(present.size) and float(present.max()) > SKEWED_LABEL_RATIO * float(present.min())


@dataclass
class TrainConfig:
    """Everything ``labelspace train`` needs; unset fields take `RECOMMENDED` values.

    ``data`` holds reader options passed to `labelspace.data.load` (``text_column``,
    ``labels_column``, ``labels_file``, ``label_columns``, ``format``...); ``training`` holds
    any other `TrainingArguments` field (``eval_steps``, ``gradient_accumulation_steps``...).
    ``loss_args`` maps a loss name of the spec to its parameters (``{"triplet_margin": {"margin":
    1.0}}``); ``pair_score`` is how ``cosent`` / ``angle`` score generated pairs (``binary`` or
    ``jaccard``); ``guide_model`` is the guide of ``gist`` / ``cached_gist``; ``pooling`` and
    ``normalize`` override the encoder's own; ``labels_per_batch`` / ``per_label`` are P and K of
    the ``pk`` sampler; ``unknown_labels`` (``error`` / ``ignore``) is what happens to dev labels
    the training data lacks; ``objective`` is the dev metric the thresholds are tuned for
    (``macro_f1``, ``micro_f1``, ``samples_f1``, ``samples_jaccard``).
    """

    train: str | None = None
    dev: str | None = None
    out: str | None = None
    model: str = RECOMMENDED["model"]
    loss: str = RECOMMENDED["loss"]
    sampler: str = RECOMMENDED["sampler"]
    epochs: int = RECOMMENDED["epochs"]
    max_steps: int | None = None
    batch_size: int = RECOMMENDED["batch_size"]
    learning_rate: float = RECOMMENDED["learning_rate"]
    head_learning_rate: float = RECOMMENDED["head_learning_rate"]
    max_seq_length: int = RECOMMENDED["max_seq_length"]
    warmup_ratio: float = RECOMMENDED["warmup_ratio"]
    scheduler: str = RECOMMENDED["scheduler"]
    seed: int = RECOMMENDED["seed"]
    eval_steps: int | None = None
    early_stopping_patience: int | None = None
    tune_thresholds: bool = RECOMMENDED["tune_thresholds"]
    decision_rule: str = RECOMMENDED["decision_rule"]
    min_positives: int = RECOMMENDED["min_positives"]
    loss_args: dict[str, Any] = field(default_factory=dict)
    pair_score: str = RECOMMENDED["pair_score"]
    guide_model: str | None = None
    pooling: str | None = None
    normalize: bool | None = None
    labels_per_batch: int | None = None
    per_label: int | None = None
    unknown_labels: str = RECOMMENDED["unknown_labels"]
    objective: str = RECOMMENDED["objective"]
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build from a mapping (YAML content); unknown keys are an error naming ``where``."""
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        normalised = {str(key).replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(normalised) - known)
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        for key in ("data", "training", "loss_args"):
            if key in normalised and not isinstance(normalised[key], dict):
                raise ValueError(f"{where}: '{key}' must be a mapping")
        for name, args in normalised.get("loss_args", {}).items():
            if not isinstance(args, dict):
                raise ValueError(f"{where}: loss_args.{name} must be a mapping of parameter: value")
        return cls(**normalised)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file of settings (safe loader: plain data only)."""
        path = Path(path)
        try:
            content = yaml.safe_load(read_text(path, expected="YAML settings"))
        except FileNotFoundError as error:
            raise ValueError(f"{path}: config file not found") from error
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})") from error
        return cls.from_dict(content or {}, where=str(path))

    def updated(self, **overrides: Any) -> TrainConfig:
        """A copy with the non-None ``overrides`` applied (command-line flags over the YAML file)."""
        values = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check the settings that the trainer does not check itself."""
        if not self.train:
            raise ValueError("no training data: pass --train FILE (or 'train:' in the config)")
        if not self.out:
            raise ValueError("no output folder: pass --out DIR (or 'out:' in the config)")
        terms = parse_loss_terms(self.loss)
        named = {term.name for term in terms}
        for name in self.loss_args:
            if _loss_name(name) not in named:
                raise ValueError(f"loss_args names {name!r}, which is not in the loss spec {self.loss!r}")
        if self.pair_score not in PAIR_SCORES:
            raise ValueError(f"pair_score must be one of {', '.join(PAIR_SCORES)}, got {self.pair_score!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.unknown_labels not in ("error", "ignore"):
            raise ValueError(f"unknown_labels must be 'error' or 'ignore', got {self.unknown_labels!r}")
        guided = sorted(named & set(GUIDED_LOSSES))
        if guided and not self.guide_model:
            raise ValueError(f"loss {guided[0]!r} needs a guide model: pass --guide-model MODEL (e.g. minilm)")
        if self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be a positive integer, got {self.max_seq_length}")
        if self.min_positives < 1:
            raise ValueError(f"min_positives must be a positive integer, got {self.min_positives}")


@dataclass(frozen=True)
class LossTerm:
    """One part of a loss spec: ``name(args):weight``."""

    name: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)


def _loss_name(text: str) -> str:
    return text.strip().lower().replace("-", "_")


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split on ``separator`` outside parentheses and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _parse_value(text: str) -> Any:
    """A spec value: a Python literal (``1.0``, ``'a'``, ``[1, 2]``), true/false/none, or a bare word."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse_args(text: str, part: str, spec: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for item in _split_top_level(text, ","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ValueError(
                f"loss parameters in {part.strip()!r} of {spec!r} must read name=value, got {item.strip()!r}"
            )
        if key in args:
            raise ValueError(f"parameter {key!r} is given twice in {part.strip()!r} of {spec!r}")
        args[key] = _parse_value(value)
    return args


def parse_loss_terms(spec: str) -> list[LossTerm]:
    """``"a(x=1)+b:0.5"`` -> ``[LossTerm("a", 1.0, {"x": 1}), LossTerm("b", 0.5, {})]``, checking names and weights."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("loss must be a non-empty spec such as 'multi_similarity+bce'")
    if spec.count("(") != spec.count(")"):
        raise ValueError(f"unbalanced parentheses in loss spec {spec!r}")
    terms: list[LossTerm] = []
    for part in _split_top_level(spec, "+"):
        head, weight_text = part, ""
        pieces = _split_top_level(part, ":")
        if len(pieces) > 2:
            raise ValueError(f"{part.strip()!r} in {spec!r} has more than one ':weight'")
        if len(pieces) == 2:
            head, weight_text = pieces
        head = head.strip()
        args: dict[str, Any] = {}
        if "(" in head:
            if not head.endswith(")"):
                raise ValueError(f"{part.strip()!r} in {spec!r}: expected name(param=value, ...)[:weight]")
            head, _, inner = head[:-1].partition("(")
            args = _parse_args(inner, part, spec)
        name = _loss_name(head)
        if name not in ALL_LOSSES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}; choose from {', '.join(ALL_LOSSES)}")
        weight = 1.0
        if weight_text.strip():
            try:
                weight = float(weight_text)
            except ValueError as error:
                raise ValueError(f"loss weight {weight_text.strip()!r} in {spec!r} is not a number") from error
            if weight < 0:
                raise ValueError(f"loss weight {weight_text.strip()!r} in {spec!r} must be >= 0")
        terms.append(LossTerm(name, weight, args))
    names = [term.name for term in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is named twice in {spec!r}")
    return terms


def parse_loss_spec(spec: str) -> list[tuple[str, float]]:
    """``"a+b:0.5"`` -> ``[("a", 1.0), ("b", 0.5)]`` (names and weights of `parse_loss_terms`)."""
    return [(term.name, term.weight) for term in parse_loss_terms(spec)]


def _construct(factory: Any, args: dict[str, Any], name: str) -> Any:
    """``factory(**args)``, an unknown or bad parameter being an error that names the loss."""
    parameters = inspect.signature(factory).parameters
    accepted = [key for key, parameter in parameters.items() if parameter.kind is not parameter.VAR_KEYWORD]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ValueError(
            f"loss {name!r} has no parameter {unknown[0]!r} (its parameters: {', '.join(accepted) or 'none'})"
        )
    try:
        return factory(**args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"loss {name!r}: {error}") from error


def _build_loss(name: str, args: dict[str, Any], train: Any, guide: Any) -> Any:
    """The loss object (or ``(metric loss, miner)``) for one term of the spec."""

    args = dict(args)
    if name in ("batch_hard", "multi_similarity_mined"):
        miner_args = {key[len("miner_") :]: args.pop(key) for key in list(args) if key.startswith("miner_")}
        if name == "batch_hard":
            return (
                _construct(losses.TripletMarginLoss, args, name),
                _construct(miners.BatchHardMiner, miner_args, name),
            )
        return (
            _construct(losses.MultiSimilarityLoss, args, name),
            _construct(miners.MultiSimilarityMiner, miner_args, name),
        )
    if name in ("bce", "bce_balanced"):
        if name == "bce_balanced" or ("pos_weight" not in args and labels_are_skewed(train.labels)):
            args.setdefault("pos_weight", "auto")
        if isinstance(args.get("pos_weight"), (int, float)) and not isinstance(args["pos_weight"], bool):
            args["pos_weight"] = float(args["pos_weight"])
        if args.get("pos_weight") == "auto":
            args.setdefault("train_labels", train.labels)
        return _construct(losses.BCEHeadLoss, args, name)
    if name in GUIDED_LOSSES:
        factory = objectives.GISTEmbedLoss if name == "gist" else objectives.CachedGISTEmbedLoss
        return _construct_guided(factory, guide, args, name)
    table: dict[str, Any] = {
        "contrastive": losses.ContrastiveLoss,
        "ntxent": losses.NTXentLoss,
        "triplet_margin": losses.TripletMarginLoss,
        "multi_similarity": losses.MultiSimilarityLoss,
        "circle": losses.CircleLoss,
        "fastap": losses.FastAPLoss,
        "focal": losses.FocalLoss,
        "asymmetric": losses.AsymmetricLoss,
        "softmax": losses.SoftmaxHeadLoss,
        "mnrl": losses.MultipleNegativesRankingLoss,
        "cached_mnrl": objectives.CachedMultipleNegativesRankingLoss,
        "cosent": losses.CoSENTLoss,
        "angle": losses.AnglELoss,
        "triplet": losses.TripletLoss,
    }
    return _construct(table[name], args, name)


def _construct_guided(factory: Any, guide: Any, args: dict[str, Any], name: str) -> Any:
    if "guide" in args:
        raise ValueError(f"loss {name!r}: give the guide model with --guide-model (guide_model:), not as a parameter")
    parameters = inspect.signature(factory).parameters
    accepted = [key for key in parameters if key != "guide"]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ValueError(f"loss {name!r} has no parameter {unknown[0]!r} (its parameters: {', '.join(accepted)})")
    try:
        return factory(guide, **args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"loss {name!r}: {error}") from error


def build_losses(
    spec: str,
    train: Any,
    *,
    seed: int = 0,
    loss_args: dict[str, dict[str, Any]] | None = None,
    pair_score: str = "binary",
    guide: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(datasets, losses) for the `Trainer` from a loss spec and the training dataset.

    See the module docstring for how each loss meets labeled, pair and triplet data. Parameters
    come from ``loss_args`` (loss name -> mapping) and the spec (``name(k=v)``, which wins).
    Every (dataset, loss) is checked with `ModelLoss.check_dataset`, so a loss that cannot learn
    from its data is a ValueError here, before a model is loaded or a file written.
    """

    if pair_score not in PAIR_SCORES:
        raise ValueError(f"pair_score must be one of {', '.join(PAIR_SCORES)}, got {pair_score!r}")
    terms = parse_loss_terms(spec)
    defaults = {_loss_name(name): dict(args) for name, args in (loss_args or {}).items()}
    labeled = isinstance(train, LabeledDataset)
    groups: dict[str, list[tuple[Any, float]]] = {}
    for term in terms:
        if term.name in GUIDED_LOSSES and guide is None:
            raise ValueError(f"loss {term.name!r} needs a guide model: pass --guide-model MODEL (e.g. minilm)")
        if term.name in HEAD_LOSSES and not labeled:
            raise ValueError(
                f"loss {term.name!r} trains a classification head and needs labeled training data, but the "
                "training file holds pairs/triplets"
            )
        loss = _build_loss(term.name, {**defaults.get(term.name, {}), **term.args}, train, guide)
        if not labeled:
            group = "train"
        elif term.name in TEXT_LOSSES:
            group = _TEXT_LOSS_DATA[term.name]
        else:
            group = "labeled"
        groups.setdefault(group, []).append((loss, term.weight))
    if labeled and "triplets" in groups:  # every text loss takes triplets: train them on the same batches
        for group in ("pairs", "scored_pairs"):
            groups["triplets"] = groups.pop(group, []) + groups["triplets"]
    datasets: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for group, parts in groups.items():
        if group in ("train", "labeled"):
            data = train
        elif group == "pairs":
            data = labeled_to_anchor_positive(train, len(train), seed=seed)
        elif group == "scored_pairs":
            data = labeled_to_pairs(train, len(train), score=pair_score, seed=seed)
        else:
            data = labeled_to_triplets(train, len(train), seed=seed)
        datasets[group] = data
        chosen[group] = CombinedLoss(parts)
    if len(datasets) == 1:
        datasets = {"train": next(iter(datasets.values()))}
        chosen = {"train": next(iter(chosen.values()))}
    for name, dataset in datasets.items():
        chosen[name].check_dataset(dataset, name)
    return datasets, chosen


def head_kind_for(spec: str) -> str | None:
    """The classification head the spec trains: ``multi_label``, ``single_label`` (softmax) or None."""
    names = {term.name for term in parse_loss_terms(spec)}
    if "softmax" in names:
        if names & (set(HEAD_LOSSES) - {"softmax"}):
            raise ValueError(f"softmax trains a single-label head and cannot be combined with {sorted(names)}")
        return "single_label"
    return "multi_label" if names & set(HEAD_LOSSES) else None
