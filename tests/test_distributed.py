"""Data-parallel training: 2 gloo processes under torchrun match 1 process on the doubled batch.

The script ``distributed_train_script.py`` trains a tiny model (dropout off) for 4 steps on two
cases (MultiSimilarity + BCE head on labeled data; MultipleNegativesRanking with labels on pairs).
It runs once under ``torchrun --standalone --nproc_per_node=2`` with ``batch_size=4`` per process
and once as a plain process with ``batch_size=8``; both launches happen once per module.

AdamW normalises the update and clipping rescales the gradient, so equal weights do not show that
the gradients had the right scale. The script therefore also saves the gradients of one optimizer
step (clipping off) after the Trainer's averaging across processes, and the test compares them
directly; a third launch, with the averaging made to divide by the wrong number of processes,
shows that this comparison fails on a wrong scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from labelspace import parallel as distributed
from labelspace.models.testing import tiny_model_folder

TESTS = Path(__file__).resolve().parent
SRC = str(TESTS.parent / "src")
SCRIPT = str(TESTS / "distributed_train_script.py")
BATCH = 4
CASES = ("labeled", "pairs")
WEIGHT_FILES = ("model.safetensors", "head.safetensors")


def _launch(command: list[str], cwd: Path) -> None:
    env = dict(os.environ)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")])),
        CUDA_VISIBLE_DEVICES="",  # gloo on CPU, even on a GPU machine
        TOKENIZERS_PARALLELISM="false",
    )
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-6000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    tiny = tiny_model_folder(root / "tiny")
    two, one = root / "two", root / "one"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    _launch([*torchrun, SCRIPT, str(tiny), str(two), str(BATCH)], cwd=root)
    _launch([sys.executable, SCRIPT, str(tiny), str(one), str(2 * BATCH)], cwd=root)
    return {"two": two, "one": one, "tiny": tiny}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = {}
    for name in WEIGHT_FILES:
        weights.update({f"{name}:{key}": value for key, value in load_file(folder / name).items()})
    return weights


def _report(folder: Path, rank: int) -> dict[str, Any]:
    return json.loads((folder / f"report-rank{rank}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES)
def test_two_processes_match_one_process_on_the_doubled_batch(runs, case):
    init = _weights(runs["one"] / case / "init")
    single = _weights(runs["one"] / case / "rank0" / "model")
    double = _weights(runs["two"] / case / "rank0" / "model")
    assert single.keys() == double.keys() == init.keys()
    difference = max(float((single[key] - double[key]).abs().max()) for key in single)
    moved = max(float((single[key] - init[key]).abs().max()) for key in single)
    encoder_moved = max(float((single[k] - init[k]).abs().max()) for k in single if k.startswith("model."))
    print(f"{case}: max |1 process - 2 processes| = {difference:.3g}, max move from init = {moved:.3g}")
    assert difference <= 1e-4
    assert moved > 1e-3 and encoder_moved > 1e-3  # the comparison is not vacuous
    two_init = _weights(runs["two"] / case / "init")
    assert all(torch.equal(two_init[key], init[key]) for key in init)


def test_gather_with_grad_sums_the_gradients_of_every_process(runs):
    for rank in (0, 1):
        checks = _report(runs["two"], rank)["checks"]
        assert checks["world"] == 2
        # Rank r holds arange(6).reshape(3, 2) + 10 r; the gather is in rank order on every rank.
        expected = [[2.0 * i + j + 10.0 * r for j in range(2)] for r in range(2) for i in range(3)]
        assert checks["gathered"] == expected
        # Rank s's loss is sum((s + 1) * (row + 1) * gathered): rank r's rows get (1 + 2) * (row + 1).
        assert checks["grad"] == [[3.0 * (3 * rank + i + 1)] * 2 for i in range(3)]
        assert checks["labels"] == [[0.0, 1.0], [1.0, 0.0]]
        assert checks["averaged"] == [1.5, 1.5]
        assert checks["broadcast"] == [[0.0, 0.0]]


def test_init_from_environment_under_torchrun_and_without(runs):
    for rank in (0, 1):
        report = _report(runs["two"], rank)
        assert report["world_size_env"] == "2" and report["init"] is True and report["initialized"] is True
    single = _report(runs["one"], 0)
    assert single == {"world_size_env": None, "init": False, "initialized": False}


# Both runs do the same float32 arithmetic in another order (two partial sums over 4 items and an
# all-reduce instead of one sum over 8; matmuls over 4 rows instead of 8): each gradient entry then
# differs by a few units of float32 roundoff (2**-24 ~ 6e-8) of the magnitudes summed into it. Measured
# with one thread per process: whole-gradient relative L2 error 3e-7 (labeled) and 5e-7 (pairs), largest
# entry error 5e-7 and 1.4e-6 of the largest gradient entry. The bounds leave 20x or more for other CPUs
# and are 5 orders of magnitude below the error of a wrong divisor (1/2 when dividing by 4 processes,
# 1 when dividing by 1). The elementwise bound is relative to the largest entry because some gradients are
# zero up to roundoff (an attention key bias does not change the softmax).
GRADIENT_RELATIVE_L2 = 1e-5
GRADIENT_LARGEST_ENTRY = 1e-4


def _gradients(folder: Path, case: str, rank: int) -> dict[str, torch.Tensor]:
    return load_file(folder / "gradients" / case / f"rank{rank}.safetensors")


def _gradient_gap(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(relative L2 error of the whole gradient, largest entry error over the largest reference entry)."""
    assert other.keys() == reference.keys()
    a = torch.cat([reference[key].double().flatten() for key in sorted(reference)])
    b = torch.cat([other[key].double().flatten() for key in sorted(reference)])
    return float((b - a).norm() / a.norm()), float((b - a).abs().max() / a.abs().max())


@pytest.fixture(scope="module")
def wrongly_averaged(runs) -> Path:
    """A 2-process run whose gradient averaging divides the sum by 1 instead of 2 (gradients only)."""
    wrong = runs["tiny"].parent / "wrong"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*torchrun, SCRIPT, str(runs["tiny"]), str(wrong), str(BATCH), "--gradients-only"]
    _launch([*command, "--wrong-world-size", "1"], cwd=wrong.parent)
    return wrong


@pytest.mark.parametrize("case", CASES)
def test_two_processes_average_to_the_gradient_of_one_process(runs, case):
    single = _gradients(runs["one"], case, 0)

    def norm(prefix: str) -> float:
        return float(torch.cat([value.flatten() for key, value in single.items() if key.startswith(prefix)]).norm())

    assert norm("model.encoder.") > 1e-3  # the comparison is not vacuous
    if case == "labeled":
        assert norm("model.head.") > 1e-3
    for rank in (0, 1):
        relative, largest = _gradient_gap(single, _gradients(runs["two"], case, rank))
        print(f"{case} rank {rank}: relative L2 {relative:.3g}, largest entry {largest:.3g}")
        assert relative <= GRADIENT_RELATIVE_L2 and largest <= GRADIENT_LARGEST_ENTRY
        record = json.loads((runs["two"] / "gradients" / case / f"rank{rank}.json").read_text(encoding="utf-8"))
        assert record == {"world": 2, "average_gradients_calls": 1}  # averaged through labelspace.parallel


@pytest.mark.parametrize("case", CASES)
def test_the_gradient_comparison_catches_a_wrong_world_size(runs, wrongly_averaged, case):
    single = _gradients(runs["one"], case, 0)
    for rank in (0, 1):
        relative, largest = _gradient_gap(single, _gradients(wrongly_averaged, case, rank))
        assert relative > GRADIENT_RELATIVE_L2 and largest > GRADIENT_LARGEST_ENTRY
        assert relative == pytest.approx(1.0, abs=1e-4)  # the sum of 2 processes' gradients: twice the mean


@pytest.mark.parametrize("case", CASES)
def test_only_rank_0_writes_the_run_folder(runs, case):
    folder = runs["two"] / case
    assert (folder / "rank0" / "model" / "labelspace.json").is_file()
    assert (folder / "rank0" / "train_log.jsonl").is_file()
    assert (folder / "rank0" / "checkpoints" / "checkpoint-4").is_dir()
    assert not (folder / "rank1").exists()
    logs = [json.loads(line) for line in (folder / "rank0" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logs] == [1, 2, 3, 4]


def test_init_from_environment_does_nothing_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_environment() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_environment() is False
    assert not torch.distributed.is_initialized()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main_process()) == (1, 0, True)
    x = torch.ones(2, 3, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    assert distributed.gather_without_grad(x) is x
