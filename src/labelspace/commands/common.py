"""What the command modules share: the console, `CommandError`, the option types, data and model loading.

Every module under `labelspace.commands` takes what it shares with the others from here (and the
output-path rule from `labelspace.commands.paths`), never from `labelspace.cli` or from another
command module, so that ``cli.py`` can import the command modules at its top.

Example:
    >>> data_options(None, "body", None, None)
    {'kind': 'labeled', 'text_column': 'body'}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from labelspace.data import DataFormatError, load
from labelspace.data.label_cells import LABELS_FORMATS
from labelspace.data.tables import (
    EXTENSIONS,
    TEXT_COLUMN_CANDIDATES,
    column_texts,
    find_column,
    not_utf8_error,
    read_table,
)
from labelspace.errors import LabelspaceError
from labelspace.files import atomic_write_text
from labelspace.inference import BACKENDS, Predictor, TorchRunner, set_threads
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import LONG_TEXT_MODES, resolve_model_path
from labelspace.models.model import CONFIG_FILE, resolve_model_folder

__all__ = [
    "DATA_OPTIONS",
    "EMPTY_TEXT",
    "BackendOption",
    "BatchSizeOption",
    "CommandError",
    "DataOption",
    "DelimiterOption",
    "FormatOption",
    "KindOption",
    "LabelColumnsOption",
    "LabelDelimiterOption",
    "LabelsColumnOption",
    "LabelsFileOption",
    "LabelsFormatOption",
    "LongTextOption",
    "QuietOption",
    "TextColumnOption",
    "ThreadsOption",
    "UnknownLabelsOption",
    "apply_long_text",
    "console",
    "data_options",
    "first_blank",
    "load_data",
    "load_dataset",
    "load_embedding_model",
    "load_predictor",
    "metrics_table",
    "read_texts",
    "resolve_model_folder",
    "warn_dropped_labels",
]

#: Where the commands print tables and progress notes (stdout).
console = Console()


class CommandError(LabelspaceError):
    """A bad argument or option of a command: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- options

DataOption = Annotated[Path, typer.Option("--data", help="Labelled data file (CSV, TSV, JSONL, Parquet, GoEmotions).")]
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
    str | None,
    typer.Option(
        "--labels-format",
        help="How a labels cell reads: names, ids, multi_hot (a 0/1 list per text, names from --labels-file) "
        "or auto (0/1 lists are detected).",
    ),
]
DelimiterOption = Annotated[str | None, typer.Option("--delimiter", help="Field separator of a CSV/TSV file.")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
LongTextOption = Annotated[
    str,
    typer.Option(
        "--long-text",
        help="A text longer than the model's max_seq_length: truncate (default) or chunk (the mean of the "
        "embeddings of overlapping windows).",
    ),
]
UnknownLabelsOption = Annotated[
    str,
    typer.Option("--unknown-labels", help="Labels the model does not know: error (default) or ignore (drop, warn)."),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help=f"What runs the model: {', '.join(BACKENDS)} (the onnx ones need 'labelspace export RUN --format onnx').",
    ),
]
ThreadsOption = Annotated[
    int | None, typer.Option("--threads", min=1, help="CPU threads for the backend (default: all cores).")
]


# ----------------------------------------------------------------------------- data


def load_data(
    path: Path,
    *,
    file_format: str | None = None,
    kind: str = "auto",
    text_column: str | None = None,
    labels_column: str | None = None,
    label_columns: str | None = None,
    label_delimiter: str | None = None,
    labels_file: Path | None = None,
    labels_format: str | None = "auto",
    delimiter: str | None = None,
    allow_empty_text: bool = False,
) -> Any:
    """The dataset in ``path``, read with the command's reader options (``--delimiter '\\t'`` means a tab).

    Raises `CommandError` for a ``--labels-format`` that is not one of
    `labelspace.data.label_cells.LABELS_FORMATS`; the reader's own errors name the file, line and column.
    """
    if delimiter == "\\t":
        delimiter = "\t"
    labels_format = "auto" if labels_format is None else labels_format
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


#: The keys of a config's ``data`` section (and of `data_options`) -> the keyword of `load_data`.
DATA_OPTIONS: dict[str, str] = {
    "format": "file_format",
    "kind": "kind",
    "text_column": "text_column",
    "labels_column": "labels_column",
    "label_columns": "label_columns",
    "label_delimiter": "label_delimiter",
    "labels_file": "labels_file",
    "labels_format": "labels_format",
    "delimiter": "delimiter",
}


def load_dataset(path: str, options: dict[str, Any]) -> Any:
    """Read a dataset with the reader options of a config's ``data`` section (keys of `DATA_OPTIONS`).

    Raises ValueError naming an unknown option.
    """
    unknown = sorted(set(options) - set(DATA_OPTIONS))
    if unknown:
        raise ValueError(f"unknown data option(s) {', '.join(unknown)} (known: {', '.join(sorted(DATA_OPTIONS))})")
    kwargs = {DATA_OPTIONS[key]: value for key, value in options.items()}
    if kwargs.get("labels_file") is not None:
        kwargs["labels_file"] = Path(kwargs["labels_file"])
    return load_data(Path(path), **kwargs)


def data_options(
    file_format: str | None,
    text_column: str | None,
    labels_column: str | None,
    labels_file: Path | None,
    labels_format: str | None = None,
) -> dict[str, Any]:
    """The reader options of a command that reads labelled data, for `load_dataset` (options not given left out)."""
    given = {
        "format": file_format,
        "text_column": text_column,
        "labels_column": labels_column,
        "labels_file": labels_file,
        "labels_format": labels_format,
    }
    return {"kind": "labeled", **{key: value for key, value in given.items() if value is not None}}


def warn_dropped_labels(where: str, dropped: dict[str, int], known_as: str) -> None:
    """Tell the user (on stderr) which labels ``--unknown-labels ignore`` dropped, with their row counts."""
    if not dropped:
        return
    listed = ", ".join(f"{name} ({count} rows)" for name, count in dropped.items())
    typer.echo(f"labelspace: warning: {where}: dropped labels not in {known_as}: {listed}", err=True)


#: The end of the message refusing an empty or blank text to predict.
EMPTY_TEXT = "empty text (pass --allow-empty to keep it; it gets no labels)"


def first_blank(texts: list[str]) -> int | None:
    """Index of the first empty or whitespace-only text, or None.

    Example:
        >>> first_blank(["a", " ", ""])
        1
    """
    return next((index for index, text in enumerate(texts) if not text.strip()), None)


def _text_lines(text: str, source: Path, allow_empty: bool, empty_error: str) -> list[str]:
    """The lines of a ``.txt`` input: split on ``\\n`` / ``\\r\\n`` only, BOM dropped, no text after a final newline.

    Only a newline ends a text, so each output row of ``predict`` / ``embed`` matches one input line: the
    other separators of `str.splitlines` (U+2028, U+2029, form feed, ``\\x1c``-``\\x1e``, ``\\x85``, a lone
    ``\\r``) stay inside the text. An empty or blank line is an error naming it, unless ``allow_empty``.
    """
    body = text.removeprefix("\ufeff")
    if not body:
        return []
    lines = body.removesuffix("\n").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    blank = None if allow_empty else first_blank(lines)
    if blank is not None:
        raise DataFormatError(source, blank + 1, None, empty_error)
    return lines


def read_texts(
    path: str | os.PathLike[str],
    *,
    file_format: str | None = None,
    text_column: str | None = None,
    allow_empty: bool = False,
    empty_error: str = EMPTY_TEXT,
) -> list[str]:
    """Texts to predict or embed from ``path`` (``labelspace predict`` / ``labelspace embed`` ``--input``).

    - ``.jsonl``: one JSON object a line, the text in field ``text`` (or ``text_column``);
    - ``.csv`` / ``.tsv`` / ``.parquet``: the ``text`` column (or ``text_column``), other columns ignored;
    - anything else (``.txt``): one text a line (split on ``\\n`` or ``\\r\\n`` only; a UTF-8 BOM is dropped).

    An empty or blank text is an error naming its line (ending with ``empty_error``), unless ``allow_empty``
    (then it is kept).

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
        return _text_lines(text, source, allow_empty, empty_error)
    table, _ = read_table(source, format=file_format, delimiter=None)
    column = find_column(table, text_column, TEXT_COLUMN_CANDIDATES, "a text column", "--text-column")
    texts = column_texts(table, column, allow_empty=True)
    blank = None if allow_empty else first_blank(texts)
    if blank is not None:
        raise table.error(table.rows[blank][0], column, empty_error)
    return texts


# ----------------------------------------------------------------------------- models


def load_embedding_model(run_or_model: str | os.PathLike[str]) -> tuple[Any, str]:
    """(model, what was loaded): a run folder, a model folder, or an encoder (``minilm``, a folder, a hub id).

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model, source = load_embedding_model(tiny_model_folder(tempfile.mkdtemp() + "/tiny"))
        >>> model.head is None, source.endswith("tiny")
        (True, True)
    """
    name = os.fspath(run_or_model)
    try:
        folder = resolve_model_folder(name)
    except ValueError:  # a folder without labelspace.json: an encoder (sentence-transformers or HF) folder
        return LabelspaceModel.from_pretrained(name), name
    except FileNotFoundError as missing:  # "minilm" or a hub id, unless it names a local path
        try:
            resolve_model_path(name)
        except FileNotFoundError:
            raise missing from None
        return LabelspaceModel.from_pretrained(name), name
    return LabelspaceModel.from_pretrained(folder), str(folder)


def apply_long_text(model: Any, mode: str) -> None:
    """Make every `encode` of ``model`` treat long texts per ``--long-text`` (``truncate`` or ``chunk``).

    Raises `CommandError` for another value.
    """
    _check_long_text(mode)
    model.encoder.long_text = mode


def _check_long_text(mode: str) -> None:
    if mode not in LONG_TEXT_MODES:
        raise CommandError(f"--long-text: expected one of {', '.join(LONG_TEXT_MODES)}; got {mode!r}")


def load_predictor(
    run_or_model: str | os.PathLike[str],
    *,
    backend: str = "torch",
    threads: int | None = None,
    long_text: str = "truncate",
    encoders: bool = False,
) -> tuple[Predictor, str]:
    """(Predictor, what was loaded) for a command's ``--backend``, ``--threads`` and ``--long-text``.

    ``run_or_model`` is a run folder or a model folder (`labelspace.inference.Predictor.load`); with
    ``encoders`` also a plain encoder (``minilm``, an encoder folder, a hub id, as `load_embedding_model`
    reads it), which only the torch backend runs. Bad option values are a `CommandError` naming the option.

    Example:
        >>> import tempfile
        >>> from labelspace.models.testing import tiny_model_folder
        >>> predictor, source = load_predictor(tiny_model_folder(tempfile.mkdtemp() + "/tiny"), encoders=True)
        >>> predictor.backend, predictor.encode(["hello"]).shape, source.endswith("tiny")
        ('torch', (1, 32), True)
    """
    if backend not in BACKENDS:
        raise CommandError(f"--backend: expected one of {', '.join(BACKENDS)}; got {backend!r}")
    _check_long_text(long_text)
    try:
        folder = resolve_model_folder(run_or_model)
    except (ValueError, FileNotFoundError):
        if not encoders:
            raise
        model, source = load_embedding_model(run_or_model)  # an encoder, or the error saying what is missing
        if backend != "torch":
            raise CommandError(
                f"--backend {backend}: {source} is an encoder, not a labelspace model folder, and runs on the "
                "torch backend only (a model folder gets its ONNX graph from `labelspace export RUN --format onnx`)"
            ) from None
        set_threads(threads)
        apply_long_text(model, long_text)
        model.eval()
        return Predictor(model, runner=TorchRunner(model, long_text=long_text)), source
    predictor = Predictor.load(run_or_model, backend, threads=threads, long_text=long_text)
    apply_long_text(predictor.model, long_text)
    return predictor, str(folder)


# ----------------------------------------------------------------------------- printing


def metrics_table(rows: dict[str, dict[str, Any]], title: str) -> Table:
    """A table with one column per row name and the main classification metrics as rows.

    Example:
        >>> table = metrics_table({"dev": {"macro_f1": 0.5}}, "dev metrics")
        >>> [column.header for column in table.columns], table.row_count
        (['metric', 'dev'], 6)
    """
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    for key in ("macro_f1", "micro_f1", "samples_f1", "samples_jaccard", "hamming_loss", "subset_accuracy"):
        values = [rows[name].get(key) for name in rows]
        table.add_row(key, *("-" if value is None else f"{value:.4f}" for value in values))
    return table


def load_labeled_over(
    path: Path, options: dict[str, Any], label_set: Any, unknown_labels: str = "error", *, purpose: str = ""
) -> Any:
    """A labelled data file re-expressed over a model's ``label_set`` (``purpose`` ends the no-texts message).

    Labels the model does not know are an error, or with ``unknown_labels="ignore"`` dropped from
    the rows with a warning naming each label and its row count.
    """
    if unknown_labels not in ("error", "ignore"):
        raise CommandError(f"--unknown-labels: expected error or ignore; got {unknown_labels!r}")
    dataset = load_dataset(str(path), options)
    if len(dataset) == 0:
        raise ValueError(f"{path}: no texts{purpose}")
    known_as = f"the model's {len(label_set)} labels"
    dataset, dropped = dataset.with_label_set(
        label_set, unknown_labels=unknown_labels, where=str(path), known_as=known_as
    )
    warn_dropped_labels(str(path), dropped, known_as)
    return dataset


def save_model_config(model: LabelspaceModel, folder: Path) -> None:
    """Rewrite only the model folder's ``labelspace.json`` (thresholds, decision rule, scoring, metadata), atomically.

    The encoder, head and index files are left as they are, and so is anything a user added to the model
    folder or to the run folder around it (rewriting the whole folder would drop those).
    """
    atomic_write_text(folder / CONFIG_FILE, json.dumps(model.config(), indent=2) + "\n")
