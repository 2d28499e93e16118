"""Building a multi-label relation and its pair indices: labelspace vs Python loops.

Batch of 1024 items over 28 labels (1-3 labels each, as in GoEmotions), rule `overlap`.
The loop version is what users write today to hand pairs to pytorch-metric-learning:
for every anchor, for every other item, compare label sets.

    python bench/relations.py [--batch-size 1024] [--labels 28] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from labelspace.relations import Relation


def loop_pairs(label_sets: list[set[int]]) -> tuple[list[int], list[int], list[int], list[int]]:
    anchors_positive, positives, anchors_negative, negatives = [], [], [], []
    for i, first in enumerate(label_sets):
        for j, second in enumerate(label_sets):
            if i == j:
                continue
            if first & second:
                anchors_positive.append(i)
                positives.append(j)
            else:
                anchors_negative.append(i)
                negatives.append(j)
    return anchors_positive, positives, anchors_negative, negatives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--labels", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    generator = torch.Generator().manual_seed(0)
    size, num_labels = args.batch_size, args.labels
    labels = torch.zeros(size, num_labels, dtype=torch.long)
    cardinality = torch.randint(1, 4, (size,), generator=generator)
    for k in range(3):  # at most three labels per item (a loop over 3 columns, not over items)
        chosen = torch.randint(0, num_labels, (size,), generator=generator)
        labels[torch.arange(size)[cardinality > k], chosen[cardinality > k]] = 1

    def ours() -> tuple[torch.Tensor, ...]:
        return Relation.from_labels(labels).pair_indices()

    ours()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = ours()
        times.append(time.perf_counter() - start)
    ours_seconds = statistics.median(times)

    label_sets = [set(torch.nonzero(row).flatten().tolist()) for row in labels]
    loop_times = []
    for _ in range(3):
        start = time.perf_counter()
        expected = loop_pairs(label_sets)
        loop_times.append(time.perf_counter() - start)
    loop_seconds = statistics.median(loop_times)
    assert all(r.tolist() == e for r, e in zip(result, expected, strict=True)), "results differ"

    print(
        f"relation + pair indices, batch {size}, {num_labels} labels, rule overlap, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'method':<28}{'median seconds':>16}")
    print(f"{'labelspace Relation':<28}{ours_seconds:>16.4f}")
    print(f"{'Python loops over pairs':<28}{loop_seconds:>16.4f}")
    print(
        f"speed-up: {loop_seconds / ours_seconds:.0f}x; {len(result[0])} positive and {len(result[2])} negative pairs"
    )


if __name__ == "__main__":
    main()
