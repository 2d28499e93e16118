"""Time label -> pair/triplet sampling on GoEmotions train.

Usage:
    python bench/convert_pairs.py [GOEMOTIONS_DIR] [--num N] [--repeats R]

GOEMOTIONS_DIR defaults to $LABELSPACE_GOEMOTIONS_DIR, else ../shared/data/goemotions beside
the repository. Prints one row per case with the median wall time of R runs (default 3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from labelspace.data import LabeledDataset, LabelMatrix, LabelSet
from labelspace.data.convert import labeled_to_pairs, labeled_to_triplets

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared/data/goemotions"


def load_goemotions(folder: Path, split: str = "train") -> LabeledDataset:
    """Read ``{split}.tsv`` (text, comma-separated label ids, comment id) and labels.txt."""
    names = [line.strip() for line in (folder / "labels.txt").read_text("utf-8").splitlines()]
    label_set = LabelSet([name for name in names if name])
    texts: list[str] = []
    ids: list[list[int]] = []
    with open(folder / f"{split}.tsv", encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            texts.append(fields[0])
            ids.append([int(i) for i in fields[1].split(",") if i])
    return LabeledDataset(texts, LabelMatrix.from_lists(ids, len(label_set)), label_set)


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=Path(os.environ.get("LABELSPACE_GOEMOTIONS_DIR", DEFAULT_DIR))
    )
    parser.add_argument("--num", type=int, default=100_000, help="pairs / triplets per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median)")
    args = parser.parse_args(argv)
    if not (args.folder / "train.tsv").is_file():
        print(f"GoEmotions train.tsv not found in {args.folder}", file=sys.stderr)
        return 1

    start = time.perf_counter()
    data = load_goemotions(args.folder)
    load_seconds = time.perf_counter() - start
    num = args.num
    cases: list[tuple[str, Callable[[], object]]] = [
        ("labeled_to_pairs rule=overlap", lambda: labeled_to_pairs(data, num, rule="overlap")),
        ("labeled_to_pairs rule=jaccard", lambda: labeled_to_pairs(data, num, rule="jaccard")),
        ("labeled_to_pairs rule=exact", lambda: labeled_to_pairs(data, num, rule="exact")),
        ("labeled_to_triplets rule=overlap", lambda: labeled_to_triplets(data, num)),
    ]
    print(
        f"GoEmotions train: {len(data):,} texts, {len(data.label_set)} labels "
        f"(read in {load_seconds:.2f} s); {num:,} per run, median of {args.repeats}"
    )
    print(f"{'case':<36}{'seconds':>10}")
    for name, function in cases:
        print(f"{name:<36}{median_seconds(function, args.repeats):>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
