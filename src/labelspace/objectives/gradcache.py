"""GradCache: in-batch losses over large batches in the memory of one mini-batch.

In-batch losses couple every item of a batch to every other one, so the batch cannot simply be
split for gradient accumulation. GradCache (Gao et al. 2021, https://arxiv.org/abs/2101.06983)
splits the work in three steps instead:

1. embed every column in mini-batches *without* gradients (only one mini-batch of activations is
   ever alive), remembering the random-number state before each mini-batch;
2. compute the loss on the detached embeddings and backpropagate it to them: the gradient
   :math:`g = \\partial L / \\partial e` of every embedding is cached (the loss itself is computed
   over row chunks of ``mini_batch_size`` anchors, so its B x B logits are never all alive either);
3. when the caller backpropagates the returned loss, re-embed each mini-batch *with* gradients
   under the restored random state (dropout draws the same masks, so the embeddings are exactly
   those of step 1) and backpropagate the cached gradient through it:
   :math:`\\partial L / \\partial \\theta = \\sum_{\\text{mini-batches}} g^\\top \\, \\partial e / \\partial \\theta`.

The value and the parameter gradients equal those of the plain loss; peak memory is that of one
mini-batch plus the B x d embeddings. `grad_cache_loss` implements the three steps once for every
cached loss (`labelspace.objectives.cached.CachedMultipleNegativesRankingLoss`,
`labelspace.objectives.gist.CachedGISTEmbedLoss`): a loss only supplies the loss of a chunk of anchor rows.

Example:
    >>> list(row_chunks(5, 2))
    [(0, 2), (2, 4), (4, 5)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from labelspace import parallel as distributed
from labelspace.objectives.base import encoder_of

__all__ = [
    "MiniBatch",
    "RandomState",
    "RowLoss",
    "check_mini_batch_size",
    "embed_mini_batches",
    "grad_cache_loss",
    "row_chunks",
]

#: ``row_loss(embeddings, begin, end)``: the summed loss of anchor rows ``begin:end`` divided by the batch size.
RowLoss = Callable[[list[torch.Tensor], int, int], torch.Tensor]


def check_mini_batch_size(mini_batch_size: Any) -> int:
    """``mini_batch_size`` as an int, or a ValueError when it is not an integer >= 1."""
    if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be an integer >= 1, got {mini_batch_size!r}")
    return mini_batch_size


def row_chunks(size: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``(begin, end)`` of consecutive chunks of at most ``chunk`` rows covering ``range(size)``."""
    for begin in range(0, size, chunk):
        yield begin, min(begin + chunk, size)


def _autocast_state(device_type: str) -> tuple[bool, torch.dtype | None]:
    try:
        return bool(torch.is_autocast_enabled(device_type)), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):  # torch < 2.4: only the CUDA state is queryable
        if device_type == "cuda" and torch.is_autocast_enabled():
            return True, torch.get_autocast_gpu_dtype()
        return False, None


class RandomState:
    """A snapshot of the CPU random generator (and of the CUDA generator of ``device``), replayable later.

    Example:
        >>> import torch
        >>> state = RandomState(torch.device("cpu"))
        >>> first = torch.rand(3)
        >>> with state.restored():
        ...     again = torch.rand(3)
        >>> torch.equal(first, again)
        True
    """

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda_index: int | None = None
        self.cuda: torch.Tensor | None = None
        if device.type == "cuda":
            self.cuda_index = device.index if device.index is not None else torch.cuda.current_device()
            self.cuda = torch.cuda.get_rng_state(self.cuda_index)

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Run the block from the snapshot's state; the generators are put back as they were afterwards."""
        devices = [] if self.cuda_index is None else [self.cuda_index]
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.cuda_index)
            yield


@dataclass
class MiniBatch:
    """One embedded mini-batch of a column: its rows, tokenised features, random state and autocast state."""

    begin: int
    end: int
    features: dict[str, torch.Tensor]
    random_state: RandomState | None
    autocast: tuple[bool, torch.dtype | None]

    @contextmanager
    def replaying(self, device_type: str) -> Iterator[None]:
        """The random and autocast state of the first pass (for the re-embedding with gradients)."""
        enabled, dtype = self.autocast
        restore = self.random_state.restored() if self.random_state is not None else nullcontext()
        cast = torch.autocast(device_type, dtype=dtype, enabled=True) if enabled else nullcontext()
        with restore, cast:
            yield


def _progress(items: Sequence[Any], show: bool, desc: str) -> Any:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def embed_mini_batches(
    encoder: nn.Module,
    texts: Sequence[str],
    mini_batch_size: int,
    *,
    record: bool = False,
    show_progress_bar: bool = False,
) -> tuple[torch.Tensor, list[MiniBatch]]:
    """Embed ``texts`` mini-batch by mini-batch without gradients: (B x d embeddings, the mini-batches).

    Each mini-batch is tokenised on its own (padded to its longest text). With ``record``, the
    random state before each mini-batch is kept so that `MiniBatch.replaying` reproduces the pass.
    """
    device = encoder.device
    device_type = device.type
    chunks = list(row_chunks(len(texts), mini_batch_size))
    batches: list[MiniBatch] = []
    outputs: list[torch.Tensor] = []
    for begin, end in _progress(chunks, show_progress_bar, "Embed mini-batches"):
        features = {key: value.to(device) for key, value in encoder.tokenize(list(texts[begin:end])).items()}
        state = RandomState(device) if record else None
        with torch.no_grad():
            outputs.append(encoder(features))
        batches.append(MiniBatch(begin, end, features, state, _autocast_state(device_type)))
    if not outputs:
        raise ValueError("cannot embed an empty column")
    return torch.cat(outputs, dim=0), batches


class _Replay:
    """Step 3: re-embed every mini-batch with gradients and pull the cached gradients through the encoder."""

    def __init__(
        self,
        encoder: nn.Module,
        columns: list[list[MiniBatch]],
        gradients: list[torch.Tensor | None],
        parameters: list[nn.Parameter],
        show_progress_bar: bool,
    ) -> None:
        self.encoder = encoder
        self.columns = columns
        self.gradients = gradients
        self.parameters = parameters
        self.show_progress_bar = show_progress_bar

    def __call__(self, grad_output: torch.Tensor) -> None:
        device_type = self.encoder.device.type
        work = [
            (batch, gradient)
            for batches, gradient in zip(self.columns, self.gradients, strict=True)
            if gradient is not None
            for batch in batches
        ]
        self.columns, self.gradients = [], []  # one backward only: the features and cached gradients go with it
        with torch.enable_grad():
            for batch, gradient in _progress(work, self.show_progress_bar, "Re-embed mini-batches"):
                with batch.replaying(device_type):
                    embeddings = self.encoder(batch.features)
                cached = gradient[batch.begin : batch.end].to(embeddings.device)
                # The surrogate sum(e * g) has gradient g^T de/dtheta; float32 at least, so half
                # precision replays do not round the cached gradient. Its backward accumulates into
                # the parameters' .grad directly: no extra parameter-sized buffers.
                dtype = torch.promote_types(embeddings.dtype, torch.float32)
                surrogate = (embeddings.to(dtype) * cached.to(dtype)).sum() * grad_output.to(dtype)
                torch.autograd.backward(surrogate, inputs=self.parameters)


class _GradCacheFunction(torch.autograd.Function):
    """Returns the precomputed loss; its backward runs `_Replay`, which accumulates into the parameters' ``.grad``.

    The parameters are inputs only so that the loss requires grad exactly when they do: their
    gradients are accumulated by the replay itself, mini-batch by mini-batch, and the function
    hands back None for them (so ``torch.autograd.grad(loss, parameters)`` is not supported: use
    ``backward()``, as the trainer does).
    """

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, replay: _Replay, *parameters: torch.Tensor) -> torch.Tensor:
        ctx.replay = replay
        return value.detach().clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        replay: _Replay | None = ctx.replay
        if replay is None:
            raise RuntimeError("a GradCache loss can be backpropagated only once (its cached gradients are spent)")
        ctx.replay = None
        replay(grad_output)
        return (None, None, *(None for _ in replay.parameters))


def _chunked(row_loss: RowLoss, embeddings: list[torch.Tensor], chunk: int, backward: bool) -> torch.Tensor:
    """Sum of ``row_loss`` over row chunks, each chunk's graph backpropagated and freed when ``backward``."""
    total: torch.Tensor | None = None
    for begin, end in row_chunks(embeddings[0].shape[0], chunk):
        part = row_loss(embeddings, begin, end)
        if backward:
            part.backward()
            part = part.detach()
        total = part if total is None else total + part
    assert total is not None
    return total


def grad_cache_loss(
    model: nn.Module,
    columns: Sequence[Sequence[str]],
    row_loss: RowLoss,
    *,
    mini_batch_size: int,
    show_progress_bar: bool = False,
) -> torch.Tensor:
    """The GradCache loss of ``columns`` (lists of texts) under ``model``: its value, with a backward that trains.

    ``row_loss(embeddings, begin, end)`` receives one B x d tensor per column (gathered across
    processes in a ``torchrun`` job) and returns the summed loss of anchor rows ``begin:end``
    divided by B, so the sum over chunks is the batch loss. Without gradient mode (evaluation) or
    without trainable parameters, the value is returned as a plain tensor. Otherwise the returned
    scalar's backward re-embeds the mini-batches and accumulates the parameters' gradients, scaled
    by the incoming gradient (loss weights, gradient-accumulation division, fp16 loss scaling).
    """
    encoder = encoder_of(model)
    parameters = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    training = torch.is_grad_enabled() and bool(parameters)
    embedded = [
        embed_mini_batches(encoder, texts, mini_batch_size, record=training, show_progress_bar=show_progress_bar)
        for texts in columns
    ]
    if not training:
        with torch.no_grad():
            gathered = [distributed.gather_with_grad(embeddings) for embeddings, _ in embedded]
            return _chunked(row_loss, gathered, mini_batch_size, backward=False)

    leaves = [embeddings.detach().requires_grad_() for embeddings, _ in embedded]
    with torch.enable_grad():
        if distributed.is_distributed():
            # Loss on the global batch: gradients of the gathered copies flow back through the
            # gather (summed over the processes) into this process's own leaves.
            gathered = [distributed.gather_with_grad(leaf) for leaf in leaves]
            work = [tensor.detach().requires_grad_() for tensor in gathered]
            value = _chunked(row_loss, work, mini_batch_size, backward=True)
            used = [(tensor, copy.grad) for tensor, copy in zip(gathered, work, strict=True) if copy.grad is not None]
            torch.autograd.backward([tensor for tensor, _ in used], [grad for _, grad in used])
        else:
            value = _chunked(row_loss, leaves, mini_batch_size, backward=True)
    gradients = [leaf.grad for leaf in leaves]
    replay = _Replay(encoder, [batches for _, batches in embedded], gradients, parameters, show_progress_bar)
    return _GradCacheFunction.apply(value, replay, *parameters)
