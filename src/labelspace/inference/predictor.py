"""`Predictor`: the one way texts become embeddings, label scores and labels, whatever the backend.

A backend (a *runner*) turns texts into embeddings and, when the model has a head, the head's
probabilities: ``torch`` runs the `LabelspaceModel` itself; ``onnx`` and ``onnx-int8`` run the graph that
``labelspace export`` wrote. Everything after that is the model's and is shared by every backend: the
scoring mode (`LabelspaceModel.score_embeddings`: head, kNN or hybrid), the per-label thresholds and the
decision rule (`LabelspaceModel.decide`, which calls `labelspace.evaluation.thresholds.apply_decision_rule`).
`labelspace predict`, `labelspace evaluate`, the Trainer's evaluation and the server all predict through a
Predictor, so a mode, a threshold or a rule cannot mean two things.

Example:
    >>> import tempfile
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["joy", "anger"])
    >>> predictor = Predictor(model)
    >>> predictor.predict_proba(["so happy", "so angry"]).shape
    (2, 2)
    >>> folder = model.save(tempfile.mkdtemp() + "/run/model")
    >>> Predictor.load(folder.parent).label_names  # a run folder or its model/ folder
    ['joy', 'anger']
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from labelspace.inference.onnx import load_onnx_backend
from labelspace.models.model import LabelspaceModel, resolve_model_folder

__all__ = ["BACKENDS", "Predictor", "Runner", "SimilarExample", "TorchRunner", "set_threads"]

BACKENDS = ("torch", "onnx", "onnx-int8")


def set_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads for torch and return the number in use (None: leave torch's own choice,
    all cores unless ``OMP_NUM_THREADS`` says otherwise).

    The ONNX runners take the number this returns, so every backend runs on the same threads.

    Example:
        >>> set_threads(None) == torch.get_num_threads()
        True
    """
    if threads is None:
        return torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


class Runner(Protocol):
    """What a backend does: texts in, embeddings (N x d float32) and head probabilities (N x L or None) out."""

    name: str

    def run(
        self, texts: list[str], *, batch_size: int, show_progress_bar: bool | None, need_head: bool
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


class TorchRunner:
    """The ``torch`` backend: the model's own encoder and head (``long_text`` as in `LabelspaceModel.encode`)."""

    name = "torch"

    def __init__(self, model: LabelspaceModel, *, long_text: str | None = None) -> None:
        self.model = model
        self.long_text = long_text

    def run(
        self, texts: list[str], *, batch_size: int, show_progress_bar: bool | None, need_head: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        embeddings = self.model.encode(
            texts, batch_size=batch_size, show_progress_bar=show_progress_bar, long_text=self.long_text
        )
        head = self.model.head_probabilities(embeddings) if need_head and self.model.head is not None else None
        return embeddings, head


@dataclass(frozen=True)
class SimilarExample:
    """One labelled example of the model's index that is close to a query text."""

    index: int
    score: float
    labels: list[str]
    text: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "score": self.score, "labels": self.labels, "text": self.text}


class Predictor:
    """Embeddings, label scores, labels and nearest labelled examples of a model, through one backend.

    Args:
        model: the `LabelspaceModel` (labels, thresholds, decision rule, scoring mode, index).
        runner: the backend that embeds texts (default: `TorchRunner` of ``model``).
        thresholds: per-label thresholds replacing the model's (e.g. those re-tuned for an int8 graph).

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["a", "b"])
        >>> model.set_thresholds(0.0)
        >>> [sorted(labels) for labels in Predictor(model).predict(["anything"])]  # all pass a 0 threshold
        [['a', 'b']]
    """

    def __init__(self, model: LabelspaceModel, *, runner: Runner | None = None, thresholds: Any = None) -> None:
        self.model = model
        self.runner: Runner = runner if runner is not None else TorchRunner(model)
        self._own_thresholds: np.ndarray | None = None
        if thresholds is not None:
            own = np.asarray(thresholds, dtype=np.float64)
            if own.shape != (model.num_labels,) or not np.isfinite(own).all():
                raise ValueError(
                    f"thresholds must hold one finite value per label ({model.num_labels}), got shape {own.shape}"
                )
            self._own_thresholds = own

    @property
    def thresholds(self) -> np.ndarray:
        """The per-label thresholds decisions use: the Predictor's own when it was given some (an int8 graph's),
        else the model's current ones (so `LabelspaceModel.set_thresholds` applies at once)."""
        return self.model.thresholds if self._own_thresholds is None else self._own_thresholds

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        backend: str = "torch",
        *,
        threads: int | None = None,
        long_text: str | None = None,
    ) -> Predictor:
        """The Predictor of a model folder or a run folder (its ``model/``), on ``backend``.

        ``threads``: CPU threads for the backend (default all cores). ``long_text="chunk"`` embeds long
        texts as the mean of overlapping windows (torch backend).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        folder = resolve_model_folder(path)
        threads_in_use = set_threads(threads)
        model = LabelspaceModel.from_pretrained(folder)
        model.eval()
        if backend == "torch":
            return cls(model, runner=TorchRunner(model, long_text=long_text))
        # onnx / onnx-int8: the exported graph (int8: with the thresholds re-tuned for it, when stored)
        runner, thresholds = load_onnx_backend(
            folder, model, backend, threads=threads_in_use, long_text=long_text, command_folder=path
        )
        return cls(model, runner=runner, thresholds=thresholds)

    # ------------------------------------------------------------------ what the model knows
    @property
    def backend(self) -> str:
        return self.runner.name

    @property
    def label_names(self) -> list[str]:
        return [] if self.model.label_set is None else list(self.model.label_set.names)

    # ------------------------------------------------------------------ prediction
    def _texts(self, texts: str | Iterable[str]) -> list[str]:
        items = [texts] if isinstance(texts, str) else list(texts)
        for position, text in enumerate(items):
            if not isinstance(text, str):
                raise ValueError(f"texts[{position}] must be a string, got {type(text).__name__}")
        return items

    def _run(self, texts: list[str], batch_size: int, show_progress_bar: bool | None, need_head: bool) -> Any:
        return self.runner.run(texts, batch_size=batch_size, show_progress_bar=show_progress_bar, need_head=need_head)

    def encode(
        self, texts: str | Iterable[str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """N x d float32 embeddings (normalised when the model normalises)."""
        embeddings, _ = self._run(self._texts(texts), batch_size, show_progress_bar, need_head=False)
        return embeddings

    def scores_and_embeddings(
        self, texts: str | Iterable[str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N x L label scores of the model's scoring mode, N x d embeddings), from one pass of the backend."""
        items = self._texts(texts)
        need_head = self.model.scoring.needs_head
        embeddings, head = self._run(items, batch_size, show_progress_bar, need_head=need_head)
        return self.model.score_embeddings(embeddings, head_probabilities=head), embeddings

    def predict_proba(
        self, texts: str | Iterable[str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> np.ndarray:
        """N x L float32 label scores of the model's scoring mode (head, kNN or hybrid)."""
        return self.scores_and_embeddings(texts, batch_size, show_progress_bar)[0]

    def decide(self, probabilities: Any) -> np.ndarray:
        """Bool N x L decisions: the model's decision rule at this Predictor's thresholds."""
        return self.model.decide(probabilities, self.thresholds)

    def label_lists(self, probabilities: Any) -> list[list[str]]:
        """The chosen label names of each row of scores, most probable first."""
        return self.model.label_lists(probabilities, self.decide(probabilities))

    def predict(
        self, texts: str | Iterable[str], batch_size: int = 32, show_progress_bar: bool | None = None
    ) -> list[list[str]]:
        """The label names of each text after the thresholds and decision rule, most probable first."""
        return self.label_lists(self.predict_proba(texts, batch_size, show_progress_bar))

    def similar(self, texts: str | Iterable[str], k: int = 5, batch_size: int = 32) -> list[list[SimilarExample]]:
        """The ``k`` labelled examples of the model's index most similar to each text (cosine, best first)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        index = self.model.index
        if index is None:
            raise ValueError(
                "this model has no kNN index of labelled examples; build one with "
                "`labelspace index build RUN --data TRAIN_FILE`"
            )
        similarities, positions = index.neighbours(self.encode(texts, batch_size), k=k)
        names = np.asarray(index.label_names, dtype=object)
        return [
            [
                SimilarExample(
                    index=int(position),
                    score=float(similarity),
                    labels=names[index.labels[position]].tolist(),
                    text=None if index.texts is None else index.texts[position],
                )
                for similarity, position in zip(row_similarities, row_positions, strict=True)
            ]
            for row_similarities, row_positions in zip(similarities, positions, strict=True)
        ]
