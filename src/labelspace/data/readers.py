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

A 0/1 list per text (multi-hot, as scikit-learn, torchmetrics and SWIFT write it) is read as
a vector over the labels, never as label ids:

    >>> vectors = pd.DataFrame({"text": ["a", "b"], "labels": [[1, 0, 1], [0, 1, 0]]})
    >>> load(vectors, label_names=["billing", "bug", "refund"])[0]
    ('a', ['billing', 'refund'])
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import sys
import warnings
from collections import Counter
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
LabelsFormat = Literal["auto", "names", "ids", "multi_hot"]
LABELS_FORMATS = ("auto", "names", "ids", "multi_hot")

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


class LabelWarning(UserWarning):
    """Labels that read without error but look wrong: a row naming a label twice, or ids 0 and 1 only.

    `load` emits it with `warnings.warn`; ``labelspace data check`` lists it in the report's ``warnings``.
    """


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
        offset = error.start + (len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0)  # after the BOM
        raise not_utf8_error(path, raw, offset, file_format, field_delimiter) from None


def not_utf8_error(
    path: Path, raw: bytes, offset: int, file_format: str = "txt", field_delimiter: str = ","
) -> DataFormatError:
    """The error for the byte at ``offset`` of file ``path`` (content ``raw``) that is not UTF-8: line, column, byte."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    line = raw.count(b"\n", 0, offset) + 1
    column = _column_of_byte(raw, offset, file_format, field_delimiter)
    byte = raw[offset : offset + 1].hex()
    return DataFormatError(
        path,
        line,
        column,
        f"byte 0x{byte} at byte {offset - line_start + 1} of the line is not valid UTF-8 "
        "(expected UTF-8 text: re-save the file as UTF-8)",
    )


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
    labels_format: str,
    unknown_labels: str,
    allow_empty_text: bool,
) -> LabeledDataset:
    if label_columns is not None and labels_format != "auto":
        raise ValueError(
            f"labels_format={labels_format!r} reads a labels column, while label_columns= names one 0/1 "
            "column per label: give one or the other"
        )
    text_name = _find_column(table, text_column, TEXT_COLUMN_CANDIDATES, "a text column", "text_column=")
    texts = _texts(table, text_name, allow_empty_text)
    if label_columns is None and labels_column is None and labels_format == "auto":
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
            table, labels_name, label_delimiter, label_set, label_set_origin, labels_format, unknown_labels
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


_CHOOSE_FORMAT = (
    "pass labels_format='multi_hot' or labels_format='ids' (CLI: --labels-format multi_hot or --labels-format ids)"
)


@dataclass
class _LabelsCell:
    """A labels cell cut into its values, nothing checked yet; ``values`` is None for a null or missing cell."""

    line: int
    raw: Any
    values: list[Any] | None
    is_list: bool  # written as a list (a list, an array, or a JSON list in text)


def _split_labels_cell(table: _Table, line: int, column: str, value: Any, delimiter: str | None) -> _LabelsCell:
    if value is _MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
        return _LabelsCell(line, value, None, False)
    if isinstance(value, (list, tuple, np.ndarray)):
        return _LabelsCell(line, value, list(value), True)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return _LabelsCell(line, value, [int(value)], False)
    if not isinstance(value, str):
        raise table.error(
            line, column, f"expected a list or a string of labels, found {type(value).__name__} {value!r}"
        )
    stripped = value.strip()
    if not stripped:
        return _LabelsCell(line, value, [], False)
    if not stripped.startswith("["):
        return _LabelsCell(line, value, stripped.split(delimiter) if delimiter else [stripped], False)
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
    return _LabelsCell(line, value, parsed, True)


def _label_tokens(table: _Table, cell: _LabelsCell, column: str, delimiter: str | None) -> list[Any]:
    """The label names (str) and ids (int) of a cell read as names or ids."""
    line = cell.line
    if cell.values is None:
        if cell.raw is _MISSING:
            raise table.error(line, column, "key is missing (expected a list of labels; use [] for none)")
        raise table.error(line, column, "cell is NaN/null (expected label names or ids; leave it empty for no label)")
    result: list[Any] = []
    for token in cell.values:
        if isinstance(token, str):
            token = token.strip()
            if not token:
                raise table.error(
                    line, column, f"empty label name in {cell.raw!r} (expected names separated by {delimiter!r})"
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


def _is_flag(value: Any) -> bool:
    """A 0/1 value written as a number or a boolean (text such as "1" does not count)."""
    return not isinstance(value, str) and _binary_value(value) is not None


def _cannot_be_ids(values: list[Any]) -> bool:
    """A 0/1 list no id list could be: it holds a float or a boolean, or repeats a value."""
    if any(isinstance(value, (bool, np.bool_, float, np.floating)) for value in values):
        return True
    return len({int(value) for value in values}) < len(values)


def _shown(cell: _LabelsCell) -> str:
    """A cell as a message shows it: ``[1, 0, 1]``, or the text as written."""
    if not cell.is_list or cell.values is None:
        text = repr(cell.raw)
        return text if len(text) <= 60 else text[:57] + "..."
    values = [value.item() if isinstance(value, np.generic) else value for value in cell.values[:8]]
    return (
        "["
        + ", ".join(json.dumps(value, ensure_ascii=False) for value in values)
        + (", ...]" if len(cell.values) > 8 else "]")
    )


def _reads_as_multi_hot(table: _Table, column: str, cells: list[_LabelsCell], label_set: LabelSet | None) -> bool:
    """Whether a labels column holds 0/1 vectors (``labels_format="auto"``); input that reads both ways is refused.

    The 0/1 vectors are the cells written as non-empty lists of 0/1 numbers or booleans. They are
    vectors when every non-null cell is one, they share one length, and at least one of them cannot
    be a list of label ids (a float or boolean, or a value twice: every 0/1 list longer than 2 repeats
    a value). When every such list is also a valid id list, the column is read as ids unless it is
    all ``[0, 1]`` / ``[1, 0]`` with no labels of another count saying so: that is refused.
    """
    vectors = [cell for cell in cells if cell.is_list and cell.values and all(map(_is_flag, cell.values))]
    if not vectors:
        return False
    first, length = vectors[0], len(vectors[0].values or ())
    vector_ids = {id(cell) for cell in vectors}
    others = [cell for cell in cells if cell.values is not None and id(cell) not in vector_ids]
    odd_length = next((cell for cell in vectors if len(cell.values or ()) != length), None)
    proof = next((cell for cell in vectors if _cannot_be_ids(cell.values or [])), None)
    if proof is None:
        if others or odd_length is not None or length != 2 or (label_set is not None and len(label_set) != 2):
            return False
        raise table.error(
            first.line,
            column,
            f"every labels cell is a list of two 0/1 values such as {_shown(first)}, which reads both as the "
            f"label ids 0 and 1 and as a 0/1 vector over 2 labels (multi-hot); {_CHOOSE_FORMAT}",
        )
    if others:
        other = others[0]
        raise table.error(
            other.line,
            column,
            f"{_shown(other)} is not a 0/1 vector like {_shown(proof)} on {table.line_word} {proof.line}: the "
            f"column mixes 0/1 vectors (multi-hot) with label names or ids; {_CHOOSE_FORMAT}",
        )
    if odd_length is not None:
        raise table.error(
            odd_length.line,
            column,
            f"0/1 list {_shown(odd_length)} has {len(odd_length.values or ())} values while the one on "
            f"{table.line_word} {first.line} has {length} (a 0/1 vector has one value per label): fix the list, "
            f"or {_CHOOSE_FORMAT}",
        )
    return True


def _labels_from_vectors(
    table: _Table, column: str, cells: list[_LabelsCell], label_set: LabelSet | None, label_set_origin: str
) -> tuple[LabelMatrix, LabelSet]:
    """Multi-hot cells (one 0/1 value per label) into a label matrix; without names, the positions name the labels."""
    size = len(label_set) if label_set is not None else None
    expected_from = f"one per label of {label_set_origin}"
    example = "a 0/1 vector with one value per label, e.g. [1, 0, 1]"
    for cell in cells:
        if cell.values is None:
            what = "key is missing" if cell.raw is _MISSING else "cell is NaN/null"
            raise table.error(cell.line, column, f"{what} (expected {example})")
        if size is None:
            if not cell.values:
                raise table.error(cell.line, column, f"empty 0/1 vector (expected {example})")
            size, expected_from = len(cell.values), f"as on {table.line_word} {cell.line}"
        if len(cell.values) != size:
            raise table.error(
                cell.line,
                column,
                f"{_shown(cell)} has {len(cell.values)} value{'' if len(cell.values) == 1 else 's'}, expected a 0/1 "
                f"vector of {size} ({expected_from})",
            )
    assert size is not None  # a table has rows
    block = np.asarray([cell.values for cell in cells]) if size else np.zeros((len(cells), 0), dtype=np.uint8)
    if block.ndim != 2 or block.dtype.kind not in "biuf" or not np.isin(block, (0, 1)).all():
        for cell in cells:  # the first value that is not 0/1, for the message
            for position, value in enumerate(cell.values or (), start=1):
                if _binary_value(value) is None:
                    raise table.error(
                        cell.line,
                        column,
                        f"value {value!r} at position {position} of {_shown(cell)} is not 0 or 1 (expected {example})",
                    )
        block = np.array([[_binary_value(value) for value in cell.values or ()] for cell in cells])
    if label_set is None:
        label_set = LabelSet(str(position) for position in range(size))
    return LabelMatrix.from_dense(block.astype(np.uint8)), label_set


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
    labels_format: str,
    unknown_labels: str,
) -> tuple[LabelMatrix, LabelSet]:
    position = table.column_position(column)
    if delimiter is None:
        delimiter = _detect_label_delimiter(table, position)
    cells = [_split_labels_cell(table, line, column, cells[position], delimiter) for line, cells in table.rows]
    class_labels = label_set is None and bool(table.class_label_names) and column in (table.class_label_names or {})
    if class_labels:
        label_set = LabelSet((table.class_label_names or {})[column])
        label_set_origin = "the dataset's ClassLabel names"
    if (
        labels_format == "auto"
        and not table.integer_ids
        and not class_labels
        and _reads_as_multi_hot(table, column, cells, label_set)
    ):
        labels_format = "multi_hot"
    if labels_format == "multi_hot":
        return _labels_from_vectors(table, column, cells, label_set, label_set_origin)

    token_rows = [(cell.line, _label_tokens(table, cell, column, delimiter)) for cell in cells]
    if table.integer_ids or labels_format == "ids":
        for line, tokens in token_rows:
            for token in tokens:
                if not (isinstance(token, int) or _INTEGER.match(str(token))):
                    expected = (
                        "comma-separated integer ids, e.g. 3,17, each the line of a name in labels.txt counting from 0"
                        if table.integer_ids
                        else "integer label ids (labels_format='ids'), each the line of a name in the labels file "
                        "counting from 0"
                    )
                    raise table.error(line, column, f"label id {str(token)!r} is not an integer (expected {expected})")
    used = {str(token) for _, tokens in token_rows for token in tokens}
    given = label_set is not None
    ids_index_given_set = labels_format == "ids" and given
    if label_set is None:
        integers = bool(used) and all(_INTEGER.match(name) for name in used)
        label_set = LabelSet(sorted(used, key=int) if integers else sorted(used))
    size = len(label_set)
    ignored = 0
    repeating_rows = 0
    first_repeat: tuple[int, str] | None = None
    id_rows: list[list[int]] = []
    for line, tokens in token_rows:
        ids: list[int] = []
        for token in tokens:
            name = str(token)
            label_id = None if ids_index_given_set else label_set.get(name)
            if label_id is None and labels_format != "names" and (isinstance(token, int) or _INTEGER.match(name)):
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
                or_id = "" if labels_format == "names" else f", or an integer id in 0..{size - 1}"
                raise table.error(
                    line, column, f"label '{name}' is not in {label_set_origin} (expected one of {shown}{or_id})"
                )
            ids.append(label_id)
        if len(set(ids)) < len(ids):
            repeating_rows += 1
            if first_repeat is None:
                twice = next(label_id for label_id, count in Counter(ids).items() if count > 1)
                first_repeat = (line, label_set[twice])
        id_rows.append(ids)
    if ignored:
        warnings.warn(f"{table.source}: ignored {ignored} label(s) not in {label_set_origin}", stacklevel=3)
    if first_repeat is not None:
        warnings.warn(
            f"{table.source}: column '{column}': {repeating_rows} row(s) name a label more than once (first: "
            f"{table.line_word} {first_repeat[0]}, '{first_repeat[1]}'); a label counts once per text",
            LabelWarning,
            stacklevel=4,
        )
    if labels_format == "auto" and not class_labels and used == {"0", "1"}:
        read_as = f"label ids into {label_set_origin}" if given else "the label names '0' and '1'"
        warnings.warn(
            f"{table.source}: column '{column}': the labels are 0 and 1 only, read as {read_as}; if each cell is a "
            "0/1 vector (multi-hot), pass labels_format='multi_hot' (CLI: --labels-format multi_hot); if the "
            f"column is one 0/1 flag per text, pass label_columns=['{column}']",
            LabelWarning,
            stacklevel=4,
        )
    return LabelMatrix.from_lists(id_rows, size), label_set
