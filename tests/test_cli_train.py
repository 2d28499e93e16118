"""`labelspace train`: flags, YAML config, the run folder, tuned thresholds, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from labelspace.data import LabeledDataset, save
from labelspace.data.builtin import demo
from labelspace.evaluation import classification_report
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder
from labelspace.recipes import TrainConfig, build_losses, parse_loss_spec


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("demo")
    save(demo("train").subset(range(96)), folder / "train.jsonl")
    save(demo("dev"), folder / "dev.jsonl")
    return folder / "train.jsonl", folder / "dev.jsonl"


def test_train_writes_a_run_with_thresholds_tuned_on_dev(run_cli, tiny, demo_files, tmp_path):
    train, dev = demo_files
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(
        "train",
        "--model",
        str(tiny),
        "--train",
        str(train),
        "--dev",
        str(dev),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-seq-length",
        "32",
        "--quiet",
    )
    assert code == 0, stderr
    assert "global 0.5" in stdout and "tuned" in stdout
    model = LabelspaceModel.from_pretrained(out / "model")
    assert model.decision_rule == "at_least_one"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["loss"] == "multi_similarity+bce" and config["epochs"] == 1
    # The tuned thresholds give the dev macro-F1 that metrics.json reports, recomputed independently.
    source = demo("dev")
    names = [source.label_names(i) for i in range(len(source))]
    dev_data = LabeledDataset.from_label_names(source.texts, names, label_set=model.label_set)
    probabilities = model.predict_proba(dev_data.texts)
    decided = model.decide(probabilities)
    recomputed = classification_report(dev_data.labels.to_dense(), decided.astype(int))["macro_f1"]
    metrics = json.loads((out / "metrics.json").read_text())["dev"]
    assert metrics["tuned"]["macro_f1"] == pytest.approx(recomputed, abs=1e-9)
    assert metrics["tuned"]["macro_f1"] >= metrics["global 0.5"]["macro_f1"]
    assert not np.allclose(model.thresholds, 0.5)
    assert (out / "checkpoints").is_dir() and (out / "train_log.jsonl").is_file()


def test_yaml_config_with_flag_override(run_cli, tiny, demo_files, tmp_path):
    train, dev = demo_files
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny),
                "train": str(train),
                "out": str(tmp_path / "run"),
                "loss": "ntxent+bce:0.5",
                "epochs": 3,
                "batch_size": 16,
                "max_seq_length": 32,
                "training": {"logging_steps": 1},
            }
        )
    )
    code, _, stderr = run_cli("train", "--config", str(config), "--max-steps", "2", "--quiet")
    assert code == 0, stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["max_steps"] == 2 and saved["loss"] == "ntxent+bce:0.5"
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]
    assert {"loss_NTXentLoss", "loss_BCEHeadLoss"} <= set(log[-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "nope+bce"], "unknown loss 'nope'"),
        (["--loss", "bce:-1"], "must be >= 0"),
        (["--sampler", "sideways"], "sampler must be one of"),
    ],
)
def test_bad_settings_are_one_line_errors(run_cli, tiny, demo_files, tmp_path, args, message):
    train, _ = demo_files
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(train), "--out", str(tmp_path / "r"), "--quiet", *args
    )
    assert code == 2 and stderr.count("\n") == 1 and message in stderr


def test_bad_yaml_names_the_file_and_line(run_cli, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train: a.tsv\nloss: [unclosed\n")
    code, _, stderr = run_cli("train", "--config", str(config))
    assert code == 2 and f"{config}:" in stderr and "not valid YAML" in stderr
    config.write_text("train: a.tsv\nlearning_rat: 0.1\n")
    code, _, stderr = run_cli("train", "--config", str(config))
    assert code == 2 and "unknown setting(s) learning_rat" in stderr


def test_loss_spec_and_text_losses_on_labeled_data():
    assert parse_loss_spec("multi_similarity+bce:0.25") == [("multi_similarity", 1.0), ("bce", 0.25)]
    with pytest.raises(ValueError, match="named twice"):
        parse_loss_spec("bce+bce")
    data = demo("train")
    datasets, losses = build_losses("mnrl+bce", data, seed=0)
    assert set(datasets) == {"labeled", "pairs"}
    pairs = datasets["pairs"]
    assert len(pairs) == len(data) and pairs.labels is not None
    # Every generated pair shares a label (anchor and positive), as the overlap rule demands.
    index = {text: i for i, text in enumerate(data.texts)}
    dense = data.labels.to_dense()
    shared = [(dense[index[a]] & dense[index[b]]).any() for a, b in zip(pairs.text1, pairs.text2, strict=True)]
    assert all(shared)
    assert TrainConfig.from_dict({"train": "x"}).loss == "multi_similarity+bce"
