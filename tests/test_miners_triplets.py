"""BatchHardMiner and TripletMarginMiner: exact parity with pytorch-metric-learning, multi-label brute force,
permutations, degenerate batches."""

from __future__ import annotations

import doctest
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labelspace.miners.batch_hard as batch_hard_module
import labelspace.miners.triplet_margin as triplet_margin_module
from labelspace.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from labelspace.miners.batch_hard import BatchHardMiner
from labelspace.miners.triplet_margin import TripletMarginMiner
from labelspace.relations import Relation
from metric_testing import GRID, duplicated_and_zero_batch, import_pml, permutation_batch, random_batch

pml_distances, pml_miners = import_pml("distances", "miners")

TYPES = ("all", "hard", "semihard", "easy")


def assert_equal_tuples(ours, theirs):
    assert len(ours) == len(theirs) == 3
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.dtype == torch.long
        assert torch.equal(mine, reference.long())


def triplet_set(indices_tuple, mapping=None):
    triplets = zip(*(t.tolist() for t in indices_tuple), strict=True)
    if mapping is not None:
        triplets = ((mapping[a], mapping[p], mapping[n]) for a, p, n in triplets)
    return sorted(triplets)


# ---------------------------------------------------------------- parity (exact equality, same order)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("seed", "size", "dim"), GRID)
def test_batch_hard_parity(seed, size, dim, dtype):
    embeddings, labels = random_batch(seed, size, dim, dtype, via_float64=True)
    assert_equal_tuples(BatchHardMiner()(embeddings, labels), pml_miners.BatchHardMiner()(embeddings, labels))
    assert_equal_tuples(
        BatchHardMiner(CosineSimilarity())(embeddings, labels),
        pml_miners.BatchHardMiner(distance=pml_distances.CosineSimilarity())(embeddings, labels),
    )


@pytest.mark.parametrize(("seed", "size", "dim"), GRID)
def test_triplet_margin_miner_default_parity(seed, size, dim):
    for dtype in (torch.float32, torch.float64):
        embeddings, labels = random_batch(seed, size, dim, dtype, via_float64=True)
        assert_equal_tuples(
            TripletMarginMiner()(embeddings, labels), pml_miners.TripletMarginMiner()(embeddings, labels)
        )


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
    expected = pml_miners.TripletMarginMiner(type_of_triplets=type_of_triplets, **theirs)(embeddings, labels)
    assert_equal_tuples(mined, expected)


@pytest.mark.parametrize("chunk", [1, 40, 1000])
def test_triplet_margin_miner_chunks_change_nothing(monkeypatch, chunk):
    embeddings, labels = random_batch(5, 40, 6, torch.float32, via_float64=True)
    labels = labels % 4
    monkeypatch.setattr(triplet_margin_module, "CHUNK_ELEMENTS", chunk)
    for type_of_triplets in TYPES:
        assert_equal_tuples(
            TripletMarginMiner(0.3, type_of_triplets)(embeddings, labels),
            pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets=type_of_triplets)(embeddings, labels),
        )


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
            assert_equal_up_to_ties(mined, pml_for(miner)(embeddings, labels), embeddings)
        else:  # half precision is mined in float32
            assert_equal_tuples(mined, miner(embeddings.float(), labels))


def assert_equal_up_to_ties(ours, theirs, embeddings):
    """Same anchors, and each chosen item at the same exact distance as PML's choice."""
    assert torch.equal(ours[0], theirs[0])
    exact = torch.cdist(*(torch.nn.functional.normalize(embeddings.double(), dim=1),) * 2)
    for ours_index, theirs_index in zip(ours[1:], theirs[1:], strict=True):
        torch.testing.assert_close(exact[ours[0], ours_index], exact[theirs[0], theirs_index], atol=1e-6, rtol=0)


def pml_for(miner):
    if isinstance(miner, BatchHardMiner):
        return pml_miners.BatchHardMiner()
    return pml_miners.TripletMarginMiner(margin=miner.margin, type_of_triplets=miner.type_of_triplets)


def test_mining_needs_no_gradient():
    embeddings = torch.randn(10, 4, requires_grad=True)
    labels = torch.arange(10) % 3
    for miner in (BatchHardMiner(), TripletMarginMiner()):
        assert all(not t.requires_grad for t in miner(embeddings, labels))


def test_docstring_examples_run():
    assert doctest.testmod(batch_hard_module, raise_on_error=False).failed == 0
    assert doctest.testmod(triplet_margin_module, raise_on_error=False).failed == 0
