"""The bad-file corpus (tests/data/bad/): every defect is reported at the right file, line and column.

Each file holds one defect. The expected line and column below were read off the files by hand
(see tests/data/make_bad_files.py, which regenerates the corpus). Each case is checked twice:
through `labelspace.data.load`, and through `labelspace data check` (in-process, plus a few
real subprocesses), which must exit 2 with one line on stderr and no traceback.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from labelspace.data import DataFormatError, load

DATA = Path(__file__).resolve().parent / "data"
BAD = DATA / "bad"
GOEMOTIONS = BAD / "goemotions"
PREFIX = "labelspace: error: "


@dataclass(frozen=True)
class Case:
    file: str  # relative to tests/data/bad
    line: int | None
    column: str | None
    phrase: str  # what was expected, as the message must say it
    options: dict = field(default_factory=dict)  # keyword arguments of load
    cli_args: tuple[str, ...] = ()  # the same options for `labelspace data check`

    @property
    def path(self) -> str:
        return str(BAD / self.file)


CASES = [
    # structure of the file
    Case("empty.csv", 1, None, "file is empty"),
    Case("header_only.csv", 2, None, "header but no data rows"),
    Case("duplicated_columns.csv", 1, "text", "column name appears twice"),
    Case("duplicated_columns_after_blank_lines.csv", 3, "text", "column name appears twice"),
    Case("missing_text_column.csv", 1, "text", "expected a text column named one of text"),
    Case("wrong_field_count.csv", 3, None, "found 3 fields, expected 2 (text, labels)"),
    Case("unclosed_quote.csv", 3, None, "is a closing quote missing?"),
    Case("multiline_then_wrong_field_count.csv", 6, None, "found 1 field, expected 2"),
    Case("non_utf8.csv", 3, "text", "byte 0xff at byte 5 of the line is not valid UTF-8"),
    Case("non_utf8_quoted.csv", 3, "text", "is not valid UTF-8"),
    Case("non_utf8.jsonl", 2, None, "is not valid UTF-8"),
    Case("malformed_json.jsonl", 2, None, "malformed JSON"),
    Case("not_an_object.jsonl", 2, None, "expected a JSON object, found a JSON list"),
    # texts
    Case("empty_text.csv", 3, "text", "expected a non-empty text"),
    Case("null_text.jsonl", 2, "text", "expected a text"),
    Case("nan_text.parquet", 2, "text", "expected a text"),
    # a labels column
    Case(
        "unknown_label.tsv",
        3,
        "labels",
        "label 'angry' is not in labels file",
        options={"labels_file": BAD / "unknown_label.labels.txt"},
        cli_args=("--labels-file", str(BAD / "unknown_label.labels.txt")),
    ),
    Case("missing_labels_key.jsonl", 3, "labels", "key is missing"),
    Case("null_labels.jsonl", 2, "labels", "cell is NaN/null"),
    Case("malformed_labels_json.csv", 3, "labels", "malformed JSON list"),
    Case("empty_label_name.csv", 3, "labels", "empty label name in 'a||b'"),
    # one 0/1 column per label
    Case("nan_label_flag.csv", 3, "joy", "cell is empty/NaN (expected 0 or 1)"),
    Case(
        "nan_label_flag.csv",
        3,
        "joy",
        "cell is empty/NaN (expected 0 or 1)",
        options={"label_columns": ["anger", "joy"]},
        cli_args=("--label-columns", "anger,joy"),
    ),
    Case(
        "label_flag_not_binary.csv",
        3,
        "joy",
        "'2' is not a 0/1 label flag",
        options={"label_columns": ["anger", "joy"]},
        cli_args=("--label-columns", "anger,joy"),
    ),
    Case(
        "no_binary_columns.csv",
        1,
        None,
        "no 0/1 label columns found",
        options={"label_columns": "auto"},
        cli_args=("--label-columns", "auto"),
    ),
    # GoEmotions: headerless `text<TAB>ids<TAB>id`, labels.txt beside the file
    Case("goemotions/non_integer_id.tsv", 2, "labels", "label id 'x' is not an integer"),
    Case("goemotions/out_of_range_id.tsv", 3, "labels", "label id 4 is out of range (expected an id in 0..3"),
    Case("goemotions/wrong_field_count.tsv", 2, None, "found 2 tab-separated fields, expected 3"),
    Case("goemotions/non_utf8.tsv", 2, "text", "is not valid UTF-8"),
    # pairs and triplets
    Case("score_out_of_range.csv", 3, "score", "score 1.5 is outside [0, 1]"),
    Case("nan_score.csv", 2, "score", "cell is empty/NaN (expected a number in [0, 1])"),
    Case("empty_score.csv", 3, "score", "cell is empty/NaN (expected a number in [0, 1])"),
    Case("score_not_a_number.csv", 2, "score", "'high' is not a number"),
    Case("triplet_without_negative.csv", 3, "negative", "triplet has no negative"),
    Case("triplet_no_negative_column.csv", 1, "negative", "column is missing"),
]


def _case_id(case: Case) -> str:
    return case.file + (f"[{','.join(case.options)}]" if case.options else "")


def _where(case: Case) -> str:
    """How the message must start: ``FILE:LINE`` (text files) or ``FILE: row N`` (Parquet)."""
    if case.line is None:
        return case.path
    if case.file.endswith(".parquet"):
        return f"{case.path}: row {case.line}"
    return f"{case.path}:{case.line}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_file_is_reported_where_it_is(case: Case):
    with pytest.raises(DataFormatError) as caught:
        load(case.path, **case.options)
    error = caught.value
    assert (error.path, error.line, error.column) == (case.path, case.line, case.column), str(error)
    assert case.phrase in error.message
    expected_start = _where(case) + (f": column '{case.column}': " if case.column else ": ")
    assert str(error) == expected_start + error.message


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_data_check_reports_one_line(case: Case, capsys):
    from labelspace.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["data", "check", case.path, *case.cli_args])
    captured = capsys.readouterr()
    assert caught.value.code == 2
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(PREFIX + _where(case) + ":")
    assert case.phrase in lines[0]
    if case.column:
        assert f"column '{case.column}'" in lines[0]


def test_data_check_subprocess_exit_status_and_stderr():
    """The real command line (a fresh interpreter each): exit 2, one stderr line, no traceback."""
    env = {key: value for key, value in os.environ.items() if key != "LABELSPACE_DEBUG"}
    chosen = ("non_utf8.csv", "goemotions/out_of_range_id.tsv", "score_out_of_range.csv")
    cases = [case for case in CASES if case.file in chosen]
    assert len(cases) == len(chosen)
    for case in cases:
        result = subprocess.run(
            [sys.executable, "-m", "labelspace.cli", "data", "check", case.path, *case.cli_args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 2, (case.file, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"{PREFIX}{case.path}:{case.line}: column '{case.column}': ")
        assert case.phrase in lines[0]


def test_every_bad_file_has_a_case():
    covered = {case.file for case in CASES}
    helpers = {"unknown_label.labels.txt", "goemotions/labels.txt"}
    on_disk = {path.relative_to(BAD).as_posix() for path in BAD.rglob("*") if path.is_file()}
    assert on_disk - helpers == covered


def test_corpus_matches_its_generator():
    """The committed files are what tests/data/make_bad_files.py writes (so it can regenerate them)."""
    spec = importlib.util.spec_from_file_location("make_bad_files", DATA / "make_bad_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for relative, content in module.FILES.items():
        assert (DATA / relative).read_bytes() == content, relative
    import pandas as pd

    for relative, columns in module.PARQUET.items():
        frame = pd.read_parquet(DATA / relative)
        assert frame.columns.tolist() == list(columns)
        for name, values in columns.items():
            assert [module._plain(v) for v in frame[name].tolist()] == values, relative


# --------------------------------------------------------------------------- in-memory tables


def test_dataframe_with_nan_text_names_the_row():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["fine", np.nan, "ok"], "labels": ["a", "b", "a|b"]})
    with pytest.raises(DataFormatError) as caught:
        load(frame)
    error = caught.value
    assert (error.path, error.line, error.column) == ("<DataFrame>", 2, "text")
    assert str(error) == "<DataFrame>: row 2: column 'text': " + error.message
    assert "expected a text" in error.message


def test_dataframe_with_nan_label_flag_names_the_row_and_column():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a", "b", "c"], "anger": [1, 0, 1], "joy": [0.0, 1.0, np.nan]})
    with pytest.raises(DataFormatError) as caught:
        load(frame)  # no labels column: the 0/1 columns are found by themselves
    assert (caught.value.line, caught.value.column) == (3, "joy")
    assert "expected 0 or 1" in caught.value.message


def test_dataframe_with_none_labels_names_the_row():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a", "b"], "labels": [["x"], None]})
    with pytest.raises(DataFormatError) as caught:
        load(frame)
    assert (caught.value.line, caught.value.column) == (2, "labels")


def test_hf_dataset_with_null_text_names_the_row():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"text": ["a", None, "c"], "labels": [["x"], ["y"], []]})
    with pytest.raises(DataFormatError) as caught:
        load(dataset)
    error = caught.value
    assert (error.path, error.line, error.column) == ("<datasets.Dataset>", 2, "text")


def test_dataframe_with_duplicated_columns():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([["a", "x", "b"]], columns=["text", "labels", "text"])
    with pytest.raises(DataFormatError, match="column name appears twice") as caught:
        load(frame)
    assert caught.value.column == "text"


def test_empty_dataframe():
    pd = pytest.importorskip("pandas")
    with pytest.raises(DataFormatError, match="has no rows"):
        load(pd.DataFrame({"text": [], "labels": []}))
