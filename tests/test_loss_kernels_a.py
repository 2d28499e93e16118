"""Reference vs kernel for ContrastiveLoss, NTXentLoss and TripletMarginLoss; the kernel selection; relation=.

Each loss's `reference` is its formula written on the distance's own helpers; `forward` runs a fused
kernel where `uses_kernel` says so. Here both paths of one loss object run on the same random
single- and multi-label batches (labels, pair and triplet indices_tuples, Jaccard weighting, every
reduction the kernel implements) and must agree in value and gradient: to 1e-10 in float64, and in
float32 to the rounding of summing the same B^2 terms in another order (see FLOAT32_TOL).
"""

from __future__ import annotations

import contextlib
import itertools
import warnings

import pytest
import torch

import labelspace.losses.base as losses_base
import labelspace.losses.metric.contrastive as contrastive_module
import labelspace.losses.metric.ntxent as ntxent_module
import labelspace.losses.metric.triplet_margin as triplet_module
from labelspace.distances import BaseDistance, CosineSimilarity, DotProductSimilarity, LpDistance
from labelspace.losses.metric.contrastive import ContrastiveLoss
from labelspace.losses.metric.ntxent import NTXentLoss
from labelspace.losses.metric.triplet_margin import TripletMarginLoss
from labelspace.relations import Relation, RelationRule
from metric_testing import value_and_grad

SIZE, DIM = 24, 8

FLOAT64_TOL = {"atol": 1e-12, "rtol": 1e-10}
FLOAT32_TOL = {"atol": 1e-6, "rtol": 1e-5}
FLOAT32_GRAD_TOL = {"atol": 1e-5, "rtol": 1e-5}
"""Both paths compute the same float32 distance matrix and the same hinge decisions (the margins are the
same float operations, so no pair changes side); they differ in summation order (the kernels accumulate
in float64, the reference in float32 pairwise sums: a few eps = 1e-7 relative over B^2 = 576 terms) and,
for NT-Xent, in one rounding of the logits (s * (1/T) against s / T, 1 ulp of |s/T| <= 14, i.e. ~1e-6).
Seen on these batches: values within 2e-7 relative, gradients (divided by their largest entry, whose
size sets the rounding of every entry's sum) within 1e-6; the bounds leave 10x to 50x for other CPUs."""


def tolerance(dtype: torch.dtype, *, grad: bool = False) -> dict:
    if dtype == torch.float64:
        return FLOAT64_TOL
    return FLOAT32_GRAD_TOL if grad else FLOAT32_TOL


def batches(seed: int, dtype: torch.dtype):
    """(name, embeddings, labels, indices_tuple): class ids, multi-hot labels, pair and triplet tuples."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(SIZE, DIM, generator=generator, dtype=torch.float64).to(dtype)
    single = torch.randint(0, 5, (SIZE,), generator=generator)
    multi = (torch.rand(SIZE, 6, generator=generator) < 0.3).long()
    a1, p, a2, n = Relation.from_labels(multi).pair_indices()
    some_pairs = (a1[::2], p[::2], a2[1::3], n[1::3])
    triplets = Relation.from_labels(single).triplet_indices(60, generator=generator)
    return [
        ("single", embeddings, single, None),
        ("multi", embeddings, multi, None),
        ("pairs", embeddings, multi, some_pairs),
        ("triplets", embeddings, single, triplets),
    ]


def kernel_and_reference(loss, embeddings, labels, indices_tuple=None):
    """(value, grad) of ``loss`` through its kernel, then through its reference; checks which path ran."""
    assert loss.uses_kernel()
    calls = []
    bound_reference = loss.reference
    loss.reference = lambda *args: calls.append(args) or bound_reference(*args)
    try:
        torch.manual_seed(0)  # triplets_per_anchor=k draws the same triplets on both paths
        kernel = value_and_grad(loss, embeddings, labels, indices_tuple)
        assert not calls, "the kernel path ran the reference"
        loss.uses_kernel = lambda: False
        torch.manual_seed(0)
        reference = value_and_grad(loss, embeddings, labels, indices_tuple)
        assert len(calls) == 1, "the reference path did not run the reference"
    finally:
        del loss.reference
        vars(loss).pop("uses_kernel", None)
    return kernel, reference


def assert_paths_agree(loss, embeddings, labels, indices_tuple=None) -> None:
    (kernel_value, kernel_grad), (reference_value, reference_grad) = kernel_and_reference(
        loss, embeddings, labels, indices_tuple
    )
    assert kernel_value.dtype == reference_value.dtype
    torch.testing.assert_close(kernel_value, reference_value, **tolerance(embeddings.dtype))
    # a gradient entry sums terms as large as the largest entry, which sets the scale of its rounding
    scale = max(1.0, reference_grad.abs().max().item())
    torch.testing.assert_close(kernel_grad / scale, reference_grad / scale, **tolerance(embeddings.dtype, grad=True))


# ---------------------------------------------------------------- ContrastiveLoss

CONTRASTIVE = {
    "lp": dict,
    "lp-power2": lambda: dict(pos_margin=0.2, neg_margin=1.5, distance=LpDistance(power=2)),
    "cosine": lambda: dict(pos_margin=0.9, neg_margin=0.3, distance=CosineSimilarity()),
    "dot-raw": lambda: dict(pos_margin=1.0, neg_margin=0.0, distance=DotProductSimilarity(normalize_embeddings=False)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CONTRASTIVE)
def test_contrastive_kernel_equals_reference(monkeypatch, case, dtype):
    monkeypatch.setattr(losses_base, "BLOCK_ELEMENTS", SIZE * 5)  # 5 rows per block, uneven last block
    for seed, reduction, weighting in itertools.product(range(3), ("mean", "mean_nonzero", "sum"), ("none", "jaccard")):
        loss = ContrastiveLoss(**CONTRASTIVE[case](), reduction=reduction, positive_weighting=weighting)
        for _name, embeddings, labels, indices_tuple in batches(seed, dtype):
            assert_paths_agree(loss, embeddings, labels, indices_tuple)


def test_contrastive_reduction_none_and_custom_distances_use_the_reference():
    assert ContrastiveLoss().uses_kernel()
    assert not ContrastiveLoss(reduction="none").uses_kernel()
    assert not ContrastiveLoss(distance=DoubledMargin()).uses_kernel()


# ---------------------------------------------------------------- NTXentLoss

NTXENT = {
    "cosine-0.07": dict,
    "cosine-0.5": lambda: dict(temperature=0.5),
    "lp": lambda: dict(temperature=0.2, distance=LpDistance()),
    "dot-raw": lambda: dict(temperature=1.0, distance=DotProductSimilarity(normalize_embeddings=False)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", NTXENT)
def test_ntxent_kernel_equals_reference(case, dtype):
    reductions = ("mean", "mean_nonzero", "sum")
    for seed, reduction, weighting in itertools.product(range(3), reductions, ("none", "jaccard")):
        loss = NTXentLoss(**NTXENT[case](), reduction=reduction, positive_weighting=weighting)
        for _name, embeddings, labels, indices_tuple in batches(seed, dtype):
            assert_paths_agree(loss, embeddings, labels, indices_tuple)


@pytest.mark.parametrize("weighting", ["none", "jaccard"])
def test_ntxent_reduction_none_kernel_equals_reference(weighting):
    loss = NTXentLoss(temperature=0.3, reduction="none", positive_weighting=weighting)
    for _name, embeddings, labels, indices_tuple in batches(7, torch.float64):
        torch.manual_seed(0)
        (kernel,), (reference,) = kernel_and_reference_values(loss, embeddings, labels, indices_tuple)
        torch.testing.assert_close(kernel, reference, **FLOAT64_TOL)


def kernel_and_reference_values(loss, embeddings, labels, indices_tuple):
    """Per-element losses (reduction "none") of both paths."""
    assert loss.uses_kernel()
    kernel = loss(embeddings, labels, indices_tuple)
    loss.uses_kernel = lambda: False
    try:
        reference = loss(embeddings, labels, indices_tuple)
    finally:
        del loss.uses_kernel
    assert kernel.shape == reference.shape and kernel.dim() == 1
    return (kernel,), (reference,)


def test_ntxent_anchor_without_negatives_agrees_on_both_paths():
    """Item 0 shares a label with everyone: its positives cost 0 with gradient 0 on both paths (no NaN)."""
    embeddings = torch.randn(5, 3, dtype=torch.float64)
    labels = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert_paths_agree(NTXentLoss(temperature=0.2), embeddings, labels)


# ---------------------------------------------------------------- TripletMarginLoss

TRIPLET = {
    "lp": dict,
    "lp-swap": lambda: dict(margin=0.3, swap=True),
    "smooth": lambda: dict(margin=0.2, smooth_loss=True),
    "cosine-swap": lambda: dict(margin=0.2, swap=True, distance=CosineSimilarity()),
    "lp-power2": lambda: dict(margin=0.5, distance=LpDistance(power=2)),
    "dot-raw": lambda: dict(margin=0.5, distance=DotProductSimilarity(normalize_embeddings=False)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", TRIPLET)
@pytest.mark.parametrize("use_rows", [True, False], ids=["rows", "matrix"])
def test_triplet_kernel_equals_reference(monkeypatch, case, dtype, use_rows):
    """All triplets (chunked kernel), listed triplets (rows or matrix gathers), sampled triplets."""
    monkeypatch.setattr(triplet_module, "CHUNK_ELEMENTS", 3 * SIZE)  # 3 positive pairs per chunk
    monkeypatch.setattr(TripletMarginLoss, "uses_row_distances", lambda self, *args: use_rows)
    reductions = ("mean", "mean_nonzero", "sum")
    for seed, reduction, per_anchor in itertools.product(range(3), reductions, ("all", 2)):
        loss = TripletMarginLoss(**TRIPLET[case](), reduction=reduction, triplets_per_anchor=per_anchor)
        for _name, embeddings, labels, indices_tuple in batches(seed, dtype):
            assert_paths_agree(loss, embeddings, labels, indices_tuple)


@pytest.mark.parametrize("case", TRIPLET)
def test_triplet_reduction_none_kernel_equals_reference(case):
    loss = TripletMarginLoss(**TRIPLET[case](), reduction="none")
    for _name, embeddings, labels, indices_tuple in batches(3, torch.float64):
        (kernel,), (reference,) = kernel_and_reference_values(loss, embeddings, labels, indices_tuple)
        torch.testing.assert_close(kernel, reference, **FLOAT64_TOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast_on_both_paths(dtype):
    for loss in (ContrastiveLoss(), NTXentLoss(), TripletMarginLoss(margin=0.3)):
        for _name, embeddings, labels, indices_tuple in batches(1, dtype):
            (kernel_value, kernel_grad), (reference_value, reference_grad) = kernel_and_reference(
                loss, embeddings, labels, indices_tuple
            )
            assert kernel_value.dtype == reference_value.dtype == torch.float32
            assert kernel_grad.dtype == reference_grad.dtype == dtype
            torch.testing.assert_close(kernel_value, reference_value, **FLOAT32_TOL)
            # float32 gradients within FLOAT32_GRAD_TOL, then one rounding each to the half type: one ulp apart
            scale = max(1.0, reference_grad.abs().max().item())
            ulp = torch.finfo(dtype).eps
            torch.testing.assert_close(kernel_grad.float() / scale, reference_grad.float() / scale, atol=ulp, rtol=0)


# ---------------------------------------------------------------- custom distances get the reference


class DoubledMargin(LpDistance):
    """Euclidean distance whose margin counts double: a user's subclass redefining `margin`."""

    def margin(self, closer: torch.Tensor, farther: torch.Tensor) -> torch.Tensor:
        return 2 * super().margin(closer, farther)


class Manhattan(LpDistance):
    """L1 distance of raw embeddings, as a subclass of LpDistance that only redefines the matrix."""

    def __init__(self) -> None:
        super().__init__(normalize_embeddings=False)

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return torch.cdist(query, reference, p=1)


class DoubledCosine(BaseDistance):
    """Twice the cosine similarity, a distance written from scratch on BaseDistance."""

    is_inverted = True

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return 2 * query @ reference.T


@contextlib.contextmanager
def kernels_forbidden():
    """Inside, every kernel of the three losses fails, so a custom distance must go through `reference`."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a kernel ran for a custom distance")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(contrastive_module, "contrastive_terms", forbidden)
        patch.setattr(ntxent_module, "ntxent_pair_losses", forbidden)
        patch.setattr(triplet_module, "all_triplets_loss", forbidden)
        patch.setattr(triplet_module, "listed_triplet_distances", forbidden)
        yield


def test_custom_margin_is_honoured_by_the_reference():
    """A margin that counts double doubles each hinge loss; mean_nonzero keeps the same pairs, so the loss doubles."""
    for _name, embeddings, labels, indices_tuple in batches(2, torch.float64):
        plain = ContrastiveLoss(pos_margin=0.3, neg_margin=1.2)(embeddings, labels, indices_tuple)
        doubled = ContrastiveLoss(pos_margin=0.3, neg_margin=1.2, distance=DoubledMargin())
        with kernels_forbidden():
            torch.testing.assert_close(doubled(embeddings, labels, indices_tuple), 2 * plain, **FLOAT64_TOL)
        # triplets: margin - 2 (d_an - d_ap) = 2 (margin / 2 - (d_an - d_ap))
        for per_anchor in ("all", 2):
            torch.manual_seed(0)
            plain = TripletMarginLoss(margin=0.2, swap=True, triplets_per_anchor=per_anchor)
            plain = plain(embeddings, labels, indices_tuple)
            doubled = TripletMarginLoss(margin=0.4, swap=True, triplets_per_anchor=per_anchor, distance=DoubledMargin())
            torch.manual_seed(0)
            with kernels_forbidden():
                torch.testing.assert_close(doubled(embeddings, labels, indices_tuple), 2 * plain, **FLOAT64_TOL)


def test_custom_matrix_is_used_for_listed_triplets():
    """A subclass of LpDistance with its own matrix: triplet losses come from that matrix, not from L2 rows."""
    embeddings, labels = torch.randn(10, 4, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    anchors, positives, negatives = Relation.from_labels(labels).triplet_indices()
    l1 = torch.cdist(embeddings, embeddings, p=1)
    expected = torch.relu(l1[anchors, positives] - l1[anchors, negatives] + 0.5)
    miner_tuple = (anchors[::3], positives[::3], negatives[::3])
    with kernels_forbidden():
        losses = TripletMarginLoss(margin=0.5, distance=Manhattan(), reduction="none")(embeddings, labels)
        value = TripletMarginLoss(margin=0.5, distance=Manhattan(), reduction="sum")(embeddings, None, miner_tuple)
    torch.testing.assert_close(losses, expected, **FLOAT64_TOL)
    torch.testing.assert_close(value, expected[::3].sum(), **FLOAT64_TOL)


def test_custom_similarity_in_ntxent():
    """Twice the cosine at temperature T is the cosine at T / 2."""
    for _name, embeddings, labels, indices_tuple in batches(4, torch.float64):
        for weighting in ("none", "jaccard"):
            expected = NTXentLoss(temperature=0.2, positive_weighting=weighting)(embeddings, labels, indices_tuple)
            doubled = NTXentLoss(temperature=0.4, distance=DoubledCosine(), positive_weighting=weighting)
            assert not doubled.uses_kernel()
            with kernels_forbidden():
                torch.testing.assert_close(doubled(embeddings, labels, indices_tuple), expected, **FLOAT64_TOL)


# ---------------------------------------------------------------- relation= and its deprecated spelling

LOSSES = [ContrastiveLoss, NTXentLoss, TripletMarginLoss]


@pytest.mark.parametrize("loss_class", LOSSES)
def test_default_construction_warns_nothing(loss_class):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        loss_class()
        loss_class(relation="jaccard")
        loss_class(relation=RelationRule("overlap", min_shared=2))


@pytest.mark.parametrize("loss_class", LOSSES)
def test_relation_argument_and_deprecated_keywords(loss_class):
    _name, embeddings, labels, _ = batches(5, torch.float64)[1]
    rule = RelationRule("jaccard", pos_threshold=0.3)
    expected = loss_class()(embeddings, Relation.from_labels(labels, rule=rule))
    torch.testing.assert_close(loss_class(relation=rule)(embeddings, labels), expected)
    with pytest.warns(DeprecationWarning, match=rf"{loss_class.__name__}\(rule='jaccard', pos_threshold=0.3\)"):
        old = loss_class(rule="jaccard", pos_threshold=0.3)
    torch.testing.assert_close(old(embeddings, labels), expected)
    assert loss_class(relation="exact").relation_rule == RelationRule("exact")
    with pytest.raises(ValueError, match="either relation= or the deprecated"):
        loss_class(relation="overlap", min_shared=2)
