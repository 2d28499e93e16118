"""`labelspace quickstart` end to end on the demo set (with the tiny model, to keep it fast): the files it writes
load back, the table it prints is the report's and matches metrics recomputed from the saved model, the tuned
thresholds do what tuning guarantees, and the `labelspace predict` command it suggests works."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, jaccard_score
from starlette.testclient import TestClient

import labelspace.commands.serve as serve_command
from labelspace.data.builtin import demo
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

COLUMNS = ("frozen, 0.5", "frozen, tuned", "fine-tuned, 0.5", "fine-tuned, tuned")
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SHOWN = ("macro_f1", "micro_f1", "samples_f1", "samples_jaccard", "hamming_loss", "subset_accuracy")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    out: Path


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Run:
    """One quickstart run (1 epoch of the tiny model) shared by the tests of this module."""
    from labelspace.cli import main

    root = tmp_path_factory.mktemp("quickstart")
    tiny = tiny_model_folder(root / "tiny")
    out = root / "runs" / "quickstart"
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(["quickstart", "--model", str(tiny), "--epochs", "1", "--out", str(out)])
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
    # without colour codes, should the environment force them (FORCE_COLOR)
    return Run(code, ANSI_CODES.sub("", stdout.getvalue()), stderr.getvalue(), out)


@pytest.fixture(scope="module")
def model(quickstart) -> LabelspaceModel:
    assert quickstart.code == 0, quickstart.stderr
    return LabelspaceModel.from_pretrained(quickstart.out / "model")


def dense_labels(split: str, names: list[str]) -> np.ndarray:
    """The demo split's labels as a 0/1 matrix with columns in the order of ``names``."""
    data = demo(split)
    dense = data.labels.to_dense()
    return dense[:, [data.label_set.names.index(name) for name in names]].astype(np.int64)


def printed_table(stdout: str) -> dict[str, dict[str, float]]:
    """{column: {metric: value}} from the rich table quickstart prints (long metric names are cut with '…')."""
    table: dict[str, dict[str, float]] = {column: {} for column in COLUMNS}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) != 5 or not re.fullmatch(r"[\d.]+", cells[1]):
            continue
        (metric,) = [name for name in SHOWN if name.startswith(cells[0].rstrip("…"))]
        for column, value in zip(COLUMNS, cells[1:], strict=True):
            table[column][metric] = float(value)
    return table


def report_comparisons(html: str) -> dict[str, dict[str, float]]:
    """{row: {metric: value}} from the report's "Comparisons" table."""
    section = html.split("<h2>Comparisons</h2>", 1)[1].split("</table>", 1)[0]
    header = re.findall(r"<th>([^<]*)</th>", section)[1:]
    rows = {}
    for row in re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", section):
        rows[row[0]] = dict(zip(header, map(float, re.findall(r"<td>([^<]*)</td>", row[1])), strict=True))
    return rows


def recomputed_metrics(y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The table's metrics by scikit-learn (0 where a label has neither true nor predicted positives)."""
    return {
        "macro_f1": f1_score(y_true, predictions, average="macro", zero_division=0),
        "micro_f1": f1_score(y_true, predictions, average="micro", zero_division=0),
        "samples_f1": f1_score(y_true, predictions, average="samples", zero_division=0),
        "samples_jaccard": jaccard_score(y_true, predictions, average="samples", zero_division=0),
        "hamming_loss": hamming_loss(y_true, predictions),
        "subset_accuracy": accuracy_score(y_true, predictions),
    }


def test_quickstart_runs_and_writes_a_loadable_run_folder(quickstart, model):
    assert quickstart.code == 0, quickstart.stderr
    out = quickstart.out
    assert sorted(model.label_set.names) == sorted(demo("train").label_set.names) and len(model.label_set) == 12
    assert model.decision_rule == "at_least_one"
    thresholds = np.asarray(model.thresholds, dtype=np.float64)
    assert thresholds.shape == (12,) and ((thresholds > 0) & (thresholds < 1)).all()
    saved = json.loads((out / "model" / "labelspace.json").read_text(encoding="utf-8"))
    np.testing.assert_allclose(saved["metadata"]["thresholds"]["thresholds"], thresholds, rtol=1e-6)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines() if line]
    assert log and (out / "config.yaml").is_file()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("<img") >= 5
    # the model labels texts with names from its label set, at least one each (the at_least_one rule)
    predictions = model.predict(demo("test").texts[:20])
    assert len(predictions) == 20 and all(
        labels and set(labels) <= set(model.label_set.names) for labels in predictions
    )


def test_printed_table_is_the_reports_and_matches_the_saved_model(quickstart, model):
    printed = printed_table(quickstart.stdout)
    assert all(len(printed[column]) == len(SHOWN) for column in COLUMNS), quickstart.stdout
    reported = report_comparisons((quickstart.out / "report.html").read_text(encoding="utf-8"))
    assert list(reported) == list(COLUMNS)
    for column in COLUMNS:
        for metric, value in printed[column].items():
            assert 0 <= value <= 1 and value == reported[column][metric], (column, metric)
    # the fine-tuned columns, recomputed from the saved model: scores at 0.5, then the saved thresholds and rule
    # (labels at or above their threshold; a text with none gets its top-scoring label)
    texts, names = demo("test").texts, model.label_set.names
    y_test = dense_labels("test", names)
    scores = model.predict_proba(texts, show_progress_bar=False)
    tuned = scores >= np.asarray(model.thresholds)
    none = ~tuned.any(axis=1)
    tuned[none, scores[none].argmax(axis=1)] = True
    for column, predictions in (("fine-tuned, 0.5", scores >= 0.5), ("fine-tuned, tuned", tuned)):
        expected = recomputed_metrics(y_test, predictions)
        for metric in SHOWN:
            assert printed[column][metric] == pytest.approx(expected[metric], abs=5e-5), (column, metric)


def test_dev_metrics_and_what_threshold_tuning_guarantees(quickstart, model):
    dev = json.loads((quickstart.out / "metrics.json").read_text(encoding="utf-8"))["dev"]
    assert set(dev) == {"global 0.5", "tuned"}
    for row in dev.values():
        assert row["num_samples"] == len(demo("dev")) and row["num_labels"] == 12
        assert all(0 <= row[metric] <= 1 for metric in SHOWN)
    # Exact threshold search: a label tuned on its own dev positives (not a fallback) scores an F1 at its tuned
    # threshold at least as high as at 0.5 (both on the same dev scores). The saved row "tuned" applies the
    # at_least_one rule on top, which tuning does not optimise, so it carries no such guarantee.
    tuning = model.metadata["thresholds"]
    at_half = dev["global 0.5"]["per_label"]
    tuned_on_their_own = [i for i, fell_back in enumerate(tuning["fell_back"]) if not fell_back]
    assert tuned_on_their_own
    names = model.label_set.names
    for i in tuned_on_their_own:
        assert at_half[names[i]]["support"] >= 5
        assert tuning["f_score"][i] >= at_half[names[i]]["f1"], names[i]
    assert tuning["objective_score"] == pytest.approx(np.mean(tuning["f_score"]), abs=1e-12)
    for name, threshold in zip(names, model.thresholds, strict=True):
        assert dev["tuned"]["per_label"][name]["threshold"] == pytest.approx(float(threshold), rel=1e-6)


def test_the_suggested_predict_command_works(quickstart, model, run_cli):
    command = f'labelspace predict {quickstart.out} "I was charged twice this month"'
    assert command in quickstart.stdout
    code, stdout, stderr = run_cli("predict", str(quickstart.out), "I was charged twice this month", "--quiet")
    assert code == 0, stderr
    (line,) = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert line["text"] == "I was charged twice this month" and line["labels"]
    assert set(line["scores"]) == set(model.label_set.names)
    # the saved thresholds and rule: labels at or above their threshold, else the top-scoring one; scores are
    # printed to 6 decimals, so a label within 1e-6 of its threshold may go either way
    scores, predicted = line["scores"], set(line["labels"])
    thresholds = dict(zip(model.label_set.names, map(float, model.thresholds), strict=True))
    clear = {name for name in scores if abs(scores[name] - thresholds[name]) > 1e-6}
    above = {name for name in clear if scores[name] > thresholds[name]}
    assert above <= predicted
    if above:
        assert not (predicted - above) & clear
    elif clear == set(scores):
        assert predicted == {max(scores, key=scores.get)}


def test_the_last_line_is_a_working_serve_command(quickstart, model, run_cli, monkeypatch):
    """The quickstart ends with `labelspace serve RUN`; run as printed, it serves the model's predictions (the
    server runs in process: `run_server` is replaced by a test client on the same app)."""
    last = quickstart.stdout.strip().splitlines()[-1].split()
    assert last == ["labelspace", "serve", str(quickstart.out)]
    answers = {}

    def in_process(app, settings):
        with TestClient(app) as client:
            deadline = time.monotonic() + 60
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "the server never got ready"
                time.sleep(0.05)
            answers["predict"] = client.post("/v1/predict", json={"texts": ["I was charged twice this month"]})

    monkeypatch.setattr(serve_command, "run_server", in_process)
    code, _, stderr = run_cli(*last[1:])
    assert code == 0, stderr
    assert answers["predict"].status_code == 200, answers["predict"].text
    (result,) = answers["predict"].json()["results"]
    assert result["labels"] == model.predict(["I was charged twice this month"])[0]
    assert set(result["scores"]) == set(model.label_set.names)
