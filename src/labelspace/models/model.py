"""`LabelspaceModel`: an encoder, an optional classification head, its labels and per-label thresholds.

A saved model is one folder that sentence-transformers loads as is (the encoder part), plus:

- ``labelspace.json``: format and version, the label names, the head config, the per-label
  thresholds and decision rule, and training metadata;
- ``head.safetensors`` (and ``head_config.json``): the head weights.

Only safetensors and JSON are read back (no pickle). Saving writes a temporary folder beside the
target and renames it into place.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labelspace.data.labels import LabelSet
from labelspace.evaluation.thresholds import (
    DECISION_RULES,
    apply_decision_rule,
    check_decision_rule,
    default_decision_rule,
    label_positions,
)
from labelspace.models.encoder import Encoder, recover_folder, save_folder_atomically
from labelspace.models.folder_io import read_json
from labelspace.models.heads import CONFIG_FILE as HEAD_CONFIG_FILE
from labelspace.models.heads import ClassificationHead
from labelspace.models.scoring import LabelIndex, ScoringMode, check_mode_parts, score_embeddings

__all__ = ["CONFIG_FILE", "DECISION_RULES", "LabelspaceModel", "default_decision_rule", "resolve_model_folder"]

CONFIG_FILE = "labelspace.json"
CONFIG_FORMAT = "labelspace.model"
CONFIG_VERSION = 1
# DECISION_RULES and default_decision_rule live in labelspace.evaluation.thresholds (the one place for
# decision rules); they are imported above and stay importable from here.
RUN_MODEL_SUBFOLDER = "model"


def resolve_model_folder(path: str | os.PathLike[str]) -> Path:
    """The model folder of ``path``: ``path`` itself when it holds ``labelspace.json``, else ``path/model``
    (the ``--out`` folder of ``labelspace train`` is accepted wherever a model is named).

    Raises FileNotFoundError when ``path`` does not exist and ValueError when it is neither. A replace of
    the model folder that a killed command left half done is finished or rolled back first (`recover_folder`).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "model").mkdir(), (run / "model" / "labelspace.json").write_text("{}")
        >>> resolve_model_folder(run) == run / "model"
        True
    """
    folder = Path(os.fspath(path)).expanduser()
    recover_folder(folder)  # heals the folder itself and the model/ or best-model/ inside it
    if (folder / CONFIG_FILE).is_file():
        return folder
    if (folder / RUN_MODEL_SUBFOLDER / CONFIG_FILE).is_file():
        return folder / RUN_MODEL_SUBFOLDER
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such run or model folder")
    raise ValueError(
        f"{folder} is neither a model folder (no {CONFIG_FILE}) nor a run folder (no "
        f"{RUN_MODEL_SUBFOLDER}/{CONFIG_FILE}); pass the --out folder of 'labelspace train' or its model/ subfolder"
    )


def _as_label_set(labels: LabelSet | Sequence[str] | None) -> LabelSet | None:
    if labels is None or isinstance(labels, LabelSet):
        return labels
    if isinstance(labels, str):
        raise ValueError("labels must be a LabelSet or a list of label names, not a single string")
    return LabelSet(list(labels))


def _config_labels(config: dict[str, Any], config_path: Path) -> LabelSet | None:
    """The label set that ``labelspace.json`` lists (None for an embedding-only model); errors name the file."""
    labels = config.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, list):
        raise ValueError(f"{config_path}: 'labels' must be a list of label names (or null), got {reprlib.repr(labels)}")
    try:
        return LabelSet(labels)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{config_path}: 'labels': {error}") from error


def _config_decisions(config: dict[str, Any], config_path: Path, num_labels: int) -> dict[str, Any]:
    """Thresholds, decision rule, top_k and metadata of ``labelspace.json``, checked; errors name the file."""
    thresholds = config.get("thresholds")
    if thresholds is not None:
        numbers = isinstance(thresholds, list) and all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            for value in thresholds
        )
        if not numbers or len(thresholds) != num_labels:
            raise ValueError(
                f"{config_path}: 'thresholds' must be a list of {num_labels} finite numbers (one per label), "
                f"got {reprlib.repr(thresholds)}"
            )
    rule = config.get("decision_rule")
    top_k = config.get("top_k", 1)
    try:  # no rule given: the model's default (see default_decision_rule), valid by construction
        check_decision_rule(
            "threshold" if rule is None else rule, top_k, rule_name="'decision_rule'", top_k_name="'top_k'"
        )
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from None
    metadata = config.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"{config_path}: 'metadata' must be a JSON object (or null), got {reprlib.repr(metadata)}")
    return {"thresholds": thresholds, "decision_rule": rule, "top_k": top_k, "metadata": metadata or {}}


class LabelspaceModel(nn.Module):
    """A text encoder with an optional multi-label head, the label names and per-label thresholds.

    Args:
        encoder: the `Encoder` (transformer + pooling + normalisation).
        head: a `ClassificationHead` over the embeddings, or None for an embedding-only model.
        label_set: the label names, in the head's output order.
        thresholds: one decision threshold per label (default 0.5 each).
        decision_rule: ``"threshold"`` (labels whose probability reaches their threshold),
            ``"at_least_one"`` (the same, but a text with none gets its most probable label) or
            ``"top_k"`` (the ``top_k`` most probable labels). Default: ``"top_k"`` with ``top_k=1``
            (the argmax: exactly one label per text) for a single-label (softmax) head, else
            ``"threshold"``; see `default_decision_rule`.
        top_k: labels per text for ``"top_k"``.
        metadata: free-form JSON-ready training metadata kept in ``labelspace.json``.
        scoring: how embeddings become label scores (`ScoringMode`: ``head``, ``knn`` or ``hybrid``;
            default ``head``); the thresholds and decision rule apply to the scores of this mode.
        index: the labelled examples of ``knn`` / ``hybrid`` scoring (`LabelIndex`), saved with the model.

    Example:
        >>> import tempfile
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["joy", "anger"])
        >>> model.encode(["so happy", "so angry"]).shape
        (2, 32)
        >>> model.predict_proba(["so happy"]).shape
        (1, 2)
        >>> folder = model.save(tempfile.mkdtemp() + "/run")
        >>> LabelspaceModel.from_pretrained(folder).label_set.names
        ['joy', 'anger']
    """

    def __init__(
        self,
        encoder: Encoder,
        head: ClassificationHead | None = None,
        label_set: LabelSet | Sequence[str] | None = None,
        *,
        thresholds: Sequence[float] | np.ndarray | None = None,
        decision_rule: str | None = None,
        top_k: int = 1,
        metadata: dict[str, Any] | None = None,
        scoring: ScoringMode | None = None,
        index: LabelIndex | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.label_set = _as_label_set(label_set)
        if head is not None:
            if self.label_set is None:
                raise ValueError("a model with a head needs label_set (the names of the head's outputs)")
            if head.num_labels != len(self.label_set):
                raise ValueError(
                    f"the head has {head.num_labels} outputs but label_set has {len(self.label_set)} names"
                )
            if head.input_dim != encoder.dimension:
                raise ValueError(
                    f"the head expects {head.input_dim}-d inputs but the encoder gives {encoder.dimension}"
                )
        self.thresholds = np.full(self.num_labels, 0.5, dtype=np.float64)
        if thresholds is not None:
            self.set_thresholds(thresholds)
        self.set_decision_rule(decision_rule or default_decision_rule(head), top_k)
        self.metadata: dict[str, Any] = dict(metadata or {})
        #: Whether the head holds trained weights (loaded from a saved folder, or after `Trainer.train`);
        #: a fresh head is False, which lets training start it from a linear probe.
        self.head_is_trained = False
        self.index: LabelIndex | None = None
        self.scoring = ScoringMode()
        if index is not None:
            self.set_index(index)
        if scoring is not None:
            self.set_scoring(scoring)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        labels: LabelSet | Sequence[str] | None = None,
        head_kind: str = "multi_label",
        hidden_dim: int | None = None,
        dropout: float = 0.1,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
        seed: int | None = None,
        load_index: bool = True,
    ) -> LabelspaceModel:
        """Load a saved labelspace folder, or start a model from an encoder (``"minilm"``, a folder, a hub id).

        A folder with ``labelspace.json`` loads completely (encoder, head, labels, thresholds); passing
        ``labels`` then must name the same labels. Otherwise the encoder is loaded and, when ``labels``
        is given, a new head of kind ``head_kind`` is initialised (with ``seed`` when given). A run folder
        (the ``--out`` of ``labelspace train``) loads its ``model/``. ``load_index=False`` leaves the kNN index
        out (scoring falls back to ``head``), e.g. to replace a damaged one.
        """
        path = Path(os.fspath(name_or_path)).expanduser()
        recover_folder(path)  # a replace of a local folder that a killed save left half done
        if (path / RUN_MODEL_SUBFOLDER / CONFIG_FILE).is_file() and not (path / CONFIG_FILE).is_file():
            path = resolve_model_folder(path)  # a run folder: its model
        config_path = path / CONFIG_FILE
        if path.is_dir() and config_path.is_file():
            model = cls._load_folder(
                path, load_index=load_index, pooling=pooling, normalize=normalize, max_seq_length=max_seq_length
            )
            wanted = _as_label_set(labels)
            if wanted is not None and model.label_set != wanted:
                raise ValueError(
                    f"{path} was trained on labels {model.label_set.names if model.label_set else None}, "
                    f"not on {wanted.names}"
                )
            return model
        encoder = Encoder.from_pretrained(
            name_or_path, pooling=pooling, normalize=normalize, max_seq_length=max_seq_length
        )
        label_set = _as_label_set(labels)
        head = None
        if label_set is not None:
            if len(label_set) == 0:
                raise ValueError("labels is empty: a head needs at least one label")
            if seed is not None:
                torch.manual_seed(seed)
            head = ClassificationHead(
                encoder.dimension, len(label_set), kind=head_kind, hidden_dim=hidden_dim, dropout=dropout
            )
        return cls(encoder, head, label_set)

    @classmethod
    def _load_folder(cls, path: Path, *, load_index: bool = True, **encoder_options: Any) -> LabelspaceModel:
        config_path = path / CONFIG_FILE
        config = read_json(config_path, expected="a labelspace model config")
        if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
            raise ValueError(f"{config_path} is not a labelspace model config (expected format {CONFIG_FORMAT!r})")
        if config.get("version") != CONFIG_VERSION:
            raise ValueError(f"{config_path}: unsupported version {config.get('version')!r} (reads {CONFIG_VERSION})")
        label_set = _config_labels(config, config_path)
        options = _config_decisions(config, config_path, 0 if label_set is None else len(label_set))
        encoder = Encoder.from_pretrained(path, **encoder_options)
        head = ClassificationHead.load(path) if config.get("head") is not None else None
        if head is not None:
            head_config = path / HEAD_CONFIG_FILE
            if label_set is None:
                raise ValueError(f"{config_path}: 'labels' is null, but the model has a head ({head_config})")
            if head.num_labels != len(label_set):
                raise ValueError(
                    f"{head_config}: the head has {head.num_labels} outputs, but {config_path} lists "
                    f"{len(label_set)} labels (expected one output per label)"
                )
            if head.input_dim != encoder.dimension:
                raise ValueError(
                    f"{head_config}: the head expects {head.input_dim}-d embeddings, but the encoder in {path} "
                    f"gives {encoder.dimension}-d ones"
                )
        scoring = ScoringMode.from_dict(config.get("scoring"), source=f"{config_path}: scoring")
        if not load_index:  # the index is left out (e.g. to replace a damaged one): scoring falls back to the head
            scoring = ScoringMode() if scoring.needs_index else scoring
        index = LabelIndex.load(path) if load_index and (LabelIndex.exists_in(path) or scoring.needs_index) else None
        model = cls(encoder, head, label_set, **options)
        if index is not None:
            try:
                model.set_index(index)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from error
        try:
            if head is not None or scoring.mode != "head":  # an embedding-only model saves the default 'head' mode
                model.set_scoring(scoring)
        except ValueError as error:
            raise ValueError(f"{config_path}: {error}") from error
        model.head_is_trained = head is not None
        return model

    # ------------------------------------------------------------------ properties
    @property
    def num_labels(self) -> int:
        """Number of labels (0 for an embedding-only model)."""
        return 0 if self.label_set is None else len(self.label_set)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def set_thresholds(self, thresholds: float | Sequence[float] | np.ndarray | Mapping[str, float]) -> None:
        """Set the per-label decision thresholds: a number sets every label, a list one per label, and a
        ``{label name: threshold}`` dict only the labels it names (business rules fixed by hand).

        A dict's values must lie in [0, 1] (probabilities); an unknown name is a ValueError listing
        the model's labels.

        Example:
            >>> import tempfile
            >>> from labelspace.models.testing import tiny_model_folder
            >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["joy", "anger"])
            >>> model.set_thresholds({"anger": 0.9})
            >>> model.thresholds.tolist()
            [0.5, 0.9]
        """
        if isinstance(thresholds, Mapping):
            names = self.label_set.names if self.label_set is not None else []
            positions = label_positions(thresholds, names, "thresholds")
            updated = self.thresholds.copy()
            for (name, value), position in zip(thresholds.items(), positions, strict=True):
                number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                if not number or not 0 <= value <= 1:
                    raise ValueError(f"threshold of {name!r} must be a number in [0, 1], got {value!r}")
                updated[position] = float(value)
            self.thresholds = updated
            return
        values = np.asarray(thresholds, dtype=np.float64)
        if values.ndim == 0:
            values = np.full(self.num_labels, float(values))
        if values.shape != (self.num_labels,):
            raise ValueError(f"thresholds must hold one value per label ({self.num_labels}), got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("thresholds must be finite numbers")
        self.thresholds = values.copy()

    def set_decision_rule(self, rule: str, top_k: int = 1) -> None:
        """Set how probabilities become labels (see the class docstring)."""
        check_decision_rule(rule, top_k)
        self.decision_rule = rule
        self.top_k = top_k

    def set_index(self, index: LabelIndex | None) -> None:
        """Attach the labelled examples of kNN / hybrid scoring (None removes them and returns to ``head``).

        The index must be built with this model's embeddings (same dimension) over this model's labels.
        """
        if index is None:
            self.index = None
            if self.scoring.needs_index:
                self.scoring = ScoringMode()
            return
        if self.label_set is None:
            raise ValueError("a kNN index needs a model with labels (label_set)")
        if index.label_names != self.label_set.names:
            raise ValueError(
                f"the kNN index is over labels {index.label_names}, not the model's {self.label_set.names}"
            )
        if index.dimension != self.encoder.dimension:
            raise ValueError(
                f"the kNN index holds {index.dimension}-d embeddings, the encoder gives {self.encoder.dimension}-d"
            )
        self.index = index

    def set_scoring(self, scoring: ScoringMode | str, **options: Any) -> None:
        """Set the scoring mode: a `ScoringMode`, or a mode name with its options (``head_weight``, ``k``).

        ``knn`` and ``hybrid`` need an index (`set_index`); ``head`` and ``hybrid`` a head.

        Example:
            >>> import tempfile
            >>> from labelspace.models.testing import tiny_model_folder
            >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["joy", "anger"])
            >>> model.set_scoring("knn")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: scoring mode 'knn' needs a kNN index and the model has none; build one with ...
        """
        mode = scoring if isinstance(scoring, ScoringMode) else ScoringMode(scoring, **options)
        check_mode_parts(mode, has_head=self.head is not None, has_index=self.index is not None)
        self.scoring = mode

    # ------------------------------------------------------------------ forward / inference
    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeddings (with gradients) of a tokenised batch."""
        return self.encoder(features)

    def encode(
        self,
        texts: str | Iterable[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        long_text: str | None = None,
        chunk_overlap: int | None = None,
    ) -> np.ndarray:
        """Embed texts (``N x d`` float32; ``d`` for a single string); ``long_text`` / ``chunk_overlap`` as in
        `Encoder.encode` (``"chunk"``: a long text is the mean of its overlapping windows)."""
        return self.encoder.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            long_text=long_text,
            chunk_overlap=chunk_overlap,
        )

    @property
    def predicts_labels(self) -> bool:
        """Whether the model scores labels: it has labels and a classification head or a kNN index (or both);
        otherwise it only embeds.

        Example:
            >>> import tempfile
            >>> from labelspace.models.testing import tiny_model_folder
            >>> encoder = tiny_model_folder(tempfile.mkdtemp())
            >>> LabelspaceModel.from_pretrained(encoder, labels=["a"]).predicts_labels
            True
            >>> LabelspaceModel.from_pretrained(encoder).predicts_labels
            False
        """
        return self.label_set is not None and (self.head is not None or self.index is not None)

    def _require_labels(self) -> LabelSet:
        if not self.predicts_labels:
            raise ValueError(
                "this model has neither a classification head nor a kNN index: train it with labels to predict them"
            )
        return self.label_set

    def head_probabilities(self, embeddings: Any) -> np.ndarray:
        """The head's N x L float32 probabilities (sigmoid for multi-label heads) of N embeddings."""
        if self.head is None:
            raise ValueError("this model has no classification head: train it with labels to predict them")
        head = self.head
        was_training = head.training
        head.eval()
        try:
            with torch.inference_mode():
                vectors = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)).to(self.device)
                return head.predict_proba(vectors).float().cpu().numpy()
        finally:
            head.train(was_training)

    def score_embeddings(self, embeddings: Any, head_probabilities: Any = None) -> np.ndarray:
        """N x L label scores of the model's scoring mode from N embeddings (`labelspace.models.scoring`).

        ``head_probabilities``: the head's probabilities of the same texts when another backend (ONNX)
        already computed them; by default the head computes them here when the mode needs them.
        """
        self._require_labels()
        vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if head_probabilities is None and self.scoring.needs_head and self.head is not None:
            head_probabilities = self.head_probabilities(vectors)
        return score_embeddings(self.scoring, vectors, head_probabilities=head_probabilities, index=self.index)

    def predict_proba(
        self,
        texts: str | Iterable[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        long_text: str | None = None,
        chunk_overlap: int | None = None,
    ) -> np.ndarray:
        """Per-label scores, ``N x L`` float32, of the model's scoring mode (``head``: the head's probabilities)
        for the embeddings `encode` gives (``long_text`` / ``chunk_overlap`` as there)."""
        self._require_labels()
        single = isinstance(texts, str)
        embeddings = self.encode(
            [texts] if single else list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            long_text=long_text,
            chunk_overlap=chunk_overlap,
        )
        probabilities = self.score_embeddings(embeddings)
        return probabilities[0] if single else probabilities

    def decide(self, probabilities: np.ndarray, thresholds: Any = None) -> np.ndarray:
        """Boolean ``N x L`` decisions from probabilities, with the decision rule at the model's thresholds
        (or at ``thresholds``, e.g. those re-tuned for an int8 graph)."""
        probabilities = np.atleast_2d(np.asarray(probabilities))
        k = max(1, min(self.top_k, probabilities.shape[1]))
        cut = self.thresholds if thresholds is None else thresholds
        return apply_decision_rule(probabilities, cut, rule=self.decision_rule, k=k)

    def label_lists(self, probabilities: np.ndarray, decisions: np.ndarray | None = None) -> list[list[str]]:
        """The label names chosen for each row, most probable first (``decisions`` default: `decide`)."""
        probabilities = np.atleast_2d(np.asarray(probabilities))
        chosen = self.decide(probabilities) if decisions is None else np.atleast_2d(np.asarray(decisions, dtype=bool))
        names = np.asarray(self.label_set.names if self.label_set else [], dtype=object)
        order = np.argsort(-probabilities, axis=1, kind="stable")
        ranked_chosen = np.take_along_axis(chosen, order, axis=1)
        return [names[order[row][ranked_chosen[row]]].tolist() for row in range(len(chosen))]

    def predict(
        self, texts: str | Iterable[str], batch_size: int = 32, *, long_text: str | None = None
    ) -> list[list[str]]:
        """The label names predicted for each text, most probable first (``long_text`` as in `encode`)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        return self.label_lists(self.predict_proba(texts, batch_size=batch_size, long_text=long_text))

    # ------------------------------------------------------------------ saving
    def config(self) -> dict[str, Any]:
        """The JSON content of ``labelspace.json``."""
        return {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "labels": None if self.label_set is None else self.label_set.names,
            "head": None if self.head is None else self.head.config(),
            "thresholds": self.thresholds.tolist(),
            "decision_rule": self.decision_rule,
            "top_k": self.top_k,
            "scoring": self.scoring.to_dict(),
            "encoder": {
                "pooling": self.encoder.pooling,
                "normalize": self.encoder.normalize,
                "max_seq_length": self.encoder.max_seq_length,
                "dimension": self.encoder.dimension,
            },
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model folder at ``path`` atomically (temporary folder beside it, then a rename)."""
        return save_folder_atomically(path, self.write_into, overwrite=overwrite, what="the model")

    def write_into(self, folder: Path) -> None:
        """Write the model files into an existing empty ``folder`` (not atomic: `save` wraps it)."""
        self.encoder.write_folder(folder)
        if self.head is not None:
            self.head.save(folder)
        if self.index is not None:
            self.index.save(folder)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")

    def extra_repr(self) -> str:
        return f"labels={self.num_labels}, decision_rule={self.decision_rule!r}"
