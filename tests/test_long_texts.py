"""Long texts: max_seq_length chosen from the data, and long texts embedded as the mean of overlapping chunks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from labelspace.data import LabeledDataset, save
from labelspace.data.builtin import demo
from labelspace.evaluation.retrieval import retrieval_metrics
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import Encoder
from labelspace.models.testing import tiny_model_folder

WORDS = ["the", "money", "for", "my", "order", "never", "arrived", "and", "support", "did", "not", "answer", "any"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("tiny") / "model")


def words(count: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(count))


def percentile_95_rounded(tokenizer, texts: list[str], multiple: int = 8) -> int:
    """The 95th percentile of the token counts (one tokenizer call per text), rounded up to ``multiple``."""
    counts = sorted(len(tokenizer(text)["input_ids"]) for text in texts)
    highest = counts[math.ceil(0.95 * (len(counts) - 1))]  # the count at or above 95 % of the others
    return math.ceil(highest / multiple) * multiple


def chunk_mean_by_hand(encoder: Encoder, text: str, overlap: int) -> np.ndarray:
    """Windows of max_seq_length tokens (specials included) sliced from the ids by hand, embedded with the
    transformer and mean pooling, averaged, L2-normalised."""
    tokenizer = encoder.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    window = encoder.max_seq_length - 2  # [CLS] ... [SEP]
    step = window - overlap
    pieces, start = [], 0
    while True:
        pieces.append(ids[start : start + window])
        if start + window >= len(ids):
            break
        start += step
    embeddings = []
    encoder.eval()  # no dropout
    with torch.no_grad():
        for piece in pieces:
            input_ids = torch.tensor([[tokenizer.cls_token_id, *piece, tokenizer.sep_token_id]])
            hidden = encoder.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
            embeddings.append(F.normalize(hidden.mean(dim=1), dim=1)[0])
    return F.normalize(torch.stack(embeddings).mean(dim=0), dim=0).numpy()


# ----------------------------------------------------------------------------- max_seq_length from the data


def test_suggested_length_is_the_95th_percentile_rounded_up(tiny):
    encoder = Encoder.from_pretrained(tiny)
    rng = np.random.default_rng(3)
    texts = [words(int(count), offset) for offset, count in enumerate(rng.integers(1, 60, size=101))]
    expected = percentile_95_rounded(encoder.tokenizer, texts)
    assert expected < encoder.length_limit == 128  # the tiny folder is configured at 128
    assert encoder.suggest_max_seq_length(texts) == expected
    assert encoder.suggest_max_seq_length(texts, multiple=1) == percentile_95_rounded(encoder.tokenizer, texts, 1)


def test_suggested_length_respects_the_model_limit(tiny):
    texts = [words(200, offset) for offset in range(20)]  # ~200 tokens each
    assert Encoder.from_pretrained(tiny).suggest_max_seq_length(texts) == 128  # the folder's configured max
    capped = Encoder.from_pretrained(tiny, max_seq_length=40)
    assert capped.length_limit == 40 and capped.suggest_max_seq_length(texts) == 40
    encoder = Encoder.from_pretrained(tiny, max_seq_length=512)
    encoder.tokenizer.model_max_length = 100  # the tokenizer's own limit counts too
    assert encoder.length_limit == 100 and encoder.suggest_max_seq_length(texts) == 100


def test_train_prints_and_saves_the_length_chosen_from_the_data(run_cli, tiny, tmp_path):
    source = demo("train").subset(range(64))
    save(source, tmp_path / "train.jsonl")
    tokenizer = Encoder.from_pretrained(tiny).tokenizer
    expected = percentile_95_rounded(tokenizer, source.texts)
    common = ["--model", str(tiny), "--train", str(tmp_path / "train.jsonl"), "--max-steps", "1"]
    code, stdout, stderr = run_cli("train", *common, "--batch-size", "8", "--out", str(tmp_path / "auto"), "--quiet")
    assert code == 0, stderr
    assert f"max_seq_length {expected} (95th percentile of train token counts; model limit 128)" in stdout
    assert yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["max_seq_length"] == expected
    assert LabelspaceModel.from_pretrained(tmp_path / "auto" / "model").encoder.max_seq_length == expected
    # A length given as a flag or in the config file is kept, and nothing is chosen.
    code, stdout, stderr = run_cli(
        "train", *common, "--batch-size", "8", "--max-seq-length", "24", "--out", str(tmp_path / "flag"), "--quiet"
    )
    assert code == 0, stderr
    assert "95th percentile" not in stdout
    assert LabelspaceModel.from_pretrained(tmp_path / "flag" / "model").encoder.max_seq_length == 24
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"max-seq-length": 20, "batch_size": 8}))
    code, stdout, stderr = run_cli(
        "train", *common, "--config", str(config), "--out", str(tmp_path / "file"), "--quiet"
    )
    assert code == 0, stderr
    assert "95th percentile" not in stdout
    assert LabelspaceModel.from_pretrained(tmp_path / "file" / "model").encoder.max_seq_length == 20


# ----------------------------------------------------------------------------- chunked embeddings


def test_a_text_that_fits_embeds_the_same_chunked_or_truncated(tiny):
    encoder = Encoder.from_pretrained(tiny, max_seq_length=16)
    texts = ["a short text", words(14), words(40)]  # 14 words: exactly one window of 14 text tokens
    assert len(encoder.tokenizer(texts[1], add_special_tokens=False)["input_ids"]) == 14
    truncated = encoder.encode(texts, batch_size=2)
    chunked = encoder.encode(texts, batch_size=2, long_text="chunk")
    np.testing.assert_allclose(chunked[:2], truncated[:2], atol=1e-5)
    assert not np.allclose(chunked[2], truncated[2], atol=1e-3)  # the long one is not cut


@pytest.mark.parametrize("overlap", [None, 0, 5])
def test_a_long_text_is_the_normalised_mean_of_its_chunks(tiny, overlap):
    encoder = Encoder.from_pretrained(tiny, max_seq_length=16)
    texts = [words(45), "short", words(31, offset=4), words(150, offset=2)]
    chunked = encoder.encode(texts, batch_size=3, long_text="chunk", chunk_overlap=overlap)
    used = 14 // 4 if overlap is None else overlap  # default: a quarter of the 14 text tokens of a window
    expected = np.stack([chunk_mean_by_hand(encoder, text, used) for text in texts])
    np.testing.assert_allclose(chunked, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(chunked, axis=1), 1.0, atol=1e-5)


def test_chunk_options_pass_through_the_model_and_bad_values_name_the_option(tiny):
    model = LabelspaceModel.from_pretrained(tiny, labels=["a", "b", "c"], max_seq_length=16, seed=0)
    text = words(60)
    embedding = model.encode([text], long_text="chunk", chunk_overlap=2)
    np.testing.assert_allclose(embedding[0], chunk_mean_by_hand(model.encoder, text, 2), atol=1e-5)
    with torch.no_grad():
        expected = model.head.predict_proba(torch.from_numpy(embedding)).numpy()
    np.testing.assert_allclose(model.predict_proba([text], long_text="chunk", chunk_overlap=2), expected, atol=1e-6)
    with pytest.raises(ValueError, match="long_text must be one of truncate, chunk"):
        model.encode([text], long_text="split")
    with pytest.raises(ValueError, match="chunk_overlap must be an integer from 0 to 13"):
        model.encode([text], long_text="chunk", chunk_overlap=14)


def test_predict_and_evaluate_embed_long_texts_in_chunks_with_the_flag(run_cli, tiny, tmp_path):
    model = LabelspaceModel.from_pretrained(tiny, labels=["a", "b", "c"], max_seq_length=16, seed=0)
    folder = model.save(tmp_path / "model")
    texts = [words(60), words(35, offset=3)]
    code, stdout, stderr = run_cli("predict", str(folder), *texts, "--long-text", "chunk")
    assert code == 0, stderr
    scores = np.array([list(json.loads(line)["scores"].values()) for line in stdout.splitlines()])
    embeddings = np.stack([chunk_mean_by_hand(model.encoder, text, 14 // 4) for text in texts])
    with torch.no_grad():
        expected = model.head.predict_proba(torch.from_numpy(embeddings)).numpy()
    np.testing.assert_allclose(scores, expected, atol=2e-6)
    code, stdout, _ = run_cli("predict", str(folder), *texts)  # truncating by default
    truncated = np.array([list(json.loads(line)["scores"].values()) for line in stdout.splitlines()])
    assert code == 0 and not np.allclose(truncated, expected, atol=2e-6)

    # An embedding model (no head) scored by retrieval on long texts.
    data = LabeledDataset.from_label_names([words(20 + 7 * i, offset=i) for i in range(8)], [["a"], ["b"]] * 4)
    save(data, tmp_path / "long.jsonl")
    embedder = Encoder.from_pretrained(tiny, max_seq_length=16).save(tmp_path / "embedder")
    code, _, stderr = run_cli(
        "evaluate", str(embedder), "--data", str(tmp_path / "long.jsonl"), "--long-text", "chunk",
        "--json", str(tmp_path / "m.json"), "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    hand = np.stack([chunk_mean_by_hand(model.encoder, text, 14 // 4) for text in data.texts])
    found = json.loads((tmp_path / "m.json").read_text())
    reference = retrieval_metrics(hand, data.labels.to_dense())
    assert found["map_at_r"] == pytest.approx(reference["map_at_r"], abs=1e-9)
    assert found["mrr"] == pytest.approx(reference["mrr"], abs=1e-9)
    cut = retrieval_metrics(model.encoder.encode(data.texts), data.labels.to_dense())  # truncated: other values
    assert (cut["map_at_r"], cut["mrr"]) != pytest.approx((reference["map_at_r"], reference["mrr"]), abs=1e-3)

    code, _, stderr = run_cli("predict", str(folder), "text", "--long-text", "sideways")
    assert code == 2 and stderr.count("\n") == 1 and "--long-text: expected one of truncate, chunk" in stderr
