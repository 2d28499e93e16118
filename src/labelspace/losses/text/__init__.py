"""Text losses on embeddings: the functional core of sentence-transformers' losses.

The encoder call stays outside, so any model's embeddings can be used:
`MultipleNegativesRankingLoss` (``loss(anchors, positives, *negatives, labels=None)``, with
multi-label false-negative masking), `CoSENTLoss` and `AnglELoss` (``loss(embeddings1,
embeddings2, scores)``).

Example:
    >>> import torch
    >>> from labelspace.losses.text import CoSENTLoss, MultipleNegativesRankingLoss
    >>> g = torch.Generator().manual_seed(0)
    >>> anchors, positives = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    >>> bool(MultipleNegativesRankingLoss()(anchors, positives) > 0)
    True
    >>> bool(CoSENTLoss()(anchors, positives, torch.tensor([0.1, 0.9, 0.4, 0.0])) > 0)
    True
"""

from labelspace.losses.text.pairs import AnglELoss, CoSENTLoss
from labelspace.losses.text.ranking import MultipleNegativesRankingLoss

__all__ = ["AnglELoss", "CoSENTLoss", "MultipleNegativesRankingLoss"]
