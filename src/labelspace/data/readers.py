"""Readers: files, data frames and Hugging Face datasets into labelspace datasets.

`load` reads CSV, TSV, JSONL, Parquet, a pandas DataFrame or a `datasets.Dataset` and returns
a `LabeledDataset`, `PairDataset` or `TripletDataset`. Every problem is reported as a
`DataFormatError` naming the file, the line, the column and what was expected.

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"text": ["refund please", "app is slow"],
    ...                       "labels": ["billing|refund", "performance"]})
    >>> data = load(frame)
    >>> data.label_set.names
    ['billing', 'performance', 'refund']
    >>> data[0]
    ('refund please', ['billing', 'refund'])
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.errors import DataFormatError
from labelspace.data.labels import LabelMatrix, LabelSet

AnyDataset = LabeledDataset | PairDataset | TripletDataset
Kind = Literal["auto", "labeled", "pairs", "triplets"]

TEXT_COLUMN_CANDIDATES = ("text", "sentence", "content", "comment_text", "message", "body", "tweet")
LABELS_COLUMN_CANDIDATES = ("labels", "label", "tags", "categories", "emotions")
FORMATS = ("csv", "tsv", "jsonl", "parquet", "goemotions")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
NULL_WORDS = frozenset({"nan", "null", "none", "n/a", "na"})
_MISSING = object()
_NEGATIVE_COLUMN = re.compile(r"^negative(?:_(\d+))?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_GOEMOTIONS_IDS = re.compile(r"^\d+(,\d+)*$")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class _Table:
    """Rows read from a source, before interpretation: cells keep their raw types."""

    source: str
    columns: list[str]
    rows: list[tuple[int, list[Any]]]  # (line or row number, cells aligned with columns)
    line_word: str = "line"  # "line" for text files, "row" for frames and Parquet
    header_line: int = 1
    class_label_names: dict[str, list[str]] | None = None
    integer_ids: bool = False  # GoEmotions: every label must be an integer id
    # Delimited text has no null: there the words "nan" / "null" stand for a missing text. JSON,
    # Parquet and frames have real nulls, so a string "null" there is a text like any other.
    null_words: bool = True

    def error(self, line: int | None, column: str | None, message: str) -> DataFormatError:
        return DataFormatError(self.source, line, column, message, line_word=self.line_word)

    def column_position(self, name: str) -> int:
        return self.columns.index(name)


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
        labels_file: one label name a line; integer ids in the data index into it.
        label_set: read against this label set (e.g. the train set's, to load dev/test).
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
    if labels_file is not None and label_set is not None:
        raise ValueError("give either labels_file or label_set, not both")

    table, detected_format = _read_table(source, format=format, delimiter=delimiter)
    if detected_format == "goemotions":
        if labels_file is None and label_set is None:
            beside = Path(table.source).with_name("labels.txt")
            if beside.exists():
                labels_file = beside
        if label_delimiter is None:
            label_delimiter = ","
        kind = "labeled" if kind == "auto" else kind
    if labels_file is not None:
        label_set = LabelSet.from_labels_file(labels_file)
        label_set_origin = f"labels file {labels_file}"
    else:
        label_set_origin = "the given label set"

    if kind == "auto":
        kind = _detect_kind(table, text1_column, text2_column, anchor_column, positive_column)
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
        unknown_labels=unknown_labels,
        allow_empty_text=allow_empty_text,
    )


# --------------------------------------------------------------------------- reading tables


def _read_table(source: Any, *, format: str | None, delimiter: str | None) -> tuple[_Table, str]:
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if _is_dataframe(source):
        return _table_from_frame(source, "<DataFrame>"), "dataframe"
    if _is_hf_dataset(source):
        return _table_from_hf_dataset(source), "dataset"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path, a pandas DataFrame or a datasets.Dataset; got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise DataFormatError(path, None, None, "file not found")
    if path.is_dir():
        raise DataFormatError(path, None, None, "is a folder (expected a data file)")
    if format is None:
        format = EXTENSIONS.get(path.suffix.lower())
        if format is None:
            raise DataFormatError(
                path,
                None,
                None,
                f"cannot tell the format from the extension '{path.suffix}' "
                f"(expected one of {', '.join(sorted(EXTENSIONS))}, or pass format=)",
            )
    if format == "parquet":
        return _table_from_parquet(path), format
    text = _decode(path, format, delimiter or ("," if format == "csv" else "\t"))
    if not text.strip():
        raise DataFormatError(
            path,
            1,
            None,
            "file is empty (expected a header line naming the columns, then one item a line)"
            if format != "jsonl"
            else "file is empty (expected one JSON object a line)",
        )
    if format == "jsonl":
        return _table_from_jsonl(path, text), format
    if format == "tsv" and delimiter is None and _looks_like_goemotions(text):
        format = "goemotions"
    if format == "goemotions":
        return _table_from_goemotions(path, text), format
    return _table_from_delimited(path, text, delimiter or ("," if format == "csv" else "\t")), format


def _decode(path: Path, file_format: str, field_delimiter: str) -> str:
    """UTF-8 text of the file with any BOM removed; bad bytes are reported by line and column."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        line = raw.count(b"\n", 0, error.start) + 1
        column = _column_of_byte(raw, error.start, file_format, field_delimiter)
        byte = raw[error.start : error.start + 1].hex()
        raise DataFormatError(
            path,
            line,
            column,
            f"byte 0x{byte} at byte {error.start - line_start + 1} of the line is not valid UTF-8 "
            "(expected UTF-8 text: re-save the file as UTF-8)",
        ) from None


def _column_of_byte(raw: bytes, offset: int, file_format: str, field_delimiter: str) -> str | None:
    """The column holding byte ``offset`` of a delimited file (None in the header, JSONL, ...)."""
    if file_format not in ("csv", "tsv", "goemotions"):
        return None
    # "x" stands in for the bad byte so that the field it starts is always the last one parsed
    prefix = raw[:offset].decode("utf-8-sig", "replace") + "x"
    first_line = prefix.split("\n", 1)[0].rstrip("\r")
    if file_format == "goemotions" or (field_delimiter == "\t" and _looks_like_goemotions(first_line)):
        if "\n" not in prefix:
            return None
        names = ["text", "labels", "id"]
        position = prefix.rsplit("\n", 1)[1].count("\t")
        return names[position] if position < len(names) else None
    try:
        records = [
            record
            for record in csv.reader(io.StringIO(prefix, newline=""), delimiter=field_delimiter)
            if record and not (len(record) == 1 and not record[0].strip())
        ]
    except csv.Error:
        return None
    if len(records) < 2:  # the bad byte is in the header
        return None
    header, position = records[0], len(records[-1]) - 1
    return header[position].strip() if position < len(header) else None


def _check_header(path: Path, columns: list[str], line: int = 1) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(columns, start=1):
        if name == "":
            raise DataFormatError(path, line, None, f"column {position} of the header has no name")
        if name in seen:
            raise DataFormatError(
                path,
                line,
                name,
                f"column name appears twice (columns {seen[name]} and {position}); expected unique column names",
            )
        seen[name] = position


def _table_from_delimited(path: Path, text: str, delimiter: str) -> _Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[Any]]] = []
    header: list[str] | None = None
    previous_line = 0
    try:
        for record in reader:
            start_line = previous_line + 1
            previous_line = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in record]
                _check_header(path, header, start_line)
                header_line = start_line
                continue
            if len(record) != len(header):
                hint = ""
                if reader.line_num > start_line and any("\n" in field or "\r" in field for field in record):
                    hint = (
                        f"; a quoted field runs from line {start_line} to line {reader.line_num}: "
                        "is a closing quote missing?"
                    )
                raise DataFormatError(
                    path,
                    start_line,
                    None,
                    f"found {len(record)} field{'s' if len(record) != 1 else ''}, expected {len(header)} "
                    f"({', '.join(header)}) separated by {delimiter!r}{hint}",
                )
            rows.append((start_line, record))
    except csv.Error as error:
        raise DataFormatError(path, reader.line_num, None, f"malformed {delimiter!r}-separated line: {error}") from None
    assert header is not None  # the file is not blank
    if not rows:
        raise DataFormatError(
            path, header_line + 1, None, "the file has a header but no data rows (expected at least one item)"
        )
    return _Table(str(path), header, rows, header_line=header_line)


def _looks_like_goemotions(text: str) -> bool:
    first = text.split("\n", 1)[0].rstrip("\r").split("\t")
    return len(first) == 3 and bool(_GOEMOTIONS_IDS.match(first[1].strip()))


def _table_from_goemotions(path: Path, text: str) -> _Table:
    rows: list[tuple[int, list[Any]]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataFormatError(
                path,
                number,
                None,
                f"found {len(fields)} tab-separated fields, expected 3 (text, label ids, comment id)",
            )
        rows.append((number, fields))
    return _Table(str(path), ["text", "labels", "id"], rows, header_line=0, integer_ids=True)


def _table_from_jsonl(path: Path, text: str) -> _Table:
    rows: list[tuple[int, list[Any]]] = []
    columns: list[str] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                path,
                number,
                None,
                f"malformed JSON at character {error.colno}: {error.msg} (expected one JSON object a line)",
            ) from None
        if not isinstance(record, dict):
            raise DataFormatError(path, number, None, f"expected a JSON object, found a JSON {type(record).__name__}")
        if columns is None:
            columns = list(record)
            if not columns:
                raise DataFormatError(path, number, None, "the first object has no keys (expected e.g. text, labels)")
        rows.append((number, [record.get(name, _MISSING) for name in columns]))
        extra = [key for key in record if key not in columns]
        if extra:
            columns.extend(extra)
            for _, cells in rows:
                cells.extend([_MISSING] * (len(columns) - len(cells)))
            rows[-1] = (number, [record.get(name, _MISSING) for name in columns])
    assert columns is not None
    return _Table(str(path), columns, rows, header_line=0, null_words=False)


def _table_from_frame(frame: Any, source: str, class_label_names: dict[str, list[str]] | None = None) -> _Table:
    columns = [str(name) for name in frame.columns]
    seen: dict[str, int] = {}
    for position, name in enumerate(columns, start=1):
        if name in seen:
            raise DataFormatError(
                source,
                None,
                name,
                f"column name appears twice (columns {seen[name]} and {position}); expected unique column names",
            )
        seen[name] = position
    if len(frame) == 0:
        raise DataFormatError(source, None, None, "has no rows (expected at least one item)")
    data = [frame.iloc[:, position].tolist() for position in range(len(columns))]
    rows = [(number + 1, [column[number] for column in data]) for number in range(len(frame))]
    return _Table(
        source, columns, rows, line_word="row", header_line=0, class_label_names=class_label_names, null_words=False
    )


def _table_from_parquet(path: Path) -> _Table:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise DataFormatError(path, None, None, f"cannot read as Parquet: {error}") from None
    return _table_from_frame(frame, str(path))


def _table_from_hf_dataset(dataset: Any) -> _Table:
    class_label_names: dict[str, list[str]] = {}
    for name, feature in getattr(dataset, "features", {}).items():
        inner = getattr(feature, "feature", feature)
        if hasattr(inner, "names") and isinstance(inner.names, list):
            class_label_names[name] = list(inner.names)
    return _table_from_frame(dataset.to_pandas(), "<datasets.Dataset>", class_label_names)


def _is_dataframe(source: Any) -> bool:
    return type(source).__name__ == "DataFrame" and hasattr(source, "iloc")


def _is_hf_dataset(source: Any) -> bool:
    return hasattr(source, "column_names") and hasattr(source, "to_pandas") and hasattr(source, "features")


# --------------------------------------------------------------------------- interpreting


def _detect_kind(table: _Table, text1: str, text2: str, anchor: str, positive: str) -> str:
    columns = set(table.columns)
    if {text1, text2} <= columns:
        return "pairs"
    if {anchor, positive} <= columns:
        return "triplets"
    return "labeled"


def _is_null(value: Any) -> bool:
    if value is None or value is _MISSING:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in NULL_WORDS and value.strip() != ""


_TEXT_NULL_WORDS = ("nan", "null")


def _no_text(table: _Table, value: Any) -> bool:
    """True for a missing, null, NaN or blank text cell (and "nan" / "null" in delimited files)."""
    if value is None or value is _MISSING or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        word = value.strip().lower()
        return not word or (table.null_words and word in _TEXT_NULL_WORDS)
    return False


def _text_cell(table: _Table, line: int, column: str, value: Any, allow_empty: bool) -> str:
    if value is _MISSING:
        raise table.error(line, column, "key is missing (expected a text)")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise table.error(line, column, "cell is empty (null/NaN; expected a text)")
    if not isinstance(value, str):
        raise table.error(line, column, f"expected a text, found {type(value).__name__} {value!r}")
    if table.null_words and value.strip().lower() in _TEXT_NULL_WORDS:
        raise table.error(line, column, f"cell is {value.strip()!r} (expected a text)")
    if not value.strip() and not allow_empty:
        raise table.error(line, column, "text is empty (expected a non-empty text)")
    return value


def _require_column(table: _Table, name: str, what: str) -> str:
    if name not in table.columns:
        raise table.error(
            table.header_line or None,
            name,
            f"column is missing (expected {what}; found columns: {', '.join(table.columns)})",
        )
    return name


def _find_column(table: _Table, given: str | None, candidates: Sequence[str], what: str, option: str) -> str:
    if given is not None:
        return _require_column(table, given, what)
    lowered = {name.lower(): name for name in table.columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise table.error(
        table.header_line or None,
        candidates[0],
        f"column is missing (expected {what} named one of {', '.join(candidates)}, "
        f"or pass {option}; found columns: {', '.join(table.columns)})",
    )


def _texts(table: _Table, column: str, allow_empty: bool) -> list[str]:
    position = table.column_position(column)
    return [_text_cell(table, line, column, cells[position], allow_empty) for line, cells in table.rows]


def _to_pairs(table: _Table, text1: str, text2: str, score: str, allow_empty: bool) -> PairDataset:
    _require_column(table, text1, "the first text of each pair")
    _require_column(table, text2, "the second text of each pair")
    first = _texts(table, text1, allow_empty)
    second = _texts(table, text2, allow_empty)
    if score not in table.columns:
        scores = np.ones(len(first), dtype=np.float32)
    else:
        position = table.column_position(score)
        scores = np.array(
            [_score_cell(table, line, score, cells[position]) for line, cells in table.rows], dtype=np.float32
        )
    return PairDataset(first, second, scores, source=table.source)


def _score_cell(table: _Table, line: int, column: str, value: Any) -> float:
    expected = "expected a number in [0, 1]"
    if _is_null(value) or (isinstance(value, str) and not value.strip()):
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


def _to_triplets(table: _Table, anchor: str, positive: str, allow_empty: bool) -> TripletDataset:
    _require_column(table, anchor, "the anchor texts")
    _require_column(table, positive, "the positive texts")
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
    anchors = _texts(table, anchor, allow_empty)
    positives = _texts(table, positive, allow_empty)
    positions = [table.column_position(name) for name in negative_columns]
    negatives: list[list[str]] = []
    for line, cells in table.rows:
        row: list[str] = []
        for name, position in zip(negative_columns, positions, strict=True):
            value = cells[position]
            if _no_text(table, value):
                if not row and name == negative_columns[0]:
                    raise table.error(line, name, "triplet has no negative (expected a negative text)")
                continue
            row.append(_text_cell(table, line, name, value, allow_empty))
        negatives.append(row)
    if len(negative_columns) == 1:
        return TripletDataset(anchors, positives, [row[0] for row in negatives], source=table.source)
    return TripletDataset(anchors, positives, negatives, source=table.source)


def _to_labeled(
    table: _Table,
    *,
    text_column: str | None,
    labels_column: str | None,
    label_columns: Sequence[str] | str | None,
    label_delimiter: str | None,
    label_set: LabelSet | None,
    label_set_origin: str,
    unknown_labels: str,
    allow_empty_text: bool,
) -> LabeledDataset:
    text_name = _find_column(table, text_column, TEXT_COLUMN_CANDIDATES, "a text column", "text_column=")
    texts = _texts(table, text_name, allow_empty_text)
    if label_columns is None and labels_column is None:
        lowered = {name.lower() for name in table.columns}
        has_labels_column = any(candidate in lowered for candidate in LABELS_COLUMN_CANDIDATES)
        if not has_labels_column and _binary_columns(table, exclude={text_name}):
            label_columns = "auto"
    if label_columns is not None:
        matrix, label_set = _labels_from_binary_columns(table, label_columns, text_name, label_set)
    else:
        labels_name = _find_column(
            table, labels_column, LABELS_COLUMN_CANDIDATES, "a labels column", "labels_column= or label_columns="
        )
        matrix, label_set = _labels_from_column(
            table, labels_name, label_delimiter, label_set, label_set_origin, unknown_labels
        )
    return LabeledDataset(texts, matrix, label_set, source=table.source)


_TRUE_VALUES = {"1", "1.0", "true", "yes"}
_FALSE_VALUES = {"0", "0.0", "false", "no", ""}


def _binary_value(value: Any) -> int | None:
    """0 or 1 when ``value`` reads as a 0/1 flag, else None."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value) if value in (0, 1) else None
    if isinstance(value, (float, np.floating)):
        return int(value) if value in (0.0, 1.0) else None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_VALUES:
            return 1
        if word in _FALSE_VALUES and word != "":
            return 0
    return None


def _is_blank(value: Any) -> bool:
    return _is_null(value) or (isinstance(value, str) and not value.strip())


def _binary_columns(table: _Table, exclude: set[str]) -> list[str]:
    """Columns whose values are all 0/1 flags, empty cells aside (at least one flag).

    A 0/1 column with an empty cell is still found, so that the empty cell is reported
    (file, line, column) instead of the whole label column being dropped without a word.
    """
    found = []
    for position, name in enumerate(table.columns):
        if name in exclude:
            continue
        flags = 0
        for _, cells in table.rows:
            value = cells[position]
            if _binary_value(value) is not None:
                flags += 1
            elif not _is_blank(value):
                break
        else:
            if flags:
                found.append(name)
    return found


def _labels_from_binary_columns(
    table: _Table, label_columns: Sequence[str] | str, text_name: str, label_set: LabelSet | None
) -> tuple[LabelMatrix, LabelSet]:
    if isinstance(label_columns, str):
        if label_columns == "auto":
            names = _binary_columns(table, exclude={text_name})
            if not names:
                raise table.error(
                    table.header_line or None,
                    None,
                    "no 0/1 label columns found (expected columns besides the text whose every value is 0 or 1)",
                )
        else:
            names = [name.strip() for name in label_columns.split(",") if name.strip()]
    else:
        names = list(label_columns)
    for name in names:
        _require_column(table, name, "a 0/1 label column")
    if label_set is None:
        label_set = LabelSet(names)
    else:
        missing = [name for name in label_set.names if name not in names]
        if missing:
            raise table.error(
                table.header_line or None,
                missing[0],
                f"column is missing (expected one 0/1 column for every label of {label_set!r})",
            )
    order = [table.column_position(name) for name in label_set.names]
    dense = np.zeros((len(table.rows), len(label_set)), dtype=np.uint8)
    for row_index, (line, cells) in enumerate(table.rows):
        for label_id, position in enumerate(order):
            value = _binary_value(cells[position])
            if value is None and _is_blank(cells[position]):
                raise table.error(line, table.columns[position], "cell is empty/NaN (expected 0 or 1)")
            if value is None:
                raise table.error(
                    line, table.columns[position], f"{cells[position]!r} is not a 0/1 label flag (expected 0 or 1)"
                )
            dense[row_index, label_id] = value
    return LabelMatrix.from_dense(dense), label_set


def _label_tokens(table: _Table, line: int, column: str, value: Any, delimiter: str | None) -> list[Any]:
    if value is _MISSING:
        raise table.error(line, column, "key is missing (expected a list of labels; use [] for none)")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise table.error(line, column, "cell is NaN/null (expected label names or ids; leave it empty for no label)")
    if isinstance(value, (list, tuple, np.ndarray)):
        tokens = list(value)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        tokens = [int(value)]
    elif isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return []
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError as error:
                raise table.error(
                    line,
                    column,
                    f"malformed JSON list at character {error.colno}: {error.msg} "
                    '(expected a JSON list of names or ids, e.g. ["anger", "joy"], with double quotes)',
                ) from None
            if not isinstance(parsed, list):
                raise table.error(line, column, "expected a JSON list of labels")
            tokens = parsed
        else:
            tokens = stripped.split(delimiter) if delimiter else [stripped]
    else:
        raise table.error(
            line, column, f"expected a list or a string of labels, found {type(value).__name__} {value!r}"
        )
    result: list[Any] = []
    for token in tokens:
        if isinstance(token, str):
            token = token.strip()
            if not token:
                raise table.error(
                    line, column, f"empty label name in {value!r} (expected names separated by {delimiter!r})"
                )
            if token.lower() in NULL_WORDS:
                raise table.error(line, column, f"{token!r} is not a label (expected label names or ids)")
        elif isinstance(token, float) and math.isnan(token):
            raise table.error(line, column, "NaN in the label list (expected label names or ids)")
        elif isinstance(token, (np.integer,)):
            token = int(token)
        elif not isinstance(token, int) or isinstance(token, bool):
            raise table.error(line, column, f"label {token!r} is neither a name nor an integer id")
        result.append(token)
    return result


def _detect_label_delimiter(table: _Table, position: int) -> str | None:
    counts = dict.fromkeys(("|", ";", ","), 0)
    for _, cells in table.rows:
        value = cells[position]
        if isinstance(value, str) and not value.lstrip().startswith("["):
            for candidate in counts:
                if candidate in value:
                    counts[candidate] += 1
    for candidate, count in counts.items():
        if count:
            return candidate
    return None


def _labels_from_column(
    table: _Table,
    column: str,
    delimiter: str | None,
    label_set: LabelSet | None,
    label_set_origin: str,
    unknown_labels: str,
) -> tuple[LabelMatrix, LabelSet]:
    position = table.column_position(column)
    if delimiter is None:
        delimiter = _detect_label_delimiter(table, position)
    token_rows = [(line, _label_tokens(table, line, column, cells[position], delimiter)) for line, cells in table.rows]
    if table.integer_ids:
        for line, tokens in token_rows:
            for token in tokens:
                if not (isinstance(token, int) or _INTEGER.match(str(token))):
                    raise table.error(
                        line,
                        column,
                        f"label id {str(token)!r} is not an integer (expected comma-separated integer "
                        "ids, e.g. 3,17, each the line of a name in labels.txt counting from 0)",
                    )
    if label_set is None and table.class_label_names and column in table.class_label_names:
        label_set = LabelSet(table.class_label_names[column])
        label_set_origin = "the dataset's ClassLabel names"
    if label_set is None:
        names = {str(token) for _, tokens in token_rows for token in tokens}
        integers = bool(names) and all(_INTEGER.match(name) for name in names)
        label_set = LabelSet(sorted(names, key=int) if integers else sorted(names))
    size = len(label_set)
    ignored = 0
    id_rows: list[list[int]] = []
    for line, tokens in token_rows:
        ids: list[int] = []
        for token in tokens:
            name = str(token)
            label_id = label_set.get(name)
            if label_id is None and (isinstance(token, int) or _INTEGER.match(name)):
                number = int(name)
                if not 0 <= number < size:
                    raise table.error(
                        line,
                        column,
                        f"label id {number} is out of range (expected an id in 0..{size - 1}: "
                        f"{label_set_origin} has {size} labels)",
                    )
                label_id = number
            if label_id is None:
                if unknown_labels == "ignore":
                    ignored += 1
                    continue
                shown = ", ".join(label_set.names[:12]) + (", ..." if size > 12 else "")
                raise table.error(
                    line,
                    column,
                    f"label '{name}' is not in {label_set_origin} "
                    f"(expected one of {shown}, or an integer id in 0..{size - 1})",
                )
            ids.append(label_id)
        id_rows.append(ids)
    if ignored:
        warnings.warn(f"{table.source}: ignored {ignored} label(s) not in {label_set_origin}", stacklevel=3)
    return LabelMatrix.from_lists(id_rows, size), label_set
