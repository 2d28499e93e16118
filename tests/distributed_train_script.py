"""Training script for tests/test_distributed.py, run by ``torchrun`` (2 processes) or plainly (1 process).

Usage::

    python -m torch.distributed.run --standalone --nproc_per_node=2 distributed_train_script.py TINY OUT 4
    python distributed_train_script.py TINY OUT 8
    python -m torch.distributed.run ... distributed_train_script.py TINY OUT 4 --gradients-only --wrong-world-size 1

Trains a tiny model (dropout off) for 4 steps on two cases, each in ``OUT/<case>/rank<r>`` (so the test
can see that only rank 0 writes its run folder):

- ``labeled``: `MultiSimilarityLoss` + `BCEHeadLoss` on a toy multi-label dataset;
- ``pairs``: `MultipleNegativesRankingLoss` with the anchors' labels on anchor/positive pairs.

Rank 0 also saves the initial model to ``OUT/<case>/init`` and writes ``OUT/report-rank<r>.json``
(every rank does) with what ``init_from_environment`` returned and, under ``torchrun``, the
results of the collective checks (`gather_with_grad` gradients, `gather_without_grad`,
`average_gradients`, `broadcast_parameters`).

Every run also takes one optimizer step of each case with clipping off and saves the gradients the
optimizer is about to apply (after the Trainer's averaging across processes) to
``OUT/gradients/<case>/rank<r>.safetensors``, with ``rank<r>.json`` counting the calls of
`labelspace.parallel.average_gradients`. ``--gradients-only`` skips the checks and the 4-step
training; ``--wrong-world-size N`` makes the averaging divide by N instead of the number of
processes, to show that the gradient comparison catches a wrong scale.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from labelspace import LabelspaceModel, Trainer, TrainingArguments
from labelspace import parallel as distributed
from labelspace.data import LabeledDataset
from labelspace.data.convert import labeled_to_anchor_positive
from labelspace.losses import BCEHeadLoss, MultipleNegativesRankingLoss, MultiSimilarityLoss
from labelspace.objectives import CombinedLoss
from toy_data import toy_data

STEPS = 4
CASES = ("labeled", "pairs")


def new_model(tiny: Path, data: LabeledDataset) -> LabelspaceModel:
    """The tiny model with a fresh head (seed 0) and every dropout set to 0."""
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0, dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def collective_checks() -> dict[str, Any]:
    """Exercise the helpers of `labelspace.parallel` in the running group; return what they gave."""
    rank, world = distributed.rank(), distributed.world_size()
    local = torch.arange(6, dtype=torch.float64).reshape(3, 2) + 10.0 * rank
    local.requires_grad_(True)
    gathered = distributed.gather_with_grad(local)
    # Rank s's loss weighs the gathered rows with its own coefficients c_s = (s + 1) * (row index + 1):
    # the gradient of rank r's rows must be the sum over s of c_s restricted to r's rows.
    rows = torch.arange(gathered.shape[0], dtype=torch.float64).unsqueeze(1) + 1.0
    ((rank + 1) * rows * gathered).sum().backward()
    labels = torch.tensor([[rank, 1 - rank]], dtype=torch.float32)
    parameter = torch.nn.Parameter(torch.zeros(2))
    parameter.grad = torch.full((2,), float(rank + 1))
    distributed.average_gradients([parameter])
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(float(rank))
    distributed.broadcast_parameters(module)
    return {
        "world": world,
        "gathered": gathered.detach().tolist(),
        "grad": local.grad.tolist(),
        "labels": distributed.gather_without_grad(labels).tolist(),
        "averaged": parameter.grad.tolist(),
        "broadcast": module.weight.detach().tolist(),
    }


def case_data(case: str, tiny: Path) -> tuple[LabelspaceModel, Any, Any]:
    """The fresh model, the train dataset and the loss of ``case``."""
    data = toy_data()
    model = new_model(tiny, data)
    if case == "labeled":
        return model, data, CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)])
    return model, labeled_to_anchor_positive(data, 32, seed=0), MultipleNegativesRankingLoss()


def train_case(case: str, tiny: Path, out: Path, batch_size: int) -> None:
    """Train ``case`` for `STEPS` steps with ``output_dir=out/<case>/rank<r>``."""
    model, train, loss = case_data(case, tiny)
    if distributed.is_main_process():
        model.save(out / case / "init", overwrite=True)
    args = TrainingArguments(
        output_dir=str(out / case / f"rank{distributed.rank()}"),
        batch_size=batch_size,
        max_steps=STEPS,
        sampler="random",
        learning_rate=1e-3,
        show_progress_bar=False,
        logging_steps=1,
    )
    Trainer(model, train, loss, args=args).train()


def divide_by(processes: int) -> None:
    """Make `labelspace.parallel.average_gradients` divide the summed gradients by ``processes`` (a planted bug)."""
    average = distributed.average_gradients

    def wrongly_averaged(parameters: Any) -> None:
        world_size = distributed.world_size
        distributed.world_size = lambda: processes  # what average_gradients divides by
        try:
            average(parameters)
        finally:
            distributed.world_size = world_size

    distributed.average_gradients = wrongly_averaged


def gradient_case(case: str, tiny: Path, out: Path, batch_size: int) -> None:
    """One optimizer step of ``case`` without clipping; save the gradients the optimizer is handed.

    The gradients are read by an optimizer step pre-hook: after backward and the Trainer's averaging
    across processes, before the update. Parameters are named as in the model (``model.*``) or the
    loss (``loss.*``).
    """
    model, train, loss = case_data(case, tiny)
    names = {id(p): f"model.{n}" for n, p in model.named_parameters()}
    names.update({id(p): f"loss.{n}" for n, p in loss.named_parameters()})
    gradients: dict[str, torch.Tensor] = {}

    def keep_gradients(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    gradients[names[id(parameter)]] = parameter.grad.detach().clone()

    calls = [0]
    average = distributed.average_gradients

    def counted(parameters: Any) -> None:
        calls[0] += 1
        average(parameters)

    distributed.average_gradients = counted
    hook = register_optimizer_step_pre_hook(keep_gradients)
    try:
        args = TrainingArguments(
            batch_size=batch_size, max_steps=1, max_grad_norm=None, sampler="random", show_progress_bar=False
        )
        Trainer(model, train, loss, args=args).train()
    finally:
        hook.remove()
        distributed.average_gradients = average
    folder = out / "gradients" / case
    folder.mkdir(parents=True, exist_ok=True)
    rank = distributed.rank()
    save_file(gradients, str(folder / f"rank{rank}.safetensors"))
    record = {"world": distributed.world_size(), "average_gradients_calls": calls[0]}
    (folder / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")


def main(argv: list[str]) -> None:
    """``TINY OUT BATCH_SIZE [--gradients-only] [--wrong-world-size N]``: the checks, training and gradients."""
    tiny, out, batch_size = Path(argv[0]), Path(argv[1]), int(argv[2])
    options = argv[3:]
    torch.set_num_threads(1)
    report: dict[str, Any] = {
        "world_size_env": os.environ.get("WORLD_SIZE"),
        "init": distributed.init_from_environment(),
        "initialized": torch.distributed.is_initialized(),
    }
    if "--wrong-world-size" in options:
        divide_by(int(options[options.index("--wrong-world-size") + 1]))
    if "--gradients-only" not in options:
        if distributed.is_distributed():
            report["checks"] = collective_checks()
        for case in CASES:
            train_case(case, tiny, out, batch_size)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"report-rank{distributed.rank()}.json").write_text(json.dumps(report), encoding="utf-8")
    for case in CASES:
        gradient_case(case, tiny, out, batch_size)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
