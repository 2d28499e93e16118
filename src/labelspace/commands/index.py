"""``labelspace index build``: add or replace the kNN index of a model, and with dev data pick its scoring mode.

The index (``knn_index.safetensors`` + ``knn_index.json`` in the model folder) holds the model's embeddings
of labelled examples; ``knn`` and ``hybrid`` scoring and ``similar`` read it
(`labelspace.models.scoring`). With ``--dev`` the scoring mode is chosen as ``labelspace train`` chooses
it (`labelspace.training.scoring.tune_scoring`) and the thresholds are re-tuned on dev for that mode
(`labelspace.training.scoring.retune_thresholds`). Only the index files and ``labelspace.json`` are
rewritten, each atomically; the encoder and head files stay as they are.
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
    UnknownLabelsOption,
    console,
    data_options,
    load_labeled_over,
    metrics_table,
    resolve_model_folder,
    save_model_config,
)
from labelspace.models import LabelspaceModel
from labelspace.models.folder_io import read_json
from labelspace.models.model import CONFIG_FILE
from labelspace.models.scoring import INDEX_PRECISIONS, ScoringMode
from labelspace.training.arguments import SCORING_CHOICES
from labelspace.training.scoring import (
    build_label_index,
    describe_scoring,
    retune_thresholds,
    scoring_objective,
    tune_scoring,
    untuned_scoring_record,
)

__all__ = ["INDEX_BUILD_EPILOG", "load_model_for_indexing", "register"]

INDEX_BUILD_EPILOG = (
    "Example: labelspace index build runs/x --data train.tsv   (add or replace the index; the scoring mode stays)\n\n"
    "Example: labelspace index build runs/x --data train.tsv --dev dev.tsv   (also pick head, knn or hybrid on dev "
    "and re-tune the thresholds for it)\n\n"
    "Example: labelspace index build runs/x/model --data train.jsonl --dev dev.jsonl --scoring hybrid --k 20"
)

index_app = typer.Typer(help="Build the kNN index that knn / hybrid scoring and similar() read.", no_args_is_help=True)


def load_model_for_indexing(folder: Path) -> tuple[LabelspaceModel, str | None]:
    """(the model in ``folder``, why its old index was left out or None): loads even when the kNN index is
    missing or damaged, since that index is what is being replaced.

    A folder that does not load for another reason raises that error; the folder itself is not touched.
    """
    try:
        return LabelspaceModel.from_pretrained(folder), None
    except (OSError, ValueError) as error:
        problem = error
    try:
        model = LabelspaceModel.from_pretrained(folder, load_index=False)
    except (OSError, ValueError):
        raise problem from None  # not (only) the index: the folder's own error
    return model, " ".join(str(problem).split())


def _saved_mode(folder: Path) -> ScoringMode:
    """The scoring mode ``labelspace.json`` names (``head`` when it names none or an unreadable one)."""
    try:
        return ScoringMode.from_dict(read_json(folder / CONFIG_FILE, expected="a labelspace model config")["scoring"])
    except (OSError, ValueError, KeyError, TypeError):
        return ScoringMode()


@index_app.command("build", epilog=INDEX_BUILD_EPILOG)
def build_command(
    run: Annotated[Path, typer.Argument(help="Run folder (from 'labelspace train') or model folder.")],
    data: DataOption,
    dev: Annotated[
        Path | None,
        typer.Option("--dev", help="Dev data: pick the scoring mode on it and re-tune the thresholds for that mode."),
    ] = None,
    scoring: Annotated[
        str,
        typer.Option(
            "--scoring",
            help="auto (with --dev: head, knn or hybrid, whichever scores best; without: keep the model's mode), "
            "head, knn or hybrid (head weight tuned on --dev).",
        ),
    ] = "auto",
    k: Annotated[
        int | None, typer.Option("--k", min=1, help="Neighbours of kNN scoring (default: the model's, 10).")
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="Index embeddings: float16 (half the size) or float32.")
    ] = "float16",
    batch_size: BatchSizeOption = 64,
    file_format: FormatOption = None,
    text_column: TextColumnOption = None,
    labels_column: LabelsColumnOption = None,
    labels_file: LabelsFileOption = None,
    labels_format: LabelsFormatOption = None,
    unknown_labels: UnknownLabelsOption = "error",
    quiet: QuietOption = False,
) -> None:
    """Build (add or replace) the kNN index of a model from labelled data; with --dev, choose its scoring mode."""
    if scoring not in SCORING_CHOICES:
        raise CommandError(f"--scoring: expected one of {', '.join(SCORING_CHOICES)}; got {scoring!r}")
    if precision not in INDEX_PRECISIONS:
        raise CommandError(f"--precision: expected one of {', '.join(INDEX_PRECISIONS)}; got {precision!r}")
    if scoring == "hybrid" and dev is None:
        raise CommandError("--scoring hybrid tunes the head's weight on dev data: give --dev FILE")
    folder = resolve_model_folder(run)
    model, old_index_problem = load_model_for_indexing(folder)
    if model.label_set is None:
        raise CommandError(
            f"{folder} has no labels (an embedding-only model): a kNN index scores labels, so train it with labels"
        )
    options = data_options(file_format, text_column, labels_column, labels_file, labels_format)
    purpose = " to build the index from"
    train = load_labeled_over(data, options, model.label_set, unknown_labels, purpose=purpose)
    dev_data = load_labeled_over(dev, options, model.label_set, unknown_labels) if dev is not None else None
    if old_index_problem is not None:
        typer.echo(f"labelspace: warning: the old kNN index is replaced: {old_index_problem}", err=True)
    saved = _saved_mode(folder)
    neighbours = k if k is not None else saved.k
    progress = not quiet
    evaluation = None
    if dev_data is None and scoring == "auto":  # no dev data to choose on: the model keeps its mode
        index = build_label_index(model, train, precision=precision, batch_size=batch_size, show_progress_bar=progress)
        model.set_index(index)
        model.set_scoring(ScoringMode(saved.mode, head_weight=saved.head_weight, k=neighbours))
        record = untuned_scoring_record(model, scoring, "no --dev data to choose on: the model keeps its scoring mode")
    else:
        training = model.metadata.get("training")
        metric = training.get("eval_metric") if isinstance(training, dict) else None
        record = tune_scoring(
            model,
            train,
            dev_data,
            requested=scoring,
            objective=scoring_objective(metric),
            k=neighbours,
            precision=precision,
            batch_size=batch_size,
            show_progress_bar=progress,
        )
        if dev_data is not None:
            evaluation = retune_thresholds(model, dev_data, batch_size=batch_size)
    if dev_data is None and model.scoring.mode != saved.mode:
        typer.echo(
            f"labelspace: warning: the scoring mode is now {model.scoring.mode}, but the thresholds were tuned for "
            f"{saved.mode}: give --dev FILE to re-tune them for {model.scoring.mode}",
            err=True,
        )
    model.metadata["scoring"] = record
    assert model.index is not None
    model.index.save(folder)  # each index file atomically, then the config that names the mode
    save_model_config(model, folder)
    console.print(
        f"wrote a kNN index of {len(model.index)} examples ({precision}) to {folder}", soft_wrap=True, highlight=False
    )
    console.print(describe_scoring(record), soft_wrap=True, highlight=False)
    if evaluation is not None and evaluation.reports:
        console.print(metrics_table(evaluation.reports, f"{dev.name}: scoring {model.scoring.mode}"))


def register(app: typer.Typer) -> None:
    """Add the ``index`` group (``index build``) to the app."""
    app.add_typer(index_app, name="index")
