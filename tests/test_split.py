"""Tests for labelspace.data.split (multi-label iterative stratification).

Expectations are computed here from dense 0/1 arrays, independently of the module's own
helpers (`label_shares` is tested on a hand example of its own).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labelspace.data.split as split_module
from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelMatrix, LabelSet
from labelspace.data.split import label_shares, stratified_split, stratified_split_indices

# ---------------------------------------------------------------------------- helpers


def skewed_labels(seed: int, num_items: int = 3000, num_labels: int = 20) -> LabelMatrix:
    """Items with 1-3 labels each; label weights fall geometrically from 40% to 0.5%."""
    rng = np.random.default_rng(seed)
    weights = np.geomspace(0.40, 0.005, num_labels)
    weights /= weights.sum()
    lists = [
        rng.choice(num_labels, size=int(rng.integers(1, 4)), replace=False, p=weights).tolist()
        for _ in range(num_items)
    ]
    return LabelMatrix.from_lists(lists, num_labels)


def random_split(num_items: int, fractions, rng: np.random.Generator) -> list[np.ndarray]:
    """A plain random split with sizes floor(fraction * n), the remainder in the first part."""
    sizes = [int(f * num_items) for f in fractions]
    sizes[0] += num_items - sum(sizes)
    return np.split(rng.permutation(num_items), np.cumsum(sizes)[:-1])


def label_counts_per_split(dense: np.ndarray, splits) -> np.ndarray:
    return np.array([dense[np.asarray(s, dtype=np.int64)].sum(axis=0) for s in splits])


def assert_partition(splits, num_items: int, num_parts: int) -> None:
    assert len(splits) == num_parts
    for part in splits:
        assert isinstance(part, np.ndarray)
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "each part is sorted without repeats"
    joined = np.concatenate(splits) if splits else np.zeros(0, dtype=np.int64)
    assert joined.size == num_items, "parts are disjoint and cover every item"
    assert np.array_equal(np.sort(joined), np.arange(num_items))


# ---------------------------------------------------------------------------- partition


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.5, 0.5), (0.7, 0.2, 0.1), (0.2, 0.2, 0.2, 0.2, 0.2)])
def test_partition_and_sizes(fractions):
    labels = skewed_labels(seed=1)
    n = len(labels)
    splits = stratified_split_indices(labels, fractions, seed=0)
    assert_partition(splits, n, len(fractions))
    for part, fraction in zip(splits, fractions, strict=True):
        assert abs(len(part) - fraction * n) <= 2, (len(part), fraction * n)


def test_sizes_with_unlabelled_items_and_uneven_cardinality():
    # 4000 items: 10% without labels, the rest with 1 to 6 of 50 labels.
    rng = np.random.default_rng(7)
    weights = np.geomspace(0.3, 0.002, 50)
    weights /= weights.sum()
    lists = [
        [] if rng.random() < 0.1 else rng.choice(50, size=int(rng.integers(1, 7)), replace=False, p=weights).tolist()
        for _ in range(4000)
    ]
    labels = LabelMatrix.from_lists(lists, 50)
    splits = stratified_split_indices(labels, (0.7, 0.2, 0.1), seed=3)
    assert_partition(splits, 4000, 3)
    assert [len(part) for part in splits] == [2800, 800, 400]


def test_empty_matrix_and_single_part():
    empty = LabelMatrix.from_lists([], num_labels=3)
    splits = stratified_split_indices(empty, (0.5, 0.5))
    assert_partition(splits, 0, 2)

    labels = LabelMatrix.from_lists([[0], [1], [], [0, 1]], num_labels=2)
    (whole,) = stratified_split_indices(labels, [1.0])
    assert whole.tolist() == [0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 5), max_size=4), max_size=60),
    weights=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_partition_property(rows, weights, seed):
    labels = LabelMatrix.from_lists(rows, num_labels=6)
    fractions = [w / sum(weights) for w in weights]
    splits = stratified_split_indices(labels, fractions, seed=seed)
    assert_partition(splits, len(rows), len(fractions))
    again = stratified_split_indices(labels, fractions, seed=seed)
    assert all(np.array_equal(a, b) for a, b in zip(splits, again, strict=True))


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_split_other_seed_other_split():
    labels = skewed_labels(seed=2)
    first = stratified_split_indices(labels, seed=11)
    second = stratified_split_indices(labels, seed=11)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    others = [stratified_split_indices(labels, seed=s) for s in (12, 13, 14)]
    for other in others:
        assert not np.array_equal(first[1], other[1])


def test_default_seed_is_fixed():
    labels = skewed_labels(seed=3, num_items=500)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(stratified_split_indices(labels), stratified_split_indices(labels, seed=0), strict=True)
    )


# ---------------------------------------------------------------------------- stratification


@pytest.mark.parametrize("data_seed", [0, 1, 2, 3, 4])
def test_skewed_labels_keep_their_share(data_seed):
    labels = skewed_labels(seed=data_seed)
    dense = labels.to_dense().astype(np.int64)
    counts = dense.sum(axis=0)
    assert counts.min() >= 3, "fixture: every label has at least 3 items"
    assert counts.max() / len(dense) > 0.3 and counts.min() / len(dense) < 0.01

    splits = stratified_split_indices(labels, (0.8, 0.1, 0.1), seed=data_seed)
    overall = dense.mean(axis=0)
    per_split = label_counts_per_split(dense, splits)
    for part, part_counts in zip(splits, per_split, strict=True):
        shares = part_counts / len(part)
        worst = np.abs(shares - overall).max()
        assert worst <= 0.02, f"a label's share is {100 * worst:.2f} points off"
    # Every label with at least 3 items is in every part.
    assert (per_split[:, counts >= 3] > 0).all()


@pytest.mark.parametrize("data_seed", [0, 1, 2])
def test_beats_a_random_split_on_rare_labels(data_seed):
    labels = skewed_labels(seed=data_seed)
    dense = labels.to_dense().astype(np.int64)
    fractions = np.array([0.8, 0.1, 0.1])
    wanted = fractions[:, None] * dense.sum(axis=0)[None, :]
    rare = dense.mean(axis=0) < 0.02
    assert rare.sum() >= 5

    def rare_deviation(splits) -> float:
        return float(np.abs(label_counts_per_split(dense, splits) - wanted)[:, rare].sum())

    stratified = rare_deviation(stratified_split_indices(labels, tuple(fractions), seed=data_seed))
    rng = np.random.default_rng(1000 + data_seed)
    randoms = [rare_deviation(random_split(len(dense), fractions, rng)) for _ in range(20)]
    assert stratified <= np.mean(randoms)
    assert stratified <= min(randoms)


def test_label_counts_follow_fractions_on_skewed_data():
    # Single-label-dominated data is where the paper's per-label guarantee is tight: each
    # label's count in each part is within one item of fraction * count.
    labels = skewed_labels(seed=5)
    dense = labels.to_dense().astype(np.int64)
    fractions = np.array([0.6, 0.3, 0.1])
    per_split = label_counts_per_split(dense, stratified_split_indices(labels, tuple(fractions)))
    wanted = fractions[:, None] * dense.sum(axis=0)[None, :]
    assert np.abs(per_split - wanted).max() < 1.5


# ---------------------------------------------------------------------------- forced answers


@pytest.mark.parametrize("seed", range(10))
def test_label_with_two_items_is_split_in_half(seed):
    # label 0 on items 0 and 1 only; label 1 on items 2..5; item 6 and 7 have no labels.
    labels = LabelMatrix.from_lists([[0], [0], [1], [1], [1], [1], [], []], num_labels=2)
    first, second = stratified_split_indices(labels, (0.5, 0.5), seed=seed)
    assert len(first) == len(second) == 4
    for part in (first, second):
        assert len(set(part.tolist()) & {0, 1}) == 1
        assert len(set(part.tolist()) & {2, 3, 4, 5}) == 2
        assert len(set(part.tolist()) & {6, 7}) == 1


@pytest.mark.parametrize("seed", range(10))
def test_three_equal_parts_each_get_one_of_every_label(seed):
    # Three labels with three items each, one item carrying two of them.
    rows = [[0], [0], [0, 1], [1], [1], [2], [2], [2]]
    labels = LabelMatrix.from_lists(rows, num_labels=3)
    splits = stratified_split_indices(labels, (1 / 3, 1 / 3, 1 / 3), seed=seed)
    per_split = label_counts_per_split(labels.to_dense(), splits)
    assert per_split.tolist() == [[1, 1, 1]] * 3


@pytest.mark.parametrize("seed", range(5))
def test_integral_wants_are_met_exactly(seed):
    # 10 items of label 0 and 20 of label 1 with 80/10/10: wants (8, 1, 1) and (16, 2, 2).
    rows = [[0]] * 10 + [[1]] * 20
    labels = LabelMatrix.from_lists(rows, num_labels=2)
    splits = stratified_split_indices(labels, (0.8, 0.1, 0.1), seed=seed)
    per_split = label_counts_per_split(labels.to_dense(), splits)
    assert per_split.tolist() == [[8, 16], [1, 2], [1, 2]]


def counted_rounds(monkeypatch) -> list[int]:
    """Patch the split to record the size of each round (one label's unplaced items, placed at once)."""
    rounds = []
    greedy_counts = split_module._greedy_counts

    def counting(size, *args):
        rounds.append(size)
        return greedy_counts(size, *args)

    monkeypatch.setattr(split_module, "_greedy_counts", counting)
    return rounds


def test_one_vectorised_round_per_label(monkeypatch):
    # The work of a split (a count, unlike a wall-clock bound, is the same on a loaded machine): at most one
    # round per label (and one for unlabelled items), each placing all of that label's unplaced items with array
    # operations, so 20,000 items with 1-3 of 28 labels take at most 28 rounds, placing each item once.
    labels = skewed_labels(seed=0, num_items=20000, num_labels=28)
    rounds = counted_rounds(monkeypatch)
    splits = stratified_split_indices(labels, (0.8, 0.1, 0.1), seed=0)
    assert_partition(splits, 20000, 3)
    assert 0 < len(rounds) <= 28
    assert sum(rounds) == 20000


def test_rarest_label_is_placed_first():
    # Label 1 (2 items) is rarer than label 0 (4 items) and is settled first: items 0 and 1,
    # which carry both, go one to each half; then label 0's other items fill up to 2 each.
    rows = [[0, 1], [0, 1], [0], [0], [], []]
    labels = LabelMatrix.from_lists(rows, num_labels=2)
    for seed in range(10):
        first, second = stratified_split_indices(labels, (0.5, 0.5), seed=seed)
        per_split = label_counts_per_split(labels.to_dense(), [first, second])
        assert per_split.tolist() == [[2, 1], [2, 1]]


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "fractions",
    [
        (0.5, 0.4),  # sums to 0.9
        (0.8, 0.2, 0.1),  # sums to 1.1
        (1.2, -0.2),  # negative
        (1.0, 0.0),  # zero
        (),  # empty
        (0.5, float("nan")),
        ("a", "b"),
        "0.5,0.5",
        0.5,
    ],
)
def test_bad_fractions_name_the_argument(fractions):
    labels = LabelMatrix.from_lists([[0], [1]], num_labels=2)
    with pytest.raises(ValueError, match="fractions"):
        stratified_split_indices(labels, fractions)


def test_labels_must_be_a_label_matrix():
    with pytest.raises(TypeError, match="LabelMatrix"):
        stratified_split_indices(np.eye(3, dtype=np.uint8), (0.5, 0.5))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- datasets and shares


def test_stratified_split_of_a_dataset():
    label_set = LabelSet(["a", "b", "c"])
    rng = np.random.default_rng(0)
    rows = [sorted(set(rng.integers(0, 3, size=int(rng.integers(0, 3))).tolist())) for _ in range(200)]
    texts = [f"text {i}" for i in range(200)]
    data = LabeledDataset(texts, LabelMatrix.from_lists(rows, 3), label_set)

    parts = stratified_split(data, (0.5, 0.25, 0.25), seed=4)
    indices = stratified_split_indices(data.labels, (0.5, 0.25, 0.25), seed=4)
    assert [len(p) for p in parts] == [len(i) for i in indices]
    assert all(abs(len(p) - w) <= 2 for p, w in zip(parts, (100, 50, 50), strict=True))
    for part, index in zip(parts, indices, strict=True):
        assert part.label_set == label_set
        assert part.texts == [texts[i] for i in index]
        assert part.labels.to_lists() == [rows[i] for i in index]


def test_label_shares_hand_example():
    labels = LabelMatrix.from_lists([[0], [0, 1], [1], [], [0, 2]], num_labels=3)
    shares = label_shares(labels, [np.array([0, 1]), np.array([2, 3, 4]), np.array([], dtype=int)])
    expected = np.array([[1.0, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0]])
    assert shares.shape == (3, 3)
    np.testing.assert_allclose(shares, expected)


# ---------------------------------------------------------------------------- GoEmotions


def goemotions_dir() -> Path:
    configured = os.environ.get("LABELSPACE_GOEMOTIONS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared/data/goemotions"


@pytest.mark.goemotions
def test_goemotions_train_split_keeps_every_label_share(capsys, monkeypatch):
    folder = goemotions_dir()
    train = folder / "train.tsv"
    if not train.is_file():
        pytest.skip(
            f"GoEmotions not found at {folder} (set LABELSPACE_GOEMOTIONS_DIR to the folder "
            "holding train.tsv and labels.txt)"
        )
    names = [line.strip() for line in (folder / "labels.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(names) == 28
    rows = []
    with train.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            rows.append([int(label) for label in fields[1].split(",") if label])
    labels = LabelMatrix.from_lists(rows, num_labels=len(names))

    rounds = counted_rounds(monkeypatch)
    start = time.perf_counter()
    splits = stratified_split_indices(labels, (0.8, 0.1, 0.1), seed=0)
    seconds = time.perf_counter() - start  # printed below; the test bounds the work (rounds), not the time

    n = len(rows)
    assert_partition(splits, n, 3)
    for part, fraction in zip(splits, (0.8, 0.1, 0.1), strict=True):
        assert abs(len(part) - fraction * n) <= 2
    dense = labels.to_dense().astype(np.int64)
    overall = dense.mean(axis=0)
    worst = 0.0
    for part in splits:
        deviation = np.abs(dense[part].mean(axis=0) - overall)
        off = [names[i] for i in np.flatnonzero(deviation > 0.01)]
        assert not off, f"labels more than 1 point off their overall share: {off}"
        worst = max(worst, float(deviation.max()))
    with capsys.disabled():
        print(
            f"\n[goemotions] stratified 80/10/10 split of {n} items x {len(names)} labels: "
            f"{seconds:.3f} s, sizes {[len(p) for p in splits]}, "
            f"worst label share deviation {100 * worst:.3f} points"
        )
    assert len(rounds) <= len(names) + 1  # one vectorised round per label at most, one for unlabelled items
