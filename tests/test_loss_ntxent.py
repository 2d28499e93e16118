"""NTXentLoss: parity with pytorch-metric-learning, multi-label semantics, degenerate batches, memory."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labelspace import distances
from labelspace.losses.metric import ntxent
from labelspace.losses.metric.ntxent import NTXentLoss
from labelspace.relations import Relation
from metric_testing import (
    DIMS,
    SIZES,
    assert_finite_with_gradient,
    assert_parity,
    both_directions,
    import_pml,
    permutation_batch,
    pml_returns_zero_for,
    random_batch,
    random_pair_subset,
    value_and_grad,
)

pml_losses, pml_distances, pml_miners, pml_reducers = import_pml("losses", "distances", "miners", "reducers")


def seeds_for(size: int) -> range:
    """Fewer seeds for big batches: pytorch-metric-learning's NTXent is O(positives x negatives)."""
    return range(6) if size <= 16 else range(3) if size <= 64 else range(2)


# --- parity with pytorch-metric-learning --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_labels(size, dim, dtype):
    for seed in seeds_for(size):
        embeddings, labels = random_batch(seed, size, dim, dtype)
        assert_parity(NTXentLoss(), pml_losses.NTXentLoss(), embeddings, labels)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_pml_from_indices_tuple(size, dtype):
    miners = [
        pml_miners.MultiSimilarityMiner(epsilon=0.1),
        pml_miners.PairMarginMiner(pos_margin=0.5, neg_margin=1.0),
    ]
    checked = 0
    for seed in seeds_for(size):
        embeddings, labels = random_batch(seed, size, 8, dtype)
        tuples = [miner(embeddings, labels) for miner in miners] + [random_pair_subset(labels, seed)]
        for indices_tuple in tuples:
            if pml_returns_zero_for(indices_tuple):
                continue
            checked += 1
            assert_parity(NTXentLoss(), pml_losses.NTXentLoss(), embeddings, labels, indices_tuple)
            assert_parity(NTXentLoss(), pml_losses.NTXentLoss(), embeddings, None, indices_tuple)
    assert checked > 0


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: NTXentLoss(temperature=0.5), lambda: pml_losses.NTXentLoss(temperature=0.5)),
        (lambda: NTXentLoss(temperature=1.0), lambda: pml_losses.NTXentLoss(temperature=1.0)),
        (
            lambda: NTXentLoss(temperature=0.3, distance=distances.LpDistance()),
            lambda: pml_losses.NTXentLoss(temperature=0.3, distance=pml_distances.LpDistance()),
        ),
        (
            lambda: NTXentLoss(temperature=2.0, distance=distances.DotProductSimilarity()),
            lambda: pml_losses.NTXentLoss(temperature=2.0, distance=pml_distances.DotProductSimilarity()),
        ),
        (
            lambda: NTXentLoss(reduction="sum"),
            lambda: pml_losses.NTXentLoss(reducer=pml_reducers.SumReducer()),
        ),
        (
            lambda: NTXentLoss(temperature=0.2, reduction="mean_nonzero"),
            lambda: pml_losses.NTXentLoss(temperature=0.2, reducer=pml_reducers.AvgNonZeroReducer()),
        ),
    ],
    ids=["t0.5", "t1", "lp", "dot", "sum", "mean_nonzero"],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml_non_default_args(ours, theirs, dtype):
    for seed, size in enumerate([2, 5, 16, 64, 128]):
        embeddings, labels = random_batch(seed, size, 16, dtype)
        assert_parity(ours(), theirs(), embeddings, labels)
        indices_tuple = random_pair_subset(labels, seed)
        if not pml_returns_zero_for(indices_tuple):
            assert_parity(ours(), theirs(), embeddings, None, indices_tuple)


def test_anchor_without_negatives_counts_zero_in_the_mean():
    """As pytorch-metric-learning: such a positive pair adds 0 to the sum and 1 to the count."""
    embeddings, labels = random_batch(0, 12, 6)
    indices_tuple = random_pair_subset(labels, 0)
    a1, p, a2, n = indices_tuple
    keep = a2 != a1[0]  # anchor a1[0] loses all its negatives
    indices_tuple = (a1, p, a2[keep], n[keep])
    assert_parity(NTXentLoss(), pml_losses.NTXentLoss(), embeddings, None, indices_tuple)


def test_single_positive_and_negative_pair_counts():
    """pytorch-metric-learning returns 0 when each index list has one entry; here the pair still counts."""
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]], dtype=torch.float64)
    indices_tuple = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    similarities = F.normalize(embeddings, dim=1) @ F.normalize(embeddings, dim=1).T / 0.07
    expected = -torch.log_softmax(torch.stack([similarities[0, 1], similarities[0, 2]]), dim=0)[0]
    torch.testing.assert_close(NTXentLoss()(embeddings, indices_tuple=indices_tuple), expected)


# --- multi-label semantics, computed by hand -------------------------------------------------------

TEMPERATURE = 0.5
ANGLES = [0.0, 40.0, 90.0, 70.0]
HAND_EMBEDDINGS = [[3 * math.cos(math.radians(a)), 3 * math.sin(math.radians(a))] for a in ANGLES]  # not unit
HAND_LABELS = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1]]
WEIGHT_TOLERANCE = 1e-7  # Relation weights are float32 (1/3 is not exact)


def hand_similarity(i: int, j: int) -> float:
    return math.cos(math.radians(ANGLES[i] - ANGLES[j]))


def hand_jaccard(i: int, j: int) -> float:
    a = {k for k, v in enumerate(HAND_LABELS[i]) if v}
    b = {k for k, v in enumerate(HAND_LABELS[j]) if v}
    return len(a & b) / len(a | b)


def hand_ntxent(positive_pairs, negative_pairs, weighted=False):
    """Mean over positive pairs of -log(e^(s_ap/T) / (e^(s_ap/T) + sum over the anchor's negatives e^(s_an/T)))."""
    total, weights = 0.0, 0.0
    for a, p in positive_pairs:
        numerator = math.exp(hand_similarity(a, p) / TEMPERATURE)
        negatives = sum(math.exp(hand_similarity(a, n) / TEMPERATURE) for anchor, n in negative_pairs if anchor == a)
        weight = hand_jaccard(a, p) if weighted else 1.0
        total += weight * -math.log(numerator / (numerator + negatives))
        weights += weight
    return total / weights


def hand_inputs(dtype=torch.float64):
    return torch.tensor(HAND_EMBEDDINGS, dtype=dtype), torch.tensor(HAND_LABELS)


# overlap: 0~1, 0~2, 1~2, 2~3 share a label; 0~3 and 1~3 share none (so item 2 has no negative)
OVERLAP_POSITIVES = both_directions([(0, 1), (0, 2), (1, 2), (2, 3)])
OVERLAP_NEGATIVES = both_directions([(0, 3), (1, 3)])
# jaccard rule (pos_threshold 0.5): J(0,1) = 1/2, J(0,2) = 2/3 are positives; J(1,2) = J(2,3) = 1/3 ignored
JACCARD_POSITIVES = both_directions([(0, 1), (0, 2)])


def test_hand_computed_overlap():
    embeddings, labels = hand_inputs()
    expected = hand_ntxent(OVERLAP_POSITIVES, OVERLAP_NEGATIVES)
    assert NTXentLoss(TEMPERATURE)(embeddings, labels).item() == pytest.approx(expected, abs=1e-12)


def test_hand_computed_overlap_with_jaccard_weighting():
    embeddings, labels = hand_inputs()
    expected = hand_ntxent(OVERLAP_POSITIVES, OVERLAP_NEGATIVES, weighted=True)
    assert expected != pytest.approx(hand_ntxent(OVERLAP_POSITIVES, OVERLAP_NEGATIVES))
    loss = NTXentLoss(TEMPERATURE, positive_weighting="jaccard")
    assert loss(embeddings, labels).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)


def test_hand_computed_jaccard_rule_with_and_without_weighting():
    embeddings, labels = hand_inputs()
    for weighted in (False, True):
        expected = hand_ntxent(JACCARD_POSITIVES, OVERLAP_NEGATIVES, weighted=weighted)
        weighting = "jaccard" if weighted else "none"
        loss = NTXentLoss(TEMPERATURE, rule="jaccard", positive_weighting=weighting)
        assert loss(embeddings, labels).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)
        relation = Relation.from_labels(labels, rule="jaccard")  # weights come from the relation
        loss = NTXentLoss(TEMPERATURE, positive_weighting=weighting)
        assert loss(embeddings, relation).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)


def test_hand_computed_exact_rule():
    embeddings = torch.tensor(HAND_EMBEDDINGS + HAND_EMBEDDINGS[:1], dtype=torch.float64)
    labels = torch.tensor(HAND_LABELS + HAND_LABELS[:1])  # item 4 copies item 0's labels (and embedding)
    loss = NTXentLoss(TEMPERATURE, rule="exact")(embeddings, labels)
    # positives 0~4 only; negatives of 0 and of 4 are the items sharing no label with them: item 3
    s_pos, s_neg = 1.0 / TEMPERATURE, hand_similarity(0, 3) / TEMPERATURE
    expected = -math.log(math.exp(s_pos) / (math.exp(s_pos) + math.exp(s_neg)))
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_reduction_none_is_per_positive_pair_in_anchor_major_order():
    embeddings, labels = hand_inputs()
    values = NTXentLoss(TEMPERATURE, reduction="none")(embeddings, labels)
    expected = [hand_ntxent([pair], OVERLAP_NEGATIVES) for pair in sorted(OVERLAP_POSITIVES)]
    assert values.tolist() == pytest.approx(expected, abs=1e-12)
    assert values[[i for i, (a, _) in enumerate(sorted(OVERLAP_POSITIVES)) if a == 2]].eq(0).all()


def test_indices_tuple_with_labels_gets_jaccard_weights_from_labels():
    embeddings, labels = hand_inputs()
    indices_tuple = (torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), torch.tensor([0, 1]), torch.tensor([3, 3]))
    expected = hand_ntxent([(0, 1), (0, 2), (1, 2)], [(0, 3), (1, 3)], weighted=True)
    loss = NTXentLoss(TEMPERATURE, positive_weighting="jaccard")
    assert loss(embeddings, labels, indices_tuple).item() == pytest.approx(expected, abs=WEIGHT_TOLERANCE)
    with pytest.raises(ValueError, match="Jaccard"):
        loss(embeddings, None, indices_tuple)
    with pytest.raises(ValueError, match="Jaccard"):
        loss(embeddings, Relation.from_labels(labels))  # overlap relation: no weights, no labels


def test_invalid_arguments():
    with pytest.raises(ValueError, match="positive_weighting"):
        NTXentLoss(positive_weighting="cosine")
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0)
    with pytest.raises(ValueError, match="reduction"):
        NTXentLoss(reduction="max")
    with pytest.raises(ValueError, match="floating point"):
        NTXentLoss()(torch.ones(4, 2, dtype=torch.long), torch.arange(4))


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_one_label_per_row_equals_single_label(weighting):
    for seed, size in enumerate([2, 5, 16, 64]):
        embeddings, labels = random_batch(seed, size, 8, torch.float32)
        one_hot = F.one_hot(labels, num_classes=int(labels.max()) + 3)  # with unused label columns
        loss = NTXentLoss(positive_weighting=weighting)
        single, single_grad = value_and_grad(loss, embeddings, labels)
        multi, multi_grad = value_and_grad(loss, embeddings, one_hot)
        relation, relation_grad = value_and_grad(loss, embeddings, Relation.from_labels(labels, rule="jaccard"))
        reference, _ = value_and_grad(NTXentLoss(), embeddings, labels)
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
    embeddings, labels, permutation = permutation_batch(seed, size, 4, num_labels=num_labels, dtype=torch.float32)
    loss = NTXentLoss(positive_weighting=weighting, rule=rule)
    torch.testing.assert_close(
        loss(embeddings[permutation], labels[permutation]), loss(embeddings, labels), atol=1e-5, rtol=1e-5
    )


# --- degenerate batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_no_positive_pairs_or_no_negatives(weighting):
    embeddings = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = NTXentLoss(positive_weighting=weighting)
    for labels in (
        torch.arange(6),  # no positive pair
        torch.zeros(6, 4, dtype=torch.long),  # no labels at all: only negatives
        torch.zeros(6, dtype=torch.long),  # one class: positives without any negative
        torch.ones(6, 4, dtype=torch.long),  # one label set
    ):
        value, grad = assert_finite_with_gradient(loss, embeddings, labels)
        assert value.item() == 0 and value.dtype == torch.float64
        assert (grad == 0).all()
    value, grad = assert_finite_with_gradient(loss, embeddings[:1], torch.tensor([0]))  # no pair at all
    assert value.item() == 0 and (grad == 0).all()


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_degenerate_batches_are_finite(weighting):
    generator = torch.Generator().manual_seed(0)
    random = torch.randn(8, 5, generator=generator)
    multi_hot = (torch.rand(8, 3, generator=generator) < 0.5).long()
    multi_hot[:3] = 0  # items with no labels
    cases = [
        (random, multi_hot),
        (random[:1].repeat(8, 1), torch.arange(8) % 3),  # duplicated embeddings
        (torch.zeros(8, 5), torch.arange(8) % 3),  # zero embeddings
        (torch.zeros(40, 5), torch.arange(40) % 3),  # zero embeddings, cdist's matrix-product path
        (random[:1].repeat(40, 1), torch.arange(40) % 3),
        (random * 1e4, torch.arange(8) % 3),  # large logits with a distance
    ]
    for distance in (distances.CosineSimilarity(), distances.LpDistance(), distances.DotProductSimilarity()):
        for embeddings, labels in cases:
            loss = NTXentLoss(distance=distance, positive_weighting=weighting)
            assert_finite_with_gradient(loss, embeddings, labels)


def test_duplicated_embeddings_give_log_of_candidates():
    """All similarities equal: each positive is one of 1 + (negatives of its anchor) equal candidates."""
    embeddings = torch.ones(6, 3, dtype=torch.float64)
    loss = NTXentLoss()(embeddings, torch.tensor([0, 0, 1, 1, 1, 2]))
    # anchors of class 0 have 4 negatives, of class 1 have 3; 2 + 6 positive pairs
    expected = (2 * math.log(5) + 6 * math.log(4)) / 8
    assert loss.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("distance", [distances.CosineSimilarity(), distances.LpDistance()], ids=["cosine", "lp"])
def test_half_precision_embeddings(dtype, distance):
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(64) % 6
    for embeddings in (torch.randn(64, 32, generator=generator), torch.zeros(64, 32)):
        embeddings = embeddings.to(dtype)
        value, grad = assert_finite_with_gradient(NTXentLoss(distance=distance), embeddings, labels)
        assert value.dtype == torch.float32 and grad.dtype == dtype
        reference = NTXentLoss(distance=distance)(embeddings.float(), labels)
        torch.testing.assert_close(value, reference)


def test_float64_stays_float64():
    embeddings, labels = random_batch(0, 16, 4)
    assert NTXentLoss()(embeddings, labels).dtype == torch.float64
    assert NTXentLoss(positive_weighting="jaccard")(embeddings, labels).dtype == torch.float64
    assert NTXentLoss(reduction="none")(embeddings, labels).dtype == torch.float64


# --- memory: O(B^2) -------------------------------------------------------------------------------


def test_batch_1024_forward_backward():
    """pytorch-metric-learning's positives x negatives matrix needs ~30 GB here; ours is a few B x B matrices."""
    embeddings = torch.randn(1024, 384, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = NTXentLoss()(embeddings, torch.arange(1024) // 8)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


MEMORY_SCRIPT = textwrap.dedent(
    """
    import time, torch
    from labelspace.losses.metric.ntxent import NTXentLoss

    def peak_mib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))

    size = {size}
    embeddings = torch.randn(size, 384, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.arange(size) // 8
    before = peak_mib()
    start = time.perf_counter()
    loss = NTXentLoss()(embeddings, labels)
    loss.backward()
    seconds = time.perf_counter() - start
    finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(embeddings.grad).all())
    print(seconds, before, peak_mib(), finite)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc/self/status")
def test_batch_4096_memory():
    """B=4096, dim 384, 8 per class, forward + backward in a fresh process; peak RSS from VmHWM."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT.format(size=4096)], capture_output=True, text=True, check=True
    )
    seconds, before, peak, finite = result.stdout.split()
    print(
        f"NTXentLoss B=4096 d=384: {float(seconds):.2f} s, peak RSS {float(peak):.0f} MiB (before {float(before):.0f})"
    )
    assert finite == "True"
    assert float(peak) - float(before) < 2048  # a handful of 64 MiB B x B matrices, not B^3


def test_docstring_example():
    assert doctest.testmod(ntxent, raise_on_error=False).failed == 0
