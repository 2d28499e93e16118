"""In-memory datasets: labelled texts, scored pairs, and triplets."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labelspace.data.labels import LabelMatrix, LabelSet


@dataclass
class LabeledDataset:
    """Texts with zero, one or several labels each.

    Example:
        >>> from labelspace.data import LabelSet, LabelMatrix
        >>> label_set = LabelSet(["bug", "refund"])
        >>> data = LabeledDataset(["app crashes", "money back please"],
        ...                       LabelMatrix.from_lists([[0], [1]], 2), label_set)
        >>> data[1]
        ('money back please', ['refund'])
    """

    texts: list[str]
    labels: LabelMatrix
    label_set: LabelSet
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} label rows")
        if self.labels.num_labels != len(self.label_set):
            raise ValueError(
                f"label matrix has {self.labels.num_labels} columns but the label set has {len(self.label_set)} labels"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, list[str]]:
        names = self.label_set.names
        return self.texts[index], [names[i] for i in self.labels.row(index)]

    def label_names(self, index: int) -> list[str]:
        """Label names of item ``index``."""
        return self[index][1]

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledDataset:
        """The items at ``indices`` (in that order), same label set."""
        indices = np.asarray(indices, dtype=np.int64)
        return LabeledDataset(
            [self.texts[i] for i in indices.tolist()], self.labels[indices], self.label_set, self.source
        )

    @classmethod
    def from_label_names(
        cls,
        texts: Sequence[str],
        label_names: Sequence[Sequence[str]],
        label_set: LabelSet | None = None,
    ) -> LabeledDataset:
        """Build from label names per text; the label set is the sorted names when not given."""
        if len(texts) != len(label_names):
            raise ValueError(f"{len(texts)} texts but {len(label_names)} label lists")
        if label_set is None:
            label_set = LabelSet(sorted({name for names in label_names for name in names}))
        ids = [[label_set.index(name) for name in names] for names in label_names]
        return cls(list(texts), LabelMatrix.from_lists(ids, len(label_set)), label_set)

    def with_label_set(
        self,
        label_set: LabelSet,
        *,
        unknown_labels: Literal["error", "ignore"] = "error",
        where: str | None = None,
        known_as: str = "the training data",
    ) -> tuple[LabeledDataset, dict[str, int]]:
        """This dataset re-expressed over ``label_set`` (e.g. dev or test over the training labels).

        Labels that ``label_set`` lacks raise a ValueError naming them (``unknown_labels="error"``,
        the default), or are dropped from the rows (``"ignore"``); the second value maps each
        dropped label to the number of rows that carried it, for a warning.

        Example:
            >>> dev = LabeledDataset.from_label_names(["a", "b", "c"], [["x"], ["x", "rare"], ["rare"]])
            >>> aligned, dropped = dev.with_label_set(LabelSet(["x", "y"]), unknown_labels="ignore")
            >>> [aligned.label_names(i) for i in range(3)], dropped
            ([['x'], ['x'], []], {'rare': 2})
        """
        if unknown_labels not in ("error", "ignore"):
            raise ValueError(f"unknown_labels must be 'error' or 'ignore', got {unknown_labels!r}")
        counts = self.labels.label_counts()
        unknown = {
            name: int(count)
            for name, count in zip(self.label_set.names, counts, strict=True)
            if count > 0 and name not in label_set
        }
        if unknown and unknown_labels == "error":
            shown = ", ".join(f"{name} ({count} rows)" for name, count in list(unknown.items())[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ValueError(
                f"{where or self.source or 'dataset'}: labels not in {known_as}: {shown}{more}; "
                "pass --unknown-labels ignore (unknown_labels='ignore') to drop them from these rows"
            )
        if self.label_set == label_set:
            return self, {}
        keep = np.array([name in label_set for name in self.label_set.names], dtype=bool)
        new_ids = np.array([label_set.index(name) if name in label_set else -1 for name in self.label_set.names])
        dense = self.labels.to_dense()
        rows, columns = np.nonzero(dense[:, keep])
        matrix = np.zeros((len(self), len(label_set)), dtype=np.uint8)
        matrix[rows, new_ids[keep][columns]] = 1
        aligned = LabeledDataset(list(self.texts), LabelMatrix.from_dense(matrix), label_set, self.source)
        return aligned, unknown

    def to_records(self) -> list[dict[str, Any]]:
        """``[{"text": ..., "labels": [names]}, ...]``, e.g. for writing JSONL."""
        names = self.label_set.names
        return [
            {"text": text, "labels": [names[i] for i in ids]}
            for text, ids in zip(self.texts, self.labels.to_lists(), strict=True)
        ]


@dataclass
class PairDataset:
    """Pairs of texts with a similarity score in [0, 1] (1 = same meaning / positive).

    ``labels`` (optional) holds the labels of each pair's first text: with them, in-batch losses
    such as `MultipleNegativesRankingLoss` mask the other pairs that share a label (false negatives).

    Example:
        >>> pairs = PairDataset(["a cat"], ["a kitten"], np.array([0.75]))
        >>> len(pairs), float(pairs.scores[0])
        (1, 0.75)
    """

    text1: list[str]
    text2: list[str]
    scores: np.ndarray
    source: str | None = field(default=None, compare=False)
    labels: LabelMatrix | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32)
        if self.labels is not None and len(self.labels) != len(self.text1):
            raise ValueError(f"labels has {len(self.labels)} rows but there are {len(self.text1)} pairs")
        if not (len(self.text1) == len(self.text2) == len(self.scores)):
            raise ValueError(
                f"text1, text2 and scores differ in length: {len(self.text1)}, {len(self.text2)}, {len(self.scores)}"
            )
        if self.scores.size and (not np.isfinite(self.scores).all() or self.scores.min() < 0 or self.scores.max() > 1):
            raise ValueError("pair scores must be finite numbers in [0, 1]")

    def __len__(self) -> int:
        return len(self.text1)

    def __getitem__(self, index: int) -> tuple[str, str, float]:
        return self.text1[index], self.text2[index], float(self.scores[index])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PairDataset)
            and self.text1 == other.text1
            and self.text2 == other.text2
            and np.array_equal(self.scores, other.scores)
        )


@dataclass
class TripletDataset:
    """Anchors with a positive and one or several negatives each.

    ``negatives`` is a list of str (one negative each) or a list of lists of str.

    Example:
        >>> triplets = TripletDataset(["refund?"], ["money back"], ["app crash"])
        >>> triplets[0]
        ('refund?', 'money back', ['app crash'])
    """

    anchors: list[str]
    positives: list[str]
    negatives: list[str] | list[list[str]]
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not (len(self.anchors) == len(self.positives) == len(self.negatives)):
            raise ValueError(
                f"anchors, positives and negatives differ in length: {len(self.anchors)}, "
                f"{len(self.positives)}, {len(self.negatives)}"
            )

    def __len__(self) -> int:
        return len(self.anchors)

    @property
    def num_negatives(self) -> int:
        """Negatives per anchor (the most any anchor has)."""
        if not self.negatives:
            return 0
        if isinstance(self.negatives[0], str):
            return 1
        return max(len(n) for n in self.negatives)

    def negatives_of(self, index: int) -> list[str]:
        """The negatives of anchor ``index`` as a list."""
        negatives = self.negatives[index]
        return [negatives] if isinstance(negatives, str) else list(negatives)

    def __getitem__(self, index: int) -> tuple[str, str, list[str]]:
        return self.anchors[index], self.positives[index], self.negatives_of(index)


def dataset_fingerprint(dataset: LabeledDataset | PairDataset | TripletDataset) -> dict[str, Any]:
    """What identifies a training set cheaply: its kind, row count and a hash of its texts and labels/scores.

    Recorded in checkpoints so that a resume on other data is refused (one pass over the texts).

    Example:
        >>> data = LabeledDataset.from_label_names(["a", "b"], [["x"], []])
        >>> fingerprint = dataset_fingerprint(data)
        >>> fingerprint["kind"], fingerprint["rows"], len(fingerprint["hash"])
        ('LabeledDataset', 2, 32)
        >>> other = LabeledDataset.from_label_names(["a", "b"], [["y"], []])
        >>> dataset_fingerprint(other)["hash"] == fingerprint["hash"]
        False
    """
    digest = hashlib.blake2b(digest_size=16)

    def add(values: Any) -> None:
        for value in values:
            digest.update(str(value).encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        digest.update(b"\x01")

    if isinstance(dataset, LabeledDataset):
        add(dataset.texts)
        add(dataset.label_set.names)
        add(map(tuple, dataset.labels.to_lists()))
    elif isinstance(dataset, PairDataset):
        add(dataset.text1)
        add(dataset.text2)
        add(np.asarray(dataset.scores, dtype=np.float64).round(12).tolist())
    else:
        add(dataset.anchors)
        add(dataset.positives)
        add(map(tuple, (dataset.negatives_of(i) for i in range(len(dataset)))))
    return {"kind": type(dataset).__name__, "rows": len(dataset), "hash": digest.hexdigest()}
