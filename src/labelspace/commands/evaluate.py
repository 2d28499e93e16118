"""``labelspace evaluate``, ``tune-thresholds``, ``set-thresholds`` and ``predict``: use a trained model folder.

``RUN`` is a model folder (it holds ``labelspace.json``) or a run folder written by ``labelspace
train`` (its ``model/`` subfolder is the model); `resolve_model_folder` tells which. Evaluation
and tuning data are read like training data (``--format``, ``--text-column``, ``--labels-column``,
``--labels-file``) and re-expressed over the model's labels; a label the model does not know is an
error naming the file and the labels.

Every score and label these commands give comes from a `labelspace.inference.Predictor` (``--backend``,
``--threads``): the model's scoring mode (head, kNN or hybrid), its per-label thresholds and its decision
rule are applied there, the same way as in Python and in the Trainer's evaluation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from labelspace.commands.common import (
    EMPTY_TEXT,
    BackendOption,
    BatchSizeOption,
    CommandError,
    DataOption,
    FormatOption,
    LabelsColumnOption,
    LabelsFileOption,
    LabelsFormatOption,
    LongTextOption,
    QuietOption,
    TextColumnOption,
    ThreadsOption,
    UnknownLabelsOption,
    console,
    data_options,
    first_blank,
    load_dataset,
    load_labeled_over,
    load_predictor,
    metrics_table,
    read_texts,
    resolve_model_folder,
    save_model_config,
)
from labelspace.commands.paths import check_output_path
from labelspace.data import LabeledDataset, PairDataset
from labelspace.evaluation import tune_thresholds
from labelspace.evaluation.model_metrics import evaluate_model
from labelspace.evaluation.report import decision_report, write_report
from labelspace.evaluation.retrieval import RELEVANCE, retrieval_metrics
from labelspace.evaluation.thresholds import OBJECTIVES, RARE_LABEL_RULES, per_label_targets
from labelspace.files import atomic_write_text
from labelspace.inference import Predictor
from labelspace.integrations.ray import SUMMARY_FILE, predict_files
from labelspace.models import LabelspaceModel
from labelspace.models.model import DECISION_RULES
from labelspace.models.scoring import BUILD_INDEX_COMMAND

__all__ = [
    "EVALUATE_EPILOG",
    "PREDICT_EPILOG",
    "SET_THRESHOLDS_EPILOG",
    "TUNE_EPILOG",
    "parse_label_values",
    "read_texts",
    "register",
    "resolve_model_folder",
]

EVALUATE_EPILOG = (
    "Example: labelspace evaluate runs/x --data test.tsv --report report.html --json metrics.json\n\n"
    "Example: labelspace evaluate runs/x/model --data test.csv --text-column body --labels-column tags\n\n"
    "Example: labelspace evaluate runs/x --data test.tsv --backend onnx-int8 --threads 2\n\n"
    "Example: labelspace evaluate runs/embedder --data test.jsonl --relevance jaccard --json retrieval.json"
)
TUNE_EPILOG = (
    "Example: labelspace tune-thresholds runs/x --data dev.tsv --metric f1\n\n"
    "Example: labelspace tune-thresholds runs/x --data dev.tsv --metric fbeta --beta 0.5 --rule at_least_one\n\n"
    "Example: labelspace tune-thresholds runs/x --data dev.tsv --target-precision security=0.95,billing=0.8\n\n"
    "Example: labelspace tune-thresholds runs/x --data dev.tsv --objective samples_jaccard"
)
SET_THRESHOLDS_EPILOG = "Example: labelspace set-thresholds runs/x security=0.9 billing=0.5"
PREDICT_EPILOG = (
    'Example: labelspace predict runs/x "I was charged twice" "the app crashes on login"\n\n'
    "Example: labelspace predict runs/x --input texts.txt --output predictions.jsonl\n\n"
    "Example: labelspace predict runs/x --input texts.txt --output predictions.jsonl --backend onnx --threads 4\n\n"
    "Example: labelspace predict runs/x --input 'shards/*.parquet' --output scored/ --engine ray --workers 4"
)


def training_label_frequency(model: LabelspaceModel) -> np.ndarray | None:
    """Training positives per label (the model's label order) as ``labelspace train`` recorded them, or None.

    Example:
        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(label_set=SimpleNamespace(names=["a", "b"]),
        ...                         metadata={"training": {"label_counts": {"b": 3, "a": 40}}})
        >>> training_label_frequency(model).tolist()
        [40, 3]
    """
    counts = (model.metadata.get("training") or {}).get("label_counts")
    names = model.label_set.names if model.label_set is not None else []
    if not isinstance(counts, dict) or not names or any(not isinstance(counts.get(name), int) for name in names):
        return None
    return np.array([counts[name] for name in names], dtype=np.int64)


def _require_labels(model: LabelspaceModel, folder: Any) -> None:
    if not model.predicts_labels:
        raise ValueError(
            f"{folder} has neither a classification head nor a kNN index (an embedding-only model): it cannot "
            f"predict labels; train it with labels, or build an index with `{BUILD_INDEX_COMMAND}`"
        )


def _load_model(run: Path) -> tuple[LabelspaceModel, Path]:
    """The model of ``run`` (which must be able to predict labels) and its folder."""
    folder = resolve_model_folder(run)
    model = LabelspaceModel.from_pretrained(folder)
    _require_labels(model, folder)
    return model, folder


def _load_label_predictor(
    run: Path, backend: str = "torch", threads: int | None = None, long_text: str = "truncate"
) -> tuple[Predictor, Path]:
    """The Predictor of ``run`` (a model that can predict labels) on ``backend``, and the model folder."""
    predictor, folder = load_predictor(run, backend=backend, threads=threads, long_text=long_text)
    _require_labels(predictor.model, folder)
    return predictor, Path(folder)


def parse_label_values(items: Iterable[str], option: str) -> dict[str, float]:
    """``NAME=VALUE`` items (commas also separate them) as a ``{label name: number}`` dict.

    Raises ValueError naming ``option`` for an item that is not ``NAME=NUMBER`` or a name given twice.

    Example:
        >>> parse_label_values(["security=0.95,billing=0.8"], "--target-precision")
        {'security': 0.95, 'billing': 0.8}
    """
    values: dict[str, float] = {}
    for item in (part for text in items for part in text.split(",")):
        name, equals, number = item.rpartition("=")
        name = name.strip()
        try:
            value = float(number)
        except ValueError:
            value = None
        if not equals or not name or value is None:
            raise ValueError(f"{option}: expected NAME=NUMBER (for example security=0.9); got {item!r}")
        if name in values:
            raise ValueError(f"{option}: label {name!r} given twice")
        values[name] = value
    return values


def _target_option(text: str | None, option: str) -> float | dict[str, float] | None:
    """A ``--target-*`` option: one number (every label) or ``NAME=NUMBER,...`` (those labels)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return parse_label_values([text], option)


def _per_label_table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("label")
    for column in ("precision", "recall", "F1", "support", "threshold"):
        table.add_column(column, justify="right")

    def number(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    for name, row in report["per_label"].items():
        table.add_row(
            name,
            number(row["precision"]),
            number(row["recall"]),
            number(row["f1"]),
            str(row["support"]),
            number(row["threshold"]),
        )
    return table


# ----------------------------------------------------------------------------- predict output


#: Line breaks for `str.splitlines` that JSON leaves raw (other control characters are escaped by `json.dumps`).
_ESCAPED_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _prediction_lines(texts: list[str], predictor: Predictor, *, batch_size: int, show_progress_bar: bool) -> list[str]:
    """One JSON line per text: ``text``, ``labels`` (most probable first), ``scores`` (6 decimals).

    The scores are the Predictor's (the model's scoring mode), the labels its decisions (thresholds and
    decision rule). A blank text (kept with ``--allow-empty``) is not run through the model and gets
    ``"labels": []`` and ``"scores": {}``. U+2028, U+2029 and U+0085 are written as escapes, so that no
    line splitter breaks a row in two.
    """
    names = predictor.label_names
    filled = [text for text in texts if text.strip()]
    probabilities = np.zeros((0, len(names)), dtype=np.float32)
    labels: list[list[str]] = []
    if filled:
        probabilities = predictor.predict_proba(filled, batch_size=batch_size, show_progress_bar=show_progress_bar)
        labels = predictor.label_lists(probabilities)
    rounded = np.round(np.asarray(probabilities, dtype=np.float64), 6).tolist()
    rows = iter(range(len(filled)))
    lines = []
    for text in texts:
        if not text.strip():
            row: dict[str, Any] = {"text": text, "labels": [], "scores": {}}
        else:
            index = next(rows)
            row = {"text": text, "labels": labels[index], "scores": dict(zip(names, rounded[index], strict=True))}
        lines.append(json.dumps(row, ensure_ascii=False).translate(_ESCAPED_LINE_BREAKS))
    return lines


# ----------------------------------------------------------------------------- embedding metrics

#: Rows of the embedding metrics table: key of `evaluate_model`'s dict -> shown name (``{k}``: the cut-off).
EMBEDDING_METRIC_NAMES = {
    "map_at_r": "MAP@R",
    "ndcg_at_k": "NDCG@{k}",
    "precision_at_1": "P@1",
    "r_precision": "R-precision",
    "precision_at_k": "P@{k}",
    "mrr": "MRR",
    "num_evaluated_queries": "queries with a relevant text",
    "spearman": "Spearman (cosine vs score)",
    "pearson": "Pearson (cosine vs score)",
    "num_pairs": "pairs",
    "triplet_accuracy": "triplet accuracy",
    "num_triplets": "triplets",
}


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with NaN written as None (``json.dumps`` would write the invalid ``NaN``)."""
    return {key: None if isinstance(value, float) and value != value else value for key, value in metrics.items()}


def _embedding_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name in EMBEDDING_METRIC_NAMES.items():
        value = metrics.get(key, "absent")
        if value != "absent":
            shown = "-" if value is None else str(value) if isinstance(value, int) else f"{value:.4f}"
            table.add_row(name.format(k=metrics.get("k")), shown)
    return table


# ----------------------------------------------------------------------------- predict --engine ray

#: Where ``predict`` runs: in this process, or on Ray Data (`labelspace.integrations.ray.predict_files`).
ENGINES = ("local", "ray")


def _predict_on_ray(
    run: Path,
    texts: list[str] | None,
    input_path: Path | None,
    output: Path | None,
    options: dict[str, Any],
) -> None:
    """``predict --engine ray``: Parquet / JSONL shards in, Parquet shards and ``_labelspace.json`` out."""
    if texts:
        raise CommandError("--engine ray reads --input DIR_OR_GLOB; texts on the command line need --engine local")
    if input_path is None or output is None:
        raise CommandError("--engine ray needs --input DIR_OR_GLOB (Parquet or JSONL shards) and --output DIR")
    if options.pop("file_format") is not None or options.pop("allow_empty"):
        raise CommandError("--format and --allow-empty apply to --engine local (--engine ray reads .parquet / .jsonl)")
    check_output_path(output / SUMMARY_FILE, "--output", {"--input": input_path})
    summary = predict_files(run, str(input_path), output, **options)
    console.print(
        f"wrote {summary['rows']} predictions in {len(summary['files'])} Parquet file(s) to {output} "
        f"({summary['workers']} Ray workers)",
        soft_wrap=True,
        highlight=False,
    )


# ----------------------------------------------------------------------------- commands


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``tune-thresholds``, ``set-thresholds`` and ``predict`` to the app."""

    @app.command("evaluate", epilog=EVALUATE_EPILOG)
    def evaluate_command(
        run: Annotated[
            Path, typer.Argument(help="Run folder (from 'labelspace train'), model folder, or encoder (minilm).")
        ],
        data: DataOption,
        report: Annotated[
            Path | None, typer.Option("--report", help="Write a single-file HTML report with plots here.")
        ] = None,
        json_path: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
        batch_size: BatchSizeOption = 32,
        file_format: FormatOption = None,
        text_column: TextColumnOption = None,
        labels_column: LabelsColumnOption = None,
        labels_file: LabelsFileOption = None,
        labels_format: LabelsFormatOption = None,
        unknown_labels: UnknownLabelsOption = "error",
        kind: Annotated[
            str,
            typer.Option(
                "--kind",
                help="labeled, pairs, triplets or auto (a model that predicts labels: labeled; else from the columns).",
            ),
        ] = "auto",
        relevance: Annotated[
            str,
            typer.Option("--relevance", help="Retrieval relevance: overlap (shares a label) or jaccard (graded)."),
        ] = "overlap",
        retrieval: Annotated[
            bool, typer.Option("--retrieval", help="With a head: also the retrieval metrics of the embeddings.")
        ] = False,
        long_text: LongTextOption = "truncate",
        backend: BackendOption = "torch",
        threads: ThreadsOption = None,
        quiet: QuietOption = False,
    ) -> None:
        """Score a model: its labels on labelled data with its scoring mode, thresholds and decision rule (table,
        JSON, HTML report); an embedding model by retrieval (labelled data), Spearman (scored pairs) or triplet
        accuracy (triplets)."""
        if relevance not in RELEVANCE:
            raise CommandError(f"--relevance: expected one of {', '.join(RELEVANCE)}; got {relevance!r}")
        if kind not in ("auto", "labeled", "pairs", "triplets"):
            raise CommandError(f"--kind: expected labeled, pairs, triplets or auto; got {kind!r}")
        inputs = {"--data": data, "--labels-file": labels_file}
        check_output_path(json_path, "--json", inputs)
        check_output_path(report, "--report", inputs)
        predictor, folder = load_predictor(run, backend=backend, threads=threads, long_text=long_text, encoders=True)
        model = predictor.model
        options = data_options(file_format, text_column, labels_column, labels_file, labels_format)
        if not model.predicts_labels or kind in ("pairs", "triplets"):
            if report is not None:
                why = f"is scored on {kind} here"
                if not model.predicts_labels:
                    why = "has no classification head and no kNN index"
                raise CommandError(
                    f"--report writes a classification report, which needs labelled data and a model that predicts "
                    f"labels; {folder} {why} (use --json for the embedding metrics)"
                )
            if predictor.backend != "torch":
                raise CommandError(
                    f"--backend {predictor.backend}: the embedding metrics (retrieval, pairs, triplets) are measured "
                    "on the torch backend; drop --backend"
                )
            dataset = load_dataset(str(data), {**options, "kind": kind})
            if len(dataset) == 0:
                raise ValueError(f"{data}: no rows to evaluate")
            data_kind = "pairs" if isinstance(dataset, PairDataset) else "triplets"
            data_kind = "labeled" if isinstance(dataset, LabeledDataset) else data_kind
            scores = evaluate_model(model, dataset, batch_size, relevance=relevance, show_progress_bar=not quiet)
            about = {"model": str(folder), "data": str(data), "kind": data_kind}
            title = f"{data.name}: {len(dataset)} {'texts' if data_kind == 'labeled' else data_kind}"
            if data_kind == "labeled":
                about["relevance"] = relevance
                title += f", relevance {relevance}"
            console.print(_embedding_table(scores, title))
            if json_path is not None:
                text = json.dumps({**about, **_json_safe(scores)}, indent=2, ensure_ascii=False)
                atomic_write_text(json_path, text + "\n")
                console.print(f"wrote metrics to {json_path}", soft_wrap=True, highlight=False)
            return
        dataset = load_labeled_over(data, options, model.label_set, unknown_labels)
        probabilities, embeddings = predictor.scores_and_embeddings(
            dataset.texts, batch_size=batch_size, show_progress_bar=not quiet
        )
        decided = predictor.decide(probabilities)
        y_true = dataset.labels.to_dense()
        names = predictor.label_names
        thresholds = predictor.thresholds
        frequency = training_label_frequency(model)
        metrics = decision_report(
            y_true,
            probabilities,
            thresholds=thresholds,
            predictions=decided,
            label_names=names,
            label_frequency=frequency,
        )
        header: dict[str, Any] = {"model": str(folder), "data": str(data), "decision_rule": model.decision_rule}
        if model.decision_rule == "top_k":
            header["top_k"] = model.top_k
        header["scoring"] = model.scoring.to_dict()
        header["backend"] = predictor.backend
        result = {**header, **metrics}
        rule = model.decision_rule + (f" (k={model.top_k})" if model.decision_rule == "top_k" else "")
        title = f"{len(dataset)} texts, rule {rule}, scoring {model.scoring.mode}, backend {predictor.backend}"
        table = metrics_table({data.name: metrics}, title)
        rare_f1 = metrics.get("macro_f1_rarest_quarter")
        rarest_by = "training" if frequency is not None else "support"  # rarest by training positives when known
        table.add_row(f"macro_f1_rarest_quarter ({rarest_by})", "-" if rare_f1 is None else f"{rare_f1:.4f}")
        console.print(table)
        console.print(_per_label_table(metrics, "per label"))
        if retrieval:
            found = retrieval_metrics(embeddings, y_true, relevance=relevance)
            result["retrieval"] = {"relevance": relevance, **_json_safe(found)}
            console.print(_embedding_table(found, f"retrieval, relevance {relevance}"))
        if json_path is not None:
            atomic_write_text(json_path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
            console.print(f"wrote metrics to {json_path}", soft_wrap=True, highlight=False)
        if report is not None:
            write_report(
                report,
                label_names=names,
                y_true=y_true,
                probabilities=probabilities,
                thresholds=thresholds,
                predictions=decided,
                embeddings=embeddings,
                metrics=result,
                title=f"labelspace evaluate: {folder} on {data}",
                selection=(model.metadata.get("training") or {}).get("selection"),
            )
            console.print(f"wrote report to {report}", soft_wrap=True, highlight=False)

    @app.command("tune-thresholds", epilog=TUNE_EPILOG)
    def tune_thresholds_command(
        run: Annotated[Path, typer.Argument(help="Run folder (from 'labelspace train') or model folder.")],
        data: DataOption,
        metric: Annotated[str, typer.Option("--metric", help="f1 or fbeta (with --beta).")] = "f1",
        beta: Annotated[float, typer.Option("--beta", help="Beta of F-beta (< 1 favours precision).")] = 1.0,
        min_positives: Annotated[
            int, typer.Option("--min-positives", min=0, help="Labels with fewer positives follow --rare-labels.")
        ] = 5,
        fallback: Annotated[
            str, typer.Option("--fallback", help="Threshold for rare labels: a number, or 'global' (one tuned cut).")
        ] = "global",
        rare_labels: Annotated[
            str,
            typer.Option(
                "--rare-labels",
                help="Labels below --min-positives: shrink (own cut shrunk toward --fallback by their positives) "
                "or global (--fallback itself).",
            ),
        ] = "shrink",
        rule: Annotated[
            str | None,
            typer.Option("--rule", help="threshold, at_least_one or top_k (default: keep the model's)."),
        ] = None,
        top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="Labels per text for --rule top_k.")] = None,
        target_precision: Annotated[
            str | None,
            typer.Option(
                "--target-precision",
                help="Lowest threshold reaching this precision: one number (every label) or NAME=P,NAME=P.",
            ),
        ] = None,
        target_recall: Annotated[
            str | None,
            typer.Option("--target-recall", help="Highest threshold keeping this recall: one number or NAME=R,NAME=R."),
        ] = None,
        objective: Annotated[
            str,
            typer.Option(
                "--objective",
                help="Metric to tune for: macro_f1 (per label), micro_f1, samples_f1 or samples_jaccard (jointly).",
            ),
        ] = "macro_f1",
        batch_size: BatchSizeOption = 32,
        file_format: FormatOption = None,
        text_column: TextColumnOption = None,
        labels_column: LabelsColumnOption = None,
        labels_file: LabelsFileOption = None,
        labels_format: LabelsFormatOption = None,
        unknown_labels: UnknownLabelsOption = "error",
        quiet: QuietOption = False,
    ) -> None:
        """Tune per-label thresholds on dev data and rewrite the model's labelspace.json (atomically)."""
        if fallback == "global":
            fallback_value: float | str = "global"
        else:
            try:
                fallback_value = float(fallback)
            except ValueError:
                raise CommandError(f"--fallback: expected a number or 'global'; got {fallback!r}") from None
        if rule is not None and rule not in DECISION_RULES:
            raise CommandError(f"--rule: expected one of {', '.join(DECISION_RULES)}; got {rule!r}")
        if objective not in OBJECTIVES:
            raise CommandError(f"--objective: expected one of {', '.join(OBJECTIVES)}; got {objective!r}")
        if rare_labels not in RARE_LABEL_RULES:
            raise CommandError(f"--rare-labels: expected one of {', '.join(RARE_LABEL_RULES)}; got {rare_labels!r}")
        precision_target = _target_option(target_precision, "--target-precision")
        recall_target = _target_option(target_recall, "--target-recall")
        predictor, folder = _load_label_predictor(run)
        model = predictor.model
        for option, target in (("--target-precision", precision_target), ("--target-recall", recall_target)):
            per_label_targets(target, option, model.label_set.names)  # bad names/values fail before predicting
        dataset = load_labeled_over(
            data,
            data_options(file_format, text_column, labels_column, labels_file, labels_format),
            model.label_set,
            unknown_labels,
        )
        probabilities = predictor.predict_proba(dataset.texts, batch_size=batch_size, show_progress_bar=not quiet)
        y_true = dataset.labels.to_dense()
        names = model.label_set.names
        before = decision_report(
            y_true,
            probabilities,
            thresholds=predictor.thresholds,
            predictions=predictor.decide(probabilities),
            label_names=names,
        )
        tuned = tune_thresholds(
            y_true,
            probabilities,
            metric=metric,
            beta=beta,
            target_precision=precision_target,
            target_recall=recall_target,
            label_names=names,
            objective=objective,
            min_positives=min_positives,
            fallback=fallback_value,
            rare_labels=rare_labels,
        )
        model.set_thresholds(tuned.thresholds)
        if rule is not None or top_k is not None:
            model.set_decision_rule(rule or model.decision_rule, top_k if top_k is not None else model.top_k)
        model.metadata["thresholds"] = {**tuned.to_dict(), "tuned_on": str(data)}
        tuned_predictor = Predictor(model, runner=predictor.runner)  # the new thresholds and rule
        after = decision_report(
            y_true,
            probabilities,
            thresholds=tuned_predictor.thresholds,
            predictions=tuned_predictor.decide(probabilities),
            label_names=names,
        )
        save_model_config(model, folder)
        console.print(metrics_table({"before": before, "after": after}, f"{data} ({len(dataset)} texts)"))
        fell_back = int(tuned.fell_back.sum())
        got = "the fallback" if rare_labels == "global" else "a threshold shrunk toward the fallback"
        note = f"; {fell_back} label(s) with fewer than {min_positives} positives got {got}" if fell_back else ""
        console.print(
            f"wrote {len(names)} thresholds (decision rule {model.decision_rule}) to {folder}{note}",
            soft_wrap=True,
            highlight=False,
        )

    @app.command("set-thresholds", epilog=SET_THRESHOLDS_EPILOG)
    def set_thresholds_command(
        run: Annotated[Path, typer.Argument(help="Run folder (from 'labelspace train') or model folder.")],
        assignments: Annotated[
            list[str], typer.Argument(help="NAME=THRESHOLD for each label to fix (a number in [0, 1]).")
        ],
    ) -> None:
        """Fix the thresholds of the labels named (business rules); the others keep theirs. Rewrites labelspace.json."""
        values = parse_label_values(assignments, "set-thresholds")
        model, folder = _load_model(run)
        old = model.thresholds.copy()
        model.set_thresholds(values)
        # The tuning record keeps matching the saved thresholds, and says which ones were set by hand.
        record = model.metadata.get("thresholds")
        record = dict(record) if isinstance(record, dict) else {}
        record["thresholds"] = model.thresholds.tolist()
        record["set_by_hand"] = {**(record.get("set_by_hand") or {}), **values}
        model.metadata["thresholds"] = record
        save_model_config(model, folder)
        names = model.label_set.names
        for name in values:
            index = names.index(name)
            console.print(f"{name}: {old[index]:.4f} -> {model.thresholds[index]:.4f}", soft_wrap=True, highlight=False)
        console.print(f"wrote {len(values)} threshold(s) to {folder}", soft_wrap=True, highlight=False)

    @app.command("predict", epilog=PREDICT_EPILOG)
    def predict_command(
        run: Annotated[Path, typer.Argument(help="Run folder (from 'labelspace train') or model folder.")],
        texts: Annotated[list[str] | None, typer.Argument(help="Texts to label (or use --input).")] = None,
        input_path: Annotated[
            Path | None,
            typer.Option("--input", help="Texts: .txt (one a line), .jsonl ('text' field), .csv/.tsv/.parquet."),
        ] = None,
        output: Annotated[
            Path | None, typer.Option("--output", help="Write JSON lines here (default: print them).")
        ] = None,
        batch_size: BatchSizeOption = 32,
        file_format: FormatOption = None,
        text_column: TextColumnOption = None,
        allow_empty: Annotated[
            bool,
            typer.Option("--allow-empty", help="Keep empty or blank texts (they get no labels) instead of stopping."),
        ] = False,
        long_text: LongTextOption = "truncate",
        backend: BackendOption = "torch",
        threads: ThreadsOption = None,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                help="local: this process, JSON lines out; ray: Ray Data, --input DIR_OR_GLOB of Parquet/JSONL "
                "shards to --output DIR of Parquet shards (pip install 'labelspace[ray]').",
            ),
        ] = "local",
        address: Annotated[
            str | None,
            typer.Option(
                "--address", help="--engine ray: the Ray cluster to join ('auto': the one 'ray start' runs here)."
            ),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option("--workers", min=1, help="--engine ray: model copies in parallel (default: CPUs / threads)."),
        ] = None,
        quiet: QuietOption = False,
    ) -> None:
        """Label texts with the saved scoring mode, thresholds and decision rule; one JSON object a line: text,
        labels, scores."""
        if engine not in ENGINES:
            raise CommandError(f"--engine: expected one of {', '.join(ENGINES)}; got {engine!r}")
        if engine == "ray":
            options = {"file_format": file_format, "allow_empty": allow_empty, "backend": backend}
            options.update(address=address, workers=workers, threads=threads or 1, batch_size=batch_size)
            options.update(text_column=text_column or "text", long_text=long_text)
            _predict_on_ray(run, texts, input_path, output, options)
            return
        if address is not None or workers is not None:
            raise CommandError("--address and --workers apply to --engine ray")
        if texts and input_path is not None:
            raise CommandError("give texts or --input FILE, not both")
        if not texts and input_path is None:
            raise CommandError("no texts to predict: give texts or --input FILE")
        check_output_path(output, "--output", {"--input": input_path})
        if input_path is not None:
            items = read_texts(input_path, file_format=file_format, text_column=text_column, allow_empty=allow_empty)
        else:
            items = list(texts or [])
            blank = None if allow_empty else first_blank(items)
            if blank is not None:
                raise CommandError(f"text {blank + 1} of the command line: {EMPTY_TEXT}")
        if not items:
            raise CommandError(f"{input_path}: no texts to predict (give texts or --input FILE)")
        predictor, _ = _load_label_predictor(run, backend, threads, long_text)
        progress = input_path is not None and not quiet
        lines = _prediction_lines(items, predictor, batch_size=batch_size, show_progress_bar=progress)
        if output is None:
            for line in lines:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            return
        atomic_write_text(output, "".join(line + "\n" for line in lines))
        console.print(f"wrote {len(items)} predictions to {output}", soft_wrap=True, highlight=False)
