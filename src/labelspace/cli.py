"""The `labelspace` command.

Every command has ``--help`` with an example. Bad input ends with one line on stderr
(``labelspace: error: FILE:LINE: column 'C': what was expected``) and exit status 2; set
``LABELSPACE_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from labelspace import __version__
from labelspace.errors import LabelspaceError, RunInterrupted, is_user_error

app = typer.Typer(
    name="labelspace",
    help="Train, evaluate and serve multi-label text models with metric learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
convert_app = typer.Typer(help="Convert between dataset kinds.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(convert_app, name="convert")

console = Console()


# typer >= 0.20 ships its own copy of click's exceptions; BadParameter derives from the
# UsageError class in use either way.
UsageError: type[Exception] = typer.BadParameter.__mro__[1]


class CommandError(LabelspaceError):
    """A user-facing error: printed as one line, exit status 2."""


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"labelspace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True)
    ] = False,
) -> None:
    """Train, evaluate and serve multi-label text models with metric learning."""


# ----------------------------------------------------------------------------- data options

FormatOption = Annotated[
    str | None, typer.Option("--format", help="csv, tsv, jsonl, parquet or goemotions (default: from the extension).")
]
KindOption = Annotated[str, typer.Option("--kind", help="labeled, pairs, triplets or auto.")]
TextColumnOption = Annotated[str | None, typer.Option("--text-column", help="Column holding the text.")]
LabelsColumnOption = Annotated[
    str | None, typer.Option("--labels-column", help="Column holding a list or delimited string of labels.")
]
LabelColumnsOption = Annotated[
    str | None, typer.Option("--label-columns", help="One 0/1 column per label: 'anger,joy,...' or 'auto'.")
]
LabelDelimiterOption = Annotated[
    str | None, typer.Option("--label-delimiter", help="Separator inside a labels cell (default: first of | ; ,).")
]
LabelsFileOption = Annotated[
    Path | None, typer.Option("--labels-file", help="Label names, one a line; integer ids index into it.")
]
LabelsFormatOption = Annotated[
    str,
    typer.Option(
        "--labels-format",
        help="How a labels cell reads: names, ids, multi_hot (a 0/1 list per text, names from --labels-file) "
        "or auto (0/1 lists are detected).",
    ),
]
DelimiterOption = Annotated[str | None, typer.Option("--delimiter", help="Field separator of a CSV/TSV file.")]


def _load(
    path: Path,
    *,
    file_format: str | None = None,
    kind: str = "auto",
    text_column: str | None = None,
    labels_column: str | None = None,
    label_columns: str | None = None,
    label_delimiter: str | None = None,
    labels_file: Path | None = None,
    labels_format: str = "auto",
    delimiter: str | None = None,
    allow_empty_text: bool = False,
) -> Any:
    from labelspace.data import load
    from labelspace.data.readers import LABELS_FORMATS

    if delimiter == "\\t":
        delimiter = "\t"
    if labels_format not in LABELS_FORMATS:
        raise CommandError(f"--labels-format: expected one of {', '.join(LABELS_FORMATS)}; got {labels_format!r}")
    return load(
        path,
        format=file_format,
        kind=kind,  # type: ignore[arg-type]
        text_column=text_column,
        labels_column=labels_column,
        label_columns=label_columns,
        label_delimiter=label_delimiter,
        labels_file=labels_file,
        labels_format=labels_format,  # type: ignore[arg-type]
        delimiter=delimiter,
        allow_empty_text=allow_empty_text,
    )


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


@data_app.command("check", epilog="Example: labelspace data check train.tsv --labels-file labels.txt --json")
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
    from labelspace.data.check import collect_label_warnings, describe

    with collect_label_warnings() as reader_warnings:
        dataset = _load(
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
    report = describe(dataset, reader_warnings=reader_warnings)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_report(report)


@convert_app.command(
    "triplets-to-pairs", epilog="Example: labelspace convert triplets-to-pairs triplets.csv pairs.jsonl"
)
def convert_triplets_to_pairs(
    input_path: Annotated[Path, typer.Argument(help="Triplets file: anchor, positive, negative[, negative_2 ...].")],
    output_path: Annotated[Path, typer.Argument(help="Pairs file to write (format from its extension).")],
    file_format: FormatOption = None,
    delimiter: DelimiterOption = None,
) -> None:
    """Turn (anchor, positive, negatives) into scored pairs: (anchor, positive, 1) and (anchor, negative, 0)."""
    from labelspace.commands.paths import check_output_path
    from labelspace.data import TripletDataset
    from labelspace.data.convert import triplets_to_pairs
    from labelspace.data.writers import save

    check_output_path(output_path, "OUT", {"input": input_path})
    triplets = _load(input_path, file_format=file_format, kind="triplets", delimiter=delimiter)
    assert isinstance(triplets, TripletDataset)
    pairs = triplets_to_pairs(triplets)
    save(pairs, output_path)
    console.print(f"wrote {len(pairs)} pairs from {len(triplets)} triplets to {output_path}")


def _parse_fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise CommandError(
            f"--fractions: expected numbers separated by commas such as 0.8,0.1,0.1; got {text!r}"
        ) from None
    if len(values) not in (2, 3):
        raise CommandError(f"--fractions: expected 2 or 3 fractions (train,dev[,test]); got {text!r}")
    return values


@app.command("split", epilog="Example: labelspace split all.jsonl --out data/ --fractions 0.8,0.1,0.1 --seed 0")
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
    from labelspace.commands.paths import check_output_path
    from labelspace.data import LabeledDataset
    from labelspace.data.split import label_shares, stratified_split_indices
    from labelspace.data.writers import save

    shares = _parse_fractions(fractions)
    if output_format not in ("jsonl", "csv", "tsv", "parquet"):
        raise CommandError(f"--output-format: expected jsonl, csv, tsv or parquet; got {output_format!r}")
    names = ("train", "dev", "test")[: len(shares)]
    for name in names:
        check_output_path(out / f"{name}.{output_format}", "--out", {"input": path, "--labels-file": labels_file})
    dataset = _load(
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


# ----------------------------------------------------------------------------- model commands

from labelspace.commands import register_all  # noqa: E402  (the command modules import this module)

register_all(app)


# ----------------------------------------------------------------------------- entry point


def _quiet_libraries() -> None:
    """Hide transformers' per-file loading / saving bars: our own progress bars tell the story."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def _one_line(error: BaseException) -> str:
    """The message of a user error on one line; OSErrors as ``FILE: what went wrong`` (no errno)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
        text = f"{where}: {error.strerror[:1].lower()}{error.strerror[1:]}"
    elif isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit status 2; bugs show their traceback.

    Exit status: 2 for bad input (`labelspace.errors.is_user_error`: our own checks, bad files),
    130 when interrupted (Ctrl-C; training says how to resume), 1 for a bug, whose traceback is
    printed with a request to report it. ``LABELSPACE_DEBUG=1`` shows the traceback of user errors too.
    """
    command = typer.main.get_command(app)
    _quiet_libraries()
    debug = os.environ.get("LABELSPACE_DEBUG") not in (None, "", "0")
    try:
        result = command.main(args=argv, prog_name="labelspace", standalone_mode=False)
    except typer.Exit as done:
        sys.exit(getattr(done, "exit_code", 0))
    except RunInterrupted as interrupted:
        typer.echo(f"labelspace: {interrupted}", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("labelspace: interrupted", err=True)
        sys.exit(130)
    except typer.Abort:
        typer.echo("labelspace: aborted", err=True)
        sys.exit(130)
    except UsageError as error:
        if not error.format_message():  # type: ignore[attr-defined]
            sys.exit(2)  # help was printed for a bare group command
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        typer.echo(f"labelspace: error: {error.format_message()}{hint}", err=True)  # type: ignore[attr-defined]
        sys.exit(2)
    except Exception as error:
        if debug:
            raise
        if not is_user_error(error):
            traceback.print_exc()
            typer.echo(
                f"labelspace: internal error ({type(error).__name__}): this is a bug in labelspace {__version__}, "
                "not a problem with your input; please report it with the traceback above",
                err=True,
            )
            sys.exit(1)
        typer.echo(f"labelspace: error: {_one_line(error)}", err=True)
        sys.exit(2)
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":  # pragma: no cover
    main()
