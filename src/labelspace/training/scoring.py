"""Which scoring mode a trained model ships with: ``head``, ``knn`` or ``hybrid``, chosen on dev data.

`tune_scoring` builds the model's kNN index (`labelspace.models.scoring.LabelIndex`) from labelled training
data and attaches it, scores the dev set from ONE encode of it (the head's probabilities and the index's
kNN votes), and picks the head's weight ``w`` of ``w * head + (1 - w) * knn`` among 1, 0.9, ..., 0 with
`labelspace.evaluation.knn.tune_mixing_weight` (per-label thresholds tuned on dev, the run's objective):
``w = 1`` is ``head``, ``w = 0`` is ``knn``, anything between is ``hybrid``. Ties go to the larger head
weight, so the head wins a tie. The mode is set on the model (`LabelspaceModel.set_scoring`) and a
JSON-ready record says what was compared and why (``metrics.json`` and the model's metadata keep it).

The thresholds are not tuned here: the caller tunes them afterwards for the chosen mode, by the path
training uses (`labelspace.training.evaluation.evaluate_shipped`, whose ``model.predict_proba`` scores in
the model's mode): the Trainer's final evaluation, or `retune_thresholds` for ``labelspace index build``.

Rules for ``requested``: ``"auto"`` compares the modes (a model without a head can only use ``knn``; without
dev data, or with a head that is not multi-label, ``auto`` means ``head``); ``"head"``, ``"knn"`` and
``"hybrid"`` are used as asked (``hybrid`` tunes its head weight on dev, so it needs dev data and a
multi-label head).

Example:
    >>> import tempfile
    >>> from labelspace.data import LabeledDataset
    >>> from labelspace.models import LabelspaceModel
    >>> from labelspace.models.testing import tiny_model_folder
    >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"] * 3, [["x"], ["x", "y"], ["y"], []] * 3)
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
    >>> record = tune_scoring(model, data, data, k=1)
    >>> record["mode"] == model.scoring.mode, sorted(record["dev"]), len(model.index)
    (True, ['head', 'hybrid', 'hybrid_head_weight', 'knn'], 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelspace.data.datasets import LabeledDataset
from labelspace.evaluation.knn import MIXING_METRICS, tune_mixing_weight
from labelspace.models.model import LabelspaceModel
from labelspace.models.scoring import DEFAULT_NEIGHBOURS, LabelIndex, ScoringMode
from labelspace.training.arguments import SCORING_CHOICES, TrainingArguments
from labelspace.training.evaluation import Evaluation, evaluate_shipped

__all__ = [
    "HYBRID_HEAD_WEIGHTS",
    "baseline_scoring",
    "build_label_index",
    "check_scoring_request",
    "describe_scoring",
    "retune_thresholds",
    "scoring_objective",
    "tune_run_scoring",
    "tune_scoring",
    "untuned_scoring_record",
]

#: Head weights ``hybrid`` tries (``w * head + (1 - w) * knn``), largest first so that ties go to the head.
HYBRID_HEAD_WEIGHTS: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def scoring_objective(metric: str | None) -> str:
    """The dev objective the modes are compared on: ``metric`` when it is one `tune_mixing_weight` measures
    (``macro_f1``, ``micro_f1``), else ``macro_f1``.

    Example:
        >>> scoring_objective("micro_f1"), scoring_objective("map_at_r"), scoring_objective(None)
        ('micro_f1', 'macro_f1', 'macro_f1')
    """
    return metric if metric in MIXING_METRICS else "macro_f1"


def check_scoring_request(
    requested: str, model: LabelspaceModel, *, has_train: bool = True, has_dev: bool = True
) -> None:
    """Raise a ValueError saying what is missing unless ``model`` can be given the scoring ``requested``
    with (or without) labelled training data and dev data; ``"auto"`` is always possible.

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["x", "y"])
        >>> check_scoring_request("hybrid", model, has_dev=False)
        Traceback (most recent call last):
        ...
        ValueError: scoring 'hybrid' tunes the head's weight on dev data, and there is none: give a dev set
    """
    if requested not in SCORING_CHOICES:
        raise ValueError(f"scoring must be one of {', '.join(SCORING_CHOICES)}, got {requested!r}")
    head = model.head
    if requested in ("head", "hybrid") and head is None:
        raise ValueError(f"scoring {requested!r} needs a classification head and the model has none: use knn or auto")
    if requested in ("knn", "hybrid"):
        if model.label_set is None:
            raise ValueError(f"scoring {requested!r} scores labels, and the model has none: train it with labels")
        if not has_train:
            raise ValueError(f"scoring {requested!r} builds a kNN index from labelled training data, and there is none")
    if requested == "hybrid":
        if head is not None and head.kind != "multi_label":
            raise ValueError(f"scoring 'hybrid' is tuned for multi-label heads; this head is {head.kind}")
        if not has_dev:
            raise ValueError("scoring 'hybrid' tunes the head's weight on dev data, and there is none: give a dev set")


def _over_model_labels(dataset: LabeledDataset, model: LabelspaceModel) -> LabeledDataset:
    """``dataset`` with its label columns in the model's order (a label the model lacks is an error)."""
    if not isinstance(dataset, LabeledDataset):
        raise TypeError(f"expected a LabeledDataset, got {type(dataset).__name__}")
    label_set = model.label_set
    if label_set is None:
        raise ValueError("a kNN index needs a model with labels: train it with labels first")
    if dataset.label_set.names == label_set.names:
        return dataset
    return dataset.with_label_set(label_set, known_as=f"the model's {len(label_set)} labels")[0]


def build_label_index(
    model: LabelspaceModel,
    datasets: LabeledDataset | Sequence[LabeledDataset],
    *,
    precision: str = "float16",
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> LabelIndex:
    """The `LabelIndex` of ``datasets`` (texts, labels in the model's label order) embedded by ``model``.

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> data = LabeledDataset.from_label_names(["a", "b", "c"], [["y"], ["x"], []])
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["x", "y"])
        >>> index = build_label_index(model, data)
        >>> index.label_names, index.labels.astype(int).tolist(), index.texts
        (['x', 'y'], [[0, 1], [1, 0], [0, 0]], ['a', 'b', 'c'])
    """
    sets = [datasets] if isinstance(datasets, LabeledDataset) else list(datasets)
    aligned = [_over_model_labels(dataset, model) for dataset in sets]
    texts = [text for dataset in aligned for text in dataset.texts]
    if not texts:
        raise ValueError("no labelled examples to build a kNN index from")
    assert model.label_set is not None  # checked by _over_model_labels
    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
    labels = np.concatenate([dataset.labels.to_dense() for dataset in aligned])
    return LabelIndex(embeddings, labels, model.label_set.names, texts=texts, precision=precision)


def _dev_scores(
    y_true: np.ndarray, head: np.ndarray | None, knn: np.ndarray, objective: str, tune_thresholds: bool
) -> dict[str, Any]:
    """Dev ``objective`` of head, knn and the best hybrid (with its head weight), by `tune_mixing_weight`."""

    def best(weights: Sequence[float]) -> tuple[float, float]:
        mixed_with = head if head is not None else knn  # no head: only w = 0 (pure kNN) is asked for
        return tune_mixing_weight(
            y_true, mixed_with, knn, metric=objective, weights=weights, tune_thresholds=tune_thresholds
        )

    scores: dict[str, Any] = {"head": None, "knn": best([0.0])[1], "hybrid": None, "hybrid_head_weight": None}
    if head is not None:
        scores["head"] = best([1.0])[1]
        scores["hybrid_head_weight"], scores["hybrid"] = best(HYBRID_HEAD_WEIGHTS)
    return scores


def _auto_choice(scores: dict[str, Any]) -> tuple[str, str]:
    """(mode, reason) of ``auto`` among the dev scores: strictly better wins; head, then hybrid, then knn on ties."""
    order = [name for name in ("head", "hybrid", "knn") if scores[name] is not None]
    chosen = order[0]
    for name in order[1:]:
        if scores[name] > scores[chosen]:
            chosen = name
    value = scores[chosen]
    tied = [name for name in order if name != chosen and scores[name] == value]
    others = ", ".join(f"{scores[name]:.4f} for {name}" for name in order if name != chosen)
    if tied:
        reason = (
            f"{chosen} ties with {', '.join(tied)} on the dev objective ({value:.4f}); "
            "ties go to the larger head weight"
        )
    elif others:
        reason = f"{chosen} has the best dev objective: {value:.4f} against {others}"
    else:
        reason = f"{chosen} is the only mode this model can score with"
    return chosen, reason


def tune_scoring(
    model: LabelspaceModel,
    train: LabeledDataset | Sequence[LabeledDataset],
    dev: LabeledDataset | None = None,
    *,
    requested: str = "auto",
    objective: str = "macro_f1",
    k: int = DEFAULT_NEIGHBOURS,
    precision: str = "float16",
    tune_thresholds: bool = True,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Build and attach ``model``'s kNN index from ``train``, choose its scoring mode on ``dev``, set it; return
    the JSON-ready record.

    Args:
        model: a `LabelspaceModel` with labels (a head is needed for ``head`` and ``hybrid``).
        train: the labelled examples of the index (one dataset or several).
        dev: labelled dev data the modes are compared on (None: nothing is compared; see the module rules).
        requested: ``"auto"``, ``"head"``, ``"knn"`` or ``"hybrid"``.
        objective: ``"macro_f1"`` or ``"micro_f1"`` on dev, thresholds tuned per mode (``tune_thresholds``)
            or at 0.5.
        k: neighbours of kNN scoring. precision: ``"float16"`` or ``"float32"`` index embeddings.

    The record: ``mode``, ``head_weight``, ``k``, ``requested``, ``objective``, ``dev`` (the objective of
    ``head``, ``knn`` and the best ``hybrid`` with its ``hybrid_head_weight``; None without dev data),
    ``tuned_on``, ``thresholds`` (``"tuned"`` or ``"0.5"``: how each mode was thresholded), ``index``
    (``size``, ``precision``) and ``reason`` (one sentence).
    """
    if objective not in MIXING_METRICS:
        raise ValueError(f"objective must be one of {', '.join(MIXING_METRICS)}, got {objective!r}")
    ScoringMode("knn", k=k)  # checks k before any encoding
    check_scoring_request(requested, model, has_train=True, has_dev=dev is not None)
    head = model.head
    multi_label = head is not None and head.kind == "multi_label"
    if dev is not None:
        dev = _over_model_labels(dev, model)
        if len(dev) == 0:
            raise ValueError(f"{dev.source or 'the dev data'}: no texts to compare the scoring modes on")
    index = build_label_index(
        model, train, precision=precision, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    model.set_index(index)
    scores = None
    if dev is not None and (multi_label or head is None):
        embeddings = model.encode(dev.texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
        head_probabilities = model.head_probabilities(embeddings) if head is not None else None
        knn = index.knn_probabilities(embeddings, k=k)
        scores = _dev_scores(dev.labels.to_dense(), head_probabilities, knn, objective, tune_thresholds)
    if requested == "auto" and head is None:
        mode, reason = "knn", "the model has no classification head: kNN is the only mode it can score with"
    elif requested == "auto" and scores is None:
        mode = "head"
        reason = (
            "no dev data to compare the modes on: auto means head"
            if dev is None
            else f"auto compares the modes for multi-label heads only; this {head.kind} head scores alone"
        )
    elif requested == "auto":
        mode, reason = _auto_choice(scores)
    else:
        mode, reason = requested, f"{requested} was asked for"
        if requested == "hybrid":
            reason += f"; its head weight {scores['hybrid_head_weight']:g} is the best on dev"
    weight = {"head": 1.0, "knn": 0.0, "hybrid": scores["hybrid_head_weight"] if scores and mode == "hybrid" else 1.0}
    model.set_scoring(mode, head_weight=weight[mode], k=k)
    return {
        "mode": mode,
        "head_weight": weight[mode],
        "k": k,
        "requested": requested,
        "objective": objective if scores is not None else None,
        "dev": scores,
        "tuned_on": (dev.source or "dev") if scores is not None else None,
        "thresholds": ("tuned" if tune_thresholds else "0.5") if scores is not None else None,
        "index": {"size": len(index), "precision": precision},
        "reason": reason + ".",
    }


def untuned_scoring_record(model: LabelspaceModel, requested: str, reason: str) -> dict[str, Any]:
    """The record of a model whose scoring was not chosen on dev: its current mode, and ``reason`` for that.

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["x"])
        >>> untuned_scoring_record(model, "auto", "no dev set: auto means head")["mode"]
        'head'
    """
    index = model.index
    return {
        **model.scoring.to_dict(),
        "requested": requested,
        "objective": None,
        "dev": None,
        "tuned_on": None,
        "thresholds": None,
        "index": None if index is None else {"size": len(index), "precision": index.precision},
        "reason": reason.rstrip(".") + ".",
    }


def tune_run_scoring(
    model: LabelspaceModel,
    train: Sequence[LabeledDataset],
    dev: Any,
    args: TrainingArguments,
    *,
    metric: str | None = None,
) -> dict[str, Any] | None:
    """The Trainer's scoring step for the model that ships (after the best weights are back, before its final
    threshold tuning): ``args.scoring`` with the run's labelled ``train`` sets and eval set ``dev``.

    ``"head"`` builds no index; ``"auto"`` without labelled dev or training data means ``head``. The modes are
    compared on ``metric`` (`scoring_objective`) with thresholds tuned when ``args.tune_thresholds``.
    Returns the scoring record, or None for a model without labels (an embedding model: nothing to score).
    """
    if model.label_set is None:
        return None
    labeled_dev = dev if isinstance(dev, LabeledDataset) else None
    requested = args.scoring
    check_scoring_request(requested, model, has_train=bool(train), has_dev=labeled_dev is not None)
    if requested == "head":
        return untuned_scoring_record(model, requested, "head was asked for; no kNN index was built")
    if requested == "auto" and model.head is not None and (not train or labeled_dev is None):
        missing = "labelled training data to build a kNN index from" if not train else "labelled dev data"
        return untuned_scoring_record(model, requested, f"no {missing}: auto means head")
    if not train:
        return None  # no head and no labelled training data: the model scores nothing
    return tune_scoring(
        model,
        train,
        labeled_dev,
        requested=requested,
        objective=scoring_objective(metric),
        tune_thresholds=args.tune_thresholds,
        batch_size=args.eval_batch_size,
        show_progress_bar=args.show_progress_bar,
    )


def baseline_scoring(model: LabelspaceModel, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """When the frozen baseline ships instead of the fine-tuned model: drop the index (it holds the fine-tuned
    encoder's embeddings, which do not fit the baseline's) and score with the head, as the baseline was compared.

    The returned record keeps the fine-tuned model's comparison under ``"fine_tuned"``.
    """
    if record is None:
        return None
    model.set_index(None)
    model.set_scoring("head")
    reason = "the frozen baseline shipped, and it was compared scoring with its head"
    if record.get("index") is not None:
        reason += " (the kNN index of the fine-tuned encoder does not fit it; `labelspace index build` adds one)"
    return {**untuned_scoring_record(model, record.get("requested", "auto"), reason), "fine_tuned": record}


def retune_thresholds(model: LabelspaceModel, dev: LabeledDataset, *, batch_size: int = 64) -> Evaluation:
    """Tune ``model``'s thresholds on ``dev`` for its scoring mode the way training does (`evaluate_shipped`).

    The tuning settings are those of the run that trained the model (``metadata["training"]["args"]``:
    ``min_positives``, ``threshold_objective``) when recorded, else the `TrainingArguments` defaults; the
    decision rule stays the model's own.
    """
    recorded = model.metadata.get("training", {}).get("args", {}) if isinstance(model.metadata, dict) else {}
    recorded = recorded if isinstance(recorded, dict) else {}
    settings = {key: recorded[key] for key in ("min_positives", "threshold_objective") if key in recorded}
    args = TrainingArguments(
        tune_thresholds=True,
        decision_rule=model.decision_rule,
        eval_batch_size=batch_size,
        show_progress_bar=False,
        **settings,
    )
    return evaluate_shipped(model, _over_model_labels(dev, model), args)


def describe_scoring(record: dict[str, Any]) -> str:
    """One line for a run summary, e.g. ``scoring: hybrid (head weight 0.6): dev macro_f1 0.6100 vs head 0.5800,
    knn 0.5500``; without a dev comparison, the mode and the reason.

    Example:
        >>> describe_scoring({"mode": "hybrid", "head_weight": 0.6, "requested": "auto", "objective": "macro_f1",
        ...                   "dev": {"head": 0.58, "knn": 0.55, "hybrid": 0.61, "hybrid_head_weight": 0.6}})
        'scoring: hybrid (head weight 0.6): dev macro_f1 0.6100 vs head 0.5800, knn 0.5500'
        >>> describe_scoring({"mode": "head", "head_weight": 1.0, "dev": None, "reason": "no dev data: head"})
        'scoring: head (no dev data: head)'
    """
    mode = record["mode"]
    title = f"scoring: {mode}" + (f" (head weight {record['head_weight']:g})" if mode == "hybrid" else "")
    dev = record.get("dev")
    if not dev or dev.get(mode) is None:
        return f"{title} ({str(record.get('reason', '')).rstrip('.')})"
    others = []
    for name in ("head", "knn", "hybrid"):
        if name != mode and dev.get(name) is not None:
            weight = f" (head weight {dev['hybrid_head_weight']:g})" if name == "hybrid" else ""
            others.append(f"{name} {dev[name]:.4f}{weight}")
    text = f"{title}: dev {record['objective']} {dev[mode]:.4f}" + (f" vs {', '.join(others)}" if others else "")
    return text + (f" ({mode} was asked for)" if record.get("requested") not in (None, "auto") else "")
