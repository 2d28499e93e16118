"""Inference: one scoring path for every backend (`Predictor`), and the exported graphs it can run."""

from labelspace.inference.onnx import OnnxRunner
from labelspace.inference.onnx_export import OnnxExport, export_onnx
from labelspace.inference.predictor import BACKENDS, Predictor, SimilarExample, TorchRunner, set_threads

__all__ = [
    "BACKENDS",
    "OnnxExport",
    "OnnxRunner",
    "Predictor",
    "SimilarExample",
    "TorchRunner",
    "export_onnx",
    "set_threads",
]
