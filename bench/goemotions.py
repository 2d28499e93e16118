"""GoEmotions benchmark: fine-tune MiniLM on train, tune thresholds on dev, evaluate on test (CPU).

Rows (each with a global 0.5 threshold and with per-label thresholds tuned on dev):

- ``frozen + logreg``: frozen all-MiniLM-L6-v2 embeddings, one-vs-rest logistic regression;
- ``bce``: fine-tuned encoder + head, BCE only;
- ``ms+bce``: fine-tuned with multi-similarity (multi-label relation) + BCE, the recommended recipe;
- ``knn`` and ``hybrid``: kNN label votes over the ``ms+bce`` train embeddings, and the head/kNN
  mix with its weight tuned on dev.

Results go to ``--out`` (default runs/bench-goemotions/results.json) after each row, so a run that is
stopped keeps the rows it finished; the script prints a markdown table and the per-label table of
the best row. Rows already in the results file are skipped unless ``--fresh``.

Usage:
    python bench/goemotions.py [--epochs 2] [--rows ms+bce,bce,frozen] [--goemotions DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

MAX_SEQ_LENGTH = 64
ROWS = ("ms+bce", "frozen", "bce")


def load_splits(folder: Path | None) -> dict[str, Any]:
    from labelspace.data.builtin.goemotions import goemotions

    return {split: goemotions(split, data_dir=folder) for split in ("train", "dev", "test")}


def scores_rows(name: str, y_dev, dev_scores, y_test, test_scores, names) -> dict[str, Any]:
    """Test metrics with a global 0.5 threshold and with thresholds tuned on dev."""
    from labelspace.evaluation import classification_report, tune_thresholds

    tuned = tune_thresholds(y_dev, dev_scores, metric="f1", min_positives=5, fallback="global")
    return {
        f"{name} (0.5)": classification_report(y_test, test_scores, thresholds=0.5, label_names=names),
        f"{name} (tuned)": classification_report(y_test, test_scores, thresholds=tuned.thresholds, label_names=names),
    }


def frozen_row(splits, names) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from labelspace.models import LabelspaceModel

    model = LabelspaceModel.from_pretrained("minilm", max_seq_length=MAX_SEQ_LENGTH)
    embeddings = {split: model.encode(data.texts, batch_size=128) for split, data in splits.items()}
    classifier = OneVsRestClassifier(LogisticRegression(max_iter=2000), n_jobs=2)
    classifier.fit(embeddings["train"], splits["train"].labels.to_dense())
    dev_scores = classifier.predict_proba(embeddings["dev"])
    test_scores = classifier.predict_proba(embeddings["test"])
    return scores_rows(
        "frozen + logreg",
        splits["dev"].labels.to_dense(),
        dev_scores,
        splits["test"].labels.to_dense(),
        test_scores,
        names,
    )


def fine_tune(splits, names, loss_name: str, epochs: int, run_dir: Path, seed: int):
    from labelspace import LabelspaceModel, Trainer, TrainingArguments
    from labelspace.losses import BCEHeadLoss, MultiSimilarityLoss
    from labelspace.objectives import CombinedLoss

    model = LabelspaceModel.from_pretrained(
        "minilm", labels=splits["train"].label_set, max_seq_length=MAX_SEQ_LENGTH, seed=seed
    )
    loss: Any = BCEHeadLoss()
    if loss_name == "ms+bce":
        loss = CombinedLoss([(MultiSimilarityLoss(), 1.0), (BCEHeadLoss(), 1.0)])
    args = TrainingArguments(
        output_dir=str(run_dir),
        num_epochs=epochs,
        batch_size=32,
        learning_rate=1e-4,
        head_learning_rate=2e-2,
        seed=seed,
        logging_steps=50,
        eval_batch_size=128,
    )
    started = time.perf_counter()
    Trainer(model, splits["train"], loss, eval_dataset=splits["dev"], args=args).train()
    minutes = (time.perf_counter() - started) / 60
    return model, minutes


def fine_tuned_rows(splits, names, loss_name: str, epochs: int, run_dir: Path, seed: int, knn: bool):
    from labelspace.evaluation import KNNClassifier, hybrid_scores, tune_mixing_weight

    model, minutes = fine_tune(splits, names, loss_name, epochs, run_dir, seed)
    y_dev, y_test = splits["dev"].labels.to_dense(), splits["test"].labels.to_dense()
    dev_scores = model.predict_proba(splits["dev"].texts, batch_size=128)
    test_scores = model.predict_proba(splits["test"].texts, batch_size=128)
    rows = scores_rows(loss_name, y_dev, dev_scores, y_test, test_scores, names)
    extra: dict[str, Any] = {"train_minutes": minutes}
    if knn:
        train_embeddings = model.encode(splits["train"].texts, batch_size=128)
        dev_embeddings = model.encode(splits["dev"].texts, batch_size=128)
        test_embeddings = model.encode(splits["test"].texts, batch_size=128)
        classifier = KNNClassifier(k=20).fit(train_embeddings, splits["train"].labels.to_dense())
        dev_knn = classifier.predict_proba(dev_embeddings)
        test_knn = classifier.predict_proba(test_embeddings)
        rows.update(scores_rows(f"{loss_name} knn", y_dev, dev_knn, y_test, test_knn, names))
        weight, _ = tune_mixing_weight(y_dev, dev_scores, dev_knn, metric="macro_f1")
        rows.update(
            scores_rows(
                f"{loss_name} hybrid (w={weight:.1f})",
                y_dev,
                hybrid_scores(dev_scores, dev_knn, weight),
                y_test,
                hybrid_scores(test_scores, test_knn, weight),
                names,
            )
        )
        extra["hybrid_weight"] = weight
    return rows, extra


def markdown(results: dict[str, Any]) -> str:
    lines = ["| row | test macro-F1 | test micro-F1 |", "|---|---:|---:|"]
    for name, metrics in results["rows"].items():
        lines.append(f"| {name} | {metrics['macro_f1']:.3f} | {metrics['micro_f1']:.3f} |")
    best_name = max(results["rows"], key=lambda n: results["rows"][n]["macro_f1"])
    best = results["rows"][best_name]
    lines += [
        "",
        f"Per label, best row ({best_name}):",
        "",
        "| label | precision | recall | F1 | support | threshold |",
    ]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for label, row in best["per_label"].items():
        lines.append(
            f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} | "
            f"{row['threshold']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--goemotions", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-goemotions/results.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="first N texts of each split (smoke runs only)")
    options = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    wanted = [row.strip() for row in options.rows.split(",") if row.strip()]
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {ROWS}")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"rows": {}, "done": [], "minutes": {}}
    if options.out.is_file() and not options.fresh:
        results = json.loads(options.out.read_text())
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    results["epochs"] = options.epochs
    started = time.perf_counter()
    splits = load_splits(options.goemotions)
    if options.limit:
        splits = {name: data.subset(range(min(options.limit, len(data)))) for name, data in splits.items()}
        results["limit"] = options.limit
    names = splits["train"].label_set.names
    for row in wanted:
        if row in results["done"]:
            continue
        row_started = time.perf_counter()
        print(f"== {row}", flush=True)
        if row == "frozen":
            rows, extra = frozen_row(splits, names), {}
        else:
            run_dir = options.out.parent / row.replace("+", "_")
            rows, extra = fine_tuned_rows(
                splits, names, row, options.epochs, run_dir, options.seed, knn=(row == "ms+bce")
            )
        results["rows"].update(rows)
        results["done"].append(row)
        results["minutes"][row] = (time.perf_counter() - row_started) / 60
        results.setdefault("extra", {})[row] = extra
        options.out.write_text(json.dumps(results, indent=1) + "\n")
        for name, metrics in rows.items():
            print(f"{name:<40} macro-F1 {metrics['macro_f1']:.4f}  micro-F1 {metrics['micro_f1']:.4f}", flush=True)
    results["wall_minutes_this_run"] = (time.perf_counter() - started) / 60
    options.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nmachine: {results['machine']}; epochs {options.epochs}; minutes per row {results['minutes']}")
    print(markdown(results))


if __name__ == "__main__":
    main()
