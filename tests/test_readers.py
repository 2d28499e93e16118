"""Readers on good input, LabelSet and LabelMatrix, against hand-computed expectations."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from labelspace.data import (
    DataFormatError,
    LabeledDataset,
    LabelMatrix,
    LabelSet,
    PairDataset,
    TripletDataset,
    load,
)
from labelspace.data.readers import LabelWarning

GOOD = Path(__file__).resolve().parent / "data" / "good"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def as_names(data: LabeledDataset) -> list[tuple[str, list[str]]]:
    return [data[i] for i in range(len(data))]


# --------------------------------------------------------------------------- labels columns


@pytest.mark.parametrize(
    ("cells", "delimiter"),
    [
        (['"billing|refund"', "performance", '""', "refund|billing|refund"], "|"),
        (['"billing,refund"', "performance", '""', '"refund,billing,refund"'], ","),
        (['"billing;refund"', "performance", '""', '"refund;billing;refund"'], ";"),
    ],
    ids=["pipe", "comma", "semicolon"],
)
def test_csv_delimited_labels_detected(tmp_path, cells, delimiter):
    texts = ["refund please", "app is slow", "no label here", "money back"]
    body = "text,labels\n" + "".join(f"{t},{c}\n" for t, c in zip(texts, cells, strict=True))
    path = write(tmp_path, "data.csv", body)
    for options in ({}, {"label_delimiter": delimiter}):
        with pytest.warns(LabelWarning, match="1 row.s. name a label more than once .first: line 5, 'refund'"):
            data = load(path, **options)
        assert isinstance(data, LabeledDataset)
        assert data.texts == texts
        assert data.label_set.names == ["billing", "performance", "refund"]  # sorted names
        assert data.labels.to_lists() == [[0, 2], [1], [], [0, 2]]  # duplicates merged
        assert as_names(data)[0] == ("refund please", ["billing", "refund"])
        assert data.source == str(path)


def test_label_delimiter_detection_takes_the_first_of_pipe_semicolon_comma(tmp_path):
    path = write(tmp_path, "data.csv", 'text,labels\none,a|b\ntwo,"c,d"\nthree, e ; f \n')
    data = load(path)
    # '|' occurs, so it is the delimiter; 'c,d' and 'e ; f' are one label each (stripped)
    assert data.label_set.names == ["a", "b", "c,d", "e ; f"]
    assert data.labels.to_lists() == [[0, 1], [2], [3]]
    override = load(path, label_delimiter=";")
    assert override.label_set.names == ["a|b", "c,d", "e", "f"]
    assert override.labels.to_lists() == [[0], [1], [2, 3]]


def test_single_label_per_row_without_any_delimiter(tmp_path):
    path = write(tmp_path, "data.csv", "text,label\nx,cat\ny,dog\nz,cat\n")
    data = load(path)
    assert data.label_set.names == ["cat", "dog"]
    assert data.labels.to_lists() == [[0], [1], [0]]


def test_json_list_strings_in_csv(tmp_path):
    path = write(
        tmp_path,
        "data.csv",
        'text,labels\none,"[""b"", ""a""]"\ntwo,[]\nthree,"[""a, with comma""]"\nfour,c|a\n',
    )
    data = load(path)
    assert data.label_set.names == ["a", "a, with comma", "b", "c"]
    assert as_names(data) == [("one", ["a", "b"]), ("two", []), ("three", ["a, with comma"]), ("four", ["a", "c"])]


def test_integer_ids_with_labels_file_resolve_to_names(tmp_path):
    labels = write(tmp_path, "labels.txt", "joy\nanger\nsadness\nfear\n")
    path = write(tmp_path, "data.csv", "text,labels\nyay,0\ngrr,1|3\nboth,joy|2\nnone,\n")
    data = load(path, labels_file=labels)
    assert data.label_set.names == ["joy", "anger", "sadness", "fear"]  # file order, unused kept
    assert as_names(data) == [("yay", ["joy"]), ("grr", ["anger", "fear"]), ("both", ["joy", "sadness"]), ("none", [])]
    assert data.labels.label_counts().tolist() == [2, 1, 1, 1]


def test_integer_ids_without_labels_file_are_names_in_numeric_order(tmp_path):
    path = write(tmp_path, "data.csv", "text,labels\na,10|2\nb,1\nc,2\n")
    data = load(path)
    assert data.label_set.names == ["1", "2", "10"]  # numeric, not "1", "10", "2"
    assert as_names(data) == [("a", ["2", "10"]), ("b", ["1"]), ("c", ["2"])]


def test_jsonl_with_list_labels_and_ids(tmp_path):
    path = write(
        tmp_path,
        "data.jsonl",
        '{"text": "one", "labels": ["b", "a"]}\n\n{"text": "two", "labels": []}\n'
        '{"text": "three", "labels": "a|c", "extra": 1}\n',
    )
    data = load(path)
    assert data.label_set.names == ["a", "b", "c"]
    assert data.labels.to_lists() == [[0, 1], [], [0, 2]]
    labels = write(tmp_path, "labels.txt", "x\ny\nz\n")
    ids = write(tmp_path, "ids.jsonl", '{"text": "one", "labels": [2, 0]}\n{"text": "two", "labels": 1}\n')
    data = load(ids, labels_file=labels)
    assert as_names(data) == [("one", ["x", "z"]), ("two", ["y"])]


def test_tsv_with_header(tmp_path):
    path = write(tmp_path, "data.tsv", "text\tlabels\nhello, world\ta|b\nbye\tb\n")
    data = load(path)
    assert data.texts == ["hello, world", "bye"]
    assert data.labels.to_lists() == [[0, 1], [1]]


# --------------------------------------------------------------------------- 0/1 columns


def test_label_columns_explicit_list_and_string(tmp_path):
    path = write(tmp_path, "data.csv", "text,anger,joy,fear,stars\nmad,1,0,1,5\nglad,0,1,0,4\nmeh,0,0,0,3\n")
    for columns in (["joy", "anger"], "joy,anger"):
        data = load(path, label_columns=columns)
        assert data.label_set.names == ["joy", "anger"]  # the order given; fear is not read
        assert data.labels.to_dense().tolist() == [[0, 1], [1, 0], [0, 0]]


def test_label_columns_auto_and_implicit(tmp_path):
    path = write(
        tmp_path,
        "data.csv",
        "text,anger,joy,stars,flag\nmad,1,0,5,true\nglad,0,1,4,false\nmeh,0.0,1.0,3,yes\n",
    )
    expected = [[1, 0, 1], [0, 1, 0], [0, 1, 1]]
    for options in ({"label_columns": "auto"}, {}):  # no labels column: 0/1 columns are found
        data = load(path, **options)
        assert data.label_set.names == ["anger", "joy", "flag"]  # stars (3..5) is not 0/1
        assert data.labels.to_dense().tolist() == expected


def test_label_columns_against_a_label_set(tmp_path):
    path = write(tmp_path, "dev.csv", "text,joy,anger,extra\na,1,0,1\n")
    data = load(path, label_columns="auto", label_set=LabelSet(["anger", "joy"]))
    assert data.label_set.names == ["anger", "joy"]
    assert data.labels.to_dense().tolist() == [[0, 1]]
    with pytest.raises(DataFormatError, match="column is missing") as caught:
        load(path, label_columns=["joy"], label_set=LabelSet(["anger", "joy"]))
    assert (caught.value.line, caught.value.column) == (1, "anger")


# --------------------------------------------------------------------------- Parquet, DataFrame, HF


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "data.parquet"
    pd.DataFrame({"text": ["one", "two", "three"], "labels": [["b", "a"], [], ["c"]]}).to_parquet(path)
    data = load(path)
    assert data.texts == ["one", "two", "three"]
    assert data.label_set.names == ["a", "b", "c"]
    assert data.labels.to_lists() == [[0, 1], [], [2]]
    strings = tmp_path / "strings.parquet"
    pd.DataFrame({"sentence": ["x", "y"], "tags": ["p|q", "q"]}).to_parquet(strings)
    assert as_names(load(strings)) == [("x", ["p", "q"]), ("y", ["q"])]


def test_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["refund please", "app is slow"], "labels": ["billing|refund", "performance"]})
    data = load(frame)
    assert data.source == "<DataFrame>"
    assert as_names(data) == [("refund please", ["billing", "refund"]), ("app is slow", ["performance"])]
    lists = load(pd.DataFrame({"content": ["a", "b"], "label": [[1, 0], [2]]}))
    assert lists.label_set.names == ["0", "1", "2"]
    assert lists.labels.to_lists() == [[0, 1], [2]]
    single = load(pd.DataFrame({"text": ["a", "b", "c"], "label": [2, 0, 2]}))
    assert single.label_set.names == ["0", "2"]
    assert single.labels.to_lists() == [[1], [0], [1]]


def test_hf_dataset_plain_and_class_label():
    datasets = pytest.importorskip("datasets")
    plain = datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [["y", "x"], []]})
    data = load(plain)
    assert data.source == "<datasets.Dataset>"
    assert data.label_set.names == ["x", "y"]
    assert data.labels.to_lists() == [[0, 1], []]

    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.ClassLabel(names=["zeta", "alpha", "unused"])),
        }
    )
    multi = datasets.Dataset.from_dict({"text": ["a", "b"], "labels": [[1, 0], [1]]}, features=features)
    data = load(multi)
    assert data.label_set.names == ["zeta", "alpha", "unused"]  # the feature's names, in its order
    assert as_names(data) == [("a", ["zeta", "alpha"]), ("b", ["alpha"])]

    single_features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    single = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]}, features=single_features)
    assert as_names(load(single)) == [("a", ["pos"]), ("b", ["neg"])]


# --------------------------------------------------------------------------- GoEmotions TSV


def test_goemotions_tsv_detected_with_labels_file_beside(tmp_path):
    write(tmp_path, "labels.txt", "admiration\namusement\nanger\nneutral\n")
    path = write(tmp_path, "train.tsv", 'so good\t0\tid1\nlol "quoted"\t1,3\tid2\nok\t3\tid3\n')
    data = load(path)
    assert data.label_set.names == ["admiration", "amusement", "anger", "neutral"]
    assert data.texts == ["so good", 'lol "quoted"', "ok"]  # no CSV quoting in GoEmotions files
    assert data.labels.to_lists() == [[0], [1, 3], [3]]
    assert load(path, format="goemotions").labels == data.labels


def test_goemotions_tsv_without_labels_file_uses_ids_as_names(tmp_path):
    path = write(tmp_path, "train.tsv", "a\t10,2\tid1\nb\t2\tid2\n")
    data = load(path)
    assert data.label_set.names == ["2", "10"]
    assert as_names(data) == [("a", ["2", "10"]), ("b", ["2"])]
    labels = write(tmp_path, "names.txt", "\n".join(f"l{i}" for i in range(11)) + "\n")
    named = load(path, labels_file=labels)
    assert as_names(named) == [("a", ["l2", "l10"]), ("b", ["l2"])]


# --------------------------------------------------------------------------- BOM, CRLF, line numbers


def test_bom_and_crlf_variants_read_the_same():
    expected = load(GOOD / "plain.csv")
    assert as_names(expected) == [("refund please", ["billing", "refund"]), ("app is slow", ["performance"])]
    for name in ("bom.csv", "crlf.csv", "bom_crlf.csv", "bom_crlf.tsv", "bom_crlf.jsonl"):
        data = load(GOOD / name)
        assert data == expected, name
        assert not any("\r" in text or "\ufeff" in text for text in data.texts)
    goemotions = load(GOOD / "goemotions_bom_crlf" / "train.tsv")
    assert goemotions.label_set.names == ["admiration", "amusement", "anger", "neutral"]
    assert as_names(goemotions) == [("so good", ["admiration"]), ("lol", ["amusement", "neutral"])]
    multiline = load(GOOD / "bom_crlf_multiline.csv")
    assert multiline.texts == ["two\r\nlines", "plain"]  # a line break inside quotes is kept


def test_quoted_multiline_fields_keep_line_numbers(tmp_path):
    labels = write(tmp_path, "labels.txt", "a\nb\n")
    path = write(
        tmp_path,
        "data.csv",
        'text,labels\n"line one\nline two\nline three",a\n\nplain,b\n"x\ny",a\nlast,c\n',
    )
    # line 1 header, 2-4 first item, 5 blank, 6 plain, 7-8 quoted, 9 the unknown label 'c'
    with pytest.raises(DataFormatError) as caught:
        load(path, labels_file=labels)
    assert (caught.value.line, caught.value.column) == (9, "labels")
    assert str(caught.value).startswith(f"{path}:9: column 'labels': label 'c' is not in labels file")
    empty = write(tmp_path, "empty.csv", 'text,labels\n"a\nb",x\n,y\n')
    with pytest.raises(DataFormatError, match="text is empty") as caught:
        load(empty)
    assert caught.value.line == 4


def test_null_words_mean_missing_only_in_delimited_files(tmp_path):
    jsonl = write(tmp_path, "data.jsonl", '{"text": "null", "labels": ["a"]}\n{"text": "NaN", "labels": []}\n')
    assert load(jsonl).texts == ["null", "NaN"]  # JSON has a real null: these are strings
    pd = pytest.importorskip("pandas")
    assert load(pd.DataFrame({"text": ["nan"], "labels": ["a"]})).texts == ["nan"]
    delimited = write(tmp_path, "data.csv", "text,labels\nfine,a\nNaN,b\n")
    with pytest.raises(DataFormatError, match="cell is 'NaN' \\(expected a text\\)") as caught:
        load(delimited)
    assert (caught.value.line, caught.value.column) == (3, "text")
    triplets = write(tmp_path, "triplets.csv", "anchor,positive,negative,negative_2,negative_3\na,p,None,nan,\n")
    assert load(triplets).negatives == [["None"]]  # 'None' is a text; 'nan' and '' are no negative


# --------------------------------------------------------------------------- dev against train


def test_dev_against_train_label_set(tmp_path):
    train = load(write(tmp_path, "train.csv", "text,labels\na,joy\nb,anger|joy\nc,fear\n"))
    assert train.label_set.names == ["anger", "fear", "joy"]
    dev = write(tmp_path, "dev.csv", "text,labels\nx,joy\ny,surprise|anger\nz,disgust\n")
    with pytest.raises(DataFormatError) as caught:
        load(dev, label_set=train.label_set)
    error = caught.value
    assert (error.path, error.line, error.column) == (str(dev), 3, "labels")
    assert "label 'surprise' is not in the given label set" in error.message
    with pytest.warns(UserWarning, match="ignored 2 label"):
        data = load(dev, label_set=train.label_set, unknown_labels="ignore")
    assert data.label_set == train.label_set
    assert as_names(data) == [("x", ["joy"]), ("y", ["anger"]), ("z", [])]


# --------------------------------------------------------------------------- pairs and triplets


def test_pairs_with_and_without_score(tmp_path):
    scored = load(write(tmp_path, "pairs.csv", "text1,text2,score\na cat,a kitten,0.9\na cat,a car,0\n"))
    assert isinstance(scored, PairDataset)
    assert scored.text1 == ["a cat", "a cat"] and scored.text2 == ["a kitten", "a car"]
    assert scored.scores.dtype == np.float32
    np.testing.assert_allclose(scored.scores, [0.9, 0.0])
    unscored = load(write(tmp_path, "pairs.jsonl", '{"text1": "q", "text2": "answer"}\n'))
    assert isinstance(unscored, PairDataset)
    assert unscored.scores.tolist() == [1.0]  # no score column: every pair is a positive
    custom = load(
        write(tmp_path, "custom.csv", "question,answer,relevance\nq,a,0.25\n"),
        kind="pairs",
        text1_column="question",
        text2_column="answer",
        score_column="relevance",
    )
    assert custom[0] == ("q", "a", 0.25)


def test_triplets_one_and_several_negatives(tmp_path):
    one = load(write(tmp_path, "one.csv", "anchor,positive,negative\nrefund?,money back,app crash\n"))
    assert isinstance(one, TripletDataset)
    assert one.negatives == ["app crash"]  # one negative column: a list of str
    assert one.num_negatives == 1
    several = load(
        write(
            tmp_path,
            "several.csv",
            "anchor,positive,negative_3,negative,negative_2\na1,p1,n13,n11,n12\na2,p2,,n21,\na3,p3,,n31,n32\n",
        )
    )
    assert several.negatives == [["n11", "n12", "n13"], ["n21"], ["n31", "n32"]]  # numeric column order
    assert several.num_negatives == 3
    assert several[1] == ("a2", "p2", ["n21"])
    custom = load(
        write(tmp_path, "custom.csv", "query,pos,negative\nq,p,n\n"),
        anchor_column="query",
        positive_column="pos",
    )
    assert isinstance(custom, TripletDataset) and custom[0] == ("q", "p", ["n"])


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("text,labels", LabeledDataset),
        ("text1,text2,score", PairDataset),
        ("text1,text2", PairDataset),
        ("anchor,positive,negative", TripletDataset),
    ],
)
def test_kind_detection(tmp_path, header, kind):
    row = {
        "text": "t",
        "labels": "a",
        "text1": "x",
        "text2": "y",
        "score": "1",
        "anchor": "a",
        "positive": "p",
        "negative": "n",
    }
    names = header.split(",")
    path = write(tmp_path, "data.csv", header + "\n" + ",".join(row[name] for name in names) + "\n")
    assert type(load(path)) is kind


def test_kind_override(tmp_path):
    path = write(tmp_path, "data.csv", "text1,text2,labels\nx,y,a\n")
    assert isinstance(load(path), PairDataset)
    data = load(path, kind="labeled", text_column="text2")
    assert isinstance(data, LabeledDataset) and as_names(data) == [("y", ["a"])]


# --------------------------------------------------------------------------- options


def test_column_and_delimiter_options(tmp_path):
    path = write(tmp_path, "data.csv", "id;review;tags;labels\n1;good, really;x|y;ignored\n2;bad;y;ignored\n")
    data = load(path, delimiter=";", text_column="review", labels_column="tags")
    assert as_names(data) == [("good, really", ["x", "y"]), ("bad", ["y"])]
    txt = write(tmp_path, "data.txt", "text\tlabels\nhi\ta\n")
    with pytest.raises(DataFormatError, match="cannot tell the format from the extension '.txt'"):
        load(txt)
    assert as_names(load(txt, format="tsv")) == [("hi", ["a"])]
    assert as_names(load(write(tmp_path, "data.tsv", "text|labels\nhi|a\n"), delimiter="|")) == [("hi", ["a"])]


def test_missing_column_given_by_option(tmp_path):
    path = write(tmp_path, "data.csv", "text,labels\nhi,a\n")
    with pytest.raises(DataFormatError, match="column is missing") as caught:
        load(path, labels_column="tags")
    assert (caught.value.line, caught.value.column) == (1, "tags")


def test_argument_errors(tmp_path):
    path = write(tmp_path, "data.csv", "text,labels\nhi,a\n")
    with pytest.raises(ValueError, match="unknown_labels"):
        load(path, unknown_labels="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be"):
        load(path, kind="pair")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match="one of labels_file, label_set and label_names, not labels_file and label_set"
    ):
        load(path, labels_file=path, label_set=LabelSet(["a"]))
    with pytest.raises(ValueError, match="not label_set and label_names"):
        load(path, label_set=LabelSet(["a"]), label_names=["a"])
    with pytest.raises(ValueError, match="format must be"):
        load(path, format="xlsx")
    with pytest.raises(TypeError, match="source must be"):
        load(42)
    with pytest.raises(DataFormatError, match="file not found"):
        load(tmp_path / "absent.csv")
    with pytest.raises(DataFormatError, match="is a folder"):
        load(tmp_path)


# --------------------------------------------------------------------------- GoEmotions release


def _goemotions_dir() -> Path | None:
    for candidate in (
        os.environ.get("LABELSPACE_GOEMOTIONS_DIR"),
        Path(__file__).resolve().parents[2] / "shared" / "data" / "goemotions",
    ):
        if candidate and (Path(candidate) / "train.tsv").is_file():
            return Path(candidate)
    return None


def test_goemotions_train_counts_match_an_independent_count():
    folder = _goemotions_dir()
    if folder is None:
        pytest.skip(
            "GoEmotions train.tsv not found: set LABELSPACE_GOEMOTIONS_DIR or put it in ../shared/data/goemotions"
        )
    names = (folder / "labels.txt").read_text(encoding="utf-8").split()
    rows, counts = 0, Counter()
    with open(folder / "train.tsv", encoding="utf-8", newline="") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line:
                rows += 1
                counts.update(int(i) for i in line.split("\t")[1].split(","))
    data = load(folder / "train.tsv")
    assert len(names) == 28
    assert rows == len(data) == 43410
    assert data.label_set.names == names
    assert data.labels.label_counts().tolist() == [counts[i] for i in range(28)]
    assert names[int(np.argmax(data.labels.label_counts()))] == "neutral"


# --------------------------------------------------------------------------- LabelSet


def test_label_set_basics_and_json_round_trip(tmp_path):
    labels = LabelSet(["billing", "bug", "refund"])
    assert labels.names == ["billing", "bug", "refund"] and len(labels) == 3
    assert labels.index("bug") == 1 and labels.get("nope") is None and labels[2] == "refund"
    assert "bug" in labels and "nope" not in labels and list(labels) == labels.names
    labels.names.append("mutated")  # names is a copy
    assert len(labels) == 3
    assert json.loads(labels.to_json()) == {"names": ["billing", "bug", "refund"]}
    assert LabelSet.from_json(labels.to_json()) == labels
    assert LabelSet.from_dict(labels.to_dict()) == labels
    assert hash(LabelSet(["billing", "bug", "refund"])) == hash(labels)
    assert LabelSet(["bug", "billing", "refund"]) != labels  # order matters
    with pytest.raises(KeyError, match="unknown label 'nope'"):
        labels.index("nope")
    path = tmp_path / "labels.json"
    labels.save(path)
    assert LabelSet.load(path) == labels
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]  # no temporary file left
    text = write(tmp_path, "labels.txt", "\ufeffbilling\r\nbug\r\nrefund\r\n\r\n")
    assert LabelSet.load(text) == labels


def test_label_set_rejects_bad_names():
    with pytest.raises(ValueError, match="label 'a' appears twice .*positions 0 and 2"):
        LabelSet(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        LabelSet(["a", ""])
    with pytest.raises(ValueError, match="'names' list"):
        LabelSet.from_dict({"labels": ["a"]})


@pytest.mark.parametrize(
    ("content", "line", "phrase"),
    [
        ("joy\nanger\njoy\n", 3, "label 'joy' already given on line 1"),
        ("joy\n\nanger\n", 2, "empty line in labels file"),
        ("", 1, "labels file is empty"),
        ("\n\n", 1, "labels file is empty"),
    ],
)
def test_labels_file_errors(tmp_path, content, line, phrase):
    path = write(tmp_path, "labels.txt", content)
    with pytest.raises(DataFormatError, match=phrase) as caught:
        LabelSet.from_labels_file(path)
    assert (caught.value.path, caught.value.line) == (str(path), line)


def test_labels_file_missing(tmp_path):
    with pytest.raises(DataFormatError, match="labels file not found"):
        LabelSet.from_labels_file(tmp_path / "labels.txt")
    data = write(tmp_path, "data.csv", "text,labels\nhi,0\n")
    with pytest.raises(DataFormatError, match="labels file not found"):
        load(data, labels_file=tmp_path / "labels.txt")


# --------------------------------------------------------------------------- LabelMatrix


def test_label_matrix_from_lists_and_dense():
    matrix = LabelMatrix.from_lists([[0, 2, 2], [1], []], num_labels=3)
    dense = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=np.uint8)
    assert matrix.to_dense().tolist() == dense.tolist() and matrix.to_dense().dtype == np.uint8
    assert matrix.shape == (3, 3) and len(matrix) == 3 and matrix.num_labels == 3 and matrix.nnz == 3
    assert LabelMatrix.from_dense(dense) == matrix
    assert LabelMatrix.from_dense(dense.tolist()) == matrix
    assert LabelMatrix.from_dense(dense.astype(bool)) == matrix
    assert matrix.to_lists() == [[0, 2], [1], []]
    assert matrix.row(0).tolist() == [0, 2]
    assert LabelMatrix.from_lists([], num_labels=4).shape == (0, 4)


def test_label_matrix_tensor():
    torch = pytest.importorskip("torch")
    matrix = LabelMatrix.from_lists([[0, 2], [1]], num_labels=3)
    tensor = matrix.to_tensor()
    assert tensor.dtype == torch.float32 and tensor.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert matrix.to_tensor(torch.long).dtype == torch.long
    assert LabelMatrix.from_dense(tensor) == matrix


def test_label_matrix_statistics_and_rows():
    matrix = LabelMatrix.from_lists([[0, 2], [1], [], [0, 1, 2], [2]], num_labels=4)
    assert matrix.label_counts().tolist() == [2, 2, 3, 0]
    assert matrix.cardinality().tolist() == [2, 1, 0, 3, 1]
    assert matrix.items_with_label(2).tolist() == [0, 3, 4]
    assert matrix.items_with_label(3).tolist() == []
    assert matrix[1:3].to_lists() == [[1], []]
    assert matrix[[4, 0]].to_lists() == [[2], [0, 2]]
    assert matrix[np.array([True, False, False, True, False])].to_lists() == [[0, 2], [0, 1, 2]]
    assert matrix[3].to_lists() == [[0, 1, 2]]
    data = LabeledDataset(list("abcde"), matrix, LabelSet(["w", "x", "y", "z"]))
    subset = data.subset([3, 0])
    assert subset.texts == ["d", "a"] and as_names(subset) == [("d", ["w", "x", "y"]), ("a", ["w", "y"])]


def test_label_matrix_concatenate_and_equality():
    first = LabelMatrix.from_lists([[0], [1]], num_labels=2)
    second = LabelMatrix.from_lists([[0, 1]], num_labels=2)
    both = LabelMatrix.concatenate([first, second])
    assert both.to_lists() == [[0], [1], [0, 1]]
    with pytest.raises(ValueError, match="different label counts"):
        LabelMatrix.concatenate([first, LabelMatrix.from_lists([[0]], num_labels=3)])
    with pytest.raises(ValueError, match="nothing to concatenate"):
        LabelMatrix.concatenate([])
    assert first == LabelMatrix.from_dense([[1, 0], [0, 1]])
    assert first != LabelMatrix.from_dense([[1, 0], [1, 1]])
    assert first != LabelMatrix.from_dense([[1, 0, 0], [0, 1, 0]])  # other shape
    assert first != [[1, 0], [0, 1]]
    with pytest.raises(TypeError):
        hash(first)


def test_label_matrix_rejects_non_binary():
    with pytest.raises(ValueError, match="0/1"):
        LabelMatrix.from_dense([[0, 2]])
    with pytest.raises(ValueError, match="0/1"):
        LabelMatrix.from_dense([[0.5, 1.0]])
    with pytest.raises(ValueError, match="2-D"):
        LabelMatrix.from_dense([0, 1])
    with pytest.raises(ValueError, match="0/1 values only"):
        LabelMatrix(sp.csr_matrix(np.array([[2, 0]])))
    with pytest.raises(ValueError, match=r"label ids must lie in \[0, 2\]"):
        LabelMatrix.from_lists([[3]], num_labels=3)
    with pytest.raises(ValueError, match="label ids"):
        LabelMatrix.from_lists([[-1]], num_labels=3)


def test_sparse_memory_is_proportional_to_assignments():
    rng = np.random.default_rng(0)
    n, num_labels = 20_000, 1000
    lists = [rng.choice(num_labels, size=3, replace=False).tolist() for _ in range(n)]
    matrix = LabelMatrix.from_lists(lists, num_labels)
    csr = matrix.to_sparse()
    assert matrix.nnz == 3 * n
    stored = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    assert stored <= 16 * matrix.nnz + 8 * (n + 1)  # a few bytes per assignment
    assert stored < n * num_labels / 50  # far below the 20 MB a dense uint8 matrix takes
    assert matrix.label_counts().sum() == 3 * n
    assert matrix.items_with_label(int(lists[0][0])).size > 0
