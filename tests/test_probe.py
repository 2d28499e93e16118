"""Linear probe head init and the frozen baseline candidate (issue 14, items 1 and 2).

The reference is scikit-learn's ``LogisticRegression(C=10, max_iter=1000)`` fitted here on the same
frozen embeddings, and the first-order optimality condition of its objective
``0.5 * ||w||^2 + C * sum(log loss)`` (intercept unpenalised): the gradient is zero at the optimum.

Tolerances: the head stores float32 weights of a float64 fit (relative error ~1e-7), and lbfgs stops at
a small but nonzero gradient (sklearn's ``tol=1e-4``); probabilities are compared to 1e-5, weights to
1e-4 relative, and the gradient of the objective must be below 1e-2 of its size at zero weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from labelspace import LabelspaceModel, Trainer, TrainingArguments
from labelspace.data import LabeledDataset, save
from labelspace.models.heads import ClassificationHead
from labelspace.models.testing import tiny_model_folder
from labelspace.training.callbacks import Callback
from labelspace.training.probe import fit_probe, linear_probe
from toy_data import toy_data

C = 10.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def sklearn_fit(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fits = [LogisticRegression(C=C, max_iter=1000).fit(embeddings, labels[:, j]) for j in range(labels.shape[1])]
    return np.stack([fit.coef_[0] for fit in fits]), np.array([fit.intercept_[0] for fit in fits])


def head_weights(head: ClassificationHead) -> tuple[np.ndarray, np.ndarray]:
    layer = head.layers[-1]
    return layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()


def test_probe_head_equals_logistic_regression_on_the_frozen_embeddings(tiny):
    data = toy_data(4)
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    head = linear_probe(model, [data], C=C)
    embeddings = model.encode(data.texts).astype(np.float64)
    y = data.labels.to_dense().astype(np.float64)
    weight, bias = head_weights(head)
    expected_weight, expected_bias = sklearn_fit(embeddings, y)
    np.testing.assert_allclose(weight, expected_weight, rtol=1e-4, atol=1e-4 * np.abs(expected_weight).max())
    np.testing.assert_allclose(bias, expected_bias, rtol=1e-4, atol=1e-5)
    probabilities = head.predict_proba(torch.from_numpy(embeddings).float()).numpy()
    expected = np.stack(
        [
            LogisticRegression(C=C, max_iter=1000).fit(embeddings, y[:, j]).predict_proba(embeddings)[:, 1]
            for j in range(4)
        ],
        axis=1,
    )
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # Independently of sklearn: the gradient of 0.5||w||^2 + C * sum(log loss) vanishes at the head's weights.
    residual = 1 / (1 + np.exp(-(embeddings @ weight.T + bias))) - y
    gradient_w = weight + C * residual.T @ embeddings
    gradient_b = C * residual.sum(axis=0)
    scale = np.abs(C * (0.5 - y).T @ embeddings).max()  # the gradient at w = 0, b = 0
    assert np.abs(gradient_w).max() < 1e-2 * scale and np.abs(gradient_b).max() < 1e-2 * scale
    # The model itself is untouched: linear_probe returns a fitted copy.
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in before.items())


def test_single_label_probe_is_the_multinomial_fit_and_constant_labels_get_their_smoothed_rate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    classes = np.argmax(x[:, :3] + 0.5 * rng.normal(size=(60, 3)), axis=1)
    one_hot = np.eye(3)[classes]
    head = ClassificationHead(5, 3, kind="single_label")
    fit_probe(head, x.astype(np.float32), one_hot, C=C)
    reference = LogisticRegression(C=C, max_iter=1000).fit(x, classes)
    probabilities = head.predict_proba(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(probabilities, reference.predict_proba(x), atol=1e-5)
    # A multi-label column that is never positive cannot be fitted: weight 0, bias logit(0.5 / (n + 1)).
    multi = ClassificationHead(5, 2)
    labels = np.stack([classes == 0, np.zeros(60, bool)], axis=1).astype(np.float32)
    fit_probe(multi, x.astype(np.float32), labels, C=C)
    weight, bias = head_weights(multi)
    assert np.all(weight[1] == 0)
    assert bias[1] == pytest.approx(np.log(0.5 / 61 / (1 - 0.5 / 61)), rel=1e-6)


def test_mlp_head_probe_fits_only_the_last_layer_on_the_hidden_features():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    torch.manual_seed(0)
    head = ClassificationHead(6, 2, hidden_dim=8)
    first = head.layers[0].weight.detach().clone()
    fit_probe(head, x, y, C=C)
    assert torch.equal(head.layers[0].weight, first)
    with torch.no_grad():
        hidden = head.layers[1](head.layers[0](torch.from_numpy(x))).double().numpy()
    expected_weight, expected_bias = sklearn_fit(hidden, y.astype(np.float64))
    weight, bias = head_weights(head)
    np.testing.assert_allclose(weight, expected_weight, rtol=1e-4, atol=1e-4 * np.abs(expected_weight).max())
    np.testing.assert_allclose(bias, expected_bias, rtol=1e-4, atol=1e-5)


class HeadAtStart(Callback):
    def on_train_begin(self, trainer, state):
        self.weight, self.bias = head_weights(trainer.model.head)


@pytest.mark.parametrize("head_init", ["probe", "random"])
def test_trainer_starts_the_head_from_the_probe_or_from_its_own_init(tiny, head_init):
    data = toy_data(2)
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    initial = head_weights(model.head)
    embeddings = model.encode(data.texts).astype(np.float64)
    seen = HeadAtStart()
    args = TrainingArguments(max_steps=1, batch_size=8, show_progress_bar=False, head_init=head_init)
    Trainer(model, data, args=args, callbacks=[seen]).train()
    if head_init == "probe":
        expected_weight, expected_bias = sklearn_fit(embeddings, data.labels.to_dense().astype(np.float64))
        np.testing.assert_allclose(seen.weight, expected_weight, rtol=1e-4, atol=1e-4 * np.abs(expected_weight).max())
        np.testing.assert_allclose(seen.bias, expected_bias, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(seen.weight, initial[0])
        np.testing.assert_array_equal(seen.bias, initial[1])


def test_training_arguments_check_head_init_and_probe_c():
    with pytest.raises(ValueError, match="head_init must be one of probe, random"):
        TrainingArguments(head_init="zeros")
    with pytest.raises(ValueError, match="probe_c must be a number > 0"):
        TrainingArguments(probe_c=0)
    with pytest.raises(ValueError, match="baseline_candidate must be true or false"):
        TrainingArguments(baseline_candidate="yes")


def run(tiny: Path, out: Path, data: LabeledDataset, **settings) -> tuple[LabelspaceModel, dict]:
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    values = dict(
        batch_size=8, show_progress_bar=False, tune_thresholds=True, min_positives=1, seed=0, baseline_candidate=True
    )
    args = TrainingArguments(output_dir=str(out), **{**values, **settings})
    Trainer(model, data, eval_dataset=data, args=args).train()
    return model, json.loads((out / "metrics.json").read_text())


def test_the_frozen_baseline_ships_when_fine_tuning_cannot_help(tiny, tmp_path):
    # A random head barely trained (learning rates ~0) against the probe on the same frozen encoder.
    data = toy_data(4)
    out = tmp_path / "run"
    _, metrics = run(tiny, out, data, max_steps=2, head_init="random", learning_rate=1e-9, head_learning_rate=1e-9)
    assert metrics["shipped"] == "frozen_baseline"
    values = {name: value["macro_f1"] for name, value in metrics["candidates"].items()}
    assert values["frozen_baseline"] > values["fine_tuned"]
    assert metrics["macro_f1"] == values["frozen_baseline"]  # metrics.json describes the model that ships
    assert "frozen_baseline" in metrics["shipped_because"]
    shipped = LabelspaceModel.from_pretrained(out / "model")
    assert shipped.metadata["training"]["selection"]["shipped"] == "frozen_baseline"
    original = LabelspaceModel.from_pretrained(tiny)
    assert all(
        torch.equal(value, shipped.encoder.state_dict()[k]) for k, value in original.encoder.state_dict().items()
    )
    embeddings = original.encode(data.texts).astype(np.float64)
    expected_weight, _ = sklearn_fit(embeddings, data.labels.to_dense().astype(np.float64))
    np.testing.assert_allclose(head_weights(shipped.head)[0], expected_weight, rtol=1e-4, atol=1e-3)
    assert not (out / "baseline-model").exists()
    # Without the candidate the fine-tuned model ships, as before.
    _, plain = run(
        tiny,
        tmp_path / "plain",
        data,
        max_steps=2,
        head_init="random",
        learning_rate=1e-9,
        head_learning_rate=1e-9,
        baseline_candidate=False,
    )
    assert "candidates" not in plain and "shipped" not in plain
    assert plain["macro_f1"] == pytest.approx(values["fine_tuned"])


def test_the_fine_tuned_model_ships_when_it_is_better(tiny, tmp_path):
    # probe_c tiny: the baseline's head is ~constant (each label's rate), so it cannot rank texts.
    data = toy_data(4)
    out = tmp_path / "run"
    model, metrics = run(tiny, out, data, num_epochs=6, probe_c=1e-6, head_init="random")
    values = {name: value["macro_f1"] for name, value in metrics["candidates"].items()}
    assert values["fine_tuned"] > values["frozen_baseline"]
    assert metrics["shipped"] == "fine_tuned" and metrics["macro_f1"] == values["fine_tuned"]
    shipped = LabelspaceModel.from_pretrained(out / "model")
    assert all(torch.equal(value.cpu(), shipped.state_dict()[key]) for key, value in model.state_dict().items())


def test_cli_head_init_and_baseline_candidate_flags(run_cli, tiny, tmp_path):
    data = toy_data(2)
    save(data, tmp_path / "train.jsonl")
    common = ["--model", str(tiny), "--train", str(tmp_path / "train.jsonl"), "--dev", str(tmp_path / "train.jsonl")]
    common += ["--max-steps", "1", "--batch-size", "8", "--max-seq-length", "16", "--quiet"]
    code, stdout, stderr = run_cli("train", *common, "--out", str(tmp_path / "a"), "--head-init", "probe")
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["shipped"] in ("fine_tuned", "frozen_baseline")
    assert f"shipped: {metrics['shipped']}" in stdout
    saved = LabelspaceModel.from_pretrained(tmp_path / "a" / "model").metadata["training"]["args"]
    assert saved["head_init"] == "probe" and saved["baseline_candidate"] is True
    code, stdout, stderr = run_cli("train", *common, "--out", str(tmp_path / "b"), "--no-baseline-candidate")
    assert code == 0, stderr
    assert "shipped" not in json.loads((tmp_path / "b" / "metrics.json").read_text())
    code, _, stderr = run_cli("train", *common, "--out", str(tmp_path / "c"), "--head-init", "zeros")
    assert code == 2 and "head_init must be one of probe, random" in stderr


def test_a_tie_keeps_the_fine_tuned_model():
    from labelspace.training.evaluation import Evaluation, select_candidate

    tie = select_candidate(
        {"fine_tuned": Evaluation({"macro_f1": 0.8}), "frozen_baseline": Evaluation({"macro_f1": 0.8})}, "macro_f1"
    )
    assert tie["shipped"] == "fine_tuned" and "strictly better" in tie["reason"]
    lower = select_candidate(
        {"fine_tuned": Evaluation({"loss": 0.3}), "frozen_baseline": Evaluation({"loss": 0.2})},
        "loss",
        greater_is_better=False,
    )
    assert lower["shipped"] == "frozen_baseline"


class StopAfter(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, state):
        if state.global_step == self.step:  # after the checkpoint of this step (built-in callbacks run first)
            raise KeyboardInterrupt


def test_a_resumed_run_keeps_the_baseline_candidate(tiny, tmp_path):
    data = toy_data(2)
    settings = dict(
        max_steps=4,
        save_steps=2,
        head_init="random",
        learning_rate=1e-9,
        head_learning_rate=1e-9,
        baseline_candidate=True,
    )
    _, uninterrupted = run(tiny, tmp_path / "whole", data, **settings)
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "cut"), batch_size=8, show_progress_bar=False, tune_thresholds=True, min_positives=1
    )
    args = TrainingArguments(**{**args.to_dict(), **settings})
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, data, eval_dataset=data, args=args, callbacks=[StopAfter(2)]).train()
    assert (tmp_path / "cut" / "baseline-model").is_dir()
    again = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    Trainer(again, data, eval_dataset=data, args=args).train(resume_from_checkpoint=True)
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert resumed["shipped"] == uninterrupted["shipped"] == "frozen_baseline"
    for name, value in uninterrupted["candidates"].items():
        assert resumed["candidates"][name]["macro_f1"] == pytest.approx(value["macro_f1"])
    assert not (tmp_path / "cut" / "baseline-model").exists()


def test_the_library_leaves_the_baseline_off_and_keeps_a_trained_head(tiny, tmp_path):
    assert TrainingArguments().baseline_candidate is False  # `labelspace train` turns it on
    data = toy_data(2)
    args = TrainingArguments(output_dir=str(tmp_path / "first"), max_steps=2, batch_size=8, show_progress_bar=False)
    model = LabelspaceModel.from_pretrained(tiny, labels=data.label_set, seed=0)
    assert not model.head_is_trained
    Trainer(model, data, eval_dataset=data, args=args).train()
    assert model.head_is_trained
    loaded = LabelspaceModel.from_pretrained(tmp_path / "first" / "model")
    assert loaded.head_is_trained
    before = {key: value.clone() for key, value in loaded.head.state_dict().items()}
    again = TrainingArguments(
        max_steps=1, batch_size=8, show_progress_bar=False, learning_rate=1e-12, head_learning_rate=1e-12
    )
    Trainer(loaded, data, args=again).train()  # probe is the default head_init: a trained head is kept
    for key, value in before.items():  # a refitted probe would move the weights by far more than 1e-12 steps do
        torch.testing.assert_close(loaded.head.state_dict()[key], value, rtol=0, atol=1e-6)
