"""Writers: labelspace datasets to CSV, TSV, JSONL or Parquet, atomically.

The written file reads back with `labelspace.data.load` to an equal dataset.

Example:
    >>> import tempfile, pathlib
    >>> from labelspace.data import LabeledDataset, load
    >>> data = LabeledDataset.from_label_names(["slow app", "refund"], [["performance"], ["refund"]])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.jsonl"
    >>> save(data, path)
    >>> load(path).texts
    ['slow app', 'refund']
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.tables import EXTENSIONS
from labelspace.files import atomic_write


def _columns(dataset: LabeledDataset | PairDataset | TripletDataset, list_labels: bool) -> dict[str, list[Any]]:
    if isinstance(dataset, LabeledDataset):
        names = dataset.label_set.names
        labels = [[names[i] for i in ids] for ids in dataset.labels.to_lists()]
        if not list_labels:
            if any(mark in name for name in names for mark in "|;,"):
                # the reader would split such names: write each cell as a JSON list instead
                return {"text": dataset.texts, "labels": [json.dumps(row, ensure_ascii=False) for row in labels]}
            return {"text": dataset.texts, "labels": ["|".join(row) for row in labels]}
        return {"text": dataset.texts, "labels": labels}
    if isinstance(dataset, PairDataset):
        return {"text1": dataset.text1, "text2": dataset.text2, "score": [float(s) for s in dataset.scores]}
    if isinstance(dataset, TripletDataset):
        columns: dict[str, list[Any]] = {"anchor": dataset.anchors, "positive": dataset.positives}
        negatives = [dataset.negatives_of(i) for i in range(len(dataset))]
        for k in range(dataset.num_negatives):
            columns["negative" if k == 0 else f"negative_{k + 1}"] = [
                row[k] if k < len(row) else "" for row in negatives
            ]
        return columns
    raise TypeError(f"cannot write {type(dataset).__name__}")


def save(dataset: LabeledDataset | PairDataset | TripletDataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` to ``path`` in the format its extension names (temporary file, then rename)."""
    path = Path(path)
    file_format = EXTENSIONS.get(path.suffix.lower())
    if file_format is None:
        raise ValueError(
            f"{path}: cannot tell the format from the extension (expected one of {', '.join(sorted(EXTENSIONS))})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = _columns(dataset, list_labels=file_format in ("jsonl", "parquet"))
    names = list(columns)

    def write(temporary: Path) -> None:
        if file_format == "parquet":
            import pandas as pd

            pd.DataFrame(columns).to_parquet(temporary, index=False)
            return
        with temporary.open("w", encoding="utf-8", newline="") as output:
            rows = zip(*columns.values(), strict=True)
            if file_format == "jsonl":
                for row in rows:
                    output.write(json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False) + "\n")
            else:
                writer = csv.writer(output, delimiter="," if file_format == "csv" else "\t", lineterminator="\n")
                writer.writerow(names)
                writer.writerows(rows)

    atomic_write(path, write)
