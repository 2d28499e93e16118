"""``labelspace evaluate``, ``tune-thresholds``, ``set-thresholds`` and ``predict``: use a trained model folder.

``RUN`` is a model folder (it holds ``labelspace.json``) or a run folder written by ``labelspace
train`` (its ``model/`` subfolder is the model); `resolve_model_folder` tells which. Evaluation
and tuning data are read like training data (``--format``, ``--text-column``, ``--labels-column``,
``--labels-file``) and re-expressed over the model's labels; a label the model does not know is an
error naming the file and the labels.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.table import Table

from labelspace.commands.common import (
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
    UnknownLabelsOption,
    apply_long_text,
    console,
    data_options,
    load_dataset,
    load_embedding_model,
    metrics_table,
    resolve_model_folder,
    warn_dropped_labels,
)
from labelspace.commands.paths import check_output_path
from labelspace.data import DataFormatError, LabeledDataset, PairDataset
from labelspace.data.tables import (
    EXTENSIONS,
    TEXT_COLUMN_CANDIDATES,
    column_texts,
    find_column,
    not_utf8_error,
    read_table,
)
from labelspace.evaluation import tune_thresholds
from labelspace.evaluation.model_metrics import evaluate_model
from labelspace.evaluation.report import decision_report, write_report
from labelspace.evaluation.retrieval import RELEVANCE, retrieval_metrics
from labelspace.evaluation.thresholds import OBJECTIVES, RARE_LABEL_RULES, per_label_targets
from labelspace.files import atomic_write_text
from labelspace.models import LabelspaceModel
from labelspace.models.model import CONFIG_FILE, DECISION_RULES

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
    "Example: labelspace predict runs/x --input texts.txt --output predictions.jsonl"
)


def _load_model(run: Path) -> tuple[Any, Path]:
    """The model of ``run`` (which must have a classification head) and its folder."""
    folder = resolve_model_folder(run)
    model = LabelspaceModel.from_pretrained(folder)
    if model.head is None or model.label_set is None:
        raise ValueError(f"{folder} has no classification head (an embedding-only model): it cannot predict labels")
    return model, folder


def _load_labeled(path: Path, options: dict[str, Any], label_set: Any, unknown_labels: str = "error") -> Any:
    """A labelled data file re-expressed over the model's ``label_set``.

    Labels the model does not know are an error, or with ``unknown_labels="ignore"`` dropped from
    the rows with a warning naming each label and its row count.
    """
    if unknown_labels not in ("error", "ignore"):
        raise CommandError(f"--unknown-labels: expected error or ignore; got {unknown_labels!r}")
    dataset = load_dataset(str(path), options)
    if len(dataset) == 0:
        raise ValueError(f"{path}: no texts")
    known_as = f"the model's {len(label_set)} labels"
    dataset, dropped = dataset.with_label_set(
        label_set, unknown_labels=unknown_labels, where=str(path), known_as=known_as
    )
    warn_dropped_labels(str(path), dropped, known_as)
    return dataset


def _probabilities_and_embeddings(
    model: Any, texts: list[str], batch_size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Encode once; the head's probabilities from those embeddings (same values as ``predict_proba``)."""
    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=progress)
    with torch.inference_mode():
        probabilities = model.head.predict_proba(torch.from_numpy(embeddings).to(model.device))
    return probabilities.float().cpu().numpy(), embeddings


def _save_model_config(model: Any, folder: Path) -> None:
    """Rewrite only the model folder's ``labelspace.json`` (thresholds, decision rule, metadata), atomically.

    The encoder and head files are left as they are, and so is anything a user added to the model
    folder or to the run folder around it (rewriting the whole folder would drop those).
    """
    atomic_write_text(folder / CONFIG_FILE, json.dumps(model.config(), indent=2) + "\n")


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


# ----------------------------------------------------------------------------- predict input


#: The end of the message refusing an empty or blank text to predict.
EMPTY_TEXT = "empty text (pass --allow-empty to keep it; it gets no labels)"


def _first_blank(texts: list[str]) -> int | None:
    """Index of the first empty or whitespace-only text, or None."""
    return next((index for index, text in enumerate(texts) if not text.strip()), None)


def _text_lines(text: str, source: Path, allow_empty: bool) -> list[str]:
    """The lines of a ``.txt`` input: split on ``\\n`` / ``\\r\\n`` only, BOM dropped, no text after a final newline.

    Only a newline ends a text, so each output row of ``predict`` matches one input line: the other
    separators of `str.splitlines` (U+2028, U+2029, form feed, ``\\x1c``-``\\x1e``, ``\\x85``, a lone
    ``\\r``) stay inside the text. An empty or blank line is an error naming it, unless ``allow_empty``.
    """
    body = text.removeprefix("\ufeff")
    if not body:
        return []
    lines = body.removesuffix("\n").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    blank = None if allow_empty else _first_blank(lines)
    if blank is not None:
        raise DataFormatError(source, blank + 1, None, EMPTY_TEXT)
    return lines


def read_texts(
    path: str | os.PathLike[str],
    *,
    file_format: str | None = None,
    text_column: str | None = None,
    allow_empty: bool = False,
) -> list[str]:
    """Texts to predict from ``path``.

    - ``.jsonl``: one JSON object a line, the text in field ``text`` (or ``text_column``);
    - ``.csv`` / ``.tsv`` / ``.parquet``: the ``text`` column (or ``text_column``), other columns ignored;
    - anything else (``.txt``): one text a line (split on ``\\n`` or ``\\r\\n`` only; a UTF-8 BOM is dropped).

    An empty or blank text is an error naming its line, unless ``allow_empty`` (then it is kept).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "texts.txt"
        >>> _ = path.write_bytes("first text\\fstill the first\\r\\nsecond text\\n".encode())
        >>> read_texts(path)
        ['first text\\x0cstill the first', 'second text']
    """
    source = Path(path)
    if file_format is None and source.suffix.lower() not in EXTENSIONS:
        if not source.is_file():
            raise FileNotFoundError(f"{source}: file not found")
        raw = source.read_bytes()  # bytes: no newline translation of a lone "\r"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise not_utf8_error(source, raw, error.start) from None
        return _text_lines(text, source, allow_empty)
    table, _ = read_table(source, format=file_format, delimiter=None)
    column = find_column(table, text_column, TEXT_COLUMN_CANDIDATES, "a text column", "--text-column")
    texts = column_texts(table, column, allow_empty=True)
    blank = None if allow_empty else _first_blank(texts)
    if blank is not None:
        raise table.error(table.rows[blank][0], column, EMPTY_TEXT)
    return texts


#: Line breaks for `str.splitlines` that JSON leaves raw (other control characters are escaped by `json.dumps`).
_ESCAPED_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def _prediction_lines(
    texts: list[str], probabilities: np.ndarray, decided: np.ndarray, names: list[str]
) -> Iterable[str]:
    """One JSON line per text: ``text``, ``labels`` (most probable first), ``scores`` (6 decimals).

    ``probabilities`` and ``decided`` hold one row per non-blank text, in order; a blank text (kept
    with ``--allow-empty``) is not run through the model and gets ``"labels": []`` and ``"scores": {}``.
    U+2028, U+2029 and U+0085 are written as escapes, so that no line splitter breaks a row in two.
    """
    order = np.argsort(-probabilities, axis=1, kind="stable")
    rounded = np.round(probabilities.astype(np.float64), 6).tolist()
    rows = iter(range(len(probabilities)))
    for text in texts:
        if not text.strip():
            row: dict[str, Any] = {"text": text, "labels": [], "scores": {}}
        else:
            index = next(rows)
            labels = [names[j] for j in order[index] if decided[index, j]]
            row = {"text": text, "labels": labels, "scores": dict(zip(names, rounded[index], strict=True))}
        yield json.dumps(row, ensure_ascii=False).translate(_ESCAPED_LINE_BREAKS)


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
                help="labeled, pairs, triplets or auto (a model with a head: labeled; without: from the columns).",
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
        quiet: QuietOption = False,
    ) -> None:
        """Score a model: a head on labelled data with its thresholds and decision rule (table, JSON, HTML report);
        an embedding model by retrieval (labelled data), Spearman (scored pairs) or triplet accuracy (triplets)."""
        if relevance not in RELEVANCE:
            raise CommandError(f"--relevance: expected one of {', '.join(RELEVANCE)}; got {relevance!r}")
        if kind not in ("auto", "labeled", "pairs", "triplets"):
            raise CommandError(f"--kind: expected labeled, pairs, triplets or auto; got {kind!r}")
        inputs = {"--data": data, "--labels-file": labels_file}
        check_output_path(json_path, "--json", inputs)
        check_output_path(report, "--report", inputs)
        model, folder = load_embedding_model(run)
        apply_long_text(model, long_text)
        options = data_options(file_format, text_column, labels_column, labels_file, labels_format)
        if model.head is None or kind in ("pairs", "triplets"):
            if report is not None:
                why = "has no classification head" if model.head is None else f"is scored on {kind} here"
                raise CommandError(
                    f"--report writes a classification report, which needs labelled data and a model with a "
                    f"head; {folder} {why} (use --json for the embedding metrics)"
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
        dataset = _load_labeled(data, options, model.label_set, unknown_labels)
        probabilities, embeddings = _probabilities_and_embeddings(model, dataset.texts, batch_size, not quiet)
        decided = model.decide(probabilities)
        y_true = dataset.labels.to_dense()
        names = model.label_set.names
        metrics = decision_report(
            y_true, probabilities, thresholds=model.thresholds, predictions=decided, label_names=names
        )
        header: dict[str, Any] = {"model": str(folder), "data": str(data), "decision_rule": model.decision_rule}
        if model.decision_rule == "top_k":
            header["top_k"] = model.top_k
        result = {**header, **metrics}
        rule = model.decision_rule + (f" (k={model.top_k})" if model.decision_rule == "top_k" else "")
        table = metrics_table({data.name: metrics}, f"{len(dataset)} texts, rule {rule}")
        rare_f1 = metrics.get("macro_f1_rarest_quarter")  # rarest by support in this data
        table.add_row("macro_f1_rarest_quarter", "-" if rare_f1 is None else f"{rare_f1:.4f}")
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
                thresholds=model.thresholds,
                predictions=decided,
                embeddings=embeddings,
                metrics=result,
                title=f"labelspace evaluate: {folder} on {data}",
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
        model, folder = _load_model(run)
        for option, target in (("--target-precision", precision_target), ("--target-recall", recall_target)):
            per_label_targets(target, option, model.label_set.names)  # bad names/values fail before predicting
        dataset = _load_labeled(
            data,
            data_options(file_format, text_column, labels_column, labels_file, labels_format),
            model.label_set,
            unknown_labels,
        )
        probabilities = model.predict_proba(dataset.texts, batch_size=batch_size, show_progress_bar=not quiet)
        y_true = dataset.labels.to_dense()
        names = model.label_set.names
        before = decision_report(
            y_true,
            probabilities,
            thresholds=model.thresholds,
            predictions=model.decide(probabilities),
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
        after = decision_report(
            y_true,
            probabilities,
            thresholds=model.thresholds,
            predictions=model.decide(probabilities),
            label_names=names,
        )
        _save_model_config(model, folder)
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
        _save_model_config(model, folder)
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
        quiet: QuietOption = False,
    ) -> None:
        """Label texts with the saved thresholds and decision rule; one JSON object a line: text, labels, scores."""
        if texts and input_path is not None:
            raise CommandError("give texts or --input FILE, not both")
        if not texts and input_path is None:
            raise CommandError("no texts to predict: give texts or --input FILE")
        check_output_path(output, "--output", {"--input": input_path})
        if input_path is not None:
            items = read_texts(input_path, file_format=file_format, text_column=text_column, allow_empty=allow_empty)
        else:
            items = list(texts or [])
            blank = None if allow_empty else _first_blank(items)
            if blank is not None:
                raise CommandError(f"text {blank + 1} of the command line: {EMPTY_TEXT}")
        if not items:
            raise CommandError(f"{input_path}: no texts to predict (give texts or --input FILE)")
        model, _ = _load_model(run)
        apply_long_text(model, long_text)
        names = model.label_set.names
        filled = [text for text in items if text.strip()]
        progress = input_path is not None and not quiet
        probabilities = np.zeros((0, len(names)), dtype=np.float32)
        decided = np.zeros((0, len(names)), dtype=bool)
        if filled:  # blank texts (kept with --allow-empty) are not run through the model: no labels, no scores
            found = model.predict_proba(filled, batch_size=batch_size, show_progress_bar=progress)
            probabilities = np.atleast_2d(found)
            decided = model.decide(probabilities)
        lines = _prediction_lines(items, probabilities, decided, names)
        if output is None:
            for line in lines:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            return
        atomic_write_text(output, "".join(line + "\n" for line in lines))
        console.print(f"wrote {len(items)} predictions to {output}", soft_wrap=True, highlight=False)
