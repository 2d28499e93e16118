"""The exceptions labelspace raises on purpose, and how to tell them from bugs.

Bad input (data, arguments, files) is reported with a ValueError (or a subclass such as
`labelspace.data.errors.DataFormatError`) whose message names the file, line, column or argument;
the command line prints such an error as one line. Anything else that escapes, say an IndexError
inside a loss or a ValueError from deep inside numpy, is a bug: the command line shows its traceback
and asks for a report. `is_user_error` draws that line in one place.

Example:
    >>> def check(value):
    ...     if value < 0:
    ...         raise ValueError(f"value must be >= 0, got {value}")
    >>> try:
    ...     check(-1)
    ... except ValueError as error:
    ...     raised_by_a_check = error
    >>> is_user_error(raised_by_a_check, packages=(__name__,))
    True
    >>> try:
    ...     [][1]
    ... except IndexError as error:
    ...     is_user_error(error)
    False
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LabelspaceError", "RunInterrupted", "is_user_error"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep

#: Exception types that labelspace raises for bad input (when raised by its own code).
_INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, LookupError)


class LabelspaceError(Exception):
    """Base of the errors labelspace raises for a user to read (always printed as one line)."""


class RunInterrupted(LabelspaceError):
    """Training was interrupted (Ctrl-C); ``run_folder`` holds what can be resumed, or None."""

    def __init__(self, run_folder: str | os.PathLike[str] | None) -> None:
        self.run_folder = None if run_folder is None else str(run_folder)
        hint = " (resume with --resume)" if self.run_folder is not None else ""
        super().__init__(f"interrupted{hint}")


def _raised_here(error: BaseException, packages: Sequence[str]) -> bool:
    """True when the innermost frame of ``error``'s traceback is a ``raise`` statement of ours."""
    trace = error.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    code = trace.tb_frame.f_code
    module = trace.tb_frame.f_globals.get("__name__", "")
    ours = code.co_filename.startswith(_PACKAGE_DIR) or any(
        module == package or module.startswith(package + ".") for package in packages
    )
    if not ours:
        return False
    return linecache.getline(code.co_filename, trace.tb_lineno).lstrip().startswith("raise")


def is_user_error(error: BaseException, packages: Sequence[str] = ()) -> bool:
    """Whether ``error`` reports bad input (print one line) rather than a bug (show the traceback).

    User errors: every `LabelspaceError` and `labelspace.data.errors.DataFormatError`; an OSError
    (a file that is missing, unreadable or a folder); and a ValueError / TypeError / KeyError that
    labelspace's own code raised with a ``raise`` statement (its checks). The same types raised
    anywhere else (numpy, torch, a failed lookup in our code) are bugs. ``packages`` adds module
    names whose raises count as ours (for tests and plugins).
    """
    if isinstance(error, (LabelspaceError, OSError)):  # DataFormatError is a LabelspaceError
        return True
    return isinstance(error, _INPUT_ERRORS) and _raised_here(error, packages)
