"""Dataset statistics (`labelspace data check`) against hand-computed values."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from labelspace.data import LabeledDataset, PairDataset, TripletDataset, load
from labelspace.data.check import describe, length_statistics


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
