"""Readers: files, data frames and Hugging Face datasets into labelspace datasets.

`load` reads CSV, TSV, JSONL, Parquet, a pandas DataFrame or a `datasets.Dataset` and returns
a `LabeledDataset`, `PairDataset` or `TripletDataset`. Every problem is reported as a
`DataFormatError` naming the file, the line, the column and what was expected.

The work is split in three: `labelspace.data.tables` reads a source into rows of raw cells and
finds and reads text columns; `labelspace.data.label_cells` parses label cells (names, ids, 0/1
vectors, one 0/1 column per label); this module decides the kind of dataset and builds it. The
names of the first two stay importable from here.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"text": ["refund please", "app is slow"],
    ...                       "labels": ["billing|refund", "performance"]})
    >>> data = load(frame)
    >>> data.label_set.names
    ['billing', 'performance', 'refund']
    >>> data[0]
    ('refund please', ['billing', 'refund'])

A 0/1 list per text (multi-hot, as scikit-learn, torchmetrics and SWIFT write it) is read as
a vector over the labels, never as label ids:

    >>> vectors = pd.DataFrame({"text": ["a", "b"], "labels": [[1, 0, 1], [0, 1, 0]]})
    >>> load(vectors, label_names=["billing", "bug", "refund"])[0]
    ('a', ['billing', 'refund'])
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.errors import DataFormatError
from labelspace.data.label_cells import (
    LABELS_FORMATS,
    LabelsFormat,
    LabelWarning,
    binary_columns,
    labels_from_binary_columns,
    labels_from_column,
)
from labelspace.data.labels import LabelSet
from labelspace.data.tables import (
    EXTENSIONS,
    FORMATS,
    LABELS_COLUMN_CANDIDATES,
    NULL_WORDS,
    TEXT_COLUMN_CANDIDATES,
    Table,
    column_texts,
    find_column,
    is_blank,
    no_text,
    not_utf8_error,
    read_table,
    require_column,
    text_cell,
)

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "LABELS_COLUMN_CANDIDATES",
    "LABELS_FORMATS",
    "NULL_WORDS",
    "TEXT_COLUMN_CANDIDATES",
    "AnyDataset",
    "Kind",
    "LabelWarning",
    "LabelsFormat",
    "column_texts",
    "find_column",
    "load",
    "not_utf8_error",
    "read_table",
]

AnyDataset = LabeledDataset | PairDataset | TripletDataset
Kind = Literal["auto", "labeled", "pairs", "triplets"]
_NEGATIVE_COLUMN = re.compile(r"^negative(?:_(\d+))?$")


def load(
    source: str | os.PathLike[str] | Any,
    *,
    format: str | None = None,
    kind: Kind = "auto",
    text_column: str | None = None,
    labels_column: str | None = None,
    label_columns: Sequence[str] | str | None = None,
    label_delimiter: str | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    label_set: LabelSet | None = None,
    label_names: Sequence[str] | None = None,
    labels_format: LabelsFormat = "auto",
    unknown_labels: Literal["error", "ignore"] = "error",
    text1_column: str = "text1",
    text2_column: str = "text2",
    score_column: str = "score",
    anchor_column: str = "anchor",
    positive_column: str = "positive",
    delimiter: str | None = None,
    allow_empty_text: bool = False,
) -> AnyDataset:
    """Read a dataset from a file, a pandas DataFrame or a Hugging Face ``datasets.Dataset``.

    Args:
        source: a path (CSV, TSV, JSONL, Parquet, GoEmotions TSV) or an in-memory table.
        format: one of ``csv``, ``tsv``, ``jsonl``, ``parquet``, ``goemotions``; by default
            taken from the extension (a headerless ``.tsv`` whose second field holds comma
            separated ids is read as GoEmotions).
        kind: ``labeled`` (text + labels), ``pairs`` (text1, text2, score) or ``triplets``
            (anchor, positive, negative[, negative_2 ...]); ``auto`` decides from the columns.
        text_column: the text column (default: the first of ``text``, ``sentence``, ...).
        labels_column: the labels column (default: the first of ``labels``, ``label``, ...):
            a list, a JSON list, or a delimited string of label names or integer ids.
        label_columns: one 0/1 column per label (SemEval style): a list of names or ``"auto"``
            (every column besides the text column whose values are all 0/1; an empty cell in
            such a column is reported as an error, not taken as a reason to drop the column).
        label_delimiter: separator inside a labels cell; by default the first of ``|``,
            ``;``, ``,`` that occurs in the file.
        labels_file: one label name a line; integer ids in the data index into it, and its
            names name the positions of 0/1 vectors.
        label_set: read against this label set (e.g. the train set's, to load dev/test).
        label_names: the label names as a list (instead of a labels file).
        labels_format: how a labels cell is read: ``names`` (every value is a label name, digits
            too), ``ids`` (every value is an integer id into the labels file / label set),
            ``multi_hot`` (a 0/1 list with one value per label, ``[1, 0, 1]``), or ``auto``
            (default): lists whose values are all 0/1 (ints, 0.0/1.0, booleans) and share one
            length are 0/1 vectors when no row could be an id list (a row repeats a value, or
            holds floats or booleans); other cells are names, or ids when they are integers not
            in the label set. Input that reads either way is refused, naming where.
        unknown_labels: ``error`` (default) or ``ignore`` names not in the labels file /
            label set.
        delimiter: field separator for CSV/TSV (default ``,`` for CSV, tab for TSV).
        allow_empty_text: keep empty texts instead of raising (``data check`` counts them).

    Raises:
        DataFormatError: bad input, naming file, line, column and what was expected.
    """
    if unknown_labels not in ("error", "ignore"):
        raise ValueError(f"unknown_labels must be 'error' or 'ignore', got {unknown_labels!r}")
    if kind not in ("auto", "labeled", "pairs", "triplets"):
        raise ValueError(f"kind must be one of auto, labeled, pairs, triplets; got {kind!r}")
    if labels_format not in LABELS_FORMATS:
        raise ValueError(f"labels_format must be one of {', '.join(LABELS_FORMATS)}; got {labels_format!r}")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ValueError(
            f"delimiter (--delimiter) must be one character other than a quote or a line break, "
            f"e.g. ',' or '\\t'; got {delimiter!r}"
        )
    given = [
        name
        for name, value in (("labels_file", labels_file), ("label_set", label_set), ("label_names", label_names))
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give one of labels_file, label_set and label_names, not {' and '.join(given)}")
    if label_names is not None:
        if isinstance(label_names, str):
            raise ValueError("label_names must be a list of names, not one string")
        label_set = LabelSet(label_names)

    table, detected_format = read_table(source, format=format, delimiter=delimiter)
    if detected_format == "goemotions":
        if labels_file is None and label_set is None:
            beside = Path(table.source).with_name("labels.txt")
            if beside.exists():
                labels_file = beside
        if label_delimiter is None:
            label_delimiter = ","
        kind = "labeled" if kind == "auto" else kind
    if labels_file is not None:
        if Path(labels_file).is_dir():
            raise DataFormatError(
                labels_file, None, None, "is a folder (expected a labels file: one label name a line)"
            )
        label_set = LabelSet.from_labels_file(labels_file)
        label_set_origin = f"labels file {labels_file}"
    elif label_names is not None:
        label_set_origin = "label_names"
    else:
        label_set_origin = "the given label set"

    if kind == "auto":
        kind = _detect_kind(table, text1_column, text2_column, anchor_column, positive_column)
    if kind != "labeled" and labels_format != "auto":
        raise ValueError(f"labels_format={labels_format!r} applies to labelled data, not to {kind}")
    if kind == "pairs":
        return _to_pairs(table, text1_column, text2_column, score_column, allow_empty_text)
    if kind == "triplets":
        return _to_triplets(table, anchor_column, positive_column, allow_empty_text)
    return _to_labeled(
        table,
        text_column=text_column,
        labels_column=labels_column,
        label_columns=label_columns,
        label_delimiter=label_delimiter,
        label_set=label_set,
        label_set_origin=label_set_origin,
        labels_format=labels_format,
        unknown_labels=unknown_labels,
        allow_empty_text=allow_empty_text,
    )


def _detect_kind(table: Table, text1: str, text2: str, anchor: str, positive: str) -> str:
    columns = set(table.columns)
    if {text1, text2} <= columns:
        return "pairs"
    if {anchor, positive} <= columns:
        return "triplets"
    return "labeled"


def _to_pairs(table: Table, text1: str, text2: str, score: str, allow_empty: bool) -> PairDataset:
    require_column(table, text1, "the first text of each pair")
    require_column(table, text2, "the second text of each pair")
    first = column_texts(table, text1, allow_empty)
    second = column_texts(table, text2, allow_empty)
    if score not in table.columns:
        scores = np.ones(len(first), dtype=np.float32)
    else:
        position = table.column_position(score)
        scores = np.array(
            [_score_cell(table, line, score, cells[position]) for line, cells in table.rows], dtype=np.float32
        )
    return PairDataset(first, second, scores, source=table.source)


def _score_cell(table: Table, line: int, column: str, value: Any) -> float:
    expected = "expected a number in [0, 1]"
    if is_blank(value):
        raise table.error(line, column, f"cell is empty/NaN ({expected})")
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise table.error(line, column, f"{value!r} is not a number ({expected})") from None
    if math.isnan(number):
        raise table.error(line, column, f"cell is NaN ({expected})")
    if not 0.0 <= number <= 1.0:
        raise table.error(line, column, f"score {number:g} is outside [0, 1] ({expected})")
    return number


def _to_triplets(table: Table, anchor: str, positive: str, allow_empty: bool) -> TripletDataset:
    require_column(table, anchor, "the anchor texts")
    require_column(table, positive, "the positive texts")
    negative_columns = sorted(
        (name for name in table.columns if _NEGATIVE_COLUMN.match(name)),
        key=lambda name: int(_NEGATIVE_COLUMN.match(name).group(1) or 1),  # type: ignore[union-attr]
    )
    if not negative_columns:
        raise table.error(
            table.header_line or None,
            "negative",
            "column is missing (a triplet needs at least one negative: 'negative', then "
            f"optionally 'negative_2', ...; found columns: {', '.join(table.columns)})",
        )
    anchors = column_texts(table, anchor, allow_empty)
    positives = column_texts(table, positive, allow_empty)
    positions = [table.column_position(name) for name in negative_columns]
    negatives: list[list[str]] = []
    for line, cells in table.rows:
        row: list[str] = []
        for name, position in zip(negative_columns, positions, strict=True):
            value = cells[position]
            if no_text(table, value):
                if not row and name == negative_columns[0]:
                    raise table.error(line, name, "triplet has no negative (expected a negative text)")
                continue
            row.append(text_cell(table, line, name, value, allow_empty))
        negatives.append(row)
    if len(negative_columns) == 1:
        return TripletDataset(anchors, positives, [row[0] for row in negatives], source=table.source)
    return TripletDataset(anchors, positives, negatives, source=table.source)


def _to_labeled(
    table: Table,
    *,
    text_column: str | None,
    labels_column: str | None,
    label_columns: Sequence[str] | str | None,
    label_delimiter: str | None,
    label_set: LabelSet | None,
    label_set_origin: str,
    labels_format: str,
    unknown_labels: str,
    allow_empty_text: bool,
) -> LabeledDataset:
    if label_columns is not None and labels_format != "auto":
        raise ValueError(
            f"labels_format={labels_format!r} reads a labels column, while label_columns= names one 0/1 "
            "column per label: give one or the other"
        )
    text_name = find_column(table, text_column, TEXT_COLUMN_CANDIDATES, "a text column", "text_column=")
    texts = column_texts(table, text_name, allow_empty_text)
    if label_columns is None and labels_column is None and labels_format == "auto":
        lowered = {name.lower() for name in table.columns}
        has_labels_column = any(candidate in lowered for candidate in LABELS_COLUMN_CANDIDATES)
        if not has_labels_column and binary_columns(table, exclude={text_name}):
            label_columns = "auto"
    if label_columns is not None:
        matrix, label_set = labels_from_binary_columns(table, label_columns, text_name, label_set)
    else:
        labels_name = find_column(
            table, labels_column, LABELS_COLUMN_CANDIDATES, "a labels column", "labels_column= or label_columns="
        )
        matrix, label_set = labels_from_column(
            table, labels_name, label_delimiter, label_set, label_set_origin, labels_format, unknown_labels
        )
    return LabeledDataset(texts, matrix, label_set, source=table.source)
