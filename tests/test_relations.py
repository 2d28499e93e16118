"""Relations from labels and indices: hand-computed cases, pytorch-metric-learning parity, invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from labelspace.data import LabeledDataset
from labelspace.data.convert import labeled_to_pairs
from labelspace.relations import Relation, RelationRule, resolve_relation, shared_label_counts

LABELS = torch.tensor(
    [
        [1, 1, 0, 0],  # 0: {a, b}
        [1, 0, 0, 0],  # 1: {a}
        [1, 1, 0, 0],  # 2: {a, b}
        [0, 0, 1, 0],  # 3: {c}
        [0, 0, 0, 0],  # 4: {}
        [0, 1, 1, 1],  # 5: {b, c, d}
    ]
)


def _sets(labels: torch.Tensor) -> list[set[int]]:
    return [set(torch.nonzero(row).flatten().tolist()) for row in labels]


def _by_hand(labels, positive_if, negative_if):
    sets = _sets(labels)
    size = len(sets)
    positive = [[i != j and positive_if(sets[i], sets[j]) for j in range(size)] for i in range(size)]
    negative = [[i != j and negative_if(sets[i], sets[j]) for j in range(size)] for i in range(size)]
    return torch.tensor(positive), torch.tensor(negative)


def _jaccard(x: set[int], y: set[int]) -> float:
    return len(x & y) / len(x | y) if x | y else 0.0


@pytest.mark.parametrize("min_shared", [1, 2])
def test_overlap_rule_by_hand(min_shared):
    relation = Relation.from_labels(LABELS, min_shared=min_shared)
    positive, negative = _by_hand(LABELS, lambda x, y: len(x & y) >= min_shared, lambda x, y: not (x & y))
    assert torch.equal(relation.positive, positive)
    assert torch.equal(relation.negative, negative)
    assert relation.weight is None
    # spot checks written out: 0 and 2 share {a, b}; 0 and 5 share {b}; 4 is a negative of everyone
    assert relation.positive[0, 2] and relation.positive[0, 5] == (min_shared == 1)
    assert relation.negative[4].tolist() == [True, True, True, True, False, True]


def test_jaccard_rule_by_hand():
    relation = Relation.from_labels(LABELS, rule="jaccard", pos_threshold=0.5, neg_threshold=0.2)
    sets = _sets(LABELS)
    positive, negative = _by_hand(LABELS, lambda x, y: _jaccard(x, y) >= 0.5, lambda x, y: _jaccard(x, y) <= 0.2)
    assert torch.equal(relation.positive, positive)
    assert torch.equal(relation.negative, negative)
    expected = torch.tensor([[_jaccard(x, y) for y in sets] for x in sets])
    torch.testing.assert_close(relation.weight, expected)
    # {a,b} vs {b,c,d}: 1/4 -> neither positive nor negative (ignored)
    assert not relation.positive[0, 5] and not relation.negative[0, 5]
    assert relation.weight[0, 1] == 0.5 and relation.positive[0, 1]


def test_exact_rule_by_hand():
    relation = Relation.from_labels(LABELS, rule="exact")
    positive, negative = _by_hand(LABELS, lambda x, y: x == y and bool(x), lambda x, y: not (x & y))
    assert torch.equal(relation.positive, positive)
    assert torch.equal(relation.negative, negative)
    assert torch.nonzero(relation.positive).tolist() == [[0, 2], [2, 0]]


def test_items_without_labels_are_negatives_to_everything_even_each_other():
    labels = torch.tensor([[0, 0], [0, 0], [1, 0]])
    for rule in ("overlap", "jaccard", "exact"):
        relation = Relation.from_labels(labels, rule=rule)
        assert not relation.positive.any()
        assert relation.negative.tolist() == [[False, True, True], [True, False, True], [True, True, False]]


def test_single_label_matches_pytorch_metric_learning():
    for seed in range(10):
        generator = torch.Generator().manual_seed(seed)
        size = int(torch.randint(2, 60, (1,), generator=generator))
        labels = torch.randint(0, max(2, size // 3), (size,), generator=generator)
        relation = Relation.from_labels(labels)
        for ours, theirs in zip(relation.pair_indices(), lmu.get_all_pairs_indices(labels), strict=True):
            assert torch.equal(ours, theirs)
        for ours, theirs in zip(relation.triplet_indices(), lmu.get_all_triplets_indices(labels), strict=True):
            assert torch.equal(ours, theirs)


def test_one_label_per_row_multi_hot_equals_single_label():
    labels = torch.tensor([0, 2, 2, 1, 0, 3])
    single = Relation.from_labels(labels)
    for rule in ("overlap", "jaccard", "exact"):
        multi = Relation.from_labels(torch.nn.functional.one_hot(labels, 4), rule=rule)
        assert torch.equal(single.positive, multi.positive)
        assert torch.equal(single.negative, multi.negative)


def test_from_indices_tuple_pairs_and_triplets():
    pairs = (torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0, 2]), torch.tensor([3, 1]))
    relation = Relation.from_indices_tuple(pairs, 4)
    assert torch.nonzero(relation.positive).tolist() == [[0, 1], [1, 0]]
    assert torch.nonzero(relation.negative).tolist() == [[0, 3], [2, 1]]
    triplets = (torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 3]))
    relation = Relation.from_indices_tuple(triplets, 4)
    assert torch.nonzero(relation.positive).tolist() == [[0, 1]]
    assert torch.nonzero(relation.negative).tolist() == [[0, 2], [0, 3]]
    with pytest.raises(ValueError, match="3 \\(a, p, n\\) or 4"):
        Relation.from_indices_tuple((torch.tensor([0]),) * 2, 4)


def test_triplet_cap_is_seeded_and_valid():
    labels = torch.arange(64) % 4
    relation = Relation.from_labels(labels)
    full = set(zip(*(t.tolist() for t in relation.triplet_indices()), strict=True))
    assert len(full) == 64 * 15 * 48
    first = relation.triplet_indices(500, generator=torch.Generator().manual_seed(1))
    again = relation.triplet_indices(500, generator=torch.Generator().manual_seed(1))
    other = relation.triplet_indices(500, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(first, other, strict=True))
    chosen = list(zip(*(t.tolist() for t in first), strict=True))
    assert 480 <= len(chosen) <= 500 and len(set(chosen)) == len(chosen)
    assert set(chosen) <= full
    assert chosen == sorted(chosen)  # anchor-major order kept


def test_resolve_relation_precedence_and_errors():
    labels = torch.tensor([0, 0, 1])
    indices = (torch.tensor([0]), torch.tensor([2]), torch.tensor([0]), torch.tensor([1]))
    relation = resolve_relation(labels, indices, 3)
    assert torch.nonzero(relation.positive).tolist() == [[0, 2]]  # the indices win, as in PML
    given_relation = Relation.from_labels(labels)
    assert resolve_relation(given_relation, None, 3) is given_relation
    with pytest.raises(ValueError, match="give labels"):
        resolve_relation(None, None, 3)
    with pytest.raises(ValueError, match="labels have 3 rows but the batch has 4"):
        resolve_relation(labels, None, 4)
    with pytest.raises(ValueError, match="0/1 multi-hot"):
        Relation.from_labels(torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match="1-D labels must be integer"):
        Relation.from_labels(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="rule must be one of"):
        Relation.from_labels(labels, rule="loose")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neg_threshold < pos_threshold"):
        Relation.from_labels(torch.eye(3, dtype=torch.long), rule="jaccard", pos_threshold=0.2, neg_threshold=0.5)


def test_shared_label_counts_by_hand():
    counts = shared_label_counts(LABELS)
    sets = _sets(LABELS)
    assert counts.tolist() == [[float(len(x & y)) for y in sets] for x in sets]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=12).flatmap(
        lambda size: st.tuples(
            st.lists(st.lists(st.integers(0, 1), min_size=5, max_size=5), min_size=size, max_size=size),
            st.permutations(list(range(size))),
            st.sampled_from(["overlap", "jaccard", "exact"]),
        )
    )
)
def test_permuting_the_batch_permutes_the_relation(case):
    rows, permutation, rule = case
    labels = torch.tensor(rows)
    order = torch.tensor(permutation)
    relation = Relation.from_labels(labels, rule=rule)
    permuted = Relation.from_labels(labels[order], rule=rule)
    assert torch.equal(permuted.positive, relation.positive[order][:, order])
    assert torch.equal(permuted.negative, relation.negative[order][:, order])
    assert not (permuted.positive & permuted.negative).any()
    assert not permuted.positive.diagonal().any() and not permuted.negative.diagonal().any()
    sets = _sets(labels)
    for i, j in itertools.product(range(len(sets)), repeat=2):
        if relation.positive[i, j]:
            assert sets[i] & sets[j]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"rule": "cosine"}, ValueError, "rule must be one of 'overlap', 'jaccard', 'exact', got 'cosine'"),
        ({"min_shared": 0}, ValueError, "min_shared must be an integer >= 1, got 0"),
        ({"min_shared": 1.5}, TypeError, "min_shared must be an integer >= 1, got float"),
        ({"min_shared": True}, TypeError, "min_shared must be an integer >= 1, got bool"),
        ({"pos_threshold": 1.5}, ValueError, r"pos_threshold must be in \[0, 1\], got 1.5"),
        ({"neg_threshold": float("nan")}, ValueError, r"neg_threshold must be in \[0, 1\], got nan"),
        ({"pos_threshold": "high"}, TypeError, r"pos_threshold must be a number in \[0, 1\], got str"),
        ({"pos_threshold": 0.3, "neg_threshold": 0.3}, ValueError, "pos_threshold must be greater than neg_threshold"),
    ],
)
def test_rule_settings_name_the_setting_and_what_was_expected(settings, error, message):
    # One check for every caller: losses, miners, text losses and the pair/triplet conversion alike.
    with pytest.raises(error, match=message):
        RelationRule(**settings)
    with pytest.raises(error, match=message):
        labeled_to_pairs(LabeledDataset.from_label_names(["a", "b"], [["x"], ["x"]]), 2, **settings)


def test_rule_settings_accept_numpy_numbers():
    assert RelationRule("overlap", min_shared=np.int64(2)) == RelationRule("overlap", min_shared=2)
    rule = RelationRule("jaccard", pos_threshold=np.float32(0.75), neg_threshold=np.float64(0.25))
    assert rule.decide(np.array([3]), np.array([4]), np.array([3]))[0].tolist() == [True]  # Jaccard 3/4


def test_check_labels_validates_once_and_hands_back_bool_matrices():
    from labelspace.relations import RelationRule, check_labels

    labels = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0]])
    checked = check_labels(labels)
    assert checked.dtype == torch.bool and torch.equal(checked.int(), labels.int())
    for rule in (RelationRule(), RelationRule("jaccard", pos_threshold=0.5, neg_threshold=0.2), RelationRule("exact")):
        for a, b in zip(rule.masks(checked), rule.masks(labels), strict=True):
            assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(check_labels(torch.tensor([3, 1, 3])), torch.tensor([3, 1, 3]))
    with pytest.raises(ValueError, match="0/1 multi-hot"):
        check_labels(torch.tensor([[2, 0], [0, 1]]))


def test_an_unknown_keyword_of_a_loss_or_miner_is_a_type_error_naming_the_class():
    from labelspace.losses import ContrastiveLoss
    from labelspace.miners import BatchHardMiner

    with pytest.raises(TypeError, match=r"ContrastiveLoss\(\) got an unexpected keyword argument 'min_share'"):
        ContrastiveLoss(min_share=2)
    with pytest.raises(TypeError, match=r"BatchHardMiner\(\) got an unexpected keyword argument 'rules'"):
        BatchHardMiner(rules="jaccard")
    with pytest.warns(DeprecationWarning, match=r"ContrastiveLoss\(min_shared=2\) is deprecated"):
        assert ContrastiveLoss(min_shared=2).relation_rule.min_shared == 2
