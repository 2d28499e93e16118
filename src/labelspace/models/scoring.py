"""How a model turns an embedding into label scores: its scoring mode and its kNN index.

A model scores labels in one of three modes, saved in ``labelspace.json`` under ``"scoring"``:

- ``head``: the classification head's probabilities (the default; no index needed);
- ``knn``: the similarity-weighted votes of the ``k`` nearest labelled examples of the model's
  `LabelIndex` (`labelspace.evaluation.knn.KNNClassifier` does the search: faiss when installed, torch
  otherwise);
- ``hybrid``: ``head_weight * head + (1 - head_weight) * knn`` (`labelspace.evaluation.knn.hybrid_scores`).

The thresholds and decision rule of the model apply to the scores of its mode. `score_embeddings` is the
one function that applies a mode: `LabelspaceModel` and `labelspace.inference.Predictor` (every backend)
both call it, so a mode means the same thing everywhere.

The index is two files in the model folder: ``knn_index.safetensors`` (the example embeddings, float16 or
float32, and their 0/1 label matrix) and ``knn_index.json`` (format, label names, and the example texts
that ``similar`` returns). Only safetensors and JSON are read back.

Example:
    >>> import numpy as np
    >>> index = LabelIndex(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1, 0], [0, 1]]), ["joy", "anger"],
    ...                    texts=["yay", "grr"], precision="float32")
    >>> mode = ScoringMode("hybrid", head_weight=0.5, k=1)
    >>> score_embeddings(mode, np.array([[0.9, 0.1]]), head_probabilities=np.array([[0.2, 0.6]]), index=index).round(4)
    array([[0.6, 0.3]], dtype=float32)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from labelspace.evaluation.classification import check_label_matrix
from labelspace.evaluation.knn import KNNClassifier, hybrid_scores
from labelspace.files import atomic_write, atomic_write_text
from labelspace.models.folder_io import read_json, read_safetensors

__all__ = [
    "INDEX_FILE",
    "INDEX_METADATA_FILE",
    "INDEX_PRECISIONS",
    "SCORING_MODES",
    "LabelIndex",
    "ScoringMode",
    "check_mode_parts",
    "score_embeddings",
]

SCORING_MODES = ("head", "knn", "hybrid")
INDEX_PRECISIONS = ("float16", "float32")
INDEX_FILE = "knn_index.safetensors"
INDEX_METADATA_FILE = "knn_index.json"
INDEX_FORMAT = "labelspace.knn_index"
#: What a user runs to (re)build a missing or damaged index; named in every error about one.
BUILD_INDEX_COMMAND = "labelspace index build RUN --data TRAIN_FILE"
DEFAULT_NEIGHBOURS = 10


@dataclass(frozen=True)
class ScoringMode:
    """A scoring mode (``head``, ``knn`` or ``hybrid``), the head's weight in ``hybrid`` and the kNN ``k``.

    Example:
        >>> ScoringMode("hybrid", head_weight=0.7).to_dict()
        {'mode': 'hybrid', 'head_weight': 0.7, 'k': 10}
        >>> ScoringMode.from_dict({"mode": "knn", "k": 5}).needs_index
        True
    """

    mode: str = "head"
    head_weight: float = 1.0
    k: int = DEFAULT_NEIGHBOURS

    def __post_init__(self) -> None:
        if self.mode not in SCORING_MODES:
            raise ValueError(f"scoring mode must be one of {', '.join(SCORING_MODES)}, got {self.mode!r}")
        weight = self.head_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise ValueError(f"head_weight must be a number in [0, 1], got {weight!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k (neighbours) must be a positive integer, got {self.k!r}")
        object.__setattr__(self, "head_weight", float(weight))

    @property
    def needs_index(self) -> bool:
        """Whether the mode reads the kNN index (``knn`` and ``hybrid``)."""
        return self.mode != "head"

    @property
    def needs_head(self) -> bool:
        """Whether the mode reads the head's probabilities (``head``, and ``hybrid`` with a head weight above 0)."""
        return self.mode == "head" or (self.mode == "hybrid" and self.head_weight > 0)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "head_weight": self.head_weight, "k": self.k}

    @classmethod
    def from_dict(cls, data: Any, source: str = "scoring") -> ScoringMode:
        """The mode a ``labelspace.json`` ``"scoring"`` entry describes; ``source`` names it in errors."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or set(data) - {"mode", "head_weight", "k"}:
            raise ValueError(f"{source}: expected an object with keys mode, head_weight and k, got {data!r}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from error


class LabelIndex:
    """Labelled example embeddings for kNN scoring and ``similar``: saved in the model folder as safetensors.

    Args:
        embeddings: N x d example embeddings (the model's own, as `encode` gives them).
        labels: N x L 0/1 label matrix, columns in the order of ``label_names``.
        label_names: the L label names (must be the model's labels when the index is attached to a model).
        texts: the N example texts, returned by ``similar`` (optional).
        precision: ``"float16"`` (half the disk and memory; cosine scores move by about 1e-3) or ``"float32"``.

    Example:
        >>> import numpy as np, tempfile
        >>> index = LabelIndex(np.eye(3), np.eye(3, dtype=int), ["a", "b", "c"], texts=["x", "y", "z"])
        >>> folder = tempfile.mkdtemp()
        >>> index.save(folder)
        >>> loaded = LabelIndex.load(folder)
        >>> len(loaded), loaded.label_names, loaded.precision
        (3, ['a', 'b', 'c'], 'float16')
        >>> loaded.knn_probabilities(np.array([[0.0, 1.0, 0.0]]), k=1).tolist()
        [[0.0, 1.0, 0.0]]
    """

    def __init__(
        self,
        embeddings: Any,
        labels: Any,
        label_names: Sequence[str],
        *,
        texts: Sequence[str] | None = None,
        precision: str = "float16",
    ) -> None:
        if precision not in INDEX_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(INDEX_PRECISIONS)}, got {precision!r}")
        vectors = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"embeddings must be a non-empty N x d matrix, got shape {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("embeddings must be finite numbers")
        matrix = check_label_matrix(labels, "labels")
        if matrix.shape[0] != len(vectors):
            raise ValueError(f"labels has {matrix.shape[0]} rows but embeddings has {len(vectors)}")
        names = [str(name) for name in label_names]
        if len(names) != matrix.shape[1]:
            raise ValueError(f"label_names has {len(names)} names but labels has {matrix.shape[1]} columns")
        if texts is not None:
            texts = [str(text) for text in texts]
            if len(texts) != len(vectors):
                raise ValueError(f"texts has {len(texts)} entries but embeddings has {len(vectors)} rows")
        self.precision = precision
        self.embeddings = vectors.to(getattr(torch, precision))
        self.labels = matrix.astype(bool)
        self.label_names = names
        self.texts = texts
        self._searchers: dict[int, KNNClassifier] = {}

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1])

    def _searcher(self, k: int) -> KNNClassifier:
        # One fitted classifier per k (a faiss index is built once per k, then reused).
        if k not in self._searchers:
            self._searchers[k] = KNNClassifier(k=k).fit(self.embeddings.float(), self.labels)
        return self._searchers[k]

    def _queries(self, embeddings: Any) -> np.ndarray:
        queries = np.asarray(embeddings, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise ValueError(
                f"query embeddings must be N x {self.dimension} (the index's dimension), got shape {queries.shape}"
            )
        return queries

    def knn_probabilities(self, embeddings: Any, k: int = DEFAULT_NEIGHBOURS, exclude_self: bool = False) -> np.ndarray:
        """N x L label scores in [0, 1]: the similarity-weighted label votes of each query's ``k`` nearest examples."""
        return self._searcher(k).predict_proba(self._queries(embeddings), exclude_self=exclude_self)

    def neighbours(self, embeddings: Any, k: int = DEFAULT_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities, example indices), each N x min(k, len(index)), most similar first."""
        return self._searcher(k).kneighbors(self._queries(embeddings))

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``knn_index.safetensors`` and ``knn_index.json`` into ``folder`` (each atomically)."""
        folder = Path(folder)
        tensors = {
            "embeddings": self.embeddings.contiguous(),
            "labels": torch.from_numpy(self.labels.astype(np.uint8)),
        }
        atomic_write(folder / INDEX_FILE, lambda path: save_file(tensors, str(path)))
        metadata = {
            "format": INDEX_FORMAT,
            "version": 1,
            "size": len(self),
            "precision": self.precision,
            "labels": self.label_names,
            "texts": self.texts,
        }
        atomic_write_text(folder / INDEX_METADATA_FILE, json.dumps(metadata, ensure_ascii=False) + "\n")

    @classmethod
    def exists_in(cls, folder: str | os.PathLike[str]) -> bool:
        """Whether ``folder`` holds an index (either of its two files)."""
        return any(os.path.lexists(Path(folder) / name) for name in (INDEX_FILE, INDEX_METADATA_FILE))

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LabelIndex:
        """The index saved in ``folder``; a missing or damaged file is one error naming it and the rebuild command."""
        folder = Path(folder)
        hint = f"rebuild it with `{BUILD_INDEX_COMMAND}`"
        metadata_path = folder / INDEX_METADATA_FILE
        if not metadata_path.is_file():
            raise FileNotFoundError(f"{metadata_path}: file not found, the kNN index is incomplete; {hint}")
        try:
            tensors = read_safetensors(folder / INDEX_FILE, what="the kNN index")
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{error}; {hint}") from error
        except ValueError as error:
            raise ValueError(f"{error}; {hint}") from error
        try:
            metadata = read_json(metadata_path, expected="the kNN index description")
        except ValueError as error:  # not UTF-8 JSON: the same hint as for the tensors
            raise ValueError(f"{error}; {hint}") from error
        source = str(metadata_path)
        if not isinstance(metadata, dict) or metadata.get("format") != INDEX_FORMAT:
            raise ValueError(f"{source}: not a labelspace kNN index description (format {INDEX_FORMAT!r}); {hint}")
        embeddings, labels = tensors.get("embeddings"), tensors.get("labels")
        if embeddings is None or labels is None or embeddings.ndim != 2 or labels.ndim != 2:
            raise ValueError(f"{folder / INDEX_FILE}: expected 2-D tensors 'embeddings' and 'labels'; {hint}")
        if len(embeddings) != len(labels) or metadata.get("size") != len(embeddings):
            raise ValueError(
                f"{folder / INDEX_FILE}: {len(embeddings)} embeddings and {len(labels)} label rows, but {source} "
                f"says {metadata.get('size')!r}; {hint}"
            )
        if str(embeddings.dtype).removeprefix("torch.") != metadata.get("precision"):
            raise ValueError(
                f"{folder / INDEX_FILE}: embeddings are {embeddings.dtype}, {source} says "
                f"{metadata.get('precision')!r}; {hint}"
            )
        names, texts = metadata.get("labels"), metadata.get("texts")
        if not isinstance(names, list) or len(names) != labels.shape[1]:
            raise ValueError(f"{source}: 'labels' must list {labels.shape[1]} label names; {hint}")
        if texts is not None and (not isinstance(texts, list) or len(texts) != len(embeddings)):
            raise ValueError(f"{source}: 'texts' must be null or hold {len(embeddings)} texts; {hint}")
        try:
            return cls(embeddings.float(), labels.numpy(), names, texts=texts, precision=metadata["precision"])
        except ValueError as error:
            raise ValueError(f"{folder / INDEX_FILE}: {error}; {hint}") from error


def check_mode_parts(mode: ScoringMode, *, has_head: bool, has_index: bool) -> None:
    """Raise a ValueError saying what to do unless a model with (or without) a head and an index can score in ``mode``.

    Example:
        >>> check_mode_parts(ScoringMode("hybrid", head_weight=0.5), has_head=True, has_index=False)
        Traceback (most recent call last):
        ...
        ValueError: scoring mode 'hybrid' needs a kNN index and the model has none; build one with \
`labelspace index build RUN --data TRAIN_FILE` or set the scoring mode to 'head'
    """
    if mode.needs_index and not has_index:
        raise ValueError(
            f"scoring mode {mode.mode!r} needs a kNN index and the model has none; build one with "
            f"`{BUILD_INDEX_COMMAND}` or set the scoring mode to 'head'"
        )
    if mode.needs_head and not has_head:
        raise ValueError(f"scoring mode {mode.mode!r} needs a classification head and the model has none")


def score_embeddings(
    mode: ScoringMode,
    embeddings: Any,
    *,
    head_probabilities: Any = None,
    index: LabelIndex | None = None,
) -> np.ndarray:
    """N x L float32 label scores of ``mode`` for N embeddings: the one place a scoring mode is applied.

    ``head_probabilities`` are the head's N x L probabilities of the same texts (needed by ``head`` and
    ``hybrid``); ``index`` the model's `LabelIndex` (needed by ``knn`` and ``hybrid``); a missing piece is
    a ValueError saying what to do (`check_mode_parts`).
    """
    check_mode_parts(mode, has_head=head_probabilities is not None, has_index=index is not None)
    if not mode.needs_index:
        return np.asarray(head_probabilities, dtype=np.float32)
    knn = index.knn_probabilities(embeddings, k=mode.k)
    if not mode.needs_head:
        return knn.astype(np.float32)
    return hybrid_scores(np.asarray(head_probabilities, dtype=np.float64), knn, mode.head_weight).astype(np.float32)
