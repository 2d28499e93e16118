"""`labelspace evaluate`, `tune-thresholds` and `predict` on a tiny model with hand-set thresholds."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from labelspace.commands.evaluate import read_texts, resolve_model_folder
from labelspace.data import LabeledDataset, save
from labelspace.data.builtin import demo
from labelspace.evaluation import classification_report
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

REQUIRED = ("micro_f1", "macro_f1", "samples_f1", "samples_jaccard", "hamming_loss", "subset_accuracy")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A run folder (run/model) with per-label thresholds set by hand, and demo dev/test files."""
    folder = tmp_path_factory.mktemp("evaluate")
    labels = demo("train").label_set.names
    model = LabelspaceModel.from_pretrained(tiny_model_folder(folder / "tiny"), labels=labels, seed=0)
    model.set_thresholds(np.linspace(0.47, 0.53, len(labels)))
    model.metadata["note"] = "kept"
    model.save(folder / "run" / "model")
    save(demo("dev"), folder / "dev.jsonl")
    save(demo("test"), folder / "test.jsonl")
    return {"run": folder / "run", "dev": folder / "dev.jsonl", "test": folder / "test.jsonl"}


def _copy_run(files: dict[str, Path], tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    return run


def _aligned(path: Path, model: LabelspaceModel) -> LabeledDataset:
    from labelspace.data import load

    data = load(path)
    names = [data.label_names(i) for i in range(len(data))]
    return LabeledDataset.from_label_names(data.texts, names, label_set=model.label_set)


def _one_line_error(code: int, stderr: str) -> str:
    assert code == 2, stderr
    assert stderr.startswith("labelspace: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def test_resolve_model_folder(files, tmp_path):
    assert resolve_model_folder(files["run"]) == files["run"] / "model"
    assert resolve_model_folder(files["run"] / "model") == files["run"] / "model"
    with pytest.raises(FileNotFoundError, match="no such run or model folder"):
        resolve_model_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither a model folder"):
        resolve_model_folder(tmp_path)


def test_evaluate_json_table_and_report(run_cli, files, tmp_path):
    code, stdout, stderr = run_cli(
        "evaluate",
        str(files["run"]),
        "--data",
        str(files["test"]),
        "--json",
        str(tmp_path / "out" / "metrics.json"),
        "--report",
        str(tmp_path / "out" / "report.html"),
        "--quiet",
    )
    assert code == 0, stderr
    assert "macro_f1" in stdout and "billing" in stdout and "threshold" in stdout
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert result["model"] == str(files["run"] / "model") and result["data"] == str(files["test"])
    assert result["decision_rule"] == "threshold"
    # Recomputed independently: the model's probabilities and thresholds through classification_report.
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    test = _aligned(files["test"], model)
    probabilities = model.predict_proba(test.texts)
    expected = classification_report(
        test.labels.to_dense(), probabilities, thresholds=model.thresholds, label_names=model.label_set.names
    )
    decided = classification_report(test.labels.to_dense(), model.decide(probabilities).astype(int))
    assert decided["macro_f1"] == pytest.approx(expected["macro_f1"])
    for key in REQUIRED:
        assert result[key] == pytest.approx(expected[key], abs=1e-9), key
    assert set(result["per_label"]) == set(model.label_set.names)
    for name, row in result["per_label"].items():
        assert {"precision", "recall", "f1", "support", "threshold"} <= set(row)
        for key, value in row.items():
            assert value == pytest.approx(expected["per_label"][name][key], abs=1e-6), (name, key)
    html = (tmp_path / "out" / "report.html").read_text()
    assert len(re.findall(r"<img ", html)) == 5 and "Embedding projection" in html
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "report.html"]


def test_evaluate_uses_the_saved_decision_rule(run_cli, files, tmp_path):
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    model.set_thresholds(0.9)  # nothing reaches it: at_least_one decides alone
    model.set_decision_rule("at_least_one")
    model.save(tmp_path / "model")
    code, _, stderr = run_cli(
        "evaluate", str(tmp_path / "model"), "--data", str(files["test"]), "--json", str(tmp_path / "m.json")
    )
    assert code == 0, stderr
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["decision_rule"] == "at_least_one"
    test = _aligned(files["test"], model)
    probabilities = model.predict_proba(test.texts)
    decided = model.decide(probabilities)
    assert decided.sum(axis=1).min() == 1
    expected = classification_report(test.labels.to_dense(), decided.astype(int))
    ranked = classification_report(test.labels.to_dense(), probabilities)
    for key in REQUIRED:
        assert result[key] == pytest.approx(expected[key], abs=1e-9), key
    assert result["macro_roc_auc"] == pytest.approx(ranked["macro_roc_auc"], abs=1e-9)
    assert {row["threshold"] for row in result["per_label"].values()} == {0.9}


def test_tune_thresholds_rewrites_the_folder(run_cli, files, tmp_path):
    run = _copy_run(files, tmp_path)
    before = LabelspaceModel.from_pretrained(run / "model")
    code, stdout, stderr = run_cli("tune-thresholds", str(run), "--data", str(files["dev"]), "--quiet")
    assert code == 0, stderr
    assert "before" in stdout and "after" in stdout
    after = LabelspaceModel.from_pretrained(run / "model")
    assert after.label_set == before.label_set and after.decision_rule == before.decision_rule
    assert not np.allclose(after.thresholds, before.thresholds)
    for key, value in before.head.state_dict().items():
        assert torch.equal(value, after.head.state_dict()[key]), key
    assert after.metadata["note"] == "kept"
    assert after.metadata["thresholds"]["thresholds"] == after.thresholds.tolist()
    assert after.metadata["thresholds"]["tuned_on"] == str(files["dev"])
    # Dev macro-F1 after >= before, recomputed from the probabilities.
    dev = _aligned(files["dev"], after)
    probabilities = after.predict_proba(dev.texts)
    y_dev = dev.labels.to_dense()
    old = classification_report(y_dev, before.decide(probabilities).astype(int))["macro_f1"]
    new = classification_report(y_dev, after.decide(probabilities).astype(int))["macro_f1"]
    assert new >= old
    assert sorted(p.name for p in run.iterdir()) == ["model"]  # no temporary or backup folder left


def test_tune_thresholds_options(run_cli, files, tmp_path):
    run = _copy_run(files, tmp_path)
    code, _, stderr = run_cli(
        "tune-thresholds",
        str(run / "model"),
        "--data",
        str(files["dev"]),
        "--metric",
        "fbeta",
        "--beta",
        "0.5",
        "--min-positives",
        "100",
        "--fallback",
        "0.42",
        "--rare-labels",
        "global",
        "--rule",
        "at_least_one",
        "--quiet",
    )
    assert code == 0, stderr
    model = LabelspaceModel.from_pretrained(run / "model")
    assert model.decision_rule == "at_least_one"
    assert np.allclose(model.thresholds, 0.42)  # every label has fewer than 100 positives on dev
    assert model.metadata["thresholds"]["metric"] == "fbeta" and all(model.metadata["thresholds"]["fell_back"])


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_predict_texts_to_stdout(run_cli, files):
    texts = ["I was charged twice this month", "the app crashes when I log in"]
    code, stdout, stderr = run_cli("predict", str(files["run"]), *texts)
    assert code == 0, stderr
    rows = _lines(stdout)
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    probabilities = model.predict_proba(texts)
    decided = model.decide(probabilities)
    names = model.label_set.names
    assert [row["text"] for row in rows] == texts
    for row, probs, chosen in zip(rows, probabilities, decided, strict=True):
        assert set(row) == {"text", "labels", "scores"}
        assert list(row["scores"]) == names
        assert np.allclose([row["scores"][name] for name in names], probs, atol=1e-6)
        assert set(row["labels"]) == {names[j] for j in np.flatnonzero(chosen)}
        assert set(row["labels"]) == {
            n for n, t in zip(names, model.thresholds, strict=True) if probs[names.index(n)] >= t
        }
        ranked = [row["scores"][name] for name in row["labels"]]
        assert ranked == sorted(ranked, reverse=True)


@pytest.mark.parametrize("kind", ["txt", "jsonl", "csv"])
def test_predict_file_to_output(run_cli, files, tmp_path, kind):
    texts = ["refund please", "export my data to csv", 'quotes "and" commas, here']
    source = tmp_path / f"texts.{kind}"
    if kind == "txt":
        source.write_text("\n".join(texts) + "\n")
    elif kind == "jsonl":
        source.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    else:
        source.write_text(
            "id,text\n" + "".join(f'{i},"{t.replace(chr(34), chr(34) * 2)}"\n' for i, t in enumerate(texts))
        )
    out = tmp_path / "out" / "predictions.jsonl"
    code, stdout, stderr = run_cli("predict", str(files["run"]), "--input", str(source), "--output", str(out))
    assert code == 0, stderr
    assert "Encoding" in stderr  # the progress bar
    assert f"wrote 3 predictions to {out}" in stdout
    rows = _lines(out.read_text())
    assert [row["text"] for row in rows] == texts
    assert all(set(row) == {"text", "labels", "scores"} for row in rows)
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.jsonl"]


def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    assert read_texts(tmp_path / "a.txt") == ["one", "two"]
    (tmp_path / "b.tsv").write_text("body\tx\nhello\t1\n")
    assert read_texts(tmp_path / "b.tsv", text_column="body") == ["hello"]


def test_errors_are_one_line(run_cli, files, tmp_path):
    missing = tmp_path / "missing"
    stderr = _one_line_error(*run_cli("evaluate", str(missing), "--data", str(files["test"]))[::2])
    assert "no such run or model folder" in stderr
    stderr = _one_line_error(*run_cli("predict", str(tmp_path), "hello")[::2])
    assert "neither a model folder" in stderr
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(
        json.dumps({"text": "beam me up", "labels": ["teleportation", "billing"]})
        + "\n"
        + json.dumps({"text": "warp", "labels": ["warp-drive"]})
        + "\n"
    )
    for command in ("evaluate", "tune-thresholds"):
        stderr = _one_line_error(*run_cli(command, str(files["run"]), "--data", str(unknown))[::2])
        assert str(unknown) in stderr and "teleportation" in stderr and "warp-drive" in stderr
    stderr = _one_line_error(*run_cli("predict", str(files["run"]))[::2])
    assert "no texts" in stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    stderr = _one_line_error(*run_cli("predict", str(files["run"]), "--input", str(empty))[::2])
    assert "no texts" in stderr and str(empty) in stderr
    stderr = _one_line_error(*run_cli("predict", str(files["run"]), "--input", str(tmp_path / "nope.txt"))[::2])
    assert "nope.txt" in stderr
    stderr = _one_line_error(
        *run_cli("tune-thresholds", str(files["run"]), "--data", str(files["dev"]), "--fallback", "soon")[::2]
    )
    assert "--fallback" in stderr
    stderr = _one_line_error(
        *run_cli("tune-thresholds", str(files["run"]), "--data", str(files["dev"]), "--rule", "vote")[::2]
    )
    assert "--rule" in stderr


@pytest.mark.parametrize("command", ["evaluate", "tune-thresholds", "predict"])
def test_help_has_an_example(run_cli, command):
    code, stdout, _ = run_cli(command, "--help")
    assert code == 0
    assert f"Example: labelspace {command}" in stdout


# ----------------------------------------------------------------------------- thresholds as business rules


def _run_with_user_files(files: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the run with a file a user added to the run folder and one added to the model folder."""
    run = _copy_run(files, tmp_path)
    (run / "notes.txt").write_text("why this run exists\n")
    (run / "model" / "extra.json").write_text('{"owner": "support-team"}\n')
    return run


def _user_files_kept(run: Path) -> None:
    assert (run / "notes.txt").read_text() == "why this run exists\n"
    assert json.loads((run / "model" / "extra.json").read_text()) == {"owner": "support-team"}
    assert sorted(p.name for p in run.iterdir()) == ["model", "notes.txt"]  # no temporary file left behind
    assert not [p.name for p in (run / "model").iterdir() if p.name.startswith(".")]


def test_tune_thresholds_targets_by_name_and_objective_keep_user_files(run_cli, files, tmp_path):
    from labelspace.evaluation import tune_thresholds

    run = _run_with_user_files(files, tmp_path)
    before = LabelspaceModel.from_pretrained(run / "model")
    head_bytes = (run / "model" / "head.safetensors").read_bytes()
    code, stdout, stderr = run_cli(
        "tune-thresholds",
        str(run),
        "--data",
        str(files["dev"]),
        "--target-precision",
        "security=0.95,billing=0.8",
        "--objective",
        "samples_jaccard",
        "--quiet",
    )
    assert code == 0, stderr
    assert "before" in stdout and "after" in stdout and "samples_jaccard" in stdout
    _user_files_kept(run)
    assert (run / "model" / "head.safetensors").read_bytes() == head_bytes
    after = LabelspaceModel.from_pretrained(run / "model")
    assert after.metadata["note"] == "kept"
    names = after.label_set.names
    dev = _aligned(files["dev"], after)
    probabilities = before.predict_proba(dev.texts)
    y_dev = dev.labels.to_dense()
    # The named labels follow their precision rule exactly as a one-number target tunes them.
    for name, target in (("security", 0.95), ("billing", 0.8)):
        column = names.index(name)
        alone = tune_thresholds(y_dev[:, [column]], probabilities[:, [column]], target_precision=target)
        assert after.thresholds[column] == pytest.approx(alone.thresholds[0], abs=1e-12), name
    record = after.metadata["thresholds"]
    assert record["objective"] == "samples_jaccard"
    assert record["label_metrics"][names.index("security")] == "target_precision"
    assert record["label_metrics"][names.index("refund")] == "f1"
    assert record["targets"][names.index("billing")] == 0.8 and record["targets"][names.index("bug")] is None
    # The joint search never ends below the per-label optimum it starts from.
    start = tune_thresholds(
        y_dev, probabilities, label_names=names, target_precision={"security": 0.95, "billing": 0.8}, fallback="global"
    )
    jaccard = classification_report(y_dev, probabilities, thresholds=after.thresholds)["samples_jaccard"]
    assert jaccard >= classification_report(y_dev, probabilities, thresholds=start.thresholds)["samples_jaccard"]
    assert record["extra"]["objective_start"] == pytest.approx(
        classification_report(y_dev, probabilities, thresholds=start.thresholds)["samples_jaccard"], abs=1e-12
    )


def test_tune_thresholds_single_number_target_still_means_every_label(run_cli, files, tmp_path):
    run = _copy_run(files, tmp_path)
    code, _, stderr = run_cli(
        "tune-thresholds", str(run), "--data", str(files["dev"]), "--target-recall", "0.9", "--quiet"
    )
    assert code == 0, stderr
    record = LabelspaceModel.from_pretrained(run / "model").metadata["thresholds"]
    assert record["metric"] == "target_recall" and record["target"] == 0.9
    assert set(record["label_metrics"]) == {"target_recall"}


def test_set_thresholds_by_name_keeps_the_rest_and_user_files(run_cli, files, tmp_path):
    run = _run_with_user_files(files, tmp_path)
    before = LabelspaceModel.from_pretrained(run / "model")
    names = before.label_set.names
    code, stdout, stderr = run_cli("set-thresholds", str(run), "security=0.9", "billing=0.25")
    assert code == 0, stderr
    _user_files_kept(run)
    after = LabelspaceModel.from_pretrained(run / "model")
    expected = before.thresholds.copy()
    expected[names.index("security")] = 0.9
    expected[names.index("billing")] = 0.25
    np.testing.assert_array_equal(after.thresholds, expected)
    assert f"security: {before.thresholds[names.index('security')]:.4f} -> 0.9000" in stdout
    assert f"billing: {before.thresholds[names.index('billing')]:.4f} -> 0.2500" in stdout
    assert after.metadata["note"] == "kept"
    assert after.metadata["thresholds"]["set_by_hand"] == {"security": 0.9, "billing": 0.25}
    assert after.metadata["thresholds"]["thresholds"] == after.thresholds.tolist()
    # Predictions follow the new thresholds.
    probabilities = after.predict_proba(["my password was leaked"])
    assert after.decide(probabilities)[0, names.index("security")] == (probabilities[0, names.index("security")] >= 0.9)
    # A second call adds to the record; a model folder works as well as the run folder.
    code, _, stderr = run_cli("set-thresholds", str(run / "model"), "refund=0.6")
    assert code == 0, stderr
    again = LabelspaceModel.from_pretrained(run / "model")
    assert again.metadata["thresholds"]["set_by_hand"] == {"security": 0.9, "billing": 0.25, "refund": 0.6}
    assert again.thresholds[names.index("security")] == 0.9 and again.thresholds[names.index("refund")] == 0.6


def test_set_thresholds_python_dict(files):
    model = LabelspaceModel.from_pretrained(files["run"] / "model")
    names = model.label_set.names
    old = model.thresholds.copy()
    model.set_thresholds({"security": 0.9, "praise": 0})
    assert model.thresholds[names.index("security")] == 0.9 and model.thresholds[names.index("praise")] == 0.0
    others = [i for i, name in enumerate(names) if name not in ("security", "praise")]
    np.testing.assert_array_equal(model.thresholds[others], old[others])
    with pytest.raises(ValueError, match=r"unknown label\(s\) sekurity; the labels are: billing, refund"):
        model.set_thresholds({"sekurity": 0.9})
    for bad in (1.5, -0.1, float("nan"), "0.9", True):
        with pytest.raises(ValueError, match=r"threshold of 'security' must be a number in \[0, 1\]"):
            model.set_thresholds({"security": 0.9, "billing": 0.4} | {"security": bad})
    assert model.thresholds[names.index("billing")] == old[names.index("billing")]  # nothing set on an error
    model.set_thresholds(0.3)  # a number and a list work as before
    assert model.thresholds.tolist() == [0.3] * len(names)


def test_threshold_rule_errors_are_one_line(run_cli, files, tmp_path):
    run = _copy_run(files, tmp_path)
    config_before = (run / "model" / "labelspace.json").read_text()
    cases = [
        (("set-thresholds", str(run), "sekurity=0.9"), "unknown label(s) sekurity; the labels are: billing"),
        (("set-thresholds", str(run), "security=high"), "expected NAME=NUMBER"),
        (("set-thresholds", str(run), "security"), "expected NAME=NUMBER"),
        (("set-thresholds", str(run), "security=1.5"), "threshold of 'security' must be a number in [0, 1]"),
        (("set-thresholds", str(run), "security=0.5", "security=0.6"), "given twice"),
        (
            ("tune-thresholds", str(run), "--data", str(files["dev"]), "--target-precision", "sekurity=0.9"),
            "--target-precision: unknown label(s) sekurity",
        ),
        (
            ("tune-thresholds", str(run), "--data", str(files["dev"]), "--target-recall", "bug=soon"),
            "--target-recall: expected NAME=NUMBER",
        ),
        (
            ("tune-thresholds", str(run), "--data", str(files["dev"]), "--target-precision", "bug=1.2"),
            "--target-precision of 'bug' must be a float in (0, 1]",
        ),
        (("tune-thresholds", str(run), "--data", str(files["dev"]), "--objective", "accuracy"), "--objective"),
    ]
    for args, message in cases:
        stderr = _one_line_error(*run_cli(*args)[::2])
        assert message in stderr, (args, stderr)
    assert (run / "model" / "labelspace.json").read_text() == config_before


def test_set_thresholds_help_has_an_example(run_cli):
    code, stdout, _ = run_cli("set-thresholds", "--help")
    assert code == 0
    assert "Example: labelspace set-thresholds" in stdout
