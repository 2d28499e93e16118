"""ClassificationHead: shapes, linear vs MLP, predict_proba, config and safetensors + JSON round trip."""

from __future__ import annotations

import json

import pytest
import torch

from labelspace.losses.head import BCEHeadLoss, RegressionHeadLoss, SoftmaxHeadLoss
from labelspace.models.heads import ClassificationHead


def embeddings(rows: int = 5, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)) * 4


@pytest.mark.parametrize("kind", ["multi_label", "single_label", "regression"])
@pytest.mark.parametrize("hidden_dim", [None, 16])
def test_shapes(kind, hidden_dim):
    head = ClassificationHead(8, 3, kind=kind, hidden_dim=hidden_dim)
    assert head(embeddings()).shape == (5, 3)
    assert head.predict_proba(embeddings()).shape == (5, 3)


def test_linear_and_mlp_structure():
    linear = ClassificationHead(8, 3)
    mlp = ClassificationHead(8, 3, hidden_dim=16, activation="relu", dropout=0.2)
    linear_layers = [m for m in linear.modules() if isinstance(m, torch.nn.Linear)]
    mlp_layers = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear_layers] == [(8, 3)]
    assert [(m.in_features, m.out_features) for m in mlp_layers] == [(8, 16), (16, 3)]
    assert [type(m) for m in mlp.layers] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout, torch.nn.Linear]
    assert [type(m) for m in linear.layers] == [torch.nn.Dropout, torch.nn.Linear]
    assert sum(p.numel() for p in linear.parameters()) == 8 * 3 + 3
    assert sum(p.numel() for p in mlp.parameters()) == 8 * 16 + 16 + 16 * 3 + 3


def test_predict_proba_ranges():
    x = embeddings(rows=32)
    multi = ClassificationHead(8, 4).predict_proba(x)
    assert ((multi >= 0) & (multi <= 1)).all()
    single = ClassificationHead(8, 4, kind="single_label", hidden_dim=8).predict_proba(x)
    assert ((single >= 0) & (single <= 1)).all()
    torch.testing.assert_close(single.sum(dim=1), torch.ones(32))
    regression = ClassificationHead(8, 2, kind="regression", dropout=0.0)
    regression.eval()
    torch.testing.assert_close(regression.predict_proba(x), regression(x))


def test_predict_proba_is_deterministic_without_gradient_and_keeps_the_mode():
    head = ClassificationHead(8, 3, hidden_dim=16, dropout=0.5)
    head.train()
    x = embeddings()
    first = head.predict_proba(x)
    torch.testing.assert_close(first, head.predict_proba(x))
    assert not first.requires_grad
    assert head.training
    head.eval()
    torch.testing.assert_close(first, torch.sigmoid(head(x)))


def test_default_loss_by_kind():
    assert isinstance(ClassificationHead(4, 2).default_loss(), BCEHeadLoss)
    assert isinstance(ClassificationHead(4, 2, kind="single_label").default_loss(), SoftmaxHeadLoss)
    assert isinstance(ClassificationHead(4, 2, kind="regression").default_loss(), RegressionHeadLoss)


def test_training_step_runs_for_each_kind():
    x = embeddings()
    targets = {
        "multi_label": (torch.rand(5, 3) > 0.5).float(),
        "single_label": torch.tensor([0, 1, 2, 0, 1]),
        "regression": torch.randn(5, 3),
    }
    for kind, target in targets.items():
        head = ClassificationHead(8, 3, kind=kind, hidden_dim=4)
        loss = head.default_loss()(head(x), target)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


@pytest.mark.parametrize("kind", ["multi_label", "single_label", "regression"])
@pytest.mark.parametrize("hidden_dim", [None, 16])
def test_save_load_round_trip(tmp_path, kind, hidden_dim):
    head = ClassificationHead(8, 3, kind=kind, hidden_dim=hidden_dim, activation="tanh", dropout=0.3)
    head.eval()
    folder = tmp_path / "model" / "head"
    head.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["head.safetensors", "head_config.json"]
    config = json.loads((folder / "head_config.json").read_text())
    assert config == head.config()
    loaded = ClassificationHead.load(folder)
    loaded.eval()
    assert loaded.config() == head.config()
    x = embeddings()
    assert torch.equal(loaded(x), head(x))
    assert torch.equal(loaded.predict_proba(x), head.predict_proba(x))


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path):
    ClassificationHead(8, 3).save(tmp_path)
    second = ClassificationHead(8, 2, kind="single_label")
    second.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.safetensors", "head_config.json"]
    assert ClassificationHead.load(tmp_path).config() == second.config()


def test_config_is_json_and_from_config_round_trips():
    head = ClassificationHead(8, 3, kind="single_label", hidden_dim=5, dropout=0.0, activation="silu")
    config = json.loads(json.dumps(head.config()))
    again = ClassificationHead.from_config(config)
    assert again.config() == head.config()
    with pytest.raises(ValueError, match="unknown"):
        ClassificationHead.from_config({**config, "bias": False})
    with pytest.raises(ValueError, match="format"):
        ClassificationHead.from_config({**config, "format": "something.else"})
    with pytest.raises(ValueError, match="version"):
        ClassificationHead.from_config({**config, "version": 99})
    with pytest.raises(ValueError, match="input_dim"):
        ClassificationHead.from_config({"num_labels": 3})


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ClassificationHead.load(tmp_path)
    ClassificationHead(8, 3).save(tmp_path)
    config = json.loads((tmp_path / "head_config.json").read_text())
    (tmp_path / "head_config.json").write_text(json.dumps({**config, "num_labels": 4}))
    with pytest.raises(ValueError, match="does not match"):
        ClassificationHead.load(tmp_path)
    (tmp_path / "head_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        ClassificationHead.load(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "multilabel"}, "kind"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"activation": "swish"}, "activation"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassificationHead(8, 3, **kwargs)
    with pytest.raises(ValueError, match="num_labels"):
        ClassificationHead(8, 0)


def test_wrong_embedding_size_and_half_input():
    head = ClassificationHead(8, 3)
    with pytest.raises(ValueError, match="B x 8"):
        head(torch.zeros(2, 7))
    head.eval()
    x = embeddings()
    torch.testing.assert_close(head(x.half()), head(x.half().float()))
