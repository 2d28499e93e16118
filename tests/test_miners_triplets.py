"""BatchHardMiner and TripletMarginMiner: exact parity with pytorch-metric-learning, multi-label brute force,
permutations, degenerate batches."""

from __future__ import annotations

import doctest
import itertools
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labelspace.miners.batch_hard as batch_hard_module
import labelspace.miners.triplet_margin as triplet_margin_module
from labelspace.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from labelspace.miners.batch_hard import BatchHardMiner
from labelspace.miners.triplet_margin import TripletMarginMiner
from labelspace.relations import Relation, RelationRule
from metric_testing import (
    GRID,
    assert_same_up_to,
    duplicated_and_zero_batch,
    import_pml,
    index_rows,
    mining_tol,
    permutation_batch,
    random_batch,
)

pml_distances, pml_miners = import_pml("distances", "miners")

TYPES = ("all", "hard", "semihard", "easy")


def assert_equal_tuples(ours, theirs):
    assert len(ours) == len(theirs) == 3
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.dtype == torch.long
        assert torch.equal(mine, reference.long())


def assert_same_batch_hard(ours, theirs, embeddings, pml_distance):
    """PML's anchors, and for each the same positive and negative, or one at the same exact (float64) value:
    a tie, or values closer than float rounding (mining_tol), which the two libraries may break differently."""
    assert len(ours) == len(theirs) == 3 and all(t.dtype == torch.long for t in ours)
    assert torch.equal(ours[0], theirs[0])
    exact = pml_distance(embeddings.double())
    tol = mining_tol(embeddings.dtype)
    for mine, reference in zip(ours[1:], theirs[1:], strict=True):
        same = (mine == reference) | ((exact[ours[0], mine] - exact[ours[0], reference]).abs() <= tol)
        assert same.all(), (ours[0][~same], mine[~same], reference[~same])


def assert_same_triplets(ours, theirs, embeddings, pml_distance, margin):
    """PML's triplets in PML's order (anchor, positive, negative increasing), except triplets whose exact
    (float64) margin lies within mining_tol of 0 or of the margin, where float rounding decides."""
    assert len(ours) == len(theirs) == 3 and all(t.dtype == torch.long for t in ours)
    rows = index_rows(ours)
    assert rows == sorted(rows)
    exact = pml_distance(embeddings.double())
    tol = mining_tol(embeddings.dtype)

    def ambiguous(triplet):
        a, p, n = triplet
        slack = float(exact[a, p] - exact[a, n] if pml_distance.is_inverted else exact[a, n] - exact[a, p])
        return min(abs(slack), abs(slack - margin)) <= tol

    assert_same_up_to(rows, index_rows(theirs), ambiguous)


def triplet_set(indices_tuple, mapping=None):
    triplets = zip(*(t.tolist() for t in indices_tuple), strict=True)
    if mapping is not None:
        triplets = ((mapping[a], mapping[p], mapping[n]) for a, p, n in triplets)
    return sorted(triplets)


# ---------------------------------------------------------------- parity (same order; up to float rounding)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("seed", "size", "dim"), GRID)
def test_batch_hard_parity(seed, size, dim, dtype):
    embeddings, labels = random_batch(seed, size, dim, dtype, via_float64=True)
    theirs = pml_miners.BatchHardMiner()
    assert_same_batch_hard(
        BatchHardMiner()(embeddings, labels), theirs(embeddings, labels), embeddings, theirs.distance
    )
    theirs = pml_miners.BatchHardMiner(distance=pml_distances.CosineSimilarity())
    mined = BatchHardMiner(CosineSimilarity())(embeddings, labels)
    assert_same_batch_hard(mined, theirs(embeddings, labels), embeddings, theirs.distance)


def test_batch_hard_parity_up_to_rounding_only():
    # only ties are excused: the choices of raw dot products are caught, while cosine similarity (monotone
    # in the Euclidean distance of normalised embeddings) chooses what PML's default chooses
    embeddings, labels = random_batch(0, 64, 3, torch.float32, via_float64=True)
    theirs = pml_miners.BatchHardMiner()
    expected = theirs(embeddings, labels)
    raw_dot = pml_miners.BatchHardMiner(distance=pml_distances.DotProductSimilarity(normalize_embeddings=False))
    with pytest.raises(AssertionError):
        assert_same_batch_hard(raw_dot(embeddings, labels), expected, embeddings, theirs.distance)
    assert_same_batch_hard(
        BatchHardMiner(CosineSimilarity())(embeddings, labels), expected, embeddings, theirs.distance
    )


@pytest.mark.parametrize(("seed", "size", "dim"), GRID)
def test_triplet_margin_miner_default_parity(seed, size, dim):
    for dtype in (torch.float32, torch.float64):
        embeddings, labels = random_batch(seed, size, dim, dtype, via_float64=True)
        theirs = pml_miners.TripletMarginMiner()
        mined = TripletMarginMiner()(embeddings, labels)
        assert_same_triplets(mined, theirs(embeddings, labels), embeddings, theirs.distance, theirs.margin)


@pytest.mark.parametrize("type_of_triplets", TYPES)
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"margin": 0.05}, {"margin": 0.05}),
        ({"margin": 0.5}, {"margin": 0.5}),
        (
            {"margin": 0.1, "distance": CosineSimilarity()},
            {"margin": 0.1, "distance": pml_distances.CosineSimilarity()},
        ),
        (
            {"margin": 1.0, "distance": DotProductSimilarity()},
            {"margin": 1.0, "distance": pml_distances.DotProductSimilarity()},
        ),
        (
            {"margin": 0.3, "distance": LpDistance(power=2)},
            {"margin": 0.3, "distance": pml_distances.LpDistance(power=2)},
        ),
    ],
    ids=["margin0.05", "margin0.5", "cosine", "dot", "lp_squared"],
)
@pytest.mark.parametrize(("seed", "size", "dim"), [(0, 5, 3), (1, 16, 32), (2, 64, 3), (3, 96, 32)])
def test_triplet_margin_miner_parity(type_of_triplets, ours, theirs, seed, size, dim):
    embeddings, labels = random_batch(seed, size, dim, torch.float32, via_float64=True)
    mined = TripletMarginMiner(type_of_triplets=type_of_triplets, **ours)(embeddings, labels)
    reference = pml_miners.TripletMarginMiner(type_of_triplets=type_of_triplets, **theirs)
    assert_same_triplets(mined, reference(embeddings, labels), embeddings, reference.distance, reference.margin)


@pytest.mark.parametrize("chunk", [1, 40, 1000])
def test_triplet_margin_miner_chunks_change_nothing(monkeypatch, chunk):
    embeddings, labels = random_batch(5, 40, 6, torch.float32, via_float64=True)
    labels = labels % 4
    whole = {kind: TripletMarginMiner(0.3, kind)(embeddings, labels) for kind in TYPES}
    monkeypatch.setattr(triplet_margin_module, "CHUNK_ELEMENTS", chunk)
    for type_of_triplets in TYPES:
        mined = TripletMarginMiner(0.3, type_of_triplets)(embeddings, labels)
        assert_equal_tuples(mined, whole[type_of_triplets])  # the same distance matrix, only sliced differently
        reference = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets=type_of_triplets)
        assert_same_triplets(mined, reference(embeddings, labels), embeddings, reference.distance, 0.3)


def test_triplet_parity_up_to_rounding_only():
    # only triplets at the thresholds are excused: another margin's triplets, or another order, are caught
    embeddings, labels = random_batch(2, 64, 3, torch.float32, via_float64=True)
    reference = pml_miners.TripletMarginMiner(margin=0.2)
    expected = reference(embeddings, labels)
    wider = TripletMarginMiner(margin=0.21)(embeddings, labels)
    with pytest.raises(AssertionError):
        assert_same_triplets(wider, expected, embeddings, reference.distance, 0.2)
    reversed_order = [t.flip(0) for t in TripletMarginMiner(margin=0.2)(embeddings, labels)]
    with pytest.raises(AssertionError):
        assert_same_triplets(reversed_order, expected, embeddings, reference.distance, 0.2)


def test_rejects_unknown_type():
    with pytest.raises(ValueError, match="type_of_triplets"):
        TripletMarginMiner(type_of_triplets="medium")


# ---------------------------------------------------------------- multi-label: brute force


def multi_label_batch(seed, size=14, num_labels=4, dim=5):
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(size, num_labels, generator=generator) < 0.3).long()
    labels[0] = 0  # an item without labels: negative to everyone, never an anchor
    embeddings = torch.randn(size, dim, generator=generator, dtype=torch.float64)
    return embeddings, labels


def distances_of(embeddings):
    unit = torch.nn.functional.normalize(embeddings)
    return [[torch.dist(unit[i], unit[j]).item() for j in range(len(unit))] for i in range(len(unit))]


@pytest.mark.parametrize("seed", range(8))
def test_batch_hard_multilabel_brute_force(seed):
    embeddings, labels = multi_label_batch(seed)
    rows = labels.tolist()
    distance = distances_of(embeddings)
    expected = []
    for a in range(len(rows)):
        sharing = [
            j for j in range(len(rows)) if j != a and any(x and y for x, y in zip(rows[a], rows[j], strict=True))
        ]
        disjoint = [
            j for j in range(len(rows)) if j != a and not any(x and y for x, y in zip(rows[a], rows[j], strict=True))
        ]
        if sharing and disjoint:
            expected.append(
                (a, max(sharing, key=lambda j: distance[a][j]), min(disjoint, key=lambda j: distance[a][j]))
            )
    mined = BatchHardMiner()(embeddings, labels)
    assert triplet_set(mined) == expected
    assert 0 not in mined[0].tolist() and 0 not in mined[1].tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("type_of_triplets", TYPES)
def test_triplet_margin_miner_multilabel_brute_force(seed, type_of_triplets):
    embeddings, labels = multi_label_batch(seed)
    rows = labels.tolist()
    distance = distances_of(embeddings)
    margin = 0.3
    expected = []
    for a, p, n in itertools.product(range(len(rows)), repeat=3):
        share_p = any(x and y for x, y in zip(rows[a], rows[p], strict=True))
        share_n = any(x and y for x, y in zip(rows[a], rows[n], strict=True))
        if a in (p, n) or not share_p or share_n:
            continue
        m = distance[a][n] - distance[a][p]
        keep = {
            "all": m <= margin,
            "hard": m <= 0,
            "semihard": 0 < m <= margin,
            "easy": m > margin,
        }[type_of_triplets]
        if keep:
            expected.append((a, p, n))
    mined = TripletMarginMiner(margin, type_of_triplets)(embeddings, labels)
    assert list(zip(*(t.tolist() for t in mined), strict=True)) == expected  # same (a, p, n) order, too


def test_one_label_per_row_multi_hot_and_relation_equal_single_label():
    for seed in range(5):
        embeddings, labels = random_batch(seed, 40, 8, torch.float32, via_float64=True)
        one_hot = torch.nn.functional.one_hot(labels)
        relation = Relation.from_labels(labels)
        for miner in (BatchHardMiner(), TripletMarginMiner(), TripletMarginMiner(0.1, "semihard")):
            single = miner(embeddings, labels)
            assert_equal_tuples(miner(embeddings, one_hot), single)
            assert_equal_tuples(miner(embeddings, relation), single)


def test_exact_rule():
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 0]])
    # exact: 0 and 2 are positives of each other only; 1 shares a label with both, so it is no negative
    mined = BatchHardMiner(rule="exact")(embeddings, labels)
    assert triplet_set(mined) == [(0, 2, 3), (2, 0, 3)]


# ---------------------------------------------------------------- permutations


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(2, 20), multi_label=st.booleans(), cosine=st.booleans())
def test_triplets_map_through_permutations(seed, size, multi_label, cosine):
    embeddings, labels, permutation = permutation_batch(  # continuous embeddings: no ties
        seed, size, 6, multi_label=multi_label, num_labels=4, num_classes=max(2, size // 3), density=0.35
    )
    distance = CosineSimilarity() if cosine else LpDistance()
    mapping = permutation.tolist()  # permuted position i holds original item mapping[i]
    for miner in (BatchHardMiner(distance), *(TripletMarginMiner(0.3, kind, distance) for kind in TYPES)):
        original = triplet_set(miner(embeddings, labels))
        permuted = triplet_set(miner(embeddings[permutation], labels[permutation]), mapping)
        assert permuted == original


# ---------------------------------------------------------------- degenerate batches


@pytest.mark.parametrize(
    "labels",
    [torch.arange(6), torch.zeros(6, dtype=torch.long), torch.zeros(6, 3, dtype=torch.long), torch.eye(6).long()],
    ids=["no_positives", "all_same", "no_labels", "multi_hot_no_positives"],
)
def test_no_triplets(labels):
    embeddings = torch.randn(6, 4)
    for miner in (BatchHardMiner(), *(TripletMarginMiner(0.2, kind) for kind in TYPES)):
        mined = miner(embeddings, labels)
        assert len(mined) == 3 and all(t.dtype == torch.long and t.numel() == 0 for t in mined)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_duplicated_and_zero_embeddings(dtype):
    embeddings, labels, _ = duplicated_and_zero_batch(dtype)
    for miner in (BatchHardMiner(), *(TripletMarginMiner(0.2, kind) for kind in TYPES)):
        mined = miner(embeddings, labels)
        relation = Relation.from_labels(labels)
        anchors, positives, negatives = mined
        assert relation.positive[anchors, positives].all() and relation.negative[anchors, negatives].all()
        if dtype in (torch.float32, torch.float64):
            # Rows 0 and 3 are copies, so choices between them are ties that rounding noise decides
            # (differently in torch.cdist and in labelspace's matmul distance): compare up to ties.
            if isinstance(miner, BatchHardMiner):
                reference = pml_miners.BatchHardMiner()
                assert_same_batch_hard(mined, reference(embeddings, labels), embeddings, reference.distance)
            else:
                reference = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets=miner.type_of_triplets)
                assert_same_triplets(mined, reference(embeddings, labels), embeddings, reference.distance, 0.2)
        else:  # half precision is mined in float32
            assert_equal_tuples(mined, miner(embeddings.float(), labels))


def test_mining_needs_no_gradient():
    embeddings = torch.randn(10, 4, requires_grad=True)
    labels = torch.arange(10) % 3
    for miner in (BatchHardMiner(), TripletMarginMiner()):
        assert all(not t.requires_grad for t in miner(embeddings, labels))


def test_docstring_examples_run():
    assert doctest.testmod(batch_hard_module, raise_on_error=False).failed == 0
    assert doctest.testmod(triplet_margin_module, raise_on_error=False).failed == 0


@pytest.mark.parametrize(
    "make",
    [lambda **kw: BatchHardMiner(**kw), lambda **kw: TripletMarginMiner(0.5, "all", **kw)],
    ids=["batch-hard", "triplet-margin"],
)
def test_relation_argument_equals_deprecated_keywords(make):
    rule = RelationRule("jaccard", pos_threshold=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the relation= spelling and the defaults never warn
        miner = make(relation=rule)
        make()
        make(relation="exact")
    with pytest.warns(DeprecationWarning, match=r"pos_threshold=0\.6\) is deprecated; pass relation="):
        legacy = make(rule="jaccard", pos_threshold=0.6)
    assert miner.relation_rule == legacy.relation_rule == rule
    generator = torch.Generator().manual_seed(5)
    labels = (torch.rand(16, 3, generator=generator) < 0.5).long()
    embeddings = torch.randn(16, 4, generator=generator)
    mined, mined_legacy = miner(embeddings, labels), legacy(embeddings, labels)
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(mined, mined_legacy, strict=True))
    sets = [set(torch.nonzero(row).flatten().tolist()) for row in labels]
    anchors, positives, negatives = (t.tolist() for t in mined)
    assert anchors
    for a, p, n in zip(anchors, positives, negatives, strict=True):
        assert len(sets[a] & sets[p]) / len(sets[a] | sets[p]) >= 0.6  # Jaccard by hand
        assert not sets[a] & sets[n]
