"""Fused, memory-saving autograd kernels behind the metric losses (one module per loss).

Each metric loss in `labelspace.losses.metric` opens with a short reference implementation that
reads like its formula; the kernel here computes the same value and gradient in cache-sized row
blocks without keeping B x B temporaries for the backward pass. The loss picks the kernel
automatically where it applies, and a test checks kernel against reference for every loss.
"""

from __future__ import annotations

from labelspace.distances import BaseDistance, CosineSimilarity, DotProductSimilarity, LpDistance

BUILTIN_DISTANCES = (LpDistance, DotProductSimilarity, CosineSimilarity)
"""The distances whose matrix, ``margin`` and ``smallest`` / ``largest`` the kernels reproduce."""


def builtin_distance(distance: BaseDistance) -> bool:
    """Whether ``distance`` is one of labelspace's own distances (its exact type, not a subclass).

    The kernels read a distance only through its matrix and ``is_inverted`` flag (the triplet kernel
    also recomputes `LpDistance` / dot products of single rows): a subclass may redefine ``margin``,
    ``smallest`` or the matrix, so it gets the loss's reference implementation, which calls them.

    Example:
        >>> class Scaled(LpDistance):
        ...     def margin(self, closer, farther):
        ...         return 2 * super().margin(closer, farther)
        >>> builtin_distance(LpDistance()), builtin_distance(Scaled())
        (True, False)
    """
    return type(distance) in BUILTIN_DISTANCES
