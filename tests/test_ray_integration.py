"""Bulk scoring on Ray Data (`labelspace.integrations.ray`) labels texts as the local Predictor does.

The slow tests start a local Ray cluster with 2 CPUs (`make test-slow`); the fast ones check the batch
class without Ray and the errors raised before Ray is started.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelspace.data.builtin import demo
from labelspace.inference import Predictor
from labelspace.integrations import ray as ray_integration
from labelspace.integrations.ray import (
    SUMMARY_FILE,
    LabelspaceBatchPredictor,
    RayNotInstalledError,
    find_input_files,
    predict_files,
)
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder

REPO = Path(__file__).resolve().parents[1]
#: Scores of one text from two processes differ by float rounding (other batch, other padding); a label
#: whose score lies this close to its threshold may be decided either way and is not compared.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose tiny model has tuned-looking thresholds: each label its own, cutting ~30% of dev."""
    root = tmp_path_factory.mktemp("ray-run")
    names = demo("test").label_set.names
    model = LabelspaceModel.from_pretrained(tiny_model_folder(root / "encoder"), labels=names, seed=3)
    model.eval()
    dev_scores = model.predict_proba(demo("dev").texts)
    model.set_thresholds(np.quantile(dev_scores, 0.7, axis=0))
    model.save(root / "run" / "model")
    return root / "run"


@pytest.fixture(scope="module")
def local(run_folder: Path) -> dict[str, object]:
    """The local Predictor's scores, decisions and embeddings of the demo test set, by row id."""
    predictor = Predictor.load(run_folder)
    texts = demo("test").texts
    scores, embeddings = predictor.scores_and_embeddings(texts)
    return {
        "names": predictor.label_names,
        "thresholds": predictor.thresholds,
        "scores": scores,
        "labels": predictor.label_lists(scores),
        "embeddings": embeddings,
    }


def demo_frame() -> pd.DataFrame:
    """The demo test set with an id, the gold labels (a column the output replaces) and a pass-through column."""
    test = demo("test")
    names = np.asarray(test.label_set.names, dtype=object)
    gold = [names[row.astype(bool)].tolist() for row in test.labels.to_dense()]
    ids = np.arange(len(test))
    return pd.DataFrame({"id": ids, "text": test.texts, "labels": gold, "source": [f"row-{i}" for i in ids]})


def write_shards(frame: pd.DataFrame, folder: Path, suffix: str) -> None:
    """``frame`` as two shards (.jsonl or .parquet) in ``folder``."""
    folder.mkdir(parents=True)
    half = len(frame) // 2
    for number, part in enumerate((frame.iloc[:half], frame.iloc[half:])):
        path = folder / f"part-{number}{suffix}"
        if suffix == ".jsonl":
            part.to_json(path, orient="records", lines=True, force_ascii=False)
        else:
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path)


def check_same_as_local(result: pd.DataFrame, local: dict[str, object], with_embeddings: bool) -> None:
    """Row by row (joined on ``id``): the scores within TOLERANCE, the labels equal where no score is borderline."""
    test = demo_frame()
    assert sorted(result["id"].tolist()) == test["id"].tolist()
    result = result.set_index("id").loc[test["id"]]
    assert result["text"].tolist() == test["text"].tolist()
    assert result["source"].tolist() == test["source"].tolist()
    scores = np.stack([np.asarray(row, dtype=np.float64) for row in result["scores"]])
    np.testing.assert_allclose(scores, local["scores"], atol=TOLERANCE)
    decided_here = np.abs(local["scores"] - local["thresholds"]) > TOLERANCE
    clear_rows = decided_here.all(axis=1)
    assert clear_rows.mean() > 0.9, "too many borderline scores for a meaningful comparison"
    got = [list(labels) for labels in result["labels"]]
    expected = local["labels"]
    assert [got[i] for i in np.flatnonzero(clear_rows)] == [expected[i] for i in np.flatnonzero(clear_rows)]
    chosen = sum(len(labels) for labels in expected)
    assert 0 < chosen < len(expected) * len(local["names"])  # some labels chosen, not all: a real decision
    if with_embeddings:
        embeddings = np.stack([np.asarray(row, dtype=np.float64) for row in result["embeddings"]])
        np.testing.assert_allclose(embeddings, local["embeddings"], atol=TOLERANCE)


# ----------------------------------------------------------------------------- fast: no Ray needed


@pytest.mark.parametrize("batch_format", ["numpy", "pandas", "pyarrow"])
def test_batch_predictor_adds_the_local_predictions(run_folder: Path, local: dict, batch_format: str) -> None:
    frame = demo_frame()
    batch = {
        "numpy": {column: frame[column].to_numpy() for column in ("id", "text", "source")},
        "pandas": frame,
        "pyarrow": pa.Table.from_pandas(frame, preserve_index=False),
    }[batch_format]
    scorer = LabelspaceBatchPredictor(run_folder, outputs="labels,scores,embeddings", batch_size=7)
    out = scorer(batch)
    assert type(out) is type(batch)
    result = out.to_pandas() if isinstance(out, pa.Table) else pd.DataFrame({k: list(v) for k, v in out.items()})
    assert list(result.columns)[-3:] == ["labels", "scores", "embeddings"]
    check_same_as_local(result, local, with_embeddings=True)
    assert scorer.label_names == local["names"]


def test_batch_predictor_pyarrow_columns_are_plain_lists(run_folder: Path) -> None:
    table = pa.table({"text": ["so happy", "the invoice is wrong"]})
    out = LabelspaceBatchPredictor(run_folder, outputs=("scores", "labels"))(table)
    assert out.schema.field("scores").type == pa.list_(pa.float32())
    assert out.schema.field("labels").type == pa.list_(pa.string())
    assert [len(row) for row in out.column("scores").to_pylist()] == [12, 12]


def test_batch_predictor_names_a_missing_or_blank_text(run_folder: Path) -> None:
    scorer = LabelspaceBatchPredictor(run_folder, text_column="body")
    with pytest.raises(ValueError, match="no text column 'body'.*its columns: text"):
        scorer({"text": np.array(["hello"])})
    with pytest.raises(ValueError, match=r"row 1 of a batch: the text column 'body' holds null"):
        scorer(pd.DataFrame({"body": ["hello", None]}))
    with pytest.raises(ValueError, match=r"row 0 of a batch: the text column 'body' holds ' '"):
        scorer(pa.table({"body": [" ", "hello"]}))
    with pytest.raises(ValueError, match="unknown column 'probabilities'"):
        LabelspaceBatchPredictor(run_folder, outputs=("labels", "probabilities"))


def test_embeddings_alone_equal_the_predictor_encode(run_folder: Path, local: dict) -> None:
    texts = demo("test").texts[:5]
    out = LabelspaceBatchPredictor(run_folder, outputs=("embeddings",))({"text": np.array(texts)})
    assert sorted(out) == ["embeddings", "text"]
    np.testing.assert_allclose(out["embeddings"], local["embeddings"][:5], atol=TOLERANCE)


def test_predict_files_names_inputs_that_match_no_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a shard\n")
    with pytest.raises(FileNotFoundError, match=r"no input files match \(expected a folder or a glob of .parquet"):
        predict_files(tmp_path / "no-model", tmp_path / "*.parquet", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no input files match"):
        predict_files(tmp_path / "no-model", tmp_path, tmp_path / "out")  # a folder without shards


def test_predict_files_refuses_mixed_formats_and_a_full_output(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "x"}\n')
    pq.write_table(pa.table({"text": ["y"]}), tmp_path / "in" / "b.parquet")
    with pytest.raises(ValueError, match="mixes Parquet and JSON files"):
        predict_files(tmp_path / "no-model", tmp_path / "in", tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.parquet").write_text("old")
    with pytest.raises(ValueError, match="the output folder is not empty"):
        predict_files(tmp_path / "no-model", tmp_path / "in" / "*.jsonl", tmp_path / "out")
    files, reader = find_input_files(str(tmp_path / "in" / "*.parquet"))
    assert [path.name for path in files] == ["b.parquet"] and reader == "parquet"


def test_missing_ray_is_one_line_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayNotInstalledError, match=r"install it with: pip install 'labelspace\[ray\]'"):
        ray_integration.import_ray()


def test_cli_engine_ray_errors_are_one_line(run_cli, run_folder: Path, tmp_path: Path) -> None:
    code, out, err = run_cli("predict", str(run_folder), "a text", "--engine", "ray")
    assert code == 2 and "--engine ray reads --input DIR_OR_GLOB" in out + err
    missing = str(tmp_path / "*.parquet")
    code, out, err = run_cli(
        "predict", str(run_folder), "--input", missing, "--output", str(tmp_path / "o"), "--engine", "ray"
    )
    assert code == 2 and "no input files match" in out + err and "Traceback" not in out + err
    code, out, err = run_cli("predict", str(run_folder), "a text", "--workers", "2")
    assert code == 2 and "--engine ray" in out + err
    code, out, err = run_cli("predict", str(run_folder), "a text", "--engine", "spark")
    assert code == 2 and "--engine" in out + err


def test_labelspace_does_not_import_ray() -> None:
    code = "import sys, labelspace, labelspace.integrations.ray, labelspace.cli; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "False"


# ----------------------------------------------------------------------------- slow: a local Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'labelspace[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'labelspace[ray]')")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024 * 1024,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_idle(ray_cluster):
    """The cluster once the workers of an earlier test have released their CPUs (slow to exit on a busy machine)."""
    deadline = time.monotonic() + 300
    while ray_cluster.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    return ray_cluster


@pytest.mark.slow
def test_predict_files_on_jsonl_shards_equals_the_local_predictor(
    ray_idle, run_folder: Path, local: dict, tmp_path: Path
) -> None:
    write_shards(demo_frame(), tmp_path / "shards", ".jsonl")
    summary = predict_files(
        run_folder,
        str(tmp_path / "shards" / "*.jsonl"),
        tmp_path / "scored",
        workers=2,
        batch_size=16,
        outputs=("labels", "scores", "embeddings"),
    )
    result = pq.read_table(tmp_path / "scored").to_pandas()  # the summary file is skipped (leading "_")
    check_same_as_local(result, local, with_embeddings=True)
    assert summary["rows"] == len(demo("test")) and summary["labels"] == local["names"]
    assert len(summary["inputs"]) == 2 and summary["workers"] == 2
    assert json.loads((tmp_path / "scored" / SUMMARY_FILE).read_text()) == summary


@pytest.mark.slow
def test_cli_engine_ray_on_parquet_shards_equals_the_local_predictor(
    ray_idle, run_cli, run_folder: Path, local: dict, tmp_path: Path
) -> None:
    write_shards(demo_frame(), tmp_path / "shards", ".parquet")
    shards, scored = str(tmp_path / "shards" / "*.parquet"), str(tmp_path / "scored")
    code, out, err = run_cli(
        "predict", str(run_folder), "--input", shards, "--output", scored, "--engine", "ray", "--workers", "1"
    )
    assert code == 0, err
    assert f"wrote {len(demo('test'))} predictions in " in out
    result = pq.read_table(scored).to_pandas()
    assert "embeddings" not in result.columns  # the command writes labels and scores
    check_same_as_local(result, local, with_embeddings=False)
    assert json.loads((tmp_path / "scored" / SUMMARY_FILE).read_text())["labels"] == local["names"]


@pytest.mark.slow
def test_map_batches_with_numpy_batches(ray_idle, run_folder: Path, local: dict) -> None:
    frame = demo_frame().drop(columns=["labels"])
    dataset = ray_idle.data.from_pandas(frame)
    scored = dataset.map_batches(
        LabelspaceBatchPredictor,
        fn_constructor_kwargs={"model_path": str(run_folder), "outputs": ("labels", "scores"), "threads": 1},
        batch_size=32,
        batch_format="numpy",
        concurrency=1,
        num_cpus=1,
    )
    check_same_as_local(scored.to_pandas(), local, with_embeddings=False)


@pytest.mark.slow
def test_predict_files_names_a_missing_text_column(ray_idle, run_folder: Path, tmp_path: Path) -> None:
    write_shards(demo_frame().rename(columns={"text": "body"}), tmp_path / "shards", ".jsonl")
    with pytest.raises(ValueError, match=r"no text column 'text' in the input files \(columns: .*body"):
        predict_files(run_folder, tmp_path / "shards", tmp_path / "scored")
