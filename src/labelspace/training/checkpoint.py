"""Training checkpoints: model, optimizer, scheduler, sampler positions and RNG states, as safetensors + JSON.

A checkpoint folder ``checkpoint-<step>`` holds:

- the model folder files (sentence-transformers layout, ``labelspace.json``, ``head.safetensors``);
- ``optimizer.safetensors`` (the optimizer's tensors) and ``trainer_state.json`` (everything else:
  optimizer param groups, scheduler state, trainer state, sampler states, Python/NumPy RNG states);
- ``rng.safetensors`` (the torch CPU and CUDA generator states, NumPy's key array).

It is written to a temporary folder and renamed, so a run killed while saving never leaves a
half-written checkpoint under the final name. Nothing is unpickled when loading.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "CHECKPOINT_PATTERN",
    "find_latest_checkpoint",
    "list_checkpoints",
    "optimizer_to_tensors",
    "prune_checkpoints",
    "read_checkpoint_state",
    "restore_rng_state",
    "rng_state",
]

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and a JSON-ready rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an optimizer state dict from `optimizer_to_tensors` output."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The torch, NumPy and Python RNG states, as tensors plus JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = cuda_state
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, python_state, gauss_next = random.getstate()
    rest = {
        "numpy": {"kind": kind, "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    return tensors, rest


def restore_rng_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(tensors["torch_cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        cuda_states = [tensors[key] for key in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    numpy_rest = rest["numpy"]
    np.random.set_state(
        (
            numpy_rest["kind"],
            tensors["numpy_keys"].numpy().astype(np.uint32),
            numpy_rest["position"],
            numpy_rest["has_gauss"],
            numpy_rest["cached"],
        )
    )
    python_rest = rest["python"]
    random.setstate((python_rest["version"], tuple(python_rest["state"]), python_rest["gauss_next"]))


def write_checkpoint(
    checkpoints_dir: Path,
    step: int,
    *,
    write_model: Any,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
) -> Path:
    """Write ``checkpoints_dir/checkpoint-<step>`` atomically and return its path.

    ``write_model(folder)`` writes the model files; ``state`` is the JSON-ready trainer state
    (scheduler, trainer state, samplers). Optimizer tensors and RNG states are added here.
    """
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    target = checkpoints_dir / f"checkpoint-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".checkpoint-{step}.tmp-", dir=checkpoints_dir))
    try:
        write_model(tmp)
        optimizer_tensors, optimizer_rest = optimizer_to_tensors(optimizer)
        save_file(optimizer_tensors, str(tmp / OPTIMIZER_FILE))
        rng_tensors, rng_rest = rng_state()
        save_file(rng_tensors, str(tmp / RNG_FILE))
        payload = dict(state, optimizer=optimizer_rest, rng=rng_rest, format="labelspace.checkpoint", version=1)
        (tmp / STATE_FILE).write_text(json.dumps(payload) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_checkpoint_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON state, optimizer state dict, RNG tensors) of a checkpoint folder."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a labelspace checkpoint: {STATE_FILE} is missing")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if state.get("format") != "labelspace.checkpoint":
        raise ValueError(f"{path} is not a labelspace checkpoint state")
    optimizer_state = optimizer_from_tensors(load_file(str(folder / OPTIMIZER_FILE)), state["optimizer"])
    return state, optimizer_state, load_file(str(folder / RNG_FILE))


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint folders in ``checkpoints_dir``, oldest step first."""
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for child in checkpoints_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def prune_checkpoints(checkpoints_dir: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints (None: keep all), and what killed runs left behind.

    A checkpoint is first renamed to a hidden name, then deleted, so a run killed while pruning
    never leaves a half-deleted folder under a checkpoint's name. Temporary folders of a run killed
    while writing, hidden leftovers of a killed prune, and ``checkpoint-N`` folders without their state
    file (from older runs) are removed too.
    """
    if not checkpoints_dir.is_dir():
        return
    complete = list_checkpoints(checkpoints_dir)
    doomed = complete[:-keep] if keep is not None else []
    for folder in doomed:
        trash = folder.with_name(f".trash-{folder.name}")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    for child in checkpoints_dir.iterdir():
        if not child.is_dir():
            continue
        partial = CHECKPOINT_PATTERN.match(child.name) and not (child / STATE_FILE).is_file()
        if child.name.startswith((".trash-", ".checkpoint-")) or partial:
            shutil.rmtree(child, ignore_errors=True)


def find_latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(checkpoints_dir)
    return found[-1] if found else None
