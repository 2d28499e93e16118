"""Head losses: BCE (pos_weight, label smoothing), focal, asymmetric, softmax and regression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelspace.data.labels import LabelMatrix
from labelspace.losses.head import (
    AsymmetricLoss,
    BCEHeadLoss,
    FocalLoss,
    RegressionHeadLoss,
    SoftmaxHeadLoss,
    compute_pos_weight,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def random_batch(seed: int = 0, rows: int = 6, cols: int = 5, soft: bool = False):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, cols, generator=generator) * 3
    if soft:
        targets = torch.rand(rows, cols, generator=generator)
    else:
        targets = (torch.rand(rows, cols, generator=generator) < 0.4).float()
    return logits, targets


def torchvision_sigmoid_focal_loss(inputs, targets, alpha: float = 0.25, gamma: float = 2.0):
    """torchvision.ops.sigmoid_focal_loss, reduction 'none', transcribed in plain torch."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


def official_asl(x, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """Alibaba-MIIL/ASL losses.AsymmetricLoss.forward, transcribed (0/1 targets); returns -loss.sum()."""
    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt = xs_pos * y + xs_neg * (1 - y)
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        loss = loss * torch.pow(1 - pt, one_sided_gamma)
    return -loss.sum()


# ---------------------------------------------------------------------------------------------- BCE


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_matches_torch(reduction):
    logits, targets = random_batch(1)
    pos_weight = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])
    got = BCEHeadLoss(pos_weight, reduction=reduction)(logits, targets)
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction=reduction)
    torch.testing.assert_close(got, expected)


def test_bce_hand_computed_with_pos_weight_and_label_smoothing():
    logits = [[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]]
    targets = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    weights = [2.0, 1.0, 0.5]
    eps = 0.2
    total = 0.0
    for row in range(2):
        for col in range(3):
            x, t, w = logits[row][col], targets[row][col], weights[col]
            smoothed = t * (1 - eps) + eps / 2  # 1 -> 0.9, 0 -> 0.1
            total += -(w * smoothed * math.log(sigmoid(x)) + (1 - smoothed) * math.log(1 - sigmoid(x)))
    loss = BCEHeadLoss(torch.tensor(weights), label_smoothing=eps)
    got = loss(torch.tensor(logits), torch.tensor(targets))
    assert float(got) == pytest.approx(total / 6, rel=1e-6)
    # first element by hand: x=2, t'=0.9, w=2 -> -(2*0.9*log s(2) + 0.1*log s(-2))
    first = BCEHeadLoss(torch.tensor(weights), label_smoothing=eps, reduction="none")(
        torch.tensor(logits), torch.tensor(targets)
    )[0, 0]
    assert float(first) == pytest.approx(1.8 * 0.126928 + 0.1 * 2.126928, abs=1e-5)


def test_label_smoothing_matches_torch_on_smoothed_targets():
    logits, targets = random_batch(2)
    got = BCEHeadLoss(label_smoothing=0.1)(logits, targets)
    expected = F.binary_cross_entropy_with_logits(logits, targets * 0.9 + 0.05)
    torch.testing.assert_close(got, expected)


def test_auto_pos_weight_by_hand():
    dense = np.array(
        [
            [1, 0, 1, 0],
            [1, 0, 0, 0],
            [1, 0, 1, 0],
            [1, 1, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    # label 0: 4 pos, 1 neg -> 1/4 (clipped up to 1/3); label 1: 1 pos, 4 neg -> 4 (clipped down to 3);
    # label 2: 2 pos, 3 neg -> 1.5; label 3: no positives -> 1.
    expected = [1 / 3, 3.0, 1.5, 1.0]
    matrix = LabelMatrix.from_dense(dense)
    for labels in (matrix, dense, torch.from_numpy(dense)):
        assert compute_pos_weight(labels, max_weight=3.0).tolist() == pytest.approx(expected)
    assert compute_pos_weight(dense).tolist() == pytest.approx([0.25, 4.0, 1.5, 1.0])
    assert BCEHeadLoss(pos_weight="auto", train_labels=matrix, max_pos_weight=3.0).pos_weight.tolist() == (
        pytest.approx(expected)
    )
    assert BCEHeadLoss.from_labels(matrix, max_pos_weight=3.0).pos_weight.tolist() == pytest.approx(expected)


def test_auto_pos_weight_clips_from_below_and_errors():
    all_positive = np.ones((4, 2), dtype=int)
    assert compute_pos_weight(all_positive, max_weight=10).tolist() == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError, match="train_labels"):
        BCEHeadLoss(pos_weight="auto")
    with pytest.raises(ValueError, match="0/1"):
        compute_pos_weight(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="pos_weight"):
        BCEHeadLoss(pos_weight="balanced")
    with pytest.raises(ValueError, match="entries"):
        BCEHeadLoss(torch.ones(3))(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="label_smoothing"):
        BCEHeadLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="reduction"):
        BCEHeadLoss(reduction="mean_nonzero")
    with pytest.raises(ValueError, match="shape"):
        BCEHeadLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_pos_weight_is_a_buffer_that_moves_with_the_module():
    loss = BCEHeadLoss(torch.tensor([1.0, 2.0]))
    assert "pos_weight" in dict(loss.named_buffers())
    assert loss.to(torch.float64).pos_weight is not None


# -------------------------------------------------------------------------------------------- focal


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.0, 0.25), (1.5, -1.0), (0.5, 0.75)])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_matches_torchvision_formula(gamma, alpha, soft):
    logits, targets = random_batch(3, soft=soft)
    expected = torchvision_sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    got = FocalLoss(gamma=gamma, alpha=alpha, reduction="none")(logits, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(FocalLoss(gamma, alpha)(logits, targets), expected.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        FocalLoss(gamma, alpha, reduction="sum")(logits, targets), expected.sum(), rtol=1e-5, atol=1e-6
    )


def test_focal_hand_computed():
    loss = FocalLoss(gamma=2.0, alpha=0.25, reduction="none")
    values = loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]]))
    # x=0, t=1: p=0.5, ce=log 2, (1-p_t)^2 = 0.25, alpha_t = 0.25 -> log(2) / 16
    assert float(values[0, 0]) == pytest.approx(math.log(2) / 16, rel=1e-6)
    # x=2, t=0: p = s(2), ce = -log(1 - p), (1 - p_t) = p, alpha_t = 0.75
    p = sigmoid(2.0)
    assert float(values[0, 1]) == pytest.approx(0.75 * -math.log(1 - p) * p**2, rel=1e-6)
    assert float(values[0, 1]) == pytest.approx(1.237563, rel=1e-5)


def test_focal_gamma_zero_alpha_negative_is_bce():
    logits, targets = random_batch(4, soft=True)
    torch.testing.assert_close(
        FocalLoss(gamma=0.0, alpha=-1.0)(logits, targets), F.binary_cross_entropy_with_logits(logits, targets)
    )


def test_focal_rejects_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.5)


# --------------------------------------------------------------------------------------- asymmetric


def test_asl_hand_computed_2x2():
    logits = torch.tensor([[0.0, 3.0], [-2.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clip = 0.05
    # positives: -log(p) (1 - p)^1 ; negatives: -log(1 - p_m) p_m^4 with p_m = p - 0.05
    pos_00 = -math.log(0.5) * 0.5
    p = sigmoid(3.0)
    neg_01 = -math.log(1 - (p - clip)) * (p - clip) ** 4
    p = sigmoid(-2.0)
    neg_10 = -math.log(1 - (p - clip)) * (p - clip) ** 4
    p = sigmoid(1.0)
    pos_11 = -math.log(p) * (1 - p)
    expected = [[pos_00, neg_01], [neg_10, pos_11]]
    values = AsymmetricLoss(reduction="none")(logits, targets)
    assert values.tolist() == [[pytest.approx(v, rel=1e-5) for v in row] for row in expected]
    total = sum(sum(row) for row in expected)
    assert total == pytest.approx(1.97626, rel=1e-4)
    assert float(AsymmetricLoss(reduction="sum")(logits, targets)) == pytest.approx(total, rel=1e-5)
    assert float(AsymmetricLoss()(logits, targets)) == pytest.approx(total / 4, rel=1e-5)


@pytest.mark.parametrize(("gamma_neg", "gamma_pos", "clip"), [(4.0, 1.0, 0.05), (2.0, 0.0, 0.2), (0.0, 0.0, 0.0)])
def test_asl_matches_official_implementation(gamma_neg, gamma_pos, clip):
    logits, targets = random_batch(5, rows=16, cols=7)
    logits[0, :3] = torch.tensor([-30.0, 25.0, 0.0])  # hits the eps clamp
    expected = official_asl(logits, targets, gamma_neg, gamma_pos, clip)
    got = AsymmetricLoss(gamma_neg, gamma_pos, clip, reduction="sum")(logits, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_asl_without_focusing_and_shift_is_bce():
    logits, targets = random_batch(6)
    plain = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0, eps=0.0, reduction="sum")
    torch.testing.assert_close(
        plain(logits, targets), F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    )
    mean = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0, eps=0.0)
    torch.testing.assert_close(mean(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_asl_soft_targets_weigh_the_two_terms():
    logits, targets = random_batch(7, soft=True)
    p = torch.sigmoid(logits)
    p_m = (p - 0.05).clamp_min(0)
    expected = -(targets * torch.log(p) * (1 - p) + (1 - targets) * torch.log(1 - p_m) * p_m**4)
    torch.testing.assert_close(AsymmetricLoss(reduction="none")(logits, targets), expected, rtol=1e-5, atol=1e-6)


def test_asl_rejects_bad_arguments():
    with pytest.raises(ValueError, match="clip"):
        AsymmetricLoss(clip=1.0)
    with pytest.raises(ValueError, match="gamma"):
        AsymmetricLoss(gamma_neg=-1.0)


# ------------------------------------------------------------------------------- soft / numerics


def test_soft_targets_bce_matches_torch():
    logits, targets = random_batch(8, soft=True)
    torch.testing.assert_close(
        BCEHeadLoss(torch.full((5,), 2.0))(logits, targets),
        F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.full((5,), 2.0)),
    )


ALL_LOSSES = [
    BCEHeadLoss(),
    BCEHeadLoss(torch.tensor([3.0, 0.5, 100.0, 1.0]), label_smoothing=0.1),
    FocalLoss(),
    FocalLoss(gamma=0.5, alpha=-1.0),
    AsymmetricLoss(),
    AsymmetricLoss(gamma_neg=0.5, gamma_pos=0.3, clip=0.0, eps=0.0),
    AsymmetricLoss(gamma_neg=0.5, gamma_pos=0.5, clip=0.1),
]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_extreme_logits_give_finite_values_and_gradients(loss):
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0], [1e4, -1e4, 0.0, 50.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 1.0, 0.0]])
    value = loss(logits, targets)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(loss, dtype):
    logits, targets = random_batch(9, rows=4, cols=4, soft=True)
    half = logits.to(dtype).requires_grad_()
    value = loss(half, targets.to(dtype))
    assert value.dtype == torch.float32
    expected = loss(half.detach().float(), targets.to(dtype).float())
    torch.testing.assert_close(value, expected)
    value.backward()
    assert half.grad.dtype == dtype
    assert torch.isfinite(half.grad.float()).all()


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_empty_batch_is_zero(loss):
    logits = torch.zeros(0, 4, requires_grad=True)
    value = loss(logits, torch.zeros(0, 4))
    assert float(value.detach()) == 0.0
    value.backward()


def test_losses_decrease_toward_the_targets():
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    for loss in (BCEHeadLoss(), FocalLoss(), AsymmetricLoss()):
        good = loss(torch.tensor([[4.0, -4.0, 4.0]]), targets)
        bad = loss(torch.tensor([[-4.0, 4.0, -4.0]]), targets)
        assert float(good) < float(bad)


# ---------------------------------------------------------------------------- softmax / regression


def test_softmax_loss_matches_cross_entropy():
    logits, _ = random_batch(10)
    classes = torch.tensor([0, 4, 2, 2, 1, 3])
    torch.testing.assert_close(
        SoftmaxHeadLoss(label_smoothing=0.1)(logits, classes), F.cross_entropy(logits, classes, label_smoothing=0.1)
    )
    one_hot = F.one_hot(classes, 5).float()
    torch.testing.assert_close(SoftmaxHeadLoss()(logits, one_hot), F.cross_entropy(logits, classes))
    assert SoftmaxHeadLoss(reduction="none")(logits, classes).shape == (6,)


def test_softmax_loss_normalises_soft_rows():
    logits = torch.tensor([[0.0, 1.0, -1.0]])
    votes = torch.tensor([[2.0, 1.0, 1.0]])  # three annotators: 50% / 25% / 25%
    log_p = torch.log_softmax(logits, dim=1)[0]
    expected = -(0.5 * log_p[0] + 0.25 * log_p[1] + 0.25 * log_p[2])
    torch.testing.assert_close(SoftmaxHeadLoss()(logits, votes), expected)
    with pytest.raises(ValueError, match="positive score"):
        SoftmaxHeadLoss()(logits, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="class ids"):
        SoftmaxHeadLoss()(logits, torch.tensor([3]))


def test_softmax_extreme_logits_and_half():
    logits = torch.tensor([[100.0, -100.0], [-1e4, 1e4]], dtype=torch.float16, requires_grad=True)
    value = SoftmaxHeadLoss(label_smoothing=0.1)(logits, torch.tensor([1, 0]))
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(logits.grad.float()).all()


def test_regression_loss_is_mse():
    logits, targets = random_batch(11)
    torch.testing.assert_close(RegressionHeadLoss()(logits, targets), F.mse_loss(logits, targets))
    assert RegressionHeadLoss(reduction="none")(logits, targets).shape == logits.shape
