"""Evaluation during training, on the decisions the model ships.

`evaluate_shipped` measures a model on the eval set the way it will be used: for labeled data and
a classification head, the labels its thresholds and decision rule give (`LabelspaceModel.decide`),
after tuning the thresholds on the eval set when ``TrainingArguments.tune_thresholds`` is on. So
the metric that picks the best model is the metric of the decisions that ship with it. Other data
(no head, pairs, triplets) is measured by `labelspace.evaluation.model_metrics.evaluate_model`.

The scores and decisions come from `labelspace.inference.Predictor`, the path every prediction takes
(the model's scoring mode: head, kNN or hybrid; its thresholds and decision rule, applied by
`labelspace.evaluation.thresholds.apply_decision_rule`); the thresholds are tuned by
`labelspace.evaluation.tune_thresholds`. Nothing here scores or decides a label itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.evaluation.classification import classification_report
from labelspace.evaluation.model_metrics import evaluate_model
from labelspace.evaluation.report import decision_report
from labelspace.evaluation.thresholds import ThresholdResult, tune_thresholds
from labelspace.inference.predictor import Predictor
from labelspace.models.model import LabelspaceModel
from labelspace.training.arguments import TrainingArguments

__all__ = ["FINE_TUNED", "FROZEN_BASELINE", "Evaluation", "evaluate_shipped", "select_candidate"]


@dataclass
class Evaluation:
    """One evaluation: ``metrics`` of the shipped decisions, the ``reports`` to compare, the ``tuning``.

    ``reports`` (labeled data with a head): ``"global 0.5"`` (every threshold at 0.5) and, when the
    thresholds were tuned, ``"tuned"`` (tuned thresholds and the decision rule); for a single-label
    head ``"argmax"`` (its top_k rule) or ``"model"`` (its own thresholds and rule).
    """

    metrics: dict[str, Any]
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    tuning: ThresholdResult | None = None


def evaluate_shipped(
    model: LabelspaceModel,
    dataset: LabeledDataset | PairDataset | TripletDataset,
    args: TrainingArguments,
    *,
    tune: bool | None = None,
) -> Evaluation:
    """Evaluate ``model`` on ``dataset``; with ``tune`` (default ``args.tune_thresholds``) a multi-label head's
    thresholds are first tuned on ``dataset`` and set on the model, with ``args.decision_rule`` (and recorded in
    ``model.metadata["thresholds"]``).

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> data = LabeledDataset.from_label_names(["a b", "b c", "c d", "d e"] * 3, [["x"], ["x", "y"], ["y"], []] * 3)
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=data.label_set)
        >>> result = evaluate_shipped(model, data, TrainingArguments(tune_thresholds=True, min_positives=1))
        >>> sorted(result.reports), model.decision_rule, result.metrics == result.reports["tuned"]
        (['global 0.5', 'tuned'], 'at_least_one', True)
    """
    if not isinstance(dataset, LabeledDataset) or not model.predicts_labels:
        return Evaluation(evaluate_model(model, dataset, batch_size=args.eval_batch_size))
    y_true = dataset.labels.to_dense()
    names = model.label_set.names if model.label_set is not None else None
    predictor = Predictor(model)
    probabilities = predictor.predict_proba(dataset.texts, batch_size=args.eval_batch_size, show_progress_bar=False)
    tuning = None
    tune = args.tune_thresholds if tune is None else tune
    # kNN votes, like sigmoid outputs, score each label on its own: only a softmax head has other decisions.
    multi_label = model.head is None or model.head.kind == "multi_label"
    if tune and multi_label:
        tuning = tune_thresholds(
            y_true,
            probabilities,
            metric="f1",
            objective=args.threshold_objective,
            min_positives=args.min_positives,
            fallback="global",
        )
        model.set_thresholds(tuning.thresholds)
        model.set_decision_rule(args.decision_rule, model.top_k)
        model.metadata["thresholds"] = {**tuning.to_dict(), "tuned_on": dataset.source or "eval_dataset"}
    # With the plain threshold rule the decisions are the thresholded probabilities themselves.
    decided = None if model.decision_rule == "threshold" else predictor.decide(probabilities)
    shipped = decision_report(
        y_true, probabilities, thresholds=model.thresholds, predictions=decided, label_names=names
    )
    if not multi_label:
        single = model.decision_rule == "top_k" and model.top_k == 1
        return Evaluation(shipped, {"argmax" if single else "model": shipped})
    reports = {"global 0.5": classification_report(y_true, probabilities, thresholds=0.5, label_names=names)}
    if tuning is not None:
        reports["tuned"] = shipped
    return Evaluation(shipped, reports, tuning)


#: Names of the candidates `labelspace train` may ship, as ``metrics.json`` records them.
FINE_TUNED = "fine_tuned"
FROZEN_BASELINE = "frozen_baseline"


def select_candidate(
    candidates: Mapping[str, Evaluation], metric: str, *, greater_is_better: bool = True
) -> dict[str, Any]:
    """Which candidate ships: the first one (the fine-tuned model) unless another is strictly better on ``metric``.

    Returns the JSON-ready record ``metrics.json`` keeps: ``metric``, ``greater_is_better``,
    ``candidates`` (each one's value), ``shipped`` (a name) and ``reason`` (a sentence). A candidate
    without the metric cannot be compared and never ships in place of the first.

    Example:
        >>> chosen = select_candidate(
        ...     {"fine_tuned": Evaluation({"macro_f1": 0.66}), "frozen_baseline": Evaluation({"macro_f1": 0.75})},
        ...     "macro_f1",
        ... )
        >>> chosen["shipped"], chosen["reason"]
        ('frozen_baseline', 'frozen_baseline has the best dev macro_f1: 0.7500 against 0.6600 for fine_tuned')
    """
    if not candidates:
        raise ValueError("select_candidate needs at least one candidate")
    values = {name: _metric_value(evaluation.metrics, metric) for name, evaluation in candidates.items()}
    first = next(iter(values))
    shipped = first
    for name, value in values.items():
        best = values[shipped]
        if value is not None and (best is None or (value > best if greater_is_better else value < best)):
            shipped = name
    others = [f"{value:.4f} for {name}" for name, value in values.items() if name != shipped and value is not None]
    tied = [name for name, value in values.items() if name != shipped and value == values[shipped]]
    if values[shipped] is None:
        reason = f"no candidate has a dev {metric}: {shipped} ships"
    elif not others:
        reason = f"{shipped} is the only candidate with a dev {metric} ({values[shipped]:.4f})"
    elif tied:
        reason = (
            f"{shipped} ties with {', '.join(tied)} on dev {metric} ({values[shipped]:.4f}); "
            f"another candidate ships only when strictly better"
        )
    else:
        reason = f"{shipped} has the best dev {metric}: {values[shipped]:.4f} against {', '.join(others)}"
    return {
        "metric": metric,
        "greater_is_better": greater_is_better,
        "candidates": {name: {metric: value} for name, value in values.items()},
        "shipped": shipped,
        "reason": reason,
    }


def _metric_value(metrics: Mapping[str, Any], metric: str) -> float | None:
    value = metrics.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
