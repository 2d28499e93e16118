"""The readers split: tables (reading), label_cells (label parsing), readers (building); old names keep working."""

from __future__ import annotations

import warnings

import pytest

import labelspace.data as data
import labelspace.data.label_cells as label_cells
import labelspace.data.readers as readers
import labelspace.data.tables as tables
from labelspace.data import DataFormatError, LabeledDataset

# The public names labelspace.data.readers had before the split (all of its own definitions).
OLD_READERS_NAMES = [
    "AnyDataset",
    "EXTENSIONS",
    "FORMATS",
    "Kind",
    "LABELS_COLUMN_CANDIDATES",
    "LABELS_FORMATS",
    "LabelWarning",
    "LabelsFormat",
    "NULL_WORDS",
    "TEXT_COLUMN_CANDIDATES",
    "load",
    "not_utf8_error",
]
TABLE_NAMES = ["Table", "MISSING", "read_table", "find_column", "require_column", "column_texts", "text_cell"]
TABLE_NAMES += ["is_null", "is_blank", "no_text", "not_utf8_error", "EXTENSIONS", "FORMATS", "NULL_WORDS"]
CELL_NAMES = ["LabelWarning", "LABELS_FORMATS", "labels_from_column", "labels_from_binary_columns"]
CELL_NAMES += ["binary_columns", "binary_value"]


@pytest.mark.parametrize("name", OLD_READERS_NAMES)
def test_the_readers_module_keeps_its_public_names(name):
    assert hasattr(readers, name)


def test_the_new_modules_own_their_public_names():
    for name in TABLE_NAMES:
        value = getattr(tables, name)
        if callable(value) and hasattr(value, "__module__"):
            assert value.__module__ == "labelspace.data.tables", name
    for name in CELL_NAMES:
        value = getattr(label_cells, name)
        if callable(value) and hasattr(value, "__module__"):
            assert value.__module__ == "labelspace.data.label_cells", name
    assert set(TABLE_NAMES) <= set(tables.__all__)
    assert set(CELL_NAMES) <= set(label_cells.__all__)


def test_readers_re_exports_are_the_same_objects():
    for name in ("read_table", "find_column", "column_texts", "not_utf8_error", "EXTENSIONS", "TEXT_COLUMN_CANDIDATES"):
        assert getattr(readers, name) is getattr(tables, name), name
    for name in ("LabelWarning", "LABELS_FORMATS"):
        assert getattr(readers, name) is getattr(label_cells, name), name
    assert data.LabelWarning is readers.LabelWarning is label_cells.LabelWarning


def test_read_table_find_column_and_texts_of_a_file(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("id\tBody\n1\trefund please\n\n2\tapp is slow\n", encoding="utf-8")
    table, found_format = tables.read_table(path)
    assert found_format == "tsv"
    assert table.columns == ["id", "Body"]
    assert [line for line, _ in table.rows] == [2, 4]  # the blank line 3 is skipped, numbers kept
    column = tables.find_column(table, None, tables.TEXT_COLUMN_CANDIDATES, "a text column", "--text-column")
    assert column == "Body"
    assert tables.column_texts(table, column) == ["refund please", "app is slow"]


def test_table_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,labels\nfine,a\n  ,b\n", encoding="utf-8")
    table, _ = tables.read_table(path)
    with pytest.raises(DataFormatError, match=r"data\.csv:3: column 'text': text is empty"):
        tables.column_texts(table, "text")
    assert tables.column_texts(table, "text", allow_empty=True) == ["fine", "  "]
    with pytest.raises(DataFormatError, match=r"data\.csv:1: column 'sentence': column is missing .*--text-column"):
        tables.find_column(table, None, ("sentence",), "a text column", "--text-column")


def test_label_cells_read_a_column_of_a_hand_built_table():
    table = tables.Table("<DataFrame>", ["text", "labels"], [(1, ["a", "x|y|x"]), (2, ["b", "y"])], line_word="row")
    with pytest.warns(data.LabelWarning, match=r"1 row\(s\) name a label more than once \(first: row 1, 'x'\)"):
        matrix, label_set = label_cells.labels_from_column(table, "labels", None, None, "the data", "auto", "error")
    assert label_set.names == ["x", "y"]
    assert matrix.to_dense().tolist() == [[1, 1], [0, 1]]


def test_label_cells_read_multi_hot_and_binary_columns():
    vectors = tables.Table("<DataFrame>", ["text", "labels"], [(1, ["a", [1, 0, 1]]), (2, ["b", [0, 0, 0]])])
    matrix, label_set = label_cells.labels_from_column(vectors, "labels", None, None, "the data", "auto", "error")
    assert label_set.names == ["0", "1", "2"]  # no names given: the positions name the labels
    assert matrix.to_dense().tolist() == [[1, 0, 1], [0, 0, 0]]
    flags = tables.Table("<DataFrame>", ["text", "joy", "anger"], [(1, ["a", "1", "0"]), (2, ["b", True, 1.0])])
    assert label_cells.binary_columns(flags, exclude={"text"}) == ["joy", "anger"]
    matrix, label_set = label_cells.labels_from_binary_columns(flags, "auto", "text", None)
    assert matrix.to_dense().tolist() == [[1, 0], [1, 1]]
    assert [label_cells.binary_value(value) for value in ("yes", "0", 2, 0.5, "")] == [1, 0, None, None, None]


def test_load_still_builds_a_dataset_and_warns_with_the_exported_class(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,labels\nrefund please,billing|billing\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = data.load(path)
    assert isinstance(dataset, LabeledDataset) and dataset[0] == ("refund please", ["billing"])
    assert [warning.category for warning in caught] == [data.LabelWarning]
    assert caught[0].filename == __file__  # reported at the caller of load, as before the split
