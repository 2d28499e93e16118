"""Where a command may write: never over one of its own inputs, never inside a model folder.

One rule for every command that writes a file (``evaluate --json`` / ``--report``, ``predict
--output``, ``mine --out``, ``split --out``, ``convert triplets-to-pairs OUT``): an output that is
one of the command's input files (the same path, a symbolic link to it, or a hard link) would
replace that input, and a file written inside a model folder would damage the model
(``evaluate --json RUN/model/labelspace.json`` replaces the model's config, and the model no
longer loads). Both are refused before any work is done, with one line naming the option, the
path and why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from labelspace.models.model import CONFIG_FILE

__all__ = ["check_output_path", "is_model_folder", "model_folder_around"]

#: The file that makes a folder a labelspace model folder (`labelspace.models.model.CONFIG_FILE`).
MODEL_CONFIG_FILE = CONFIG_FILE
#: A sentence-transformers folder: ``modules.json``, or a transformers ``config.json`` beside its weights.
ENCODER_MODULES_FILE = "modules.json"
ENCODER_CONFIG_FILE = "config.json"
ENCODER_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json")

PathLike = str | os.PathLike[str]


def is_model_folder(folder: PathLike) -> bool:
    """Whether ``folder`` holds a saved model: ``labelspace.json``, or a sentence-transformers / transformers encoder
    (``modules.json``, or ``config.json`` beside ``model.safetensors``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> is_model_folder(folder)
        False
        >>> _ = (folder / "labelspace.json").write_text("{}")
        >>> is_model_folder(folder)
        True
    """
    path = Path(folder)
    if (path / MODEL_CONFIG_FILE).is_file() or (path / ENCODER_MODULES_FILE).is_file():
        return True
    return (path / ENCODER_CONFIG_FILE).is_file() and any((path / name).is_file() for name in ENCODER_WEIGHT_FILES)


def model_folder_around(path: PathLike) -> Path | None:
    """The model folder that ``path`` lies in (after following symbolic links), or None when it lies in none.

    Example:
        >>> import tempfile
        >>> model = Path(tempfile.mkdtemp()) / "model"
        >>> _ = model.mkdir(), (model / "labelspace.json").write_text("{}")
        >>> model_folder_around(model / "labelspace.json") == model.resolve()
        True
        >>> model_folder_around(model.parent / "metrics.json") is None
        True
    """
    resolved = Path(path).expanduser().resolve()
    return next((folder for folder in resolved.parents if is_model_folder(folder)), None)


def _same_file(first: Path, second: Path) -> bool:
    """Same path once links are followed, or the same file on disk (a hard link) when both exist."""
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samestat(first.stat(), second.stat())
    except OSError:  # one of them does not exist (yet): no file to share
        return False


def check_output_path(
    output: PathLike | None, option: str, inputs: Mapping[str, PathLike | None] | None = None
) -> None:
    """Refuse to write ``output`` (given as ``option``) over one of ``inputs`` or inside a model folder.

    ``inputs`` maps how each input was given (``"--input"``, ``"IN"``) to its path; None values (an
    option not given) are skipped, and so is a None ``output``. An existing folder is refused too (it
    cannot become the file). Raises ValueError with one line naming the option, the path and why.

    Example:
        >>> import tempfile
        >>> texts = Path(tempfile.mkdtemp()) / "texts.txt"
        >>> _ = texts.write_text("hello\\n")
        >>> check_output_path(texts.with_name("out.jsonl"), "--output", {"--input": texts})
        >>> check_output_path(texts, "--output", {"--input": texts})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: --output .../texts.txt is the --input file .../texts.txt: writing it would replace ...
    """
    if output is None:
        return
    target = Path(output).expanduser()
    for name, given in (inputs or {}).items():
        if given is not None and _same_file(target, Path(given).expanduser()):
            raise ValueError(
                f"{option} {output} is the {name} file {given}: writing it would replace that input "
                "(choose another path)"
            )
    folder = model_folder_around(target)
    if folder is not None:
        raise ValueError(
            f"{option} {output} lies inside the model folder {folder}: writing it would damage the model "
            "(choose a path outside it)"
        )
    if target.is_dir():
        raise ValueError(f"{option} {output} is a folder: expected the path of a file to write (e.g. {output}/NAME)")
