"""Outputs never land on inputs or inside a model folder; `.txt` inputs to predict mean what they say.

The CLI cases run the real command in a subprocess (`python -m labelspace.cli`), as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labelspace.commands.evaluate import read_texts
from labelspace.commands.paths import MODEL_CONFIG_FILE, check_output_path, is_model_folder, model_folder_around
from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.data.errors import DataFormatError
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

HINT = "empty text (pass --allow-empty to keep it; it gets no labels)"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A run folder (run/model, a tiny model with a head over the demo labels) and the demo test set."""
    folder = tmp_path_factory.mktemp("outputs")
    model = LabelspaceModel.from_pretrained(
        tiny_model_folder(folder / "tiny"), labels=demo("train").label_set.names, seed=0
    )
    model.save(folder / "run" / "model")
    save(demo("test"), folder / "test.jsonl")
    return {"run": folder / "run", "test": folder / "test.jsonl", "tiny": folder / "tiny"}


@pytest.fixture(scope="module")
def model(files) -> LabelspaceModel:
    return LabelspaceModel.from_pretrained(files["run"] / "model")


def labelspace(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a fresh Python process."""
    return subprocess.run(
        [sys.executable, "-m", "labelspace.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("labelspace: error: "), result.stderr
    return lines[0]


def predictions(result: subprocess.CompletedProcess[str]) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.split("\n") if line]


def assert_scores_match(rows: list[dict], texts: list[str], model: LabelspaceModel) -> None:
    """Row i holds the probabilities the model gives text i (so rows line up with the texts)."""
    names = model.label_set.names
    expected = model.predict_proba(texts)
    got = np.array([[row["scores"][name] for name in names] for row in rows])
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------------------------- outputs aimed at inputs


def test_evaluate_json_into_the_models_config_is_refused(files, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    config = run / "model" / "labelspace.json"
    before = config.read_bytes()
    error = one_line_error(labelspace("evaluate", run, "--data", files["test"], "--json", config, "--quiet"))
    assert f"--json {config}" in error and "model folder" in error
    assert config.read_bytes() == before
    assert LabelspaceModel.from_pretrained(run / "model").label_set.names == demo("train").label_set.names


def test_predict_output_equal_to_input_is_refused(files, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("I was charged twice\nthe app crashes\n", encoding="utf-8")
    error = one_line_error(labelspace("predict", files["run"], "--input", source, "--output", source))
    assert error.startswith(f"labelspace: error: --output {source} is the --input file {source}")
    assert source.read_text(encoding="utf-8") == "I was charged twice\nthe app crashes\n"


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_predict_output_linked_to_the_input_is_refused(files, tmp_path, link):
    source = tmp_path / "texts.txt"
    source.write_text("I was charged twice\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    (output.symlink_to if link == "symbolic" else output.hardlink_to)(source)
    error = one_line_error(labelspace("predict", files["run"], "--input", source, "--output", output))
    assert f"--output {output} is the --input file {source}" in error
    assert source.read_text(encoding="utf-8") == "I was charged twice\n"
    assert output.is_symlink() == (link == "symbolic")
    assert os.path.samefile(output, source)


def test_file_writing_commands_refuse_their_inputs_and_model_folders(run_cli, files, tmp_path):
    """split, convert, mine and evaluate --report: the same rule, checked before any work."""
    data = tmp_path / "train.jsonl"
    save(demo("test"), data)
    before = data.read_bytes()
    code, _, err = run_cli("split", str(data), "--out", str(tmp_path), "--fractions", "0.5,0.5")
    assert code == 2 and f"--out {tmp_path / 'train.jsonl'} is the input file {data}" in err
    assert data.read_bytes() == before
    triplets = tmp_path / "triplets.csv"
    triplets.write_text("anchor,positive,negative\na,b,c\n", encoding="utf-8")
    code, _, err = run_cli("convert", "triplets-to-pairs", str(triplets), str(triplets))
    assert code == 2 and f"OUT {triplets} is the input file {triplets}" in err
    assert triplets.read_text(encoding="utf-8") == "anchor,positive,negative\na,b,c\n"
    model_folder = files["run"] / "model"
    listing = sorted(path.name for path in model_folder.iterdir())
    attempts = {
        "--out": ["mine", str(files["run"]), "--data", str(data), "--out", str(model_folder / "triplets.jsonl")],
        "--report": ["evaluate", str(files["run"]), "--data", str(data), "--report", str(model_folder / "r.html")],
    }
    for option, args in attempts.items():
        code, _, err = run_cli(*args)
        assert code == 2 and f"{option} {model_folder}/" in err and "inside the model folder" in err, err
    code, _, err = run_cli("split", str(data), "--out", str(files["tiny"]))  # a sentence-transformers folder
    assert code == 2 and "inside the model folder" in err
    assert sorted(path.name for path in model_folder.iterdir()) == listing


def test_model_folders_are_recognised(files, tmp_path):
    assert MODEL_CONFIG_FILE == __import__("labelspace.models.model", fromlist=["CONFIG_FILE"]).CONFIG_FILE
    assert is_model_folder(files["run"] / "model") and is_model_folder(files["tiny"])
    assert not is_model_folder(files["run"])  # a run folder holds a model; writing metrics.json there is fine
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert not is_model_folder(plain)  # a config.json alone is not a model
    (plain / "model.safetensors").write_bytes(b"")
    assert is_model_folder(plain)
    inside = files["run"] / "model" / "1_Pooling" / "config.json"
    assert model_folder_around(inside) == (files["run"] / "model").resolve()
    assert model_folder_around(files["run"] / "metrics.json") is None
    check_output_path(files["run"] / "metrics.json", "--json", {"--data": files["test"], "--labels-file": None})
    link = tmp_path / "model-link"
    link.symlink_to(files["run"] / "model")
    with pytest.raises(ValueError, match=r"^--json .*model-link/m\.json lies inside the model folder"):
        check_output_path(link / "m.json", "--json")


# ----------------------------------------------------------------------------- .txt input to predict


def test_predict_txt_splits_on_newlines_only(files, model, tmp_path):
    texts = [
        "first\u2028still the first",
        "form\x0cfeed",
        "group\x1dfile\x1crecord\x1eseparators",
        "next\x85line and\u2029paragraph",
        "vertical\x0btab",
    ]
    source = tmp_path / "texts.txt"
    source.write_bytes(("\n".join(texts) + "\n").encode("utf-8"))
    output = tmp_path / "predictions.jsonl"
    result = labelspace("predict", files["run"], "--input", source, "--output", output, "--quiet")
    assert result.returncode == 0, result.stderr
    written = output.read_text(encoding="utf-8")
    assert len(written.splitlines()) == len(texts)  # even a splitlines() reader sees one row per input line
    rows = [json.loads(line) for line in written.splitlines()]
    assert [row["text"] for row in rows] == texts
    assert_scores_match(rows, texts, model)


def test_predict_txt_crlf_and_a_lone_carriage_return(files, model, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_bytes(b"first\r\nsecond\rstill the second\r\nthird\r\n")
    rows = predictions(labelspace("predict", files["run"], "--input", source, "--quiet"))
    texts = ["first", "second\rstill the second", "third"]
    assert [row["text"] for row in rows] == texts
    assert_scores_match(rows, texts, model)


def test_predict_txt_drops_the_bom(files, model, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_bytes(b"\xef\xbb\xbfhello there\nsecond")  # no final newline: the last line counts all the same
    rows = predictions(labelspace("predict", files["run"], "--input", source, "--quiet"))
    assert [row["text"] for row in rows] == ["hello there", "second"]
    assert_scores_match(rows, ["hello there", "second"], model)


def test_predict_refuses_a_blank_line_with_its_number(files, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("one\ntwo\n \t \nfour\n", encoding="utf-8")
    error = one_line_error(labelspace("predict", files["run"], "--input", source))
    assert error == f"labelspace: error: {source}:3: {HINT}"


def test_predict_refuses_an_empty_jsonl_text_with_the_hint(files, tmp_path):
    source = tmp_path / "texts.jsonl"
    source.write_text('{"text": "fine"}\n{"text": "   "}\n', encoding="utf-8")
    error = one_line_error(labelspace("predict", files["run"], "--input", source))
    assert error == f"labelspace: error: {source}:2: column 'text': {HINT}"


def test_predict_allow_empty_keeps_blank_lines_without_labels(files, model, tmp_path):
    lines = ["I was charged twice", "", "  ", "the app crashes on login"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = predictions(labelspace("predict", files["run"], "--input", source, "--allow-empty", "--quiet"))
    assert [row["text"] for row in rows] == lines
    assert [row for row in rows if not row["text"].strip()] == [
        {"text": "", "labels": [], "scores": {}},
        {"text": "  ", "labels": [], "scores": {}},
    ]
    filled = [row for row in rows if row["text"].strip()]
    assert_scores_match(filled, [lines[0], lines[3]], model)  # the same as without the blank lines
    decided = model.decide(model.predict_proba([lines[0], lines[3]]))
    names = model.label_set.names
    assert [set(row["labels"]) for row in filled] == [{names[j] for j in np.flatnonzero(d)} for d in decided]


def test_read_texts_rules(tmp_path):
    source = tmp_path / "a.txt"
    source.write_bytes(b"\xef\xbb\xbf")
    assert read_texts(source) == []  # only a BOM: no text (predict says "no texts to predict")
    source.write_bytes(b"one\n")
    assert read_texts(source) == ["one"]  # a final newline adds no empty text
    source.write_bytes(b"one\n\n")
    with pytest.raises(DataFormatError, match=r"a\.txt:2: empty text"):
        read_texts(source)
    assert read_texts(source, allow_empty=True) == ["one", ""]
    table = tmp_path / "b.csv"
    table.write_text("text,id\nok,1\n,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"b\.csv:3: column 'text': empty text \(pass --allow-empty"):
        read_texts(table)
    assert read_texts(table, allow_empty=True) == ["ok", ""]


def test_predict_refuses_a_blank_text_argument(run_cli, files):
    code, _, err = run_cli("predict", str(files["run"]), "fine", " ")
    assert code == 2 and err == f"labelspace: error: text 2 of the command line: {HINT}\n"
