"""CircleLoss: parity with pytorch-metric-learning, multi-label semantics, degenerate batches."""

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
from labelspace.losses.metric import circle
from labelspace.losses.metric.circle import CircleLoss, circle_rows
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

pml_losses, pml_miners = import_pml("losses", "miners")

# float64 losses to 1e-7, PML's loss not cast, so its dtype must match ours; float32 losses to 1e-5 of PML's
# float64 loss on the same values (a smooth loss: no kink for float32 rounding to cross).
# Circle gradients are large (gamma = 80): compare them relative to their scale.
assert_parity = partial(metric_testing.assert_parity, float64_tol=1e-7, cast_theirs=False, scale_grads=True)


# --- parity with pytorch-metric-learning --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_labels(size, dim, dtype):
    for seed in SEEDS:
        embeddings, labels = random_batch(seed, size, dim, dtype)
        assert_parity(CircleLoss(), pml_losses.CircleLoss(), embeddings, labels)


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
                assert_parity(CircleLoss(), pml_losses.CircleLoss(), embeddings, other_labels, indices_tuple)
                compared += 1
    assert compared > 0


@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.25, 128.0), (0.1, 10.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml_non_default_args(m, gamma, dtype):
    for seed in SEEDS:
        for size in (5, 64):
            embeddings, labels = random_batch(seed, size, 16, dtype)
            assert_parity(CircleLoss(m=m, gamma=gamma), pml_losses.CircleLoss(m=m, gamma=gamma), embeddings, labels)


def test_large_exponents_do_not_overflow():
    """Positives at S = -1 give exponents of about gamma * 3.84 = 307 (exp overflows float32): shifts keep it finite."""
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss, grad = value_and_grad(CircleLoss(), embeddings, labels)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert_parity(CircleLoss(), pml_losses.CircleLoss(), embeddings, labels)
    # One side far below the other: a shared shift would underflow the smaller side to 0.
    embeddings = torch.tensor([[1.0, 0.0], [-0.2, 0.98], [0.05, 0.9987], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 2])
    assert_parity(CircleLoss(gamma=256.0), pml_losses.CircleLoss(gamma=256), embeddings, labels)


def test_single_positive_and_negative_pair_counts():
    """PML returns 0 when given one positive and one negative pair; here that pair still counts."""
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
    indices_tuple = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    loss = CircleLoss()(embeddings, indices_tuple=indices_tuple)
    # anchor 0: positive 1 (S = 0.6), negative 2 (S = 0); the other anchors have 0 loss and are not averaged.
    z = -80 * (1.4 - 0.6) * (0.6 - 0.6) + 80 * 0.4 * (0 - 0.4)
    assert loss.item() == pytest.approx(math.log1p(math.exp(z)), rel=1e-12)
    assert pml_losses.CircleLoss()(embeddings, indices_tuple=indices_tuple).item() == 0


def test_duplicate_pairs_count_once_like_pml():
    embeddings, labels = random_batch(1, 16, 8)
    a1, p, a2, n = Relation.from_labels(labels).pair_indices()
    doubled = (torch.cat([a1, a1]), torch.cat([p, p]), torch.cat([a2, a2]), torch.cat([n, n]))
    single = CircleLoss()(embeddings, labels)
    torch.testing.assert_close(CircleLoss()(embeddings, indices_tuple=doubled), single)
    assert_parity(CircleLoss(), pml_losses.CircleLoss(), embeddings, None, doubled)


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


def logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def circle_anchor_losses(points, positives, negatives, m=0.4, gamma=80.0, similarity=None):
    """Per-anchor circle losses in plain Python; similarity(i, j) defaults to the cosine of points i and j."""
    similarity = similarity or (lambda i, j: cosine(points[i], points[j]))
    losses = []
    for i in range(len(points)):
        if not positives[i] or not negatives[i]:
            losses.append(0.0)
            continue
        pos = [similarity(i, j) for j in positives[i]]
        neg = [similarity(i, j) for j in negatives[i]]
        z = logsumexp([-gamma * max(1 + m - s, 0) * (s - (1 - m)) for s in pos])
        z += logsumexp([gamma * max(s + m, 0) * (s - m) for s in neg])
        losses.append(z if z > 20 else math.log1p(math.exp(z)))  # softplus, threshold 20 as torch
    return losses


def circle_by_hand(points, positives, negatives, m=0.4, gamma=80.0):
    above_zero = [loss for loss in circle_anchor_losses(points, positives, negatives, m, gamma) if loss > 0]
    return sum(above_zero) / len(above_zero) if above_zero else 0.0


def test_hand_computed_overlap():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    loss = CircleLoss()(embeddings, multi_hot(LABEL_SETS))
    assert loss.item() == pytest.approx(circle_by_hand(POINTS, OVERLAP_POSITIVES, OVERLAP_NEGATIVES), rel=1e-10)


def test_hand_computed_jaccard_relation_and_rule():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    expected = circle_by_hand(POINTS, JACCARD_POSITIVES, JACCARD_NEGATIVES)
    assert expected != circle_by_hand(POINTS, OVERLAP_POSITIVES, OVERLAP_NEGATIVES)
    relation = Relation.from_labels(multi_hot(LABEL_SETS), rule="jaccard")
    assert CircleLoss()(embeddings, relation).item() == pytest.approx(expected, rel=1e-10)
    by_rule = CircleLoss(rule="jaccard")(embeddings, multi_hot(LABEL_SETS))
    assert by_rule.item() == pytest.approx(expected, rel=1e-10)


def test_hand_computed_non_default_args_and_reduction_none():
    embeddings = torch.tensor(POINTS, dtype=torch.float64)
    loss = CircleLoss(m=0.25, gamma=16.0, reduction="none")(embeddings, multi_hot(LABEL_SETS))
    expected = circle_anchor_losses(POINTS, OVERLAP_POSITIVES, OVERLAP_NEGATIVES, m=0.25, gamma=16.0)
    assert expected[4] == 0  # item 4 (no label) has no positive
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_one_label_per_row_equals_single_label():
    embeddings, labels = random_batch(4, 32, 8)
    one_hot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1)
    torch.testing.assert_close(CircleLoss()(embeddings, one_hot), CircleLoss()(embeddings, labels), rtol=0, atol=0)


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
    loss = CircleLoss()
    torch.testing.assert_close(
        loss(embeddings[permutation], labels[permutation]), loss(embeddings, labels), atol=1e-5, rtol=1e-5
    )


# --- degenerate batches -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [torch.arange(8), torch.zeros(8, 3, dtype=torch.long), torch.zeros(8, dtype=torch.long)],
    ids=["all-different", "no-labels", "all-same"],
)
def test_no_anchor_with_both_sides_is_zero(labels):
    embeddings, _ = random_batch(5, 8, 4)
    loss, grad = value_and_grad(CircleLoss(), embeddings, labels)
    assert loss.item() == 0 and loss.dtype == torch.float64
    assert (grad == 0).all()
    if labels.dim() == 1:
        assert_parity(CircleLoss(), pml_losses.CircleLoss(), embeddings, labels)


def test_empty_relation_is_zero_and_differentiable():
    embeddings, _ = random_batch(5, 6, 4)
    empty = Relation(torch.zeros(6, 6, dtype=torch.bool), torch.zeros(6, 6, dtype=torch.bool))
    loss, grad = value_and_grad(CircleLoss(), embeddings, empty)
    assert loss.item() == 0 and (grad == 0).all()
    loss, _ = value_and_grad(CircleLoss(), embeddings[:1], torch.tensor([0]))
    assert loss.item() == 0


def test_degenerate_batches_are_finite():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=generator)
    cases = [
        (base, torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]])),  # some unlabeled
        (torch.cat([base[:3], base[:3]]), torch.tensor([0, 1, 2, 0, 1, 2])),  # duplicated embeddings
        (torch.zeros(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])),  # zero embeddings
        (base * 1e-30, torch.tensor([0, 0, 1, 1, 2, 2])),  # tiny embeddings
        (torch.cat([base[:1]] * 3 + [-base[:1]] * 3), torch.tensor([0, 1, 0, 1, 0, 1])),  # antipodal positives
    ]
    for embeddings, labels in cases:
        for dtype in (torch.float32, torch.float64):
            loss, grad = value_and_grad(CircleLoss(), embeddings.to(dtype), labels)
            assert_finite(loss, grad)
            assert loss.dtype == dtype
        if labels.dim() == 1:
            assert_parity(CircleLoss(), pml_losses.CircleLoss(), embeddings.double(), labels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_embeddings(dtype):
    embeddings, labels = random_batch(2, 32, 16, torch.float32)
    embeddings = embeddings.to(dtype)
    loss, grad = value_and_grad(CircleLoss(), embeddings, labels)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert_finite(loss, grad.float())
    torch.testing.assert_close(loss, CircleLoss()(embeddings.float(), labels))
    for degenerate in (torch.zeros(4, 8, dtype=dtype), torch.ones(4, 8, dtype=dtype)):
        loss, grad = value_and_grad(CircleLoss(), degenerate, torch.tensor([0, 0, 1, 2]))
        assert_finite(loss, grad.float())


def test_float64_stays_float64():
    embeddings, labels = random_batch(0, 8, 4)
    for relation_labels in (labels, torch.arange(8), Relation.from_labels(torch.zeros(8, 2, dtype=torch.long))):
        loss, grad = value_and_grad(CircleLoss(), embeddings, relation_labels)
        assert loss.dtype == torch.float64 and grad.dtype == torch.float64


def circle_rows_autograd(mat, positive, negative, m=0.4, gamma=80.0):
    """The paper's per-anchor loss in float64 torch, one anchor at a time, differentiated by autograd; the
    weights [1 + m - S_p]_+ and [S_n + m]_+ are constants (detached), as in the paper's gradient and in PML."""
    losses = []
    for row, pos_mask, neg_mask in zip(mat, positive, negative, strict=True):
        if not (pos_mask.any() and neg_mask.any()):
            losses.append(row.sum() * 0)
            continue
        pos, neg = row[pos_mask], row[neg_mask]
        pos_logits = -gamma * (1 + m - pos).detach().clamp(min=0) * (pos - (1 - m))
        neg_logits = gamma * (neg + m).detach().clamp(min=0) * (neg - m)
        losses.append(torch.nn.functional.softplus(torch.logsumexp(pos_logits, 0) + torch.logsumexp(neg_logits, 0)))
    return torch.stack(losses)


@pytest.mark.parametrize(("m", "gamma"), [(0.4, 80.0), (0.25, 16.0)])
def test_rows_function_against_the_formula(m, gamma):
    # a similarity matrix of no embeddings (any values in [-1, 1]), masks with rows lacking either side
    generator = torch.Generator().manual_seed(3)
    mat = (torch.rand(10, 12, generator=generator, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    side = torch.randint(0, 3, (10, 12), generator=generator)
    positive, negative = side == 1, side == 2
    positive[0], negative[1] = False, False
    rows = circle_rows(mat, positive, negative, m=m, gamma=gamma)
    similarities = mat.detach().tolist()
    expected = circle_anchor_losses(
        similarities,
        {i: torch.where(positive[i])[0].tolist() for i in range(10)},
        {i: torch.where(negative[i])[0].tolist() for i in range(10)},
        m,
        gamma,
        similarity=lambda i, j: similarities[i][j],
    )
    assert expected[0] == expected[1] == 0 and min(expected[2:]) > 0
    torch.testing.assert_close(rows.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    weights = torch.rand(10, generator=generator, dtype=torch.float64)
    (grad,) = torch.autograd.grad(rows @ weights, mat)
    (expected_grad,) = torch.autograd.grad(circle_rows_autograd(mat, positive, negative, m, gamma) @ weights, mat)
    assert (grad[:2] == 0).all() and (grad[2:][~(positive | negative)[2:]] == 0).all()
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_invalid_arguments():
    embeddings, labels = random_batch(0, 4, 3)
    with pytest.raises(ValueError, match="both positive and negative"):
        CircleLoss()(
            embeddings, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1]))
        )
    with pytest.raises(ValueError, match="CosineSimilarity"):
        CircleLoss(distance=distances.LpDistance())
    with pytest.raises(ValueError, match="labels"):
        CircleLoss()(embeddings)
    with pytest.raises(ValueError, match="positive"):
        CircleLoss(gamma=0)


def test_blocks_match_one_block(monkeypatch):
    """The CPU row blocks give the same result as one block over the whole matrix."""
    embeddings, labels = random_batch(7, 96, 8, torch.float32)
    loss, grad = value_and_grad(CircleLoss(), embeddings, labels)
    monkeypatch.setattr(losses_base, "BLOCK_ELEMENTS", 96 * 7)  # 7 rows per block, uneven last block
    blocked_loss, blocked_grad = value_and_grad(CircleLoss(), embeddings, labels)
    torch.testing.assert_close(blocked_loss, loss, rtol=0, atol=0)
    torch.testing.assert_close(blocked_grad, grad, rtol=0, atol=0)


def test_docstring_examples():
    results = doctest.testmod(circle)
    assert results.attempted > 0 and results.failed == 0
