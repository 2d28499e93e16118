"""``labelspace embed``: the embeddings of texts, written as a NumPy ``.npy`` matrix or a Parquet table.

``RUN_OR_MODEL`` is a run folder, a model folder, or a plain encoder (``minilm``, an encoder folder),
as ``labelspace evaluate`` reads it; the texts come from ``--input`` like those of ``labelspace predict``
(`labelspace.commands.common.read_texts`), and go through a `labelspace.inference.Predictor` on
``--backend`` with ``--threads``. The output format follows the suffix of ``--output``:

- ``.npy``: the N x d float32 matrix (``numpy.load`` reads it back), row i for text i;
- ``.parquet``: a table with a ``text`` column and an ``embedding`` column (a list of float32 per text).

The file is written atomically: an interrupted run leaves no partial output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from labelspace.commands.common import (
    BackendOption,
    BatchSizeOption,
    CommandError,
    FormatOption,
    LongTextOption,
    QuietOption,
    TextColumnOption,
    ThreadsOption,
    console,
    load_predictor,
    read_texts,
)
from labelspace.commands.paths import check_output_path
from labelspace.files import atomic_write

__all__ = ["EMBED_EPILOG", "EMBEDDING_SUFFIXES", "register", "write_embeddings"]

EMBED_EPILOG = (
    "Example: labelspace embed runs/x --input texts.txt --output embeddings.npy\n\n"
    "Example: labelspace embed runs/x --input tickets.csv --text-column body --output embeddings.parquet\n\n"
    "Example: labelspace embed minilm --input texts.txt --output embeddings.npy --threads 4\n\n"
    "Example: labelspace embed runs/x --input texts.txt --output embeddings.npy --backend onnx-int8"
)

#: The output formats ``--output`` may name, by suffix.
EMBEDDING_SUFFIXES = (".npy", ".parquet")

#: The end of the message refusing an empty or blank input text.
EMPTY_INPUT_TEXT = "empty text (pass --allow-empty to embed it as it is)"


def _check_suffix(output: Path) -> str:
    suffix = output.suffix.lower()
    if suffix not in EMBEDDING_SUFFIXES:
        raise CommandError(
            f"--output {output}: expected a file ending in {' or '.join(EMBEDDING_SUFFIXES)} "
            f"(got {suffix or 'no suffix'})"
        )
    return suffix


def write_embeddings(path: str | Path, texts: list[str], embeddings: np.ndarray) -> None:
    """Write ``embeddings`` (N x d) of ``texts`` to ``path`` (``.npy`` or ``.parquet``, by suffix), atomically.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "e.npy"
        >>> write_embeddings(path, ["a", "b"], np.eye(2))
        >>> np.load(path).dtype, np.load(path).shape
        (dtype('float32'), (2, 2))
    """
    path = Path(path)
    suffix = _check_suffix(path)
    matrix = np.ascontiguousarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(texts):
        raise ValueError(f"embeddings must be a {len(texts)} x d matrix (one row per text), got shape {matrix.shape}")
    if suffix == ".npy":

        def write_npy(temporary: Path) -> None:
            with open(temporary, "wb") as handle:  # a file object: np.save adds no ".npy" to the name
                np.save(handle, matrix)

        atomic_write(path, write_npy)
        return
    offsets = pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=pa.float32()))
    table = pa.table({"text": pa.array(texts, type=pa.string()), "embedding": column})
    atomic_write(path, lambda temporary: pq.write_table(table, str(temporary)))


def register(app: typer.Typer) -> None:
    """Add ``embed`` to the app."""

    @app.command("embed", epilog=EMBED_EPILOG)
    def embed_command(
        run: Annotated[
            str,
            typer.Argument(
                metavar="RUN_OR_MODEL", help="Run folder (from 'labelspace train'), model folder, or encoder (minilm)."
            ),
        ],
        input_path: Annotated[
            Path,
            typer.Option("--input", help="Texts: .txt (one a line), .jsonl ('text' field), .csv/.tsv/.parquet."),
        ],
        output: Annotated[
            Path,
            typer.Option(
                "--output", help="emb.npy (an N x d float32 matrix) or emb.parquet (columns text and embedding)."
            ),
        ],
        batch_size: BatchSizeOption = 32,
        file_format: FormatOption = None,
        text_column: TextColumnOption = None,
        allow_empty: Annotated[
            bool,
            typer.Option("--allow-empty", help="Embed empty or blank texts as they are instead of stopping."),
        ] = False,
        long_text: LongTextOption = "truncate",
        backend: BackendOption = "torch",
        threads: ThreadsOption = None,
        quiet: QuietOption = False,
    ) -> None:
        """Write the embeddings of texts (one row per input text, in order) to a .npy or .parquet file."""
        _check_suffix(output)
        check_output_path(output, "--output", {"--input": input_path})
        texts = read_texts(
            input_path,
            file_format=file_format,
            text_column=text_column,
            allow_empty=allow_empty,
            empty_error=EMPTY_INPUT_TEXT,
        )
        if not texts:
            raise CommandError(f"{input_path}: no texts to embed")
        predictor, source = load_predictor(run, backend=backend, threads=threads, long_text=long_text, encoders=True)
        embeddings = predictor.encode(texts, batch_size=batch_size, show_progress_bar=not quiet)
        write_embeddings(output, texts, embeddings)
        console.print(
            f"wrote {len(texts)} embeddings of dimension {embeddings.shape[1]} ({source}, backend "
            f"{predictor.backend}) to {output}",
            soft_wrap=True,
            highlight=False,
        )
