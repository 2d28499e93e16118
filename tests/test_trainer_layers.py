"""The Trainer's layers: defaults in one place, optimizer groups, callbacks in order, loss parts, threshold tuning
inside the run (model/ and metrics.json written once) and best-model selection on the decisions that ship."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from labelspace import LabelspaceModel
from labelspace.data import LabeledDataset, save
from labelspace.data.builtin import demo
from labelspace.losses import BCEHeadLoss, MultiSimilarityLoss
from labelspace.models.testing import tiny_model_folder
from labelspace.objectives import CombinedLoss, HeadObjective, ModelLoss
from labelspace.recipes import RECOMMENDED, TRAINING_DEFAULTS, TrainConfig
from labelspace.training import Callback, Trainer, TrainingArguments
from labelspace.training.optim import NO_DECAY, parameter_groups
from toy_data import toy_data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def new_model(folder: Path, data: LabeledDataset) -> LabelspaceModel:
    return LabelspaceModel.from_pretrained(folder, labels=data.label_set, seed=0)


# ----------------------------------------------------------------------------- defaults in one place


def test_recommended_training_values_are_the_training_arguments_defaults():
    defaults = TrainingArguments()
    for key, name in TRAINING_DEFAULTS.items():
        assert RECOMMENDED[key] == getattr(defaults, name), key
    # The values `labelspace train` has always run (docs/training.md, the recommended recipe).
    assert (defaults.num_epochs, defaults.learning_rate, defaults.head_lr()) == (3, 1e-4, 2e-2)
    assert (RECOMMENDED["epochs"], RECOMMENDED["learning_rate"], RECOMMENDED["head_learning_rate"]) == (3, 1e-4, 2e-2)
    assert (defaults.decision_rule, defaults.min_positives, defaults.threshold_objective) == (
        "at_least_one",
        5,
        "macro_f1",
    )
    config = TrainConfig()
    assert (config.epochs, config.learning_rate, config.head_learning_rate) == (3, 1e-4, 2e-2)
    # The head rate follows the encoder's unless it is set: a vanishing encoder rate keeps the head still too.
    assert TrainingArguments(learning_rate=1e-12).head_lr() == pytest.approx(2e-10)
    assert TrainingArguments(learning_rate=1e-3, head_learning_rate=5e-2).head_lr() == 5e-2


def test_training_arguments_import_paths_and_threshold_settings_are_checked():
    from labelspace import TrainingArguments as top
    from labelspace.training.arguments import TrainingArguments as home
    from labelspace.training.trainer import TrainingArguments as old

    assert top is home is old is TrainingArguments
    with pytest.raises(ValueError, match="decision_rule must be one of threshold, at_least_one, top_k"):
        TrainingArguments(decision_rule="vote")
    with pytest.raises(ValueError, match="threshold_objective must be one of"):
        TrainingArguments(threshold_objective="accuracy")
    with pytest.raises(ValueError, match="min_positives must be a positive integer"):
        TrainingArguments(min_positives=0)


# ----------------------------------------------------------------------------- optimizer groups


class LearnedScale(ModelLoss):
    """A loss with a trainable parameter of its own (like a learned temperature): ``scale * BCE``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.inner = HeadObjective(BCEHeadLoss())

    def forward(self, model, batch, cache=None):
        return self.scale * self.inner(model, batch, cache)


def test_optimizer_groups_decay_no_decay_head_and_loss_parameters(tiny):
    data = toy_data()
    model = new_model(tiny, data)
    loss = LearnedScale()
    args = TrainingArguments(learning_rate=1e-3, weight_decay=0.05)
    groups = parameter_groups(model, [loss], args)
    names = {id(p): name for name, p in model.encoder.named_parameters()}
    decay, plain, head, extra = groups
    assert (decay["weight_decay"], decay["lr"]) == (0.05, 1e-3)
    assert all(not any(key in names[id(p)] for key in NO_DECAY) for p in decay["params"])
    assert (plain["weight_decay"], plain["lr"]) == (0.0, 1e-3)
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in plain["params"])
    assert any("LayerNorm.weight" in names[id(p)] for p in plain["params"])
    assert (head["weight_decay"], head["lr"]) == (0.0, pytest.approx(0.2))  # 200 x the encoder's rate
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert extra["params"] == [loss.scale] and (extra["weight_decay"], extra["lr"]) == (0.0, 1e-3)
    # Every trainable parameter is in exactly one group.
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in [*model.parameters(), loss.scale] if p.requires_grad)
    explicit = parameter_groups(model, [], TrainingArguments(learning_rate=1e-3, head_learning_rate=5e-2))
    assert len(explicit) == 3 and explicit[2]["lr"] == 5e-2


# ----------------------------------------------------------------------------- callbacks


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_train_begin(self, trainer, state):
        self.events.append(("begin", state.global_step))

    def on_step_end(self, trainer, state):
        self.events.append(("step", state.global_step))

    def on_log(self, trainer, state, logs):
        self.events.append(("log", logs["step"]))

    def on_evaluate(self, trainer, state, metrics):
        self.events.append(("evaluate", state.global_step))

    def on_save(self, trainer, state, path):
        assert Path(path).name == f"checkpoint-{state.global_step}"
        self.events.append(("save", state.global_step))

    def on_train_end(self, trainer, state):
        assert (trainer.output_dir / "model" / "labelspace.json").is_file()
        assert (trainer.output_dir / "metrics.json").is_file()
        self.events.append(("end", state.global_step))


def test_callbacks_fire_in_order_built_in_ones_first(tiny, tmp_path):
    data = toy_data(repeat=1)  # 8 texts, batch 4: two steps per epoch
    recorder = Recorder()
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        batch_size=4,
        eval_steps=2,
        save_steps=2,
        logging_steps=1,
        show_progress_bar=False,
    )
    trainer = Trainer(new_model(tiny, data), data, BCEHeadLoss(), eval_dataset=data, args=args, callbacks=[recorder])
    assert [type(c).__name__ for c in trainer.callbacks] == [
        "LoggingCallback",
        "EvaluationCallback",
        "CheckpointCallback",
        "Recorder",
    ]
    trainer.train()
    per_step = {
        1: [("log", 1), ("step", 1)],
        2: [("log", 2), ("evaluate", 2), ("save", 2), ("step", 2)],
        3: [("log", 3), ("step", 3)],
        4: [("log", 4), ("evaluate", 4), ("save", 4), ("step", 4)],
    }
    assert recorder.events == [("begin", 0), *[e for step in (1, 2, 3, 4) for e in per_step[step]], ("end", 4)]
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [(entry["step"], "eval" in entry) for entry in log] == [
        (1, False), (2, False), (2, True), (3, False), (4, False), (4, True)
    ]  # fmt: skip
    # Epochs are fractional: half of the first epoch after step 1, the second one done after step 4.
    assert [entry["epoch"] for entry in log] == [0.5, 1.0, 1.0, 1.5, 2.0, 2.0]


def test_logged_loss_parts_are_the_weighted_components_that_sum_to_the_loss(tiny):
    data = toy_data()
    loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 0.25)])
    args = TrainingArguments(max_steps=3, batch_size=8, logging_steps=1, show_progress_bar=False)
    trainer = Trainer(new_model(tiny, data), data, loss, args=args)
    trainer.train()
    for entry in trainer.state.log_history:
        parts = entry["loss_MultiSimilarityLoss"] + entry["loss_BCEHeadLoss"]
        assert parts == pytest.approx(entry["loss"], rel=1e-5)
    # One part alone is not repeated as a loss_<name> entry.
    single = Trainer(new_model(tiny, data), data, BCEHeadLoss(), args=args)
    single.train()
    assert not any(key.startswith("loss_") for key in single.state.log_history[-1])


# ----------------------------------------------------------------------------- best model on the shipped decisions

LABELS = [["a"], ["b"], ["a"], ["b"]]
# Evaluation 1: ranked perfectly, every score below 0.5. At 0.5 nothing is predicted (macro-F1 0); tuned
# (thresholds 0.2) every label is right (1.0).
RANKED_LOW = np.array([[0.3, 0.1], [0.1, 0.3], [0.3, 0.1], [0.1, 0.3]], dtype=np.float32)
# Evaluation 2: every score above 0.5, so 0.5 predicts every label (P 0.5, R 1: F1 2/3 each, macro 2/3). Tuned:
# label b is perfect at 0.75; label a's best cut ties F1 2/3 at 0.9 and at 0.55 and the higher (0.75) wins, so
# text 3 gets no label above its threshold and at_least_one gives it b (0.6 > 0.55), a false b: b's F1 0.8,
# macro (2/3 + 0.8) / 2 = 0.733.
HIGH_AND_NOISY = np.array([[0.9, 0.6], [0.6, 0.9], [0.55, 0.6], [0.6, 0.9]], dtype=np.float32)


def scripted_probabilities(model: LabelspaceModel) -> None:
    """The model's label scores follow the script, one entry per set of weights evaluated (restored weights
    get the probabilities they had). Every prediction (the Predictor the evaluation uses) scores through
    `LabelspaceModel.score_embeddings`, so that is what is scripted."""
    seen: list[tuple[torch.Tensor, np.ndarray]] = []
    script = [RANKED_LOW, HIGH_AND_NOISY]

    def score_embeddings(embeddings, head_probabilities=None):
        weights = torch.cat([p.detach().flatten().cpu() for p in model.head.parameters()])
        for known, probabilities in seen:
            if torch.equal(known, weights):
                return probabilities.copy()
        seen.append((weights.clone(), script[len(seen)]))
        return seen[-1][1].copy()

    model.score_embeddings = score_embeddings


@pytest.mark.parametrize(
    ("tune", "best_step", "best_metric", "shipped"),
    [(True, 2, 1.0, RANKED_LOW), (False, 4, 2 / 3, HIGH_AND_NOISY)],
)
def test_best_model_is_picked_on_the_decisions_it_ships(tiny, tmp_path, tune, best_step, best_metric, shipped):
    data = LabeledDataset.from_label_names(["alpha one", "beta two", "alpha three", "beta four"], LABELS)
    model = new_model(tiny, data)
    scripted_probabilities(model)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        batch_size=4,
        eval_steps=2,
        tune_thresholds=tune,
        min_positives=1,
        show_progress_bar=False,
    )
    output = Trainer(model, data, BCEHeadLoss(), eval_dataset=data, args=args).train()
    assert (output.best_step, output.best_metric) == (best_step, pytest.approx(best_metric))
    saved = LabelspaceModel.from_pretrained(tmp_path / "run" / "model")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["macro_f1"] == pytest.approx(best_metric)
    decided = saved.decide(shipped)
    truth = data.labels.to_dense().astype(bool)
    if tune:
        np.testing.assert_allclose(saved.thresholds, [0.2, 0.2], rtol=1e-6)
        assert saved.decision_rule == "at_least_one" and (decided == truth).all()
        assert set(metrics["dev"]) == {"global 0.5", "tuned"} and metrics["dev"]["global 0.5"]["macro_f1"] == 0.0
        assert saved.metadata["thresholds"]["thresholds"] == pytest.approx([0.2, 0.2], rel=1e-6)
    else:
        np.testing.assert_allclose(saved.thresholds, [0.5, 0.5])
        assert saved.decision_rule == "threshold" and decided.all()
        assert set(metrics["dev"]) == {"global 0.5"}


# ----------------------------------------------------------------------------- labelspace train writes once


def test_labelspace_train_writes_the_model_and_metrics_once(run_cli, tiny, tmp_path, monkeypatch):
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    save(demo("train").subset(range(64)), train)
    save(demo("dev"), dev)
    out = tmp_path / "run"
    model_saves: list[Path] = []
    original_save = LabelspaceModel.save

    def counting_save(self, path, **kwargs):
        model_saves.append(Path(path))
        return original_save(self, path, **kwargs)

    monkeypatch.setattr(LabelspaceModel, "save", counting_save)
    code, stdout, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(train), "--dev", str(dev), "--out", str(out),
        "--epochs", "1", "--batch-size", "16", "--max-seq-length", "32", "--quiet",
        "--no-baseline-candidate",  # the frozen baseline may win on this tiny model; see tests/test_probe.py
    )  # fmt: skip
    assert code == 0, stderr
    assert model_saves.count(out / "model") == 1
    # One schema: the shipped model's metrics at the top (with its thresholds), the reports to compare under "dev".
    metrics = json.loads((out / "metrics.json").read_text())
    saved = LabelspaceModel.from_pretrained(out / "model")
    assert metrics["macro_f1"] == metrics["dev"]["tuned"]["macro_f1"]
    thresholds = [row["threshold"] for row in metrics["per_label"].values()]
    np.testing.assert_allclose(thresholds, saved.thresholds, rtol=1e-6)
    assert saved.metadata["thresholds"]["tuned_on"] == str(dev)
    assert saved.metadata["training"]["best_metric"] == pytest.approx(metrics["macro_f1"])


# ----------------------------------------------------------------------------- Ctrl-C between steps


class InterruptOnStep(Callback):
    """Sends this process a SIGINT during step ``step``'s callbacks, then keeps working."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.finished_steps: list[int] = []

    def on_step_end(self, trainer, state):
        if state.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)
        # With Python's default handler the KeyboardInterrupt lands here, in the middle of a callback.
        sum(range(10_000))
        self.finished_steps.append(state.global_step)


def test_ctrl_c_stops_between_steps_after_the_checkpoint(tiny, tmp_path, capsys):
    data = toy_data(repeat=1)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=6, batch_size=4, save_steps=1, show_progress_bar=False
    )
    interrupt = InterruptOnStep(2)
    trainer = Trainer(new_model(tiny, data), data, BCEHeadLoss(), args=args, callbacks=[interrupt])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert interrupt.finished_steps == [1, 2]  # step 2's callbacks all ran, step 3 never started
    assert trainer.state.global_step == 2
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert "stopping after this step" in capsys.readouterr().err
    import signal

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


class EpochSizedSampler:
    """Two batches in epoch 0, three from epoch 1 on; records every batch it hands out."""

    def __init__(self) -> None:
        self.epoch = 0
        self.given: list[tuple[int, int]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2 if self.epoch == 0 else 3

    def __iter__(self):
        for number in range(len(self)):
            self.given.append((self.epoch, number))
            yield [2 * number % 8, (2 * number + 1) % 8]


def test_the_schedule_of_an_epoch_uses_the_sampler_length_of_that_epoch(tiny):
    data = toy_data(repeat=1)
    sampler = EpochSizedSampler()
    args = TrainingArguments(max_steps=5, batch_size=2, sampler=sampler, show_progress_bar=False)
    Trainer(new_model(tiny, data), data, BCEHeadLoss(), args=args).train()
    assert sampler.given == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
