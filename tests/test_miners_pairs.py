"""MultiSimilarityMiner and PairMarginMiner: parity with pytorch-metric-learning, multi-label semantics, invariants."""

from __future__ import annotations

import doctest
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from labelspace import distances
from labelspace.losses.metric.circle import CircleLoss
from labelspace.losses.metric.multi_similarity import MultiSimilarityLoss
from labelspace.miners import multi_similarity, pair_margin
from labelspace.miners.multi_similarity import MultiSimilarityMiner
from labelspace.miners.pair_margin import PairMarginMiner
from labelspace.relations import Relation, RelationRule
from metric_testing import (
    DIMS,
    SIZES,
    assert_same_up_to,
    import_pml,
    index_rows,
    mining_tol,
    permutation_batch,
    random_batch,
)

pml_miners, pml_distances, pml_losses = import_pml("miners", "distances", "losses")

SEEDS = range(8)

MINER_PAIRS = {
    "ms-default": (lambda: MultiSimilarityMiner(), lambda: pml_miners.MultiSimilarityMiner()),
    "ms-epsilon-0.3": (lambda: MultiSimilarityMiner(0.3), lambda: pml_miners.MultiSimilarityMiner(0.3)),
    "ms-lp": (
        lambda: MultiSimilarityMiner(distance=distances.LpDistance()),
        lambda: pml_miners.MultiSimilarityMiner(distance=pml_distances.LpDistance()),
    ),
    "pm-default": (lambda: PairMarginMiner(), lambda: pml_miners.PairMarginMiner()),
    "pm-margins": (lambda: PairMarginMiner(0.5, 1.1), lambda: pml_miners.PairMarginMiner(0.5, 1.1)),
    "pm-cosine": (
        lambda: PairMarginMiner(0.5, 0.3, distance=distances.CosineSimilarity()),
        lambda: pml_miners.PairMarginMiner(0.5, 0.3, distance=pml_distances.CosineSimilarity()),
    ),
}


def pair_set(anchors, others) -> set[tuple[int, int]]:
    return set(zip(anchors.tolist(), others.tolist(), strict=True))


def miner_thresholds(reference, exact, labels):
    """Per anchor (B x 1) or overall, the values at which PML's miner ``reference`` keeps or drops a positive and
    a negative pair, from the exact (float64) matrix; NaN for anchors lacking a side (nothing mined)."""
    if isinstance(reference, pml_miners.PairMarginMiner):
        return reference.pos_margin, reference.neg_margin
    size = len(labels)
    positive = (labels[:, None] == labels[None, :]) & ~torch.eye(size, dtype=torch.bool)
    negative = labels[:, None] != labels[None, :]
    nan = torch.tensor(float("nan"), dtype=exact.dtype)
    hardest_negative = torch.where(negative, exact, -math.inf if reference.distance.is_inverted else math.inf)
    hardest_positive = torch.where(positive, exact, math.inf if reference.distance.is_inverted else -math.inf)
    if reference.distance.is_inverted:  # similarities: positives below the most similar negative + epsilon, ...
        pos, neg = hardest_negative.amax(1) + reference.epsilon, hardest_positive.amin(1) - reference.epsilon
    else:
        pos, neg = hardest_negative.amin(1) - reference.epsilon, hardest_positive.amax(1) + reference.epsilon
    both = positive.any(1) & negative.any(1)
    return torch.where(both, pos, nan)[:, None], torch.where(both, neg, nan)[:, None]


def assert_same_tuples(ours, theirs, embeddings, labels, reference) -> bool:
    """PML's (a1, p, a2, n) in PML's order, up to float rounding; returns whether they are equal, order included.

    Pairs whose exact (float64) value lies within 2 mining_tol of the miner's threshold (miner_thresholds, itself
    rounded in each library) may be mined by one library only. The order is anchor-major, then by index
    (PairMarginMiner) or by value (MultiSimilarityMiner, which PML sorts unstably: equal values, or values closer
    than rounding, in either order).
    """
    assert len(ours) == len(theirs) == 4
    for mine in ours:
        assert mine.dtype == torch.long
    if all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)):
        return True
    exact = reference.distance(embeddings.double())
    tol = mining_tol(embeddings.dtype)
    sorted_by_value = isinstance(reference, pml_miners.MultiSimilarityMiner)
    for (first, second), threshold in zip(((0, 1), (2, 3)), miner_thresholds(reference, exact, labels), strict=True):
        threshold = torch.as_tensor(threshold, dtype=exact.dtype).expand(len(exact), 1)
        anchors, others = ours[first], ours[second]
        assert (anchors[1:] >= anchors[:-1]).all()
        same_anchor = anchors[1:] == anchors[:-1]
        if sorted_by_value:
            values = exact[anchors, others]
            assert (values[1:] >= values[:-1] - tol)[same_anchor].all()
        else:
            assert (others[1:] > others[:-1])[same_anchor].all()
        assert_same_up_to(
            index_rows((anchors, others)),
            index_rows((theirs[first], theirs[second])),
            lambda pair, threshold=threshold: abs(float(exact[pair] - threshold[pair[0], 0])) <= 2 * tol,
        )
    return False


# --- parity with pytorch-metric-learning --------------------------------------------------------


@pytest.mark.parametrize("name", list(MINER_PAIRS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_pml(name, dtype):
    make_ours, make_theirs = MINER_PAIRS[name]
    ours, theirs = make_ours(), make_theirs()
    exact = total = 0
    for size in SIZES:
        for dim in DIMS:
            for seed in SEEDS:
                embeddings, labels = random_batch(seed, size, dim, dtype)
                exact += assert_same_tuples(
                    ours(embeddings, labels), theirs(embeddings, labels), embeddings, labels, theirs
                )
                total += 1
    assert exact >= 0.9 * total  # ties and values at a threshold are rare


def test_parity_up_to_rounding_only():
    # only pairs at a threshold, or values closer than rounding, are excused: other margins are caught
    embeddings, labels = random_batch(1, 64, 3, torch.float32)
    for ours, theirs in (
        (PairMarginMiner(1.0, 0.8), pml_miners.PairMarginMiner(0.2, 0.8)),
        (PairMarginMiner(0.2, 0.7), pml_miners.PairMarginMiner(0.2, 0.8)),
        (MultiSimilarityMiner(0.15), pml_miners.MultiSimilarityMiner(0.1)),
    ):
        with pytest.raises(AssertionError):
            assert_same_tuples(ours(embeddings, labels), theirs(embeddings, labels), embeddings, labels, theirs)
    # and so is another order of the same pairs
    theirs = pml_miners.MultiSimilarityMiner(0.1)
    a1, p, a2, n = theirs(embeddings, labels)
    by_index = torch.argsort(a2 * 64 + n)
    with pytest.raises(AssertionError):
        assert_same_tuples((a1, p, a2[by_index], n[by_index]), (a1, p, a2, n), embeddings, labels, theirs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dense_fraction", [0, 10**9], ids=["sort-mined-pairs", "sort-rows"])
def test_both_orderings_match_pml(monkeypatch, dense_fraction, dtype):
    """The two ways of ordering the mined pairs (few pairs: sort them; many: sort each row) agree with PML."""
    monkeypatch.setattr(multi_similarity, "_DENSE_FRACTION", dense_fraction)
    for seed in SEEDS:
        for size in (16, 128):
            embeddings, labels = random_batch(seed, size, 8, dtype)
            for epsilon in (0.1, 0.5):
                ours = MultiSimilarityMiner(epsilon)(embeddings, labels)
                theirs = pml_miners.MultiSimilarityMiner(epsilon)
                assert_same_tuples(ours, theirs(embeddings, labels), embeddings, labels, theirs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dense_fraction", [0, 10**9], ids=["sort-mined-pairs", "sort-rows"])
def test_ties_go_to_the_lower_index(monkeypatch, dense_fraction, dtype):
    monkeypatch.setattr(multi_similarity, "_DENSE_FRACTION", dense_fraction)
    # Anchor 0 sees items 1 and 2 (duplicates) at exactly the same similarity, and 4 and 5 at 0 and -0.
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [1.0, 0.1], [0.0, 1.0], [-0.0, -1.0]], dtype=dtype)
    labels = torch.tensor([0, 1, 1, 0, 2, 2])
    a1, p, a2, n = MultiSimilarityMiner(epsilon=1.0)(embeddings, labels)
    assert n[a2 == 0].tolist() == [4, 5, 1, 2]


def test_miner_then_loss_matches_pml_pipeline():
    for seed in range(4):
        embeddings, labels = random_batch(seed, 64, 16, torch.float64)
        for ours_loss, their_loss in (
            (MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss()),
            (CircleLoss(), pml_losses.CircleLoss()),
        ):
            ours = ours_loss(embeddings, labels, MultiSimilarityMiner()(embeddings, labels))
            theirs = their_loss(embeddings, labels, pml_miners.MultiSimilarityMiner()(embeddings, labels))
            torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7)


# --- multi-label semantics ----------------------------------------------------------------------


def ms_mine_by_hand(mat, positives, negatives, epsilon, inverted=True):
    """Plain-Python multi-similarity mining over explicit positive / negative lists."""
    out = ([], [], [], [])
    for i, row in enumerate(mat):
        pos, neg = positives[i], negatives[i]
        if not pos or not neg:
            continue
        if inverted:
            keep_pos = [j for j in pos if row[j] - epsilon < max(row[k] for k in neg)]
            keep_neg = [j for j in neg if row[j] + epsilon > min(row[k] for k in pos)]
        else:
            keep_pos = [j for j in pos if row[j] + epsilon > min(row[k] for k in neg)]
            keep_neg = [j for j in neg if row[j] - epsilon < max(row[k] for k in pos)]
        for j in sorted(keep_pos, key=lambda j: (row[j], j)):
            out[0].append(i)
            out[1].append(j)
        for j in sorted(keep_neg, key=lambda j: (row[j], j)):
            out[2].append(i)
            out[3].append(j)
    return out


def pm_mine_by_hand(mat, positives, negatives, pos_margin, neg_margin, inverted=False):
    out = ([], [], [], [])
    for i, row in enumerate(mat):
        for j in positives[i]:
            if (row[j] < pos_margin) if inverted else (row[j] > pos_margin):
                out[0].append(i)
                out[1].append(j)
        for j in negatives[i]:
            if (row[j] > neg_margin) if inverted else (row[j] < neg_margin):
                out[2].append(i)
                out[3].append(j)
    return out


def relation_lists(label_sets, rule):
    """Positive / negative lists by hand: overlap, or jaccard with J >= 0.5 positive and J = 0 negative."""
    positives, negatives = {}, {}
    for i, first in enumerate(label_sets):
        positives[i], negatives[i] = [], []
        for j, second in enumerate(label_sets):
            if i == j:
                continue
            shared = len(first & second)
            union = len(first | second)
            if shared == 0:
                negatives[i].append(j)
            elif rule == "overlap" or shared / union >= 0.5:
                positives[i].append(j)
    return positives, negatives


@pytest.mark.parametrize("rule", ["overlap", "jaccard"])
@pytest.mark.parametrize("seed", range(6))
def test_multi_label_against_plain_python(seed, rule):
    generator = torch.Generator().manual_seed(seed)
    size = 12
    labels = (torch.rand(size, 4, generator=generator) < 0.35).long()
    embeddings = torch.randn(size, 3, generator=generator, dtype=torch.float64)
    label_sets = [set(torch.nonzero(row).flatten().tolist()) for row in labels]
    positives, negatives = relation_lists(label_sets, rule)
    relation = Relation.from_labels(labels, rule=rule)

    similarity = distances.CosineSimilarity()(embeddings).tolist()
    for epsilon in (0.1, 0.4):
        expected = ms_mine_by_hand(similarity, positives, negatives, epsilon)
        for given_labels in (relation, labels) if rule == "overlap" else (relation,):
            mined = MultiSimilarityMiner(epsilon)(embeddings, given_labels)
            assert [t.tolist() for t in mined] == list(expected)
        assert [t.tolist() for t in MultiSimilarityMiner(epsilon, rule=rule)(embeddings, labels)] == list(expected)

    distance = distances.LpDistance()(embeddings).tolist()
    expected = pm_mine_by_hand(distance, positives, negatives, 0.5, 1.2)
    assert [t.tolist() for t in PairMarginMiner(0.5, 1.2)(embeddings, relation)] == list(expected)
    expected = ms_mine_by_hand(distance, positives, negatives, 0.1, inverted=False)
    mined = MultiSimilarityMiner(distance=distances.LpDistance())(embeddings, relation)
    assert [t.tolist() for t in mined] == list(expected)


@pytest.mark.parametrize("miner", [MultiSimilarityMiner(0.5), PairMarginMiner(0.0, 2.0)], ids=["ms", "pm"])
def test_exact_rule_only_returns_equal_label_sets(miner):
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        labels = (torch.rand(32, 3, generator=generator) < 0.5).long()
        embeddings = torch.randn(32, 4, generator=generator)
        relation = Relation.from_labels(labels, rule="exact")
        a1, p, a2, n = miner(embeddings, relation)
        assert len(a1) > 0 and len(a2) > 0
        assert (labels[a1] == labels[p]).all(dim=1).all()
        assert ((labels[a2] * labels[n]).sum(dim=1) == 0).all()
        assert (labels[a1].sum(dim=1) > 0).all()


def test_one_label_per_row_equals_single_label():
    embeddings, labels = random_batch(3, 48, 8, torch.float32)
    one_hot = torch.nn.functional.one_hot(labels)
    for miner in (MultiSimilarityMiner(), PairMarginMiner()):
        for ours, single in zip(miner(embeddings, one_hot), miner(embeddings, labels), strict=True):
            assert torch.equal(ours, single)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(2, 24),
    num_labels=st.integers(1, 6),
    multilabel=st.booleans(),
)
def test_permutation_maps_mined_pairs(seed, size, num_labels, multilabel):
    embeddings, labels, permutation = permutation_batch(
        seed, size, 5, multi_label=multilabel, num_labels=num_labels, num_classes=num_labels
    )
    for miner in (MultiSimilarityMiner(), MultiSimilarityMiner(0.3), PairMarginMiner(), PairMarginMiner(0.3, 1.0)):
        a1, p, a2, n = miner(embeddings, labels)
        b1, q, b2, m = miner(embeddings[permutation], labels[permutation])
        assert pair_set(permutation[b1], permutation[q]) == pair_set(a1, p)
        assert pair_set(permutation[b2], permutation[m]) == pair_set(a2, n)


# --- degenerate batches -------------------------------------------------------------------------


def test_degenerate_batches():
    embeddings, _ = random_batch(0, 8, 4, torch.float32)
    empty_ms = [len(t) for t in MultiSimilarityMiner()(embeddings, torch.arange(8))]
    assert empty_ms == [0, 0, 0, 0]  # no positive pair at all
    assert [len(t) for t in MultiSimilarityMiner()(embeddings, torch.zeros(8, dtype=torch.long))] == [0, 0, 0, 0]
    a1, p, a2, n = PairMarginMiner()(embeddings, torch.zeros(8, dtype=torch.long))
    assert len(a1) > 0 and len(a2) == 0
    for miner, their_miner in (
        (MultiSimilarityMiner(), pml_miners.MultiSimilarityMiner()),
        (PairMarginMiner(), pml_miners.PairMarginMiner()),
    ):
        for labels in (torch.arange(8), torch.zeros(8, dtype=torch.long), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])):
            for batch in (embeddings, torch.zeros(8, 4), torch.cat([embeddings[:4], embeddings[:4]])):
                assert_same_tuples(miner(batch, labels), their_miner(batch, labels), batch, labels, their_miner)
        for mined in miner(embeddings[:1], torch.tensor([0])):  # one item
            assert mined.dtype == torch.long and len(mined) == 0
        no_labels = miner(embeddings, torch.zeros(8, 3, dtype=torch.long))  # everything negative
        assert len(no_labels[0]) == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_embeddings(dtype):
    embeddings, labels = random_batch(1, 32, 16, torch.float32)
    for miner in (MultiSimilarityMiner(), PairMarginMiner()):
        mined = miner(embeddings.to(dtype), labels)
        reference = miner(embeddings.to(dtype).float(), labels)
        for ours, expected in zip(mined, reference, strict=True):
            assert torch.equal(ours, expected)


def test_miners_do_not_track_gradients():
    embeddings, labels = random_batch(2, 16, 4, torch.float32)
    embeddings.requires_grad_(True)
    for miner in (MultiSimilarityMiner(), PairMarginMiner()):
        assert all(not t.requires_grad for t in miner(embeddings, labels))


def test_docstring_examples():
    for module in (multi_similarity, pair_margin):
        results = doctest.testmod(module)
        assert results.attempted > 0 and results.failed == 0


def _jaccard_by_hand(labels: torch.Tensor) -> list[list[float]]:
    sets = [set(torch.nonzero(row).flatten().tolist()) for row in labels]
    return [[len(x & y) / len(x | y) if x | y else 0.0 for y in sets] for x in sets]


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: MultiSimilarityMiner(0.3, **kw),
        lambda **kw: PairMarginMiner(0.0, 2.0, **kw),
    ],
    ids=["ms", "pm"],
)
def test_relation_argument_equals_deprecated_keywords(make):
    rule = RelationRule("jaccard", pos_threshold=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the relation= spelling and the defaults never warn
        miner = make(relation=rule)
        make()
        make(relation="jaccard")
    with pytest.warns(DeprecationWarning, match=r"pos_threshold=0\.6\) is deprecated; pass relation="):
        legacy = make(rule="jaccard", pos_threshold=0.6)
    assert miner.relation_rule == legacy.relation_rule == rule
    generator = torch.Generator().manual_seed(3)
    labels = (torch.rand(16, 3, generator=generator) < 0.5).long()
    embeddings = torch.randn(16, 4, generator=generator)
    mined, mined_legacy = miner(embeddings, labels), legacy(embeddings, labels)
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(mined, mined_legacy, strict=True))
    jaccard = _jaccard_by_hand(labels)
    a1, p, a2, n = (t.tolist() for t in mined)
    assert a1 and all(jaccard[a][b] >= 0.6 for a, b in zip(a1, p, strict=True))
    assert all(jaccard[a][b] == 0.0 for a, b in zip(a2, n, strict=True))
    with pytest.raises(ValueError, match="give either relation= or the deprecated rule="):
        make(relation="jaccard", rule="jaccard")
