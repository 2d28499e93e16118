"""Evaluation: multi-label classification metrics, per-label thresholds, retrieval metrics and kNN scores.

A functional core on numpy/torch arrays (`labelspace.data.LabelMatrix` accepted for labels) with
thin stateful classes on top (`MultiLabelMetrics`, `KNNClassifier`). See docs/evaluation.md.

Example:
    >>> from labelspace.evaluation import classification_report, tune_thresholds
    >>> y_true = [[1, 0], [0, 1], [1, 1], [0, 0]]
    >>> scores = [[0.8, 0.3], [0.2, 0.6], [0.4, 0.9], [0.3, 0.1]]
    >>> tuned = tune_thresholds(y_true, scores, min_positives=1)
    >>> classification_report(y_true, scores, thresholds=tuned.thresholds)["macro_f1"]
    1.0
"""

from labelspace.evaluation.classification import (
    AVERAGES,
    MultiLabelMetrics,
    average_precision_per_label,
    binarize,
    classification_report,
    confusion_matrices,
    f1_score,
    fbeta_score,
    hamming_loss,
    jaccard_samples,
    macro_average_precision,
    macro_roc_auc,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_per_label,
    subset_accuracy,
)
from labelspace.evaluation.knn import KNNClassifier, hybrid_scores, tune_mixing_weight
from labelspace.evaluation.retrieval import retrieval_metrics
from labelspace.evaluation.thresholds import (
    DECISION_RULES,
    OBJECTIVES,
    ThresholdResult,
    apply_decision_rule,
    check_decision_rule,
    default_decision_rule,
    label_positions,
    tune_global_threshold,
    tune_thresholds,
)

__all__ = [
    "AVERAGES",
    "DECISION_RULES",
    "KNNClassifier",
    "MultiLabelMetrics",
    "OBJECTIVES",
    "ThresholdResult",
    "apply_decision_rule",
    "average_precision_per_label",
    "binarize",
    "check_decision_rule",
    "classification_report",
    "confusion_matrices",
    "default_decision_rule",
    "f1_score",
    "fbeta_score",
    "hamming_loss",
    "hybrid_scores",
    "jaccard_samples",
    "label_positions",
    "macro_average_precision",
    "macro_roc_auc",
    "precision_recall_fscore_support",
    "precision_score",
    "recall_score",
    "retrieval_metrics",
    "roc_auc_per_label",
    "subset_accuracy",
    "tune_global_threshold",
    "tune_mixing_weight",
    "tune_thresholds",
]
