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
from typing import Any

import numpy as np

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.format import FO_POOL_OP, ONNX_DOMAIN
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

    import onnx

    twin, pools = scan_twin(onnx.load_from_string(float_model))
    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-onnx-") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(twin.SerializeToString())
        # Shape inference + graph cleanup first, as onnxruntime's quantizer recommends.
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, _Calibration(calibration_texts, spec), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=list(op_types) if op_types else None)
        return without_scan_twin(onnx.load(dst), pools).SerializeToString()


#: Name prefix of the nodes that stand in for an ``EdgePqrnnFoPool`` node while quantizing.
TWIN_PREFIX = "edge_pqrnn_fo_pool_twin/"


def scan_twin(model: Any) -> tuple[Any, list[Any]]:
    """The model with each ``EdgePqrnnFoPool`` node (a graph with dynamic tokens) replaced
    by the same recurrence in standard ops, a ``Scan`` over the token axis: onnxruntime's
    quantizer runs the graph in sessions of its own, which cannot load our op library.
    The recurrence stays float (no MatMul/Conv in it), so the calibrated ranges are those
    of the graph with the op; :func:`without_scan_twin` puts the nodes back.

    Args:
        model: an ``onnx.ModelProto`` (changed in place).

    Returns:
        ``(model, the FoPool nodes taken out)``; no nodes: the model as it was.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    pools = [n for n in graph.node if n.domain == ONNX_DOMAIN and n.op_type == FO_POOL_OP]
    for pool in pools:
        at = list(graph.node).index(pool)
        reverse = next((a.i for a in pool.attribute if a.name == "reverse"), 0)
        (z, k, o), out, p = pool.input, pool.output[0], TWIN_PREFIX + pool.name + "/"
        # Scan's body: one step, c = c + k (z - c) (from c = 0: the op's first step k z, up to the sign of a zero).
        body = helper.make_graph(
            [helper.make_node("Sub", ["z_t", "c"], ["zc"]), helper.make_node("Mul", ["k_t", "zc"], ["kzc"]),
             helper.make_node("Add", ["c", "kzc"], ["c_next"]), helper.make_node("Identity", ["c_next"], ["c_t"])],
            "fo_pool_step", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c", "z_t", "k_t")],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c_next", "c_t")])
        nodes = [
            helper.make_node("Shape", [z], [p + "shape"], name=p + "shape"),
            helper.make_node("Constant", [], [p + "axes"], name=p + "axes",
                             value=helper.make_tensor(p + "axes_value", TensorProto.INT64, [2], [0, 2])),
            helper.make_node("Gather", [p + "shape", p + "axes"], [p + "state_shape"], name=p + "state_shape"),
            helper.make_node("ConstantOfShape", [p + "state_shape"], [p + "c0"], name=p + "c0",
                             value=helper.make_tensor(p + "zero", TensorProto.FLOAT, [1], [0.0])),
            helper.make_node("Scan", [p + "c0", z, k], [p + "c_last", p + "cells"], name=p + "scan", body=body,
                             num_scan_inputs=2, scan_input_axes=[1, 1], scan_input_directions=[reverse, reverse],
                             scan_output_axes=[1], scan_output_directions=[reverse]),
            helper.make_node("Mul", [o, p + "cells"], [out], name=p + "out"),
        ]
        graph.node.remove(pool)
        for offset, node in enumerate(nodes):
            graph.node.insert(at + offset, node)
    return model, pools


def without_scan_twin(model: Any, pools: Sequence[Any]) -> Any:
    """Undo :func:`scan_twin` on the quantized model: each twin's nodes go and its
    ``EdgePqrnnFoPool`` node comes back in the place of the last, without the initializers
    only the twins used (onnxruntime folds their constants).

    Args:
        model: the quantized ``onnx.ModelProto`` (changed in place).
        pools: the nodes :func:`scan_twin` returned.

    Returns:
        ``model``.
    """
    graph = model.graph
    for pool in pools:
        prefix = TWIN_PREFIX + pool.name + "/"
        nodes = list(graph.node)
        twin = [i for i, n in enumerate(nodes) if n.name.startswith(prefix)]
        if len(twin) < 2:
            raise ConfigError(f"the quantizer dropped the stand-in of node {pool.name!r}: quantize with "
                              "onnxruntime 1.16 or newer, or export without --int8")
        for i in reversed(twin):
            graph.node.remove(nodes[i])
        # Where the twin's last node was (its output Mul: after z, k and o exist; onnxruntime
        # may have moved the Shape of z up to z).
        graph.node.insert(twin[-1] - (len(twin) - 1), pool)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return model
