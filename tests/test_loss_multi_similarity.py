"""MultiSimilarityLoss: parity with pytorch-metric-learning, multi-label semantics, degenerate batches."""

from __future__ import annotations

import doctest
import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labelspace.losses.base as losses_base
import metric_testing
from labelspace import distances
from labelspace.losses.metric import multi_similarity
from labelspace.losses.metric.multi_similarity import MultiSimilarityLoss, multi_similarity_rows
from labelspace.relations import Relation
from metric_testing import (
    DIMS,
    SEEDS,
    SIZES,
    assert_finite,
    cosine,
    import_pml,
    multi_hot,
    permutation_batch,
    pml_returns_zero_for,
    random_batch,
    value_and_grad,
)

pml_losses, pml_distances, pml_miners = import_pml("losses", "distances", "miners")

# float64 losses to 1e-7, PML's loss not cast, so its dtype must match ours; float32 losses to 1e-5 of PML's
# float64 loss on the same values (a smooth loss: no kink for float32 rounding to cross).
assert_parity = partial(metric_testing.assert_parity, float64_tol=1e-7, cast_theirs=False)


# --- parity with pytorch-metric-learning --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_labels(size, dim, dtype):
    for seed in SEEDS:
        embeddings, labels = random_batch(seed, size, dim, dtype)
        assert_parity(MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss(), embeddings, labels)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_indices_tuple(size, dtype):
    """The same mined pairs / triplets give the same loss; indices_tuple takes precedence over labels."""
    miners = [
        pml_miners.MultiSimilarityMiner(),
        pml_miners.PairMarginMiner(),
        pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="all"),
    ]
    compared = 0
    for seed in SEEDS:
        for dim in DIMS:
            embeddings, labels = random_batch(seed, size, dim, dtype)
            for miner in miners:
                indices_tuple = miner(embeddings, labels)
                if pml_returns_zero_for(indices_tuple):
                    continue  # see test_single_positive_and_negative_pair_counts
                other_labels = torch.zeros_like(labels)  # ignored: the tuple wins
                assert_parity(
                    MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss(), embeddings, other_labels, indices_tuple
                )
                compared += 1
    assert compared > 0


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            MultiSimilarityLoss(alpha=1.0, beta=10.0, base=0.2),
            pml_losses.MultiSimilarityLoss(alpha=1, beta=10, base=0.2),
        ),
        (
            MultiSimilarityLoss(distance=distances.LpDistance()),
            pml_losses.MultiSimilarityLoss(distance=pml_distances.LpDistance()),
        ),
        (
            MultiSimilarityLoss(distance=distances.DotProductSimilarity(normalize_embeddings=False)),
            pml_losses.MultiSimilarityLoss(distance=pml_distances.DotProductSimilarity(normalize_embeddings=False)),
        ),
    ],
    ids=["alpha-beta-base", "lp-distance", "raw-dot-product"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml_non_default_args(ours, theirs, dtype):
    for seed in SEEDS:
        for size in (5, 64):
            embeddings, labels = random_batch(seed, size, 16, dtype)
            assert_parity(ours, theirs, embeddings, labels)


def test_large_exponents_do_not_overflow():
    """Unnormalised dot products make beta * (S - base) huge: the per-anchor shifts keep it finite, as PML."""
    embeddings, labels = random_batch(0, 32, 8, torch.float32)
    embeddings = embeddings * 10
    distance = distances.DotProductSimilarity(normalize_embeddings=False)
    ours = MultiSimilarityLoss(distance=distance)
    theirs = pml_losses.MultiSimilarityLoss(distance=pml_distances.DotProductSimilarity(normalize_embeddings=False))
    loss, grad = value_and_grad(ours, embeddings, labels)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert_parity(ours, theirs, embeddings, labels)


def test_gradcheck():
    embeddings, labels = random_batch(3, 7, 4)
    embeddings.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: MultiSimilarityLoss()(x, labels), (embeddings,))
    relation = Relation.from_labels(labels)
    mat = torch.randn(7, 7, dtype=torch.float64, requires_grad=True)

    def rows(m):
        return multi_similarity_rows(m, relation.positive, relation.negative, inverted=False)

    assert torch.autograd.gradcheck(rows, (mat,))


def test_single_positive_and_negative_pair_counts():
    """PML returns 0 when given one positive and one negative pair; here that pair still counts."""
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    indices_tuple = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    loss = MultiSimilarityLoss()(embeddings, indices_tuple=indices_tuple)
    # anchor 0: positive 1 (S = 0.6), negative 2 (S = 0); anchors 1 and 2 have no pair but count in the mean.
    expected = (math.log(1 + math.exp(-2 * (0.6 - 0.5))) / 2 + math.log(1 + math.exp(50 * (0 - 0.5))) / 50) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert pml_losses.MultiSimilarityLoss()(embeddings, indices_tuple=indices_tuple).item() == 0


def test_duplicate_pairs_count_once_like_pml():
    embeddings, labels = random_batch(1, 16, 8)
    a1, p, a2, n = Relation.from_labels(labels).pair_indices()
    doubled = (torch.cat([a1, a1]), torch.cat([p, p]), torch.cat([a2, a2]), torch.cat([n, n]))
    single = MultiSimilarityLoss()(embeddings, labels)
    torch.testing.assert_close(MultiSimilarityLoss()(embeddings, indices_tuple=doubled), single)
    assert_parity(MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss(), embeddings, None, doubled)


# --- multi-label semantics, by hand -------------------------------------------------------------

# Five items on the unit circle and their label sets.
POINTS = [(1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (-0.6, 0.8), (0.8, -0.6)]
LABEL_SETS = [{0, 1}, {0}, {1, 2}, {2}, set()]
# rule "overlap": positive when sharing a label, negative when sharing none (item 4 has no label).
OVERLAP_POSITIVES = {0: [1, 2], 1: [0], 2: [0, 3], 3: [2], 4: []}
OVERLAP_NEGATIVES = {0: [3, 4], 1: [2, 3, 4], 2: [1, 4], 3: [0, 1, 4], 4: [0, 1, 2, 3]}
# rule "jaccard" (positive when J >= 0.5, negative when J = 0): J(0, 2) = 1/3 is ignored.
JACCARD_POSITIVES = {0: [1], 1: [0], 2: [3], 3: [2], 4: []}
JACCARD_NEGATIVES = OVERLAP_NEGATIVES


def ms_by_hand(points, positives, negatives, alpha=2.0, beta=50.0, base=0.5):
    total = 0.0
    for i, anchor in enumerate(points):
        pos = sum(math.exp(-alpha * (cosine(anchor, points[j]) - base)) for j in positives[i])
        neg = sum(math.exp(beta * (cosine(anchor, points[j]) - base)) for j in negatives[i])
        total += math.log(1 + pos) / alpha + math.log(1 + neg) / beta
    return total / len(points)


def test_hand_computed_overlap():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    loss = MultiSimilarityLoss()(embeddings, multi_hot(LABEL_SETS))
    assert loss.item() == pytest.approx(ms_by_hand(POINTS, OVERLAP_POSITIVES, OVERLAP_NEGATIVES), rel=1e-10)


def test_hand_computed_jaccard_relation_and_rule():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    expected = ms_by_hand(POINTS, JACCARD_POSITIVES, JACCARD_NEGATIVES)
    relation = Relation.from_labels(multi_hot(LABEL_SETS), rule="jaccard")
    assert MultiSimilarityLoss()(embeddings, relation).item() == pytest.approx(expected, rel=1e-10)
    by_rule = MultiSimilarityLoss(rule="jaccard")(embeddings, multi_hot(LABEL_SETS))
    assert by_rule.item() == pytest.approx(expected, rel=1e-10)


def test_hand_computed_non_default_args_and_reduction_none():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    loss = MultiSimilarityLoss(alpha=1.0, beta=5.0, base=0.3, reduction="none")(embeddings, multi_hot(LABEL_SETS))
    assert loss.shape == (5,)
    expected = 5 * ms_by_hand(POINTS, OVERLAP_POSITIVES, OVERLAP_NEGATIVES, alpha=1.0, beta=5.0, base=0.3)
    assert loss.sum().item() == pytest.approx(expected, rel=1e-10)
    for i in range(5):  # each anchor's own term
        only_i = {j: (OVERLAP_POSITIVES[j] if j == i else []) for j in range(5)}
        only_i_neg = {j: (OVERLAP_NEGATIVES[j] if j == i else []) for j in range(5)}
        assert loss[i].item() == pytest.approx(5 * ms_by_hand(POINTS, only_i, only_i_neg, 1.0, 5.0, 0.3), rel=1e-10)


def test_one_label_per_row_equals_single_label():
    embeddings, labels = random_batch(4, 32, 8)
    one_hot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1)
    torch.testing.assert_close(
        MultiSimilarityLoss()(embeddings, one_hot), MultiSimilarityLoss()(embeddings, labels), rtol=0, atol=0
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(2, 24),
    num_labels=st.integers(1, 6),
    multilabel=st.booleans(),
)
def test_permutation_invariance(seed, size, num_labels, multilabel):
    embeddings, labels, permutation = permutation_batch(
        seed, size, 5, multi_label=multilabel, num_labels=num_labels, num_classes=num_labels
    )
    loss = MultiSimilarityLoss()
    torch.testing.assert_close(
        loss(embeddings[permutation], labels[permutation]), loss(embeddings, labels), atol=1e-5, rtol=1e-5
    )


# --- degenerate batches -------------------------------------------------------------------------


def test_no_positive_pairs():
    """Only the negative term remains (as in PML): finite, differentiable, pushing negatives apart."""
    embeddings, _ = random_batch(5, 8, 4)
    labels = torch.arange(8)
    loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings, labels)
    assert_finite(loss, grad)
    assert_parity(MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss(), embeddings, labels)


def test_empty_relation_is_zero_and_differentiable():
    embeddings, _ = random_batch(5, 6, 4)
    empty = Relation(torch.zeros(6, 6, dtype=torch.bool), torch.zeros(6, 6, dtype=torch.bool))
    loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings, empty)
    assert loss.item() == 0 and loss.dtype == torch.float64
    assert (grad == 0).all()
    loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings[:1], torch.tensor([0]))
    assert loss.item() == 0


def test_degenerate_batches_are_finite():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=generator)
    cases = [
        (base, torch.zeros(6, dtype=torch.long)),  # everything positive, nothing negative
        (base, torch.zeros(6, 3, dtype=torch.long)),  # no labels at all: all negatives
        (base, torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]])),  # some unlabeled
        (torch.cat([base[:3], base[:3]]), torch.tensor([0, 1, 2, 0, 1, 2])),  # duplicated embeddings
        (torch.zeros(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])),  # zero embeddings
        (base * 1e-30, torch.tensor([0, 0, 1, 1, 2, 2])),  # tiny embeddings
    ]
    for embeddings, labels in cases:
        for dtype in (torch.float32, torch.float64):
            loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings.to(dtype), labels)
            assert_finite(loss, grad)
            assert loss.dtype == dtype
        if labels.dim() == 1:
            assert_parity(MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss(), embeddings.double(), labels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_embeddings(dtype):
    embeddings, labels = random_batch(2, 32, 16, torch.float32)
    embeddings = embeddings.to(dtype)
    loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings, labels)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_finite(loss, grad.float())
    reference = MultiSimilarityLoss()(embeddings.float(), labels)
    torch.testing.assert_close(loss, reference)
    for degenerate in (torch.zeros(4, 8, dtype=dtype), torch.ones(4, 8, dtype=dtype)):
        loss, grad = value_and_grad(MultiSimilarityLoss(), degenerate, torch.tensor([0, 0, 1, 2]))
        assert_finite(loss, grad.float())


def test_float64_stays_float64():
    embeddings, labels = random_batch(0, 8, 4)
    for relation_labels in (labels, torch.arange(8), Relation.from_labels(torch.zeros(8, 2, dtype=torch.long))):
        loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings, relation_labels)
        assert loss.dtype == torch.float64 and grad.dtype == torch.float64


def test_invalid_arguments():
    embeddings, labels = random_batch(0, 4, 3)
    with pytest.raises(ValueError, match="both positive and negative"):
        MultiSimilarityLoss()(
            embeddings, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
        )
    with pytest.raises(ValueError, match="labels"):
        MultiSimilarityLoss()(embeddings)
    with pytest.raises(ValueError, match="positive"):
        MultiSimilarityLoss(alpha=0)
    with pytest.raises(ValueError):
        MultiSimilarityLoss()(embeddings[0], labels)
    with pytest.raises(ValueError, match="reduction"):
        MultiSimilarityLoss(reduction="max")


def test_blocks_match_one_block(monkeypatch):
    """The CPU row blocks give the same result as one block over the whole matrix."""
    embeddings, labels = random_batch(7, 96, 8, torch.float32)
    loss, grad = value_and_grad(MultiSimilarityLoss(), embeddings, labels)
    monkeypatch.setattr(losses_base, "BLOCK_ELEMENTS", 96 * 7)  # 7 rows per block, uneven last block
    blocked_loss, blocked_grad = value_and_grad(MultiSimilarityLoss(), embeddings, labels)
    torch.testing.assert_close(blocked_loss, loss, rtol=0, atol=0)
    torch.testing.assert_close(blocked_grad, grad, rtol=0, atol=0)


def test_docstring_examples():
    results = doctest.testmod(multi_similarity)
    assert results.attempted > 0 and results.failed == 0
