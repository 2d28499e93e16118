"""`labelspace embed`: .npy and .parquet outputs equal `Predictor.encode`; bad suffix, missing input, encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelspace.commands.embed import write_embeddings
from labelspace.data.builtin import demo
from labelspace.inference import Predictor
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

TEXTS = ["I was charged twice", "the app crashes on login", "refund please", "export my data to csv"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A run folder with a tiny model, its encoder folder, and texts as .txt and .jsonl."""
    folder = tmp_path_factory.mktemp("embed")
    encoder = tiny_model_folder(folder / "tiny")
    model = LabelspaceModel.from_pretrained(encoder, labels=demo("train").label_set, seed=0)
    model.save(folder / "run" / "model")
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    (folder / "texts.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return {"run": folder / "run", "encoder": encoder, "txt": folder / "texts.txt", "jsonl": folder / "texts.jsonl"}


def _one_line_error(code: int, stderr: str) -> str:
    assert code == 2, stderr
    assert stderr.startswith("labelspace: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def test_npy_output_equals_predictor_encode(run_cli, files, tmp_path):
    out = tmp_path / "out" / "emb.npy"
    code, stdout, stderr = run_cli("embed", str(files["run"]), "--input", str(files["txt"]), "--output", str(out))
    assert code == 0, stderr
    assert "Encoding" in stderr  # the progress bar
    assert "wrote 4 embeddings of dimension 32" in stdout and str(out) in stdout
    matrix = np.load(out)
    expected = Predictor.load(files["run"]).encode(TEXTS)
    assert matrix.dtype == np.float32 and matrix.shape == (4, 32)
    np.testing.assert_allclose(matrix, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)  # the tiny encoder normalises
    assert sorted(p.name for p in out.parent.iterdir()) == ["emb.npy"]  # no temporary file left


def test_parquet_output_has_texts_and_float32_lists(run_cli, files, tmp_path):
    out = tmp_path / "emb.parquet"
    code, _, stderr = run_cli(
        "embed", str(files["run"] / "model"), "--input", str(files["jsonl"]), "--output", str(out), "--quiet",
        "--threads", "1", "--batch-size", "3",
    )  # fmt: skip
    assert code == 0, stderr
    assert "Encoding" not in stderr
    table = pq.read_table(out)
    assert table.column_names == ["text", "embedding"]
    kind = table.schema.field("embedding").type
    assert pa.types.is_list(kind) and kind.value_type == pa.float32()
    assert table.column("text").to_pylist() == TEXTS
    rows = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(rows, Predictor.load(files["run"]).encode(TEXTS), atol=1e-6)


def test_a_plain_encoder_folder_embeds_on_torch(run_cli, files, tmp_path):
    out = tmp_path / "emb.npy"
    code, _, stderr = run_cli("embed", str(files["encoder"]), "--input", str(files["txt"]), "--output", str(out))
    assert code == 0, stderr
    expected = LabelspaceModel.from_pretrained(files["encoder"]).encode(TEXTS)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    stderr = _one_line_error(
        *run_cli(
            "embed", str(files["encoder"]), "--input", str(files["txt"]), "--output", str(out), "--backend", "onnx"
        )[::2]
    )
    assert "--backend onnx" in stderr and "torch" in stderr


def test_bad_suffix_missing_input_and_blank_lines(run_cli, files, tmp_path):
    bad = tmp_path / "emb.csv"
    stderr = _one_line_error(
        *run_cli("embed", str(files["run"]), "--input", str(files["txt"]), "--output", str(bad))[::2]
    )
    assert "--output" in stderr and ".npy" in stderr and ".parquet" in stderr and str(bad) in stderr
    assert not bad.exists()
    missing = tmp_path / "nope.txt"
    out = tmp_path / "emb.npy"
    stderr = _one_line_error(*run_cli("embed", str(files["run"]), "--input", str(missing), "--output", str(out))[::2])
    assert str(missing) in stderr and "not found" in stderr
    blank = tmp_path / "blank.txt"
    blank.write_text("one\n\nthree\n")
    stderr = _one_line_error(*run_cli("embed", str(files["run"]), "--input", str(blank), "--output", str(out))[::2])
    assert f"{blank}:2" in stderr and "--allow-empty" in stderr
    code, _, stderr = run_cli(
        "embed", str(files["run"]), "--input", str(blank), "--output", str(out), "--allow-empty", "--quiet"
    )
    assert code == 0, stderr
    assert np.load(out).shape == (3, 32)  # one row per input line
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    stderr = _one_line_error(*run_cli("embed", str(files["run"]), "--input", str(empty), "--output", str(out))[::2])
    assert "no texts to embed" in stderr and str(empty) in stderr


def test_output_inside_the_model_folder_is_refused(run_cli, files):
    target = files["run"] / "model" / "emb.npy"
    stderr = _one_line_error(
        *run_cli("embed", str(files["run"]), "--input", str(files["txt"]), "--output", str(target))[::2]
    )
    assert "--output" in stderr
    assert not target.exists()


def test_write_embeddings_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="one row per text"):
        write_embeddings(tmp_path / "e.npy", ["a", "b"], np.zeros((3, 4)))
    write_embeddings(tmp_path / "e.parquet", ["a", "b"], np.arange(8).reshape(2, 4))
    assert pq.read_table(tmp_path / "e.parquet").column("embedding").to_pylist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_help_has_an_example(run_cli):
    code, stdout, _ = run_cli("embed", "--help")
    assert code == 0
    assert "Example: labelspace embed" in stdout and "--backend" in stdout and "--threads" in stdout
