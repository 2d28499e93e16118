"""Label vocabularies and multi-hot label matrices.

`LabelSet` maps label names to integer ids in a stable order; `LabelMatrix` holds the
n x L multi-hot matrix of a dataset, stored sparse (CSR) so that thousands of labels cost
memory proportional to the number of assigned labels, not n x L.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from labelspace.data.errors import DataFormatError
from labelspace.files import atomic_write_text, read_text

if TYPE_CHECKING:  # pragma: no cover
    import torch


class LabelSet:
    """An ordered vocabulary of label names.

    The order is part of the model: column ``i`` of every label matrix, head output and
    threshold vector means ``names[i]``.

    Names are non-empty strings, each once; a single string is refused rather than read as a
    list of one-character names.

    Example:
        >>> labels = LabelSet(["billing", "bug", "refund"])
        >>> labels.index("bug")
        1
        >>> LabelSet.from_json(labels.to_json()) == labels
        True
        >>> LabelSet("abc")
        Traceback (most recent call last):
        ...
        ValueError: LabelSet takes a list of label names, not a single string ('abc'); write LabelSet(['abc'])
    """

    def __init__(self, names: Iterable[str]) -> None:
        if isinstance(names, (str, bytes)):
            raise ValueError(
                f"LabelSet takes a list of label names, not a single string ({names!r}); write LabelSet([{names!r}])"
            )
        checked: list[str] = []
        index: dict[str, int] = {}
        for position, name in enumerate(names):
            if not isinstance(name, str):
                raise ValueError(
                    f"label names must be non-empty strings, got {type(name).__name__} {name!r} at position {position}"
                )
            name = str(name)  # plain str, also for subclasses such as numpy.str_
            if name == "":
                raise ValueError(f"label names must be non-empty strings (position {position})")
            if name in index:
                raise ValueError(
                    f"label '{name}' appears twice in the label set (positions {index[name]} and {position})"
                )
            index[name] = position
            checked.append(name)
        self._names = checked
        self._index = index

    @property
    def names(self) -> list[str]:
        """Label names in id order (a copy)."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, label_id: int) -> str:
        return self._names[label_id]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and self._names == other._names

    def __hash__(self) -> int:
        return hash(tuple(self._names))

    def __repr__(self) -> str:
        shown = ", ".join(self._names[:8]) + (", ..." if len(self._names) > 8 else "")
        return f"LabelSet({len(self)} labels: {shown})"

    def index(self, name: str) -> int:
        """The id of ``name``; raises KeyError naming the known labels when absent."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(
                f"unknown label '{name}' (known: {', '.join(self._names[:20])}"
                f"{', ...' if len(self._names) > 20 else ''})"
            ) from None

    def get(self, name: str) -> int | None:
        """The id of ``name``, or None when it is not in the set."""
        return self._index.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self._names)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        if not isinstance(data, dict) or not isinstance(data.get("names"), list):
            raise ValueError("a LabelSet JSON object needs a 'names' list")
        return cls(data["names"])

    @classmethod
    def from_json(cls, text: str) -> LabelSet:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the label set as JSON (atomically: temporary file, then rename)."""
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelSet:
        """Read a label set from JSON (``save``) or a plain text file with one name a line."""
        path = Path(path)
        text = read_text(path, expected="a label set (JSON, or one label name a line)")
        if path.suffix == ".json":
            return cls.from_json(text)
        return cls.from_labels_file(path)

    @classmethod
    def from_labels_file(cls, path: str | os.PathLike[str]) -> LabelSet:
        """One label name a line (GoEmotions ``labels.txt``); the line number is the id."""
        path = Path(path)
        try:
            text = read_text(path, expected="one label name a line")
        except FileNotFoundError:
            raise DataFormatError(path, None, None, "labels file not found") from None
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        names: list[str] = []
        seen: dict[str, int] = {}
        for number, line in enumerate(lines, start=1):
            name = line.strip()
            if not name:
                raise DataFormatError(path, number, None, "empty line in labels file (expected one label name a line)")
            if name in seen:
                raise DataFormatError(path, number, None, f"label '{name}' already given on line {seen[name]}")
            seen[name] = number
            names.append(name)
        if not names:
            raise DataFormatError(path, 1, None, "labels file is empty (expected one label name a line)")
        return cls(names)


class LabelMatrix:
    """The n x L multi-hot label matrix of a dataset, stored sparse.

    Rows are items, columns are label ids of a `LabelSet`. Built from lists of label ids
    per item, or from a dense 0/1 array.

    Example:
        >>> matrix = LabelMatrix.from_lists([[0, 2], [1], []], num_labels=3)
        >>> matrix.to_dense()
        array([[1, 0, 1],
               [0, 1, 0],
               [0, 0, 0]], dtype=uint8)
        >>> matrix.label_counts().tolist()
        [1, 1, 1]
    """

    def __init__(self, matrix: sp.spmatrix | sp.sparray) -> None:
        csr = sp.csr_matrix(matrix, dtype=np.uint8)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        if csr.nnz and csr.data.max() > 1:
            raise ValueError("a LabelMatrix holds 0/1 values only")
        csr.sort_indices()
        self._csr = csr
        self._csc: sp.csc_matrix | None = None

    @classmethod
    def from_lists(cls, label_ids: Sequence[Sequence[int]], num_labels: int) -> LabelMatrix:
        """One list of label ids per item (duplicates within an item are merged)."""
        lengths = np.fromiter((len(ids) for ids in label_ids), dtype=np.int64, count=len(label_ids))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        flat = (
            np.fromiter((i for ids in label_ids for i in ids), dtype=np.int64, count=int(indptr[-1]))
            if indptr[-1]
            else np.zeros(0, dtype=np.int64)
        )
        if flat.size and (flat.min() < 0 or flat.max() >= num_labels):
            raise ValueError(f"label ids must lie in [0, {num_labels - 1}]")
        data = np.ones(flat.size, dtype=np.uint8)
        matrix = sp.csr_matrix((data, flat, indptr), shape=(len(label_ids), num_labels))
        matrix.sum_duplicates()
        matrix.data[:] = 1
        return cls(matrix)

    @classmethod
    def from_dense(cls, array: Any) -> LabelMatrix:
        """From a dense n x L array (numpy, torch or nested lists) of 0/1 values."""
        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        dense = np.asarray(array)
        if dense.ndim != 2:
            raise ValueError(f"expected a 2-D 0/1 array, got shape {dense.shape}")
        if dense.size and not np.isin(dense, (0, 1)).all():
            raise ValueError("expected only 0/1 values in the label matrix")
        return cls(sp.csr_matrix(dense.astype(np.uint8)))

    @property
    def shape(self) -> tuple[int, int]:
        return self._csr.shape  # type: ignore[return-value]

    @property
    def num_labels(self) -> int:
        return self._csr.shape[1]

    @property
    def nnz(self) -> int:
        """Number of (item, label) assignments."""
        return int(self._csr.nnz)

    def __len__(self) -> int:
        return self._csr.shape[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelMatrix) or other.shape != self.shape:
            return False
        return (self._csr != other._csr).nnz == 0

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LabelMatrix({len(self)} items x {self.num_labels} labels, {self.nnz} assignments)"

    def __getitem__(self, rows: Any) -> LabelMatrix:
        """Rows as a new LabelMatrix (slice, index array or boolean mask)."""
        if isinstance(rows, (int, np.integer)):
            rows = [int(rows)]
        return LabelMatrix(self._csr[rows])

    def to_sparse(self) -> sp.csr_matrix:
        """The underlying CSR matrix (uint8); do not modify it in place."""
        return self._csr

    def to_csc(self) -> sp.csc_matrix:
        """Column-major copy, cached: column j lists the items carrying label j."""
        if self._csc is None:
            self._csc = self._csr.tocsc()
            self._csc.sort_indices()
        return self._csc

    def to_dense(self) -> np.ndarray:
        """Dense n x L numpy array of 0/1 (uint8)."""
        return self._csr.toarray()

    def to_tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Dense n x L torch tensor of 0/1 (float32 unless ``dtype`` says otherwise)."""
        import torch

        return torch.from_numpy(self.to_dense()).to(dtype or torch.float32)

    def to_lists(self) -> list[list[int]]:
        """Label ids of each item as Python lists."""
        indptr, indices = self._csr.indptr, self._csr.indices
        return [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(len(self))]

    def row(self, item: int) -> np.ndarray:
        """Label ids of one item (sorted)."""
        start, end = self._csr.indptr[item], self._csr.indptr[item + 1]
        return self._csr.indices[start:end].copy()

    def items_with_label(self, label_id: int) -> np.ndarray:
        """Indices of the items that carry ``label_id`` (sorted)."""
        csc = self.to_csc()
        start, end = csc.indptr[label_id], csc.indptr[label_id + 1]
        return csc.indices[start:end].copy()

    def label_counts(self) -> np.ndarray:
        """Number of items carrying each label (length L, int64)."""
        return np.bincount(self._csr.indices, minlength=self.num_labels).astype(np.int64)

    def cardinality(self) -> np.ndarray:
        """Number of labels of each item (length n, int64)."""
        return np.diff(self._csr.indptr).astype(np.int64)

    @staticmethod
    def concatenate(matrices: Sequence[LabelMatrix]) -> LabelMatrix:
        """Stack several matrices with the same number of labels (rows one after another)."""
        if not matrices:
            raise ValueError("nothing to concatenate")
        widths = {m.num_labels for m in matrices}
        if len(widths) != 1:
            raise ValueError(f"label matrices have different label counts: {sorted(widths)}")
        return LabelMatrix(sp.vstack([m._csr for m in matrices], format="csr"))
