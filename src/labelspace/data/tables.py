"""Tables: CSV, TSV, JSONL, Parquet, a pandas DataFrame or a Hugging Face dataset read into rows of raw cells.

`read_table` reads a source into a `Table` (column names, and each row's line or row number with its
cells as read: nothing is interpreted yet), so that every later error can name the file, the line and
the column. `find_column` picks a column by name or from candidate names, `column_texts` reads a text
column. Label cells are parsed in `labelspace.data.label_cells`; `labelspace.data.readers.load` builds
datasets from both.

Example:
    >>> import pandas as pd
    >>> table, found_format = read_table(pd.DataFrame({"Text": ["refund please", "app is slow"]}))
    >>> found_format, table.columns, table.rows[1]
    ('dataframe', ['Text'], (2, ['app is slow']))
    >>> column = find_column(table, None, TEXT_COLUMN_CANDIDATES, "a text column", "text_column=")
    >>> column_texts(table, column, allow_empty=False)
    ['refund please', 'app is slow']
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelspace.data.errors import DataFormatError

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "LABELS_COLUMN_CANDIDATES",
    "MISSING",
    "NULL_WORDS",
    "TEXT_COLUMN_CANDIDATES",
    "Table",
    "column_texts",
    "find_column",
    "is_blank",
    "is_null",
    "no_text",
    "not_utf8_error",
    "read_table",
    "require_column",
    "text_cell",
]

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
#: The cell of a JSONL key that a line leaves out (distinct from an explicit null).
MISSING: Any = object()
_GOEMOTIONS_IDS = re.compile(r"^\d+(,\d+)*$")
_TEXT_NULL_WORDS = ("nan", "null")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Table:
    """Rows read from a source, before interpretation: cells keep their raw types.

    ``rows`` holds, for each row, its line number (text files) or row number (frames, Parquet) and
    its cells aligned with ``columns``; `error` makes the `DataFormatError` that names them.

    Example:
        >>> table = Table("data.csv", ["text"], [(2, ["hello"])])
        >>> print(table.error(2, "text", "text is empty"))
        data.csv:2: column 'text': text is empty
    """

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
        """The error for ``line`` (a line or row number, None: the whole source) and ``column`` (None: any)."""
        return DataFormatError(self.source, line, column, message, line_word=self.line_word)

    def column_position(self, name: str) -> int:
        """The index of column ``name`` in each row's cells."""
        return self.columns.index(name)


def read_table(source: Any, *, format: str | None = None, delimiter: str | None = None) -> tuple[Table, str]:
    """(table, format) read from a path, a pandas DataFrame or a ``datasets.Dataset``; cells are not interpreted.

    ``format`` is one of `FORMATS` (default: from the extension, see `EXTENSIONS`; a headerless ``.tsv``
    whose second field holds comma-separated ids is "goemotions"); the returned format is that, or
    "dataframe" / "dataset" for in-memory tables. ``delimiter`` is the CSV/TSV field separator. A
    missing, empty, undecodable or malformed file is a `DataFormatError` naming file, line and column.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
        >>> _ = path.write_text("text,labels\\nrefund please,billing\\n", encoding="utf-8")
        >>> table, found_format = read_table(path)
        >>> found_format, table.columns, table.rows
        ('csv', ['text', 'labels'], [(2, ['refund please', 'billing'])])
    """
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


def _table_from_delimited(path: Path, text: str, delimiter: str) -> Table:
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
    return Table(str(path), header, rows, header_line=header_line)


def _looks_like_goemotions(text: str) -> bool:
    first = text.split("\n", 1)[0].rstrip("\r").split("\t")
    return len(first) == 3 and bool(_GOEMOTIONS_IDS.match(first[1].strip()))


def _table_from_goemotions(path: Path, text: str) -> Table:
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
    return Table(str(path), ["text", "labels", "id"], rows, header_line=0, integer_ids=True)


def _table_from_jsonl(path: Path, text: str) -> Table:
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
        rows.append((number, [record.get(name, MISSING) for name in columns]))
        extra = [key for key in record if key not in columns]
        if extra:
            columns.extend(extra)
            for _, cells in rows:
                cells.extend([MISSING] * (len(columns) - len(cells)))
            rows[-1] = (number, [record.get(name, MISSING) for name in columns])
    assert columns is not None
    return Table(str(path), columns, rows, header_line=0, null_words=False)


def _table_from_frame(frame: Any, source: str, class_label_names: dict[str, list[str]] | None = None) -> Table:
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
    return Table(
        source, columns, rows, line_word="row", header_line=0, class_label_names=class_label_names, null_words=False
    )


def _table_from_parquet(path: Path) -> Table:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise DataFormatError(path, None, None, f"cannot read as Parquet: {error}") from None
    return _table_from_frame(frame, str(path))


def _table_from_hf_dataset(dataset: Any) -> Table:
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


def is_null(value: Any) -> bool:
    """True for None, a missing key, NaN, or a null word such as "nan", "null", "n/a" (any case)."""
    if value is None or value is MISSING:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in NULL_WORDS and value.strip() != ""


def no_text(table: Table, value: Any) -> bool:
    """True for a missing, null, NaN or blank text cell (and "nan" / "null" in delimited files)."""
    if value is None or value is MISSING or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        word = value.strip().lower()
        return not word or (table.null_words and word in _TEXT_NULL_WORDS)
    return False


def text_cell(table: Table, line: int, column: str, value: Any, allow_empty: bool) -> str:
    """The text in a cell; a missing, null, non-string or (unless ``allow_empty``) blank cell is an error."""
    if value is MISSING:
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


def require_column(table: Table, name: str, what: str) -> str:
    """``name`` when the table has that column, else an error saying it holds ``what`` and listing the columns."""
    if name not in table.columns:
        raise table.error(
            table.header_line or None,
            name,
            f"column is missing (expected {what}; found columns: {', '.join(table.columns)})",
        )
    return name


def find_column(table: Table, given: str | None, candidates: Sequence[str], what: str, option: str) -> str:
    """The column ``given``, or the first of ``candidates`` the table has (case-insensitive).

    When none is there, the error names ``what`` the column holds, the ``option`` that names it, and
    the columns found.

    Example:
        >>> table = Table("<DataFrame>", ["Body", "tags"], [(1, ["hi", "x"])], line_word="row")
        >>> find_column(table, None, TEXT_COLUMN_CANDIDATES, "a text column", "text_column=")
        'Body'
    """
    if given is not None:
        return require_column(table, given, what)
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


def column_texts(table: Table, column: str, allow_empty: bool = False) -> list[str]:
    """The texts of ``column``, one per row, each checked by `text_cell`."""
    position = table.column_position(column)
    return [text_cell(table, line, column, cells[position], allow_empty) for line, cells in table.rows]


def is_blank(value: Any) -> bool:
    """A null cell (see `is_null`) or a string of whitespace only."""
    return is_null(value) or (isinstance(value, str) and not value.strip())
