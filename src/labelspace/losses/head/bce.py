"""Binary cross entropy (multi-label), softmax cross entropy (single-label) and MSE (regression) head losses.

Head losses are called ``loss(logits, targets)``: ``logits`` is B x L, ``targets`` is B x L with
values in [0, 1] (0/1 labels, or soft scores such as annotator agreement); `SoftmaxHeadLoss`
also takes 1-D class ids. Everything is computed in float32 (float16/bfloat16 logits are lifted
first) with log-sigmoid / log-softmax, so logits of +-100 give finite losses and gradients. The
returned loss is float32.

Reductions (the ``reduction`` argument): ``"mean"`` over all B x L elements (B rows for
`SoftmaxHeadLoss`), ``"sum"``, or ``"none"`` for the unreduced tensor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from labelspace.losses.reduction import check_reduction as check_any_reduction
from labelspace.losses.reduction import reduce
from labelspace.precision import upcast_half

if TYPE_CHECKING:
    from labelspace.data.labels import LabelMatrix

HeadReduction = Literal["mean", "sum", "none"]
HEAD_REDUCTIONS = ("mean", "sum", "none")
DEFAULT_MAX_POS_WEIGHT = 100.0


def check_reduction(reduction: str) -> None:
    """A ValueError unless ``reduction`` is one the head losses offer (`HEAD_REDUCTIONS`)."""
    check_any_reduction(reduction, HEAD_REDUCTIONS)


def float32_logits(logits: torch.Tensor) -> torch.Tensor:
    """The logits a head loss computes with: floating point, half precision lifted to float32."""
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
        kind = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating point tensor, got {kind}")
    return upcast_half(logits)


def check_target_range(targets: torch.Tensor, what: str, *, high: float | None = 1.0) -> None:
    """Refuse targets below 0 or above ``high`` (None: no upper bound) or NaN, naming the first one and its place.

    ``what`` says what the targets should be, for the message. One vectorised check (one sync on a GPU).

    Example:
        >>> check_target_range(torch.tensor([[0.0, 1.0], [1.5, 0.2]]), "0/1 labels or soft scores in [0, 1]")
        Traceback (most recent call last):
        ...
        ValueError: targets must be 0/1 labels or soft scores in [0, 1], got 1.5 at row 1, column 0 (1 value outside)
    """
    inside = targets >= 0  # False for NaN
    if high is not None:
        inside &= targets <= high
    if not targets.numel() or bool(inside.all()):
        return
    outside = ~inside
    place = torch.nonzero(outside)[0].tolist()
    where = f"row {place[0]}, column {place[1]}" if len(place) == 2 else f"position {place[0]}"
    count = int(outside.sum())
    raise ValueError(
        f"targets must be {what}, got {float(targets[tuple(place)]):g} at {where} "
        f"({count} value{'s' if count > 1 else ''} outside)"
    )


def prepare(
    logits: torch.Tensor, targets: torch.Tensor, *, unit_targets: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check B x L logits and targets of the same shape; return them in the dtype to compute in.

    With ``unit_targets`` (every classification head loss) targets outside [0, 1] are refused:
    the losses' formulas only mean something for 0/1 labels and probabilities.
    """
    logits = float32_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (batch x num_labels), got shape {tuple(logits.shape)}")
    targets = torch.as_tensor(targets, device=logits.device)
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets must have the logits' shape {tuple(logits.shape)}, got {tuple(targets.shape)}; "
            "multi-label targets are a B x num_labels matrix of values in [0, 1]"
        )
    if unit_targets:
        check_target_range(targets, "0/1 labels or soft scores in [0, 1]")
    targets = targets.to(logits.dtype)
    return logits, targets


def reduce_head(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """``"mean"`` over all elements, ``"sum"``, or ``"none"``; an empty batch gives 0 (never NaN)."""
    return reduce(values, reduction, values)  # type: ignore[arg-type]


def positive_counts(labels: LabelMatrix | np.ndarray | torch.Tensor | Any) -> tuple[np.ndarray, int]:
    """Per-label positive counts and the number of items of a LabelMatrix or a dense n x L 0/1 array."""
    if hasattr(labels, "label_counts") and hasattr(labels, "shape"):
        counts = np.asarray(labels.label_counts(), dtype=np.float64)
        return counts, int(labels.shape[0])
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(f"labels must be a LabelMatrix or a 2-D n x num_labels 0/1 array, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        raise ValueError("labels must hold 0/1 values only to compute label frequencies")
    return array.sum(axis=0).astype(np.float64), int(array.shape[0])


def compute_pos_weight(
    labels: LabelMatrix | np.ndarray | torch.Tensor, max_weight: float = DEFAULT_MAX_POS_WEIGHT
) -> torch.Tensor:
    """Per-label positive weights ``negatives / positives`` from training labels, for `BCEHeadLoss`.

    ``weight_l = min(n_neg_l / n_pos_l, max_weight)``; a label with no positive in the training
    data gets 1 (there is nothing to up-weight). Weights are clipped to ``[1 / max_weight,
    max_weight]``: a label positive on (nearly) every item would otherwise get a weight of 0 and its
    positives would stop counting. Labels may be a `LabelMatrix` or a dense n x L 0/1 array (numpy
    or torch). Returns a float32 tensor of L weights.

    Example:
        >>> import numpy as np
        >>> compute_pos_weight(np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])).tolist()
        [3.0, 1.0, 0.3333333432674408]
    """
    if not max_weight >= 1:
        raise ValueError(f"max_weight must be at least 1, got {max_weight}")
    positives, n = positive_counts(labels)
    negatives = n - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    weight = np.clip(weight, 1.0 / max_weight, max_weight)
    return torch.as_tensor(weight, dtype=torch.float32)


class HeadLoss(torch.nn.Module):
    """Base of the head losses: validates ``reduction`` and reduces per-element values."""

    def __init__(self, reduction: HeadReduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: HeadReduction = reduction

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        return reduce_head(values, self.reduction)


def check_label_smoothing(label_smoothing: float) -> float:
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    return label_smoothing


class BCEHeadLoss(HeadLoss):
    """Binary cross entropy with logits for multi-label heads, with positive weights and label smoothing.

    Per element (x a logit, t its target in [0, 1], w the label's positive weight)::

        t' = t (1 - eps) + eps / 2                       (label smoothing, eps = label_smoothing)
        l  = -[ w t' log sigmoid(x) + (1 - t') log sigmoid(-x) ]

    which is ``torch.nn.functional.binary_cross_entropy_with_logits(x, t', pos_weight=w)``.

    Args:
        pos_weight: None (all 1), a tensor of L per-label weights, or ``"auto"``: computed from
            ``train_labels`` by `compute_pos_weight` (negatives / positives per label, clipped to
            ``[1 / max_pos_weight, max_pos_weight]``; labels without positives get 1). Same as
            `BCEHeadLoss.from_labels`.
        label_smoothing: eps in [0, 1); targets move toward 1/2.
        reduction: ``"mean"`` over all B x L elements, ``"sum"`` or ``"none"``.
        train_labels: a `LabelMatrix` or dense n x L 0/1 array; required for ``pos_weight="auto"``.
        max_pos_weight: the clip of the automatic weights (default 100).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
        >>> loss = BCEHeadLoss.from_labels(targets, label_smoothing=0.1)
        >>> loss.pos_weight.tolist()
        [1.0, 1.0, 1.0]
        >>> round(float(loss(logits, targets)), 4)
        0.4883
    """

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        pos_weight: torch.Tensor | str | None = None,
        label_smoothing: float = 0.0,
        reduction: HeadReduction = "mean",
        *,
        train_labels: LabelMatrix | np.ndarray | torch.Tensor | None = None,
        max_pos_weight: float = DEFAULT_MAX_POS_WEIGHT,
    ) -> None:
        super().__init__(reduction)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        if isinstance(pos_weight, str):
            if pos_weight != "auto":
                raise ValueError(f"pos_weight must be None, a tensor or 'auto'; got {pos_weight!r}")
            if train_labels is None:
                raise ValueError(
                    "pos_weight='auto' needs the training labels: BCEHeadLoss(pos_weight='auto', "
                    "train_labels=matrix) or BCEHeadLoss.from_labels(matrix)"
                )
            pos_weight = compute_pos_weight(train_labels, max_pos_weight)
        elif train_labels is not None:
            raise ValueError("train_labels is only used with pos_weight='auto'")
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32).detach().clone()
            if pos_weight.dim() > 1 or not bool(torch.isfinite(pos_weight).all()) or bool((pos_weight < 0).any()):
                raise ValueError("pos_weight must be a scalar or a 1-D tensor of finite non-negative weights")
        self.register_buffer("pos_weight", pos_weight)

    @classmethod
    def from_labels(
        cls,
        labels: LabelMatrix | np.ndarray | torch.Tensor,
        *,
        max_pos_weight: float = DEFAULT_MAX_POS_WEIGHT,
        label_smoothing: float = 0.0,
        reduction: HeadReduction = "mean",
    ) -> BCEHeadLoss:
        """A loss whose pos_weight comes from the label frequencies of training labels (`compute_pos_weight`)."""
        return cls(compute_pos_weight(labels, max_pos_weight), label_smoothing, reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = prepare(logits, targets)
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / 2.0
        pos_weight = self.pos_weight
        if pos_weight is not None:
            if pos_weight.dim() == 1 and pos_weight.numel() != logits.shape[1]:
                raise ValueError(f"pos_weight has {pos_weight.numel()} entries but the logits have {logits.shape[1]}")
            pos_weight = pos_weight.to(device=logits.device, dtype=logits.dtype)
        values = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
        return self.reduce(values)

    def extra_repr(self) -> str:
        weighted = "per-label" if self.pos_weight is not None else "None"
        return f"pos_weight={weighted}, label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"


class SoftmaxHeadLoss(HeadLoss):
    """Cross entropy for single-label (softmax) heads, with label smoothing.

    Targets are 1-D class ids (B,) or a B x L matrix of class scores; a score matrix is
    normalised per row to a distribution q (a one-hot row stays one-hot; soft rows such as
    annotator votes become probabilities; a negative score or an all-zero row is an error).
    With eps = label_smoothing::

        q' = q (1 - eps) + eps / L
        l  = -sum_j q'_j log softmax(x)_j           (one value per row)

    which is ``torch.nn.functional.cross_entropy(x, targets, label_smoothing=eps)``. A separate
    class (rather than a flag on `BCEHeadLoss`) because the target format, the smoothing and the
    reduction unit (rows, not elements) all differ. ``"mean"`` averages over the B rows.

    Example:
        >>> import torch
        >>> loss = SoftmaxHeadLoss()
        >>> round(float(loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)
        0.6931
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: HeadReduction = "mean") -> None:
        super().__init__(reduction)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = float32_logits(logits)
        if logits.dim() != 2:
            raise ValueError(f"logits must be 2-D (batch x num_labels), got shape {tuple(logits.shape)}")
        targets = torch.as_tensor(targets, device=logits.device)
        if targets.dim() == 1:
            if targets.shape[0] != logits.shape[0]:
                raise ValueError(f"targets have {targets.shape[0]} class ids but the batch has {logits.shape[0]} rows")
            if targets.dtype.is_floating_point or targets.dtype == torch.bool:
                raise ValueError("1-D targets must be integer class ids")
            if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
                raise ValueError(f"class ids must lie in [0, {logits.shape[1] - 1}]")
            targets = targets.long()
        else:
            if targets.shape != logits.shape:
                raise ValueError(
                    f"targets must be 1-D class ids or have the logits' shape {tuple(logits.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            check_target_range(targets, "class scores >= 0 (one-hot rows, probabilities or votes)", high=None)
            targets = targets.to(logits.dtype)
            totals = targets.sum(dim=1, keepdim=True)
            if targets.numel() and bool((totals <= 0).any()):
                raise ValueError("every row of a single-label target matrix needs a positive score")
            targets = targets / totals
        values = F.cross_entropy(logits, targets, reduction="none", label_smoothing=self.label_smoothing)
        return self.reduce(values)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"


class RegressionHeadLoss(HeadLoss):
    """Mean squared error for regression heads: ``l = (x - t)^2`` per element, computed in float32.

    Targets are B x L real values (any range); ``"mean"`` over all elements matches
    ``torch.nn.functional.mse_loss``.

    Example:
        >>> import torch
        >>> float(RegressionHeadLoss()(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 2.0]])))
        0.5
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        predictions, targets = prepare(logits, targets, unit_targets=False)  # any real value
        return self.reduce((predictions - targets).square())


def log_clamped(log_values: torch.Tensor, eps: float) -> torch.Tensor:
    """``log(max(v, eps))`` from ``log v``: the reference's probability clamp, in log space."""
    return log_values.clamp_min(math.log(eps)) if eps > 0 else log_values
