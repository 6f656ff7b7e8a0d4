"""Quantization of the features -> logits network (the part of the artifact after the op)."""

from edge_pqrnn.quant.ptq import SCHEMES, QuantizationResult, convert

__all__ = ["SCHEMES", "QuantizationResult", "convert"]
