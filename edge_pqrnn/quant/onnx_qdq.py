"""int8 quantization of the float .onnx (features -> logits) with onnxruntime's static
QDQ quantizer: the ONNX counterpart of :mod:`edge_pqrnn.quant.ptq`, calibrated on the
same representative texts.

Example:
    >>> int8 = quantize_int8(float_onnx_bytes, run.spec, texts)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection.spec import ProjectionSpec

#: Op types the int8 quantizer touches: the matmuls and convolutions, which hold nearly
#: all weights. Quantizing the QRNN's elementwise gates too (onnxruntime's default)
#: adds a requantization per unrolled step (measured: lower agreement, see docs/onnx.md).
INT8_OP_TYPES = ("MatMul", "Conv", "Gemm")


def _require_quantizer() -> None:
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"int8 ONNX needs onnxruntime's quantizer ({exc}): `pip install onnx onnxruntime`") from exc


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over projected texts."""

    def __init__(self, texts: Sequence[str], spec: ProjectionSpec, batch_size: int = 32) -> None:
        from edge_pqrnn.projection.reference import project

        self._batches = []
        for i in range(0, len(texts), batch_size):
            p = project(list(texts[i : i + batch_size]), spec)
            self._batches.append({"features": p.features, "mask": p.mask, "pool_weights": p.pool_weights})
        self._iter = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def quantize_int8(float_model: bytes, spec: ProjectionSpec, calibration_texts: Sequence[str], *,
                  op_types: Sequence[str] | None = INT8_OP_TYPES, per_channel: bool = True) -> bytes:
    """Static int8 quantization (QDQ format) with onnxruntime's quantizer.

    Activations are calibrated (MinMax) on the projected ``calibration_texts``: the same
    texts the TFLite export calibrates on (:func:`edge_pqrnn.quant.ptq.representative_texts`).

    Args:
        float_model: the float .onnx bytes.
        spec: the run's projection spec (to project the calibration texts).
        calibration_texts: representative texts.
        op_types: op types to quantize (None: onnxruntime's default, every op it can).
        per_channel: per-output-channel weight scales.

    Returns:
        The int8 QDQ .onnx bytes (metadata_props are not carried over: add them again).

    Raises:
        ConfigError: no calibration texts.

    Example:
        >>> int8 = quantize_int8(proto.SerializeToString(), run.spec, texts)  # doctest: +SKIP
    """
    if not calibration_texts:
        raise ConfigError("int8 ONNX needs calibration texts: pass training texts (representative_texts)")
    _require_quantizer()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-onnx-") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(float_model)
        # Shape inference + graph cleanup first, as onnxruntime's quantizer recommends.
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, _Calibration(calibration_texts, spec), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=list(op_types) if op_types else None)
        return Path(dst).read_bytes()
