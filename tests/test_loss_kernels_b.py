"""Multi-similarity, circle and FastAP: each fused kernel against the reference implementation that opens its loss file.

Every loss runs twice on the same batch: as `forward` picks it (the kernel, for the built-in distances) and
with `uses_kernel` forced off (the reference, autograd through the formula). Values and gradients must agree,
for single-label and multi-label batches, Relations with weights, mined pairs and triplets, and every
reduction. A distance of your own (a subclass) must run the reference and give the right value.
"""

from __future__ import annotations

import math

import pytest
import torch

from labelspace.distances import BaseDistance, CosineSimilarity, DotProductSimilarity, LpDistance
from labelspace.losses.metric import circle as circle_module
from labelspace.losses.metric import fastap as fastap_module
from labelspace.losses.metric import multi_similarity as multi_similarity_module
from labelspace.losses.metric.circle import CircleLoss
from labelspace.losses.metric.fastap import FastAPLoss
from labelspace.losses.metric.multi_similarity import MultiSimilarityLoss
from labelspace.losses.reduction import REDUCTIONS
from labelspace.relations import Relation
from metric_testing import random_batch
from test_loss_fastap import rows_near_bin_edges

CONFIGS = {
    "ms": lambda **kw: MultiSimilarityLoss(**kw),
    "ms-lp": lambda **kw: MultiSimilarityLoss(distance=LpDistance(), **kw),
    "ms-raw-dot": lambda **kw: MultiSimilarityLoss(distance=DotProductSimilarity(normalize_embeddings=False), **kw),
    "ms-alpha-beta-base": lambda **kw: MultiSimilarityLoss(alpha=1.0, beta=10.0, base=0.2, **kw),
    "circle": lambda **kw: CircleLoss(**kw),
    "circle-m-gamma": lambda **kw: CircleLoss(m=0.25, gamma=16.0, **kw),
    "fastap": lambda **kw: FastAPLoss(**kw),
    "fastap-3bins": lambda **kw: FastAPLoss(num_bins=3, **kw),
    "fastap-power1": lambda **kw: FastAPLoss(distance=LpDistance(power=1), **kw),
    "fastap-power3": lambda **kw: FastAPLoss(num_bins=7, distance=LpDistance(power=3), **kw),
}
SQUARED_EUCLIDEAN = {"fastap": 10, "fastap-3bins": 3}  # FastAP configs on LpDistance(power=2): their num_bins


def multi_label_batch(seed: int, size: int, dim: int, dtype: torch.dtype):
    """Embeddings (drawn in float64) and 5-label multi-hot labels of density 0.3 (so some rows have no label)."""
    generator = torch.Generator().manual_seed(1000 + seed)
    embeddings = torch.randn(size, dim, generator=generator, dtype=torch.float64).to(dtype)
    return embeddings, (torch.rand(size, 5, generator=generator) < 0.3).long()


def cases(dtype: torch.dtype, fastap: bool):
    """(name, embeddings, labels, indices_tuple): single- and multi-label batches, weighted Relations, mined tuples."""
    for seed, size in ((0, 7), (1, 48), (2, 48)):
        embeddings, labels = random_batch(seed, size, 8, torch.float64)
        yield "single-label", embeddings.to(dtype), labels, None
        embeddings, multi = multi_label_batch(seed, size, 8, dtype)
        yield "multi-label", embeddings, multi, None
        jaccard = Relation.from_labels(multi, rule="jaccard")  # carries weights (FastAP, MS, circle ignore them)
        yield "jaccard-relation", embeddings, jaccard, None
        a1, p, a2, n = Relation.from_labels(multi).pair_indices()
        pairs = (a1[::2], p[::2], a2[::3], n[::3])
        triplets = Relation.from_labels(multi).triplet_indices(60, generator=torch.Generator().manual_seed(seed))
        if fastap:  # the tuple weighs the anchors; relevance from the labels, else from the tuple's pairs
            yield "labels-and-pairs", embeddings, multi, pairs
            yield "labels-and-triplets", embeddings, multi, triplets
        yield "pairs", embeddings, None, pairs
        yield "triplets", embeddings, None, triplets


def value_and_grad(loss, embeddings, labels, indices_tuple):
    """The loss and the gradient of a fixed weighting of its elements (so reduction="none" is checked per element)."""
    leaf = embeddings.detach().clone().requires_grad_(True)
    value = loss(leaf, labels, indices_tuple)
    weights = torch.linspace(0.5, 1.5, value.numel(), dtype=value.dtype).reshape(value.shape)
    (grad,) = torch.autograd.grad((value * weights).sum(), leaf)
    return value.detach(), grad


def kernel_and_reference(config: str, reduction: str, embeddings, labels, indices_tuple):
    kernel, reference = CONFIGS[config](reduction=reduction), CONFIGS[config](reduction=reduction)
    assert kernel.uses_kernel()
    reference.uses_kernel = lambda: False  # the instance attribute hides the method: forward runs the reference
    return value_and_grad(kernel, embeddings, labels, indices_tuple), value_and_grad(
        reference, embeddings, labels, indices_tuple
    )


def nonzero_is_ambiguous(config: str, embeddings, labels, indices_tuple, tol: float) -> bool:
    """Whether kernel and reference disagree on which elements are above zero, all such elements within tol of 0.

    "mean_nonzero" then averages over other elements: a perfect FastAP anchor's loss 1 - AP is 0 in one and
    +-1e-16 in the other. The elements themselves are compared with reduction "none".
    """
    (value, _), (expected_value, _) = kernel_and_reference(config, "none", embeddings, labels, indices_tuple)
    differs = (value > 0) != (expected_value > 0)
    assert (value[differs].abs() <= tol).all() and (expected_value[differs].abs() <= tol).all()
    return bool(differs.any())


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("config", CONFIGS)
def test_kernel_matches_reference_float64(config, reduction):
    # The same float64 arithmetic in another order: values and gradients agree to ~1e-14 (seen), checked to 1e-10.
    compared = 0
    for name, embeddings, labels, indices_tuple in cases(torch.float64, config.startswith("fastap")):
        if reduction == "mean_nonzero" and nonzero_is_ambiguous(config, embeddings, labels, indices_tuple, 1e-12):
            continue
        (value, grad), (expected_value, expected_grad) = kernel_and_reference(
            config, reduction, embeddings, labels, indices_tuple
        )
        assert value.dtype == expected_value.dtype == torch.float64, name
        torch.testing.assert_close(value, expected_value, rtol=1e-10, atol=1e-10, msg=name)
        scale = max(1.0, expected_grad.abs().max().item())  # circle's gradients reach gamma = 80
        torch.testing.assert_close(grad / scale, expected_grad / scale, rtol=1e-10, atol=1e-10, msg=name)
        compared += bool(expected_grad.abs().max() > 0)
    assert compared >= 10  # most cases have a non-zero gradient to compare


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("config", CONFIGS)
def test_kernel_matches_reference_float32(config, reduction):
    # Kernel and reference sum the same float32 terms in other orders and forms (shifted exponential sums vs
    # logsumexp, log1p vs logaddexp), so they differ by rounding: values by a few float32 eps (<= 2e-7 seen),
    # checked to 1e-5; a gradient entry by the rounding of exponents up to beta |S - base| (50 x 6e-8 relative,
    # <= 1.2e-5 of the largest entry seen with raw dot products), checked to 1e-4 of the largest entry.
    # FastAP's gradient jumps at histogram bin edges: the rows of pairs near one are left out (float64 covers them).
    for name, embeddings, labels, indices_tuple in cases(torch.float32, config.startswith("fastap")):
        if reduction == "mean_nonzero" and nonzero_is_ambiguous(config, embeddings, labels, indices_tuple, 1e-6):
            continue
        (value, grad), (expected_value, expected_grad) = kernel_and_reference(
            config, reduction, embeddings, labels, indices_tuple
        )
        assert value.dtype == expected_value.dtype == torch.float32, name
        torch.testing.assert_close(value, expected_value, rtol=1e-5, atol=1e-5, msg=name)
        if config.startswith("fastap") and config not in SQUARED_EUCLIDEAN:
            continue  # rows_near_bin_edges knows squared distances only: the values above are compared
        if config in SQUARED_EUCLIDEAN:
            clear = ~rows_near_bin_edges(embeddings.double(), SQUARED_EUCLIDEAN[config])
            grad, expected_grad = grad[clear], expected_grad[clear]
        scale = max(1.0, expected_grad.abs().max().item()) if expected_grad.numel() else 1.0
        torch.testing.assert_close(grad / scale, expected_grad / scale, rtol=1e-4, atol=1e-4, msg=name)


def test_reference_handles_anchors_without_pairs():
    # rows without positives, without negatives, or without either: finite reference, same as the kernel
    embeddings = torch.randn(6, 4, dtype=torch.float64)
    relation = Relation(torch.zeros(6, 6, dtype=torch.bool), torch.zeros(6, 6, dtype=torch.bool))
    relation.positive[0, 1] = relation.positive[2, 3] = True
    relation.negative[0, 4] = relation.negative[4, 5] = True
    for config in ("ms", "ms-lp", "circle"):
        for reduction in REDUCTIONS:
            (value, grad), (expected_value, expected_grad) = kernel_and_reference(
                config, reduction, embeddings, relation, None
            )
            assert torch.isfinite(expected_value).all() and torch.isfinite(expected_grad).all()
            torch.testing.assert_close(value, expected_value, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


def test_tiny_terms_count_in_the_reference_too():
    # no positives, negatives at S = -1 and 0: l_i = 1/50 log(1 + e^{-75} + e^{-25}) ~ 3e-13 > 0 even in float32,
    # where log(1 + x) without log1p would round to 0 and leave the anchor out of "mean_nonzero"
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    (value, _), (expected_value, _) = kernel_and_reference("ms", "none", embeddings, torch.tensor([0, 1, 2]), None)
    by_hand = [math.log1p(math.exp(-75) + math.exp(-25)) / 50] * 2 + [math.log1p(2 * math.exp(-25)) / 50]
    torch.testing.assert_close(expected_value, torch.tensor(by_hand), rtol=1e-5, atol=0)
    torch.testing.assert_close(value, torch.tensor(by_hand), rtol=1e-5, atol=0)


# --- a distance of your own runs the reference ---------------------------------------------------


class DoubledMargin(CosineSimilarity):
    """Cosine similarity whose margin counts twice (the kernel, taking the margin from is_inverted, would miss it)."""

    def margin(self, closer: torch.Tensor, farther: torch.Tensor) -> torch.Tensor:
        return 2 * super().margin(closer, farther)


class NegatedEuclidean(BaseDistance):
    """-|x - y| of normalised embeddings as a similarity."""

    is_inverted = True

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(query, reference)


class RenamedCosine(CosineSimilarity):
    """CosineSimilarity under another name."""


class ScaledEuclidean(LpDistance):
    """Euclidean distance / sqrt(2): squared, half of LpDistance(power=2)'s, which the FastAP kernel recomputes."""

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return super().compute_matrix(query, reference) / math.sqrt(2)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the calls of each loss's kernel (as its loss module names it)."""
    calls = {"ms": 0, "circle": 0, "fastap": 0}

    def counted(key, kernel):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return kernel(*args, **kwargs)

        return wrapper

    for key, module, name in (
        ("ms", multi_similarity_module, "multi_similarity_rows"),
        ("circle", circle_module, "circle_rows"),
        ("fastap", fastap_module, "fastap_histograms"),
    ):
        monkeypatch.setattr(module, name, counted(key, getattr(module, name)))
    return calls


def test_builtin_distances_run_the_kernel(kernel_calls):
    embeddings, labels = random_batch(0, 16, 4)
    for config in CONFIGS:
        loss = CONFIGS[config]()
        assert loss.uses_kernel()
        loss(embeddings, labels)
    assert kernel_calls == {"ms": 4, "circle": 2, "fastap": 4}


def test_custom_distance_runs_the_reference_multi_similarity(kernel_calls):
    embeddings, labels = multi_label_batch(3, 32, 8, torch.float64)
    # a doubled margin doubles each exponent: 1/a log(1 + sum e^{2 a x}) = 2 * 1/(2a) log(1 + sum e^{2a x})
    loss = MultiSimilarityLoss(alpha=1.0, beta=20.0, base=0.3, distance=DoubledMargin())
    assert not loss.uses_kernel()
    value, grad = value_and_grad(loss, embeddings, labels, None)
    assert kernel_calls["ms"] == 0
    expected_value, expected_grad = value_and_grad(MultiSimilarityLoss(2.0, 40.0, 0.3), embeddings, labels, None)
    assert kernel_calls["ms"] == 1
    torch.testing.assert_close(value, 2 * expected_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, 2 * expected_grad, rtol=1e-10, atol=1e-12)
    # similarity -d with base b is distance d with base -b
    value, grad = value_and_grad(MultiSimilarityLoss(base=0.2, distance=NegatedEuclidean()), embeddings, labels, None)
    expected = value_and_grad(MultiSimilarityLoss(base=-0.2, distance=LpDistance()), embeddings, labels, None)
    torch.testing.assert_close((value, grad), expected, rtol=1e-10, atol=1e-12)
    assert kernel_calls["ms"] == 2


def test_custom_distance_runs_the_reference_circle(kernel_calls):
    embeddings, labels = multi_label_batch(4, 32, 8, torch.float64)
    loss = CircleLoss(distance=RenamedCosine())
    assert not loss.uses_kernel()
    value, grad = value_and_grad(loss, embeddings, labels, None)
    assert kernel_calls["circle"] == 0
    expected_value, expected_grad = value_and_grad(CircleLoss(), embeddings, labels, None)
    assert kernel_calls["circle"] == 1
    assert expected_value > 0
    torch.testing.assert_close(value, expected_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


def test_custom_distance_runs_the_reference_fastap(kernel_calls):
    # squared distances halved put them on bins 0..5 of 10 over [0, 4]: FastAP with 5 bins of the true distances
    embeddings, labels = multi_label_batch(5, 32, 8, torch.float64)
    loss = FastAPLoss(num_bins=10, distance=ScaledEuclidean(power=2))
    assert not loss.uses_kernel()
    value, grad = value_and_grad(loss, embeddings, labels, None)
    assert kernel_calls["fastap"] == 0
    expected_value, expected_grad = value_and_grad(FastAPLoss(num_bins=5), embeddings, labels, None)
    assert kernel_calls["fastap"] == 1
    assert expected_value > 0
    torch.testing.assert_close(value, expected_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_relation_argument_and_deprecated_keywords():
    embeddings, labels = multi_label_batch(6, 24, 8, torch.float64)
    for make in (MultiSimilarityLoss, CircleLoss, FastAPLoss):
        by_name = make(relation="jaccard")(embeddings, labels)
        expected = make()(embeddings, Relation.from_labels(labels, rule="jaccard"))
        torch.testing.assert_close(by_name, expected, rtol=0, atol=0)
        with pytest.warns(DeprecationWarning, match="relation="):
            old = make(rule="jaccard")
        torch.testing.assert_close(old(embeddings, labels), expected, rtol=0, atol=0)
        with pytest.raises(ValueError, match="not both"):
            make(relation="exact", min_shared=2)
