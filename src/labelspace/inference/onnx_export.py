"""`export_onnx`: a model folder's encoder, pooling, normalisation and head as one ONNX graph (fp32, int8).

The graph is traced from the model's own modules (`Encoder.forward` pools and normalises,
`ClassificationHead.predict_proba` applies the sigmoid / softmax), so nothing is re-implemented for ONNX.
torch's TorchScript-based exporter (``dynamo=False``) is used: it needs nothing beyond torch and onnx and runs
offline, where the newer exporter needs the onnxscript package.

int8 is onnxruntime's dynamic quantization (int8 weights, activations quantized on the fly). It shifts the
scores a little, so with dev data the per-label thresholds are re-tuned for the int8 graph's scores by the
Trainer's own tuning call (`labelspace.evaluation.thresholds.tune_thresholds`, F1, the objective and
``min_positives`` the model was tuned with, a global fallback) and stored in ``onnx/labelspace_onnx.json``
beside the dev macro-F1 of the fp32 graph (the model's thresholds) and of the int8 graph (its own). Scores
and decisions go through `Predictor` (the model's scoring mode and decision rule), as every prediction does.

Example:
    >>> import tempfile
    >>> from labelspace.models.testing import tiny_model_folder
    >>> model = LabelspaceModel.from_pretrained(tiny_model_folder(tempfile.mkdtemp()), labels=["a", "b"])
    >>> folder = model.save(tempfile.mkdtemp() + "/run/model")
    >>> export = export_onnx(folder.parent, quantize="int8")  # a run folder: written into its model/onnx/
    >>> [path.name for path in export.files]
    ['labelspace.onnx', 'labelspace_int8.onnx', 'labelspace_onnx.json']
    >>> export.record["outputs"]
    ['embedding', 'probabilities']
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labelspace import __version__
from labelspace.data.datasets import LabeledDataset
from labelspace.evaluation.report import decision_report
from labelspace.evaluation.thresholds import OBJECTIVES, tune_thresholds
from labelspace.inference.onnx import (
    GRAPH_FILES,
    GRAPH_INPUTS,
    ONNX_FOLDER,
    RECORD_FILE,
    RECORD_FORMAT,
    RECORD_VERSION,
    OnnxRunner,
    export_command,
    file_sha256,
    require_onnxruntime,
)
from labelspace.inference.predictor import Predictor, set_threads
from labelspace.models.encoder import save_folder_atomically
from labelspace.models.model import LabelspaceModel, resolve_model_folder
from labelspace.training.arguments import TrainingArguments

__all__ = ["DEFAULT_OPSET", "QUANTIZATIONS", "OnnxExport", "export_onnx"]

#: The ONNX opset the graphs are written with (LayerNormalization is one op from 17 on).
DEFAULT_OPSET = 17
#: What ``quantize`` accepts besides None.
QUANTIZATIONS = ("int8",)
#: How the int8 graph is quantized (recorded in ``labelspace_onnx.json``).
INT8_QUANTIZATION = {"method": "dynamic", "weights": "int8, per channel", "activations": "uint8, per batch"}
_AXES = {0: "batch", 1: "sequence"}
_EXAMPLE_TEXTS = ["a short text", "a longer text, so that the example batch holds padding to mask out"]


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote: the ``onnx/`` folder, its files, and the record saved as ``labelspace_onnx.json``."""

    folder: Path
    files: list[Path]
    record: dict[str, Any]

    @property
    def dev_macro_f1(self) -> dict[str, float] | None:
        """Dev macro-F1 of each graph (``fp32``, and ``int8`` with its re-tuned thresholds), None without dev."""
        dev = self.record.get("dev")
        return None if dev is None else dict(dev["macro_f1"])


class _GraphModule(nn.Module):
    """``(input_ids, attention_mask) -> embedding[, probabilities]`` with the model's own modules."""

    def __init__(self, model: LabelspaceModel, with_head: bool) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.head = model.head if with_head else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        embedding = self.encoder({"input_ids": input_ids, "attention_mask": attention_mask})
        if self.head is None:
            return embedding
        return embedding, self.head.predict_proba(embedding)


def _check_options(model: LabelspaceModel, folder: Path, quantize: str | None, head: bool | None, opset: int) -> bool:
    """Whether the graph gets the head's output; raises ValueError for a bad option."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} or None, got {quantize!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 14 <= opset <= 20:
        raise ValueError(f"opset must be an integer from 14 to 20, got {opset!r}")
    if head and model.head is None:
        raise ValueError(
            f"{folder} has no classification head (an embedding-only model): the graph cannot return "
            "probabilities; export the embedding alone (no --head, or head=None / head=False)"
        )
    return model.head is not None if head is None else bool(head)


def _write_graph(model: LabelspaceModel, with_head: bool, path: Path, opset: int) -> list[str]:
    """Trace the model into ``path``; returns the output names."""
    outputs = ["embedding", "probabilities"] if with_head else ["embedding"]
    module = _GraphModule(model, with_head).eval()
    example = model.encoder.tokenize(_EXAMPLE_TEXTS)
    inputs = tuple(example[name].to(model.device) for name in GRAPH_INPUTS)
    axes = {name: _AXES for name in GRAPH_INPUTS} | {name: {0: "batch"} for name in outputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            input_names=list(GRAPH_INPUTS),
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
        )
    return outputs


def _quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization of ``source`` into ``target``: int8 weights with one scale per output
    channel (all-MiniLM-L6-v2 on the demo test set: embedding cosine to fp32 0.994 on average, against 0.966
    with one scale per tensor), activations quantized per batch."""
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime's quantizer logs advice on the root logger (configuring it on first use); keep both away
    root = logging.getLogger()
    handler = logging.NullHandler()

    def not_onnxruntime(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname

    root.addHandler(handler)
    root.addFilter(not_onnxruntime)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.removeFilter(not_onnxruntime)
        root.removeHandler(handler)


def _tuning_options(model: LabelspaceModel, objective: str | None) -> dict[str, Any]:
    """The options of the Trainer's threshold tuning for ``model``: those it was tuned with, else the defaults."""
    saved = model.metadata.get("thresholds")
    saved = saved if isinstance(saved, dict) else {}
    extra = saved.get("extra") if isinstance(saved.get("extra"), dict) else {}
    defaults = TrainingArguments()
    return {
        "objective": objective or saved.get("objective") or defaults.threshold_objective,
        "min_positives": int(extra.get("min_positives", defaults.min_positives)),
    }


def _tunes_thresholds(model: LabelspaceModel) -> bool:
    """Whether the model's scores are independent per-label probabilities (thresholds matter): a multi-label
    head, or kNN votes."""
    if model.scoring.mode == "knn":
        return True
    return model.head is not None and model.head.kind == "multi_label"


def _aligned_dev(dev: LabeledDataset, model: LabelspaceModel) -> LabeledDataset:
    if not isinstance(dev, LabeledDataset):
        raise ValueError(f"dev must be a LabeledDataset (texts with labels), got {type(dev).__name__}")
    if model.label_set is None or (model.head is None and model.index is None):
        raise ValueError("dev data scores predicted labels, but this model has neither a head nor a kNN index")
    if len(dev) == 0:
        raise ValueError(f"{dev.source or 'dev'}: no texts")
    if dev.label_set.names == model.label_set.names:
        return dev
    known_as = f"the model's {len(model.label_set)} labels"
    aligned, _ = dev.with_label_set(model.label_set, where=dev.source or "dev", known_as=known_as)
    return aligned


def _macro_f1(predictor: Predictor, y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro-F1 of the predictor's decisions (its thresholds and the model's decision rule)."""
    report = decision_report(y_true, scores, thresholds=predictor.thresholds, predictions=predictor.decide(scores))
    return float(report["macro_f1"])


def _evaluate_on_dev(
    model: LabelspaceModel,
    runners: dict[str, OnnxRunner],
    dev: LabeledDataset,
    objective: str | None,
    batch_size: int,
    show_progress_bar: bool | None,
) -> dict[str, Any]:
    """The record's ``dev`` and ``int8`` sections: macro-F1 per graph, int8 thresholds re-tuned on ``dev``."""
    y_true = dev.labels.to_dense()
    f1: dict[str, float] = {}
    fp32 = Predictor(model, runner=runners["fp32"])
    f1["fp32"] = _macro_f1(fp32, y_true, fp32.predict_proba(dev.texts, batch_size, show_progress_bar))
    sections: dict[str, Any] = {}
    if "int8" in runners:
        int8_scores = Predictor(model, runner=runners["int8"]).predict_proba(dev.texts, batch_size, show_progress_bar)
        thresholds = None
        tuning: dict[str, Any] | None = None
        if _tunes_thresholds(model):
            options = _tuning_options(model, objective)
            result = tune_thresholds(y_true, int8_scores, metric="f1", fallback="global", **options)
            thresholds = result.thresholds
            tuning = {**options, "tuned_on": dev.source or "dev", "texts": len(dev)}
        int8 = Predictor(model, runner=runners["int8"], thresholds=thresholds)
        f1["int8"] = _macro_f1(int8, y_true, int8_scores)
        sections["int8"] = {
            "thresholds": None if thresholds is None else thresholds.tolist(),
            "tuning": tuning,
        }
    sections["dev"] = {"source": dev.source or "dev", "texts": len(dev), "macro_f1": f1}
    return sections


def export_onnx(
    model_folder: str | os.PathLike[str],
    *,
    quantize: str | None = None,
    dev: LabeledDataset | None = None,
    head: bool | None = None,
    objective: str | None = None,
    opset: int = DEFAULT_OPSET,
    threads: int | None = None,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> OnnxExport:
    """Write the ONNX graph(s) of a model folder (or a run folder: its ``model/``) into its ``onnx/`` subfolder.

    Args:
        model_folder: the model folder or the run folder of ``labelspace train``.
        quantize: None (fp32 only) or ``"int8"`` (also ``labelspace_int8.onnx``, dynamic int8 weights).
        dev: labelled dev data. With ``quantize="int8"`` the thresholds are re-tuned on it for the int8 graph's
            scores and stored; the record holds the dev macro-F1 of each graph.
        head: whether the graph returns ``probabilities`` (the head's): None (default) when the model has a
            head; True refuses a model without one (ValueError); False exports the embedding alone.
        objective: what the int8 thresholds are tuned for (default: the objective the model's thresholds were
            tuned for, else the Trainer's default, ``macro_f1``).
        opset: the ONNX opset (14 to 20).
        threads: CPU threads for torch and onnxruntime while evaluating on dev (default all cores).
        batch_size, show_progress_bar: for the dev evaluation.

    The whole ``onnx/`` folder is built beside its place and renamed into it (`save_folder_atomically`), so
    an earlier export is replaced as a whole or not at all.
    """
    folder = resolve_model_folder(model_folder)
    model = LabelspaceModel.from_pretrained(folder)
    model.eval()
    with_head = _check_options(model, folder, quantize, head, opset)
    threads_in_use = set_threads(threads)
    aligned = None if dev is None else _aligned_dev(dev, model)
    if objective is not None and objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    precisions = ["fp32"] + (["int8"] if quantize == "int8" else [])
    record: dict[str, Any] = {}

    def write(target: Path) -> None:
        paths = {precision: target / GRAPH_FILES[precision] for precision in precisions}
        outputs = _write_graph(model, with_head, paths["fp32"], opset)
        if "int8" in paths:
            _quantize_int8(paths["fp32"], paths["int8"])
        record.update(
            {
                "format": RECORD_FORMAT,
                "version": RECORD_VERSION,
                "files": {
                    precision: {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}
                    for precision, path in paths.items()
                },
                "opset": opset,
                "inputs": list(GRAPH_INPUTS),
                "input_dtype": "int64",
                "outputs": outputs,
                "dynamic_axes": {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]},
                "has_head": with_head,
                "head_kind": model.head.kind if with_head and model.head is not None else None,
                "labels": None if model.label_set is None else model.label_set.names,
                "dimension": model.encoder.dimension,
                "pooling": model.encoder.pooling,
                "normalize": model.encoder.normalize,
                "max_seq_length": model.encoder.max_seq_length,
                "scoring": model.scoring.to_dict(),
                "fp32_thresholds": model.thresholds.tolist(),
                "decision_rule": model.decision_rule,
                "int8": None,
                "quantization": INT8_QUANTIZATION if "int8" in paths else None,
                "dev": None,
                "exported_with": {"labelspace": __version__, "torch": torch.__version__},
            }
        )
        if aligned is not None:
            runners = {
                precision: OnnxRunner(
                    path,
                    model,
                    threads=threads_in_use,
                    name="onnx" if precision == "fp32" else "onnx-int8",
                    outputs=tuple(outputs),
                    command=export_command(model_folder, precision),
                )
                for precision, path in paths.items()
            }
            record.update(_evaluate_on_dev(model, runners, aligned, objective, batch_size, show_progress_bar))
        elif "int8" in paths:
            record["int8"] = {"thresholds": None, "tuning": None}
        (target / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    onnx_folder = save_folder_atomically(folder / ONNX_FOLDER, write, overwrite=True, what="the ONNX export")
    files = [onnx_folder / GRAPH_FILES[precision] for precision in precisions] + [onnx_folder / RECORD_FILE]
    return OnnxExport(folder=onnx_folder, files=files, record=record)
