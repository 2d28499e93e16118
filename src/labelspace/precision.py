"""Half precision in, float32 out: the one upcast every loss and miner computes with.

exp, cdist and sorting in float16 / bfloat16 overflow, lose ties or lack CPU kernels, so the
metric losses, text losses and miners lift half-precision embeddings to float32 through
`upcast_half` and leave float32 and float64 as they are.

Example:
    >>> import torch
    >>> upcast_half(torch.ones(2, 3, dtype=torch.float16)).dtype
    torch.float32
    >>> upcast_half(torch.ones(2, 3, dtype=torch.float64)).dtype
    torch.float64
"""

from __future__ import annotations

import torch

__all__ = ["HALF_DTYPES", "upcast_half"]

HALF_DTYPES = (torch.float16, torch.bfloat16)


def upcast_half(embeddings: torch.Tensor) -> torch.Tensor:
    """The embeddings a loss computes with: half precision is lifted to float32, other dtypes kept.

    exp and cdist in float16/bfloat16 overflow or lack CPU kernels. The float32 gradient is
    saturated to the half type's finite range before it is cast back: a zero embedding's L2
    normalisation has a gradient of order 1 / eps = 1e12, which float16 would turn into inf.
    """
    if not embeddings.dtype.is_floating_point:
        raise ValueError(f"embeddings must be a floating point tensor, got dtype {embeddings.dtype}")
    if embeddings.dtype not in HALF_DTYPES:
        return embeddings
    work = embeddings.float()
    if work.requires_grad:
        largest = torch.finfo(embeddings.dtype).max
        work.register_hook(lambda grad: grad.clamp(-largest, largest))
    return work
