"""The embedded demo dataset: support messages to a fictional product, 12 labels.

About 600 messages written for labelspace (see ``demo/DATASET_CARD.md``), each with one to
three labels, split into train/dev/test by multi-label stratification. It ships inside the
package, so the quickstart and the docs run with no download.

Example:
    >>> train = demo("train")
    >>> train.label_set.names[:3]
    ['billing', 'refund', 'account-access']
    >>> len(demo("train")) + len(demo("dev")) + len(demo("test")) == len(demo("all"))
    True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelMatrix, LabelSet
from labelspace.data.readers import load

DEMO_LABELS = LabelSet(
    [
        "billing",
        "refund",
        "account-access",
        "bug",
        "performance",
        "feature-request",
        "data-export",
        "integration",
        "security",
        "cancellation",
        "documentation",
        "praise",
    ]
)
DEMO_SPLITS = ("train", "dev", "test")


def demo_path(split: Literal["train", "dev", "test"]) -> Path:
    """Path of a split's JSONL file inside the installed package."""
    if split not in DEMO_SPLITS:
        raise ValueError(f"split must be one of {', '.join(DEMO_SPLITS)}; got {split!r}")
    return Path(str(resources.files("labelspace.data.builtin") / "demo" / f"{split}.jsonl"))


def demo(split: Literal["train", "dev", "test", "all"] = "train") -> LabeledDataset:
    """The demo dataset's ``train``, ``dev`` or ``test`` split, or ``all`` of it."""
    if split == "all":
        parts = [demo(name) for name in DEMO_SPLITS]
        return LabeledDataset(
            [text for part in parts for text in part.texts],
            LabelMatrix.concatenate([part.labels for part in parts]),
            DEMO_LABELS,
            source="labelspace demo (all)",
        )
    dataset = load(demo_path(split), label_set=DEMO_LABELS)
    assert isinstance(dataset, LabeledDataset)
    return dataset
