"""CoSENTLoss and AnglELoss on embeddings: ranking losses for scored sentence pairs.

The functional core of sentence-transformers' ``CoSENTLoss`` and ``AnglELoss`` (pair inputs).
The encoder call stays outside: pass the embeddings of any model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.losses.base import check_embeddings
from labelspace.precision import upcast_half

__all__ = ["AnglELoss", "CoSENTLoss", "pairwise_angle_similarity", "pairwise_cosine_similarity"]


def pairwise_cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos(x_i, y_i) for each row i."""
    return (F.normalize(x, p=2, dim=-1) * F.normalize(y, p=2, dim=-1)).sum(dim=-1)


def pairwise_angle_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AnglE's similarity ``|cos(x_i, y_i) + sin(x_i, y_i)|`` of L2-normalised rows.

    With the halves ``x = (u, v)`` and ``y = (w, z)`` of the normalised vectors (dimension d pairs
    with d + D/2, seen as the complex number u + iv), cos = x . y and sin = v . w - u . z. An odd
    dimension is padded with one zero, as in sentence-transformers.
    """
    if x.shape[-1] % 2:
        x = F.pad(x, (0, 1))
        y = F.pad(y, (0, 1))
    x = F.normalize(x, p=2, dim=-1)
    y = F.normalize(y, p=2, dim=-1)
    u, v = x.chunk(2, dim=-1)
    w, z = y.chunk(2, dim=-1)
    cosines = (x * y).sum(dim=-1)
    sines = (v * w - u * z).sum(dim=-1)
    return (cosines + sines).abs()


class CoSENTLoss(torch.nn.Module):
    r"""CoSENT: rank the pairs' similarities in the order of their gold scores.

    For pairs :math:`(u_i, v_i)` with gold scores :math:`y_i` and similarities
    :math:`\sigma_i = \mathrm{sim}(u_i, v_i)` (cosine; AnglE's angle similarity for `AnglELoss`),

    .. math::

        L = \log\Big(1 + \sum_{(i, j):\, y_i > y_j} \exp\big(s\,(\sigma_j - \sigma_i)\big)\Big)

    where s is ``scale``: every pair ranked above another by the gold scores should have the
    larger similarity. Equal to sentence-transformers' ``CoSENTLoss(model, scale)`` on the same
    embeddings. The sum is over all ordered pairs of the batch (B x B terms), computed as one
    logsumexp, so large differences do not overflow.

    Args:
        scale: the inverse temperature s (sentence-transformers' default 20.0).

    Example:
        >>> import torch
        >>> from labelspace.losses.text import CoSENTLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> left, right = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> scores = torch.tensor([1.0, 0.2, 0.6, 0.0])
        >>> bool(CoSENTLoss()(left, right, scores) > 0)
        True
        >>> float(CoSENTLoss()(left, left, torch.ones(4)))  # no ordered pair: log(1) = 0
        0.0
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def similarity(self, embeddings1: torch.Tensor, embeddings2: torch.Tensor) -> torch.Tensor:
        return pairwise_cosine_similarity(embeddings1, embeddings2)

    def forward(self, embeddings1: torch.Tensor, embeddings2: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The loss of the pairs (embeddings1[i], embeddings2[i]) with gold ``scores[i]`` (see the class docstring)."""
        check_embeddings(embeddings1, "embeddings1", allow_empty=True)  # 2-D, finite
        check_embeddings(embeddings2, "embeddings2", allow_empty=True)
        if embeddings1.shape != embeddings2.shape:
            raise ValueError(
                f"embeddings1 and embeddings2 must have the same shape, got {tuple(embeddings1.shape)} "
                f"and {tuple(embeddings2.shape)}"
            )
        batch = embeddings1.shape[0]
        scores = torch.as_tensor(scores, device=embeddings1.device)
        if scores.numel() != batch:
            raise ValueError(f"{type(self).__name__} expects {batch} scores (one per pair), got {scores.numel()}")
        scores = scores.reshape(-1)
        if scores.dtype == torch.bool:
            scores = scores.int()
        sims = self.similarity(upcast_half(embeddings1), upcast_half(embeddings2)) * self.scale
        # differences[i, j] = s * (sigma_j - sigma_i), kept where y_i > y_j.
        differences = sims[None, :] - sims[:, None]
        ordered = scores[:, None] > scores[None, :]
        differences = differences.masked_fill(~ordered, float("-inf"))
        terms = torch.cat([sims.new_zeros(1), differences.reshape(-1)])
        return torch.logsumexp(terms, dim=0)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class AnglELoss(CoSENTLoss):
    r"""AnglE: `CoSENTLoss` with the angle similarity ``|cos + sin|`` (see `pairwise_angle_similarity`).

    .. math::

        L = \log\Big(1 + \sum_{(i, j):\, y_i > y_j} \exp\big(s\,(\alpha_j - \alpha_i)\big)\Big),
        \qquad \alpha_i = |\cos(u_i, v_i) + \sin(u_i, v_i)|

    Equal to sentence-transformers' ``AnglELoss(model, scale)`` on pairs of the same embeddings.

    Args:
        scale: the inverse temperature s (sentence-transformers' default 20.0).

    Example:
        >>> import torch
        >>> from labelspace.losses.text import AnglELoss
        >>> g = torch.Generator().manual_seed(0)
        >>> left, right = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> bool(AnglELoss()(left, right, torch.tensor([1.0, 0.2, 0.6, 0.0])) > 0)
        True
    """

    def similarity(self, embeddings1: torch.Tensor, embeddings2: torch.Tensor) -> torch.Tensor:
        return pairwise_angle_similarity(embeddings1, embeddings2)
