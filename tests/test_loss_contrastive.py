"""ContrastiveLoss: parity with pytorch-metric-learning, multi-label semantics, degenerate batches."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labelspace import distances
from labelspace.losses.metric import contrastive
from labelspace.losses.metric.contrastive import ContrastiveLoss
from labelspace.relations import Relation
from metric_testing import (
    DIMS,
    SEEDS,
    SIZES,
    assert_finite_with_gradient,
    assert_parity,
    both_directions,
    entries_near,
    import_pml,
    permutation_batch,
    pml_returns_zero_for,
    random_batch,
    random_pair_subset,
    value_and_grad,
)

pml_losses, pml_distances, pml_miners, pml_reducers = import_pml("losses", "distances", "miners", "reducers")


def parity(ours, theirs, embeddings, labels=None, indices_tuple=None) -> bool:
    """assert_parity (float32 against PML in float64), except a float32 batch with a pair within KINK_TOL of a
    margin: the hinge there, and the count of non-zero losses the mean divides by, jump with the side of the
    margin that float32 rounding puts the pair on. Returns whether it compared."""

    def near_kink(embeddings64):
        return bool(entries_near(theirs.distance(embeddings64), (theirs.pos_margin, theirs.neg_margin)).any())

    return assert_parity(ours, theirs, embeddings, labels, indices_tuple, near_kink=near_kink)


# --- parity with pytorch-metric-learning --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_labels(size, dim, dtype):
    compared = 0
    for seed in SEEDS:
        embeddings, labels = random_batch(seed, size, dim, dtype)
        compared += parity(ContrastiveLoss(), pml_losses.ContrastiveLoss(), embeddings, labels)
    assert compared >= len(SEEDS) // 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_indices_tuple(size, dtype):
    miners = [
        pml_miners.MultiSimilarityMiner(epsilon=0.1),
        pml_miners.PairMarginMiner(pos_margin=0.5, neg_margin=1.0),
    ]
    checked = 0
    for seed in SEEDS:
        embeddings, labels = random_batch(seed, size, 8, dtype)
        tuples = [miner(embeddings, labels) for miner in miners] + [random_pair_subset(labels, seed)]
        for indices_tuple in tuples:
            if pml_returns_zero_for(indices_tuple):
                continue
            # indices take precedence: labels are not needed
            for given_labels in (labels, None):
                checked += parity(
                    ContrastiveLoss(), pml_losses.ContrastiveLoss(), embeddings, given_labels, indices_tuple
                )
    assert checked > 0


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            lambda: ContrastiveLoss(pos_margin=1, neg_margin=0, distance=distances.CosineSimilarity()),
            lambda: pml_losses.ContrastiveLoss(pos_margin=1, neg_margin=0, distance=pml_distances.CosineSimilarity()),
        ),
        (
            lambda: ContrastiveLoss(pos_margin=0.9, neg_margin=0.3, distance=distances.CosineSimilarity()),
            lambda: pml_losses.ContrastiveLoss(
                pos_margin=0.9, neg_margin=0.3, distance=pml_distances.CosineSimilarity()
            ),
        ),
        (
            lambda: ContrastiveLoss(pos_margin=1, neg_margin=0, distance=distances.DotProductSimilarity()),
            lambda: pml_losses.ContrastiveLoss(
                pos_margin=1, neg_margin=0, distance=pml_distances.DotProductSimilarity()
            ),
        ),
        (
            lambda: ContrastiveLoss(pos_margin=0.2, neg_margin=1.5, distance=distances.LpDistance(power=2)),
            lambda: pml_losses.ContrastiveLoss(
                pos_margin=0.2, neg_margin=1.5, distance=pml_distances.LpDistance(power=2)
            ),
        ),
        (
            lambda: ContrastiveLoss(
                pos_margin=2, neg_margin=6, distance=distances.LpDistance(normalize_embeddings=False)
            ),
            lambda: pml_losses.ContrastiveLoss(
                pos_margin=2, neg_margin=6, distance=pml_distances.LpDistance(normalize_embeddings=False)
            ),
        ),
        (
            lambda: ContrastiveLoss(reduction="mean"),
            lambda: pml_losses.ContrastiveLoss(reducer=pml_reducers.MeanReducer()),
        ),
        (
            lambda: ContrastiveLoss(reduction="sum"),
            lambda: pml_losses.ContrastiveLoss(reducer=pml_reducers.SumReducer()),
        ),
    ],
    ids=["cosine-1-0", "cosine-0.9-0.3", "dot-1-0", "lp-power2", "lp-unnormalized", "mean", "sum"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml_non_default_args(ours, theirs, dtype):
    compared = 0
    for seed, size in enumerate([2, 5, 16, 64, 128]):
        embeddings, labels = random_batch(seed, size, 16, dtype)
        compared += parity(ours(), theirs(), embeddings, labels)
        indices_tuple = random_pair_subset(labels, seed)
        if not pml_returns_zero_for(indices_tuple):
            parity(ours(), theirs(), embeddings, None, indices_tuple)
    assert compared >= 3


def test_triplets_count_each_pair_once():
    """(a, p, n) triplets repeat pairs; the masks collapse them (pytorch-metric-learning would count repeats)."""
    embeddings, labels = random_batch(3, 32, 8)
    triplets = pml_miners.TripletMarginMiner(margin=0.5, type_of_triplets="all")(embeddings, labels)
    anchors, positives, negatives = triplets
    positive_pairs = torch.unique(torch.stack([anchors, positives]), dim=1)
    negative_pairs = torch.unique(torch.stack([anchors, negatives]), dim=1)
    assert positive_pairs.shape[1] < len(anchors)  # there are repeats to collapse
    deduplicated = (positive_pairs[0], positive_pairs[1], negative_pairs[0], negative_pairs[1])
    ours, _ = value_and_grad(ContrastiveLoss(), embeddings, None, triplets)
    theirs, _ = value_and_grad(pml_losses.ContrastiveLoss(), embeddings, None, deduplicated)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


def test_single_positive_and_negative_pair_counts():
    """pytorch-metric-learning returns 0 when each index list has one entry; here the pair still counts."""
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]], dtype=torch.float64)
    indices_tuple = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    unit = F.normalize(embeddings, dim=1)
    expected = torch.dist(unit[0], unit[1]) + (1 - torch.dist(unit[0], unit[2]))
    torch.testing.assert_close(ContrastiveLoss()(embeddings, indices_tuple=indices_tuple), expected)


# --- multi-label semantics, computed by hand -------------------------------------------------------


def unit_vector(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


ANGLES = [0.0, 40.0, 90.0, 70.0]  # item 3 is 30 degrees from item 1: a negative pair inside the margin
HAND_EMBEDDINGS = [unit_vector(angle) for angle in ANGLES]
HAND_LABELS = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1]]


def hand_distance(i: int, j: int) -> float:
    return math.dist(HAND_EMBEDDINGS[i], HAND_EMBEDDINGS[j])


def hand_jaccard(i: int, j: int) -> float:
    a = {k for k, v in enumerate(HAND_LABELS[i]) if v}
    b = {k for k, v in enumerate(HAND_LABELS[j]) if v}
    return len(a & b) / len(a | b)


def hand_contrastive(positive_pairs, negative_pairs, weighted=False, pos_margin=0.0, neg_margin=1.0):
    """The default loss on explicit pair lists: AvgNonZero of each part, summed."""
    positive = [(max(hand_distance(i, j) - pos_margin, 0.0), hand_jaccard(i, j)) for i, j in positive_pairs]
    negative = [max(neg_margin - hand_distance(i, j), 0.0) for i, j in negative_pairs]
    positive = [(loss, weight if weighted else 1.0) for loss, weight in positive if loss > 0]
    negative = [loss for loss in negative if loss > 0]
    positive_term = sum(w * loss for loss, w in positive) / sum(w for _, w in positive) if positive else 0.0
    negative_term = sum(negative) / len(negative) if negative else 0.0
    return positive_term + negative_term


def hand_inputs(dtype=torch.float64):
    return torch.tensor(HAND_EMBEDDINGS, dtype=dtype), torch.tensor(HAND_LABELS)


# overlap: 0~1, 0~2, 1~2, 2~3 share a label; 0~3 and 1~3 share none
OVERLAP_POSITIVES = both_directions([(0, 1), (0, 2), (1, 2), (2, 3)])
OVERLAP_NEGATIVES = both_directions([(0, 3), (1, 3)])
# jaccard rule (pos_threshold 0.5): J(0,1) = 1/2, J(0,2) = 2/3 are positives; J(1,2) = J(2,3) = 1/3 ignored
JACCARD_POSITIVES = both_directions([(0, 1), (0, 2)])


WEIGHT_TOLERANCE = 1e-7  # Relation weights are float32 (1/3 is not exact)


def test_hand_computed_overlap():
    embeddings, labels = hand_inputs()
    expected = hand_contrastive(OVERLAP_POSITIVES, OVERLAP_NEGATIVES)
    assert hand_contrastive([], OVERLAP_NEGATIVES) > 0  # the 1~3 negative pair is inside the margin
    assert ContrastiveLoss()(embeddings, labels).item() == pytest.approx(expected, abs=1e-12)


def test_hand_computed_overlap_with_jaccard_weighting():
    embeddings, labels = hand_inputs()
    expected = hand_contrastive(OVERLAP_POSITIVES, OVERLAP_NEGATIVES, weighted=True)
    assert expected != pytest.approx(hand_contrastive(OVERLAP_POSITIVES, OVERLAP_NEGATIVES))
    loss = ContrastiveLoss(positive_weighting="jaccard")
    assert loss(embeddings, labels).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)


def test_hand_computed_jaccard_rule_with_and_without_weighting():
    embeddings, labels = hand_inputs()
    for weighted in (False, True):
        expected = hand_contrastive(JACCARD_POSITIVES, OVERLAP_NEGATIVES, weighted=weighted)
        loss = ContrastiveLoss(rule="jaccard", positive_weighting="jaccard" if weighted else "none")
        assert loss(embeddings, labels).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)
        relation = Relation.from_labels(labels, rule="jaccard")  # weights come from the relation
        loss = ContrastiveLoss(positive_weighting="jaccard" if weighted else "none")
        assert loss(embeddings, relation).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)


def test_hand_computed_min_shared_and_margins():
    embeddings, labels = hand_inputs()
    expected = hand_contrastive(both_directions([(0, 2)]), OVERLAP_NEGATIVES, pos_margin=0.5, neg_margin=1.3)
    loss = ContrastiveLoss(pos_margin=0.5, neg_margin=1.3, min_shared=2)
    assert loss(embeddings, labels).item() == pytest.approx(expected, abs=1e-12)


def test_reduction_none_lists_positive_then_negative_pairs_in_anchor_major_order():
    embeddings, labels = hand_inputs()
    values = ContrastiveLoss(reduction="none")(embeddings, labels)
    weighted = ContrastiveLoss(reduction="none", positive_weighting="jaccard")(embeddings, labels)
    expected = [hand_distance(i, j) for i, j in sorted(OVERLAP_POSITIVES)]
    expected += [max(1 - hand_distance(i, j), 0.0) for i, j in sorted(OVERLAP_NEGATIVES)]
    assert values.tolist() == pytest.approx(expected, abs=1e-12)
    weights = [hand_jaccard(i, j) for i, j in sorted(OVERLAP_POSITIVES)] + [1.0] * len(OVERLAP_NEGATIVES)
    assert weighted.tolist() == pytest.approx(
        [w * v for w, v in zip(weights, expected, strict=True)], abs=WEIGHT_TOLERANCE
    )


def test_indices_tuple_with_labels_gets_jaccard_weights_from_labels():
    embeddings, labels = hand_inputs()
    indices_tuple = (torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([1]), torch.tensor([3]))
    expected = hand_contrastive([(0, 1), (0, 2)], [(1, 3)], weighted=True)
    loss = ContrastiveLoss(positive_weighting="jaccard")
    assert loss(embeddings, labels, indices_tuple).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)
    with pytest.raises(ValueError, match="Jaccard"):
        loss(embeddings, None, indices_tuple)
    with pytest.raises(ValueError, match="Jaccard"):
        loss(embeddings, Relation.from_labels(labels))  # overlap relation: no weights, no labels


def test_invalid_arguments():
    with pytest.raises(ValueError, match="positive_weighting"):
        ContrastiveLoss(positive_weighting="cosine")
    with pytest.raises(ValueError, match="reduction"):
        ContrastiveLoss(reduction="max")
    with pytest.raises(ValueError, match="2-D"):
        ContrastiveLoss()(torch.randn(4), torch.arange(4))
    with pytest.raises(ValueError, match="labels"):
        ContrastiveLoss()(torch.randn(4, 2))


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_one_label_per_row_equals_single_label(weighting):
    for seed, size in enumerate([2, 5, 16, 64]):
        embeddings, labels = random_batch(seed, size, 8, torch.float32)
        one_hot = F.one_hot(labels, num_classes=int(labels.max()) + 3)  # with unused label columns
        loss = ContrastiveLoss(positive_weighting=weighting)
        single, single_grad = value_and_grad(loss, embeddings, labels)
        multi, multi_grad = value_and_grad(loss, embeddings, one_hot)
        relation, relation_grad = value_and_grad(loss, embeddings, Relation.from_labels(labels, rule="jaccard"))
        reference, _ = value_and_grad(ContrastiveLoss(), embeddings, labels)
        torch.testing.assert_close(multi, single, atol=0, rtol=0)
        torch.testing.assert_close(multi_grad, single_grad, atol=0, rtol=0)
        torch.testing.assert_close(relation, single, atol=0, rtol=0)
        torch.testing.assert_close(relation_grad, single_grad, atol=0, rtol=0)
        torch.testing.assert_close(single, reference, atol=1e-6, rtol=1e-6)  # Jaccard of single labels is 1


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(2, 24),
    num_labels=st.integers(1, 5),
    weighting=st.sampled_from(["none", "jaccard"]),
    rule=st.sampled_from(["overlap", "jaccard", "exact"]),
)
def test_permutation_invariance(seed, size, num_labels, weighting, rule):
    # float64: in float32 a pair within rounding of the margin could count in one order and not in the other,
    # moving the mean over non-zero losses by far more than rounding
    embeddings, labels, permutation = permutation_batch(seed, size, 4, num_labels=num_labels)
    loss = ContrastiveLoss(positive_weighting=weighting, rule=rule)
    torch.testing.assert_close(
        loss(embeddings[permutation], labels[permutation]), loss(embeddings, labels), atol=1e-10, rtol=1e-10
    )


# --- degenerate batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_no_positive_pairs(weighting):
    """Only negatives, all farther than the margin: loss 0, gradient 0; no pair at all: also 0."""
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    loss = ContrastiveLoss(positive_weighting=weighting)
    value, grad = assert_finite_with_gradient(loss, embeddings, torch.tensor([0, 1, 2]))
    assert value.item() == 0 and value.dtype == torch.float64
    assert (grad == 0).all()
    value, grad = assert_finite_with_gradient(loss, embeddings[:1], torch.tensor([0]))
    assert value.item() == 0 and (grad == 0).all()
    value, _ = assert_finite_with_gradient(loss, embeddings, torch.zeros(3, 4, dtype=torch.long))
    assert value.item() == 0  # items without labels are only negatives


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_degenerate_batches_are_finite(weighting):
    generator = torch.Generator().manual_seed(0)
    random = torch.randn(8, 5, generator=generator)
    multi_hot = (torch.rand(8, 3, generator=generator) < 0.5).long()
    multi_hot[:3] = 0  # items with no labels
    cases = [
        (random, torch.zeros(8, dtype=torch.long)),  # all the same label
        (random, torch.ones(8, 3, dtype=torch.long)),  # all the same label set
        (random, multi_hot),
        (random[:1].repeat(8, 1), torch.arange(8) % 3),  # duplicated embeddings
        (torch.zeros(8, 5), torch.arange(8) % 3),  # zero embeddings
        (torch.zeros(40, 5), torch.arange(40) % 3),  # zero embeddings, cdist's matrix-product path
        (random[:1].repeat(40, 1), torch.arange(40) % 3),
    ]
    for distance in (distances.LpDistance(), distances.CosineSimilarity()):
        for embeddings, labels in cases:
            assert_finite_with_gradient(
                ContrastiveLoss(distance=distance, positive_weighting=weighting), embeddings, labels
            )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("distance", [distances.LpDistance(), distances.CosineSimilarity()], ids=["lp", "cosine"])
def test_half_precision_embeddings(dtype, distance):
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(64) % 6
    for embeddings in (torch.randn(64, 32, generator=generator), torch.zeros(64, 32)):
        embeddings = embeddings.to(dtype)
        value, grad = assert_finite_with_gradient(ContrastiveLoss(distance=distance), embeddings, labels)
        assert value.dtype == torch.float32 and grad.dtype == dtype
        reference = ContrastiveLoss(distance=distance)(embeddings.float(), labels)
        torch.testing.assert_close(value, reference)


def test_float64_stays_float64():
    embeddings, labels = random_batch(0, 16, 4)
    assert ContrastiveLoss()(embeddings, labels).dtype == torch.float64
    assert ContrastiveLoss(positive_weighting="jaccard")(embeddings, labels).dtype == torch.float64
    assert ContrastiveLoss(reduction="none")(embeddings, labels).dtype == torch.float64


def test_batch_1024_forward_backward():
    embeddings = torch.randn(1024, 384, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = ContrastiveLoss()(embeddings, torch.arange(1024) // 8)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_docstring_example():
    assert doctest.testmod(contrastive, raise_on_error=False).failed == 0
