"""Issue 14, item 5 and item 3's pos_weight: training defaults fitted to the data size, pos_weight on skewed labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from labelspace.data import LabeledDataset, load, save
from labelspace.data.builtin import demo
from labelspace.losses import BCEHeadLoss
from labelspace.losses.head.bce import compute_pos_weight
from labelspace.models.testing import tiny_model_folder
from labelspace.recipes import DATA_SIZE_SETTINGS, build_losses, fit_to_data, labels_are_skewed
from labelspace.training.arguments import fit_to_data_size


@pytest.mark.parametrize(
    ("num_texts", "num_labels", "batch_size", "expected_epochs", "expected_lr"),
    [
        # 15 steps/epoch: ceil(150 / 15) = 10 epochs; 40 texts/label: 1e-4 * sqrt(40 / 500) = 2.83e-5
        (480, 12, 32, 10, 2.8e-5),
        # 4 steps/epoch: ceil(150 / 4) = 38, capped at 10; 1e-4 * sqrt(25 / 500) = 2.24e-5
        (100, 4, 32, 10, 2.2e-5),
        # 32 steps/epoch: 3 epochs give 96 < 150 steps, ceil(150 / 32) = 5; 500 texts/label: full rate
        (1000, 2, 32, 5, 1e-4),
        # 63 steps/epoch: 3 epochs give 189 >= 150 steps; 1e-4 * sqrt(200 / 500) = 6.32e-5
        (2000, 10, 32, 3, 6.3e-5),
        # GoEmotions: the defaults
        (43410, 28, 32, 3, 1e-4),
        # a larger batch: 8 steps/epoch, ceil(150 / 8) = 19, capped at 10
        (480, 12, 64, 10, 2.8e-5),
    ],
)
def test_rule_outputs_match_hand_computed_values(num_texts, num_labels, batch_size, expected_epochs, expected_lr):
    fitted = fit_to_data_size(num_texts, num_labels, batch_size=batch_size)
    assert fitted["num_epochs"] == expected_epochs
    assert fitted["learning_rate"] == pytest.approx(expected_lr, rel=1e-9)
    assert fitted["head_learning_rate"] == pytest.approx(2e-2)  # not scaled: the head starts from scratch
    assert fitted["warmup_ratio"] == pytest.approx(0.1)
    assert fitted["early_stopping_patience"] == 2
    assert (
        fit_to_data_size(num_texts, num_labels, batch_size=batch_size, has_dev=False)["early_stopping_patience"] is None
    )


def test_recipe_view_of_the_rule_uses_config_names():
    fitted = fit_to_data(480, 12, has_dev=True)
    assert tuple(fitted) == DATA_SIZE_SETTINGS
    assert (fitted["epochs"], fitted["learning_rate"], fitted["early_stopping_patience"]) == (10, 2.8e-5, 2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_rule_refuses_sizes_that_are_not_positive_integers(bad):
    with pytest.raises(ValueError, match="num_texts must be a positive integer"):
        fit_to_data_size(bad, 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo")
    save(demo("train").subset(range(40)), folder / "train.jsonl")
    save(demo("dev").subset(range(20)), folder / "dev.jsonl")
    return folder / "train.jsonl", folder / "dev.jsonl"


def saved_args(out: Path) -> dict:
    """The TrainingArguments the run trained with, as the saved model records them."""
    return json.loads((out / "model" / "labelspace.json").read_text())["metadata"]["training"]["args"]


def train_run(run_cli, tiny, demo_files, out, *extra) -> tuple[dict, dict, str]:
    train, dev = demo_files
    code, stdout, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(train), "--dev", str(dev), "--out", str(out),
        "--max-seq-length", "16", "--quiet", *extra,
    )  # fmt: skip
    assert code == 0, stderr
    return saved_args(out), yaml.safe_load((out / "config.yaml").read_text()), stdout


def test_cli_fits_the_settings_nobody_gave(run_cli, tiny, demo_files, tmp_path):
    train = load(demo_files[0])
    expected = fit_to_data_size(40, len(train.label_set))  # 2 steps/epoch: 10 epochs, 1e-4 * sqrt(40 / L / 500)
    assert expected["num_epochs"] == 10
    args, config, stdout = train_run(run_cli, tiny, demo_files, tmp_path / "run")
    for name in ("num_epochs", "learning_rate", "head_learning_rate", "warmup_ratio", "early_stopping_patience"):
        assert args[name] == pytest.approx(expected[name]), name
    assert (config["epochs"], config["learning_rate"]) == (10, pytest.approx(expected["learning_rate"]))
    assert config["early_stopping_patience"] == 2
    assert f"fitted to 40 texts, {len(train.label_set)} labels" in stdout


def test_explicit_flags_and_config_values_win(run_cli, tiny, demo_files, tmp_path):
    args, config, _ = train_run(
        run_cli, tiny, demo_files, tmp_path / "flags", "--epochs", "1", "--lr", "0.001", "--early-stopping", "4"
    )
    assert (args["num_epochs"], args["learning_rate"], args["early_stopping_patience"]) == (1, 1e-3, 4)
    assert args["head_learning_rate"] == pytest.approx(2e-2) and args["warmup_ratio"] == pytest.approx(0.1)
    settings = tmp_path / "run.yaml"  # values equal to the old defaults still count as given
    settings.write_text(yaml.safe_dump({"epochs": 3, "learning_rate": 1e-4, "warmup_ratio": 0.2}))
    args, _, _ = train_run(run_cli, tiny, demo_files, tmp_path / "file", "--config", str(settings))
    assert (args["num_epochs"], args["learning_rate"], args["warmup_ratio"]) == (3, 1e-4, 0.2)
    assert args["early_stopping_patience"] == 2  # not given: fitted


def test_without_dev_there_is_no_early_stopping(run_cli, tiny, demo_files, tmp_path):
    train, _ = demo_files
    out = tmp_path / "nodev"
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(train), "--out", str(out), "--max-seq-length", "16",
        "--epochs", "1", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    assert saved_args(out)["early_stopping_patience"] is None


def labeled(counts: list[int], total: int) -> LabeledDataset:
    """``total`` texts, label j on the first ``counts[j]`` of them (every text keeps at least one label)."""
    names = [f"label{j}" for j in range(len(counts))]
    rows = [[names[j] for j in range(len(counts)) if i < counts[j]] or [names[0]] for i in range(total)]
    return LabeledDataset.from_label_names([f"text {i}" for i in range(total)], rows)


def bce_of(spec: str, train: LabeledDataset, loss_args=None) -> BCEHeadLoss:
    _, losses = build_losses(spec, train, loss_args=loss_args)
    found = [module for module in losses["train"].modules() if isinstance(module, BCEHeadLoss)]
    assert len(found) == 1
    return found[0]


def test_skewed_labels_get_the_inverse_frequency_pos_weight_by_default():
    skewed = labeled([60, 20, 5], 60)  # 60 / 5 = 12 > 3
    assert labels_are_skewed(skewed.labels)
    for spec in ("bce", "multi_similarity+bce"):
        weight = bce_of(spec, skewed).pos_weight
        assert weight is not None
        expected = compute_pos_weight(skewed.labels.to_dense())
        torch.testing.assert_close(weight, expected)
        # independent: negatives / positives per label, clipped to [1/100, 100]
        np.testing.assert_allclose(weight.numpy(), np.clip([0 / 60, 40 / 20, 55 / 5], 0.01, 100), rtol=1e-6)


def test_balanced_labels_and_explicit_values_keep_no_pos_weight():
    balanced = labeled([40, 20, 14], 40)  # 40 / 14 = 2.9: not above the ratio of 3
    assert not labels_are_skewed(balanced.labels)
    assert bce_of("bce", balanced).pos_weight is None
    skewed = labeled([60, 20, 5], 60)
    assert bce_of("bce", skewed, loss_args={"bce": {"pos_weight": None}}).pos_weight is None  # --pos-weight none
    assert bce_of("bce", skewed, loss_args={"bce": {"pos_weight": 2.0}}).pos_weight.tolist() == 2.0
    assert bce_of("bce(pos_weight=none)", skewed).pos_weight is None
