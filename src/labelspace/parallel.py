"""Data-parallel helpers: process-group setup, gathering embeddings with their gradients, gradient averaging.

labelspace runs data-parallel training without ``DistributedDataParallel``: every process embeds
its own share of the batch, in-batch losses gather the embeddings of all processes (with their
gradients, so each process's gradient covers the whole global batch), and after backward the
gradients are averaged across processes. Launch with ``torchrun`` (gloo on CPU, NCCL on GPUs);
with a single process every helper here is the identity. This module sits in the bottom layer
(it imports only torch), so losses, objectives and the trainer can all use it.

Example:
    >>> import torch
    >>> is_distributed(), world_size(), rank()
    (False, 1, 0)
    >>> gather_with_grad(torch.ones(2, 3)).shape  # one process: unchanged
    torch.Size([2, 3])
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "average_gradients",
    "broadcast_parameters",
    "gather_with_grad",
    "gather_without_grad",
    "init_from_environment",
    "is_distributed",
    "is_main_process",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0: the process that logs, evaluates and writes checkpoints."""
    return rank() == 0


def init_from_environment() -> bool:
    """Join the process group described by torchrun's environment (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...).

    Uses NCCL when CUDA is available and gloo otherwise. Returns True when a group with more than one
    process is active afterwards; without torchrun's variables it does nothing and returns False.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return is_distributed()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, in rank order, keeping the autograd graph.

    The backward pass sums the gradients that all processes computed for each slice and hands
    every process the gradient of its own slice. Every process must pass a tensor of the same
    shape. Without a process group the tensor is returned unchanged.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every process's gradient and keeps this process's rows.

    Written out rather than ``torch.distributed.nn.functional.all_gather`` (deprecated, and a warning
    on every call): the backward is a reduce-scatter on NCCL and an all-reduce elsewhere (gloo has
    no reduce-scatter), which gives the same rows.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        rank, rows = dist.get_rank(), ctx.rows
        if dist.get_backend() == dist.Backend.NCCL:
            local = torch.empty((rows, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(local, grad, op=dist.ReduceOp.SUM)
            return local
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[rank * rows : (rank + 1) * rows]


def gather_without_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (labels, scores) from every process along dim 0, without gradient."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce over a flat buffer)."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for grad in grads:
        count = grad.numel()
        grad.copy_(flat[offset : offset + count].view_as(grad))
        offset += count


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (same start everywhere)."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)
