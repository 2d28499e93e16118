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


class LpDistance(BaseDistance):
    """p-norm distance (Euclidean by default) between (normalised) embeddings."""

    def compute_matrix(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if query.dtype in (torch.float16, torch.bfloat16) and query.device.type == "cpu":
            # cdist has no half-precision CPU kernel: compute in float32, return the input dtype.
            return torch.cdist(query.float(), reference.float(), p=self.p).to(query.dtype)
        return torch.cdist(query, reference, p=self.p)

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
