"""``labelspace data check``, ``convert triplets-to-pairs`` and ``split``: commands on data files, no model.

``data check`` validates a file and prints its statistics, ``convert`` turns one dataset kind into
another and ``split`` makes stratified train/dev/test files. They read data with the shared reader
options of `labelspace.commands.common`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labelspace.commands.common import (
    CommandError,
    DelimiterOption,
    FormatOption,
    KindOption,
    LabelColumnsOption,
    LabelDelimiterOption,
    LabelsColumnOption,
    LabelsFileOption,
    LabelsFormatOption,
    TextColumnOption,
    console,
    load_data,
)
from labelspace.commands.paths import check_output_path
from labelspace.data import LabeledDataset, TripletDataset, check
from labelspace.data.convert import triplets_to_pairs
from labelspace.data.split import label_shares, stratified_split_indices
from labelspace.data.writers import save

__all__ = [
    "CHECK_EPILOG",
    "CONVERT_EPILOG",
    "SPLIT_EPILOG",
    "convert_app",
    "convert_triplets_to_pairs",
    "data_app",
    "data_check",
    "parse_fractions",
    "register",
    "split_command",
]

CHECK_EPILOG = "Example: labelspace data check train.tsv --labels-file labels.txt --json"
CONVERT_EPILOG = "Example: labelspace convert triplets-to-pairs triplets.csv pairs.jsonl"
SPLIT_EPILOG = "Example: labelspace split all.jsonl --out data/ --fractions 0.8,0.1,0.1 --seed 0"

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert between dataset kinds.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``data`` and ``convert`` groups and ``split`` to the app."""
    app.add_typer(data_app, name="data")
    app.add_typer(convert_app, name="convert")
    app.command("split", epilog=SPLIT_EPILOG)(split_command)


# ----------------------------------------------------------------------------- printing


def _label_table(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for row in report["label_frequencies"]:
        table.add_row(row["label"], str(row["count"]), f"{100 * row['share']:.2f}%")
    return table


def _print_report(report: dict[str, Any]) -> None:
    lengths = report["length"]
    summary = Table(show_header=False, title=f"{report['source']} ({report['kind']})", title_justify="left")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("rows", str(report["rows"]))
    if report["kind"] == "labeled":
        summary.add_row("labels", str(report["labels"]))
        summary.add_row("labels per text (cardinality)", f"{report['label_cardinality']:.3f}")
        summary.add_row("label density", f"{report['label_density']:.4f}")
        summary.add_row(
            "texts with 1 / 2 / 3+ labels",
            " / ".join(
                str(count)
                for count in (
                    report["labels_per_item"].get("1", 0),
                    report["labels_per_item"].get("2", 0),
                    sum(v for k, v in report["labels_per_item"].items() if int(k) >= 3),
                )
            ),
        )
        summary.add_row("texts without a label", str(report["texts_without_labels"]))
        summary.add_row(
            "duplicated texts (items / distinct)",
            f"{report['duplicated_texts']} / {report['distinct_duplicated_texts']}",
        )
    elif report["kind"] == "pairs":
        score = report["score"]
        summary.add_row("score min / mean / max", f"{score['min']:g} / {score['mean']:g} / {score['max']:g}")
        summary.add_row("positives (score >= 0.5)", str(score["positives (score >= 0.5)"]))
        summary.add_row("pairs of a text with itself", str(report["same_text_pairs"]))
        summary.add_row("duplicated pairs", str(report["duplicated_pairs"]))
    else:
        summary.add_row(
            "negatives per anchor", ", ".join(f"{k}: {v}" for k, v in report["negatives_per_anchor"].items())
        )
        summary.add_row("positive equal to anchor", str(report["positive_equals_anchor"]))
    summary.add_row("empty texts", str(report["empty_texts"]))
    for unit in ("characters", "words"):
        stats = lengths[unit]
        summary.add_row(
            f"{unit}: min / median / mean / p95 / max",
            f"{stats['min']} / {stats['median']:g} / {stats['mean']:g} / {stats['p95']:g} / {stats['max']}",
        )
    console.print(summary)
    if report["kind"] == "labeled":
        console.print(_label_table(report, "Label frequencies (rarest first)"))
        pairs = Table(title="Most frequent label pairs", title_justify="left")
        pairs.add_column("labels")
        pairs.add_column("count", justify="right")
        for row in report["top_label_pairs"]:
            pairs.add_row(" + ".join(row["labels"]), str(row["count"]))
        if report["top_label_pairs"]:
            console.print(pairs)
    for warning in report.get("warnings", []):
        console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- commands


@data_app.command("check", epilog=CHECK_EPILOG)
def data_check(
    path: Annotated[Path, typer.Argument(help="Data file (CSV, TSV, JSONL, Parquet, GoEmotions TSV).")],
    file_format: FormatOption = None,
    kind: KindOption = "auto",
    text_column: TextColumnOption = None,
    labels_column: LabelsColumnOption = None,
    label_columns: LabelColumnsOption = None,
    label_delimiter: LabelDelimiterOption = None,
    labels_file: LabelsFileOption = None,
    labels_format: LabelsFormatOption = "auto",
    delimiter: DelimiterOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    allow_empty_text: Annotated[
        bool, typer.Option("--allow-empty-text", help="Count empty texts instead of stopping at the first.")
    ] = False,
) -> None:
    """Validate a data file and print its statistics: label frequencies, cardinality, duplicates, lengths, warnings."""
    with check.collect_label_warnings() as reader_warnings:
        dataset = load_data(
            path,
            file_format=file_format,
            kind=kind,
            text_column=text_column,
            labels_column=labels_column,
            label_columns=label_columns,
            label_delimiter=label_delimiter,
            labels_file=labels_file,
            labels_format=labels_format,
            delimiter=delimiter,
            allow_empty_text=allow_empty_text,
        )
    report = check.describe(dataset, reader_warnings=reader_warnings)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_report(report)


@convert_app.command("triplets-to-pairs", epilog=CONVERT_EPILOG)
def convert_triplets_to_pairs(
    input_path: Annotated[Path, typer.Argument(help="Triplets file: anchor, positive, negative[, negative_2 ...].")],
    output_path: Annotated[Path, typer.Argument(help="Pairs file to write (format from its extension).")],
    file_format: FormatOption = None,
    delimiter: DelimiterOption = None,
) -> None:
    """Turn (anchor, positive, negatives) into scored pairs: (anchor, positive, 1) and (anchor, negative, 0)."""
    check_output_path(output_path, "OUT", {"input": input_path})
    triplets = load_data(input_path, file_format=file_format, kind="triplets", delimiter=delimiter)
    assert isinstance(triplets, TripletDataset)
    pairs = triplets_to_pairs(triplets)
    save(pairs, output_path)
    console.print(f"wrote {len(pairs)} pairs from {len(triplets)} triplets to {output_path}")


def parse_fractions(text: str) -> tuple[float, ...]:
    """The ``--fractions`` of ``split``: 2 or 3 numbers separated by commas (train,dev[,test]).

    Example:
        >>> parse_fractions("0.8,0.1,0.1")
        (0.8, 0.1, 0.1)
    """
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise CommandError(
            f"--fractions: expected numbers separated by commas such as 0.8,0.1,0.1; got {text!r}"
        ) from None
    if len(values) not in (2, 3):
        raise CommandError(f"--fractions: expected 2 or 3 fractions (train,dev[,test]); got {text!r}")
    return values


def split_command(
    path: Annotated[Path, typer.Argument(help="Labelled data file to split.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for train/dev/test files.")],
    fractions: Annotated[str, typer.Option("--fractions", help="Shares of train,dev[,test].")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same split).")] = 0,
    output_format: Annotated[str, typer.Option("--output-format", help="jsonl, csv, tsv or parquet.")] = "jsonl",
    file_format: FormatOption = None,
    text_column: TextColumnOption = None,
    labels_column: LabelsColumnOption = None,
    label_columns: LabelColumnsOption = None,
    label_delimiter: LabelDelimiterOption = None,
    labels_file: LabelsFileOption = None,
    labels_format: LabelsFormatOption = "auto",
    delimiter: DelimiterOption = None,
) -> None:
    """Split a multi-label dataset into train/dev/test with iterative stratification (every label keeps its share)."""
    shares = parse_fractions(fractions)
    if output_format not in ("jsonl", "csv", "tsv", "parquet"):
        raise CommandError(f"--output-format: expected jsonl, csv, tsv or parquet; got {output_format!r}")
    names = ("train", "dev", "test")[: len(shares)]
    for name in names:
        check_output_path(out / f"{name}.{output_format}", "--out", {"input": path, "--labels-file": labels_file})
    dataset = load_data(
        path,
        file_format=file_format,
        kind="labeled",
        text_column=text_column,
        labels_column=labels_column,
        label_columns=label_columns,
        label_delimiter=label_delimiter,
        labels_file=labels_file,
        labels_format=labels_format,
        delimiter=delimiter,
    )
    assert isinstance(dataset, LabeledDataset)
    indices = stratified_split_indices(dataset.labels, shares, seed=seed)
    for name, part in zip(names, indices, strict=True):
        save(dataset.subset(part), out / f"{name}.{output_format}")
    table = Table(title=f"Label share per split (seed {seed})", title_justify="left")
    table.add_column("label")
    table.add_column("all", justify="right")
    for name, part in zip(names, indices, strict=True):
        table.add_column(f"{name} ({len(part)})", justify="right")
    overall = dataset.labels.label_counts() / max(len(dataset), 1)
    per_split = label_shares(dataset.labels, indices)
    for label_id, label in enumerate(dataset.label_set.names):
        table.add_row(
            label,
            f"{100 * overall[label_id]:.1f}%",
            *(f"{100 * per_split[k, label_id]:.1f}%" for k in range(len(indices))),
        )
    console.print(table)
    console.print(f"wrote {', '.join(f'{name}.{output_format}' for name in names)} to {out}")
