"""The `labelspace` command: the app, the error handler and `main`.

The commands live in `labelspace.commands`, one module per command group, each with ``register(app)``;
what they share (options, data loading, the console) is in `labelspace.commands.common`. Every command
has ``--help`` with an example. Bad input ends with one line on stderr (``labelspace: error:
FILE:LINE: column 'C': what was expected``) and exit status 2; set ``LABELSPACE_DEBUG=1`` to see the
traceback instead. A bug shows its traceback and exit status 1.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Annotated

import typer

from labelspace import __version__
from labelspace.commands import data, embed, evaluate, export, index, mine, quickstart, serve, train
from labelspace.commands.common import CommandError
from labelspace.errors import RunInterrupted, is_user_error

__all__ = ["COMMAND_MODULES", "CommandError", "UsageError", "app", "main"]

app = typer.Typer(
    name="labelspace",
    help="Train, evaluate and serve multi-label text models with metric learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# typer >= 0.20 ships its own copy of click's exceptions; BadParameter derives from the
# UsageError class in use either way.
UsageError: type[Exception] = typer.BadParameter.__mro__[1]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"labelspace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True)
    ] = False,
) -> None:
    """Train, evaluate and serve multi-label text models with metric learning."""


#: The command modules, in the order ``labelspace --help`` lists their commands.
COMMAND_MODULES = (data, quickstart, train, evaluate, embed, export, index, mine, serve)
for _module in COMMAND_MODULES:
    _module.register(app)


# ----------------------------------------------------------------------------- entry point


def _quiet_libraries() -> None:
    """Hide transformers' per-file loading / saving bars: our own progress bars tell the story."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def _show_warning_on_one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: object = None,
) -> None:
    """Print a Python warning as ``labelspace: warning: MESSAGE`` on stderr (no file, line or source)."""
    typer.echo(f"labelspace: warning: {' '.join(str(message).split())}", err=True)


def _one_line(error: BaseException) -> str:
    """The message of a user error on one line; OSErrors as ``FILE: what went wrong`` (no errno)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "")
        text = f"{where}: {error.strerror[:1].lower()}{error.strerror[1:]}"
    elif isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


def _report_bug(error: BaseException) -> None:
    """Print the traceback of ``error`` (being handled) and one line that asks for a bug report."""
    traceback.print_exc()
    typer.echo(
        f"labelspace: internal error ({type(error).__name__}): this is a bug in labelspace {__version__}, "
        "not a problem with your input; please report it with the traceback above",
        err=True,
    )


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit status 2; bugs show their traceback.

    Exit status: 2 for bad input (`labelspace.errors.is_user_error`: a `LabelspaceError` such as
    `CommandError` or `DataFormatError`, a file that cannot be read, a ValueError raised by our own checks),
    130 when interrupted (Ctrl-C; training says how to resume), 1 for a bug, whose traceback is
    printed with a request to report it. ``LABELSPACE_DEBUG=1`` shows the traceback of user errors too.
    """
    command = typer.main.get_command(app)
    _quiet_libraries()
    warnings.showwarning = _show_warning_on_one_line
    debug = os.environ.get("LABELSPACE_DEBUG") not in (None, "", "0")
    try:
        result = command.main(args=argv, prog_name="labelspace", standalone_mode=False)
    except typer.Exit as done:
        sys.exit(getattr(done, "exit_code", 0))
    except RunInterrupted as interrupted:
        typer.echo(f"labelspace: {interrupted}", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("labelspace: interrupted", err=True)
        sys.exit(130)
    except typer.Abort:
        typer.echo("labelspace: aborted", err=True)
        sys.exit(130)
    except UsageError as error:
        if not error.format_message():  # type: ignore[attr-defined]
            sys.exit(2)  # help was printed for a bare group command
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        typer.echo(f"labelspace: error: {error.format_message()}{hint}", err=True)  # type: ignore[attr-defined]
        sys.exit(2)
    except Exception as error:
        if debug:
            raise
        if not is_user_error(error):  # not a check of ours nor a bad file: a bug, never disguised as bad input
            _report_bug(error)
            sys.exit(1)
        typer.echo(f"labelspace: error: {_one_line(error)}", err=True)
        sys.exit(2)
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":  # pragma: no cover
    main()
