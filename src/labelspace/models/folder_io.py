"""Reading a model or checkpoint folder's files back: safetensors and JSON, checked before they are used.

labelspace reads back only two kinds of file, and both through this module:

- `read_safetensors` (and `check_safetensors` for weights that transformers loads itself): the file
  must be a regular file that starts with a sound safetensors header (an 8-byte little-endian
  header length, then that many bytes of JSON describing tensors that lie within the file) before
  the safetensors library opens it. Nothing is ever unpickled: a pickle, a ``torch.save`` zip, an
  empty, truncated or random file is simply "not a safetensors file".
- `read_json`: UTF-8 JSON, decoded with the byte offset of the first bad byte in the message.

A damaged file is a ``ValueError`` naming the file and what is wrong with it, so the command line
prints one line (``FILE: damaged or not a safetensors file (REASON); it was not loaded``) instead
of a traceback from deep inside a library.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from safetensors.torch import save_file
    >>> folder = Path(tempfile.mkdtemp())
    >>> save_file({"weight": torch.ones(2, 3)}, str(folder / "good.safetensors"))
    >>> read_safetensors(folder / "good.safetensors")["weight"].shape
    torch.Size([2, 3])
    >>> _ = (folder / "bad.safetensors").write_bytes(b"not a tensor file at all")
    >>> read_safetensors(folder / "bad.safetensors", what="the head")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: .../bad.safetensors: damaged or not a safetensors file (...); the head was not loaded
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelspace.files import read_text

if TYPE_CHECKING:
    import torch

__all__ = ["check_encoder_weights", "check_safetensors", "read_json", "read_safetensors", "safetensors_problem"]

#: The largest JSON header the safetensors library accepts (100 MB).
MAX_HEADER_BYTES = 100_000_000
#: A transformers model's weights, in one file or in shards listed by an index.
ENCODER_WEIGHTS_FILE = "model.safetensors"
ENCODER_WEIGHTS_INDEX = "model.safetensors.index.json"

_PICKLE_PROTOCOLS = range(2, 6)  # a pickle of protocol 2+ starts with b"\x80" and the protocol number


def _not_safetensors(path: Path, reason: str, what: str) -> ValueError:
    return ValueError(f"{path}: damaged or not a safetensors file ({reason}); {what} was not loaded")


def _sniff(head: bytes) -> str | None:
    """What a file that is not safetensors looks like, from its first bytes (None when nothing familiar)."""
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return "it looks like a Python pickle, which labelspace never loads"
    if head.startswith(b"PK\x03\x04"):
        return "it looks like a zip archive (torch.save), which labelspace never loads"
    return None


def safetensors_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a sound safetensors file, read off its header without loading it; None when sound.

    Checks that the file is a regular file, that its 8-byte header length fits in the file, that the
    header is a JSON object, and that every tensor's ``data_offsets`` lie within the data that follows
    (a truncated file fails here). The tensors themselves are not read. A file that cannot be read
    raises its OSError.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> empty = Path(tempfile.mkdtemp()) / "empty.safetensors"
        >>> _ = empty.write_bytes(b"")
        >>> safetensors_problem(empty)
        'the file is empty'
    """
    path = Path(path)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        return "it is a folder, not a file" if stat.S_ISDIR(info.st_mode) else "it is not a regular file"
    size = info.st_size
    if size == 0:
        return "the file is empty"
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"the file is {size} bytes long, too short for the 8-byte header length"
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length == 0 or header_length > MAX_HEADER_BYTES or 8 + header_length > size:
            familiar = _sniff(prefix)
            if familiar is not None:
                return familiar
            return f"its header length reads {header_length} bytes, but the file holds {size} bytes in all"
        header_bytes = handle.read(header_length)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "its header is not valid UTF-8 JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    available = size - 8 - header_length
    needed = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        valid = isinstance(offsets, list) and len(offsets) == 2 and all(type(value) is int for value in offsets)
        if not valid or not 0 <= offsets[0] <= offsets[1]:
            return f"tensor {name!r} has no valid data_offsets in the header"
        needed = max(needed, offsets[1])
    if needed > available:
        return f"it is truncated: its tensors need {needed} bytes of data, the file holds {available}"
    return None


def check_safetensors(path: str | os.PathLike[str], *, what: str = "it") -> Path:
    """Raise a ValueError naming ``path`` unless it is a sound safetensors file; return it as a Path.

    The header is checked first (`safetensors_problem`), then opened by the safetensors library
    (which validates dtypes, shapes and that the data is covered exactly) without reading the tensors.
    A missing file is a FileNotFoundError. ``what`` names the thing the file holds, for the message.

    Example:
        >>> import tempfile, pickle
        >>> from pathlib import Path
        >>> weights = Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> _ = weights.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
        >>> check_safetensors(weights, what="the encoder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: ...model.safetensors: damaged or not a safetensors file (it looks like a Python pickle, ...
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; {what} was not loaded")
    try:
        problem = safetensors_problem(path)
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({_reason(error)}); {what} was not loaded") from error
    if problem is not None:
        raise _not_safetensors(path, problem, what)
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise _not_safetensors(path, _reason(error), what) from error
    return path


def read_safetensors(
    path: str | os.PathLike[str], *, what: str = "it", device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The tensors of safetensors file ``path`` (on ``device``), after `check_safetensors`; never unpickles.

    Any problem (a missing, empty, truncated, random or pickled file) is one error naming ``path``:
    FileNotFoundError when it is missing, else ValueError.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = check_safetensors(path, what=what)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as error:
        raise _not_safetensors(path, _reason(error), what) from error


def check_encoder_weights(folder: str | os.PathLike[str]) -> None:
    """Check the safetensors weights of a transformers model folder before transformers loads them.

    ``model.safetensors``, or every shard named by ``model.safetensors.index.json``, must be sound
    (`check_safetensors`). A folder with neither is left to transformers, which says what it lacks.
    """
    folder = Path(folder)
    single = folder / ENCODER_WEIGHTS_FILE
    index = folder / ENCODER_WEIGHTS_INDEX
    if os.path.lexists(single):
        check_safetensors(single, what="the encoder")
        return
    if not os.path.lexists(index):
        return
    content = read_json(index, expected="a JSON object with a 'weight_map'")
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(name, str) for name in weight_map.values()):
        raise ValueError(f"{index}: expected a JSON object whose 'weight_map' maps tensor names to shard files")
    for shard in sorted(set(weight_map.values())):
        check_safetensors(folder / shard, what="the encoder")


def read_json(path: str | os.PathLike[str], *, expected: str = "JSON") -> Any:
    """The JSON content of ``path``; a ValueError naming the file when it is not UTF-8 JSON.

    ``expected`` says what the file should hold, for the message. A missing file is a FileNotFoundError.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> config = Path(tempfile.mkdtemp()) / "labelspace.json"
        >>> _ = config.write_bytes('{"labels": ["caf\\u00e9"]}'.encode("latin-1"))
        >>> read_json(config, expected="a labelspace model config")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: .../labelspace.json:1: byte 0xe9 at byte 17 of the line is not valid UTF-8 (expected a ...
    """
    path = Path(path)
    text = read_text(path, expected=expected)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); expected {expected}"
        ) from None


def _reason(error: BaseException) -> str:
    """A library error's message as a short reason, without errno or the library's own prefixes."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    text = " ".join(str(error).split())
    return text.removeprefix("Error while deserializing header: ") or type(error).__name__
