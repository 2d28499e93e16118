"""Sigmoid focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelspace.losses.head.bce import HeadLoss, HeadReduction, prepare


def modulating_power(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` for base in [0, 1] with finite gradients: 1 for gamma 0, base kept off 0 for gamma < 1."""
    if gamma == 0:
        return torch.ones_like(base)
    if gamma < 1:
        # d/db b^gamma = gamma b^(gamma - 1) is infinite at b = 0 (an exactly saturated sigmoid): inf * 0 = NaN.
        base = base.clamp_min(torch.finfo(base.dtype).tiny)
    return base.pow(gamma)


class FocalLoss(HeadLoss):
    """Sigmoid focal loss for multi-label heads, the formula of ``torchvision.ops.sigmoid_focal_loss``.

    Per element (x a logit, t its target in [0, 1], p = sigmoid(x))::

        ce      = -[ t log p + (1 - t) log(1 - p) ]          (binary_cross_entropy_with_logits)
        1 - p_t = p (1 - t) + (1 - p) t                      (= 1 - [p t + (1 - p)(1 - t)])
        a_t     = alpha t + (1 - alpha)(1 - t)               (1 when alpha < 0: no weighting)
        l       = a_t ce (1 - p_t)^gamma

    With gamma = 0 and alpha < 0 this is plain BCE. Soft targets are used as is in every term, as
    torchvision does. ``1 - p_t`` is formed from sigmoid(x) and sigmoid(-x) rather than as
    ``1 - p_t`` so that it does not round to 0 for confident logits; everything is float32.

    Args:
        gamma: focusing parameter (>= 0); larger down-weights easy elements more.
        alpha: weight of positives in [0, 1] (negatives get 1 - alpha); a negative value disables it.
        reduction: ``"mean"`` over all B x L elements (torchvision's default is ``"none"``),
            ``"sum"`` or ``"none"``.

    Example:
        >>> import torch
        >>> loss = FocalLoss(gamma=2.0, alpha=0.25)
        >>> logits = torch.tensor([[0.0, 3.0], [-2.0, 1.0]])
        >>> targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
        >>> round(float(loss(logits, targets)), 4)
        0.1428
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, reduction: HeadReduction = "mean") -> None:
        super().__init__(reduction)
        gamma, alpha = float(gamma), float(alpha)
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha > 1:
            raise ValueError(f"alpha must lie in [0, 1] (or be negative to disable it), got {alpha}")
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = prepare(logits, targets)
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        one_minus_pt = torch.sigmoid(logits) * (1 - targets) + torch.sigmoid(-logits) * targets
        values = ce * modulating_power(one_minus_pt, self.gamma)
        if self.alpha >= 0:
            values = (self.alpha * targets + (1 - self.alpha) * (1 - targets)) * values
        return self.reduce(values)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"
