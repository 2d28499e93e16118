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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from labelspace.data.datasets import dataset_fingerprint
from labelspace.models.encoder import save_folder_atomically
from labelspace.models.folder_io import read_json, read_safetensors
from labelspace.models.model import LabelspaceModel

__all__ = [
    "CHECKPOINT_PATTERN",
    "check_same_run",
    "find_latest_checkpoint",
    "json_ready",
    "list_checkpoints",
    "optimizer_to_tensors",
    "prune_checkpoints",
    "read_checkpoint_state",
    "restore_rng_state",
    "rng_state",
    "run_fingerprint",
]

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
#: The tensors every ``rng.safetensors`` holds (CUDA generator states only where CUDA was used).
RNG_KEYS = ("torch_cpu", "numpy_keys")
_OPTIMIZER_KEY = re.compile(r"^state\.\d+\..+$")


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

    def write(folder: Path) -> None:
        write_model(folder)
        optimizer_tensors, optimizer_rest = optimizer_to_tensors(optimizer)
        save_file(optimizer_tensors, str(folder / OPTIMIZER_FILE))
        rng_tensors, rng_rest = rng_state()
        save_file(rng_tensors, str(folder / RNG_FILE))
        payload = dict(state, optimizer=optimizer_rest, rng=rng_rest, format="labelspace.checkpoint", version=1)
        (folder / STATE_FILE).write_text(json.dumps(payload) + "\n", encoding="utf-8")

    save_folder_atomically(target, write, overwrite=True, what="the checkpoint")
    return target


def read_checkpoint_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON state, optimizer state dict, RNG tensors) of a checkpoint folder.

    Only JSON and safetensors are read (nothing is unpickled); a damaged or foreign file is a
    ValueError naming it (`labelspace.models.folder_io`).
    """
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a labelspace checkpoint: {STATE_FILE} is missing")
    state = read_json(path, expected="a labelspace checkpoint state")
    if not isinstance(state, dict) or state.get("format") != "labelspace.checkpoint":
        raise ValueError(f"{path} is not a labelspace checkpoint state")
    if not isinstance(state.get("optimizer"), dict) or not isinstance(state["optimizer"].get("param_groups"), list):
        raise ValueError(f"{path}: 'optimizer' lacks its 'param_groups' (expected a labelspace checkpoint state)")
    optimizer_path = folder / OPTIMIZER_FILE
    optimizer_tensors = read_safetensors(optimizer_path, what="the optimizer state")
    foreign = sorted(key for key in optimizer_tensors if not _OPTIMIZER_KEY.match(key))
    if foreign:
        raise ValueError(
            f"{optimizer_path}: tensor {foreign[0]!r} is not an optimizer state entry (expected 'state.INDEX.NAME')"
        )
    rng_path = folder / RNG_FILE
    rng_tensors = read_safetensors(rng_path, what="the random generator state")
    missing = [key for key in RNG_KEYS if key not in rng_tensors]
    if missing:
        raise ValueError(f"{rng_path}: no tensor {missing[0]!r} (expected the random generator states of a checkpoint)")
    return state, optimizer_from_tensors(optimizer_tensors, state["optimizer"]), rng_tensors


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


def json_ready(value: Any) -> Any:
    """``value`` with tensors and NumPy numbers turned into lists / Python numbers, callables left out."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _describe_loss(loss: Any) -> Any:
    """A short JSON description of a model-level loss: its name, or its parts with their weights."""
    parts = getattr(loss, "losses", None)
    weights = getattr(loss, "weights", None)
    if parts is not None and weights is not None:
        return [[_describe_loss(part), weight] for part, weight in zip(parts, weights, strict=True)]
    return loss.name


def run_fingerprint(model: LabelspaceModel, losses: dict[str, Any], datasets: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it: labels, model shape, losses, training data."""
    encoder = model.encoder
    config = getattr(encoder.model, "config", None)
    shape = {
        key: getattr(config, key, None) for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    }
    head = model.head
    return {
        "labels": model.label_set.names if model.label_set is not None else None,
        "model": {
            **shape,
            "pooling": encoder.pooling,
            "normalize": encoder.normalize,
            "head": None if head is None else {"kind": head.kind, "num_labels": head.num_labels},
        },
        "losses": {name: _describe_loss(loss) for name, loss in losses.items()},
        "data": {name: dataset_fingerprint(dataset) for name, dataset in datasets.items()},
    }


def _short(value: Any) -> str:
    """A value for an error message: a data fingerprint as its row count and hash prefix."""
    if isinstance(value, dict) and "rows" in value and "hash" in value:
        return f"{value['rows']} rows, hash {str(value['hash'])[:8]}"
    return str(value)


def check_same_run(folder: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse to resume ``folder`` (fingerprint ``saved``) with other labels, model, losses or data than ``current``."""
    if saved is None:  # a checkpoint from before fingerprints were recorded
        return
    current = json_ready(current)
    what = {"labels": "labels", "model": "model", "losses": "losses", "data": "training data"}
    for key, name in what.items():
        before, now = saved.get(key, current[key]), current[key]
        if before == now:
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            changed = sorted(part for part in set(before) | set(now) if before.get(part) != now.get(part))
            detail = "; ".join(
                f"{part}: {_short(before.get(part))} then, {_short(now.get(part))} now" for part in changed
            )
        else:
            detail = f"{_short(before)} then, {_short(now)} now"
        raise ValueError(
            f"cannot resume {folder}: it was trained with other {name} ({detail}); resume with the same "
            "settings and data, or start a new run (--overwrite)"
        )
