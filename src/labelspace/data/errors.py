"""The error raised for bad input data, naming file, line and column."""

from __future__ import annotations

import os

from labelspace.errors import LabelspaceError


class DataFormatError(LabelspaceError, ValueError):
    """Bad input data: says where (file, line, column) and what was expected.

    ``str(error)`` reads ``FILE:LINE: column 'NAME': MESSAGE``, the form compilers use, so
    editors and terminals can jump to the spot. ``line`` is 1-based and counts the header
    line of delimited files; for data frames and Parquet files it is the 1-based row.

    Example:
        >>> str(DataFormatError("train.csv", 3, "labels", "label 'x' is not in the labels file"))
        "train.csv:3: column 'labels': label 'x' is not in the labels file"
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        line: int | None,
        column: str | None,
        message: str,
        *,
        line_word: str = "line",
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        self.message = message
        self.line_word = line_word
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path if self.path is not None else "<data>"
        if self.line is not None:
            where += f":{self.line}" if self.line_word == "line" else f": {self.line_word} {self.line}"
        parts = [where]
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        parts.append(self.message)
        return ": ".join(parts)
