"""Dataset statistics (`labelspace data check`) against hand-computed values."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest

from labelspace.data import LabeledDataset, PairDataset, TripletDataset, load
from labelspace.data.check import collect_label_warnings, describe, length_statistics


def _small() -> LabeledDataset:
    return LabeledDataset.from_label_names(
        ["refund me", "app is slow and crashes", "refund me", "", "love it"],
        [["billing", "refund"], ["bug", "performance"], ["refund"], [], ["billing", "refund", "bug"]],
    )


def test_labeled_statistics_by_hand():
    report = describe(_small())
    assert report["rows"] == 5
    assert report["labels"] == 4
    assert report["label_assignments"] == 8
    assert report["label_cardinality"] == 1.6
    assert report["label_density"] == 0.4
    assert report["labels_per_item"] == {"0": 1, "1": 1, "2": 2, "3": 1}
    # rarest first, ties by label id (billing < bug < performance < refund alphabetically)
    assert [(row["label"], row["count"]) for row in report["label_frequencies"]] == [
        ("performance", 1),
        ("billing", 2),
        ("bug", 2),
        ("refund", 3),
    ]
    assert report["texts_without_labels"] == 1
    assert report["empty_texts"] == 1
    assert report["duplicated_texts"] == 2 and report["distinct_duplicated_texts"] == 1
    assert report["top_label_pairs"][0] == {"labels": ["billing", "refund"], "count": 2}
    pair_counts = {tuple(row["labels"]): row["count"] for row in report["top_label_pairs"]}
    assert pair_counts == {
        ("billing", "refund"): 2,
        ("billing", "bug"): 1,
        ("bug", "refund"): 1,
        ("bug", "performance"): 1,
    }
    json.dumps(report)  # JSON-ready


def test_length_statistics_by_hand():
    stats = length_statistics(["a", "bb cc", "ddd eee fff"])
    assert stats["characters"] == {"min": 1, "mean": 5.67, "median": 5.0, "p95": 10.4, "max": 11}
    assert stats["words"]["max"] == 3 and stats["words"]["median"] == 2.0


def test_pairs_and_triplets_statistics():
    pairs = PairDataset(["a", "a", "b"], ["b", "b", "b"], np.array([1.0, 1.0, 0.25]))
    report = describe(pairs)
    assert report["score"]["positives (score >= 0.5)"] == 2
    assert report["same_text_pairs"] == 1 and report["duplicated_pairs"] == 2
    triplets = TripletDataset(["q", "r"], ["p", "r"], [["n1", "n2"], ["n3"]])
    report = describe(triplets)
    assert report["negatives_per_anchor"] == {"1": 1, "2": 1}
    assert report["positive_equals_anchor"] == 1


def test_goemotions_train_counts(goemotions_dir):
    data = load(goemotions_dir / "train.tsv")
    report = describe(data)
    names = (goemotions_dir / "labels.txt").read_text().split()
    counts: Counter = Counter()
    for line in (goemotions_dir / "train.tsv").read_text(encoding="utf-8").splitlines():
        counts.update(names[int(i)] for i in line.split("\t")[1].split(","))
    assert report["rows"] == 43410 and report["labels"] == 28
    assert {row["label"]: row["count"] for row in report["label_frequencies"]} == dict(counts)
    assert report["label_frequencies"][-1]["label"] == "neutral"
    assert report["label_frequencies"][0]["label"] == counts.most_common()[-1][0]


def test_density_warning_above_one_half():
    # 3 texts over 2 labels: 2 + 1 + 1 = 4 assignments, density 4 / 6 > 0.5
    dense = LabeledDataset.from_label_names(["a", "b", "c"], [["x", "y"], ["x"], ["y"]])
    report = describe(dense)
    assert report["label_density"] == round(4 / 6, 4)
    assert report["warnings"] == [
        "label density is 0.67 (above 0.5): a text carries 1.33 of the 2 labels on average; if the labels column "
        "holds 0/1 vectors read as label ids, pass labels_format='multi_hot' (CLI: --labels-format multi_hot)"
    ]
    # exactly one half is not above it
    half = LabeledDataset.from_label_names(["a", "b"], [["x"], ["y"]])
    assert describe(half)["label_density"] == 0.5 and describe(half)["warnings"] == []
    assert describe(_small())["warnings"] == []


def test_reader_warnings_join_the_report():
    pairs = PairDataset(["a"], ["b"], np.array([1.0]))
    assert describe(pairs)["warnings"] == []
    assert describe(pairs, reader_warnings=["w"])["warnings"] == ["w"]
    triplets = TripletDataset(["q"], ["p"], ["n"])
    assert describe(triplets, reader_warnings=["w"])["warnings"] == ["w"]
    labeled = describe(_small(), reader_warnings=["from the reader"])
    assert labeled["warnings"] == ["from the reader"]


def test_collect_label_warnings_keeps_other_warnings(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,labels\na,x|x\nb,y\nc,y|z|y\n")
    with pytest.warns(UserWarning, match="something else"), collect_label_warnings() as found:
        data = load(path)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert found == [
        f"{path}: column 'labels': 2 row(s) name a label more than once (first: line 2, 'x'); "
        "a label counts once per text"
    ]
    assert data.labels.to_lists() == [[0], [1], [1, 2]]
    assert describe(data, reader_warnings=found)["warnings"] == found
