"""A single-file HTML evaluation report: metric tables and matplotlib plots as inline PNG images.

`write_report` writes ONE self-contained HTML file (no external resources, no JavaScript): a
summary metrics table, an optional comparison table, a per-label table, and plots: per-label F1
bars (sorted, support annotated), precision-recall curves, F1-vs-threshold curves with the chosen
threshold marked, the label co-occurrence heatmap of the true labels and a 2-D PCA projection of
the embeddings coloured by label. Every text put into the HTML is escaped.

`decision_report` is the metrics dict the report (and ``labelspace evaluate``) shows: decision
metrics from the predictions actually made (any decision rule), ranking metrics (ROC AUC, average
precision) from the probabilities, and each label's threshold.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y_true = (rng.random((50, 3)) < 0.4).astype(int)
    >>> scores = np.clip(0.5 * y_true + rng.random((50, 3)) * 0.6, 0, 1)
    >>> path = write_report(tempfile.mkdtemp() + "/report.html", label_names=["a", "b", "c"],
    ...                     y_true=y_true, probabilities=scores, thresholds=0.5)
    >>> path.read_text().count("<img ")
    4
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelspace.evaluation.classification import (
    check_label_matrix,
    check_label_names,
    check_scores,
    check_thresholds,
    classification_report,
)
from labelspace.files import atomic_write_text

__all__ = ["SECTION_TITLES", "decision_report", "write_report"]

#: Section headings, in order ("Comparisons" only with ``comparisons``; the projection always has a heading).
SECTION_TITLES: tuple[str, ...] = (
    "Summary",
    "Comparisons",
    "Per-label metrics",
    "Per-label F1",
    "Precision-recall curves",
    "F1 vs threshold",
    "Label co-occurrence",
    "Embedding projection",
)

#: Main metrics, in the order the tables show them.
MAIN_METRICS: tuple[str, ...] = (
    "macro_f1",
    "macro_f1_rarest_quarter",
    "micro_f1",
    "samples_f1",
    "samples_jaccard",
    "hamming_loss",
    "subset_accuracy",
    "macro_average_precision",
    "macro_roc_auc",
)

#: Points kept per curve in the plots (the curves are exact; this only thins what is drawn).
MAX_CURVE_POINTS = 400
#: Most points drawn in the projection (an even subsample beyond it).
MAX_PROJECTION_POINTS = 20000

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
p.note { color: #666; font-size: 0.9em; }
"""


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def decision_report(
    y_true: Any,
    probabilities: Any,
    *,
    thresholds: Any = 0.5,
    predictions: Any = None,
    label_names: Sequence[str] | None = None,
    label_frequency: Any = None,
) -> dict[str, Any]:
    """`classification_report` of the decisions made, with ranking metrics from the probabilities.

    ``label_frequency`` (one count per label, e.g. training positives) picks the rarest quarter of
    labels for ``macro_f1_rarest_quarter``; without it they are the rarest in ``y_true``.

    Without ``predictions`` this is ``classification_report(y_true, probabilities, thresholds=...)``.
    With them (e.g. from the "at_least_one" or "top_k" rule) the precision/recall/F1/Jaccard/Hamming/
    subset-accuracy values come from the predictions, while ROC AUC, average precision and each
    label's ``threshold`` come from the probabilities and ``thresholds``.

    Example:
        >>> report = decision_report([[1, 0], [0, 1]], [[0.9, 0.2], [0.4, 0.3]], thresholds=0.5,
        ...                          predictions=[[1, 0], [0, 1]])
        >>> report["macro_f1"], report["macro_roc_auc"], report["per_label"]["1"]["threshold"]
        (1.0, 1.0, 0.5)
    """
    report = classification_report(
        y_true, probabilities, thresholds=thresholds, label_names=label_names, label_frequency=label_frequency
    )
    if predictions is None:
        return report
    decided = np.asarray(predictions).astype(bool).astype(np.int64)
    made = classification_report(y_true, decided, label_names=label_names, label_frequency=label_frequency)
    ranking = {"macro_roc_auc", "macro_average_precision", "num_samples", "num_labels", "per_label"}
    for key, value in made.items():
        if key not in ranking:
            report[key] = value
    for name, row in report["per_label"].items():
        for key in ("precision", "recall", "f1", "support"):
            row[key] = made["per_label"][name][key]
    return report


def _curves(truth: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Every label's precision / recall / F1 at every cut ``score >= s``, all labels at once.

    Returned arrays are n x L in descending score order per label; ``last`` marks the last item of
    each group of tied scores (the cuts that exist).
    """
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    true_positives = np.cumsum(np.take_along_axis(truth, order, axis=0), axis=0, dtype=np.float64)
    predicted = np.arange(1, scores.shape[0] + 1, dtype=np.float64)[:, None]
    positives = truth.sum(axis=0).astype(np.float64)[None, :]
    last = np.ones(scores.shape, dtype=bool)
    last[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = true_positives / positives
        f1 = 2 * true_positives / (predicted + positives)
    return {
        "scores": sorted_scores,
        "precision": true_positives / predicted,
        "recall": recall,
        "f1": f1,
        "last": last,
    }


def _thin(count: int, keep: int | None = None) -> np.ndarray:
    """At most `MAX_CURVE_POINTS` evenly spread indices of ``range(count)`` (with ``keep`` included)."""
    if count <= MAX_CURVE_POINTS:
        return np.arange(count)
    chosen = np.linspace(0, count - 1, MAX_CURVE_POINTS).round().astype(np.int64)
    if keep is not None:
        chosen = np.append(chosen, keep)
    return np.unique(chosen)


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib Figure objects with the Agg canvas: no pyplot, no global backend switch)
# ----------------------------------------------------------------------------------------------


def _png(figure: Any, *, tight: bool = True) -> str:
    """The figure as a base64 PNG string (``tight``: cropped to its content, one extra layout pass)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight" if tight else None, pad_inches=0.1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid(num_labels: int) -> tuple[Any, np.ndarray]:
    """A figure with one small panel per label (up to 6 a row), shared unit axes, ticks on the outer panels.

    A fixed layout (no constrained layout): laying out dozens of panels is most of the drawing time.
    """
    from matplotlib.figure import Figure

    columns = min(6, num_labels)
    rows = math.ceil(num_labels / columns)
    width, height = 2.2 * columns + 0.8, 2.0 * rows + 0.7
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(
        left=0.6 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.3 / height, wspace=0.12, hspace=0.3
    )
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    axes[0].set_xlim(0, 1.02)
    axes[0].set_ylim(0, 1.02)
    axes[0].set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    axes[0].set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    for index, ax in enumerate(axes):
        ax.tick_params(labelsize=7, labelbottom=index + columns >= num_labels, labelleft=index % columns == 0)
        if index >= num_labels:
            ax.set_visible(False)
    return figure, axes


def _colors(count: int) -> list[Any]:
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    palette = [colormaps[name](i) for name in ("tab20", "tab20b", "tab20c") for i in range(20)]
    if count <= len(palette):
        return palette[:count]
    return [colormaps["hsv"](i / count) for i in range(count)]


def _f1_bars(names: list[str], f1: np.ndarray, support: np.ndarray) -> str:
    from matplotlib.figure import Figure

    order = np.argsort(-f1, kind="stable")
    figure = Figure(figsize=(8, 0.28 * len(names) + 1.2))
    ax = figure.subplots()
    positions = np.arange(len(names))
    ax.barh(positions, f1[order], color="#4c78a8")
    ax.set_yticks(positions, [names[i] for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("F1 (support in brackets)")
    for row, label in enumerate(order):
        ax.text(f1[label] + 0.01, row, f"{f1[label]:.2f} ({int(support[label])})", va="center", fontsize=7)
    return _png(figure)


def _pr_curves(
    names: list[str], curves: dict[str, np.ndarray], operating: tuple[np.ndarray, np.ndarray], ap: list[Any]
) -> str:
    figure, axes = _grid(len(names))
    point_precision, point_recall = operating
    for label, ax in enumerate(axes[: len(names)]):
        cuts = np.flatnonzero(curves["last"][:, label])
        recall = curves["recall"][cuts, label]
        if not np.isfinite(recall).all():
            ax.text(0.5, 0.5, "no positives", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        else:
            shown = _thin(len(cuts))
            ax.plot(recall[shown], curves["precision"][cuts, label][shown], color="#4c78a8", linewidth=1.2)
            ax.plot([point_recall[label]], [point_precision[label]], "o", color="#e45756", markersize=4)
        ap_text = "-" if ap[label] is None else f"{ap[label]:.2f}"
        ax.set_title(f"{names[label]} (AP {ap_text})", fontsize=8)
    figure.supxlabel("recall", fontsize=9)
    figure.supylabel("precision", fontsize=9, x=0.15 / figure.get_figwidth())
    return _png(figure, tight=False)


def _f1_threshold_curves(
    names: list[str], curves: dict[str, np.ndarray], thresholds: np.ndarray, f1_at_threshold: np.ndarray
) -> str:
    figure, axes = _grid(len(names))
    for label, ax in enumerate(axes[: len(names)]):
        cuts = np.flatnonzero(curves["last"][:, label])[::-1]  # ascending scores
        cut_scores = curves["scores"][cuts, label]
        f1 = curves["f1"][cuts, label]
        if len(cuts) and np.isfinite(f1).all():
            shown = _thin(len(cuts), keep=int(np.argmax(f1)))
            # F1 of "score >= t" for t in (previous cut, this cut]; 0 above the highest score.
            xs = np.concatenate([[min(0.0, cut_scores[0])], cut_scores[shown], [max(1.0, cut_scores[-1])]])
            ys = np.concatenate([[f1[0]], f1[shown], [0.0]])
            ax.step(xs, ys, where="pre", color="#4c78a8", linewidth=1.2)
        ax.axvline(thresholds[label], color="#e45756", linestyle="--", linewidth=1)
        ax.plot([thresholds[label]], [f1_at_threshold[label]], "o", color="#e45756", markersize=4)
        ax.set_title(f"{names[label]} (t={thresholds[label]:.2f})", fontsize=8)
    figure.supxlabel("threshold", fontsize=9)
    figure.supylabel("F1", fontsize=9, x=0.15 / figure.get_figwidth())
    return _png(figure, tight=False)


def _cooccurrence(names: list[str], truth: np.ndarray) -> str:
    from matplotlib.figure import Figure

    matrix = truth.T.astype(np.int64) @ truth.astype(np.int64)
    off_diagonal = np.ma.masked_array(matrix, mask=np.eye(len(names), dtype=bool))
    size = min(14.0, 0.32 * len(names) + 3.5)
    figure = Figure(figsize=(size + 1.0, size))
    ax = figure.subplots()
    from matplotlib import colormaps

    colormap = colormaps["Blues"].with_extremes(bad="#e6e6e6")
    image = ax.imshow(off_diagonal, cmap=colormap, vmin=0, interpolation="nearest")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    if len(names) <= 16:
        for i, j in zip(*np.nonzero(matrix), strict=True):
            if i != j:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6)
    figure.colorbar(image, ax=ax, label="texts with both labels", fraction=0.04, pad=0.02)
    return _png(figure)


def _projection(names: list[str], truth: np.ndarray, embeddings: np.ndarray) -> str:
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    count = embeddings.shape[0]
    rows = np.arange(count)
    if count > MAX_PROJECTION_POINTS:
        rows = np.linspace(0, count - 1, MAX_PROJECTION_POINTS).round().astype(np.int64)
    points = PCA(n_components=2, svd_solver="covariance_eigh").fit_transform(embeddings.astype(np.float64))[rows]
    support = truth.sum(axis=0)
    # Each item's most frequent label (first in label order on ties); -1 for items without labels.
    weighted = truth[rows] * (support[None, :] + 1)
    colour_of = np.where(truth[rows].any(axis=1), weighted.argmax(axis=1), -1)
    colors = _colors(len(names))
    figure = Figure(figsize=(9.5, 6.5))
    ax = figure.subplots()
    if (colour_of < 0).any():
        none = colour_of < 0
        ax.scatter(points[none, 0], points[none, 1], s=6, color="#bbbbbb", label="(no label)", alpha=0.6)
    for label in np.argsort(-support, kind="stable"):
        mine = colour_of == label
        if mine.any():
            ax.scatter(points[mine, 0], points[mine, 1], s=6, color=colors[label], label=names[label], alpha=0.75)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, markerscale=2, frameon=False)
    return _png(figure)


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return html.escape(str(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "-" if not math.isfinite(float(value)) else f"{float(value):.4f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _summary_rows(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    scalars = {key: value for key, value in metrics.items() if not isinstance(value, (dict, list, tuple))}
    texts = [key for key, value in scalars.items() if isinstance(value, str)]  # model, data, decision rule
    first = texts + [key for key in MAIN_METRICS if key in scalars]
    return [(key, scalars[key]) for key in first + [key for key in scalars if key not in first]]


def _comparison_table(comparisons: Mapping[str, Mapping[str, Any]]) -> str:
    present = [key for key in MAIN_METRICS if any(key in row for row in comparisons.values())]
    rows = [[name, *(row.get(key) for key in present)] for name, row in comparisons.items()]
    return _table(["", *present], rows)


def _selection_section(selection: Mapping[str, Any]) -> list[str]:
    """The candidates ``labelspace train`` compared on dev, which one shipped and why (`select_candidate`'s record)."""
    metric = str(selection.get("metric", "metric"))
    shipped = selection.get("shipped")
    candidates = selection.get("candidates")
    if not isinstance(candidates, Mapping) or not candidates:
        return []
    rows = [
        [name, (values or {}).get(metric) if isinstance(values, Mapping) else None, "yes" if name == shipped else ""]
        for name, values in candidates.items()
    ]
    parts = [
        "<h2>Candidates compared on dev</h2>",
        '<p class="note">labelspace train keeps the frozen baseline (a linear probe on the pretrained encoder) '
        "beside the fine-tuned model and ships the better on the dev objective.</p>",
        _table(["candidate", f"dev {metric}", "shipped"], rows),
    ]
    if selection.get("reason"):
        parts.append(f'<p class="note">{html.escape(str(selection["reason"]))}</p>')
    return parts


def write_report(
    path: str | os.PathLike[str],
    *,
    label_names: Sequence[str],
    y_true: Any,
    probabilities: Any,
    thresholds: Any,
    predictions: Any = None,
    embeddings: Any = None,
    metrics: Mapping[str, Any] | None = None,
    comparisons: Mapping[str, Mapping[str, Any]] | None = None,
    title: str = "labelspace report",
    label_frequency: Any = None,
    selection: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-contained HTML evaluation report to ``path`` (atomically) and return the path.

    Args:
        label_names: the L label names, in column order.
        y_true: n x L 0/1 true labels (array, tensor or LabelMatrix).
        probabilities: n x L scores in [0, 1].
        thresholds: one threshold or one per label (marked on the F1-vs-threshold curves).
        predictions: n x L decisions actually made (default ``probabilities >= thresholds``).
        embeddings: n x d embeddings for the 2-D PCA projection (the section notes its absence).
        metrics: the summary metrics (a `classification_report`-like dict, extra scalar fields are
            shown too); default `decision_report` of the arguments.
        comparisons: optional row name -> metrics dict, shown as one comparison table.
        title: the page title.
        label_frequency: one count per label (e.g. training positives) choosing the rarest quarter of
            labels for the default metrics' ``macro_f1_rarest_quarter`` (default: the positives in ``y_true``).
        selection: the record of the candidates training compared (``training.selection`` of the model's
            metadata: ``metric``, ``candidates``, ``shipped``, ``reason``), shown as its own table.
    """
    truth = check_label_matrix(y_true)
    scores = check_scores(probabilities, truth.shape, "probabilities")
    names = check_label_names(label_names, truth.shape[1])
    if not names:
        raise ValueError("label_names is empty: a report needs at least one label")
    per_label_thresholds = np.broadcast_to(check_thresholds(thresholds, truth.shape[1]), (truth.shape[1],))
    if predictions is not None:
        predictions = check_label_matrix(predictions, "predictions")
        if predictions.shape != truth.shape:
            raise ValueError(f"predictions must have the shape of y_true {truth.shape}, got {predictions.shape}")
    if embeddings is not None:
        embeddings = check_scores(embeddings, name="embeddings")
        if embeddings.shape[0] != truth.shape[0]:
            raise ValueError(f"embeddings must have one row per item ({truth.shape[0]}), got {embeddings.shape[0]}")
    if metrics is None:
        metrics = decision_report(
            truth,
            scores,
            thresholds=per_label_thresholds,
            predictions=predictions,
            label_names=names,
            label_frequency=label_frequency,
        )
    per_label = (
        metrics.get("per_label")
        or decision_report(truth, scores, thresholds=per_label_thresholds, predictions=predictions, label_names=names)[
            "per_label"
        ]
    )

    f1 = np.array([float(per_label[name].get("f1") or 0.0) for name in names])
    support = truth.sum(axis=0)
    curves = _curves(truth, scores)
    at_threshold = scores >= per_label_thresholds[None, :]
    true_positives = (at_threshold & truth).sum(axis=0).astype(np.float64)
    predicted = at_threshold.sum(axis=0)
    point_precision = np.where(predicted > 0, true_positives / np.maximum(predicted, 1), 1.0)
    point_recall = true_positives / np.maximum(support, 1)
    f1_at_threshold = 2 * true_positives / np.maximum(predicted + support, 1)
    ap = [per_label[name].get("average_precision") for name in names]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{truth.shape[0]} texts, {len(names)} labels.</p>',
        "<h2>Summary</h2>",
        _table(["metric", "value"], _summary_rows(metrics)),
    ]
    if "macro_f1_rarest_quarter" in metrics:
        parts.append(
            '<p class="note">macro_f1_rarest_quarter: macro-F1 over the rarest quarter of the labels (by training '
            "frequency when it was given, else by support in this data).</p>"
        )
    if comparisons:
        parts += ["<h2>Comparisons</h2>", _comparison_table(comparisons)]
    if selection:
        parts += _selection_section(selection)
    columns = ["precision", "recall", "f1", "support", "threshold", "roc_auc", "average_precision"]
    parts += [
        "<h2>Per-label metrics</h2>",
        _table(["label", *columns], [[name, *(per_label[name].get(key) for key in columns)] for name in names]),
        "<h2>Per-label F1</h2>",
        _image(_f1_bars(names, f1, support), "per-label F1, sorted"),
        "<h2>Precision-recall curves</h2>",
        '<p class="note">One panel per label; the dot is the operating point at the label\'s threshold.</p>',
        _image(_pr_curves(names, curves, (point_precision, point_recall), ap), "precision-recall curves"),
        "<h2>F1 vs threshold</h2>",
        '<p class="note">F1 of predicting the label when its score reaches the threshold; dashed line: the '
        "chosen threshold.</p>",
        _image(_f1_threshold_curves(names, curves, per_label_thresholds, f1_at_threshold), "F1 vs threshold"),
        "<h2>Label co-occurrence</h2>",
        '<p class="note">Texts carrying both labels (true labels; the diagonal, each label\'s support, is left '
        "blank).</p>",
        _image(_cooccurrence(names, truth), "label co-occurrence heatmap"),
        "<h2>Embedding projection</h2>",
    ]
    if embeddings is None:
        parts.append('<p class="note">No embeddings were given: projection skipped.</p>')
    elif embeddings.shape[0] < 2 or embeddings.shape[1] < 2:
        parts.append('<p class="note">Too few items or dimensions for a 2-D projection: skipped.</p>')
    else:
        parts += [
            '<p class="note">PCA of the embeddings to 2-D, each text coloured by its most frequent label.</p>',
            _image(_projection(names, truth, embeddings), "2-D projection of the embeddings"),
        ]
    parts.append("</body></html>\n")
    target = Path(path)
    atomic_write_text(target, "\n".join(parts))
    return target
