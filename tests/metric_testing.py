"""Helpers shared by the metric-loss and miner tests: seeded batches, gradients, parity checks with
pytorch-metric-learning (PML), degenerate batches.

pytest puts tests/ on sys.path (the default "prepend" import mode, tests/ being no package), so test
modules import this one as `metric_testing`.
"""

from __future__ import annotations

import math

import pytest
import torch

from labelspace.relations import Relation

SIZES = (2, 5, 16, 64, 128)
DIMS = (3, 32)
SEEDS = range(6)
GRID = [(seed, size, dim) for seed in range(4) for size in SIZES for dim in DIMS]


def import_pml(*submodules: str) -> tuple:
    """pytorch_metric_learning.<name> for each name; skips the calling test module where PML is not installed."""
    return tuple(pytest.importorskip(f"pytorch_metric_learning.{name}") for name in submodules)


def random_batch(seed: int, size: int, dim: int, dtype: torch.dtype = torch.float64, *, via_float64: bool = False):
    """Embeddings and 1-D labels with 2..size classes (so small batches often have no positive pair).

    With via_float64 the embeddings are drawn in float64 and cast to dtype, so batches of every dtype
    hold the same values (torch draws different numbers for different dtypes).
    """
    generator = torch.Generator().manual_seed(seed)
    classes = int(torch.randint(2, size + 1, (1,), generator=generator))
    labels = torch.randint(0, classes, (size,), generator=generator)
    drawn_dtype = torch.float64 if via_float64 else dtype
    embeddings = torch.randn(size, dim, generator=generator, dtype=drawn_dtype).to(dtype)
    return embeddings, labels


def permutation_batch(
    seed: int,
    size: int,
    dim: int,
    *,
    multi_label: bool = True,
    num_labels: int | None = None,
    num_classes: int | None = None,
    density: float = 0.4,
    dtype: torch.dtype = torch.float64,
):
    """Embeddings, labels and a random permutation of the batch, all from one seeded generator.

    Labels are multi-hot (num_labels columns, each set with probability density) or, without
    multi_label, class ids below num_classes.
    """
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(size, dim, generator=generator, dtype=dtype)
    if multi_label:
        labels = (torch.rand(size, num_labels, generator=generator) < density).long()
    else:
        labels = torch.randint(0, num_classes, (size,), generator=generator)
    return embeddings, labels, torch.randperm(size, generator=generator)


def duplicated_and_zero_batch(dtype: torch.dtype, copies=(3,), antipodes=()):
    """12 x 8 embeddings from the global generator: rows `copies` repeat row 0, rows `antipodes` are -row 0,
    rows 7 and 8 are zero; cast to dtype. Returned with their class ids and two-label multi-hot labels."""
    embeddings = torch.randn(12, 8, dtype=torch.float64)
    for row in copies:
        embeddings[row] = embeddings[0]
    for row in antipodes:
        embeddings[row] = -embeddings[0]
    embeddings[7] = 0
    embeddings[8] = 0
    labels = torch.tensor([0, 0, 1, 0, 1, 2, 2, 3, 3, 1, 0, 2])
    multi = torch.nn.functional.one_hot(labels) | torch.nn.functional.one_hot((labels + 1) % 4)
    return embeddings.to(dtype), labels, multi


def value_and_grad(loss_fn, embeddings, labels=None, indices_tuple=None):
    """The loss (detached) and its gradient with respect to a fresh leaf copy of embeddings."""
    embeddings = embeddings.detach().clone().requires_grad_(True)
    loss = loss_fn(embeddings, labels, indices_tuple)
    (grad,) = torch.autograd.grad(loss, embeddings)
    return loss.detach(), grad


def assert_parity(
    ours,
    theirs,
    embeddings,
    labels=None,
    indices_tuple=None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    float64_tol: float | None = None,
    grad_atol: float = 1e-4,
    grad_rtol: float = 1e-4,
    check_dtype: bool = True,
    cast_theirs: bool = True,
    scale_grads: bool = False,
    near_kink=None,
) -> bool:
    """Our loss and PML's agree in value and gradient on the same inputs; returns whether it compared them.

    float64 embeddings: both libraries run in float64 and must agree to float64_tol (else atol / rtol).
    float32 (or lower) embeddings: PML runs on the same values in float64, an exact reference, and our
    float32 result must be within atol / rtol (gradients grad_atol / grad_rtol) of it. Comparing with
    PML's own float32 result instead would make the test depend on two libraries' rounding, which the
    CPU's instruction set (AVX2 / AVX-512 kernels, FMA) and thread count change.

    near_kink(embeddings64) -> bool: whether some pair or triplet of the batch lies within float32 rounding
    of a point where the loss or its gradient jumps (a hinge counted by a non-zero mean, a histogram bin
    edge). Which side float32 lands on is then up to the CPU, so such a batch is not compared in float32
    (the float64 comparison covers it) and False is returned.

    check_dtype: our loss has the embeddings' dtype. cast_theirs: (float64) PML's loss is cast to our
    dtype before comparing, else the dtypes must match. scale_grads: compare gradients divided by
    max(1, largest PML gradient entry), for losses with large gradients.
    """
    exact = embeddings.dtype == torch.float64
    reference_embeddings = embeddings if exact else embeddings.double()
    if not exact and near_kink is not None and near_kink(reference_embeddings):
        return False
    our_loss, our_grad = value_and_grad(ours, embeddings, labels, indices_tuple)
    their_loss, their_grad = value_and_grad(theirs, reference_embeddings, labels, indices_tuple)
    if check_dtype:
        assert our_loss.dtype == embeddings.dtype
    if exact:
        if cast_theirs:
            their_loss = their_loss.to(our_loss.dtype)
        if float64_tol is not None:
            atol = rtol = float64_tol
    else:
        our_loss, our_grad = our_loss.double(), our_grad.double()
    torch.testing.assert_close(our_loss, their_loss, atol=atol, rtol=rtol)
    if scale_grads:
        scale = max(1.0, their_grad.abs().max().item())
        our_grad, their_grad = our_grad / scale, their_grad / scale
    torch.testing.assert_close(our_grad, their_grad, atol=grad_atol, rtol=grad_rtol)
    return True


KINK_TOL = 1e-5
"""How near (times max(1, |kink|)) a kink float32 rounding may bring a distance or similarity: ~100 float32
eps of a unit-scale value, over ten times the rounding seen in a float32 distance matrix (<= 1e-6)."""


def entries_near(matrix: torch.Tensor, kinks, tol: float = KINK_TOL) -> torch.Tensor:
    """Which off-diagonal entries of a (float64) B x B matrix lie within tol * max(1, |kink|) of a kink."""
    near = torch.zeros(matrix.shape, dtype=torch.bool)
    for kink in kinks:
        near |= (matrix - kink).abs() <= tol * max(1.0, abs(kink))
    return near.fill_diagonal_(False)


def mining_tol(dtype: torch.dtype) -> float:
    """How far from a miner's threshold a float64 value may be and still be mined differently by us and by
    PML: each library rounds its own way (our matrix products, PML's cdist; the CPU's kernels), by up to
    ~1e-6 for a float32 distance (more for distances near 0, through the square root), ~1e-15 in float64."""
    return 1e-10 if dtype == torch.float64 else 1e-4


def assert_same_up_to(ours, theirs, ambiguous) -> None:
    """The same index tuples (lists of (a, p[, n]) tuples), except ones for which ambiguous(t) holds:
    items whose exact value is so near a threshold or a tie that float rounding decides."""
    unexplained = sorted(t for t in set(ours) ^ set(theirs) if not ambiguous(t))
    assert not unexplained, f"mined by only one library, not near a threshold: {unexplained[:10]}"


def index_rows(indices) -> list[tuple[int, ...]]:
    """A miner's output (2 or 3 index tensors) as a list of tuples."""
    return list(zip(*(t.tolist() for t in indices), strict=True))


def random_pair_subset(labels: torch.Tensor, seed: int):
    """A random half of all positive and negative pairs, without duplicates."""
    generator = torch.Generator().manual_seed(seed)
    a1, p, a2, n = Relation.from_labels(labels).pair_indices()
    keep_positive = torch.rand(len(a1), generator=generator) < 0.5
    keep_negative = torch.rand(len(a2), generator=generator) < 0.5
    return a1[keep_positive], p[keep_positive], a2[keep_negative], n[keep_negative]


def pml_returns_zero_for(indices_tuple) -> bool:
    """pytorch-metric-learning's GenericPairLoss returns 0 when every index list has at most one entry."""
    return all(len(indices) <= 1 for indices in indices_tuple)


def both_directions(pairs):
    """The (i, j) pairs followed by their (j, i) reverses."""
    return pairs + [(j, i) for i, j in pairs]


def multi_hot(label_sets, num_labels=3):
    """Multi-hot rows (num_labels columns) for a list of label sets."""
    return torch.tensor([[int(k in labels) for k in range(num_labels)] for labels in label_sets])


def cosine(u, v):
    """Cosine similarity of two 2-D points, in plain Python."""
    return (u[0] * v[0] + u[1] * v[1]) / (math.hypot(*u) * math.hypot(*v))


def assert_finite(loss, grad):
    """Loss and gradient hold no inf or nan."""
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()


def assert_finite_with_gradient(loss_fn, embeddings, labels):
    """Backpropagates loss_fn(embeddings, labels); asserts a finite loss and gradient, returns both."""
    embeddings = embeddings.detach().clone().requires_grad_(True)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss).item()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()
    return loss.detach(), embeddings.grad
