"""0/1 lists per text (multi-hot: `[1, 0, 1]`) are read as vectors over the labels, never as label ids."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labelspace.data import DataFormatError, LabeledDataset, LabelSet, load, save
from labelspace.data.readers import LabelWarning

TEXTS = ["refund and a bug", "app is slow", "nothing to say", "everything broke"]
VECTORS = [[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]]
NAMES = ["billing", "performance", "refund"]
# the same labels by hand: row i carries the names at the positions of its 1s
EXPECTED = [["billing", "refund"], ["performance"], [], ["billing", "performance", "refund"]]
MUST_CHOOSE = "pass labels_format='multi_hot' or labels_format='ids' (CLI: --labels-format multi_hot"


def write_jsonl(path: Path, labels: list, texts: list[str] | None = None) -> Path:
    texts = texts if texts is not None else [f"text {i}" for i in range(len(labels))]
    path.write_text("".join(json.dumps({"text": t, "labels": v}) + "\n" for t, v in zip(texts, labels, strict=True)))
    return path


def labels_file(folder: Path, names: list[str]) -> Path:
    path = folder / "labels.txt"
    path.write_text("".join(f"{name}\n" for name in names))
    return path


def rows(data: LabeledDataset) -> list[list[str]]:
    return [data.label_names(i) for i in range(len(data))]


def read_quietly(*args, **kwargs):
    """`load` with LabelWarnings turned into errors: a multi-hot file reads without any."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWarning)
        return load(*args, **kwargs)


# --------------------------------------------------------------------------- reading vectors


def test_jsonl_vectors_with_a_labels_file(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", VECTORS, TEXTS)
    data = read_quietly(path, labels_file=labels_file(tmp_path, NAMES))
    assert data.texts == TEXTS
    assert data.label_set.names == NAMES
    assert np.array_equal(data.labels.to_dense(), np.array(VECTORS))
    assert rows(data) == EXPECTED


def test_jsonl_vectors_with_label_names_and_explicit_format(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", VECTORS, TEXTS)
    for labels_format in ("auto", "multi_hot"):
        data = read_quietly(path, label_names=NAMES, labels_format=labels_format)
        assert data.label_set.names == NAMES and rows(data) == EXPECTED


def test_jsonl_vectors_without_names_are_named_by_position(tmp_path):
    # Before: the label set was ['0', '1'] and every row carried both.
    data = read_quietly(write_jsonl(tmp_path / "data.jsonl", VECTORS))
    assert data.label_set.names == ["0", "1", "2"]
    assert rows(data) == [["0", "2"], ["1"], [], ["0", "1", "2"]]
    # the same labels written as ids (position k is id k) give the same rows
    ids = load(write_jsonl(tmp_path / "ids.jsonl", [[0, 2], [1], [], [0, 1, 2]]))
    assert rows(ids) == rows(data)


@pytest.mark.parametrize(
    "vectors",
    [
        [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
        [[True, False, True], [False, True, False], [False, False, False], [True, True, True]],
        # every 0/1 list of two values reads as ids too, except when a row repeats a value
        [[1, 1], [0, 1], [0, 0], [1, 0]],
        [[1.0, 0.0], [0.0, 1.0]],
    ],
    ids=["floats", "booleans", "length-2-with-a-repeat", "length-2-floats"],
)
def test_floats_booleans_and_repeats_mean_vectors(tmp_path, vectors):
    data = read_quietly(write_jsonl(tmp_path / "data.jsonl", vectors))
    assert np.array_equal(data.labels.to_dense(), np.array(vectors, dtype=np.uint8))
    assert data.label_set.names == [str(k) for k in range(len(vectors[0]))]


def test_dataframe_lists_arrays_and_parquet(tmp_path):
    frame = pd.DataFrame({"text": TEXTS, "labels": VECTORS})
    assert rows(read_quietly(frame, label_names=NAMES)) == EXPECTED
    floats = pd.DataFrame({"text": TEXTS, "labels": [np.array(v, dtype=np.float32) for v in VECTORS]})
    assert rows(read_quietly(floats, label_names=NAMES)) == EXPECTED
    frame.to_parquet(tmp_path / "data.parquet", index=False)  # list cells come back as numpy arrays
    assert rows(read_quietly(tmp_path / "data.parquet", labels_file=labels_file(tmp_path, NAMES))) == EXPECTED


def test_csv_json_lists_and_explicit_delimited_vectors(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,labels\n" + "".join(f'{t},"{json.dumps(v)}"\n' for t, v in zip(TEXTS, VECTORS, strict=True)))
    assert rows(read_quietly(path, label_names=NAMES)) == EXPECTED
    delimited = tmp_path / "delimited.csv"
    lines = [f"{text},{'|'.join(map(str, vector))}\n" for text, vector in zip(TEXTS, VECTORS, strict=True)]
    delimited.write_text("text,labels\n" + "".join(lines))
    assert rows(read_quietly(delimited, label_names=NAMES, labels_format="multi_hot")) == EXPECTED


def test_hf_dataset_values_are_vectors_but_classlabel_ids_stay_ids():
    datasets = pytest.importorskip("datasets")
    vectors = datasets.Dataset.from_dict({"text": TEXTS, "labels": VECTORS})
    assert rows(read_quietly(vectors, label_names=NAMES)) == EXPECTED
    features = datasets.Features(
        {"text": datasets.Value("string"), "labels": datasets.Sequence(datasets.ClassLabel(names=NAMES))}
    )
    ids = datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [[0, 1], [1, 0]]}, features=features)
    assert rows(load(ids)) == [["billing", "performance"], ["billing", "performance"]]


# --------------------------------------------------------------------------- ambiguous input


def test_all_two_value_lists_without_a_repeat_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[0, 1], [1, 0], [0, 1]])
    with pytest.raises(DataFormatError) as caught:
        load(path)
    assert caught.value.line == 1 and caught.value.column == "labels"
    assert str(caught.value).startswith(f"{path}:1: column 'labels': every labels cell is a list of two 0/1 values")
    assert MUST_CHOOSE in str(caught.value)
    with pytest.raises(DataFormatError, match="list of two 0/1 values"):
        load(path, labels_file=labels_file(tmp_path, ["anger", "joy"]))  # 2 names fit both readings
    assert rows(load(path, labels_format="multi_hot")) == [["1"], ["0"], ["1"]]
    assert rows(load(path, labels_format="ids")) == [["0", "1"]] * 3
    # a labels file of another size cannot name 2-value vectors: the lists are ids
    with pytest.warns(LabelWarning, match="the labels are 0 and 1 only, read as label ids into label_names"):
        assert rows(load(path, label_names=["a", "b", "c"])) == [["a", "b"]] * 3


def test_id_lists_that_happen_to_be_0_1_stay_ids(tmp_path):
    data = load(write_jsonl(tmp_path / "data.jsonl", [[0, 1], [3], [1], [2, 0]]))
    assert data.label_set.names == ["0", "1", "2", "3"]
    assert rows(data) == [["0", "1"], ["3"], ["1"], ["0", "2"]]


def test_vectors_mixed_with_other_forms_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[1, 0, 1], ["billing"], [0, 1, 0]])
    with pytest.raises(DataFormatError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}:2: column 'labels': [\"billing\"] is not a 0/1 vector like [1, 0, 1]")
    assert MUST_CHOOSE in str(caught.value)
    with pytest.raises(
        DataFormatError, match=r':2: column \'labels\': \["billing"\] has 1 value, expected a 0/1 vector'
    ):
        load(path, labels_format="multi_hot")
    with pytest.warns(LabelWarning, match="2 row.s. name a label more than once"):
        as_names = load(path, labels_format="names")
    assert rows(as_names) == [["0", "1"], ["billing"], ["0", "1"]]


def test_vectors_of_different_lengths_in_auto_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[1, 0, 1], [0, 0, 1], [0, 1]])
    with pytest.raises(DataFormatError) as caught:
        load(path)
    assert caught.value.line == 3
    assert "has 2 values while the one on line 1 has 3" in str(caught.value) and MUST_CHOOSE in str(caught.value)


# --------------------------------------------------------------------------- errors in vectors


def test_wrong_length_vector_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[1, 0, 1], [0, 1, 0], [0, 1]])
    with pytest.raises(DataFormatError) as caught:
        load(path, labels_format="multi_hot")
    assert str(caught.value) == (
        f"{path}:3: column 'labels': [0, 1] has 2 values, expected a 0/1 vector of 3 (as on line 1)"
    )


def test_labels_file_must_have_one_name_per_position(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", VECTORS)
    names = labels_file(tmp_path, ["a", "b", "c", "d", "e"])
    with pytest.raises(DataFormatError) as caught:
        load(path, labels_file=names)
    assert str(caught.value) == (
        f"{path}:1: column 'labels': [1, 0, 1] has 3 values, expected a 0/1 vector of 5 "
        f"(one per label of labels file {names})"
    )
    frame = pd.DataFrame({"text": TEXTS, "labels": VECTORS})
    with pytest.raises(
        DataFormatError, match=r"row 1: column 'labels': .* vector of 2 \(one per label of label_names\)"
    ):
        load(frame, label_names=["a", "b"], labels_format="multi_hot")


def test_values_other_than_0_1_and_null_cells(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[1, 0, 1], [0, 0.5, 1]])
    with pytest.raises(DataFormatError) as caught:
        load(path, labels_format="multi_hot")
    assert str(caught.value) == (
        f"{path}:2: column 'labels': value 0.5 at position 2 of [0, 0.5, 1] is not 0 or 1 "
        "(expected a 0/1 vector with one value per label, e.g. [1, 0, 1])"
    )
    null = write_jsonl(tmp_path / "null.jsonl", [[1, 0, 1], None])
    with pytest.raises(DataFormatError, match=r"null.jsonl:2: column 'labels': cell is NaN/null \(expected a 0/1"):
        load(null)  # the null is skipped when detecting, then refused as a vector
    with pytest.raises(DataFormatError, match=r":1: column 'labels': empty 0/1 vector"):
        load(write_jsonl(tmp_path / "empty.jsonl", [[], [1, 0]]), labels_format="multi_hot")


def test_argument_checks(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", VECTORS)
    with pytest.raises(ValueError, match="labels_format must be one of auto, names, ids, multi_hot"):
        load(path, labels_format="vector")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give one of labels_file, label_set and label_names"):
        load(path, label_names=NAMES, label_set=LabelSet(NAMES))
    with pytest.raises(ValueError, match="label_columns= names one 0/1 column per label"):
        load(path, labels_format="multi_hot", label_columns=["labels"])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("text1,text2,score\na,b,1\n")
    with pytest.raises(ValueError, match="applies to labelled data, not to pairs"):
        load(pairs, labels_format="multi_hot")


def test_names_and_ids_formats(tmp_path):
    names = labels_file(tmp_path, ["a", "b", "c", "d"])
    path = write_jsonl(tmp_path / "data.jsonl", [["a", 3]])
    assert rows(load(path, labels_file=names)) == [["a", "d"]]  # auto: 3 is an id into the file
    with pytest.raises(DataFormatError) as caught:
        load(path, labels_file=names, labels_format="names")
    assert (
        str(caught.value)
        == f"{path}:1: column 'labels': label '3' is not in labels file {names} (expected one of a, b, c, d)"
    )
    with pytest.raises(
        DataFormatError, match="label id 'a' is not an integer .expected integer label ids .labels_format='ids'"
    ):
        load(path, labels_file=names, labels_format="ids")
    # with labels_format='ids' a number is an id even where the labels file holds that number as a name
    numbered = write_jsonl(tmp_path / "numbered.jsonl", [[0], [2]])
    file_of_numbers = tmp_path / "numbers.txt"
    file_of_numbers.write_text("2\n0\n1\n")
    assert rows(load(numbered, labels_file=file_of_numbers)) == [["0"], ["2"]]
    assert rows(load(numbered, labels_file=file_of_numbers, labels_format="ids")) == [["2"], ["1"]]


# --------------------------------------------------------------------------- writing back


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_multi_hot_data_round_trips_through_the_writers(tmp_path, suffix):
    for names in (NAMES, None):
        data = read_quietly(write_jsonl(tmp_path / "data.jsonl", VECTORS, TEXTS), label_names=names)
        path = tmp_path / f"saved{suffix}"
        save(data, path)
        assert read_quietly(path, label_set=data.label_set) == data
        again = read_quietly(path)
        assert again.texts == data.texts and rows(again) == rows(data)


# --------------------------------------------------------------------------- reader warnings


def test_repeated_labels_and_0_1_ids_warn(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    with pytest.warns(LabelWarning) as caught:
        data = load(path, labels_format="ids")
    assert [str(w.message) for w in caught] == [
        f"{path}: column 'labels': 3 row(s) name a label more than once (first: line 1, '1'); "
        "a label counts once per text"
    ]
    assert rows(data) == [["0", "1"]] * 3
    flags = tmp_path / "flags.csv"
    flags.write_text("text,label\na,1\nb,0\nc,1\n")
    with pytest.warns(LabelWarning, match=r"the labels are 0 and 1 only.*label_columns=\['label'\]"):
        load(flags)
    assert rows(load(flags, label_columns=["label"])) == [["label"], [], ["label"]]


# --------------------------------------------------------------------------- command line


def delimited_vectors_csv(folder: Path) -> Path:
    """The vectors as '1|0|1' text, which reads as label ids 1, 0, 1 unless --labels-format says otherwise."""
    path = folder / "delimited.csv"
    lines = [f"{text},{'|'.join(map(str, vector))}\n" for text, vector in zip(TEXTS, VECTORS, strict=True)]
    path.write_text("text,labels\n" + "".join(lines))
    return path


def test_data_check_reads_vectors_without_warnings(run_cli, tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", VECTORS, TEXTS)
    code, out, err = run_cli("data", "check", str(path), "--labels-file", str(labels_file(tmp_path, NAMES)), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["labels"] == 3 and report["label_assignments"] == 6  # the 1s of VECTORS
    assert {row["label"]: row["count"] for row in report["label_frequencies"]} == dict.fromkeys(NAMES, 2)
    assert report["label_density"] == 0.5 and report["warnings"] == []


def test_data_check_warns_about_0_1_ids_repeats_and_density(run_cli, tmp_path):
    path = delimited_vectors_csv(tmp_path)
    code, out, err = run_cli("data", "check", str(path), "--json")
    assert code == 0, err
    report = json.loads(out)
    # read as ids: rows {0, 1}, {0, 1}, {0}, {1} over the labels '0' and '1': density (2 + 2 + 1 + 1) / 4 / 2
    assert report["labels"] == 2 and report["label_density"] == 0.75
    assert report["warnings"] == [
        f"{path}: column 'labels': 4 row(s) name a label more than once (first: line 2, '1'); "
        "a label counts once per text",
        f"{path}: column 'labels': the labels are 0 and 1 only, read as the label names '0' and '1'; if each "
        "cell is a 0/1 vector (multi-hot), pass labels_format='multi_hot' (CLI: --labels-format multi_hot); "
        "if the column is one 0/1 flag per text, pass label_columns=['labels']",
        "label density is 0.75 (above 0.5): a text carries 1.50 of the 2 labels on average; if the labels "
        "column holds 0/1 vectors read as label ids, pass labels_format='multi_hot' (CLI: --labels-format "
        "multi_hot)",
    ]
    code, out, err = run_cli("data", "check", str(path))
    assert code == 0, err
    printed = " ".join(out.split())  # the table wraps long lines
    assert all(" ".join(f"warning: {warning}".split()) in printed for warning in report["warnings"])
    names = labels_file(tmp_path, NAMES)
    code, out, err = run_cli(
        "data", "check", str(path), "--labels-format", "multi_hot", "--labels-file", str(names), "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["labels"] == 3 and report["label_assignments"] == 6 and report["warnings"] == []
    assert "warning:" not in run_cli("data", "check", str(path), "--labels-format", "multi_hot")[1]


def test_cli_refuses_ambiguous_lists_and_bad_format_in_one_line(run_cli, tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [[0, 1], [1, 0]])
    code, out, err = run_cli("data", "check", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"labelspace: error: {path}:1: column 'labels': every labels cell is a list of two")
    assert "(CLI: --labels-format multi_hot or --labels-format ids)" in err
    code, out, err = run_cli("data", "check", str(path), "--labels-format", "vector")
    assert code == 2
    assert err == "labelspace: error: --labels-format: expected one of auto, names, ids, multi_hot; got 'vector'\n"
    code, out, err = run_cli("data", "check", str(path), "--labels-format", "ids", "--json")
    assert code == 0, err
    assert json.loads(out)["labels_per_item"] == {"2": 2}


def test_split_reads_vectors_and_writes_names(run_cli, tmp_path):
    path = delimited_vectors_csv(tmp_path)
    names = labels_file(tmp_path, NAMES)
    code, _, err = run_cli(
        "split", str(path), "--out", str(tmp_path / "out"), "--fractions", "0.5,0.5",
        "--labels-format", "multi_hot", "--labels-file", str(names),
    )  # fmt: skip
    assert code == 0, err
    parts = [load(tmp_path / "out" / f"{part}.jsonl", label_names=NAMES) for part in ("train", "dev")]
    by_text = {text: labels for part in parts for text, labels in zip(part.texts, rows(part), strict=True)}
    assert by_text == dict(zip(TEXTS, EXPECTED, strict=True))


def test_training_data_options_take_labels_format(tmp_path):
    from labelspace.commands.train import load_dataset

    path = delimited_vectors_csv(tmp_path)
    names = labels_file(tmp_path, NAMES)
    data = load_dataset(str(path), {"labels_format": "multi_hot", "labels_file": str(names)})
    assert rows(data) == EXPECTED


def test_evaluate_and_tune_thresholds_accept_labels_format(run_cli, tmp_path):
    import shutil

    from labelspace.models import LabelspaceModel
    from labelspace.models.testing import tiny_model_folder

    model = LabelspaceModel.from_pretrained(tiny_model_folder(tmp_path / "tiny"), labels=NAMES, seed=0)
    model.save(tmp_path / "run" / "model")
    shutil.copytree(tmp_path / "run", tmp_path / "run2")
    vectors = delimited_vectors_csv(tmp_path)
    named = tmp_path / "named.jsonl"
    named.write_text("".join(json.dumps({"text": t, "labels": n}) + "\n" for t, n in zip(TEXTS, EXPECTED, strict=True)))
    names = str(labels_file(tmp_path, NAMES))
    results = []
    for data, extra in ((vectors, ["--labels-format", "multi_hot", "--labels-file", names]), (named, [])):
        out = tmp_path / f"{data.stem}.json"
        code, _, err = run_cli("evaluate", str(tmp_path / "run"), "--data", str(data), "--json", str(out), *extra)
        assert code == 0, err
        result = json.loads(out.read_text())
        del result["data"]
        results.append(result)
    assert results[0] == results[1]  # the vectors are the same labels as the names
    tuned = []
    for run, data, extra in (
        ("run", vectors, ["--labels-format", "multi_hot", "--labels-file", names]),
        ("run2", named, []),
    ):
        code, _, err = run_cli("tune-thresholds", str(tmp_path / run), "--data", str(data), "--quiet", *extra)
        assert code == 0, err
        tuned.append(LabelspaceModel.from_pretrained(tmp_path / run / "model").thresholds)
    assert np.allclose(tuned[0], tuned[1])
