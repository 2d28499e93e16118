"""Trainer: learning, exact resume after a real kill, early stopping, several datasets, run folder."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from labelspace import LabelspaceModel, Trainer, TrainingArguments
from labelspace.data import LabeledDataset, PairDataset, TripletDataset
from labelspace.losses import (
    BCEHeadLoss,
    CombinedLoss,
    CoSENTLoss,
    ModelLoss,
    MultipleNegativesRankingLoss,
    MultiSimilarityLoss,
)
from labelspace.models.testing import tiny_model_folder
from labelspace.training.callbacks import Callback
from labelspace.training.optim import lr_lambda as _lr_lambda
from toy_data import TEXTS, toy_data

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def new_model(folder: Path, data: LabeledDataset) -> LabelspaceModel:
    return LabelspaceModel.from_pretrained(folder, labels=data.label_set, seed=0)


def test_loss_decreases_on_a_small_problem(tiny):
    data = toy_data()
    model = new_model(tiny, data)
    args = TrainingArguments(
        max_steps=60,
        batch_size=8,
        learning_rate=2e-3,
        head_learning_rate=2e-2,
        logging_steps=1,
        show_progress_bar=False,
    )
    trainer = Trainer(model, data, CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)]), args=args)
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert output.global_step == 60 and len(losses) == 60
    assert np.mean(losses[-5:]) < 0.65 * np.mean(losses[:5])
    assert {"loss_MultiSimilarityLoss", "loss_BCEHeadLoss"} <= set(trainer.state.log_history[-1])
    # The trained head separates the toy labels on its own training data.
    predicted = model.predict_proba(data.texts) >= 0.5
    assert (predicted == data.labels.to_dense().astype(bool)).mean() > 0.9


def test_learning_rate_schedules_match_hand_computed_values():
    linear = _lr_lambda("linear", warmup=4, total=14)
    assert [linear(s) for s in range(4)] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5])
    assert linear(4) == pytest.approx(1.0) and linear(9) == pytest.approx(0.5) and linear(14) == pytest.approx(0.0)
    cosine = _lr_lambda("cosine", warmup=0, total=10)
    assert cosine(0) == pytest.approx(1.0) and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    assert _lr_lambda("constant", warmup=2, total=10)(7) == 1.0


def weights_of(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {f"encoder.{k}": v for k, v in load_file(str(folder / "model.safetensors")).items()}
    tensors.update({f"head.{k}": v for k, v in load_file(str(folder / "head.safetensors")).items()})
    return tensors


TRAIN_SCRIPT = """
import sys, time
sys.path.insert(0, {src!r})
from labelspace import LabelspaceModel, Trainer, TrainingArguments
from labelspace.data import LabeledDataset
from labelspace.losses import BCEHeadLoss, CombinedLoss, MultiSimilarityLoss
from labelspace.training.callbacks import Callback

class Slow(Callback):
    def on_step_end(self, trainer, state):
        time.sleep({sleep})

texts = {texts!r}
labels = {labels!r}
data = LabeledDataset.from_label_names(texts, labels)
model = LabelspaceModel.from_pretrained({model!r}, labels=data.label_set, seed=0)
args = TrainingArguments(output_dir={out!r}, max_steps={steps}, batch_size=8, learning_rate=1e-3,
                         save_steps=1, save_total_limit=3, show_progress_bar=False, seed=3,
                         gradient_accumulation_steps=2, num_epochs=1)
loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)])
Trainer(model, data, loss, args=args, callbacks=[Slow()]).train(resume_from_checkpoint={resume})
"""


def run_training(out: Path, model: Path, data: LabeledDataset, steps: int, *, resume: bool, sleep: float = 0.0):
    script = TRAIN_SCRIPT.format(
        src=SRC,
        sleep=sleep,
        texts=data.texts,
        labels=[data.label_names(i) for i in range(len(data))],
        model=str(model),
        out=str(out),
        steps=steps,
        resume=resume,
    )
    env = dict(os.environ, PYTHONHASHSEED="0", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_a_killed_run_resumes_to_the_same_weights(tiny, tmp_path):
    """Kill a real training process with SIGKILL mid-run, resume it, compare with an uninterrupted run."""
    data = toy_data(repeat=6)  # 48 texts: 6 batches of 8 per epoch, 3 steps per epoch with accumulation 2
    steps = 10
    reference = run_training(tmp_path / "reference", tiny, data, steps, resume=False)
    out = tmp_path / "killed"
    victim = run_training(out, tiny, data, steps, resume=False, sleep=0.4)
    checkpoints = out / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not (checkpoints / "checkpoint-4").exists():
        assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (out / "model").exists(), "the killed run should not have finished"
    steps_done = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    assert 4 <= steps_done[-1] < steps
    resumed = run_training(out, tiny, data, steps, resume=True)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()[-3000:]
    expected = weights_of(tmp_path / "reference" / "model")
    actual = weights_of(out / "model")
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0, msg=key)
    # The run moved away from the initial weights (the comparison is not vacuous).
    start = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    initial = start.encoder.model.state_dict()["embeddings.word_embeddings.weight"]
    assert not torch.allclose(initial, expected["encoder.embeddings.word_embeddings.weight"], atol=1e-4)
    # Checkpoints are complete (state file present) and pruned to save_total_limit.
    final = sorted(checkpoints.glob("checkpoint-*"))
    assert len(final) == 3 and all((p / "trainer_state.json").is_file() for p in final)


class ConstantMetric(Callback):
    """Counts evaluations."""

    def __init__(self) -> None:
        self.evaluations = 0

    def on_evaluate(self, trainer, state, metrics):
        self.evaluations += 1


def test_early_stopping_after_patience_evaluations_without_improvement(tiny, tmp_path):
    data = toy_data()
    model = new_model(tiny, data)
    counter = ConstantMetric()
    # A vanishing learning rate keeps the eval metric constant: the first evaluation is the best.
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=50,
        batch_size=8,
        learning_rate=1e-12,
        eval_steps=2,
        early_stopping_patience=3,
        show_progress_bar=False,
    )
    output = Trainer(model, data, BCEHeadLoss(), eval_dataset=data, args=args, callbacks=[counter]).train()
    assert counter.evaluations == 4
    assert output.global_step == 8
    assert output.best_step == 2
    assert (tmp_path / "run" / "best-model" / "labelspace.json").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["macro_f1"] == pytest.approx(output.best_metric)


def test_best_model_is_restored_at_the_end(tiny, tmp_path):
    data = toy_data()
    model = new_model(tiny, data)
    best_weights = {}

    class Remember(Callback):
        def on_evaluate(self, trainer, state, metrics):
            if state.best_step == state.global_step:
                best_weights["head"] = (
                    trainer.model.head.state_dict()["classifier.weight"].clone()
                    if hasattr(trainer.model.head, "classifier")
                    else next(iter(trainer.model.head.state_dict().values())).clone()
                )

    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=12,
        batch_size=8,
        learning_rate=5e-4,
        head_learning_rate=5e-2,
        eval_steps=3,
        show_progress_bar=False,
    )
    output = Trainer(model, data, BCEHeadLoss(), eval_dataset=data, args=args, callbacks=[Remember()]).train()
    final_head = next(iter(model.head.state_dict().values()))
    torch.testing.assert_close(final_head, best_weights["head"])
    saved = LabelspaceModel.from_pretrained(tmp_path / "run" / "model")
    assert saved.metadata["training"]["best_step"] == output.best_step


class CountingLoss(ModelLoss):
    """Wraps a loss and counts its calls and batch kinds."""

    def __init__(self, inner: ModelLoss) -> None:
        super().__init__()
        self.inner = inner
        self.batch_kinds = inner.batch_kinds
        self.calls = 0

    def forward(self, model, batch, cache=None):
        self.calls += 1
        return self.inner(model, batch, cache)


def test_several_datasets_each_with_its_loss(tiny):
    from labelspace.losses import as_model_loss

    data = toy_data()
    pairs = PairDataset(TEXTS, TEXTS[::-1], np.linspace(0, 1, len(TEXTS)))
    triplets = TripletDataset(TEXTS[:4], TEXTS[4:], TEXTS[2:6])
    model = new_model(tiny, data)
    losses = {
        "labeled": CountingLoss(as_model_loss(BCEHeadLoss())),
        "pairs": CountingLoss(as_model_loss(CoSENTLoss())),
        "triplets": CountingLoss(as_model_loss(MultipleNegativesRankingLoss())),
    }
    args = TrainingArguments(num_epochs=2, batch_size=4, show_progress_bar=False)
    trainer = Trainer(model, {"labeled": data, "pairs": pairs, "triplets": triplets}, losses, args=args)
    output = trainer.train()
    # Proportional: every dataset's batches once per epoch (8 + 2 + 1 batches), two epochs.
    assert [losses[k].calls for k in ("labeled", "pairs", "triplets")] == [16, 4, 2]
    assert output.global_step == 22


def test_mismatched_loss_and_dataset_is_a_clear_error(tiny):
    data = toy_data()
    model = new_model(tiny, data)
    pairs = PairDataset(TEXTS, TEXTS[::-1], np.ones(len(TEXTS)))
    with pytest.raises(ValueError, match="BCEHeadLoss trains on labeled data, but dataset 'train' holds pairs data"):
        Trainer(model, pairs, BCEHeadLoss())
    with pytest.raises(ValueError, match="every pair of dataset 'train' has score 1"):
        Trainer(model, pairs, CoSENTLoss())
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TrainingArguments(batch_size=0)
    with pytest.raises(ValueError, match="missing"):
        Trainer(model, {"a": data}, {"b": BCEHeadLoss()})


def test_run_folder_loads_in_sentence_transformers(tiny, tmp_path):
    from sentence_transformers import SentenceTransformer

    data = toy_data()
    model = new_model(tiny, data)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=3,
        batch_size=8,
        show_progress_bar=False,
        tensorboard=True,
        logging_steps=1,
    )
    output = Trainer(model, data, BCEHeadLoss(), args=args).train()
    folder = Path(output.model_path)
    ours = LabelspaceModel.from_pretrained(folder)
    theirs = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(theirs.encode(TEXTS), ours.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(TEXTS), model.predict_proba(TEXTS), atol=1e-6)
    config = json.loads((folder / "labelspace.json").read_text())
    assert config["labels"] == data.label_set.names and config["thresholds"] == [0.5] * len(data.label_set)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3] and all(math.isfinite(e["loss"]) for e in log)
    assert all(entry["texts_per_second"] > 0 for entry in log)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_same_seed_same_weights(tiny):
    data = toy_data()
    results = []
    for _ in range(2):
        model = new_model(tiny, data)
        args = TrainingArguments(
            max_steps=4, batch_size=8, show_progress_bar=False, seed=5, sampler="m_per_label", m_per_label=2
        )
        Trainer(model, data, CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)]), args=args).train()
        results.append(model.state_dict())
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], atol=0, rtol=0)


def test_pruning_keeps_the_newest_and_clears_what_killed_runs_left(tmp_path):
    from labelspace.training.checkpoint import STATE_FILE, prune_checkpoints

    for step in range(1, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / STATE_FILE).write_text("{}")
    (tmp_path / "checkpoint-0").mkdir()  # half deleted: no state file
    (tmp_path / ".checkpoint-6.tmp-abc").mkdir()  # killed while writing
    (tmp_path / ".trash-checkpoint-7").mkdir()  # killed while pruning
    (tmp_path / "notes.txt").write_text("kept")
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-5", "notes.txt"]
    prune_checkpoints(tmp_path, keep=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-5", "notes.txt"]
