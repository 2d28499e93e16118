"""Recipes users bring from sentence-transformers and pytorch-metric-learning (issue 9, items 2-5 and 7).

- text losses on labeled data get data they can learn from (scored pairs, triplets);
- a loss that cannot learn from the data is a one-line error before any file is written;
- triplets train AnglE / CoSENT, alone or beside TripletLoss on the same batch;
- explicit pairs and triplets train the metric losses, the pairs becoming the batch's relation;
- bad ``indices_tuple`` values are a clear ValueError;
- loss parameters, pooling and normalisation are reachable from the spec, the YAML config and flags;
- dev / test labels that the training data lacks: ``--unknown-labels error|ignore``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from labelspace import losses
from labelspace.commands.train import run_training
from labelspace.data import LabeledDataset, PairDataset, TripletDataset, save
from labelspace.data.batch import make_batch
from labelspace.data.builtin import demo
from labelspace.data.convert import triplets_to_pairs
from labelspace.losses.model_loss import CombinedLoss, MetricObjective
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import Encoder
from labelspace.models.testing import tiny_model_folder
from labelspace.recipes import TrainConfig, build_losses, parse_loss_terms
from labelspace.relations import Relation

METRIC_LOSSES = {
    "contrastive": losses.ContrastiveLoss,
    "ntxent": losses.NTXentLoss,
    "triplet_margin": losses.TripletMarginLoss,
    "multi_similarity": losses.MultiSimilarityLoss,
    "circle": losses.CircleLoss,
    "fastap": losses.FastAPLoss,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Small demo train / dev files, and pair / triplet files drawn from the demo labels."""
    from labelspace.data.convert import labeled_to_anchor_positive, labeled_to_pairs, labeled_to_triplets

    folder = tmp_path_factory.mktemp("files")
    train = demo("train").subset(range(48))
    paths = {name: folder / f"{name}.jsonl" for name in ("train", "dev", "pairs", "positive_pairs", "triplets")}
    save(train, paths["train"])
    save(demo("dev").subset(range(40)), paths["dev"])
    save(labeled_to_pairs(train, 48, seed=0), paths["pairs"])
    save(PairDataset(**_pair_fields(labeled_to_anchor_positive(train, 48, seed=0))), paths["positive_pairs"])
    save(labeled_to_triplets(train, 48, seed=0), paths["triplets"])
    return paths


def _pair_fields(pairs: PairDataset) -> dict:
    return {"text1": pairs.text1, "text2": pairs.text2, "scores": np.asarray(pairs.scores)}


def _config(tiny: Path, train: Path, out: Path, loss: str, **extra) -> TrainConfig:
    values = {
        "train": str(train),
        "out": str(out),
        "model": str(tiny),
        "loss": loss,
        "epochs": 8,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "max_seq_length": 32,
        "warmup_ratio": 0.0,
        "training": {"logging_steps": 1, "save_steps": 1000},
    }
    values.update(extra)
    return TrainConfig(**values)


def _logged(run: Path, key: str = "loss") -> list[float]:
    entries = map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
    return [entry[key] for entry in entries if key in entry]


def _assert_learns(run: Path, key: str = "loss") -> None:
    values = _logged(run, key)
    assert len(values) >= 8 and all(math.isfinite(v) and v > 0 for v in values), values
    assert sum(values[-3:]) < sum(values[:3]), f"{key} did not fall: {values}"


# ----------------------------------------------------------------------------- item 2: the data each loss gets


def test_scored_pair_losses_on_labeled_data_get_positive_and_negative_pairs():
    data = demo("train")
    datasets, chosen = build_losses("angle", data, seed=0)
    (pairs,) = datasets.values()
    assert isinstance(pairs, PairDataset) and set(np.unique(pairs.scores)) == {0.0, 1.0}
    index = {text: i for i, text in enumerate(data.texts)}
    dense = data.labels.to_dense()
    shares = np.array(
        [(dense[index[a]] & dense[index[b]]).any() for a, b in zip(pairs.text1, pairs.text2, strict=True)]
    )
    assert np.array_equal(shares, np.asarray(pairs.scores) == 1.0)
    graded, _ = build_losses("cosent", data, seed=0, pair_score="jaccard")
    scores = np.asarray(next(iter(graded.values())).scores)
    assert scores.min() == 0.0 and ((scores > 0) & (scores < 1)).any()


def test_triplet_loss_on_labeled_data_gets_triplets_and_combines_with_a_head_loss():
    data = demo("train")
    datasets, _ = build_losses("triplet", data, seed=0)
    assert isinstance(datasets["train"], TripletDataset)
    datasets, chosen = build_losses("triplet+bce", data, seed=0)
    assert set(datasets) == {"labeled", "triplets"} and isinstance(datasets["triplets"], TripletDataset)
    # angle + triplet on labeled data share the triplet batches: one dataset, one combined loss.
    datasets, chosen = build_losses("angle+triplet:0.5", data, seed=0)
    assert list(datasets) == ["train"] and isinstance(datasets["train"], TripletDataset)
    assert chosen["train"].weights == [1.0, 0.5]


@pytest.mark.parametrize(
    ("loss", "data_file", "message"),
    [
        ("bce", "pairs", "needs labeled training data"),
        ("triplet", "pairs", "trains on triplets data"),
        ("cosent", "positive_pairs", "every pair of dataset 'train' has score 1"),
        ("mnrl", "pairs", "have a score below 0.5"),
        ("gist", "train", "needs a guide model"),
        ("triplet_margin(margn=1)", "train", "has no parameter 'margn'"),
    ],
)
def test_a_loss_that_cannot_learn_from_the_data_is_one_line_before_any_file(
    run_cli, tiny, files, tmp_path, loss, data_file, message
):
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(files[data_file]), "--out", str(out), "--loss", loss, "--quiet"
    )
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- item 4: triplets + AnglE / CoSENT


def test_angle_plus_triplet_on_a_triplet_batch_is_the_weighted_sum_of_both(tiny):
    model = LabelspaceModel.from_pretrained(tiny).eval()
    triplets = TripletDataset(
        ["a b c", "d e", "f g h i"], ["a b", "d e f", "g h"], [["x y", "z"], ["q", "r s"], ["t", "u v w"]]
    )
    combined = CombinedLoss([(losses.AnglELoss(), 1.0), (losses.TripletLoss(), 0.5)])
    with torch.no_grad():
        value = float(combined(model, make_batch(triplets, [0, 1, 2])))
        pairs = triplets_to_pairs(triplets)  # the conversion users know from labelspace convert
        angle = losses.AnglELoss()(
            model.encoder.embed(pairs.text1), model.encoder.embed(pairs.text2), torch.tensor(pairs.scores)
        )
        embed = model.encoder.embed
        negatives = [embed([triplets.negatives_of(i)[k] for i in range(3)]) for k in range(2)]
        triplet = losses.TripletLoss()(embed(triplets.anchors), embed(triplets.positives), *negatives)
    expected = float(angle) + 0.5 * float(triplet)
    assert value == pytest.approx(expected, rel=1e-5)
    assert combined.last_values == pytest.approx({"AnglELoss": float(angle), "TripletLoss": float(triplet)}, rel=1e-5)


@pytest.mark.parametrize("loss", ["angle", "cosent", "angle+triplet:0.5"])
def test_triplet_files_train_scored_pair_losses(tiny, files, tmp_path, loss):
    out = tmp_path / "run"
    run_training(_config(tiny, files["triplets"], out, loss), show_progress=False, print_table=False)
    _assert_learns(out)
    if "+" in loss:
        _assert_learns(out, "loss_AnglELoss")
        _assert_learns(out, "loss_TripletLoss")


def test_gist_from_the_cli_with_a_guide_model(run_cli, tiny, files, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--guide-model", str(tiny), "--train", str(files["triplets"]),
        "--out", str(out), "--loss", "cached_gist(mini_batch_size=4)", "--epochs", "1", "--batch-size", "16",
        "--max-seq-length", "32", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    assert (out / "model" / "model.safetensors").is_file() and _logged(out)[0] > 0


# ------------------------------------------------------------------------ item 5: metric losses on pairs / triplets


def test_pairs_become_the_relation_with_in_batch_negatives():
    # texts: a0 a1 a2 | b0 b1 b2, pairs (a0, b0) positive, (a1, b1) negative, (a2, b2) positive, and a2 == b0.
    keys = torch.tensor([1, 2, 3, 4, 5, 3])
    relation = Relation.from_pairs(
        keys, (torch.tensor([0, 2]), torch.tensor([3, 5])), (torch.tensor([1]), torch.tensor([4]))
    )
    expected_positive = np.zeros((6, 6), dtype=bool)
    for i, j in [(0, 3), (2, 5)]:
        expected_positive[i, j] = expected_positive[j, i] = True
    assert np.array_equal(relation.positive.numpy(), expected_positive)
    expected_negative = ~expected_positive & ~np.eye(6, dtype=bool)
    expected_negative[2, 5] = expected_negative[5, 2] = False  # the same text is never a negative of itself
    assert np.array_equal(relation.negative.numpy(), expected_negative)
    explicit = Relation.from_pairs(
        keys,
        (torch.tensor([0, 2]), torch.tensor([3, 5])),
        (torch.tensor([1]), torch.tensor([4])),
        in_batch_negatives=False,
    )
    only = np.zeros((6, 6), dtype=bool)
    only[1, 4] = only[4, 1] = True
    assert np.array_equal(explicit.negative.numpy(), only)


@pytest.mark.parametrize("name", sorted(METRIC_LOSSES))
def test_explicit_pairs_equal_the_indices_tuple_a_user_would_build(tiny, name):
    model = LabelspaceModel.from_pretrained(tiny).eval()
    pairs = PairDataset(["a b", "c d", "e f", "g h"], ["a c", "c e", "x y", "z"], np.array([1.0, 1.0, 0.0, 1.0]))
    objective = MetricObjective(METRIC_LOSSES[name](), in_batch_negatives=False)
    with torch.no_grad():
        value = objective(model, make_batch(pairs, range(4)))
        embeddings = torch.cat([model.encoder.embed(pairs.text1), model.encoder.embed(pairs.text2)])
        # pytorch-metric-learning style: (a1, p, a2, n) over the 8 embeddings, both directions of each pair.
        a1, p = [0, 4, 1, 5, 3, 7], [4, 0, 5, 1, 7, 3]
        a2, n = [2, 6], [6, 2]
        indices = tuple(torch.tensor(t) for t in (a1, p, a2, n))
        expected = METRIC_LOSSES[name]()(embeddings, indices_tuple=indices)
    assert float(value) == pytest.approx(float(expected), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("data_file", ["pairs", "triplets"])
@pytest.mark.parametrize("name", sorted(METRIC_LOSSES))
def test_pair_and_triplet_files_train_metric_losses(tiny, files, tmp_path, name, data_file):
    out = tmp_path / "run"
    run_training(_config(tiny, files[data_file], out, name), show_progress=False, print_table=False)
    _assert_learns(out)


@pytest.mark.parametrize(
    ("indices_tuple", "message"),
    [
        ([[0, 1], [1, 0], [2, 2]], "must be a 1-D integer torch.Tensor"),
        (
            (torch.tensor([0]), None, torch.tensor([2])),
            "indices_tuple\\[1\\] must be a 1-D integer torch.Tensor, got None",
        ),
        ((torch.tensor([0]), torch.tensor([1])), "must have 3 \\(a, p, n\\) or 4"),
        ((torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2, 3])), "must have one length"),
        ((torch.tensor([0]), torch.tensor([1]), torch.tensor([9])), "holds index 9, outside 0..3"),
        ((torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0])), "integer tensor"),
        ([torch.tensor([0]), torch.tensor([1]), torch.tensor([-1])], "holds index -1"),
    ],
)
@pytest.mark.parametrize("name", sorted(METRIC_LOSSES))
def test_bad_indices_tuples_are_value_errors(name, indices_tuple, message):
    embeddings = torch.randn(4, 8)
    with pytest.raises(ValueError, match=message):
        METRIC_LOSSES[name]()(embeddings, torch.tensor([0, 0, 1, 1]), indices_tuple=indices_tuple)


# ----------------------------------------------------------------------------- item 7: hyperparameters without Python


def test_loss_parameters_from_the_spec_the_yaml_and_the_flags():
    data = demo("train")
    _, chosen = build_losses(
        "triplet_margin(margin=1.0, swap=true)+ntxent+bce(label_smoothing=0.2)",
        data,
        loss_args={"ntxent": {"temperature": 0.5}, "bce": {"label_smoothing": 0.1, "pos_weight": 3}},
    )
    parts = {part.name: part.loss for part in chosen["train"].losses}
    assert parts["TripletMarginLoss"].margin == 1.0 and parts["TripletMarginLoss"].swap is True
    assert parts["NTXentLoss"].temperature == 0.5
    assert parts["BCEHeadLoss"].label_smoothing == 0.2  # the spec wins over loss_args
    assert torch.equal(parts["BCEHeadLoss"].pos_weight, torch.tensor(3.0))
    with pytest.raises(ValueError, match="has no parameter 'temp'"):
        build_losses("ntxent(temp=0.1)", data)
    with pytest.raises(ValueError, match="name=value"):
        parse_loss_terms("ntxent(0.1)")
    assert parse_loss_terms("circle(m=0.4, gamma=80):2")[0].args == {"m": 0.4, "gamma": 80}


def test_yaml_loss_args_pooling_and_bce_flags_reach_the_trained_model(run_cli, tiny, files, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model": str(tiny), "loss": "multi_similarity+bce", "loss_args": {"multi_similarity": {"alpha": 1.0}}}
        )
    )
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        "train", "--config", str(config), "--train", str(files["train"]), "--out", str(out), "--max-steps", "2",
        "--batch-size", "8", "--max-seq-length", "32", "--pooling", "cls", "--normalize", "--label-smoothing", "0.1",
        "--pos-weight", "auto", "--no-tune-thresholds", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["loss_args"] == {
        "multi_similarity": {"alpha": 1.0},
        "bce": {"label_smoothing": 0.1, "pos_weight": "auto"},
    }
    assert saved["pooling"] == "cls" and saved["normalize"] is True
    encoder = Encoder.from_pretrained(out / "model")
    assert encoder.pooling == "cls" and encoder.normalize is True
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(files["train"]), "--out", str(tmp_path / "r2"),
        "--loss", "multi_similarity", "--pos-weight", "2", "--quiet",
    )  # fmt: skip
    assert code == 2 and "--pos-weight applies to the bce loss" in stderr


def test_a_hub_model_brings_its_own_pooling_and_normalize(tiny, tmp_path, monkeypatch):
    import huggingface_hub

    # A hub snapshot (here: a local copy) whose modules.json says CLS pooling and a Normalize module.
    snapshot = tmp_path / "snapshot"
    Encoder.from_pretrained(tiny, pooling="cls", normalize=True).save(snapshot)
    asked: dict[str, object] = {}

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    encoder = Encoder.from_pretrained("someone/sentence-model")
    assert asked["repo_id"] == "someone/sentence-model"
    assert not any(pattern.endswith((".bin", ".pt", ".pkl")) for pattern in asked["allow_patterns"])
    assert encoder.pooling == "cls" and encoder.normalize is True
    assert Encoder.from_pretrained("someone/sentence-model", pooling="max", normalize=False).pooling == "max"


# ----------------------------------------------------------------------------- item 3: labels that train lacks


@pytest.fixture(scope="module")
def dev_with_an_unknown_label(tmp_path_factory) -> Path:
    source = demo("dev").subset(range(30))
    names = [source.label_names(i) for i in range(len(source))]
    names[0] = names[0] + ["brand-new"]
    names[5] = ["brand-new"]
    path = tmp_path_factory.mktemp("unknown") / "dev.jsonl"
    save(LabeledDataset.from_label_names(source.texts, names), path)
    return path


def test_dev_labels_that_train_lacks_error_names_the_flag(run_cli, tiny, files, dev_with_an_unknown_label, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--model", str(tiny), "--train", str(files["train"]), "--dev", str(dev_with_an_unknown_label)]
    code, _, stderr = run_cli(*args, "--out", str(out), "--max-steps", "1", "--quiet")
    assert code == 2 and "brand-new (2 rows)" in stderr and "--unknown-labels ignore" in stderr
    assert not out.exists()
    code, _, stderr = run_cli(
        *args, "--out", str(out), "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "32",
        "--unknown-labels", "ignore", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    assert "warning" in stderr and "brand-new (2 rows)" in stderr
    model = LabelspaceModel.from_pretrained(out / "model")
    assert "brand-new" not in model.label_set.names

    for command in (["evaluate"], ["tune-thresholds"]):
        code, _, stderr = run_cli(*command, str(out), "--data", str(dev_with_an_unknown_label), "--quiet")
        assert code == 2 and "brand-new (2 rows)" in stderr and "--unknown-labels ignore" in stderr
        code, _, stderr = run_cli(
            *command, str(out), "--data", str(dev_with_an_unknown_label), "--unknown-labels", "ignore", "--quiet"
        )
        assert code == 0, stderr
        assert "warning" in stderr and "brand-new (2 rows)" in stderr


def test_with_label_set_drops_only_the_unknown_labels():
    data = LabeledDataset.from_label_names(["a", "b", "c"], [["x", "new"], ["y"], ["new"]])
    from labelspace.data import LabelSet

    aligned, dropped = data.with_label_set(LabelSet(["y", "x", "z"]), unknown_labels="ignore")
    assert dropped == {"new": 2}
    assert [aligned.label_names(i) for i in range(3)] == [["x"], ["y"], []]
    assert aligned.labels.to_dense().tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]


def test_train_tunes_thresholds_for_the_chosen_objective(run_cli, tiny, files, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(files["train"]), "--dev", str(files["dev"]), "--out", str(out),
        "--max-steps", "3", "--batch-size", "16", "--max-seq-length", "32", "--objective", "samples_jaccard", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    thresholds = json.loads((out / "model" / "labelspace.json").read_text())["metadata"]["thresholds"]
    assert thresholds["objective"] == "samples_jaccard"
    assert thresholds["objective_score"] >= thresholds["extra"]["objective_start"]
    code, _, stderr = run_cli("train", "--train", str(files["train"]), "--out", str(out), "--objective", "top1")
    assert code == 2 and "objective must be one of" in stderr


def test_pk_sampler_from_the_cli(run_cli, tiny, files, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"training": {"save_steps": 2}}))
    out = tmp_path / "run"
    code, _, stderr = run_cli(
        "train", "--config", str(config), "--model", str(tiny), "--train", str(files["train"]), "--out", str(out),
        "--loss", "batch_hard", "--sampler", "pk", "--labels-per-batch", "3", "--per-label", "2", "--max-steps", "4",
        "--max-seq-length", "32", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    checkpoint = sorted((out / "checkpoints").glob("checkpoint-*"))[-1]
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    sampler = state["samplers"]["train"]
    assert sampler["sampler"] == "PKSampler" and sampler["batches_yielded"] >= 2
    assert (sampler["labels_per_batch"], sampler["per_label"]) == (3, 2)
    code, _, stderr = run_cli(
        "train", "--model", str(tiny), "--train", str(files["train"]), "--out", str(tmp_path / "r2"),
        "--labels-per-batch", "3", "--quiet",
    )  # fmt: skip
    assert code == 2 and "no dataset uses sampler='pk'" in stderr
