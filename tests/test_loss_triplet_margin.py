"""TripletMarginLoss: parity with pytorch-metric-learning, multi-label semantics, invariances, degenerate batches."""

from __future__ import annotations

import doctest
import itertools
import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labelspace.losses.metric.triplet_margin as triplet_module
from labelspace.distances import CosineSimilarity, DotProductSimilarity, LpDistance
from labelspace.losses.metric.triplet_margin import TripletMarginLoss, pairs_to_triplets
from labelspace.relations import Relation
from metric_testing import (
    DIMS,
    GRID,
    KINK_TOL,
    assert_finite,
    assert_parity,
    duplicated_and_zero_batch,
    import_pml,
    permutation_batch,
    random_batch,
    value_and_grad,
)

pml_distances, pml_losses, pml_miners, pml_reducers, lmu = import_pml(
    "distances", "losses", "miners", "reducers", "utils.loss_and_miner_utils"
)

# values to 1e-5, gradients to atol 1e-4 and rtol 1e-5; PML's value is cast to our dtype
assert_same = partial(assert_parity, check_dtype=False, grad_rtol=1e-5)


def miner_tuples(embeddings, labels):
    """Index tuples to feed both libraries: batch-hard, margin-mined triplets, all pairs, a pair subset."""
    a1, p, a2, n = lmu.get_all_pairs_indices(labels)
    return {
        "batch_hard": pml_miners.BatchHardMiner()(embeddings, labels),
        "margin_miner": pml_miners.TripletMarginMiner(margin=0.5)(embeddings, labels),
        "all_pairs": (a1, p, a2, n),
        "some_pairs": (a1[::2], p[::2], a2[1::3], n[1::3]),
    }


@pytest.fixture(params=["rows", "matrix"])
def explicit_path(request, monkeypatch):
    """Run explicit-triplet losses through gathered rows, or through the B x B matrix."""
    use_rows = request.param == "rows"
    monkeypatch.setattr(TripletMarginLoss, "uses_row_distances", lambda self, *args: use_rows)
    return request.param


@pytest.mark.parametrize(("seed", "size", "dim"), GRID)
def test_default_parity_from_labels_and_tuples_float64(seed, size, dim):
    embeddings, labels = random_batch(seed, size, dim)
    assert_same(TripletMarginLoss(), pml_losses.TripletMarginLoss(), embeddings, labels)
    for indices_tuple in miner_tuples(embeddings, labels).values():
        assert_same(TripletMarginLoss(), pml_losses.TripletMarginLoss(), embeddings, labels, indices_tuple)
        # indices take precedence: no labels needed
        assert_same(TripletMarginLoss(), pml_losses.TripletMarginLoss(), embeddings, None, indices_tuple)


def triplets_near_hinge(embeddings64, labels, indices_tuple, margin=0.05):
    """Whether a triplet the loss sees (PML's conversion of labels / the tuple) has d_an - d_ap within KINK_TOL
    of the margin: its hinge, where the loss and the count of non-zero losses the mean divides by jump."""
    if indices_tuple is None:
        anchors, positives, negatives = lmu.get_all_triplets_indices(labels)
    else:
        anchors, positives, negatives = lmu.convert_to_triplets(indices_tuple, labels)
    unit = torch.nn.functional.normalize(embeddings64, dim=1)
    distance = torch.cdist(unit, unit)
    slack = distance[anchors, negatives] - distance[anchors, positives]
    return bool(((slack - margin).abs() <= KINK_TOL).any())


def test_triplets_near_hinge():
    # unit vectors at 0, 90 and 180 degrees: d_ap = sqrt(2) (anchor 0, positive 1), d_an = 2 (negative 2)
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    assert triplets_near_hinge(points, labels, None, margin=2 - math.sqrt(2))
    assert not triplets_near_hinge(points, labels, None, margin=0.05)
    assert not triplets_near_hinge(points, labels, (torch.tensor([0]), torch.tensor([1]), torch.tensor([1])), 0.6)


@pytest.mark.parametrize(("seed", "size", "dim"), [(s, b, d) for s in range(2) for b in (16, 64, 128) for d in DIMS])
def test_default_parity_float32(seed, size, dim, explicit_path):
    """float32 against PML in float64 on the same values (metric_testing.assert_parity): values to 1e-5,
    gradients to 1e-4 (at most ~1e-7 is seen). A batch with a triplet at the hinge is left out (see
    triplets_near_hinge): float32 rounding may put it on either side; the float64 test covers it."""
    embeddings, labels = random_batch(seed, size, dim, torch.float32, via_float64=True)
    compared = 0
    for indices_tuple in [None, *miner_tuples(embeddings, labels).values()]:
        compared += assert_same(
            TripletMarginLoss(),
            pml_losses.TripletMarginLoss(),
            embeddings,
            labels,
            indices_tuple,
            near_kink=lambda embeddings64, indices_tuple=indices_tuple: triplets_near_hinge(
                embeddings64, labels, indices_tuple
            ),
        )
    assert compared >= 1  # batch-hard's few triplets keep clear of the hinge


NON_DEFAULT = [
    ({"margin": 0.2}, {"margin": 0.2}),
    ({"margin": 0.5, "swap": True}, {"margin": 0.5, "swap": True}),
    ({"smooth_loss": True}, {"smooth_loss": True}),
    ({"smooth_loss": True, "swap": True, "margin": 0.1}, {"smooth_loss": True, "swap": True, "margin": 0.1}),
    ({"distance": CosineSimilarity()}, {"distance": pml_distances.CosineSimilarity()}),
    (
        {"distance": CosineSimilarity(), "swap": True, "margin": 0.3},
        {"distance": pml_distances.CosineSimilarity(), "swap": True, "margin": 0.3},
    ),
    (
        {"distance": DotProductSimilarity(), "smooth_loss": True},
        {"distance": pml_distances.DotProductSimilarity(), "smooth_loss": True},
    ),
    ({"distance": LpDistance(power=2), "margin": 0.4}, {"distance": pml_distances.LpDistance(power=2), "margin": 0.4}),
    ({"reduction": "mean", "margin": 0.3}, {"reducer": pml_reducers.MeanReducer(), "margin": 0.3}),
    ({"reduction": "sum", "swap": True}, {"reducer": pml_reducers.SumReducer(), "swap": True}),
]


@pytest.mark.parametrize(("ours", "theirs"), NON_DEFAULT, ids=[str(i) for i in range(len(NON_DEFAULT))])
@pytest.mark.parametrize(("seed", "size", "dim"), [(0, 5, 3), (1, 16, 32), (2, 64, 3), (3, 40, 32)])
def test_non_default_parity(ours, theirs, seed, size, dim, explicit_path):
    embeddings, labels = random_batch(seed, size, dim)
    loss, reference = TripletMarginLoss(**ours), pml_losses.TripletMarginLoss(**theirs)
    assert_same(loss, reference, embeddings, labels)
    for indices_tuple in miner_tuples(embeddings, labels).values():
        assert_same(loss, reference, embeddings, labels, indices_tuple)


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("smooth_loss", [False, True])
def test_all_triplets_in_many_chunks(monkeypatch, swap, smooth_loss):
    """Chunking over positive pairs (here 1 pair per chunk, then 3) changes nothing."""
    embeddings, labels = random_batch(7, 64, 8)
    labels = labels % 5
    reference = pml_losses.TripletMarginLoss(margin=0.3, swap=swap, smooth_loss=smooth_loss)
    for chunk in (1, 3 * 64):
        monkeypatch.setattr(triplet_module, "CHUNK_ELEMENTS", chunk)
        assert_same(TripletMarginLoss(margin=0.3, swap=swap, smooth_loss=smooth_loss), reference, embeddings, labels)


def test_reduction_none_lists_every_triplet_in_pml_order():
    embeddings, labels = random_batch(3, 16, 4)
    labels = labels % 3
    losses = TripletMarginLoss(margin=0.3, reduction="none")(embeddings, labels)
    anchors, positives, negatives = lmu.get_all_triplets_indices(labels)
    distances = torch.cdist(torch.nn.functional.normalize(embeddings), torch.nn.functional.normalize(embeddings))
    expected = torch.relu(distances[anchors, positives] - distances[anchors, negatives] + 0.3)
    torch.testing.assert_close(losses, expected)


def test_triplets_per_anchor_samples_valid_triplets():
    embeddings, labels = random_batch(5, 64, 8)
    labels = labels % 6
    relation = Relation.from_labels(labels)
    generator = torch.Generator().manual_seed(0)
    anchors, positives, negatives = triplet_module.sample_triplets(relation, 3, generator)
    usable = torch.where(relation.positive.any(1) & relation.negative.any(1))[0]
    assert torch.equal(anchors, usable.repeat_interleave(3))
    assert relation.positive[anchors, positives].all() and relation.negative[anchors, negatives].all()
    # the loss on those triplets is PML's loss on the same triplets
    torch.manual_seed(11)
    value = TripletMarginLoss(triplets_per_anchor=3)(embeddings, labels)
    torch.manual_seed(11)
    sampled = triplet_module.sample_triplets(relation, 3)
    expected = pml_losses.TripletMarginLoss()(embeddings, labels, sampled)
    torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="triplets_per_anchor"):
        TripletMarginLoss(triplets_per_anchor=0)


def test_pairs_to_triplets_matches_pml_order():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        a1, p = torch.randint(0, 9, (30,), generator=generator), torch.randint(0, 9, (30,), generator=generator)
        a2, n = torch.randint(0, 9, (25,), generator=generator), torch.randint(0, 9, (25,), generator=generator)
        ours = pairs_to_triplets(a1, p, a2, n)
        expected = lmu.convert_to_triplets((a1, p, a2, n), None)
        assert all(torch.equal(x, y) for x, y in zip(ours, expected, strict=True))
    empty = torch.empty(0, dtype=torch.long)
    assert all(len(t) == 0 for t in pairs_to_triplets(empty, empty, a2, n))


# ---------------------------------------------------------------- multi-label semantics, by hand

# unit vectors, so normalisation leaves them as they are
POINTS = [(1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]
MULTI = [[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]


def hand_triplet_loss(points, is_positive, is_negative, margin):
    """Mean of the positive [d(a,p) - d(a,n) + margin]_+ over all triplets, in plain Python."""
    losses = []
    indices = range(len(points))
    for a, p, n in itertools.product(indices, indices, indices):
        if a != p and is_positive(a, p) and is_negative(a, n):
            value = math.dist(points[a], points[p]) - math.dist(points[a], points[n]) + margin
            losses.append(max(value, 0.0))
    positive = [v for v in losses if v > 0]
    return sum(positive) / len(positive) if positive else 0.0


def shares(a, b):
    return sum(x * y for x, y in zip(MULTI[a], MULTI[b], strict=True))


def test_multilabel_overlap_rule_by_hand():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    labels = torch.tensor(MULTI)
    expected = hand_triplet_loss(POINTS, lambda a, b: shares(a, b) > 0, lambda a, b: shares(a, b) == 0, 0.5)
    assert TripletMarginLoss(margin=0.5)(embeddings, labels).item() == pytest.approx(expected, abs=1e-9)
    # one worked triplet: anchor 1 = (0.6, 0.8) {0}, positive 0 = (1, 0) {0, 1}, negative 2 = (0, 1) {1}:
    # d(1, 0) = sqrt(0.16 + 0.64) = 0.8944, d(1, 2) = sqrt(0.36 + 0.04) = 0.6325: 0.8944 - 0.6325 + 0.5 > 0
    losses = TripletMarginLoss(margin=0.5, reduction="none")(embeddings, labels)
    anchors, positives, negatives = Relation.from_labels(labels).triplet_indices()
    worked = ((anchors == 1) & (positives == 0) & (negatives == 2)).nonzero().item()
    assert losses[worked].item() == pytest.approx(math.sqrt(0.8) - math.sqrt(0.4) + 0.5, abs=1e-9)


def test_multilabel_exact_rule_by_hand():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    labels = torch.tensor(MULTI)
    expected = hand_triplet_loss(POINTS, lambda a, b: MULTI[a] == MULTI[b], lambda a, b: shares(a, b) == 0, 1.0)
    # only items 0 and 4 have equal sets: anchors 0 and 4, negative 3 (the only item sharing nothing with them)
    d04, d03, d43 = math.dist(POINTS[0], POINTS[4]), math.dist(POINTS[0], POINTS[3]), math.dist(POINTS[4], POINTS[3])
    assert expected == pytest.approx(((d04 - d03 + 1.0) + (d04 - d43 + 1.0)) / 2)
    assert TripletMarginLoss(margin=1.0, rule="exact")(embeddings, labels).item() == pytest.approx(expected, abs=1e-9)


def test_one_label_per_row_multi_hot_equals_single_label():
    for seed in range(5):
        embeddings, labels = random_batch(seed, 32, 8)
        one_hot = torch.nn.functional.one_hot(labels)
        for kwargs in ({}, {"swap": True, "smooth_loss": True}, {"distance": CosineSimilarity()}):
            single = value_and_grad(TripletMarginLoss(**kwargs), embeddings, labels)
            multi = value_and_grad(TripletMarginLoss(**kwargs), embeddings, one_hot)
            assert torch.equal(single[0], multi[0]) and torch.equal(single[1], multi[1])


def test_relation_input_equals_labels():
    embeddings, labels = random_batch(2, 32, 8)
    multi = (torch.rand(32, 5, generator=torch.Generator().manual_seed(0)) < 0.3).long()
    for given_labels in (labels, multi):
        relation = Relation.from_labels(given_labels)
        assert TripletMarginLoss()(embeddings, relation) == TripletMarginLoss()(embeddings, given_labels)


# ---------------------------------------------------------------- invariances


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(2, 24),
    multi_label=st.booleans(),
    swap=st.booleans(),
    smooth=st.booleans(),
)
def test_permutation_invariance(seed, size, multi_label, swap, smooth):
    embeddings, labels, permutation = permutation_batch(
        seed, size, 6, multi_label=multi_label, num_labels=4, num_classes=max(2, size // 3), density=0.35
    )
    loss = TripletMarginLoss(margin=0.3, swap=swap, smooth_loss=smooth)
    before = loss(embeddings, labels)
    after = loss(embeddings[permutation], labels[permutation])
    assert after.item() == pytest.approx(before.item(), abs=1e-5)


# ---------------------------------------------------------------- degenerate batches


@pytest.mark.parametrize(
    "labels",
    [
        torch.arange(6),  # no positives
        torch.zeros(6, dtype=torch.long),  # all same: no negatives
        torch.zeros(6, 3, dtype=torch.long),  # no labels at all
        torch.eye(6, dtype=torch.long),  # multi-hot, no positives
    ],
    ids=["no_positives", "all_same", "no_labels", "multi_hot_no_positives"],
)
def test_no_triplets_gives_differentiable_zero(labels, explicit_path):
    embeddings = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    for loss in (TripletMarginLoss(), TripletMarginLoss(smooth_loss=True), TripletMarginLoss(triplets_per_anchor=2)):
        value = loss(embeddings, labels)
        assert value.item() == 0.0 and value.dtype == torch.float64 and value.requires_grad
        (grad,) = torch.autograd.grad(value, embeddings)
        assert torch.equal(grad, torch.zeros_like(grad))
    empty = torch.empty(0, dtype=torch.long)
    value = TripletMarginLoss()(embeddings, None, (empty, empty, empty))
    assert value.item() == 0.0 and value.requires_grad
    assert TripletMarginLoss(reduction="none")(embeddings, labels).shape == (0,)


def test_items_without_labels_are_negatives_to_everyone():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    labels = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 1], [0, 1]])
    losses = TripletMarginLoss(margin=10.0, reduction="none")(embeddings, labels)
    anchors, positives, negatives = Relation.from_labels(labels).triplet_indices()
    assert 2 not in anchors.tolist() and 2 not in positives.tolist()
    assert (negatives == 2).sum() == 4  # each of the 4 positive pairs uses item 2 as a negative
    assert len(losses) == 4 * 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_duplicated_and_zero_embeddings_stay_finite(dtype, explicit_path):
    embeddings, labels, multi = duplicated_and_zero_batch(dtype, copies=(3, 4))
    losses = [
        TripletMarginLoss(),
        TripletMarginLoss(swap=True, smooth_loss=True),
        TripletMarginLoss(distance=CosineSimilarity(), margin=0.2),
    ]
    for loss, given_labels in itertools.product(losses, (labels, multi)):
        tuples = [None, pml_miners.BatchHardMiner()(embeddings.double(), labels)]
        for indices_tuple in tuples:
            value, grad = value_and_grad(loss, embeddings, given_labels, indices_tuple)
            assert_finite(value, grad)
            assert grad.dtype == dtype
            assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    if dtype in (torch.float16, torch.bfloat16):  # half precision is computed in float32
        expected = TripletMarginLoss()(embeddings.float(), labels)
        assert TripletMarginLoss()(embeddings, labels).item() == pytest.approx(expected.item(), abs=1e-6)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        TripletMarginLoss()(torch.randn(4), torch.arange(4))
    with pytest.raises(ValueError, match="labels"):
        TripletMarginLoss()(torch.randn(4, 2))
    with pytest.raises(ValueError, match="3"):
        TripletMarginLoss()(torch.randn(4, 2), None, (torch.arange(2), torch.arange(2)))


def test_docstring_example_runs():
    assert doctest.testmod(triplet_module, raise_on_error=False).failed == 0
