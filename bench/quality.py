"""Quality table of issue 14: frozen MiniLM + logistic regression vs today's recipe vs the new default.

Rows (all evaluated on the test split):

- ``frozen + logreg``: frozen all-MiniLM-L6-v2 embeddings, scikit-learn logistic regression (C=10)
  one per label, per-label thresholds tuned on dev (`labelspace.evaluation.tune_thresholds`, F1,
  labels with fewer than 5 dev positives get the global micro-F1 threshold);
- ``today``: ``labelspace train`` with the recipe as it was before issue 14, pinned by explicit
  settings (a YAML config: 3 epochs, encoder lr 1e-4, head lr 2e-2, 10% warmup, no early
  stopping, no pos_weight, max_seq_length 128, a random head, no frozen-baseline candidate, head
  scoring without a kNN index), so later default changes do not move this row;
- ``new``: ``labelspace train --train T --dev D --out O`` with nothing else: today's defaults.

Columns: macro-F1 with the shipped (tuned) decisions, micro-F1, macro average precision, macro-F1
over the rarest quarter of labels by train frequency (scikit-learn), and training time (wall clock
of the ``labelspace train`` process, or of encoding + fitting for the frozen row; only meaningful on
a machine nobody else is using).

Data (``--data``):

- ``demo``: the embedded demo set (480 / 60 / 60 support messages, 12 labels);
- ``goemotions``: GoEmotions from ``--goemotions DIR`` (train.tsv, dev.tsv, test.tsv, labels.txt);
- ``stress``: long texts and very rare labels built from GoEmotions, seeded: comments of each split
  are concatenated (in a shuffled order) until a text holds 200-400 tokens of the MiniLM tokenizer
  (the target drawn uniformly per text), its labels the union of theirs; a third of the labels (drawn
  at random) keep only 5-20 training comments each (drawn per label; the label's other training
  comments are dropped before concatenating), so they hold at most that many training texts. Dev and
  test keep all their comments.

The fine-tuned rows drive the real command line (``labelspace train``) the way a user would, with
``--max-seq-length`` left to the recipe unless ``--max-seq-length`` is given here; extra flags for
both fine-tuned rows go in ``--flags`` (e.g. ``--flags "--pos-weight auto"``).

Usage:
    python bench/quality.py --data demo [--recipe today|new|both] [--work runs/bench-quality]
    python bench/quality.py --data stress --goemotions /path/to/goemotions --seed 0
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score

from labelspace.data import LabeledDataset, load
from labelspace.evaluation import tune_thresholds
from labelspace.evaluation.thresholds import apply_decision_rule
from labelspace.models import LabelspaceModel

SPLITS = ("train", "dev", "test")
DEMO_FOLDER = Path(__file__).resolve().parents[1] / "src" / "labelspace" / "data" / "builtin" / "demo"
#: The recipe of ``labelspace train`` before issue 14, every data-size-dependent value pinned.
TODAY_RECIPE: dict[str, Any] = {
    "epochs": 3,
    "learning_rate": 1e-4,
    "head_learning_rate": 2e-2,
    "warmup_ratio": 0.1,
    "early_stopping_patience": None,
    "max_seq_length": 128,
    "loss_args": {"bce": {"pos_weight": None}},
    "training": {"head_init": "random", "baseline_candidate": False, "scoring": "head"},
}
COLUMNS = ("macro-F1 (tuned)", "micro-F1", "macro AP", "rarest-quarter macro-F1", "train time (s)")


def write_jsonl(dataset: LabeledDataset, path: Path) -> None:
    """``dataset`` as JSON lines of ``{"text", "labels"}`` (label names)."""
    with path.open("w", encoding="utf-8") as handle:
        for index, text in enumerate(dataset.texts):
            handle.write(json.dumps({"text": text, "labels": dataset.label_names(index)}) + "\n")


def concatenate(dataset: LabeledDataset, token_counts: np.ndarray, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Texts of 200-400 tokens made of shuffled comments, each with the union of their labels."""
    order = rng.permutation(len(dataset))
    records: list[dict[str, Any]] = []
    texts: list[str] = []
    labels: set[str] = set()
    tokens, target = 0, int(rng.integers(200, 401))
    for index in order:
        texts.append(dataset.texts[index])
        labels.update(dataset.label_names(int(index)))
        tokens += int(token_counts[index])
        if tokens >= target:
            records.append({"text": " ".join(texts), "labels": sorted(labels)})
            texts, labels, tokens, target = [], set(), 0, int(rng.integers(200, 401))
    return records


def stress_records(folder: Path, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The stress set of the module docstring, as records per split.

    The rare labels are thinned on the training comments before they are concatenated (a text made of
    some 15 comments holds most labels, so dropping whole texts would leave almost none): for each rare
    label, 5-20 of its training comments are kept and the others dropped, so it lands in at most that
    many training texts.
    """
    from labelspace.data.builtin.goemotions import goemotions

    rng = np.random.default_rng(seed)
    tokenizer = LabelspaceModel.from_pretrained("minilm").encoder.tokenizer
    splits = {split: goemotions(split, data_dir=folder, download=False) for split in SPLITS}
    train = splits["train"]
    dense = train.labels.to_dense()
    rare = rng.choice(dense.shape[1], size=dense.shape[1] // 3, replace=False)
    dropped = np.zeros(len(train), dtype=bool)
    for label in sorted(rare.tolist()):
        holders = np.flatnonzero(dense[:, label])
        keep = rng.choice(holders, size=min(len(holders), int(rng.integers(5, 21))), replace=False)
        dropped[np.setdiff1d(holders, keep)] = True
    splits["train"] = train.subset(np.flatnonzero(~dropped))
    records: dict[str, list[dict[str, Any]]] = {}
    for split, dataset in splits.items():
        counts = np.array([len(ids) for ids in tokenizer(dataset.texts, add_special_tokens=False)["input_ids"]])
        records[split] = concatenate(dataset, counts, rng)
    return records


def prepare_data(name: str, work: Path, goemotions_folder: Path | None, seed: int) -> dict[str, Path]:
    """The train/dev/test files of ``--data``, written under ``work`` when they must be built."""
    if name == "demo":
        return {split: DEMO_FOLDER / f"{split}.jsonl" for split in SPLITS}
    if goemotions_folder is None:
        raise SystemExit(f"--data {name} needs --goemotions DIR (train.tsv, dev.tsv, test.tsv, labels.txt)")
    folder = work / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {split: folder / f"{split}.jsonl" for split in SPLITS}
    if name == "goemotions":
        from labelspace.data.builtin.goemotions import goemotions

        for split in SPLITS:
            write_jsonl(goemotions(split, data_dir=goemotions_folder, download=False), paths[split])
        return paths
    for split, rows in stress_records(goemotions_folder, seed).items():
        with paths[split].open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return paths


def quality_row(
    train: LabeledDataset, test: LabeledDataset, scores: np.ndarray, decisions: np.ndarray, seconds: float
) -> dict[str, float]:
    """The table's columns for one system: test scores and shipped 0/1 decisions."""
    truth = test.labels.to_dense()
    frequency = train.labels.to_dense().sum(axis=0)
    rarest = np.argsort(frequency, kind="stable")[: max(1, len(frequency) // 4)]
    return {
        "macro-F1 (tuned)": float(f1_score(truth, decisions, average="macro", zero_division=0)),
        "micro-F1": float(f1_score(truth, decisions, average="micro", zero_division=0)),
        "macro AP": float(average_precision_score(truth, scores, average="macro")),
        "rarest-quarter macro-F1": float(
            f1_score(truth[:, rarest], decisions[:, rarest], average="macro", zero_division=0)
        ),
        "train time (s)": seconds,
    }


def frozen_row(data: dict[str, LabeledDataset], max_seq_length: int | None) -> dict[str, float]:
    """Frozen MiniLM + logistic regression (C=10) per label, thresholds tuned on dev."""
    started = time.perf_counter()
    options = {"max_seq_length": max_seq_length} if max_seq_length else {}
    encoder = LabelspaceModel.from_pretrained("minilm", **options)
    embeddings = {split: encoder.encode(dataset.texts, show_progress_bar=False) for split, dataset in data.items()}
    dense = {split: dataset.labels.to_dense() for split, dataset in data.items()}
    scores: dict[str, np.ndarray] = {"dev": np.zeros(dense["dev"].shape), "test": np.zeros(dense["test"].shape)}
    for label in range(dense["train"].shape[1]):
        if dense["train"][:, label].min() == dense["train"][:, label].max():  # one class: a constant score
            for split in scores:
                scores[split][:, label] = float(dense["train"][0, label])
            continue
        classifier = LogisticRegression(C=10.0, max_iter=5000).fit(embeddings["train"], dense["train"][:, label])
        for split in scores:
            scores[split][:, label] = classifier.predict_proba(embeddings[split])[:, 1]
    seconds = time.perf_counter() - started
    tuned = tune_thresholds(dense["dev"], scores["dev"], min_positives=5, fallback="global")
    decisions = apply_decision_rule(scores["test"], tuned.thresholds, "threshold")
    return quality_row(data["train"], data["test"], scores["test"], decisions, seconds)


def fine_tuned_row(
    recipe: str, paths: dict[str, Path], data: dict[str, LabeledDataset], work: Path, extra: list[str]
) -> dict[str, float]:
    """``labelspace train`` with the recipe, then the saved model's scores and decisions on test."""
    out = work / f"run-{recipe}"
    command = [sys.executable, "-c", "from labelspace.cli import main; main()", "train"]
    command += ["--train", str(paths["train"]), "--dev", str(paths["dev"]), "--out", str(out), "--overwrite"]
    if recipe == "today":
        config = work / "today.yaml"
        config.write_text(yaml.safe_dump(TODAY_RECIPE), encoding="utf-8")
        command += ["--config", str(config)]
    command += ["--quiet", *extra]
    print("$", shlex.join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    model = LabelspaceModel.from_pretrained(out / "model")
    scores = model.predict_proba(data["test"].texts, show_progress_bar=False)
    return quality_row(data["train"], data["test"], scores, model.decide(scores), seconds)


def markdown(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| system | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, row in rows.items():
        cells = [f"{row[column]:.0f}" if column.endswith("(s)") else f"{row[column]:.3f}" for column in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("demo", "goemotions", "stress"), default="demo")
    parser.add_argument("--goemotions", type=Path, default=None, help="GoEmotions folder (goemotions, stress)")
    parser.add_argument("--recipe", choices=("today", "new", "both"), default="both", help="fine-tuned row(s)")
    parser.add_argument("--no-frozen", action="store_true", help="skip the frozen + logistic regression row")
    parser.add_argument("--flags", default="", help="extra labelspace train flags for the fine-tuned rows")
    parser.add_argument("--max-seq-length", type=int, default=None, help="frozen row's input length")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stress set")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-quality"))
    arguments = parser.parse_args()
    work = arguments.work / arguments.data
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare_data(arguments.data, work, arguments.goemotions, arguments.seed)
    train = load(paths["train"])
    data = {"train": train, **{split: load(paths[split]).with_label_set(train.label_set)[0] for split in SPLITS[1:]}}
    print(f"{arguments.data}: " + ", ".join(f"{len(dataset)} {split}" for split, dataset in data.items()), flush=True)
    rows: dict[str, dict[str, float]] = {}
    if not arguments.no_frozen:
        rows["frozen + logreg"] = frozen_row(data, arguments.max_seq_length)
    recipes = ("today", "new") if arguments.recipe == "both" else (arguments.recipe,)
    for recipe in recipes:
        rows[recipe] = fine_tuned_row(recipe, paths, data, work, shlex.split(arguments.flags))
    (work / "results.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(markdown(rows))


if __name__ == "__main__":
    main()
