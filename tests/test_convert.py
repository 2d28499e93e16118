"""Tests of labelspace.data.convert: triplets -> pairs and labels -> pairs / triplets.

Every sampled pair is checked against the relation rule recomputed here with plain Python
sets, independently of the sparse code under test.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labelspace.data.convert as convert_module
from labelspace.data import LabeledDataset, LabelMatrix, LabelSet, PairDataset, TripletDataset
from labelspace.data.convert import (
    labeled_to_anchor_positive,
    labeled_to_pairs,
    labeled_to_triplets,
    triplets_to_pairs,
)
from labelspace.relations import Relation, RelationRule


def candidates_drawn(error: pytest.ExceptionInfo) -> int:
    """The number of candidates a conversion drew before giving up, from its error message: the work it did
    (a count, unlike a wall-clock bound, is the same on a loaded machine)."""
    return int(re.search(r"none of ([\d,]+) candidates drawn", str(error.value)).group(1).replace(",", ""))


# --------------------------------------------------------------------------- reference rules


def jaccard(x: frozenset[str], y: frozenset[str]) -> float:
    union = len(x | y)
    return len(x & y) / union if union else 0.0


def is_positive(
    x: frozenset[str], y: frozenset[str], rule: str, min_shared: int = 1, pos_threshold: float = 0.5
) -> bool:
    if rule == "overlap":
        return len(x & y) >= min_shared
    if rule == "jaccard":
        return bool(x & y) and jaccard(x, y) >= pos_threshold
    return bool(x) and x == y


def is_negative(x: frozenset[str], y: frozenset[str], rule: str, neg_threshold: float = 0.0) -> bool:
    if rule == "jaccard":
        return jaccard(x, y) <= neg_threshold
    return not (x & y)


# --------------------------------------------------------------------------- hand-made data

# text -> labels. "t0" appears twice (items 0 and 8, same labels): a pair of those two items
# would be an identical-text pair and must never be emitted.
ITEMS: list[tuple[str, list[str]]] = [
    ("t0", ["a", "b"]),
    ("t1", ["a"]),
    ("t2", ["b"]),
    ("t3", ["a", "b"]),
    ("t4", ["c"]),
    ("t5", ["c"]),
    ("t6", []),  # no labels: never in a positive, a negative of everything
    ("t7", ["d"]),  # a label nobody else has: never in a positive
    ("t0", ["a", "b"]),
]
LABELS = {text: frozenset(names) for text, names in ITEMS}
TEXTS = sorted(LABELS)


def small() -> LabeledDataset:
    return LabeledDataset.from_label_names([t for t, _ in ITEMS], [n for _, n in ITEMS])


def valid_pairs(kind: str, **rule: object) -> set[frozenset[str]]:
    """All unordered text pairs (different texts) that are positives / negatives."""
    check = is_positive if kind == "pos" else is_negative
    return {frozenset((s, t)) for s, t in itertools.combinations(TEXTS, 2) if check(LABELS[s], LABELS[t], **rule)}


def split(pairs: PairDataset) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    positives = [(a, b) for a, b, s in (pairs[i] for i in range(len(pairs))) if s == 1.0]
    negatives = [(a, b) for a, b, s in (pairs[i] for i in range(len(pairs))) if s == 0.0]
    assert len(positives) + len(negatives) == len(pairs)
    return positives, negatives


RULE_CASES = [
    pytest.param({"rule": "overlap"}, id="overlap"),
    pytest.param({"rule": "overlap", "min_shared": 2}, id="overlap-min2"),
    pytest.param({"rule": "jaccard", "pos_threshold": 0.5}, id="jaccard-0.5"),
    pytest.param({"rule": "jaccard", "pos_threshold": 0.6, "neg_threshold": 0.2}, id="jaccard-gap"),
    pytest.param({"rule": "exact"}, id="exact"),
]


def positive_rule(args: dict) -> dict:
    return {k: v for k, v in args.items() if k in ("rule", "min_shared", "pos_threshold")}


def negative_rule(args: dict) -> dict:
    return {k: v for k, v in args.items() if k in ("rule", "neg_threshold")}


# --------------------------------------------------------------------------- triplets -> pairs


def test_triplets_to_pairs_single_negative():
    triplets = TripletDataset(["q1", "q2"], ["p1", "p2"], ["n1", "n2"])
    pairs = triplets_to_pairs(triplets)
    assert pairs.text1 == ["q1", "q1", "q2", "q2"]
    assert pairs.text2 == ["p1", "n1", "p2", "n2"]
    assert pairs.scores.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert pairs.scores.dtype == np.float32


def test_triplets_to_pairs_several_negatives():
    triplets = TripletDataset(["q1", "q2"], ["p1", "p2"], [["n1", "n2", "n3"], ["m1", "m2"]])
    pairs = triplets_to_pairs(triplets)
    assert [pairs[i] for i in range(len(pairs))] == [
        ("q1", "p1", 1.0),
        ("q1", "n1", 0.0),
        ("q1", "n2", 0.0),
        ("q1", "n3", 0.0),
        ("q2", "p2", 1.0),
        ("q2", "m1", 0.0),
        ("q2", "m2", 0.0),
    ]


def test_triplets_to_pairs_empty_and_source():
    assert len(triplets_to_pairs(TripletDataset([], [], []))) == 0
    pairs = triplets_to_pairs(TripletDataset(["q"], ["p"], ["n"], source="file.csv"))
    assert pairs.source == "file.csv"


def test_triplets_to_pairs_rejects_other_types():
    with pytest.raises(TypeError, match="triplets must be a TripletDataset"):
        triplets_to_pairs(PairDataset(["a"], ["b"], np.ones(1)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- labels -> pairs


@pytest.mark.parametrize("args", RULE_CASES)
def test_pairs_obey_rule_and_cover_all_valid_pairs(args):
    pairs = labeled_to_pairs(small(), 3000, seed=3, **args)
    positives, negatives = split(pairs)
    assert len(positives) == len(negatives) == 1500
    for a, b in positives:
        assert a != b
        assert is_positive(LABELS[a], LABELS[b], **positive_rule(args)), (a, b)
    for a, b in negatives:
        assert a != b
        assert is_negative(LABELS[a], LABELS[b], **negative_rule(args)), (a, b)
    # Every valid pair is reachable, and nothing else appears.
    assert {frozenset(p) for p in positives} == valid_pairs("pos", **positive_rule(args))
    assert {frozenset(p) for p in negatives} == valid_pairs("neg", **negative_rule(args))


def test_exact_rule_positives_only_within_groups():
    positives, _ = split(labeled_to_pairs(small(), 500, rule="exact", seed=0))
    assert {frozenset(p) for p in positives} == {frozenset({"t0", "t3"}), frozenset({"t4", "t5"})}
    assert set(positives) == {("t0", "t3"), ("t3", "t0"), ("t4", "t5"), ("t5", "t4")}


def test_jaccard_pairs_in_between_never_emitted():
    pairs = labeled_to_pairs(
        small(), 2000, rule="jaccard", pos_threshold=0.6, neg_threshold=0.2, score="jaccard", seed=1
    )
    for a, b, score in (pairs[i] for i in range(len(pairs))):
        value = jaccard(LABELS[a], LABELS[b])
        assert not 0.2 < value < 0.6, (a, b, value)
        assert score == pytest.approx(value)
    # {a,b} vs {a} has Jaccard 0.5: neither positive nor negative.
    emitted = {frozenset((a, b)) for a, b, _ in (pairs[i] for i in range(len(pairs)))}
    assert frozenset({"t0", "t1"}) not in emitted
    assert frozenset({"t2", "t3"}) not in emitted


@pytest.mark.parametrize("rule", ["overlap", "jaccard", "exact"])
def test_jaccard_scores_match_label_sets(rule):
    pairs = labeled_to_pairs(small(), 400, rule=rule, score="jaccard", seed=5)
    for a, b, score in (pairs[i] for i in range(len(pairs))):
        assert score == pytest.approx(jaccard(LABELS[a], LABELS[b]), abs=1e-6)
    assert pairs.scores.dtype == np.float32


def test_unlabelled_and_unique_label_items_never_positive():
    for rule in ("overlap", "jaccard", "exact"):
        pairs = labeled_to_pairs(small(), 1000, rule=rule, seed=2)
        positives, negatives = split(pairs)
        in_positives = {t for p in positives for t in p}
        assert "t6" not in in_positives and "t7" not in in_positives
        assert "t6" in {t for p in negatives for t in p}


def test_no_self_pairs_and_no_identical_texts():
    data = small()
    for rule in ("overlap", "jaccard", "exact"):
        pairs = labeled_to_pairs(data, 1000, rule=rule, seed=4)
        assert all(a != b for a, b in zip(pairs.text1, pairs.text2, strict=True))
        anchors = labeled_to_anchor_positive(data, 200, rule=rule, seed=4)
        assert all(a != b for a, b in zip(anchors.text1, anchors.text2, strict=True))


def test_only_pair_with_identical_texts_is_impossible():
    # Items 0 and 1 share a label but have the same text: no positive can be formed.
    data = LabeledDataset.from_label_names(["same", "same", "other"], [["x"], ["x"], ["y"]])
    with pytest.raises(ValueError, match="no two items .*share a label"):
        labeled_to_pairs(data, 4, seed=0)
    with pytest.raises(ValueError, match="same non-empty label set"):
        labeled_to_pairs(data, 4, rule="exact", seed=0)


@pytest.mark.parametrize(
    ("num_pairs", "fraction"),
    [(10, 0.5), (7, 0.3), (1, 1.0), (5, 0.0), (1000, 0.123), (3, 0.5), (11, 0.25)],
)
def test_positive_fraction_is_exact(num_pairs, fraction):
    pairs = labeled_to_pairs(small(), num_pairs, positive_fraction=fraction, seed=0)
    assert len(pairs) == num_pairs
    assert int((pairs.scores == 1.0).sum()) == round(num_pairs * fraction)


def test_positives_and_negatives_are_mixed():
    scores = labeled_to_pairs(small(), 200, seed=0).scores
    assert 0 < scores[:100].sum() < 100  # not all positives first


def test_seeding():
    data = small()
    assert labeled_to_pairs(data, 50, seed=7) == labeled_to_pairs(data, 50, seed=7)
    assert labeled_to_pairs(data, 50, seed=7) != labeled_to_pairs(data, 50, seed=8)
    first = labeled_to_triplets(data, 30, num_negatives=2, seed=7)
    again = labeled_to_triplets(data, 30, num_negatives=2, seed=7)
    other = labeled_to_triplets(data, 30, num_negatives=2, seed=8)
    assert first == again and first != other
    ap = labeled_to_anchor_positive(data, 30, seed=7)
    assert ap == labeled_to_anchor_positive(data, 30, seed=7)
    assert ap != labeled_to_anchor_positive(data, 30, seed=8)
    # A numpy Generator is accepted as the seed too.
    a = labeled_to_pairs(data, 20, seed=np.random.default_rng(1))
    assert a == labeled_to_pairs(data, 20, seed=np.random.default_rng(1))


# --------------------------------------------------------------------------- anchor / positive


@pytest.mark.parametrize("args", RULE_CASES)
def test_anchor_positive_pairs(args):
    args = positive_rule(args)
    pairs = labeled_to_anchor_positive(small(), 500, seed=0, **args)
    assert len(pairs) == 500
    assert pairs.scores.tolist() == [1.0] * 500
    for a, b, _ in (pairs[i] for i in range(len(pairs))):
        assert a != b and is_positive(LABELS[a], LABELS[b], **args)
    assert {frozenset((a, b)) for a, b in zip(pairs.text1, pairs.text2, strict=True)} == valid_pairs("pos", **args)


@pytest.mark.parametrize("rule", ["overlap", "exact"])
def test_positive_partners_are_uniform(rule):
    # Four items with label x: each of the 12 ordered pairs is equally likely (anchor uniform,
    # partner uniform among the other three); y and z items are never drawn.
    data = LabeledDataset.from_label_names(["p", "q", "r", "s", "u", "v"], [["x"], ["x"], ["x"], ["x"], ["y"], ["z"]])
    pairs = labeled_to_anchor_positive(data, 12_000, rule=rule, seed=0)
    counts = defaultdict(int)
    for a, b in zip(pairs.text1, pairs.text2, strict=True):
        counts[a, b] += 1
    assert set(counts) == {(a, b) for a in "pqrs" for b in "pqrs" if a != b}
    assert all(800 < c < 1200 for c in counts.values()), counts


# --------------------------------------------------------------------------- triplets


@pytest.mark.parametrize("args", RULE_CASES)
@pytest.mark.parametrize("num_negatives", [1, 2])
def test_triplets_obey_rule(args, num_negatives):
    triplets = labeled_to_triplets(small(), 300, num_negatives=num_negatives, seed=0, **args)
    assert len(triplets) == 300
    if num_negatives == 1:
        assert all(isinstance(n, str) for n in triplets.negatives)
    else:
        assert all(isinstance(n, list) and len(n) == num_negatives for n in triplets.negatives)
    for i in range(len(triplets)):
        anchor, positive, negatives = triplets[i]
        assert anchor != positive
        assert is_positive(LABELS[anchor], LABELS[positive], **positive_rule(args))
        assert len(set(negatives)) == num_negatives  # distinct negatives
        for negative in negatives:
            assert negative not in (anchor, positive)
            assert is_negative(LABELS[anchor], LABELS[negative], **negative_rule(args))


def test_triplets_impossible_number_of_negatives():
    # t4 / t5 ({c}) have 7 label-disjoint other texts; no anchor has 8.
    assert labeled_to_triplets(small(), 5, num_negatives=4, seed=0)
    with pytest.raises(
        ValueError, match="cannot sample 5 triplets with 8 negative.*no anchor that has a positive has 8 negatives"
    ) as error:
        labeled_to_triplets(small(), 5, num_negatives=8, seed=0)
    assert candidates_drawn(error) < convert_module._MAX_BATCH  # gives up fast: not 50 rounds of up to 2**20


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rule": "cosine"}, ValueError, "rule must be one of 'overlap', 'jaccard', 'exact', got 'cosine'"),
        ({"pos_threshold": 1.5}, ValueError, r"pos_threshold must be in \[0, 1\], got 1.5"),
        ({"neg_threshold": -0.1}, ValueError, r"neg_threshold must be in \[0, 1\], got -0.1"),
        ({"pos_threshold": float("nan")}, ValueError, r"pos_threshold must be in \[0, 1\]"),
        (
            {"rule": "jaccard", "pos_threshold": 0.3, "neg_threshold": 0.3},
            ValueError,
            "pos_threshold must be greater than neg_threshold",
        ),
        ({"positive_fraction": 1.2}, ValueError, r"positive_fraction must be in \[0, 1\], got 1.2"),
        ({"positive_fraction": "half"}, TypeError, "positive_fraction must be a number"),
        ({"score": "cosine"}, ValueError, "score must be one of 'binary', 'jaccard', got 'cosine'"),
        ({"min_shared": 0}, ValueError, "min_shared must be an integer >= 1, got 0"),
        ({"min_shared": 1.5}, TypeError, "min_shared must be an integer"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        labeled_to_pairs(small(), 10, **kwargs)


def test_bad_counts_and_dataset():
    with pytest.raises(ValueError, match="num_pairs must be a positive integer, got 0"):
        labeled_to_pairs(small(), 0)
    with pytest.raises(TypeError, match="num_pairs must be an integer, got float"):
        labeled_to_pairs(small(), 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_pairs must be an integer, got bool"):
        labeled_to_pairs(small(), True)
    with pytest.raises(ValueError, match="num_triplets must be a positive integer, got -1"):
        labeled_to_triplets(small(), -1)
    with pytest.raises(ValueError, match="num_negatives must be a positive integer, got 0"):
        labeled_to_triplets(small(), 3, num_negatives=0)
    with pytest.raises(ValueError, match="num_pairs must be a positive integer"):
        labeled_to_anchor_positive(small(), 0)
    with pytest.raises(TypeError, match="dataset must be a LabeledDataset, got list"):
        labeled_to_pairs([("a", ["x"])], 3)  # type: ignore[arg-type]


def disjoint_dataset() -> LabeledDataset:
    return LabeledDataset.from_label_names(["a", "b", "c", "d"], [["w"], ["x"], ["y"], ["z"]])


def test_no_shared_label_is_impossible_for_positives():
    data = disjoint_dataset()
    with pytest.raises(
        ValueError, match="rule='overlap' .* cannot produce positive pairs: no two items .*share a label"
    ):
        labeled_to_pairs(data, 10, seed=0)
    with pytest.raises(ValueError, match="rule='jaccard' .*no two items .*share a label"):
        labeled_to_triplets(data, 10, rule="jaccard", seed=0)
    with pytest.raises(ValueError, match="no two items .*share a label"):
        labeled_to_anchor_positive(data, 10, seed=0)
    # Negatives only: fine.
    pairs = labeled_to_pairs(data, 10, positive_fraction=0.0, seed=0)
    assert pairs.scores.tolist() == [0.0] * 10


def test_exact_without_equal_label_sets_is_impossible():
    data = LabeledDataset.from_label_names(["a", "b", "c"], [["x"], ["x", "y"], []])
    with pytest.raises(
        ValueError,
        match="rule='exact' cannot produce positive pairs: no two "
        r"items \(with different texts\) have the same "
        "non-empty label set",
    ):
        labeled_to_pairs(data, 10, rule="exact", seed=0)


def test_min_shared_larger_than_any_overlap():
    with pytest.raises(
        ValueError, match="no item has 3 labels that items with other texts also carry, so no two items share 3 labels"
    ):
        labeled_to_pairs(small(), 10, min_shared=3, seed=0)


def test_every_pair_shares_a_label_is_impossible_for_negatives():
    data = LabeledDataset.from_label_names(["a", "b", "c"], [["common", "x"], ["common"], ["common", "y"]])
    with pytest.raises(
        ValueError,
        match="cannot produce negative pairs: every item carries label 'common', so every two items share a label",
    ):
        labeled_to_pairs(data, 10, seed=0)
    with pytest.raises(ValueError, match="every item carries label 'common'"):
        labeled_to_triplets(data, 10, seed=0)
    # A positive Jaccard threshold for negatives makes {common,x} ~ {common,y} (1/3) usable.
    pairs = labeled_to_pairs(data, 10, rule="jaccard", pos_threshold=0.5, neg_threshold=0.4, seed=0)
    assert len(pairs) == 10


def test_all_texts_identical_is_impossible():
    data = LabeledDataset.from_label_names(["x", "x"], [["a"], []])
    with pytest.raises(ValueError, match="fewer than two different texts"):
        labeled_to_pairs(data, 2, positive_fraction=0.0, seed=0)


def test_rule_never_satisfied_fails_fast_with_reason():
    # Labels are shared, but no two items reach Jaccard 0.9: found only by sampling.
    data = LabeledDataset.from_label_names(["a", "b", "c"], [["x", "y"], ["x"], ["y", "z"]])
    with pytest.raises(
        ValueError,
        match="cannot sample 5 positive pairs with rule='jaccard' "
        r"\(pos_threshold=0.9.*none of .* candidates drawn "
        "was valid",
    ) as error:
        labeled_to_pairs(data, 10, rule="jaccard", pos_threshold=0.9, seed=0)
    assert candidates_drawn(error) < convert_module._MAX_BATCH  # gives up fast: not 50 rounds of up to 2**20


# --------------------------------------------------------------------------- property test


@st.composite
def datasets(draw):
    n = draw(st.integers(2, 12))
    num_labels = draw(st.integers(1, 5))
    label_lists = draw(
        st.lists(st.lists(st.integers(0, num_labels - 1), max_size=3, unique=True), min_size=n, max_size=n)
    )
    texts = draw(st.lists(st.sampled_from("pqrstuvwxyz"), min_size=n, max_size=n))
    return texts, label_lists, num_labels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=datasets(),
    rule=st.sampled_from(["overlap", "jaccard", "exact"]),
    min_shared=st.integers(1, 2),
    seed=st.integers(0, 3),
)
def test_random_datasets_pairs_always_valid(data, rule, min_shared, seed):
    texts, label_lists, num_labels = data
    dataset = LabeledDataset(
        texts, LabelMatrix.from_lists(label_lists, num_labels), LabelSet([f"l{i}" for i in range(num_labels)])
    )
    try:
        pairs = labeled_to_pairs(
            dataset,
            40,
            rule=rule,
            min_shared=min_shared,
            seed=seed,
            score="jaccard",
            pos_threshold=0.5,
            neg_threshold=0.2,
        )
    except ValueError as error:
        assert "cannot" in str(error)
        return
    # Texts may repeat with different labels here, so check against item-level ground truth:
    # some pair of items with these texts must satisfy the rule.
    by_text = defaultdict(list)
    for text, ids in zip(texts, label_lists, strict=True):
        by_text[text].append(frozenset(ids))
    num_positive = round(40 * 0.5)
    assert len(pairs) == 40
    positive_count = 0
    for a, b, score in (pairs[i] for i in range(len(pairs))):
        assert a != b
        candidates = [(x, y) for x in by_text[a] for y in by_text[b]]
        positive = any(
            is_positive(x, y, rule, min_shared, 0.5) and jaccard(x, y) == pytest.approx(score) for x, y in candidates
        )
        negative = any(is_negative(x, y, rule, 0.2) and jaccard(x, y) == pytest.approx(score) for x, y in candidates)
        assert positive or negative
        positive_count += positive and not negative
    assert positive_count <= num_positive


# --------------------------------------------------------------------------- one rule engine

RELATION_RULES = [
    pytest.param(RelationRule("overlap"), id="overlap"),
    pytest.param(RelationRule("overlap", min_shared=2), id="overlap-min2"),
    pytest.param(RelationRule("jaccard", pos_threshold=0.5), id="jaccard-0.5"),
    pytest.param(RelationRule("jaccard", pos_threshold=0.6, neg_threshold=0.3), id="jaccard-gap"),
    pytest.param(RelationRule("exact"), id="exact"),
]


def random_labelled(seed: int, size: int = 60, num_labels: int = 4) -> tuple[LabeledDataset, torch.Tensor]:
    """Distinct texts with random label sets (some empty, many repeated), and their dense label tensor."""
    dense = (np.random.default_rng(seed).random((size, num_labels)) < 0.4).astype(np.int64)
    dataset = LabeledDataset(
        [f"text {i}" for i in range(size)],
        LabelMatrix.from_dense(dense),
        LabelSet([f"l{i}" for i in range(num_labels)]),
    )
    return dataset, torch.from_numpy(dense)


def item_indices(texts: list[str]) -> torch.Tensor:
    return torch.tensor([int(text.removeprefix("text ")) for text in texts])


@pytest.mark.parametrize("rule", RELATION_RULES)
@pytest.mark.parametrize("seed", range(3))
def test_conversions_agree_with_the_batch_relation(rule, seed):
    """Every sampled positive / negative is one of `Relation.from_labels` on the same items (the same rule)."""
    dataset, dense = random_labelled(seed)
    relation = Relation.from_labels(dense, rule=rule)
    pairs = labeled_to_pairs(dataset, 400, relation=rule, seed=seed)
    first, second = item_indices(pairs.text1), item_indices(pairs.text2)
    positive = torch.from_numpy(pairs.scores == 1.0)
    assert int(positive.sum()) == 200
    assert relation.positive[first[positive], second[positive]].all()
    assert relation.negative[first[~positive], second[~positive]].all()

    triplets = labeled_to_triplets(dataset, 100, num_negatives=2, relation=rule, seed=seed)
    anchors = item_indices(triplets.anchors)
    negatives = item_indices([text for group in triplets.negatives for text in group]).reshape(-1, 2)
    assert relation.positive[anchors, item_indices(triplets.positives)].all()
    assert relation.negative[anchors[:, None], negatives].all()

    anchor_positive = labeled_to_anchor_positive(dataset, 100, relation=rule, seed=seed)
    assert relation.positive[item_indices(anchor_positive.text1), item_indices(anchor_positive.text2)].all()

    # the same rule spelled with the keyword settings gives the same pairs
    settings = {"rule": rule.rule, "min_shared": rule.min_shared, "pos_threshold": rule.pos_threshold}
    same = labeled_to_pairs(dataset, 400, **settings, neg_threshold=rule.neg_threshold, seed=seed)
    assert (same.text1, same.text2) == (pairs.text1, pairs.text2)
    jaccard_scores = labeled_to_pairs(dataset, 50, relation=rule.rule, score="jaccard", seed=seed)
    expected = Relation.from_labels(dense, rule="jaccard").weight
    scored = expected[item_indices(jaccard_scores.text1), item_indices(jaccard_scores.text2)]
    assert np.allclose(scored.numpy(), jaccard_scores.scores, atol=1e-6)


def test_relation_and_rule_settings_are_exclusive():
    with pytest.raises(ValueError, match="give either relation= or rule= / min_shared=, not both"):
        labeled_to_pairs(small(), 4, relation="overlap", rule="overlap", min_shared=1)
    with pytest.raises(ValueError, match="relation must be one of overlap, jaccard, exact"):
        labeled_to_triplets(small(), 4, relation="cosine")


# --------------------------------------------------------------------------- GoEmotions


GOEMOTIONS_DIR = Path(
    os.environ.get("LABELSPACE_GOEMOTIONS_DIR", Path(__file__).resolve().parents[2] / "shared/data/goemotions")
)


def read_goemotions(folder: Path) -> LabeledDataset:
    names = [line.strip() for line in (folder / "labels.txt").read_text("utf-8").splitlines()]
    label_set = LabelSet([name for name in names if name])
    texts, ids = [], []
    with open(folder / "train.tsv", encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            texts.append(fields[0])
            ids.append([int(i) for i in fields[1].split(",") if i])
    return LabeledDataset(texts, LabelMatrix.from_lists(ids, len(label_set)), label_set)


@pytest.fixture(scope="module")
def goemotions() -> LabeledDataset:
    if not (GOEMOTIONS_DIR / "train.tsv").is_file():
        pytest.skip(f"GoEmotions not found at {GOEMOTIONS_DIR} (set LABELSPACE_GOEMOTIONS_DIR to its folder)")
    return read_goemotions(GOEMOTIONS_DIR)


@pytest.mark.goemotions
@pytest.mark.parametrize("args", RULE_CASES)
def test_goemotions_pairs_obey_rule(goemotions, args):
    # A few texts occur twice with different labels: accept a pair when some pair of items
    # with those two texts satisfies the rule (strict for all other texts).
    by_text = defaultdict(set)
    names = goemotions.label_set.names
    for text, ids in zip(goemotions.texts, goemotions.labels.to_lists(), strict=True):
        by_text[text].add(frozenset(names[i] for i in ids))
    pairs = labeled_to_pairs(goemotions, 10_000, seed=0, **args)
    assert len(pairs) == 10_000
    assert int(pairs.scores.sum()) == 5_000
    for a, b, score in (pairs[i] for i in range(len(pairs))):
        assert a != b
        check, rule = (is_positive, positive_rule(args)) if score == 1.0 else (is_negative, negative_rule(args))
        assert any(check(x, y, **rule) for x in by_text[a] for y in by_text[b]), (a, b, score)
