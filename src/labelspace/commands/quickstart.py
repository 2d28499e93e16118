"""``labelspace quickstart``: the whole story on the embedded demo set, in a few minutes on a CPU.

Describes the demo data, fits a baseline on the frozen encoder, fine-tunes it with the recommended
recipe, tunes per-label thresholds on dev, evaluates on test, prints a before/after table and writes
the run with its HTML report to ``runs/quickstart/``.
"""

from __future__ import annotations

import time
from importlib.resources import as_file, files
from pathlib import Path
from typing import Annotated, Any

import typer

from labelspace.commands.common import console, metrics_table
from labelspace.commands.train import RUN_MARKERS, align_labels, run_training
from labelspace.data import load
from labelspace.evaluation import classification_report, tune_thresholds
from labelspace.evaluation.report import decision_report, write_report
from labelspace.models import LabelspaceModel
from labelspace.recipes import TrainConfig

QUICKSTART_EPILOG = "Example: labelspace quickstart   (writes runs/quickstart/ and runs/quickstart/report.html)"


def frozen_baseline(model_name: str, train: Any, dev: Any, test: Any, max_seq_length: int) -> dict[str, Any]:
    """Logistic regression on the frozen encoder's embeddings: test metrics at 0.5 and with tuned thresholds."""
    # scikit-learn is imported here, not at the top, for start-up time: only this baseline uses it
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    encoder = LabelspaceModel.from_pretrained(model_name, max_seq_length=max_seq_length)
    embeddings = [encoder.encode(data.texts, show_progress_bar=False) for data in (train, dev, test)]
    classifier = OneVsRestClassifier(LogisticRegression(max_iter=2000))
    classifier.fit(embeddings[0], train.labels.to_dense())
    dev_scores, test_scores = classifier.predict_proba(embeddings[1]), classifier.predict_proba(embeddings[2])
    tuned = tune_thresholds(dev.labels.to_dense(), dev_scores, min_positives=5, fallback="global")
    y_test, names = test.labels.to_dense(), train.label_set.names
    return {
        "frozen, 0.5": classification_report(y_test, test_scores, thresholds=0.5, label_names=names),
        "frozen, tuned": classification_report(y_test, test_scores, thresholds=tuned.thresholds, label_names=names),
    }


def run_quickstart(
    out: Path, *, model_name: str = "minilm", epochs: int = 4, max_seq_length: int = 64
) -> dict[str, Any]:
    """Run the demo end to end; returns the comparison rows (test metrics) and the paths written."""
    started = time.perf_counter()
    demo_folder = files("labelspace.data.builtin") / "demo"
    with (
        as_file(demo_folder / "train.jsonl") as train_path,
        as_file(demo_folder / "dev.jsonl") as dev_path,
        as_file(demo_folder / "test.jsonl") as test_path,
    ):
        train = load(train_path)
        dev = align_labels(load(dev_path), train.label_set)
        test = align_labels(load(test_path), train.label_set)
        console.print(
            f"[bold]labelspace quickstart[/bold]: demo support messages, {len(train.label_set)} labels, "
            f"{len(train)} train / {len(dev)} dev / {len(test)} test texts\n"
        )
        console.print("1/3 baseline: logistic regression on the frozen encoder's embeddings")
        rows = frozen_baseline(model_name, train, dev, test, max_seq_length)
        console.print(f"2/3 fine-tuning {model_name} (multi-similarity + BCE head), then tuning thresholds on dev")
        config = TrainConfig(
            train=str(train_path),
            dev=str(dev_path),
            out=str(out),
            model=model_name,
            epochs=epochs,
            max_seq_length=max_seq_length,
        )
        # an earlier quickstart run is replaced; a folder of other files is refused by run_training
        previous_run = out.is_dir() and any((out / marker).exists() for marker in RUN_MARKERS)
        run_training(config, overwrite=previous_run, show_progress=True, print_table=False)
    console.print("3/3 evaluating on test and writing the report")
    model = LabelspaceModel.from_pretrained(out / "model")
    probabilities = model.predict_proba(test.texts, show_progress_bar=False)
    y_test, names = test.labels.to_dense(), model.label_set.names
    rows["fine-tuned, 0.5"] = classification_report(y_test, probabilities, thresholds=0.5, label_names=names)
    decided = model.decide(probabilities)
    tuned_row = decision_report(
        y_test, probabilities, thresholds=model.thresholds, predictions=decided, label_names=names
    )
    rows["fine-tuned, tuned"] = tuned_row
    report = write_report(
        out / "report.html",
        label_names=names,
        y_true=y_test,
        probabilities=probabilities,
        thresholds=model.thresholds,
        predictions=decided,
        embeddings=model.encode(test.texts, show_progress_bar=False),
        metrics=tuned_row,
        comparisons=rows,
        title="labelspace quickstart: demo test set",
    )
    console.print(metrics_table(rows, "test metrics: frozen vs fine-tuned, global 0.5 vs tuned thresholds"))
    minutes = (time.perf_counter() - started) / 60
    console.print(f"\nrun folder: {out}   report: {report}   ({minutes:.1f} min)", soft_wrap=True)
    console.print("next:")
    # soft_wrap: keep each command on one line, so that it can be copied.
    console.print(f'  labelspace predict {out} "I was charged twice this month"', soft_wrap=True)
    console.print(f"  labelspace evaluate {out} --data YOUR_TEST_FILE --report report.html", soft_wrap=True)
    # the last line: the HTTP service on http://127.0.0.1:8000 (docs/serving.md)
    console.print(f"  labelspace serve {out}", soft_wrap=True)
    return {"rows": rows, "report": str(report), "model": str(out / "model"), "minutes": minutes}


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to the app."""

    @app.command("quickstart", epilog=QUICKSTART_EPILOG)
    def quickstart_command(
        out: Annotated[Path, typer.Option("--out", help="Run folder to write.")] = Path("runs/quickstart"),
        model: Annotated[str, typer.Option("--model", help="Encoder to fine-tune.")] = "minilm",
        epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 4,
    ) -> None:
        """Train, tune thresholds, evaluate and report on the embedded demo set (a few minutes on a CPU)."""
        if epochs < 1:
            raise ValueError(f"--epochs must be a positive integer, got {epochs}")
        run_quickstart(out, model_name=model, epochs=epochs)
