"""``labelspace export``: a trained model as ONNX graphs (fp32, and int8 with thresholds re-tuned on dev).

The graphs go into the model folder's ``onnx/`` subfolder (``RUN/model/onnx/`` for a run folder), where
``labelspace predict RUN --backend onnx|onnx-int8`` and ``Predictor.load(RUN, backend=...)`` find them.
The work is `labelspace.inference.onnx_export.export_onnx`; this module reads the options and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from labelspace.commands.common import (
    BatchSizeOption,
    CommandError,
    LabelsColumnOption,
    LabelsFileOption,
    LabelsFormatOption,
    QuietOption,
    TextColumnOption,
    console,
    data_options,
    load_dataset,
    resolve_model_folder,
)
from labelspace.inference.onnx_export import QUANTIZATIONS, OnnxExport, export_onnx

__all__ = ["EXPORT_EPILOG", "EXPORT_FORMATS", "dev_table", "register"]

EXPORT_FORMATS = ("onnx",)
EXPORT_EPILOG = (
    "Example: labelspace export runs/x --format onnx\n\n"
    "Example: labelspace export runs/x --format onnx --quantize int8 --dev dev.tsv --threads 2\n\n"
    "Example: labelspace export runs/embedder --format onnx --no-head"
)


def dev_table(export: OnnxExport) -> Table | None:
    """Dev macro-F1 of each graph (int8 with the thresholds re-tuned for it), or None without dev data."""
    scores = export.dev_macro_f1
    if not scores:
        return None
    dev = export.record["dev"]
    table = Table(title=f"dev macro-F1, {dev['texts']} texts", title_justify="left")
    table.add_column("graph")
    table.add_column("thresholds")
    table.add_column("macro_f1", justify="right")
    table.add_row("fp32", "the model's", f"{scores['fp32']:.4f}")
    if "int8" in scores:
        retuned = (export.record.get("int8") or {}).get("thresholds") is not None
        table.add_row("int8", "re-tuned on dev" if retuned else "the model's", f"{scores['int8']:.4f}")
        table.add_row("int8 - fp32", "", f"{scores['int8'] - scores['fp32']:+.4f}")
    return table


def register(app: typer.Typer) -> None:
    """Add ``export`` to the app."""

    @app.command("export", epilog=EXPORT_EPILOG)
    def export_command(
        run: Annotated[Path, typer.Argument(help="Run folder (from 'labelspace train') or model folder.")],
        export_format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
        quantize: Annotated[
            str | None, typer.Option("--quantize", help="Also write a quantized graph: int8 (dynamic, onnxruntime).")
        ] = None,
        dev: Annotated[
            Path | None,
            typer.Option(
                "--dev",
                help="Labelled dev data: re-tune the int8 graph's thresholds on it and print dev macro-F1 "
                "of fp32 and int8.",
            ),
        ] = None,
        head: Annotated[
            bool | None,
            typer.Option(
                "--head/--no-head",
                help="Put the head's probabilities in the graph (default: when the model has a head).",
            ),
        ] = None,
        objective: Annotated[
            str | None,
            typer.Option(
                "--objective", help="What the int8 thresholds are tuned for (default: the model's own objective)."
            ),
        ] = None,
        threads: Annotated[
            int | None, typer.Option("--threads", min=1, help="CPU threads for torch and onnxruntime (default: all).")
        ] = None,
        dev_format: Annotated[
            str | None, typer.Option("--dev-format", help="Format of --dev: csv, tsv, jsonl, parquet or goemotions.")
        ] = None,
        text_column: TextColumnOption = None,
        labels_column: LabelsColumnOption = None,
        labels_file: LabelsFileOption = None,
        labels_format: LabelsFormatOption = None,
        batch_size: BatchSizeOption = 32,
        quiet: QuietOption = False,
    ) -> None:
        """Export a model to ONNX: one graph with pooling, normalisation and head inside, fp32 and optionally int8."""
        if export_format not in EXPORT_FORMATS:
            raise CommandError(f"--format: expected one of {', '.join(EXPORT_FORMATS)}; got {export_format!r}")
        if quantize is not None and quantize not in QUANTIZATIONS:
            raise CommandError(f"--quantize: expected one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
        folder = resolve_model_folder(run)
        dev_data = None
        if dev is not None:
            options = data_options(dev_format, text_column, labels_column, labels_file, labels_format)
            dev_data = load_dataset(str(dev), options)
        graphs = "fp32 and int8" if quantize == "int8" else "fp32"
        console.print(f"exporting {folder} to ONNX ({graphs}) ...", soft_wrap=True, highlight=False)
        if dev_data is not None:
            console.print(f"evaluating on {dev} ({len(dev_data)} texts) ...", soft_wrap=True, highlight=False)
        export = export_onnx(
            run,
            quantize=quantize,
            dev=dev_data,
            head=head,
            objective=objective,
            threads=threads,
            batch_size=batch_size,
            show_progress_bar=False if quiet else None,
        )
        for path in export.files:
            console.print(f"wrote {path}", soft_wrap=True, highlight=False)
        table = dev_table(export)
        if table is not None:
            console.print(table)
        if quantize == "int8" and dev_data is None:
            console.print(
                "the int8 graph uses the model's thresholds; pass --dev FILE to re-tune them for its scores",
                soft_wrap=True,
                highlight=False,
            )
