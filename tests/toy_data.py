"""The toy multi-label support messages shared by the trainer tests and the torchrun script."""

from labelspace.data import LabeledDataset

TEXTS = [
    "refund my last invoice please",
    "the app crashes on start",
    "charged twice and the app froze",
    "love the new dashboard",
    "how do I export a report",
    "billing page shows an error",
    "great support, thanks a lot",
    "export button does nothing",
]
LABELS = [
    ["billing"],
    ["bug"],
    ["billing", "bug"],
    ["praise"],
    ["howto"],
    ["billing", "bug"],
    ["praise"],
    ["bug", "howto"],
]


def toy_data(repeat: int = 4) -> LabeledDataset:
    """``8 * repeat`` short multi-label texts (the 8 above, numbered so that none repeats)."""
    texts = [f"{text} {i}" for i in range(repeat) for text in TEXTS]
    return LabeledDataset.from_label_names(texts, LABELS * repeat)
