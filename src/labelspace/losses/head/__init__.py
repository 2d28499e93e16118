"""Head losses: ``loss(logits, targets)`` on the B x L outputs of a classification head.

- `BCEHeadLoss`: binary cross entropy (multi-label), per-label ``pos_weight`` (or ``"auto"``
  from training label frequencies, see `compute_pos_weight`) and label smoothing.
- `FocalLoss`: sigmoid focal loss, torchvision's formula.
- `AsymmetricLoss`: ASL (Ridnik et al. 2021), the official implementation's formula.
- `SoftmaxHeadLoss`: cross entropy for single-label heads (class ids or score rows).
- `RegressionHeadLoss`: mean squared error for regression heads.

Targets are in [0, 1] and may be soft (annotator agreement). All compute in float32 with
log-sigmoid, so extreme logits give finite values and gradients.

Example:
    >>> import torch
    >>> from labelspace.losses.head import AsymmetricLoss, BCEHeadLoss, FocalLoss
    >>> logits = torch.tensor([[3.0, -2.0], [-1.0, 0.5]])
    >>> targets = torch.tensor([[1.0, 0.0], [0.3, 1.0]])
    >>> [bool(loss(logits, targets) > 0) for loss in (BCEHeadLoss(), FocalLoss(), AsymmetricLoss())]
    [True, True, True]
"""

from labelspace.losses.head.asymmetric import AsymmetricLoss
from labelspace.losses.head.bce import (
    BCEHeadLoss,
    HeadLoss,
    RegressionHeadLoss,
    SoftmaxHeadLoss,
    compute_pos_weight,
)
from labelspace.losses.head.focal import FocalLoss

__all__ = [
    "AsymmetricLoss",
    "BCEHeadLoss",
    "FocalLoss",
    "HeadLoss",
    "RegressionHeadLoss",
    "SoftmaxHeadLoss",
    "compute_pos_weight",
]
