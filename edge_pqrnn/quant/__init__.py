"""Quantization of the features -> logits network (the part of the artifact after the op):
TFLite full-integer PTQ (:mod:`edge_pqrnn.quant.ptq`) and ONNX static QDQ
(:mod:`edge_pqrnn.quant.onnx_qdq`, imported on use: it needs onnxruntime)."""

from edge_pqrnn.quant.ptq import SCHEMES, QuantizationResult, convert

__all__ = ["SCHEMES", "QuantizationResult", "convert"]
