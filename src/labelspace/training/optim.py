"""The optimizer and the learning-rate schedule of a training run.

- `parameter_groups`: AdamW groups. Encoder weights get ``weight_decay``; biases and LayerNorm
  weights (`NO_DECAY`) get none. The classification head has its own learning rate
  (`TrainingArguments.head_lr`) and no decay; trainable parameters of the losses (learned
  temperatures, proxies) train at the encoder's rate without decay.
- `build_optimizer`: ``torch.optim.AdamW`` over those groups.
- `lr_lambda` / `build_scheduler`: linear warmup over ``warmup`` steps, then linear or cosine
  decay to 0 at ``total`` steps, or a constant rate.

Example:
    >>> factor = lr_lambda("linear", warmup=2, total=10)
    >>> [round(factor(step), 3) for step in (0, 1, 2, 6, 10)]
    [0.333, 0.667, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from labelspace.models.model import LabelspaceModel
from labelspace.training.arguments import TrainingArguments

__all__ = ["NO_DECAY", "build_optimizer", "build_scheduler", "lr_lambda", "parameter_groups", "warmup_steps"]

#: Parameter names containing one of these get no weight decay.
NO_DECAY: tuple[str, ...] = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def parameter_groups(
    model: LabelspaceModel, losses: Iterable[nn.Module], args: TrainingArguments
) -> list[dict[str, Any]]:
    """AdamW parameter groups (encoder with and without decay, head, losses); empty groups left out."""
    decay_params, plain_params = [], []
    for name, parameter in model.encoder.named_parameters():
        if parameter.requires_grad:
            (plain_params if any(key in name for key in NO_DECAY) else decay_params).append(parameter)
    groups: list[dict[str, Any]] = [
        {"params": decay_params, "weight_decay": args.weight_decay, "lr": args.learning_rate},
        {"params": plain_params, "weight_decay": 0.0, "lr": args.learning_rate},
    ]
    if model.head is not None:
        groups.append({"params": list(model.head.parameters()), "weight_decay": 0.0, "lr": args.head_lr()})
    loss_params = [p for loss in losses for p in loss.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "weight_decay": 0.0, "lr": args.learning_rate})
    return [group for group in groups if group["params"]]


def build_optimizer(model: LabelspaceModel, losses: Iterable[nn.Module], args: TrainingArguments) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`."""
    return torch.optim.AdamW(parameter_groups(model, losses, args), lr=args.learning_rate)


def warmup_steps(args: TrainingArguments, total_steps: int) -> int:
    """``warmup_steps``, or ``warmup_ratio`` of the run's steps."""
    return args.warmup_steps if args.warmup_steps is not None else int(args.warmup_ratio * total_steps)


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor of each step: ``(step + 1) / (warmup + 1)`` while warming up, then the decay."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: TrainingArguments, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with `lr_lambda` of ``args.scheduler`` over ``total_steps`` optimizer steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(args.scheduler, warmup_steps(args, total_steps), total_steps)
    )
