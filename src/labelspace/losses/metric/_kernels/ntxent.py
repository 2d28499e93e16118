"""The NT-Xent loss's memory-saving kernel: one masked logsumexp per anchor, O(B^2).

`NTXentLoss.reference` puts each positive pair's logit beside all of its anchor's negatives, a
P x B matrix for P positive pairs (O(B^3) for a batch of a few classes, as pytorch-metric-learning's
positives x negatives matrix). Since every positive of an anchor competes with the same negatives,

    -log softmax = softplus(lse_a - s_ap / T),        lse_a = logsumexp_(n in N(a)) s_an / T

needs one logsumexp per row of the B x B logits: time and memory O(B^2), and the graph keeps one
B x B float matrix.
"""

from __future__ import annotations

import torch

__all__ = ["ntxent_pair_losses"]


def ntxent_pair_losses(
    logits: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(anchors, positives, losses)`` of every positive pair, anchor-major, from the B x B logits s / T.

    ``logits`` must be the caller's own temporary: it is masked in place. A pair whose anchor has no
    negative costs 0.
    """
    anchors, positives = torch.where(positive)
    positive_logits = logits[anchors, positives]  # indexing saves the indices, not `logits`
    # Keep only each anchor's negatives for its logsumexp. Rows without any negative stay
    # finite (a row of -inf would give a NaN gradient) and their lse is set to -inf below.
    has_negative = negative.any(dim=1)
    logits.masked_fill_(~negative & has_negative[:, None], float("-inf"))
    lse = torch.logsumexp(logits, dim=1)
    lse = torch.where(has_negative, lse, torch.full_like(lse, float("-inf")))
    # softplus(lse - s) = log(1 + exp(lse - s)): -log softmax of the positive, 0 when the anchor has no
    # negative. logaddexp(0, .) is exact everywhere (F.softplus switches to the identity above 20).
    margins = lse[anchors] - positive_logits
    return anchors, positives, torch.logaddexp(torch.zeros_like(margins), margins)
