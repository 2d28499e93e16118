"""`save` then `load` gives back an equal dataset, in every format, with no temporary file left."""

from __future__ import annotations

import os

import numpy as np
import pytest

from labelspace.data import LabeledDataset, LabelSet, PairDataset, TripletDataset, load
from labelspace.data.writers import save

FORMATS = ["csv", "tsv", "jsonl", "parquet"]

# texts that are hard to write: the delimiters, quotes, line breaks, tabs, unicode, spaces
TEXTS = [
    "refund, please",
    'he said "hi"',
    "two\nlines",
    "tab\there",
    "émoji 🎉; ünïcode",
    "  padded  ",
]


def labeled() -> LabeledDataset:
    # label names sorted and all used: that is the label set reading back builds by itself
    return LabeledDataset.from_label_names(
        TEXTS,
        [["billing", "refund"], ["greeting"], [], ["bug"], ["billing", "bug", "greeting", "refund"], ["bug"]],
    )


def pairs() -> PairDataset:
    return PairDataset(TEXTS[:3], TEXTS[3:], np.array([0.0, 0.7, 1.0], dtype=np.float32))


def triplets_one() -> TripletDataset:
    return TripletDataset(TEXTS[:2], TEXTS[2:4], TEXTS[4:])


def triplets_several() -> TripletDataset:
    return TripletDataset(TEXTS[:3], TEXTS[3:], [["n1", "n2", "n3"], ["only one"], ["x, y", 'q "z"']])


DATASETS = {"labeled": labeled, "pairs": pairs, "triplets": triplets_one, "triplets_several": triplets_several}


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("make", list(DATASETS.values()), ids=list(DATASETS))
def test_round_trip(tmp_path, make, file_format):
    dataset = make()
    path = tmp_path / f"data.{file_format}"
    save(dataset, path)
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    back = load(path)
    assert type(back) is type(dataset)
    assert back == dataset
    assert back.source == str(path)


@pytest.mark.parametrize("file_format", FORMATS)
def test_round_trip_with_label_set_keeps_order_and_unused_labels(tmp_path, file_format):
    label_set = LabelSet(["zeta", "alpha", "unused"])
    dataset = LabeledDataset.from_label_names(["a", "b"], [["alpha", "zeta"], []], label_set)
    path = tmp_path / f"data.{file_format}"
    save(dataset, path)
    assert load(path, label_set=label_set) == dataset
    assert load(path).label_set.names == ["alpha", "zeta"]  # without it: the names used, sorted


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_texts_that_look_like_nulls_survive_typed_formats(tmp_path, file_format):
    dataset = LabeledDataset.from_label_names(["null", "NaN", "None"], [["a"], ["a"], []])
    path = tmp_path / f"data.{file_format}"
    save(dataset, path)
    assert load(path) == dataset


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("old content\n", encoding="utf-8")
    save(pairs(), path)
    assert load(path) == pairs()
    assert os.listdir(tmp_path) == ["data.jsonl"]


def test_save_creates_the_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "data.csv"
    save(labeled(), path)
    assert load(path) == labeled()


def test_unknown_extension_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the format"):
        save(labeled(), tmp_path / "data.xlsx")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extension", ["csv", "tsv"])
@pytest.mark.parametrize("name", ["x|y", "x,y", "x;y"])
def test_delimiters_inside_label_names_round_trip_as_json_lists(tmp_path, extension, name):
    dataset = LabeledDataset.from_label_names(["a", "b"], [[name], [name, "plain"]])
    path = tmp_path / f"data.{extension}"
    save(dataset, path)
    assert load(path) == dataset
    assert '[""' in path.read_text(encoding="utf-8")  # written as a JSON list, quoted for CSV


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_text("text,labels\nold,a\n", encoding="utf-8")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("labelspace.data.writers.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save(labeled(), path)
    assert os.listdir(tmp_path) == ["data.csv"]
    assert path.read_text(encoding="utf-8") == "text,labels\nold,a\n"


def test_written_csv_is_plain_and_readable(tmp_path):
    path = tmp_path / "data.csv"
    save(LabeledDataset.from_label_names(["x", "y, z"], [["b", "a"], []]), path)
    assert path.read_bytes() == b'text,labels\nx,a|b\n"y, z",\n'
