"""``labelspace mine``: hard negatives mined with a model, from labelled texts to a triplets file.

For each anchor text: a positive (a text sharing a label with it) and the ``--negatives`` texts
most similar to it that share no label, skipping the ``--range-min`` most similar candidates and
any candidate more similar than ``--max-score``. The triplets file (``anchor, positive, negative[,
negative_2 ...]``) reads back with `labelspace.data.load` and trains a text loss such as
MultipleNegativesRankingLoss. See `labelspace.evaluation.mining` for the rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labelspace.commands.common import (
    BatchSizeOption,
    CommandError,
    DataOption,
    FormatOption,
    LabelsColumnOption,
    LabelsFileOption,
    LabelsFormatOption,
    QuietOption,
    TextColumnOption,
    console,
    data_options,
    load_dataset,
    load_embedding_model,
)
from labelspace.commands.paths import check_output_path
from labelspace.data.tables import EXTENSIONS
from labelspace.data.writers import save
from labelspace.evaluation.mining import mine_hard_negative_indices

__all__ = ["MINE_EPILOG", "load_embedding_model", "register"]

MINE_EPILOG = (
    "Example: labelspace mine minilm --data train.jsonl --out triplets.jsonl --negatives 3 --range-min 2\n\n"
    "Example: labelspace mine runs/x --data train.tsv --out triplets.jsonl --max-score 0.9 --max-anchors 5000"
)


def register(app: typer.Typer) -> None:
    """Add ``mine`` to the app."""

    @app.command("mine", epilog=MINE_EPILOG)
    def mine_command(
        run_or_model: Annotated[
            str,
            typer.Argument(help="Run folder, model folder, or encoder (minilm, a sentence-transformers folder)."),
        ],
        data: DataOption,
        out: Annotated[Path, typer.Option("--out", help="Triplets file to write (.jsonl, .csv, .tsv, .parquet).")],
        negatives: Annotated[int, typer.Option("--negatives", min=1, help="Hard negatives per anchor.")] = 1,
        range_min: Annotated[
            int, typer.Option("--range-min", min=0, help="Skip the R most similar candidates (near duplicates).")
        ] = 0,
        range_max: Annotated[
            int | None,
            typer.Option("--range-max", min=1, help="Take negatives only among the R most similar candidates."),
        ] = None,
        max_score: Annotated[
            float | None, typer.Option("--max-score", help="Drop candidates whose cosine similarity is above S.")
        ] = None,
        sampling: Annotated[
            str, typer.Option("--sampling", help="top (the most similar) or random (among --range-min..--range-max).")
        ] = "top",
        positive: Annotated[
            str, typer.Option("--positive", help="random, most_similar or least_similar text sharing a label.")
        ] = "random",
        max_anchors: Annotated[
            int | None, typer.Option("--max-anchors", min=1, help="Mine for at most N anchors (a random subset).")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Random seed (positives, sampling, anchor subset).")] = 0,
        backend: Annotated[
            str, typer.Option("--backend", help="faiss, torch or auto (faiss when installed).")
        ] = "auto",
        block_size: Annotated[
            int, typer.Option("--block-size", min=1, help="Anchors per similarity block (memory: block x texts).")
        ] = 1024,
        batch_size: BatchSizeOption = 32,
        file_format: FormatOption = None,
        text_column: TextColumnOption = None,
        labels_column: LabelsColumnOption = None,
        labels_file: LabelsFileOption = None,
        labels_format: LabelsFormatOption = None,
        quiet: QuietOption = False,
    ) -> None:
        """Mine hard negatives with a model: per anchor, the most similar texts that share no label with it."""
        if out.suffix.lower() not in EXTENSIONS:
            raise CommandError(f"--out: expected a .jsonl, .csv, .tsv or .parquet file; got {str(out)!r}")
        check_output_path(out, "--out", {"--data": data, "--labels-file": labels_file})
        model, source = load_embedding_model(run_or_model)
        dataset = load_dataset(
            str(data), data_options(file_format, text_column, labels_column, labels_file, labels_format)
        )
        if len(dataset) < 2:
            raise ValueError(f"{data}: mining needs at least 2 texts, got {len(dataset)}")
        embeddings = model.encode(dataset.texts, batch_size=batch_size, show_progress_bar=not quiet)
        mined = mine_hard_negative_indices(
            embeddings,
            dataset.labels,
            dataset.texts,
            num_negatives=negatives,
            range_min=range_min,
            range_max=range_max,
            max_score=max_score,
            sampling=sampling,
            positive=positive,
            max_anchors=max_anchors,
            seed=seed,
            backend=backend,
            block_size=block_size,
            show_progress_bar=not quiet,
        )
        skipped = (
            f"{mined.without_positive} without a text sharing a label, "
            f"{mined.without_negatives} with fewer than {negatives} candidate(s) sharing none"
        )
        if len(mined) == 0:
            raise ValueError(f"{data}: no triplet mined from {mined.num_anchors} anchors ({skipped})")
        save(mined.to_triplets(dataset.texts), out)
        console.print(
            f"wrote {len(mined)} triplets ({negatives} negative(s) each, mined with {source}) to {out}; "
            f"skipped anchors: {skipped}; mean cosine: positive {mined.positive_scores.mean():.3f}, "
            f"negatives {mined.negative_scores.mean():.3f}",
            soft_wrap=True,
            highlight=False,
        )
