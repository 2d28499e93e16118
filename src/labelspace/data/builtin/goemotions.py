"""GoEmotions (Demszky et al., 2020): 58k Reddit comments, 27 emotions + neutral.

`goemotions(split)` reads the public release's TSV files (``text<TAB>ids<TAB>comment id``)
from, in order: the ``data_dir`` argument, the ``LABELSPACE_GOEMOTIONS_DIR`` environment
variable, or the cache folder (``$LABELSPACE_CACHE``, else ``~/.cache/labelspace``)
``/goemotions``. When none holds the files and ``download`` is true, they are fetched from the
public release into the cache (written to a temporary name, then renamed).

Example (needs the files or network access, so not run as a doctest):
    ``train = goemotions("train", data_dir="../shared/data/goemotions")``
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Literal

from labelspace.data.datasets import LabeledDataset
from labelspace.data.labels import LabelSet
from labelspace.data.readers import load

GOEMOTIONS_LABELS = LabelSet(
    [
        "admiration",
        "amusement",
        "anger",
        "annoyance",
        "approval",
        "caring",
        "confusion",
        "curiosity",
        "desire",
        "disappointment",
        "disapproval",
        "disgust",
        "embarrassment",
        "excitement",
        "fear",
        "gratitude",
        "grief",
        "joy",
        "love",
        "nervousness",
        "optimism",
        "pride",
        "realization",
        "relief",
        "remorse",
        "sadness",
        "surprise",
        "neutral",
    ]
)
GOEMOTIONS_SPLITS = ("train", "dev", "test")
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/google-research/google-research/master/goemotions/data"
# The release names the label list emotions.txt; we keep it as labels.txt beside the splits.
_REMOTE_NAMES = {"train.tsv": "train.tsv", "dev.tsv": "dev.tsv", "test.tsv": "test.tsv", "labels.txt": "emotions.txt"}


def cache_dir() -> Path:
    """labelspace's cache folder: ``$LABELSPACE_CACHE`` or ``~/.cache/labelspace``."""
    return Path(os.environ.get("LABELSPACE_CACHE") or Path.home() / ".cache" / "labelspace")


def _has_files(folder: Path, split: str) -> bool:
    return (folder / f"{split}.tsv").is_file() and (folder / "labels.txt").is_file()


def _download(folder: Path, names: list[str], base_url: str, timeout: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / name
        if target.is_file():
            continue
        url = f"{base_url.rstrip('/')}/{_REMOTE_NAMES[name]}"
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as output, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, output)
            os.replace(temporary, target)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise OSError(
                f"could not download GoEmotions {name} from {url}: {error}. Point "
                "LABELSPACE_GOEMOTIONS_DIR (or data_dir=) at a folder holding "
                "train.tsv, dev.tsv, test.tsv and labels.txt instead"
            ) from None


def goemotions_dir(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """The folder the split is read from, downloading into the cache when needed."""
    if split not in GOEMOTIONS_SPLITS:
        raise ValueError(f"split must be one of {', '.join(GOEMOTIONS_SPLITS)}; got {split!r}")
    if data_dir is not None:
        folder = Path(data_dir)
        if not _has_files(folder, split):
            raise FileNotFoundError(f"{folder}: expected {split}.tsv and labels.txt in this folder")
        return folder
    from_environment = os.environ.get("LABELSPACE_GOEMOTIONS_DIR")
    if from_environment:
        folder = Path(from_environment)
        if not _has_files(folder, split):
            raise FileNotFoundError(
                f"LABELSPACE_GOEMOTIONS_DIR={folder}: expected {split}.tsv and labels.txt in this folder"
            )
        return folder
    folder = cache_dir() / "goemotions"
    if _has_files(folder, split):
        return folder
    if not download:
        raise FileNotFoundError(
            f"GoEmotions {split} not found in {folder}; set LABELSPACE_GOEMOTIONS_DIR or allow download"
        )
    _download(
        folder,
        [f"{split}.tsv", "labels.txt"],
        base_url or os.environ.get("LABELSPACE_GOEMOTIONS_URL", DEFAULT_BASE_URL),
        timeout,
    )
    return folder


def goemotions(
    split: Literal["train", "dev", "test"] = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> LabeledDataset:
    """A GoEmotions split as a LabeledDataset over the 28 labels (file order of labels.txt)."""
    folder = goemotions_dir(split, data_dir, download=download)
    dataset = load(folder / f"{split}.tsv", format="goemotions", labels_file=folder / "labels.txt")
    assert isinstance(dataset, LabeledDataset)
    return dataset
