"""Issue 10 items 4, 5 and 6 (hub part): a damaged file, a bad option or a mistyped hub id is one line naming it.

Each case runs the real command line in a fresh interpreter (`python -m labelspace.cli`) and checks
exit status 2, exactly one line on stderr that names the file (or option) and what is wrong, and no
traceback. Before this, damaged safetensors files ended in a ``SafetensorError`` traceback, a bad
``labelspace.json`` in a ``TypeError`` / numpy ``ValueError`` / ``UnicodeDecodeError``, and a folder
given as an output file in ``.NAME.XXXX.tmp -> NAME: is a directory``.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from labelspace.data import save
from labelspace.data.builtin import demo
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import hub_model_folder, save_folder_atomically
from labelspace.models.folder_io import check_encoder_weights, read_safetensors, safetensors_problem
from labelspace.models.testing import tiny_model_folder

PREFIX = "labelspace: error: "
NOT_SAFETENSORS = "damaged or not a safetensors file"


def labelspace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`labelspace ARGS` in a fresh interpreter; never reaches a model hub (HF_HUB_OFFLINE=1)."""
    environment = {key: value for key, value in os.environ.items() if key != "LABELSPACE_DEBUG"}
    environment.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "labelspace.cli", *args], capture_output=True, text=True, env=environment, timeout=300
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a command that failed on bad input (exit 2, no traceback), without the prefix."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0].removeprefix(PREFIX)


class _Marker:
    """Unpickling this creates ``path`` (``open(path, "w")``): proof that a pickle was run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def marker_pickle(marker: Path) -> bytes:
    return pickle.dumps({"weight": _Marker(marker)}, protocol=4)


def test_the_marker_pickle_really_runs_when_unpickled(tmp_path):
    """The pickle used below would create its marker if anything unpickled it (so its absence means something)."""
    marker = tmp_path / "ran"
    pickle.loads(marker_pickle(marker))
    assert marker.exists()


def damage(path: Path, how: str, marker: Path) -> None:
    content = path.read_bytes()
    if how == "truncated":
        path.write_bytes(content[: len(content) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "pickle":
        path.write_bytes(marker_pickle(marker))
    else:
        raise AssertionError(how)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    encoder = tiny_model_folder(folder / "tiny")
    model = LabelspaceModel.from_pretrained(encoder, labels=["billing", "bug", "refund"], seed=0)
    return model.save(folder / "model")


def copy_of(model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model, tmp_path / "model"))


# ----------------------------------------------------------------------------- safetensors files


REASONS = {
    "truncated": "it is truncated",
    "empty": "the file is empty",
    "random": "its header length reads",
    "pickle": "it looks like a Python pickle, which labelspace never loads",
}


@pytest.mark.parametrize("how", ["truncated", "empty", "random", "pickle"])
@pytest.mark.parametrize(("name", "what"), [("head.safetensors", "the head"), ("model.safetensors", "the encoder")])
def test_a_damaged_weights_file_is_one_line_naming_it(saved_model, tmp_path, name, what, how):
    model = copy_of(saved_model, tmp_path)
    marker = tmp_path / "unpickled"
    damage(model / name, how, marker)
    message = one_error_line(labelspace("predict", str(model), "I was charged twice"))
    assert message.startswith(f"{model / name}: {NOT_SAFETENSORS} ({REASONS[how]}")
    assert message.endswith(f"); {what} was not loaded")
    assert not marker.exists()  # nothing was unpickled


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory) -> dict[str, Path]:
    """A 1-step run with a checkpoint after each step, and the options that resume it for one more step."""
    folder = tmp_path_factory.mktemp("checkpointed")
    tiny = tiny_model_folder(folder / "tiny")
    save(demo("train").subset(range(16)), folder / "train.jsonl")
    (folder / "run.yaml").write_text(yaml.safe_dump({"training": {"save_steps": 1}}))
    options = ["--config", str(folder / "run.yaml"), "--model", str(tiny), "--train", str(folder / "train.jsonl")]
    options += ["--batch-size", "8", "--max-seq-length", "16", "--no-tune-thresholds", "--quiet"]
    result = labelspace("train", *options, "--out", str(folder / "run"), "--max-steps", "1")
    assert result.returncode == 0, result.stderr
    assert (folder / "run" / "checkpoints" / "checkpoint-1" / "optimizer.safetensors").is_file()
    return {"run": folder / "run", "options": options}


@pytest.mark.parametrize(
    ("name", "how", "what"),
    [
        ("optimizer.safetensors", "truncated", "the optimizer state"),
        ("rng.safetensors", "pickle", "the random generator state"),
    ],
)
def test_resuming_from_a_damaged_checkpoint_file_is_one_line(checkpointed_run, tmp_path, name, how, what):
    run = Path(shutil.copytree(checkpointed_run["run"], tmp_path / "run"))
    damaged = run / "checkpoints" / "checkpoint-1" / name
    marker = tmp_path / "unpickled"
    damage(damaged, how, marker)
    result = labelspace("train", *checkpointed_run["options"], "--out", str(run), "--max-steps", "2", "--resume")
    message = one_error_line(result)
    assert message.startswith(f"{damaged}: {NOT_SAFETENSORS} ({REASONS[how]}")
    assert message.endswith(f"); {what} was not loaded")
    assert not marker.exists()


def test_safetensors_problem_reads_the_header_only(tmp_path):
    """Each defect is found from the header, independently of the safetensors library."""
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.zeros(4, 4), "b": torch.ones(3)}, str(good))
    assert safetensors_problem(good) is None
    content = good.read_bytes()
    header_length = int.from_bytes(content[:8], "little")
    data_length = len(content) - 8 - header_length  # 64 + 12 bytes of float32
    assert data_length == 76
    cases = {
        "short": (content[:5], "the file is 5 bytes long, too short for the 8-byte header length"),
        "header_cut": (content[: 8 + header_length // 2], "its header length reads"),
        "data_cut": (content[:-10], f"it is truncated: its tensors need 76 bytes of data, the file holds {76 - 10}"),
        "zip": (b"PK\x03\x04" + bytes(60), "it looks like a zip archive (torch.save)"),
        "not_json": (len(b"[1, 2]x").to_bytes(8, "little") + b"[1, 2]x", "its header is not valid UTF-8 JSON"),
        "not_object": (len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]", "its header is not a JSON object"),
    }
    for name, (data, reason) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        assert (safetensors_problem(path) or "").startswith(reason), name
    assert safetensors_problem(tmp_path) == "it is a folder, not a file"
    assert torch.equal(read_safetensors(good)["b"], torch.ones(3))


def test_a_missing_safetensors_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors: file not found; the head was not loaded"):
        read_safetensors(tmp_path / "absent.safetensors", what="the head")


def test_a_damaged_shard_of_a_sharded_encoder_is_named(tmp_path):
    save_file({"a": torch.zeros(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"")
    index = {
        "metadata": {},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"model-00002-of-00002\.safetensors: damaged or not a safetensors file"):
        check_encoder_weights(tmp_path)


# ----------------------------------------------------------------------------- labelspace.json and head_config.json


def rewrite_config(model: Path, change: dict) -> None:
    config = json.loads((model / "labelspace.json").read_text(encoding="utf-8"))
    config.update(change)
    (model / "labelspace.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"labels": 5}, "'labels' must be a list of label names (or null), got 5"),
        ({"thresholds": ["high", "low", "high"]}, "'thresholds' must be a list of 3 finite numbers (one per label)"),
        ({"labels": ["billing", None, "refund"]}, "'labels': "),
        ({"top_k": "2"}, "'top_k' must be a positive integer, got '2'"),
    ],
)
def test_a_bad_labelspace_json_field_is_one_line_naming_the_file(saved_model, tmp_path, change, expected):
    model = copy_of(saved_model, tmp_path)
    rewrite_config(model, change)
    message = one_error_line(labelspace("predict", str(model), "hello"))
    assert message.startswith(f"{model / 'labelspace.json'}: {expected}")


def test_a_head_that_does_not_match_the_labels_names_both_files(saved_model, tmp_path):
    model = copy_of(saved_model, tmp_path)
    rewrite_config(model, {"labels": ["billing", "bug"], "thresholds": [0.5, 0.5]})
    message = one_error_line(labelspace("predict", str(model), "hello"))
    assert message == (
        f"{model / 'head_config.json'}: the head has 3 outputs, but {model / 'labelspace.json'} lists 2 labels "
        "(expected one output per label)"
    )


def test_a_non_utf8_labelspace_json_names_the_file_line_and_byte(saved_model, tmp_path):
    model = copy_of(saved_model, tmp_path)
    rewrite_config(model, {"labels": ["billing", "bug", "refund"]})
    text = (model / "labelspace.json").read_text(encoding="utf-8").replace('"bug"', '"caf\u00e9"')
    (model / "labelspace.json").write_bytes(text.encode("latin-1"))
    column = text.encode("latin-1").index(b"\xe9") + 1  # all on line 1 (json.dumps without indent)
    message = one_error_line(labelspace("predict", str(model), "hello"))
    assert message.startswith(
        f"{model / 'labelspace.json'}:1: byte 0xe9 at byte {column} of the line is not valid UTF-8"
    )


def test_a_bad_head_config_names_the_file(saved_model, tmp_path):
    model = copy_of(saved_model, tmp_path)
    config = json.loads((model / "head_config.json").read_text())
    (model / "head_config.json").write_text(json.dumps(dict(config, colour="blue")))
    message = one_error_line(labelspace("predict", str(model), "hello"))
    assert message == f"{model / 'head_config.json'}: unknown head config keys: colour"


# ----------------------------------------------------------------------------- data options and input files


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tickets.csv"
    path.write_text("text,labels\nI was charged twice,billing\nthe app crashes,bug\n", encoding="utf-8")
    return path


def test_a_multi_character_delimiter_is_one_line_naming_the_option(data_file):
    message = one_error_line(labelspace("data", "check", str(data_file), "--delimiter", ",,"))
    assert message == (
        "delimiter (--delimiter) must be one character other than a quote or a line break, e.g. ',' or '\\t'; got ',,'"
    )


def test_a_labels_file_that_is_a_folder_is_one_line_naming_it(data_file, tmp_path):
    message = one_error_line(labelspace("data", "check", str(data_file), "--labels-file", str(tmp_path)))
    assert message == f"{tmp_path}: is a folder (expected a labels file: one label name a line)"


def test_a_latin1_txt_input_names_the_file_line_and_byte(saved_model, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_bytes("first line\nun caf\u00e9 renvers\u00e9\n".encode("latin-1"))
    message = one_error_line(labelspace("predict", str(saved_model), "--input", str(texts)))
    assert message.startswith(f"{texts}:2: byte 0xe9 at byte 7 of the line is not valid UTF-8")


def test_an_output_file_that_is_a_folder_names_the_option_not_a_temporary_file(saved_model, tmp_path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    message = one_error_line(labelspace("predict", str(saved_model), "hello", "--output", str(folder)))
    assert message.startswith(f"--output {folder} is a folder: expected the path of a file")
    assert ".tmp" not in message and "Errno" not in message
    assert list(folder.iterdir()) == [] and [path.name for path in tmp_path.iterdir()] == ["predictions"]


def test_a_failed_folder_write_names_the_folder_not_its_temporary_copy(tmp_path):
    """An OSError while writing a model folder (here: the disk is full) names the folder, not `.NAME.tmp-*`."""
    target = tmp_path / "model"
    target.mkdir()
    (target / "kept.txt").write_text("old")

    def write(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "model.safetensors"))

    with pytest.raises(OSError) as caught:
        save_folder_atomically(target, write, overwrite=True, what="the model")
    assert str(caught.value) == f"cannot write the model folder {target}: no space left on device"
    assert caught.value.filename is None and caught.value.filename2 is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # no hidden copy left
    assert (target / "kept.txt").read_text() == "old"


# ----------------------------------------------------------------------------- hub ids


def test_an_unknown_hub_id_offline_is_one_line(tmp_path, data_file):
    result = labelspace("evaluate", "someone/no-such-model", "--data", str(data_file), env={"HF_HOME": str(tmp_path)})
    assert one_error_line(result) == (
        "model 'someone/no-such-model' is not a local folder and not a model on the hub (or not in the offline "
        "cache): HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
    )


def test_offline_the_hub_is_asked_once_and_only_the_cache(monkeypatch, tmp_path):
    """With HF_HUB_OFFLINE, one cache lookup (local_files_only): no request, so no retries and no socket."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    real = huggingface_hub.snapshot_download
    calls = []

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs, cache_dir=str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"):
        hub_model_folder("someone/no-such-model")
    assert len(calls) == 1 and calls[0]["local_files_only"] is True


def test_a_hub_id_the_hub_does_not_know_fails_at_once(monkeypatch, run_cli, data_file):
    import huggingface_hub
    from httpx2 import Request, Response
    from huggingface_hub.errors import RepositoryNotFoundError

    calls = []

    def not_found(**kwargs):
        calls.append(kwargs["repo_id"])
        response = Response(404, request=Request("GET", "https://huggingface.co/api/models/someone/typo"))
        raise RepositoryNotFoundError("404 Client Error. Repository Not Found", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)
    code, _, stderr = run_cli("evaluate", "someone/typo", "--data", str(data_file))
    assert code == 2 and "Traceback" not in stderr
    assert stderr == (
        f"{PREFIX}model 'someone/typo' is not a local folder and not a model on the hub (or not in the offline "
        "cache): the hub has no such repository (or it is private: log in with hf auth login)\n"
    )
    assert calls == ["someone/typo"]


def test_a_bad_byte_after_a_bom_is_reported_at_its_own_line_and_byte(tmp_path):
    """The BOM shifts the decoder's offsets by 3 bytes; the message still names the right line and byte."""
    from labelspace.data import DataFormatError, load

    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,labels\nab\xff,x\n")
    with pytest.raises(DataFormatError) as caught:
        load(path)
    assert (caught.value.line, caught.value.column) == (2, "text")
    assert "byte 0xff at byte 3 of the line is not valid UTF-8" in str(caught.value)


def test_a_damaged_sentence_transformers_config_names_the_file(saved_model, tmp_path):
    model = copy_of(saved_model, tmp_path)
    (model / "sentence_bert_config.json").write_text('{"max_seq_length": 12', encoding="utf-8")
    message = one_error_line(labelspace("predict", str(model), "hello"))
    assert message.startswith(f"{model / 'sentence_bert_config.json'}:1:22: not valid JSON")
