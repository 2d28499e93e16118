"""Similarity and distance matrices between embeddings.

Same semantics and defaults as pytorch-metric-learning's distances, so a loss configured with
``distance=CosineSimilarity()`` means the same thing in both libraries:

- `LpDistance` (default for most losses): p-norm distance, embeddings L2-normalised first
  unless ``normalize_embeddings=False``; smaller means closer.
- `DotProductSimilarity`: dot product; larger means closer (``is_inverted``). As in
  pytorch-metric-learning, embeddings are normalised by default; pass
  ``normalize_embeddings=False`` for the raw dot product.
- `CosineSimilarity`: dot product of L2-normalised embeddings.

Example:
    >>> import torch
    >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> CosineSimilarity()(embeddings).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> round(LpDistance()(embeddings)[0, 1].item(), 4)
    1.4142
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.precision import HALF_DTYPES


class BaseDistance(torch.nn.Module):
    """A B x B' matrix of distances (or similarities, when ``is_inverted``)."""

    is_inverted = False

    def __init__(self, normalize_embeddings: bool = True, p: float = 2, power: float = 1) -> None:
        super().__init__()
        self.normalize_embeddings = normalize_embeddings
        self.p = p
        self.power = power

    def forward(self, query: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if query.dim() != 2:
            raise ValueError(f"embeddings must be 2-D (batch x dim), got shape {tuple(query.shape)}")
        query_normalized = self.maybe_normalize(query)
        reference_normalized = query_normalized if reference is None else self.maybe_normalize(reference)
        matrix = self.compute_matrix(query_normalized, reference_normalized)
        if self.power != 1:
            matrix = matrix**self.power
        return matrix

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pairwise(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Distance between row i of ``first`` and row i of ``second`` (already normalised)."""
        raise NotImplementedError

    def maybe_normalize(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings, p=self.p, dim=1) if self.normalize_embeddings else embeddings

    def margin(self, closer: torch.Tensor, farther: torch.Tensor) -> torch.Tensor:
        """How much ``farther`` is farther than ``closer`` (positive when ordered right)."""
        return closer - farther if self.is_inverted else farther - closer

    def smallest(self, *args, **kwargs):  # noqa: ANN002, ANN003
        """max for similarities, min for distances: the 'closest' reduction."""
        return torch.max(*args, **kwargs) if self.is_inverted else torch.min(*args, **kwargs)

    def largest(self, *args, **kwargs):  # noqa: ANN002, ANN003
        """min for similarities, max for distances: the 'farthest' reduction."""
        return torch.min(*args, **kwargs) if self.is_inverted else torch.max(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"normalize_embeddings={self.normalize_embeddings}, p={self.p}, power={self.power}"


def _over_twice_root(grad: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """d sqrt(x) chain rule, grad / (2 root), taken as 0 where the root is 0 (torch.cdist's convention)."""
    return torch.where(root > 0, grad / (2 * root), torch.zeros((), dtype=grad.dtype, device=grad.device))


class _ClampedSqrt(torch.autograd.Function):
    """sqrt(max(x, 0)) with gradient 0 where the root is 0 (as torch.cdist's), not inf."""

    @staticmethod
    def forward(ctx, squared: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        root = squared.clamp(min=0).sqrt_()
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (root,) = ctx.saved_tensors
        return _over_twice_root(grad, root)


class _SelfEuclidean(torch.autograd.Function):
    """The B x B Euclidean distances of a batch to itself, with a one-matrix-product backward.

    Forward: d_ij = sqrt(max(|x_i|^2 + |x_j|^2 - 2 x_i.x_j, 0)), d_ii = 0. Backward with
    G = dL/dd masked to d > 0 and divided by 2d, H = G + G^T:
    dL/dx = 2 (x * rowsum(H) - H x), and only one B x B tensor (d) is kept for it.
    """

    @staticmethod
    def forward(ctx, embeddings: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        norms = (embeddings * embeddings).sum(dim=1, keepdim=True)
        squared = torch.addmm(norms, embeddings, embeddings.T, alpha=-2).add_(norms.T)
        squared.diagonal().zero_()
        root = squared.clamp_(min=0).sqrt_()
        ctx.save_for_backward(embeddings, root)
        return root

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        embeddings, root = ctx.saved_tensors
        scaled = _over_twice_root(grad, root)
        row_sums = scaled.sum(dim=1, keepdim=True) + scaled.sum(dim=0)[:, None]
        # (G + G^T) x as two products: BLAS reads G^T in place, cheaper than materialising it
        products = torch.addmm(scaled @ embeddings, scaled.T, embeddings)
        return 2 * (embeddings * row_sums - products)


def euclidean_distance_matrix(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """sqrt(|x|^2 + |y|^2 - 2 x.y), clamped at 0: the formula torch.cdist uses for large inputs.

    Written with matrix products so that the backward pass is matrix products too (one B x B
    tensor kept for it); torch.cdist's own backward is an elementwise kernel several times slower.
    An item's distance to itself (``reference is query``) is exactly 0, with gradient 0.
    """
    if reference is query:
        return _SelfEuclidean.apply(query)
    query_norms = (query * query).sum(dim=1, keepdim=True)
    reference_norms = (reference * reference).sum(dim=1)
    squared = torch.addmm(query_norms, query, reference.T, alpha=-2).add_(reference_norms)
    return _ClampedSqrt.apply(squared)


class LpDistance(BaseDistance):
    """p-norm distance (Euclidean by default) between (normalised) embeddings."""

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        half = query.dtype in HALF_DTYPES and query.device.type == "cpu"
        work_query, work_reference = (query.float(), reference.float()) if half else (query, reference)
        if self.p == 2:
            matrix = euclidean_distance_matrix(work_query, work_reference)
        else:
            matrix = torch.cdist(work_query, work_reference, p=self.p)
        # half precision has no CPU cdist kernel: computed in float32, returned in the input dtype
        return matrix.to(query.dtype) if half else matrix

    def pairwise(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return F.pairwise_distance(first, second, p=self.p)


class DotProductSimilarity(BaseDistance):
    """Dot product; larger is closer (normalised embeddings by default, as in pytorch-metric-learning)."""

    is_inverted = True

    def __init__(self, normalize_embeddings: bool = True, p: float = 2, power: float = 1) -> None:
        super().__init__(normalize_embeddings=normalize_embeddings, p=p, power=power)

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return query @ reference.T

    def pairwise(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return (first * second).sum(dim=1)


class CosineSimilarity(DotProductSimilarity):
    """Cosine similarity: the dot product of L2-normalised embeddings."""

    def __init__(self, power: float = 1) -> None:
        super().__init__(normalize_embeddings=True, p=2, power=power)
