"""Files, in one place: atomic writes, the modes new files get, and reading text that must be UTF-8.

Every file labelspace writes goes through `atomic_write` (a hidden temporary file beside the target,
then one rename), so a kill never leaves a half-written file under the final name, and the file
gets the mode the umask gives a new file (``tempfile`` and safetensors would make it 0600, which
another user of a shared model cannot read). Hidden copies are named ``.NAME.tmp-HOST-PID-...``
(`hidden_copy_prefix`) so that `labelspace.models.encoder.recover_folder` can tell a live writer's
copy from a dead one's. Text files a user gives are read with `read_text`, whose errors name the
file, the line and the byte that is not UTF-8.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_text(folder / "notes.txt", "café\\n")
    >>> read_text(folder / "notes.txt")
    'café\\n'
    >>> sorted(path.name for path in folder.iterdir())  # no temporary file is left
    ['notes.txt']
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "HOST_TAG",
    "atomic_write",
    "atomic_write_text",
    "current_umask",
    "hidden_copy_prefix",
    "read_text",
    "set_default_modes",
]

#: This machine, in the names of hidden copies (a short hash of the host name).
HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def hidden_copy_prefix(target: Path, kind: str = "tmp") -> str:
    """The name prefix of a hidden ``kind`` copy of ``target`` (``.NAME.tmp-HOST-PID-``) for `tempfile`.

    It names this process, so `recover_folder` leaves the copy alone while this process lives.

    Example:
        >>> hidden_copy_prefix(Path("runs/x/model")).startswith(".model.tmp-")
        True
    """
    return f".{target.name}.{kind}-{HOST_TAG}-{os.getpid()}-"


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_default_modes(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes the umask gives new files and folders.

    safetensors writes its files 0600 and ``tempfile`` makes 0700 folders and 0600 files; after this a
    model folder's weights are as readable as its JSON files (0644 and 0755 under umask 022).
    """
    umask = current_umask()
    file_mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    root = Path(path)
    if not root.is_dir() or root.is_symlink():
        os.chmod(root, file_mode)
        return
    for folder, _, files in os.walk(root):  # symlinked folders are listed but not entered
        setgid = os.stat(folder).st_mode & stat.S_ISGID  # kept: a shared group folder stays one
        os.chmod(folder, folder_mode | setgid)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), file_mode)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Create ``path`` by ``write(temporary_path)`` on a hidden file beside it, then one rename.

    The file gets the umask's mode; on any failure (or a kill) the final name is untouched and the
    temporary file is removed (a kill leaves it for `recover_folder`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=hidden_copy_prefix(path), dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        set_default_modes(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically (see `atomic_write`)."""
    atomic_write(path, lambda temporary: temporary.write_bytes(text.encode("utf-8")))


def read_text(path: str | os.PathLike[str], *, expected: str = "UTF-8 text") -> str:
    """The text of ``path`` (a UTF-8 BOM dropped); errors name the file and, for bad bytes, the line.

    A missing file is a FileNotFoundError and a folder a ValueError, both naming ``path`` and what
    was ``expected``; a byte that is not UTF-8 is a ValueError with its line and position.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (expected {expected})")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder (expected a file holding {expected})")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        byte = raw[error.start : error.start + 1].hex()
        raise ValueError(
            f"{path}:{line}: byte 0x{byte} at byte {column} of the line is not valid UTF-8 (expected {expected}, "
            "in UTF-8)"
        ) from None
