"""The FastAP histogram kernel: soft histograms in O(B^2) memory by scattering each distance into its two bins.

Computes what `labelspace.losses.metric.fastap.soft_histograms` computes from a (num_bins + 1) x B
x B tensor of triangular pulses: a distance at t bins (t = d / delta) gives 1 - |t - k| to the
bins k = floor(t) and floor(t) + 1 only, so each distance is scattered into those two bins (a
handful of B x B tensors, no pulse tensor). For the default squared Euclidean distance the
positions come from one matrix product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.distances import BaseDistance

__all__ = ["fastap_histograms"]


def _positions(embeddings: torch.Tensor, distance: BaseDistance, delta: float) -> torch.Tensor:
    """B x B distances in bin units, d / delta."""
    if distance.power != 2:
        return distance(embeddings) / delta
    # squared distance in bin units, (|x|^2 + |y|^2 - 2 x.y) / delta, as one matrix product of
    # [x, |x|^2, 1] and [-2 y, 1, |y|^2] / delta (|x| is 1, or 0 for a zero embedding)
    normalized = distance.maybe_normalize(embeddings)
    norms = normalized.pow(2).sum(dim=1, keepdim=True)
    ones = torch.ones_like(norms)
    left = torch.cat([normalized, norms, ones], dim=1)
    right = torch.cat([normalized * (-2.0 / delta), ones / delta, norms / delta], dim=1)
    return left @ right.T


def fastap_histograms(
    embeddings: torch.Tensor, distance: BaseDistance, positive: torch.Tensor, negative: torch.Tensor, num_bins: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each anchor's soft histograms of its positives' and negatives' distances, two B x (num_bins + 1) tensors.

    ``distance`` is an `LpDistance` (p=2, normalised) whose values lie in [0, 2**power]; bin
    centres are 0, delta, ..., 2**power with delta = 2**power / num_bins. Differentiable w.r.t.
    ``embeddings``.

    Example:
        >>> from labelspace.distances import LpDistance
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # squared distances 2, 4, 2
        >>> positive = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]]).bool()
        >>> negative = torch.tensor([[0, 0, 1], [0, 0, 1], [1, 1, 0]]).bool()
        >>> positives, negatives = fastap_histograms(embeddings, LpDistance(power=2), positive, negative, 2)
        >>> positives.tolist(), negatives.tolist()  # bin centres 0, 2, 4
        ([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    """
    size, dtype, device = embeddings.shape[0], embeddings.dtype, embeddings.device
    bins = num_bins
    position = _positions(embeddings, distance, 2.0**distance.power / bins)
    # A distance at position t (in bins) puts a triangular pulse 1 - |t - k| on bins k = floor(t) and
    # floor(t) + 1 only: weights 1 - frac and frac. Outside [0, bins] (rounding) it is clamped in.
    position = position.clamp(0, bins)
    lower = position.detach().long().clamp_(0, bins - 1)  # clamp_ also keeps a NaN in range
    fraction = position - lower
    # One scatter for both histograms: columns [0, bins) positives, [bins, 2 bins) negatives, rest ignored.
    column = torch.where(positive, 0, torch.where(negative, bins, 2 * bins)).add_(lower)
    with torch.no_grad():
        counts = torch.zeros(size, 3 * bins, dtype=dtype, device=device)
        counts.scatter_add_(1, column, torch.ones((), dtype=dtype, device=device).expand(size, size))
    fractions = torch.zeros(size, 3 * bins, dtype=dtype, device=device).scatter_add(1, column, fraction)

    def histogram(part: int) -> torch.Tensor:
        # bin k gets (1 - frac) from the distances with floor(t) = k and frac from those with floor(t) = k - 1
        count = counts[:, part * bins : (part + 1) * bins]
        weight = fractions[:, part * bins : (part + 1) * bins]
        return F.pad(count - weight, (0, 1)) + F.pad(weight, (1, 0))

    return histogram(0), histogram(1)
