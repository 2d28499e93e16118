"""Dataset statistics for `labelspace data check`: labels, cardinality, duplicates, lengths, warnings.

Example:
    >>> from labelspace.data import LabeledDataset
    >>> data = LabeledDataset.from_label_names(["a b", "c", "a b"], [["x", "y"], ["x"], []])
    >>> report = describe_labeled(data)
    >>> report["label_cardinality"], report["texts_without_labels"], report["duplicated_texts"]
    (1.0, 1, 2)
    >>> report["warnings"]
    []
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.label_cells import LabelWarning

DENSITY_WARNING_ABOVE = 0.5


@contextmanager
def collect_label_warnings() -> Iterator[list[str]]:
    """Collect, as text, the `LabelWarning`s raised in the block (other warnings go on as usual).

    ``data check`` reads a file inside it and hands the list to `describe`: a repeated label in a
    row cannot be seen in the label matrix afterwards, only while reading.

    Example:
        >>> import pandas as pd
        >>> from labelspace.data import load
        >>> with collect_label_warnings() as found:
        ...     _ = load(pd.DataFrame({"text": ["a"], "labels": ["x|x"]}))
        >>> print(found[0].split(": ", 2)[2])
        1 row(s) name a label more than once (first: row 1, 'x'); a label counts once per text
    """
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LabelWarning)
        yield found
    for warning in caught:
        if issubclass(warning.category, LabelWarning):
            found.append(str(warning.message))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def length_statistics(texts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Min / mean / median / 95th percentile / max of text length in characters and words."""
    result: dict[str, dict[str, float]] = {}
    characters = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
    words = np.fromiter((len(text.split()) for text in texts), dtype=np.int64, count=len(texts))
    for name, values in (("characters", characters), ("words", words)):
        if values.size == 0:
            result[name] = {"min": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
            continue
        result[name] = {
            "min": int(values.min()),
            "mean": round(float(values.mean()), 2),
            "median": float(np.median(values)),
            "p95": round(float(np.percentile(values, 95)), 2),
            "max": int(values.max()),
        }
    return result


def _duplicates(texts: Sequence[str]) -> tuple[int, int, list[tuple[str, int]]]:
    """(items whose text occurs more than once, distinct such texts, the most repeated)."""
    counts = Counter(texts)
    repeated = [(text, count) for text, count in counts.items() if count > 1]
    repeated.sort(key=lambda item: (-item[1], item[0]))
    return sum(count for _, count in repeated), len(repeated), repeated[:5]


def describe_labeled(
    dataset: LabeledDataset, *, top_pairs: int = 10, reader_warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """Statistics of a labelled dataset, as a JSON-ready dict.

    Labels are listed rarest first; label pairs are counted with one sparse product
    (L x L co-occurrence), not by looping over items. ``warnings`` holds ``reader_warnings``
    (see `collect_label_warnings`) and a warning when the label density is above 0.5: texts
    carrying most of the labels usually mean 0/1 vectors or flags read as label ids.
    """
    labels = dataset.labels
    names = dataset.label_set.names
    counts = labels.label_counts()
    cardinality = labels.cardinality()
    rows = len(dataset)
    duplicated_items, duplicated_distinct, most_repeated = _duplicates(dataset.texts)

    sparse = labels.to_sparse().astype(np.int64)
    co_occurrence = (sparse.T @ sparse).toarray()
    upper_rows, upper_cols = np.triu_indices(len(names), k=1)
    pair_counts = co_occurrence[upper_rows, upper_cols]
    order = np.argsort(-pair_counts, kind="stable")[:top_pairs]
    label_pairs = [
        {"labels": [names[upper_rows[i]], names[upper_cols[i]]], "count": int(pair_counts[i])}
        for i in order
        if pair_counts[i] > 0
    ]
    rarest_first = np.lexsort((np.arange(len(names)), counts))
    density = float(cardinality.mean()) / len(names) if rows and names else 0.0
    found = list(reader_warnings)
    if density > DENSITY_WARNING_ABOVE:
        found.append(
            f"label density is {density:.2f} (above {DENSITY_WARNING_ABOVE}): a text carries "
            f"{float(cardinality.mean()):.2f} of the {len(names)} labels on average; if the labels column holds "
            "0/1 vectors read as label ids, pass labels_format='multi_hot' (CLI: --labels-format multi_hot)"
        )
    return {
        "kind": "labeled",
        "source": dataset.source,
        "rows": rows,
        "labels": len(names),
        "label_assignments": labels.nnz,
        "label_cardinality": round(float(cardinality.mean()), 4) if rows else 0.0,
        "label_density": round(density, 4),
        "labels_per_item": {str(k): int(v) for k, v in sorted(Counter(cardinality.tolist()).items())},
        "label_frequencies": [
            {"label": names[i], "count": int(counts[i]), "share": round(float(counts[i]) / rows, 4) if rows else 0.0}
            for i in rarest_first
        ],
        "texts_without_labels": int((cardinality == 0).sum()),
        "empty_texts": sum(1 for text in dataset.texts if not text.strip()),
        "duplicated_texts": duplicated_items,
        "distinct_duplicated_texts": duplicated_distinct,
        "most_repeated_texts": [{"text": text, "count": count} for text, count in most_repeated],
        "length": length_statistics(dataset.texts),
        "top_label_pairs": label_pairs,
        "warnings": found,
    }


def describe_pairs(dataset: PairDataset, *, reader_warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Statistics of a pair dataset: size, score distribution, duplicates, lengths."""
    scores = dataset.scores
    pairs = list(zip(dataset.text1, dataset.text2, strict=True))
    duplicated_pairs = sum(count for count in Counter(pairs).values() if count > 1)
    return {
        "kind": "pairs",
        "source": dataset.source,
        "rows": len(dataset),
        "score": {
            "min": float(scores.min()) if scores.size else 0.0,
            "mean": round(float(scores.mean()), 4) if scores.size else 0.0,
            "max": float(scores.max()) if scores.size else 0.0,
            "positives (score >= 0.5)": int((scores >= 0.5).sum()),
        },
        "same_text_pairs": sum(1 for first, second in pairs if first == second),
        "duplicated_pairs": duplicated_pairs,
        "empty_texts": sum(1 for text in dataset.text1 + dataset.text2 if not text.strip()),
        "length": length_statistics(dataset.text1 + dataset.text2),
        "warnings": list(reader_warnings),
    }


def describe_triplets(dataset: TripletDataset, *, reader_warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Statistics of a triplet dataset: size, negatives per anchor, lengths."""
    negatives = [dataset.negatives_of(i) for i in range(len(dataset))]
    per_anchor = Counter(len(row) for row in negatives)
    all_texts = dataset.anchors + dataset.positives + [text for row in negatives for text in row]
    return {
        "kind": "triplets",
        "source": dataset.source,
        "rows": len(dataset),
        "negatives_per_anchor": {str(k): int(v) for k, v in sorted(per_anchor.items())},
        "positive_equals_anchor": sum(1 for a, p in zip(dataset.anchors, dataset.positives, strict=True) if a == p),
        "empty_texts": sum(1 for text in all_texts if not text.strip()),
        "length": length_statistics(all_texts),
        "warnings": list(reader_warnings),
    }


def describe(
    dataset: LabeledDataset | PairDataset | TripletDataset, *, reader_warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """Statistics of any labelspace dataset (dispatches on its type); ``reader_warnings`` join its ``warnings``."""
    if isinstance(dataset, LabeledDataset):
        return describe_labeled(dataset, reader_warnings=reader_warnings)
    if isinstance(dataset, PairDataset):
        return describe_pairs(dataset, reader_warnings=reader_warnings)
    if isinstance(dataset, TripletDataset):
        return describe_triplets(dataset, reader_warnings=reader_warnings)
    raise TypeError(f"expected a LabeledDataset, PairDataset or TripletDataset, got {type(dataset).__name__}")
