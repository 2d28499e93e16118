"""Metric losses, forward + backward: labelspace vs pytorch-metric-learning vs the matmul floor.

For each batch size (dim 384, 8 items per class, single-label so both libraries compute the
same thing), every loss runs with its usual miner on the same inputs; the figure is the
median wall time of several forward + backward passes. The floor is one similarity matmul
(normalised embeddings times their transpose) and its backward. Each library runs in its own
child process under a memory cap, so an out-of-memory failure is reported, not fatal.

    python bench/losses.py [--sizes 256,1024,4096] [--repeats 3] [--memory-gib 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

CASES = [
    "contrastive",
    "ntxent",
    "batch-hard triplet",
    "multi-similarity + miner",
    "circle",
    "fastap",
]


def _labelspace_cases() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    from labelspace import losses, miners

    contrastive, ntxent, triplet = losses.ContrastiveLoss(), losses.NTXentLoss(), losses.TripletMarginLoss()
    batch_hard, ms_loss, ms_miner = miners.BatchHardMiner(), losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()
    circle, fastap = losses.CircleLoss(), losses.FastAPLoss()
    return {
        "contrastive": lambda e, y: contrastive(e, y),
        "ntxent": lambda e, y: ntxent(e, y),
        "batch-hard triplet": lambda e, y: triplet(e, y, batch_hard(e, y)),
        "multi-similarity + miner": lambda e, y: ms_loss(e, y, ms_miner(e, y)),
        "circle": lambda e, y: circle(e, y),
        "fastap": lambda e, y: fastap(e, y),
    }


def _pml_cases() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    from pytorch_metric_learning import losses, miners

    contrastive, ntxent, triplet = losses.ContrastiveLoss(), losses.NTXentLoss(), losses.TripletMarginLoss()
    batch_hard, ms_loss, ms_miner = miners.BatchHardMiner(), losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()
    circle, fastap = losses.CircleLoss(), losses.FastAPLoss()
    return {
        "contrastive": lambda e, y: contrastive(e, y),
        "ntxent": lambda e, y: ntxent(e, y),
        "batch-hard triplet": lambda e, y: triplet(e, y, batch_hard(e, y)),
        "multi-similarity + miner": lambda e, y: ms_loss(e, y, ms_miner(e, y)),
        "circle": lambda e, y: circle(e, y),
        "fastap": lambda e, y: fastap(e, y),
    }


def _floor(embeddings: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    normalised = F.normalize(embeddings, dim=1)
    return (normalised @ normalised.T).sum()


def _time(function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], size: int, dim: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(size)
    base = torch.randn(size, dim, generator=generator)
    labels = torch.arange(size) // 8
    times = []
    for run in range(repeats + 1):  # the first run warms up
        embeddings = base.clone().requires_grad_(True)
        start = time.perf_counter()
        loss = function(embeddings, labels)
        loss.backward()
        elapsed = time.perf_counter() - start
        if run:
            times.append(elapsed)
    return statistics.median(times)


def worker(library: str, size: int, dim: int, repeats: int, memory_gib: float) -> None:
    """Time every case of one library at one batch size; print one JSON object."""
    limit = int(memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if library == "floor":
        cases = {"floor": _floor}
    else:
        cases = _labelspace_cases() if library == "labelspace" else _pml_cases()
    results: dict[str, float | str] = {}
    for name, function in cases.items():
        try:
            results[name] = _time(function, size, dim, repeats)
        except (RuntimeError, MemoryError) as error:
            results[name] = "out of memory" if "memory" in str(error).lower() else f"error: {str(error)[:60]}"
    print(json.dumps(results))


def _run(library: str, size: int, args: argparse.Namespace) -> dict[str, float | str]:
    command = [sys.executable, __file__, "--worker", library, "--sizes", str(size), "--repeats", str(args.repeats)]
    command += ["--dim", str(args.dim), "--memory-gib", str(args.memory_gib)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = "killed (out of memory)" if done.returncode < 0 else f"failed: {done.stderr.strip()[-80:]}"
        return dict.fromkeys(CASES + ["floor"], reason)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _format(value: float | str) -> str:
    return f"{value:.3f}" if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024,4096")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-gib", type=float, default=20.0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.worker:
        worker(args.worker, sizes[0], args.dim, args.repeats, args.memory_gib)
        return
    print(
        f"forward + backward, dim {args.dim}, 8 per class, median of {args.repeats} runs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds"
    )
    header = f"{'batch':>6}  {'loss (with its usual miner)':<28}{'labelspace':>12}{'PML':>16}"
    header += f"{'speed-up':>10}{'x floor':>9}"
    print(header)
    print("-" * len(header))
    for size in sizes:
        floor = _run("floor", size, args)["floor"]
        ours = _run("labelspace", size, args)
        theirs = _run("pml", size, args)
        print(f"{size:>6}  {'matmul + backward (floor)':<28}{_format(floor):>12}")
        for name in CASES:
            mine, other = ours[name], theirs[name]
            speed = f"{other / mine:.1f}x" if isinstance(mine, float) and isinstance(other, float) else "-"
            ratio = f"{mine / floor:.1f}" if isinstance(mine, float) and isinstance(floor, float) else "-"
            print(f"{size:>6}  {name:<28}{_format(mine):>12}{_format(other):>16}{speed:>10}{ratio:>9}")


if __name__ == "__main__":
    main()
