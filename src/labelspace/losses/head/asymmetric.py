"""Asymmetric loss (Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.losses.head.bce import HeadLoss, HeadReduction, log_clamped, prepare
from labelspace.losses.head.focal import modulating_power


class AsymmetricLoss(HeadLoss):
    """ASL: separate focusing for positives and negatives, and probability shifting of negatives.

    Per element (x a logit, y its target in [0, 1], p = sigmoid(x), m = clip)::

        p_m = max(p - m, 0)                                   (shifted probability of negatives)
        l   = -[ y log(p) (1 - p)^gamma_pos + (1 - y) log(1 - p_m) p_m^gamma_neg ]

    as the official implementation (Alibaba-MIIL/ASL, ``losses.AsymmetricLoss``), including its
    probability clamp: the logs are ``log(max(p, eps))`` and ``log(max(1 - p_m, eps))``, computed
    here in log space with log-sigmoid (``eps=0`` removes the clamp). The official code returns
    ``-loss.sum()``, the **sum** over batch and labels: that is ``reduction="sum"``. This class
    defaults to ``reduction="mean"`` (the sum divided by B x L), which keeps the learning rate
    independent of batch size and label count; pass ``reduction="sum"`` to reproduce the reference.

    For 0/1 targets this is exactly the reference. For soft targets the two terms are weighted
    by y and 1 - y as written above (the reference mixes p_t and gamma across the terms, which is
    only meaningful for 0/1 targets). Gradients flow through the focusing weights (the reference's
    ``disable_torch_grad_focal_loss=False``). With gamma_neg = gamma_pos = 0, clip = 0 and eps = 0
    the loss is BCE with logits. Computed in float32.

    Args:
        gamma_neg, gamma_pos: focusing parameters of negatives and positives (>= 0).
        clip: probability margin m in [0, 1) for negatives; 0 disables the shift.
        eps: the probability clamp of the logs (0 to disable).
        reduction: ``"mean"`` over all B x L elements, ``"sum"`` (the reference) or ``"none"``.

    Example:
        >>> import torch
        >>> loss = AsymmetricLoss(reduction="sum")
        >>> logits = torch.tensor([[0.0, 3.0], [-2.0, 1.0]])
        >>> targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> round(float(loss(logits, targets)), 4)
        1.9762
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        reduction: HeadReduction = "mean",
    ) -> None:
        super().__init__(reduction)
        gamma_neg, gamma_pos, clip, eps = float(gamma_neg), float(gamma_pos), float(clip), float(eps)
        if not (gamma_neg >= 0 and gamma_pos >= 0):
            raise ValueError(f"gamma_neg and gamma_pos must be >= 0, got {gamma_neg} and {gamma_pos}")
        if not 0 <= clip < 1:
            raise ValueError(f"clip must lie in [0, 1), got {clip}")
        if not 0 <= eps < 1:
            raise ValueError(f"eps must lie in [0, 1), got {eps}")
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = prepare(logits, targets)
        probability = torch.sigmoid(logits)
        log_p = log_clamped(F.logsigmoid(logits), self.eps)
        if self.clip > 0:
            shifted = (probability - self.clip).clamp_min(0)  # p_m
            # 1 - p_m = min(sigmoid(-x) + m, 1) >= m: its log is finite without log-sigmoid.
            log_not_shifted = log_clamped(torch.log((torch.sigmoid(-logits) + self.clip).clamp_max(1)), self.eps)
        else:
            shifted = probability
            log_not_shifted = log_clamped(F.logsigmoid(-logits), self.eps)
        positive = targets * log_p * modulating_power(torch.sigmoid(-logits), self.gamma_pos)
        negative = (1 - targets) * log_not_shifted * modulating_power(shifted, self.gamma_neg)
        return self.reduce(-(positive + negative))

    def extra_repr(self) -> str:
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, eps={self.eps}, "
            f"reduction={self.reduction!r}"
        )
