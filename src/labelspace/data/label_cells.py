"""Label cells: a labels column (lists, JSON lists, delimited names, integer ids, 0/1 vectors) or one 0/1
column per label read into a `LabelMatrix` and its `LabelSet`.

`labels_from_column` reads one labels column of a `Table` (``labels_format``: names, ids, multi-hot,
or ``auto``, which tells them apart and refuses input that reads either way); `labels_from_binary_columns`
reads one 0/1 column per label (SemEval style) and `binary_columns` finds such columns. Errors name the
file, the line and the column; labels that read but look wrong raise a `LabelWarning`.

Example:
    >>> from labelspace.data.tables import Table
    >>> table = Table("<DataFrame>", ["text", "labels"], [(1, ["a", "billing|refund"]), (2, ["b", "bug"])],
    ...               line_word="row")
    >>> matrix, label_set = labels_from_column(table, "labels", None, None, "the data", "auto", "error")
    >>> label_set.names, matrix.to_dense().tolist()
    (['billing', 'bug', 'refund'], [[1, 0, 1], [0, 1, 0]])
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from labelspace.data.labels import LabelMatrix, LabelSet
from labelspace.data.tables import MISSING, NULL_WORDS, Table, is_blank, require_column

__all__ = [
    "LABELS_FORMATS",
    "LabelWarning",
    "LabelsFormat",
    "binary_columns",
    "binary_value",
    "labels_from_binary_columns",
    "labels_from_column",
]

LabelsFormat = Literal["auto", "names", "ids", "multi_hot"]
LABELS_FORMATS = ("auto", "names", "ids", "multi_hot")
_INTEGER = re.compile(r"^[+-]?\d+$")


class LabelWarning(UserWarning):
    """Labels that read without error but look wrong: a row naming a label twice, or ids 0 and 1 only.

    `load` emits it with `warnings.warn`; ``labelspace data check`` lists it in the report's ``warnings``.
    """


_TRUE_VALUES = {"1", "1.0", "true", "yes"}
_FALSE_VALUES = {"0", "0.0", "false", "no", ""}


def binary_value(value: Any) -> int | None:
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


def binary_columns(table: Table, exclude: set[str]) -> list[str]:
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
            if binary_value(value) is not None:
                flags += 1
            elif not is_blank(value):
                break
        else:
            if flags:
                found.append(name)
    return found


def labels_from_binary_columns(
    table: Table, label_columns: Sequence[str] | str, text_name: str, label_set: LabelSet | None
) -> tuple[LabelMatrix, LabelSet]:
    """One 0/1 column per label into (matrix, label set).

    ``label_columns`` is a list of column names, a comma-separated string of them, or "auto" (every
    column but ``text_name`` found by `binary_columns`). With ``label_set`` every label needs its
    column, in the label set's order; an empty or non-0/1 cell is an error naming line and column.

    Example:
        >>> table = Table("<DataFrame>", ["text", "joy", "anger"], [(1, ["a", 1, 0]), (2, ["b", 0, 1])])
        >>> matrix, label_set = labels_from_binary_columns(table, "auto", "text", None)
        >>> label_set.names, matrix.to_dense().tolist()
        (['joy', 'anger'], [[1, 0], [0, 1]])
    """
    if isinstance(label_columns, str):
        if label_columns == "auto":
            names = binary_columns(table, exclude={text_name})
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
        require_column(table, name, "a 0/1 label column")
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
            value = binary_value(cells[position])
            if value is None and is_blank(cells[position]):
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


def _split_labels_cell(table: Table, line: int, column: str, value: Any, delimiter: str | None) -> _LabelsCell:
    if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
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


def _label_tokens(table: Table, cell: _LabelsCell, column: str, delimiter: str | None) -> list[Any]:
    """The label names (str) and ids (int) of a cell read as names or ids."""
    line = cell.line
    if cell.values is None:
        if cell.raw is MISSING:
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
    return not isinstance(value, str) and binary_value(value) is not None


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


def _reads_as_multi_hot(table: Table, column: str, cells: list[_LabelsCell], label_set: LabelSet | None) -> bool:
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
    table: Table, column: str, cells: list[_LabelsCell], label_set: LabelSet | None, label_set_origin: str
) -> tuple[LabelMatrix, LabelSet]:
    """Multi-hot cells (one 0/1 value per label) into a label matrix; without names, the positions name the labels."""
    size = len(label_set) if label_set is not None else None
    expected_from = f"one per label of {label_set_origin}"
    example = "a 0/1 vector with one value per label, e.g. [1, 0, 1]"
    for cell in cells:
        if cell.values is None:
            what = "key is missing" if cell.raw is MISSING else "cell is NaN/null"
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
                if binary_value(value) is None:
                    raise table.error(
                        cell.line,
                        column,
                        f"value {value!r} at position {position} of {_shown(cell)} is not 0 or 1 (expected {example})",
                    )
        block = np.array([[binary_value(value) for value in cell.values or ()] for cell in cells])
    if label_set is None:
        label_set = LabelSet(str(position) for position in range(size))
    return LabelMatrix.from_dense(block.astype(np.uint8)), label_set


def _detect_label_delimiter(table: Table, position: int) -> str | None:
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


def labels_from_column(
    table: Table,
    column: str,
    delimiter: str | None,
    label_set: LabelSet | None,
    label_set_origin: str,
    labels_format: str,
    unknown_labels: str,
) -> tuple[LabelMatrix, LabelSet]:
    """A labels column into (matrix, label set); see `labelspace.data.readers.load` for the arguments.

    ``delimiter`` splits a text cell (None: the first of ``|``, ``;``, ``,`` found in the column);
    ``label_set`` (None: built from the names found, or from a Hugging Face ClassLabel) is described
    as ``label_set_origin`` in messages; ``labels_format`` is one of `LABELS_FORMATS`;
    ``unknown_labels`` "error" or "ignore" (names not in ``label_set``).
    """
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
