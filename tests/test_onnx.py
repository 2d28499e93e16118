"""Issue 12 item 2: ONNX export (fp32, int8 with thresholds re-tuned on dev) and the onnx / onnx-int8 backends.

A tiny random BERT with a linear-probe head over the demo labels stands in for a trained model; its thresholds
are tuned on demo dev with torch scores as `labelspace train` would.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from sklearn.metrics import f1_score

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.evaluation.thresholds import tune_thresholds
from labelspace.inference import OnnxRunner, Predictor, export_onnx
from labelspace.inference.onnx import GRAPH_FILES, RECORD_FILE, graph_path
from labelspace.models import LabelspaceModel
from labelspace.models.testing import tiny_model_folder
from labelspace.training.probe import fit_probe

#: The tuning options `labelspace train` recorded for the model (min_positives differs from the default 5,
#: so the test sees that the int8 re-tuning takes the model's own options).
TUNED_MIN_POSITIVES = 2


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """run/model with a head and thresholds tuned on dev, exported fp32 + int8 with --dev; an embedding-only
    model; the demo dev/test files."""
    root = tmp_path_factory.mktemp("onnx")
    dev = demo("dev")
    model = LabelspaceModel.from_pretrained(tiny_model_folder(root / "tiny"), labels=dev.label_set, seed=0)
    model.eval()
    train, _ = demo("train").with_label_set(dev.label_set)
    # a linear probe on the train embeddings: scores that depend on the text and spread over (0, 1)
    fit_probe(model.head, model.encode(train.texts), train.labels.to_dense().astype(np.float32), C=100.0)
    tuning = tune_thresholds(
        dev.labels.to_dense(),
        model.predict_proba(dev.texts),
        metric="f1",
        objective="macro_f1",
        min_positives=TUNED_MIN_POSITIVES,
        fallback="global",
    )
    model.set_thresholds(tuning.thresholds)
    model.set_decision_rule("at_least_one")
    model.metadata["thresholds"] = {**tuning.to_dict(), "tuned_on": "dev"}
    model.save(root / "run" / "model")
    save(dev, root / "dev.jsonl")
    save(demo("test"), root / "test.jsonl")
    export_onnx(root / "run", quantize="int8", dev=dev, threads=1)
    LabelspaceModel.from_pretrained(tiny_model_folder(root / "embedder-src", seed=1)).save(root / "embedder")
    return {
        "root": root,
        "run": root / "run",
        "model": root / "run" / "model",
        "dev": root / "dev.jsonl",
        "test": root / "test.jsonl",
        "embedder": root / "embedder",
    }


def _record(model_folder: Path) -> dict:
    return json.loads((model_folder / "onnx" / RECORD_FILE).read_text(encoding="utf-8"))


def _copy(built: dict[str, Path], tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(built[name], target)
    return target


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ----------------------------------------------------------------------------- the files


def test_export_writes_the_graphs_and_the_record(built):
    folder = built["model"] / "onnx"
    assert sorted(path.name for path in folder.iterdir()) == sorted([*GRAPH_FILES.values(), RECORD_FILE])
    assert not (folder / "model.onnx").exists()  # sentence-transformers' own ONNX backend name stays free
    record = _record(built["model"])
    assert record["inputs"] == ["input_ids", "attention_mask"]
    assert record["outputs"] == ["embedding", "probabilities"]
    assert record["has_head"] is True and record["labels"] == demo("dev").label_set.names
    for precision, name in GRAPH_FILES.items():
        graph = onnx.load(str(folder / name))
        onnx.checker.check_model(graph)
        assert [value.name for value in graph.graph.input] == ["input_ids", "attention_mask"]
        for value in graph.graph.input:  # int64, dynamic batch and sequence axes
            assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
            assert [dim.dim_param for dim in value.type.tensor_type.shape.dim] == ["batch", "sequence"]
        assert record["files"][precision]["bytes"] == (folder / name).stat().st_size
    int8_ops = {node.op_type for node in onnx.load(str(folder / GRAPH_FILES["int8"])).graph.node}
    assert int8_ops & {"MatMulInteger", "DynamicQuantizeLinear"}, int8_ops  # really quantized
    assert (folder / GRAPH_FILES["int8"]).stat().st_size < (folder / GRAPH_FILES["fp32"]).stat().st_size


def test_the_folder_still_loads_in_sentence_transformers_and_labelspace(built):
    from sentence_transformers import SentenceTransformer

    texts = demo("test").texts[:8]
    ours = LabelspaceModel.from_pretrained(built["run"])
    theirs = SentenceTransformer(str(built["model"]), device="cpu").encode(texts, convert_to_numpy=True)
    assert np.allclose(ours.encode(texts), theirs, atol=1e-5)
    assert ours.head is not None and ours.label_set.names == demo("dev").label_set.names


# ----------------------------------------------------------------------------- fp32 parity


def test_fp32_graph_matches_torch_on_the_demo_test_set(built):
    texts = demo("test").texts
    torch_predictor = Predictor.load(built["run"], "torch", threads=1)
    onnx_predictor = Predictor.load(built["run"], "onnx", threads=1)
    assert onnx_predictor.backend == "onnx"
    torch_scores, torch_embeddings = torch_predictor.scores_and_embeddings(texts)
    onnx_scores, onnx_embeddings = onnx_predictor.scores_and_embeddings(texts)
    assert _cosines(torch_embeddings, onnx_embeddings).min() >= 0.9999
    assert np.abs(torch_scores - onnx_scores).max() <= 1e-4
    assert torch_scores.std() > 0.1  # the check is not on flat scores
    # the graph's probabilities are the head's, computed inside it
    head = torch_predictor.model.head_probabilities(onnx_embeddings)
    assert np.abs(head - onnx_scores).max() <= 1e-4


def test_onnx_predictions_equal_torch_predictions(built):
    """Labels are identical wherever no score lies within the 1e-4 float tolerance of its threshold."""
    texts = demo("test").texts
    torch_predictor = Predictor.load(built["run"], "torch", threads=1)
    onnx_predictor = Predictor.load(built["run"], "onnx", threads=1)
    scores = torch_predictor.predict_proba(texts)
    clear = (np.abs(scores - torch_predictor.thresholds) > 1e-4).all(axis=1)
    assert clear.sum() >= len(texts) - 2
    torch_labels, onnx_labels = torch_predictor.predict(texts), onnx_predictor.predict(texts)
    assert [onnx_labels[i] for i in np.flatnonzero(clear)] == [torch_labels[i] for i in np.flatnonzero(clear)]
    assert any(torch_labels)  # some texts get labels


@pytest.mark.parametrize("count", [1, 7])
def test_dynamic_batch_and_sequence_axes(built, count):
    """The graph runs any batch size and length, padded or not, and equals the torch encoder and head."""
    model = LabelspaceModel.from_pretrained(built["model"]).eval()
    texts = [" ".join(["word"] * (3 + 5 * i)) + f" text {i}" for i in range(count)]
    features = model.encoder.tokenize(texts)  # one batch, padded to its longest text
    session = onnxruntime.InferenceSession(str(graph_path(built["model"])), providers=["CPUExecutionProvider"])
    feeds = {name: features[name].numpy() for name in ("input_ids", "attention_mask")}
    embeddings, probabilities = session.run(["embedding", "probabilities"], feeds)
    with torch.inference_mode():
        expected = model.encoder(features).numpy()
    assert embeddings.shape == (count, model.encoder.dimension)
    assert _cosines(embeddings, expected).min() >= 0.9999
    assert np.abs(probabilities - model.head_probabilities(expected)).max() <= 1e-4
    if count > 1:  # padding is masked inside the graph: each text alone gives the same embedding
        alone = [
            session.run(
                ["embedding"], {k: v[i : i + 1, : int(feeds["attention_mask"][i].sum())] for k, v in feeds.items()}
            )[0][0]
            for i in range(count)
        ]
        assert _cosines(embeddings, np.stack(alone)).min() >= 0.9999


def test_onnx_runner_uses_the_threads_setting(built):
    predictor = Predictor.load(built["run"], "onnx", threads=1)
    assert isinstance(predictor.runner, OnnxRunner)
    assert predictor.runner.session.get_session_options().intra_op_num_threads == 1
    assert predictor.encode([]).shape == (0, 32)


# ----------------------------------------------------------------------------- int8


def test_int8_thresholds_are_retuned_on_dev_and_the_stored_macro_f1_recomputes(built):
    dev = demo("dev")
    y_dev = dev.labels.to_dense()
    record = _record(built["model"])
    fp32 = Predictor.load(built["run"], "onnx", threads=1)
    int8 = Predictor.load(built["run"], "onnx-int8", threads=1)
    fp32_scores, int8_scores = fp32.predict_proba(dev.texts), int8.predict_proba(dev.texts)
    assert np.abs(fp32_scores - int8_scores).max() > 1e-3  # quantization shifts the scores
    assert _cosines(fp32.encode(dev.texts), int8.encode(dev.texts)).mean() >= 0.99  # but the embeddings stay close
    # the Trainer's tuning call, with the model's own options, on the int8 graph's scores
    expected = tune_thresholds(
        y_dev, int8_scores, metric="f1", objective="macro_f1", min_positives=TUNED_MIN_POSITIVES, fallback="global"
    ).thresholds
    stored = np.asarray(record["int8"]["thresholds"])
    assert np.allclose(stored, expected, atol=1e-4)
    assert np.allclose(int8.thresholds, stored)  # onnx-int8 predicts with them
    assert not np.allclose(stored, fp32.thresholds, atol=1e-4)  # they moved where the scores moved
    assert np.allclose(fp32.thresholds, fp32.model.thresholds)
    assert record["int8"]["tuning"]["min_positives"] == TUNED_MIN_POSITIVES
    # the dev macro-F1 of each graph, recomputed with sklearn from each backend's decisions
    for name, predictor, scores in (("fp32", fp32, fp32_scores), ("int8", int8, int8_scores)):
        decided = predictor.decide(scores)
        recomputed = f1_score(y_dev, decided, average="macro", zero_division=0)
        assert record["dev"]["macro_f1"][name] == pytest.approx(recomputed, abs=1e-9)


def test_int8_without_stored_thresholds_uses_the_models_with_a_warning(built, tmp_path, run_cli):
    run = _copy(built, tmp_path)
    export = export_onnx(run, quantize="int8", threads=1)  # no dev: nothing re-tuned
    assert export.record["int8"]["thresholds"] is None and export.dev_macro_f1 is None
    with pytest.warns(UserWarning, match="no int8 thresholds"):
        predictor = Predictor.load(run, "onnx-int8", threads=1)
    assert np.allclose(predictor.thresholds, predictor.model.thresholds)
    code, out, err = run_cli("predict", str(run), "--backend", "onnx-int8", "so happy")
    assert code == 0 and len(out.splitlines()) == 1, err
    warned = [line for line in err.splitlines() if "warning" in line.lower()]
    assert len(warned) == 1 and "UserWarning" not in err, err  # one line, not Python's file:line + source
    assert "labelspace: warning: onnx-int8 uses the model's own (fp32) thresholds" in warned[0] and "--dev" in warned[0]


def test_int8_thresholds_are_dropped_when_the_models_thresholds_change_after_export(built, tmp_path):
    run = _copy(built, tmp_path)
    config_path = run / "model" / "labelspace.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["thresholds"] = [0.9] * len(config["thresholds"])  # set-thresholds after the export
    config_path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.warns(UserWarning, match="thresholds changed since the export"):
        predictor = Predictor.load(run, "onnx-int8", threads=1)
    assert np.allclose(predictor.thresholds, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor.load(run, "onnx", threads=1)  # fp32 always uses the model's thresholds, no warning


# ----------------------------------------------------------------------------- refusals and errors


def test_a_model_without_a_head_exports_the_embedding_and_refuses_probabilities(built, tmp_path):
    folder = _copy(built, tmp_path, "embedder")
    with pytest.raises(ValueError, match="has no classification head.*cannot return probabilities"):
        export_onnx(folder, head=True)
    assert not (folder / "onnx").exists()
    export = export_onnx(folder, threads=1)  # default: the embedding alone
    assert export.record["outputs"] == ["embedding"] and export.record["has_head"] is False
    texts = demo("test").texts[:9]
    onnx_embeddings = Predictor.load(folder, "onnx", threads=1).encode(texts)
    assert _cosines(Predictor.load(folder, "torch").encode(texts), onnx_embeddings).min() >= 0.9999


def test_a_missing_graph_names_the_file_and_the_command(built, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(
        FileNotFoundError, match=r"labelspace\.onnx: ONNX graph not found.*labelspace export .*--format onnx"
    ):
        Predictor.load(run, "onnx")
    export_onnx(run, threads=1)  # fp32 only
    with pytest.raises(FileNotFoundError, match=r"labelspace_int8\.onnx: .*--format onnx --quantize int8"):
        Predictor.load(run, "onnx-int8")


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_a_damaged_graph_is_one_clear_error(built, tmp_path, damage):
    run = _copy(built, tmp_path)
    path = graph_path(run / "model")
    data = path.read_bytes()
    damaged = {
        "random": np.random.default_rng(0).bytes(len(data)),
        "truncated": data[: len(data) // 2],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match=r"labelspace\.onnx: damaged or changed since it was exported"):
        Predictor.load(run, "onnx")
    # without the record's checksum, onnxruntime's own error is caught and names the file
    model = LabelspaceModel.from_pretrained(run)
    with pytest.raises(ValueError, match=r"labelspace\.onnx: damaged or not an ONNX graph"):
        OnnxRunner(path, model, threads=1, command="labelspace export run --format onnx")


def test_a_damaged_record_names_it(built, tmp_path):
    run = _copy(built, tmp_path)
    (run / "model" / "onnx" / RECORD_FILE).write_bytes(b"\x00\xff not json")
    with pytest.raises(ValueError, match=RECORD_FILE):
        Predictor.load(run, "onnx")


# ----------------------------------------------------------------------------- the command line


def test_cli_export_prints_the_files_and_the_dev_table(built, tmp_path, run_cli):
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("onnx"))
    code, out, err = run_cli(
        "export", str(run), "--format", "onnx", "--quantize", "int8", "--dev", str(built["dev"]), "--threads", "1"
    )
    assert code == 0, err
    record = _record(run / "model")
    for name in [*GRAPH_FILES.values(), RECORD_FILE]:
        assert f"wrote {run / 'model' / 'onnx' / name}" in out
    fp32_row = next(line for line in out.splitlines() if line.strip("│ ").startswith("fp32"))
    int8_row = next(line for line in out.splitlines() if "re-tuned on dev" in line)
    assert f"{record['dev']['macro_f1']['fp32']:.4f}" in fp32_row
    assert f"{record['dev']['macro_f1']['int8']:.4f}" in int8_row


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "tflite"], "--format: expected one of onnx"),
        (["--quantize", "int4"], "--quantize: expected one of int8"),
        (["--head"], "has no classification head"),
    ],
)
def test_cli_export_refuses_bad_options_in_one_line(built, tmp_path, run_cli, arguments, message):
    folder = _copy(built, tmp_path, "embedder")
    code, _, err = run_cli("export", str(folder), *arguments)
    assert code == 2 and err.count("\n") == 1 and err.startswith("labelspace: error: "), err
    assert message in err


def test_cli_predict_with_a_missing_or_damaged_graph_is_one_line(built, tmp_path, run_cli):
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("onnx"))
    code, _, err = run_cli("predict", str(run), "--backend", "onnx", "so happy")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "labelspace.onnx: ONNX graph not found" in err and "labelspace export" in err
    export_onnx(run, quantize="int8", threads=1)
    graph_path(run / "model", "int8").write_bytes(b"\x08\x07garbage")
    code, _, err = run_cli("predict", str(run), "--backend", "onnx-int8", "so happy")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "labelspace_int8.onnx: damaged" in err


def test_cli_predict_on_onnx_gives_the_torch_labels(built, run_cli):
    texts = demo("test").texts[:5]
    outputs = {}
    for backend in ("torch", "onnx"):
        code, out, err = run_cli("predict", str(built["run"]), *texts, "--backend", backend, "--threads", "1")
        assert code == 0, err
        outputs[backend] = [json.loads(line) for line in out.splitlines()]
    for torch_row, onnx_row in zip(outputs["torch"], outputs["onnx"], strict=True):
        assert onnx_row["labels"] == torch_row["labels"]
        assert np.allclose(list(onnx_row["scores"].values()), list(torch_row["scores"].values()), atol=1e-4)
