"""The ONNX backends: the exported graphs of a model folder and `OnnxRunner`, which runs one with onnxruntime.

``labelspace export RUN --format onnx [--quantize int8]`` (`labelspace.inference.onnx_export.export_onnx`)
writes, into the model folder's ``onnx/`` subfolder:

- ``labelspace.onnx`` (fp32) and, with ``--quantize int8``, ``labelspace_int8.onnx`` (dynamic int8 weights):
  one graph each, inputs ``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes),
  outputs ``embedding`` (pooled, normalised when the model normalises) and, when the model has a head,
  ``probabilities`` (the head's sigmoid / softmax);
- ``labelspace_onnx.json`` (`RECORD_FILE`): the format, the files with their SHA-256, the opset, the inputs
  and outputs, the labels, and for int8 the thresholds re-tuned on dev and the dev macro-F1 of both graphs.

The names avoid ``model.onnx``: sentence-transformers' own ONNX backend expects another graph under that
name, and the model folder stays loadable by ``SentenceTransformer(folder)`` (torch) and by labelspace.

`load_onnx_backend` is what ``Predictor.load(path, backend="onnx"|"onnx-int8")`` calls. A graph is checked
before onnxruntime sees it (present, listed in the record, its SHA-256 unchanged), and onnxruntime's own
errors are caught, so a missing, truncated or random file is one error naming it, never a crash in native code.
onnx and onnxruntime are an optional extra (``pip install labelspace[onnx]``); they are imported only here,
when a graph is written or run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from labelspace.models.folder_io import read_json
from labelspace.models.model import LabelspaceModel

__all__ = [
    "GRAPH_FILES",
    "GRAPH_INPUTS",
    "ONNX_FOLDER",
    "RECORD_FILE",
    "RECORD_FORMAT",
    "RECORD_VERSION",
    "OnnxRunner",
    "export_command",
    "file_sha256",
    "graph_path",
    "load_onnx_backend",
    "read_record",
    "require_onnxruntime",
]

#: The subfolder of a model folder that holds the exported graphs.
ONNX_FOLDER = "onnx"
#: Graph file of each precision, inside `ONNX_FOLDER`.
GRAPH_FILES: dict[str, str] = {"fp32": "labelspace.onnx", "int8": "labelspace_int8.onnx"}
#: The record of an export, inside `ONNX_FOLDER`.
RECORD_FILE = "labelspace_onnx.json"
RECORD_FORMAT = "labelspace.onnx_export"
RECORD_VERSION = 1
#: The inputs of every graph (int64, ``batch x sequence``).
GRAPH_INPUTS: tuple[str, ...] = ("input_ids", "attention_mask")
#: The precision of each ONNX backend name.
BACKEND_PRECISIONS: dict[str, str] = {"onnx": "fp32", "onnx-int8": "int8"}
#: A progress bar shows, by default, from this many batches on (as in `Encoder.encode`).
PROGRESS_MIN_BATCHES = 4


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an ImportError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - the onnx extra is installed in development
        raise ImportError("the ONNX backends need onnx and onnxruntime: pip install 'labelspace[onnx]'") from error
    return onnxruntime


def export_command(folder: str | os.PathLike[str], precision: str = "fp32") -> str:
    """The command that writes the ``precision`` graph of model or run folder ``folder``.

    Example:
        >>> export_command("runs/x", "int8")
        'labelspace export runs/x --format onnx --quantize int8'
    """
    command = f"labelspace export {os.fspath(folder)} --format onnx"
    return command + (" --quantize int8" if precision == "int8" else "")


def graph_path(model_folder: str | os.PathLike[str], precision: str = "fp32") -> Path:
    """Where the ``precision`` (``fp32`` / ``int8``) graph of a model folder lives.

    Example:
        >>> graph_path("runs/x/model", "int8").as_posix()
        'runs/x/model/onnx/labelspace_int8.onnx'
    """
    if precision not in GRAPH_FILES:
        raise ValueError(f"precision must be one of {', '.join(GRAPH_FILES)}, got {precision!r}")
    return Path(model_folder) / ONNX_FOLDER / GRAPH_FILES[precision]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(model_folder: str | os.PathLike[str], *, command: str | None = None) -> dict[str, Any]:
    """The checked ``onnx/labelspace_onnx.json`` of a model folder.

    A missing record is a FileNotFoundError naming it and ``command`` (what writes it); a damaged one a
    ValueError naming it.
    """
    path = Path(model_folder) / ONNX_FOLDER / RECORD_FILE
    command = command or export_command(model_folder)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; this model has no ONNX export (run `{command}`)")
    record = read_json(path, expected="a labelspace ONNX export record")
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path} is not a labelspace ONNX export record (expected format {RECORD_FORMAT!r})")
    if record.get("version") != RECORD_VERSION:
        raise ValueError(f"{path}: unsupported version {record.get('version')!r} (reads {RECORD_VERSION})")
    files = record.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)
        for entry in files.values()
    ):
        raise ValueError(f"{path}: 'files' must map each precision to {{'file': NAME, 'sha256': HEX}}")
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or "embedding" not in outputs:
        raise ValueError(f"{path}: 'outputs' must be a list of output names that holds 'embedding'")
    return record


def _open_session(path: Path, threads: int, command: str) -> Any:
    """An onnxruntime CPU session of ``path``; any error of onnxruntime's is a ValueError naming the file."""
    onnxruntime = require_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: they are reported below, as one line
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception types (Fail, InvalidProtobuf, InvalidGraph, ...)
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise ValueError(
            f"{path}: damaged or not an ONNX graph onnxruntime can run ({reason}); re-run `{command}`"
        ) from error


class OnnxRunner:
    """The ``onnx`` / ``onnx-int8`` backend: an exported graph run by onnxruntime on the CPU.

    Texts are tokenised by the model's own encoder (`Encoder.tokenize`: its tokenizer, truncation at its
    ``max_seq_length``), sorted longest first and run ``batch_size`` at a time, each batch padded to its
    longest text, as `Encoder.encode` does; the outputs come back in input order.

    Args:
        path: the graph (``labelspace.onnx`` or ``labelspace_int8.onnx``).
        model: the `LabelspaceModel` of the same folder (its tokenizer and dimensions).
        threads: onnxruntime's intra-op threads (`labelspace.inference.set_threads` gives the number, so that
            torch and onnxruntime run on the same threads).
        name: the backend name (``"onnx"`` or ``"onnx-int8"``).
        outputs: the graph's output names (``("embedding",)`` or ``("embedding", "probabilities")``).
        command: what re-writes the graph, named in errors.
        check_sha256: the SHA-256 the file must have (from the export record), checked before onnxruntime reads
            it; None skips the check (a graph being written by the export itself).

    Example:
        >>> import tempfile
        >>> from labelspace.inference.onnx_export import export_onnx
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["a", "b"])
        >>> folder = model.save(tempfile.mkdtemp() + "/model")
        >>> _ = export_onnx(folder)
        >>> runner, _ = load_onnx_backend(folder, LabelspaceModel.from_pretrained(folder), "onnx", threads=1)
        >>> embeddings, probabilities = runner.run(["hi", "a longer text"], batch_size=8, show_progress_bar=False,
        ...                                        need_head=True)
        >>> embeddings.shape, probabilities.shape
        ((2, 32), (2, 2))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: LabelspaceModel,
        *,
        threads: int,
        name: str = "onnx",
        outputs: tuple[str, ...] = ("embedding", "probabilities"),
        command: str | None = None,
        check_sha256: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.model = model
        self.name = name
        self.threads = threads
        command = command or export_command(self.path.parent.parent)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX graph not found (run `{command}`)")
        if check_sha256 is not None and file_sha256(self.path) != check_sha256:
            raise ValueError(
                f"{self.path}: damaged or changed since it was exported (its SHA-256 is not the one "
                f"{RECORD_FILE} records); re-run `{command}`"
            )
        self.session = _open_session(self.path, threads, command)
        found_inputs = [entry.name for entry in self.session.get_inputs()]
        found_outputs = [entry.name for entry in self.session.get_outputs()]
        if sorted(found_inputs) != sorted(GRAPH_INPUTS) or sorted(found_outputs) != sorted(outputs):
            raise ValueError(
                f"{self.path}: the graph takes {found_inputs} and returns {found_outputs}, expected "
                f"{list(GRAPH_INPUTS)} -> {list(outputs)}; re-run `{command}`"
            )
        self.outputs = tuple(outputs)
        self.command = command

    @property
    def has_head(self) -> bool:
        return "probabilities" in self.outputs

    def run(
        self, texts: list[str], *, batch_size: int, show_progress_bar: bool | None, need_head: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N x d float32 embeddings, N x L float32 head probabilities or None) of ``texts``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        encoder = self.model.encoder
        if encoder.long_text != "truncate":
            raise ValueError(
                f"long_text={encoder.long_text!r} runs on the torch backend only; the {self.name} backend truncates"
            )
        if need_head and not self.has_head:
            raise ValueError(
                f"{self.path} has no 'probabilities' output (exported without the head); re-run `{self.command}`"
            )
        wanted = ["embedding", "probabilities"] if need_head else ["embedding"]
        items = [str(text) for text in texts]
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))  # longest first, as Encoder.encode
        n_batches = (len(items) + batch_size - 1) // batch_size
        if show_progress_bar is None:
            show_progress_bar = n_batches > PROGRESS_MIN_BATCHES
        parts: list[list[np.ndarray]] = [[] for _ in wanted]
        for start in tqdm(
            range(0, len(items), batch_size),
            total=n_batches,
            desc="Encoding",
            unit="batch",
            disable=not show_progress_bar,
        ):
            features = encoder.tokenize([items[i] for i in order[start : start + batch_size]])
            feeds = {key: features[key].numpy().astype(np.int64, copy=False) for key in GRAPH_INPUTS}
            for part, value in zip(parts, self.session.run(wanted, feeds), strict=True):
                part.append(np.asarray(value, dtype=np.float32))
        widths = [encoder.dimension, self.model.num_labels]
        results: list[np.ndarray] = []
        for part, width in zip(parts, widths, strict=False):
            sorted_values = np.concatenate(part) if part else np.zeros((0, width), dtype=np.float32)
            values = np.empty_like(sorted_values)
            values[np.asarray(order, dtype=np.int64)] = sorted_values
            results.append(values)
        return results[0], (results[1] if need_head else None)


def load_onnx_backend(
    folder: str | os.PathLike[str],
    model: LabelspaceModel,
    backend: str,
    *,
    threads: int,
    long_text: str | None = None,
    command_folder: str | os.PathLike[str] | None = None,
) -> tuple[OnnxRunner, np.ndarray | None]:
    """(runner, thresholds) of the ``onnx`` or ``onnx-int8`` backend of model folder ``folder``.

    ``thresholds`` is None for ``onnx`` (the model's apply). For ``onnx-int8`` it is the thresholds re-tuned
    on dev for the int8 graph when the export stored them and they still fit the model (same scoring mode and
    same fp32 thresholds as at export); otherwise None, with a warning saying why. ``command_folder`` is the
    folder the user named (a run folder), used in the command that errors suggest.
    """
    if backend not in BACKEND_PRECISIONS:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_PRECISIONS)}, got {backend!r}")
    if long_text not in (None, "truncate"):
        raise ValueError(f"long_text={long_text!r} runs on the torch backend only; the {backend} backend truncates")
    precision = BACKEND_PRECISIONS[backend]
    folder = Path(folder)
    command = export_command(command_folder if command_folder is not None else folder, precision)
    path = graph_path(folder, precision)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX graph not found; the {backend} backend needs it (run `{command}`)")
    record = read_record(folder, command=command)
    entry = record["files"].get(precision)
    if entry is None or entry["file"] != path.name:
        raise ValueError(f"{folder / ONNX_FOLDER / RECORD_FILE} does not list {path.name}; re-run `{command}`")
    names = model.label_set.names if model.label_set is not None else None
    if record.get("labels") != names:
        raise ValueError(
            f"{path} was exported from a model with labels {record.get('labels')}, not this model's {names}; "
            f"re-run `{command}`"
        )
    runner = OnnxRunner(
        path,
        model,
        threads=threads,
        name=backend,
        outputs=tuple(record["outputs"]),
        command=command,
        check_sha256=entry["sha256"],
    )
    if precision == "fp32":
        return runner, None
    return runner, _int8_thresholds(record, model, command)


def _int8_thresholds(record: dict[str, Any], model: LabelspaceModel, command: str) -> np.ndarray | None:
    """The stored int8 thresholds when they still apply to ``model``, else None with a warning saying why."""
    tuned = (record.get("int8") or {}).get("thresholds")
    why = None
    if tuned is None:
        why = "the export stored no int8 thresholds"
    elif record.get("scoring") != model.scoring.to_dict():
        why = f"they were tuned for scoring {record.get('scoring')}, the model now scores {model.scoring.to_dict()}"
    elif not np.allclose(np.asarray(record.get("fp32_thresholds"), dtype=np.float64), model.thresholds):
        why = "the model's thresholds changed since the export"
    if why is None:
        values = np.asarray(tuned, dtype=np.float64)
        if values.shape == (model.num_labels,) and np.isfinite(values).all():
            return values
        why = "the stored int8 thresholds are not one finite number per label"
    warnings.warn(
        f"onnx-int8 uses the model's own (fp32) thresholds: {why}; to re-tune them for the int8 graph run "
        f"`{command} --dev DEV_FILE`",
        UserWarning,
        stacklevel=3,
    )
    return None
