"""FastAPLoss: parity with pytorch-metric-learning, multi-label histograms in plain Python, invariances, edge cases."""

from __future__ import annotations

import doctest
import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labelspace.losses.metric.fastap as fastap_module
from labelspace.distances import CosineSimilarity, LpDistance
from labelspace.losses.metric.fastap import FastAPLoss
from labelspace.relations import Relation
from metric_testing import (
    DIMS,
    GRID,
    KINK_TOL,
    SIZES,
    assert_parity,
    duplicated_and_zero_batch,
    entries_near,
    import_pml,
    permutation_batch,
    random_batch,
    value_and_grad,
)

pml_distances, pml_losses, pml_miners, lmu = import_pml("distances", "losses", "miners", "utils.loss_and_miner_utils")

# values to 1e-5, gradients to atol 1e-4 and rtol 1e-5; PML's value is cast to our dtype
assert_same = partial(assert_parity, check_dtype=False, grad_rtol=1e-5)


def miner_tuples(embeddings, labels):
    a1, p, a2, n = lmu.get_all_pairs_indices(labels)
    return [
        pml_miners.BatchHardMiner()(embeddings, labels),
        pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="semihard")(embeddings, labels),
        (a1[::3], p[::3], a2[::5], n[::5]),
    ]


@pytest.mark.parametrize(("seed", "size", "dim"), GRID)
def test_default_parity_float64(seed, size, dim):
    embeddings, labels = random_batch(seed, size, dim)
    assert_same(FastAPLoss(), pml_losses.FastAPLoss(), embeddings, labels)
    # a miner's tuple weights the anchors by how often they occur in it, as in PML
    for indices_tuple in miner_tuples(embeddings, labels):
        assert_same(FastAPLoss(), pml_losses.FastAPLoss(), embeddings, labels, indices_tuple)


def rows_near_bin_edges(embeddings64, num_bins=10):
    """Rows of the items in a pair whose squared distance lies within 4 * KINK_TOL of a bin edge k * 4 / num_bins.

    FastAP's histograms are continuous in the distances, but the gradient of a distance's pulse switches
    bins at an edge, so float32 rounding (<= 1e-6 on a squared distance in [0, 4]) can move the gradient
    of a pair's two rows by a finite step (1.25e-4 was seen on an AVX2 CPU), whichever side is right.
    """
    unit = torch.nn.functional.normalize(embeddings64, dim=1)
    position = torch.cdist(unit, unit).pow(2) * (num_bins / 4)  # in bins
    near = entries_near(position - position.round(), (0.0,), tol=KINK_TOL * num_bins)
    return near.any(dim=0) | near.any(dim=1)


@pytest.mark.parametrize(("seed", "size", "dim"), [(s, b, d) for s in range(3) for b in SIZES for d in DIMS])
def test_default_parity_float32(seed, size, dim):
    # float32 against PML in float64 on the same values: the value to 1e-5 (100 float32 eps), the gradient
    # to 1e-5 (at most ~1e-6 is seen) on the rows whose pairs all keep clear of the bin edges
    embeddings, labels = random_batch(seed, size, dim, torch.float32, via_float64=True)
    value, grad = value_and_grad(FastAPLoss(), embeddings, labels)
    exact_value, exact_grad = value_and_grad(pml_losses.FastAPLoss(), embeddings.double(), labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value.double(), exact_value, atol=1e-5, rtol=1e-5)
    clear = ~rows_near_bin_edges(embeddings.double())
    assert clear.sum() >= 0.75 * size
    torch.testing.assert_close(grad.double()[clear], exact_grad[clear], atol=1e-5, rtol=1e-4)


def test_rows_near_bin_edges():
    # unit vectors at angle a are 2 - 2 cos(a) apart, squared: the pair (0, 1) at 90 degrees is at 2, bin edge 5 of
    # 10 (1 of 2); row 2 is at 60 and 30 degrees from them: squared distances 1 and 0.27, 2.5 and 0.67 bins
    angles = torch.tensor([0.0, 90.0, 60.0], dtype=torch.float64).deg2rad()
    points = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert rows_near_bin_edges(points).tolist() == [True, True, False]
    assert rows_near_bin_edges(points * 3, num_bins=2).tolist() == [True, True, False]
    assert not rows_near_bin_edges(points[[0, 2]]).any()
    assert not rows_near_bin_edges(points, num_bins=3).any()  # edges at 4/3, 8/3


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"num_bins": 1}, {"num_bins": 1}),
        ({"num_bins": 3}, {"num_bins": 3}),
        ({"num_bins": 25}, {"num_bins": 25}),
        ({"distance": LpDistance(power=1)}, {"distance": pml_distances.LpDistance(power=1)}),
        (
            {"num_bins": 7, "distance": LpDistance(power=3)},
            {"num_bins": 7, "distance": pml_distances.LpDistance(power=3)},
        ),
        ({"distance": LpDistance()}, {"distance": pml_distances.LpDistance()}),
    ],
    ids=["1bin", "3bins", "25bins", "power1", "power3", "lp_default"],
)
@pytest.mark.parametrize(("seed", "size", "dim"), [(0, 5, 3), (1, 16, 32), (2, 64, 3), (3, 128, 32)])
def test_non_default_parity(ours, theirs, seed, size, dim):
    embeddings, labels = random_batch(seed, size, dim)
    assert_same(FastAPLoss(**ours), pml_losses.FastAPLoss(**theirs), embeddings, labels)
    indices_tuple = pml_miners.BatchHardMiner()(embeddings, labels)
    assert_same(FastAPLoss(**ours), pml_losses.FastAPLoss(**theirs), embeddings, labels, indices_tuple)


def test_rejects_distances_pml_rejects():
    for distance in (CosineSimilarity(), LpDistance(normalize_embeddings=False), LpDistance(p=1)):
        with pytest.raises(ValueError, match="LpDistance"):
            FastAPLoss(distance=distance)
    with pytest.raises(ValueError, match="num_bins"):
        FastAPLoss(num_bins=0)


# ---------------------------------------------------------------- multi-label: the histogram formula in plain Python


def plain_fastap(points, is_relevant, is_irrelevant, num_bins=10, power=2):
    """FastAP written out: soft histograms of (normalised) distances, AP estimate per anchor, mean."""
    unit = [[x / math.hypot(*point) for x in point] for point in points]
    delta = 2**power / num_bins
    centres = [k * delta for k in range(num_bins + 1)]
    losses = []
    for i in range(len(unit)):
        relevant = [j for j in range(len(unit)) if j != i and is_relevant(i, j)]
        irrelevant = [j for j in range(len(unit)) if j != i and is_irrelevant(i, j)]
        if not relevant:
            continue  # anchors without a relevant item are left out

        def histogram(items, i=i):
            distances = [math.dist(unit[i], unit[j]) ** power for j in items]
            return [sum(max(0.0, 1 - abs(d - c) / delta) for d in distances) for c in centres]

        positive, negative = histogram(relevant), histogram(irrelevant)
        precision, positive_so_far, all_so_far = 0.0, 0.0, 0.0
        for h_positive, h_negative in zip(positive, negative, strict=True):
            positive_so_far += h_positive
            all_so_far += h_positive + h_negative
            if h_positive * positive_so_far > 0 and all_so_far > 0:
                precision += h_positive * positive_so_far / all_so_far
        losses.append(1 - precision / len(relevant))
    return sum(losses) / len(losses)


POINTS = [(1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0), (0.8, -0.6), (-0.6, 0.8)]
MULTI = [[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [0, 1, 1]]


def shared(a, b):
    return sum(x * y for x, y in zip(MULTI[a], MULTI[b], strict=True))


@pytest.mark.parametrize("num_bins", [2, 5, 10])
def test_multilabel_overlap_rule_against_plain_python(num_bins):
    expected = plain_fastap(POINTS, lambda a, b: shared(a, b) > 0, lambda a, b: shared(a, b) == 0, num_bins)
    value = FastAPLoss(num_bins=num_bins)(torch.tensor(POINTS, dtype=torch.float64), torch.tensor(MULTI))
    assert value.item() == pytest.approx(expected, abs=1e-9)


def test_multilabel_exact_and_jaccard_rules_against_plain_python():
    embeddings, labels = torch.tensor(POINTS, dtype=torch.float64), torch.tensor(MULTI)
    expected = plain_fastap(POINTS, lambda a, b: MULTI[a] == MULTI[b] and any(MULTI[a]), lambda a, b: shared(a, b) == 0)
    assert FastAPLoss(rule="exact")(embeddings, labels).item() == pytest.approx(expected, abs=1e-9)

    def jaccard(a, b):
        union = sum(x | y for x, y in zip(MULTI[a], MULTI[b], strict=True))
        return shared(a, b) / union if union else 0.0

    # pairs with 0 < Jaccard < 0.5 are in neither histogram
    expected = plain_fastap(POINTS, lambda a, b: jaccard(a, b) >= 0.5, lambda a, b: jaccard(a, b) == 0)
    assert FastAPLoss(rule="jaccard")(embeddings, labels).item() == pytest.approx(expected, abs=1e-9)


def test_hand_computed_value():
    # anchors 0 and 2 find their only relevant item (each other, squared distance 4) behind item 1
    # (squared distance 2): AP = 1/2 each; item 1 has no relevant item and is left out.
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert FastAPLoss(num_bins=4)(embeddings, torch.tensor([0, 1, 0])).item() == pytest.approx(0.5)
    assert FastAPLoss(num_bins=4, reduction="none")(embeddings, torch.tensor([0, 1, 0])).tolist() == [0.5, 0.5]


def test_one_label_per_row_multi_hot_equals_single_label():
    for seed in range(5):
        embeddings, labels = random_batch(seed, 40, 8)
        single = value_and_grad(FastAPLoss(), embeddings, labels)
        multi = value_and_grad(FastAPLoss(), embeddings, torch.nn.functional.one_hot(labels))
        assert torch.equal(single[0], multi[0]) and torch.equal(single[1], multi[1])


def test_indices_tuple_without_labels_uses_its_pairs_and_weights():
    embeddings, labels = random_batch(4, 24, 8)
    indices_tuple = pml_miners.BatchHardMiner()(embeddings, labels)
    relation = Relation.from_indices_tuple(indices_tuple, 24)
    weights = fastap_module.miner_weights(indices_tuple, 24, torch.float64, embeddings.device)
    per_anchor = FastAPLoss(reduction="none")(embeddings, relation)
    anchors = relation.positive.any(dim=1)
    expected = (per_anchor * weights[anchors]).mean()
    torch.testing.assert_close(FastAPLoss()(embeddings, None, indices_tuple), expected)
    # with labels, the labels give relevance and the tuple only weights (PML's behaviour)
    with_labels = FastAPLoss()(embeddings, labels, indices_tuple)
    torch.testing.assert_close(with_labels, pml_losses.FastAPLoss()(embeddings, labels, indices_tuple))


# ---------------------------------------------------------------- invariances


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(2, 24), multi_label=st.booleans(), bins=st.integers(1, 12))
def test_permutation_invariance(seed, size, multi_label, bins):
    embeddings, labels, permutation = permutation_batch(
        seed, size, 5, multi_label=multi_label, num_labels=4, num_classes=max(2, size // 3), density=0.35
    )
    loss = FastAPLoss(num_bins=bins)
    assert loss(embeddings[permutation], labels[permutation]).item() == pytest.approx(
        loss(embeddings, labels).item(), abs=1e-5
    )


# ---------------------------------------------------------------- degenerate batches


@pytest.mark.parametrize(
    "labels",
    [torch.arange(6), torch.zeros(6, 3, dtype=torch.long), torch.eye(6, dtype=torch.long)],
    ids=["no_positives", "no_labels", "multi_hot_no_positives"],
)
def test_no_relevant_items_gives_differentiable_zero(labels):
    embeddings = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    value = FastAPLoss()(embeddings, labels)
    assert value.item() == 0.0 and value.dtype == torch.float64 and value.requires_grad
    (grad,) = torch.autograd.grad(value, embeddings)
    assert torch.equal(grad, torch.zeros_like(grad))
    assert FastAPLoss(reduction="none")(embeddings, labels).shape == (0,)


def test_all_same_labels_is_perfect_ranking():
    embeddings = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.zeros(6, dtype=torch.long)
    value = FastAPLoss()(embeddings, labels)
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert value.item() == pytest.approx(pml_losses.FastAPLoss()(embeddings, labels).item(), abs=1e-12)
    value.backward()
    assert torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_duplicated_and_zero_embeddings_stay_finite(dtype):
    # row 4 is antipodal to row 0: the top of the histogram range
    embeddings, labels, multi = duplicated_and_zero_batch(dtype, antipodes=(4,))
    for given_labels in (labels, multi):
        value, grad = value_and_grad(FastAPLoss(), embeddings, given_labels)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
        assert grad.dtype == dtype
        assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    if dtype == torch.float64:
        assert_same(FastAPLoss(), pml_losses.FastAPLoss(), embeddings, labels)
    if dtype in (torch.float16, torch.bfloat16):  # half precision is computed in float32
        expected = FastAPLoss()(embeddings.float(), labels)
        assert FastAPLoss()(embeddings, labels).item() == pytest.approx(expected.item(), abs=1e-6)


def test_docstring_example_runs():
    assert doctest.testmod(fastap_module, raise_on_error=False).failed == 0
