"""What `labelspace train` records for later evaluation (issue 14): training label counts pick the rarest
quarter of labels in `labelspace evaluate`, and its HTML report shows the candidates training compared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.inference import Predictor
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, run_cli_module) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("record")
    tiny = tiny_model_folder(folder / "tiny")
    train, dev = folder / "train.jsonl", folder / "dev.jsonl"
    save(demo("train").subset(range(96)), train)
    save(demo("dev"), dev)
    out = folder / "run"
    code, _, stderr = run_cli_module(
        "train", "--model", str(tiny), "--train", str(train), "--dev", str(dev), "--out", str(out),
        "--epochs", "1", "--batch-size", "16", "--max-seq-length", "32", "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    return out, train, dev


@pytest.fixture(scope="module")
def run_cli_module():
    from typer.testing import CliRunner

    from labelspace.cli import app

    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    return run


def test_training_label_counts_are_recorded_and_pick_the_rarest_quarter(trained_run, run_cli_module, tmp_path):
    out, train, dev = trained_run
    model = LabelspaceModel.from_pretrained(out)
    names = model.label_set.names
    train_rows = [json.loads(line) for line in train.read_text().splitlines()]
    expected = {name: sum(name in row["labels"] for row in train_rows) for name in names}
    assert model.metadata["training"]["label_counts"] == expected

    metrics_path = tmp_path / "metrics.json"
    code, _, stderr = run_cli_module("evaluate", str(out), "--data", str(dev), "--json", str(metrics_path))
    assert code == 0, stderr
    reported = json.loads(metrics_path.read_text())["macro_f1_rarest_quarter"]
    # Independent recomputation: the quarter of labels with the fewest TRAINING positives (stable order), F1 of
    # the Predictor's decisions on dev, scikit-learn.
    dev_rows = [json.loads(line) for line in dev.read_text().splitlines()]
    truth = np.array([[name in row["labels"] for name in names] for row in dev_rows])
    predictor = Predictor(model)
    decisions = predictor.decide(predictor.predict_proba([row["text"] for row in dev_rows]))
    rarest = np.argsort([expected[name] for name in names], kind="stable")[: max(1, len(names) // 4)]
    wanted = f1_score(truth[:, rarest], decisions[:, rarest], average="macro", zero_division=0)
    assert reported == pytest.approx(wanted, abs=1e-9)


def test_report_shows_the_candidates_training_compared(trained_run, run_cli_module, tmp_path):
    out, _, dev = trained_run
    selection = LabelspaceModel.from_pretrained(out).metadata["training"]["selection"]
    assert set(selection["candidates"]) == {"fine_tuned", "frozen_baseline"}
    report = tmp_path / "report.html"
    code, _, stderr = run_cli_module("evaluate", str(out), "--data", str(dev), "--report", str(report))
    assert code == 0, stderr
    text = report.read_text(encoding="utf-8")
    section = text[text.index("<h2>Candidates compared on dev</h2>") :]
    table = section[: section.index("</table>")]
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]
    shown = {row[0]: row for row in rows if row}
    assert set(shown) == {"fine_tuned", "frozen_baseline"}
    assert shown[selection["shipped"]][2] == "yes"
    for name, values in selection["candidates"].items():
        assert shown[name][1] == f"{values[selection['metric']]:.4f}"
