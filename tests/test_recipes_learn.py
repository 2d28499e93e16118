"""Every loss the CLI accepts learns on the demo set, through `labelspace train`'s own code path.

For each name in `recipes.ALL_LOSSES` a few steps run on a small slice of the demo set with the tiny
model: the logged loss must be finite, above zero and falling, and the weights must change. A loss
that gets data it cannot learn from (the bug where AnglE / CoSENT on labeled data saw only score-1
pairs and logged exactly 0.0) fails here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labelspace.commands.train import run_training
from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.models.testing import tiny_model_folder
from labelspace.recipes import ALL_LOSSES, GUIDED_LOSSES, TrainConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def small_train(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    save(demo("train").subset(range(48)), path)
    return path


def logged_losses(run: Path) -> list[float]:
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if "loss" in entry]


def encoder_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_every_cli_loss_learns_on_labeled_data(loss, tiny, small_train, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(
        train=str(small_train),
        out=str(out),
        model=str(tiny),
        loss=loss,
        epochs=8,
        batch_size=16,
        learning_rate=1e-3,
        head_learning_rate=5e-2,
        max_seq_length=32,
        warmup_ratio=0.0,
        guide_model=str(tiny) if loss in GUIDED_LOSSES else None,
        training={"logging_steps": 1, "save_steps": 1000},
    )
    run_training(config, show_progress=False, print_table=False)
    losses = logged_losses(out)
    assert len(losses) >= 16
    assert all(math.isfinite(value) for value in losses)
    assert min(losses) > 0.0, f"{loss} logged a zero loss: it gets data it cannot learn from"
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, f"{loss} did not fall: first steps {losses[:3]}, last steps {losses[-3:]}"
    before, after = encoder_weights(tiny), encoder_weights(out / "model")
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) > len(before) // 2, f"{loss} changed only {len(changed)} of {len(before)} weight tensors"
