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
  decay with 10% warmup, ``batch_size: 32``, ``max_seq_length: 128``, ``epochs: 3``.
- thresholds tuned per label on the dev set for F1 after training (labels with fewer than 5 dev
  positives keep a global threshold tuned for micro-F1), decision rule ``at_least_one``.

Example:
    >>> config = TrainConfig.from_dict({"train": "train.tsv", "out": "runs/x", "loss": "ntxent+bce:0.5"})
    >>> [(name, weight) for name, weight in parse_loss_spec(config.loss)]
    [('ntxent', 1.0), ('bce', 0.5)]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HEAD_LOSSES",
    "METRIC_LOSSES",
    "RECOMMENDED",
    "TEXT_LOSSES",
    "TrainConfig",
    "build_losses",
    "parse_loss_spec",
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
HEAD_LOSSES: tuple[str, ...] = ("bce", "bce_balanced", "focal", "asymmetric")
TEXT_LOSSES: tuple[str, ...] = ("mnrl", "cached_mnrl", "cosent", "angle", "triplet")
ALL_LOSSES = METRIC_LOSSES + HEAD_LOSSES + TEXT_LOSSES

#: The recipe ``labelspace train`` uses for anything not given (see the module docstring).
RECOMMENDED: dict[str, Any] = {
    "model": "minilm",
    "loss": "multi_similarity+bce",
    "sampler": "random",
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "head_learning_rate": 2e-2,
    "max_seq_length": 128,
    "warmup_ratio": 0.1,
    "scheduler": "linear",
    "seed": 0,
    "tune_thresholds": True,
    "decision_rule": "at_least_one",
    "min_positives": 5,
}


@dataclass
class TrainConfig:
    """Everything ``labelspace train`` needs; unset fields take `RECOMMENDED` values.

    ``data`` holds reader options passed to `labelspace.data.load` (``text_column``,
    ``labels_column``, ``labels_file``, ``label_columns``, ``format``...); ``training`` holds
    any other `TrainingArguments` field (``eval_steps``, ``gradient_accumulation_steps``...).
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
        for key in ("data", "training"):
            if key in normalised and not isinstance(normalised[key], dict):
                raise ValueError(f"{where}: '{key}' must be a mapping")
        return cls(**normalised)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file of settings (safe loader: plain data only)."""
        import yaml

        path = Path(path)
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
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
        parse_loss_spec(self.loss)
        if self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be a positive integer, got {self.max_seq_length}")
        if self.min_positives < 1:
            raise ValueError(f"min_positives must be a positive integer, got {self.min_positives}")


def parse_loss_spec(spec: str) -> list[tuple[str, float]]:
    """``"a+b:0.5"`` -> ``[("a", 1.0), ("b", 0.5)]``, checking names and weights."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("loss must be a non-empty spec such as 'multi_similarity+bce'")
    parsed: list[tuple[str, float]] = []
    for part in spec.split("+"):
        name, _, weight_text = part.strip().partition(":")
        name = name.strip().lower().replace("-", "_")
        if name not in ALL_LOSSES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}; choose from {', '.join(ALL_LOSSES)}")
        weight = 1.0
        if weight_text:
            try:
                weight = float(weight_text)
            except ValueError as error:
                raise ValueError(f"loss weight {weight_text!r} in {spec!r} is not a number") from error
            if weight < 0:
                raise ValueError(f"loss weight {weight_text!r} in {spec!r} must be >= 0")
        parsed.append((name, weight))
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise ValueError(f"a loss is named twice in {spec!r}")
    return parsed


def _metric_loss(name: str) -> Any:
    from labelspace import losses, miners

    table: dict[str, Any] = {
        "contrastive": losses.ContrastiveLoss,
        "ntxent": losses.NTXentLoss,
        "triplet_margin": losses.TripletMarginLoss,
        "multi_similarity": losses.MultiSimilarityLoss,
        "circle": losses.CircleLoss,
        "fastap": losses.FastAPLoss,
    }
    if name == "batch_hard":
        return (losses.TripletMarginLoss(), miners.BatchHardMiner())
    if name == "multi_similarity_mined":
        return (losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner())
    return table[name]()


def _head_loss(name: str, train_labels: Any) -> Any:
    from labelspace import losses

    if name == "bce":
        return losses.BCEHeadLoss()
    if name == "bce_balanced":
        return losses.BCEHeadLoss.from_labels(train_labels)
    if name == "focal":
        return losses.FocalLoss()
    return losses.AsymmetricLoss()


def _text_loss(name: str) -> Any:
    from labelspace import losses

    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss()
    if name == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss()
    if name == "cosent":
        return losses.CoSENTLoss()
    if name == "angle":
        return losses.AnglELoss()
    return losses.TripletLoss()


def build_losses(spec: str, train: Any, *, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(datasets, losses) for the `Trainer` from a loss spec and the training dataset.

    On labeled data, metric and head losses combine on the labeled batches; text losses train on
    (anchor, positive) pairs sampled from the labeled set (``len(train)`` pairs, carrying the
    anchors' labels so that in-batch false negatives are masked), as a second dataset. On pair or
    triplet data only text losses apply.
    """
    from labelspace.data import LabeledDataset
    from labelspace.data.convert import labeled_to_anchor_positive
    from labelspace.losses import CombinedLoss

    parsed = parse_loss_spec(spec)
    labeled_parts, text_parts = [], []
    for name, weight in parsed:
        if name in TEXT_LOSSES:
            text_parts.append((_text_loss(name), weight))
        elif not isinstance(train, LabeledDataset):
            raise ValueError(f"loss {name!r} needs labeled training data, but the training file holds pairs/triplets")
        elif name in HEAD_LOSSES:
            labeled_parts.append((_head_loss(name, train.labels), weight))
        else:
            labeled_parts.append((_metric_loss(name), weight))
    datasets: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    if labeled_parts:
        datasets["labeled"] = train
        chosen["labeled"] = CombinedLoss(labeled_parts)
    if text_parts:
        if isinstance(train, LabeledDataset):
            texts_data = labeled_to_anchor_positive(train, len(train), seed=seed)
        else:
            texts_data = train
        datasets["pairs" if not isinstance(train, LabeledDataset) or labeled_parts else "train"] = texts_data
        chosen[list(datasets)[-1]] = CombinedLoss(text_parts)
    return datasets, chosen
