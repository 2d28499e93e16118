"""The embedded demo dataset: size, labels, splits and the card's numbers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from labelspace.data.builtin import DEMO_LABELS, demo
from labelspace.data.builtin.demo import demo_path

CARD = Path(demo_path("train")).with_name("DATASET_CARD.md")


def test_size_labels_and_cardinality():
    everything = demo("all")
    assert len(everything) == 600
    assert everything.label_set == DEMO_LABELS and len(DEMO_LABELS) == 12
    cardinality = everything.labels.cardinality()
    assert cardinality.min() == 1 and cardinality.max() == 3
    assert len(set(everything.texts)) == 600  # no duplicated message


def test_splits_are_disjoint_and_stratified():
    splits = [demo(name) for name in ("train", "dev", "test")]
    assert [len(s) for s in splits] == [480, 60, 60]
    texts = [set(s.texts) for s in splits]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    overall = demo("all").labels.label_counts() / 600
    for split in splits:
        share = split.labels.label_counts() / len(split)
        assert np.abs(share - overall).max() < 0.03
        assert (split.labels.label_counts() > 0).all()  # every label in every split


def test_card_table_matches_the_files():
    rows = {}
    for line in CARD.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| ([a-z-]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", line)
        if match:
            rows[match.group(1)] = [int(match.group(k)) for k in range(2, 6)]
    assert set(rows) == set(DEMO_LABELS.names)
    columns = [demo(name).labels.label_counts() for name in ("train", "dev", "test", "all")]
    for label_id, name in enumerate(DEMO_LABELS.names):
        assert rows[name] == [int(column[label_id]) for column in columns], name
