"""Bulk scoring on Ray Data: millions of texts, on every core of a machine or of a cluster.

Two entry points, both predicting through `labelspace.inference.Predictor` (so the scoring mode, the
thresholds and the decision rule are those of ``labelspace predict``):

- `LabelspaceBatchPredictor`: a callable class for ``ray.data.Dataset.map_batches``. Each Ray worker
  (an actor) loads the model once, then labels batches of texts (a dict of numpy arrays, a pandas
  DataFrame or a pyarrow Table) and returns the batch with the requested columns added.
- `predict_files`: reads a folder or a glob of Parquet / JSONL shards with Ray Data, scores them with
  the class above and writes Parquet shards (what ``labelspace predict --engine ray`` runs).

Output columns (all input columns are kept; an input column with one of these names is replaced):

- ``labels``: the chosen label names of the text, most probable first (list of strings);
- ``scores``: the score of every label of the model, in the model's label order (list of float32; the
  order is `LabelspaceBatchPredictor.label_names` and the ``labels`` of ``_labelspace.json``);
- ``embeddings``: the text's embedding (list of float32, normalised when the model normalises).

Ray is an optional extra (``pip install 'labelspace[ray]'``). It is imported by the functions that
need it, so that importing this module, and every ``labelspace`` command, works without Ray.

Example with Ray (see docs/distributed.md)::

    import ray
    from labelspace.integrations.ray import LabelspaceBatchPredictor

    ray.init()
    texts = ray.data.read_parquet("texts/")  # a "text" column
    scored = texts.map_batches(
        LabelspaceBatchPredictor,
        fn_constructor_kwargs={"model_path": "runs/x", "outputs": ("labels", "scores"), "threads": 1},
        batch_size=256,
        concurrency=4,  # 4 workers, each loads the model once
        num_cpus=1,
    )
    scored.write_parquet("scored/")
"""

from __future__ import annotations

import glob
import inspect
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labelspace.errors import LabelspaceError
from labelspace.files import atomic_write_text
from labelspace.inference.predictor import BACKENDS, Predictor
from labelspace.models.model import resolve_model_folder

__all__ = [
    "DEFAULT_OUTPUTS",
    "OUTPUTS",
    "SUMMARY_FILE",
    "LabelspaceBatchPredictor",
    "RayNotInstalledError",
    "find_input_files",
    "import_ray",
    "predict_files",
]

#: The columns a `LabelspaceBatchPredictor` can add.
OUTPUTS = ("labels", "scores", "embeddings")
DEFAULT_OUTPUTS = ("labels", "scores")
#: The file `predict_files` writes beside the Parquet shards: the model, the label order of ``scores``, counts.
#: Its leading ``_`` makes pyarrow, pandas and Ray skip it when they read the folder back.
SUMMARY_FILE = "_labelspace.json"
INSTALL_HINT = "pip install 'labelspace[ray]'"

#: Input file name endings, by the Ray Data reader that reads them.
INPUT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet",),
    "json": (".jsonl", ".json", ".jsonl.gz", ".json.gz"),
}


class RayNotInstalledError(LabelspaceError, ImportError):
    """Ray Data is needed and not installed."""


def import_ray() -> Any:
    """The ``ray`` module with ``ray.data`` loaded, or a `RayNotInstalledError` naming the install command."""
    # Imported here rather than at the top of the module: Ray is an optional extra, and the CLI imports this
    # module for every `labelspace` command, which must neither fail nor slow down without Ray.
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RayNotInstalledError(f"Ray Data is not installed ({error}); install it with: {INSTALL_HINT}") from None
    return ray


def check_outputs(outputs: str | Sequence[str]) -> tuple[str, ...]:
    """``outputs`` as a tuple of column names from `OUTPUTS` (one name or several, no repeats).

    Example:
        >>> check_outputs("labels,embeddings")
        ('labels', 'embeddings')
        >>> check_outputs(["labels", "probs"])
        Traceback (most recent call last):
        ...
        ValueError: outputs: unknown column 'probs'; expected some of labels, scores, embeddings
    """
    names = [part.strip() for part in outputs.split(",")] if isinstance(outputs, str) else list(outputs)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"outputs: expected some of {', '.join(OUTPUTS)}; got {outputs!r}")
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown:
        raise ValueError(f"outputs: unknown column {unknown[0]!r}; expected some of {', '.join(OUTPUTS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"outputs: a column is named twice in {names}")
    return tuple(names)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- batches


def _batch_texts(batch: Any, column: str) -> list[str]:
    """The texts of ``column`` in a numpy-dict, pandas or pyarrow batch; a missing column, a null or blank
    text is a ValueError naming the column."""
    if isinstance(batch, pa.Table):
        names, get = batch.column_names, lambda: batch.column(column).to_pylist()
    elif isinstance(batch, pd.DataFrame):
        names, get = [str(name) for name in batch.columns], lambda: batch[column].tolist()
    elif isinstance(batch, Mapping):
        names, get = [str(name) for name in batch], lambda: list(batch[column])
    else:
        raise TypeError(
            f"a batch must be a dict of numpy arrays, a pandas DataFrame or a pyarrow Table; got {type(batch).__name__}"
        )
    if column not in names:
        raise ValueError(f"the batch has no text column {column!r} (its columns: {', '.join(names)}); set text_column")
    texts = get()
    bad = next((row for row, text in enumerate(texts) if not isinstance(text, str) or not text.strip()), None)
    if bad is not None:
        value = texts[bad]
        shown = "null" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)
        raise ValueError(
            f"row {bad} of a batch: the text column {column!r} holds {shown}, expected a non-blank string "
            "(drop such rows first, e.g. with Dataset.filter)"
        )
    return [str(text) for text in texts]  # numpy's str_ to str


def _arrow_lists(values: Any) -> pa.Array:
    """A pyarrow list column: list<string> from lists of label names, list<float> from an N x k array."""
    if isinstance(values, np.ndarray):
        rows, width = values.shape
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(width))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))
    return pa.array(values, type=pa.list_(pa.string()))


def _with_columns(batch: Any, columns: dict[str, Any]) -> Any:
    """``batch`` with ``columns`` added last (input columns of the same names dropped), in the batch's own format.

    pyarrow: list columns; pandas: Python lists per row; numpy dict: an object array of label lists and
    N x k float32 arrays (Ray's tensor columns).
    """
    if isinstance(batch, pa.Table):
        table = batch.drop_columns([name for name in columns if name in batch.column_names])
        for name, values in columns.items():
            table = table.append_column(name, _arrow_lists(values))
        return table
    if isinstance(batch, pd.DataFrame):
        frame = batch.drop(columns=[name for name in columns if name in batch.columns])
        for name, values in columns.items():
            rows = values.tolist() if isinstance(values, np.ndarray) else values
            frame[name] = pd.Series(rows, index=frame.index, dtype=object)
        return frame
    result = {name: values for name, values in batch.items() if name not in columns}
    for name, values in columns.items():
        result[name] = values if isinstance(values, np.ndarray) else pd.Series(values, dtype=object).to_numpy()
    return result


class LabelspaceBatchPredictor:
    """Labels, scores and embeddings of a batch of texts, for ``ray.data.Dataset.map_batches``.

    Ray creates one instance per worker (pass the class, not an instance, with ``concurrency=N``), so the
    model is loaded once per worker. Called with a batch (a dict of numpy arrays, a pandas DataFrame or a
    pyarrow Table) that has a ``text_column``, it returns the batch in the same format with the
    ``outputs`` columns added (see the module docstring for what they hold).

    Args:
        model_path: a model folder or a run folder; on a cluster, a path every machine can read.
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (as `Predictor.load`).
        outputs: some of ``labels``, ``scores``, ``embeddings`` (a sequence or a comma-separated string).
        threads: CPU threads of each worker (None: the backend's default; Ray sets ``OMP_NUM_THREADS`` to
            the worker's ``num_cpus``).
        text_column: the column holding the texts.
        batch_size: texts per forward pass of the model (Ray's ``batch_size`` is the rows per call).
        long_text: ``"chunk"`` embeds long texts as the mean of overlapping windows (torch backend).

    Example:
        >>> import tempfile
        >>> from labelspace.models import LabelspaceModel
        >>> from labelspace.models.testing import tiny_model_folder
        >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["joy", "anger"])
        >>> folder = model.save(tempfile.mkdtemp() + "/model")
        >>> scorer = LabelspaceBatchPredictor(folder, outputs=("labels", "scores", "embeddings"))
        >>> batch = scorer({"id": np.array([7, 8]), "text": np.array(["so happy", "so angry"])})
        >>> sorted(batch), batch["scores"].shape, batch["embeddings"].shape, scorer.label_names
        (['embeddings', 'id', 'labels', 'scores', 'text'], (2, 2), (2, 32), ['joy', 'anger'])
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        backend: str = "torch",
        outputs: str | Sequence[str] = DEFAULT_OUTPUTS,
        threads: int | None = None,
        text_column: str = "text",
        batch_size: int = 32,
        long_text: str | None = None,
    ) -> None:
        self.outputs = check_outputs(outputs)
        if not isinstance(text_column, str) or not text_column:
            raise ValueError(f"text_column must be a column name, got {text_column!r}")
        self.text_column = text_column
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.predictor = Predictor.load(model_path, backend=backend, threads=threads, long_text=long_text)
        model = self.predictor.model
        if self.needs_scores and (model.label_set is None or (model.head is None and model.index is None)):
            raise ValueError(
                f"{model_path} has neither a classification head nor a kNN index: it cannot predict labels "
                "or scores; ask for outputs=('embeddings',) only"
            )

    @property
    def needs_scores(self) -> bool:
        return "labels" in self.outputs or "scores" in self.outputs

    @property
    def label_names(self) -> list[str]:
        """The model's labels: the order of the ``scores`` column."""
        return self.predictor.label_names

    def predict_columns(self, texts: list[str]) -> dict[str, Any]:
        """The ``outputs`` columns of ``texts``: a list of label lists, N x L scores, N x d embeddings."""
        model = self.predictor.model
        if not texts:
            scores = np.zeros((0, model.num_labels), dtype=np.float32)
            embeddings = np.zeros((0, model.encoder.dimension), dtype=np.float32)
        elif self.needs_scores:
            scores, embeddings = self.predictor.scores_and_embeddings(texts, batch_size=self.batch_size)
        else:
            scores, embeddings = None, self.predictor.encode(texts, batch_size=self.batch_size)
        columns: dict[str, Any] = {}
        for name in self.outputs:
            if name == "labels":
                columns[name] = self.predictor.label_lists(scores) if len(texts) else []
            elif name == "scores":
                columns[name] = np.asarray(scores, dtype=np.float32)
            else:
                columns[name] = np.asarray(embeddings, dtype=np.float32)
        return columns

    def __call__(self, batch: Any) -> Any:
        return _with_columns(batch, self.predict_columns(_batch_texts(batch, self.text_column)))


# ----------------------------------------------------------------------------- files


def _reader_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((reader for reader, suffixes in INPUT_SUFFIXES.items() if name.endswith(suffixes)), None)


def find_input_files(inputs: str | os.PathLike[str]) -> tuple[list[Path], str]:
    """The Parquet or JSON Lines files named by ``inputs`` (a file, a folder searched recursively, or a glob
    such as ``"shards/*.parquet"``), as absolute paths, and their reader (``"parquet"`` or ``"json"``).

    Hidden files and names starting with ``_`` are skipped (as Ray and pyarrow do). No matching file, or
    a mix of Parquet and JSON files, is an error naming ``inputs``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.jsonl").write_text('{"text": "hi"}\\n'), (folder / "notes.txt").write_text("x")
        >>> files, reader = find_input_files(folder)
        >>> [path.name for path in files], reader
        (['a.jsonl'], 'json')
    """
    text = os.fspath(inputs)
    path = Path(text).expanduser()
    if path.is_dir():
        candidates = sorted(item for item in path.rglob("*") if item.is_file())
    elif path.is_file():
        candidates = [path]
    else:
        candidates = sorted(Path(item) for item in glob.glob(str(path), recursive=True) if Path(item).is_file())
    files = [
        item.resolve() for item in candidates if _reader_of(item) is not None and not item.name.startswith((".", "_"))
    ]
    if not files:
        endings = ", ".join(suffix for suffixes in INPUT_SUFFIXES.values() for suffix in suffixes)
        raise FileNotFoundError(f"{text}: no input files match (expected a folder or a glob of {endings} files)")
    readers = sorted({_reader_of(item) for item in files})
    if len(readers) > 1:
        raise ValueError(f"{text}: mixes Parquet and JSON files; give one format per run (e.g. a glob *.parquet)")
    return files, readers[0]


def _output_folder(output: str | os.PathLike[str]) -> Path:
    """``output`` as an absolute folder that is missing or empty (shards are never written over old ones)."""
    folder = Path(os.fspath(output)).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{output}: exists and is not a folder; the output is a folder of Parquet shards")
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{output}: the output folder is not empty; give a new or empty folder")
    return folder


def _connect(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray unless it is running in this process; True when this call started it."""
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"address {address!r}: no Ray cluster to connect to ({reason}); start one with `ray start --head`, "
            "or give no address to run on this machine"
        ) from None
    return True


def _error_inside(error: BaseException, ray: Any) -> BaseException | None:
    """The error a worker raised, inside Ray's wrappers (None when ``error`` is not Ray's wrapper)."""
    wrappers = (ray.exceptions.RayError,)
    if not isinstance(error, wrappers):
        return None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not isinstance(current, wrappers):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return None


def predict_files(
    model_path: str | os.PathLike[str],
    inputs: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    backend: str = "torch",
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    num_cpus: int | None = None,
    batch_size: int = 256,
    text_column: str = "text",
    outputs: str | Sequence[str] = DEFAULT_OUTPUTS,
    long_text: str | None = None,
) -> dict[str, Any]:
    """Score Parquet / JSONL shards on Ray Data and write Parquet shards into the folder ``output``.

    Args:
        model_path: a model folder or a run folder, at a path every Ray node can read.
        inputs: a file, a folder (searched recursively) or a glob of ``.parquet`` or ``.jsonl`` / ``.json``
            files (`find_input_files`), at paths every node can read (a shared filesystem on a cluster).
        output: a missing or empty folder (on a cluster, shared); gets the shards and ``_labelspace.json``.
        backend: ``torch``, ``onnx`` or ``onnx-int8``.
        address: the Ray cluster to join (``"auto"``: the one ``ray start`` runs on this machine, or a
            ``ray://HOST:10001`` client address). None starts Ray on this machine with ``num_cpus`` CPUs
            (default all). When Ray already runs in this process it is used as it is.
        workers: model copies scoring in parallel (default: the cluster's CPUs divided by ``threads``).
        threads: CPU threads (and Ray CPUs) of each worker.
        batch_size: rows per call of a worker.
        text_column: the column of the texts; every other column is copied to the output.
        outputs: some of ``labels``, ``scores``, ``embeddings``.

    Returns a summary: ``output``, ``rows``, ``files`` (the shard names), ``labels`` (the order of
    ``scores``), ``inputs``, ``workers``, ``backend``, ``outputs``; it is also saved as ``_labelspace.json``.
    """
    outputs = check_outputs(outputs)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    threads = _positive_int(threads, "threads")
    batch_size = _positive_int(batch_size, "batch_size")
    if workers is not None:
        workers = _positive_int(workers, "workers")
    if num_cpus is not None:
        num_cpus = _positive_int(num_cpus, "num_cpus")
    files, reader = find_input_files(inputs)
    folder = _output_folder(output)
    model_folder = resolve_model_folder(model_path).resolve()
    # Load once here: a missing model, backend file or head fails now with one line, not inside every worker.
    options = {
        "model_path": str(model_folder),
        "backend": backend,
        "outputs": outputs,
        "text_column": text_column,
        "long_text": long_text,
    }
    label_names = LabelspaceBatchPredictor(**options).label_names
    ray = import_ray()
    started = _connect(ray, address, num_cpus)
    try:
        # Reading and writing reserve no CPU: the workers may hold every CPU (workers x threads = the cluster's),
        # and a read task waiting for a free CPU would then wait for ever.
        io_args = {"num_cpus": 0}
        read = ray.data.read_parquet if reader == "parquet" else ray.data.read_json
        named = "num_cpus" in inspect.signature(read).parameters  # Ray >= 2.5x; older ones take ray_remote_args
        dataset = read([str(path) for path in files], **(io_args if named else {"ray_remote_args": io_args}))
        schema = dataset.schema()
        columns = [] if schema is None else list(schema.names)
        if text_column not in columns:
            raise ValueError(
                f"{os.fspath(inputs)}: no text column {text_column!r} in the input files "
                f"(columns: {', '.join(columns) or 'none'}); name it with --text-column"
            )
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        scored = dataset.map_batches(
            LabelspaceBatchPredictor,
            fn_constructor_kwargs={**options, "threads": threads},
            batch_size=batch_size,
            batch_format="pyarrow",
            concurrency=workers,
            num_cpus=threads,
        )
        scored.write_parquet(str(folder), ray_remote_args=io_args)
    except Exception as error:
        inner = _error_inside(error, ray)
        if isinstance(inner, (LabelspaceError, ValueError, TypeError, OSError)):
            raise ValueError(f"a Ray worker failed: {inner}") from error
        raise
    finally:
        if started:
            ray.shutdown()
    shards = sorted(path for path in folder.glob("*.parquet") if path.is_file())
    summary: dict[str, Any] = {
        "output": str(folder),
        "rows": int(sum(pq.ParquetFile(path).metadata.num_rows for path in shards)),
        "files": [path.name for path in shards],
        "labels": label_names,
        "inputs": [str(path) for path in files],
        "model": str(model_folder),
        "backend": backend,
        "outputs": list(outputs),
        "text_column": text_column,
        "workers": workers,
    }
    atomic_write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary
