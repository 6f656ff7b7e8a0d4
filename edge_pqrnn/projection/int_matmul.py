"""The int8 matmul op ``EdgePqrnnIntMatMul``: its options, a numpy twin of its C
arithmetic, and a .tflite holding only the op (for tests and for checking a runtime).

A portable artifact (``edge-pqrnn export --portable-kernels``) has this op in place of
every int8 ``FULLY_CONNECTED`` and ``CONV_2D``: the runtimes' builtin int8 kernels round
exact requantisation ties differently on x86 and ARM (tflite-runtime 2.14), ours has
one rule in integer C (``native/int_matmul.c``). :func:`reference` is that arithmetic in
numpy, so tests can demand bit-exact equality with the C op.

Arithmetic, per output position p and channel n (``x_zero`` folded into the bias):
``acc = bias[n] - x_zero sum_i w[n, i] + sum_i x[p, i] w[n, i]``, then
``out = clamp(out_zero + round(acc m_n 2^-s_n), act_min, act_max)`` with
``m_n 2^-s_n = x_scale w_scale[n] / out_scale`` (m_n in [2^30, 2^31)) and round half away
from zero, once, on the exact product.

Example:
    >>> x = np.array([[10, -20]], np.int8); w = np.array([[3, 4]], np.int8)
    >>> reference(x, w, np.array([5], np.int32), Geometry.fully_connected(),
    ...           x_q=(0.5, 0), w_scales=[0.25], out_q=(0.125, 0)).tolist()  # (30 - 80 + 5) * 1
    [[-45]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from edge_pqrnn.format import DEQUANTIZE_OP, INT_MATMUL_OP, QUANTIZE_OP, model_bytes, schema, signature_def
from edge_pqrnn.projection.fo_pool import as_float32, round_half_away, fixed_point_multiplier

# INT_MATMUL_OP runs an int8 FULLY_CONNECTED / CONV_2D. DEQUANTIZE_OP is the portable
# artifact's int8 -> float32 output step (one float multiply; the runtimes' ARM paths use
# a fused multiply-add and differ from x86 by an ulp); QUANTIZE_OP its float32 -> int8
# inputs (one division, round half away from zero; the ARM path multiplies by 1 / scale
# and lands exact ties such as pool weights 1/n elsewhere).
DEQUANTIZE_VERSION = 1
#: The options version this toolkit writes and its C op accepts.
INT_MATMUL_VERSION = 1
FULLY_CONNECTED, CONV_2D = 0, 1
#: TFLite ActivationFunctionType codes the op implements (NONE, RELU, RELU_N1_TO_1, RELU6).
ACTIVATIONS = (0, 1, 2, 3)
MAX_DEPTH = 65536  # values per output channel (keeps the int32 dot product exact)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """What the op computes: ``kind`` (FULLY_CONNECTED or CONV_2D: VALID, stride 1, no
    dilation) and the fused ``activation`` code."""

    kind: int = FULLY_CONNECTED
    activation: int = 0

    @classmethod
    def fully_connected(cls, activation: int = 0) -> Geometry:
        return cls(FULLY_CONNECTED, activation)

    @classmethod
    def conv_2d(cls, activation: int = 0) -> Geometry:
        return cls(CONV_2D, activation)


def options_bytes(geometry: Geometry) -> bytes:
    """The op's custom options: a flexbuffer map ``{"version", "kind", "activation"}``."""
    from flatbuffers import flexbuffers

    return bytes(flexbuffers.Dumps({"version": INT_MATMUL_VERSION, "kind": int(geometry.kind),
                                    "activation": int(geometry.activation)}))


def dequantize_options_bytes() -> bytes:
    """``EdgePqrnnDequantize``'s custom options: ``{"version": 1}``."""
    from flatbuffers import flexbuffers

    return bytes(flexbuffers.Dumps({"version": DEQUANTIZE_VERSION}))


def dequantize_reference(q: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """``EdgePqrnnDequantize``'s output, bit for bit: ``float32(q - zero) * float32(scale)``."""
    return (np.asarray(q, np.int32) - np.int32(zero)).astype(np.float32) * np.float32(scale)


def quantize_reference(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """``EdgePqrnnQuantize``'s output, bit for bit: ``clamp(round(float32(x) / float32(scale))
    + zero)``, the division in float32, half away from zero, NaN -> the zero point."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
        d = np.where(np.isnan(d), 0.0, np.clip(d, -1e6, 1e6))
        q = np.sign(d) * np.floor(np.abs(d) + 0.5)
    return np.clip(q.astype(np.int64) + int(zero), -128, 127).astype(np.int8)



def _quantize_bound(f: float, scale: float, zero: int) -> int:
    q = float(np.float32(f) / np.float32(scale))  # float division, as TFLite's quantize()
    if q > 1024.0:
        return 1024
    if q < -1024.0:
        return -1024
    return int(zero) + round_half_away(q)


def activation_range(activation: int, out_q: tuple[float, int]) -> tuple[int, int]:
    """The int8 clamp of a fused activation, as TFLite computes it."""
    scale, zero = as_float32(out_q[0]), int(out_q[1])
    lo, hi = -128, 127
    if activation in (1, 3):
        lo = max(lo, _quantize_bound(0.0, scale, zero))
    if activation == 3:
        hi = min(hi, _quantize_bound(6.0, scale, zero))
    if activation == 2:
        lo, hi = max(lo, _quantize_bound(-1.0, scale, zero)), min(hi, _quantize_bound(1.0, scale, zero))
    return lo, hi


def multipliers(x_scale: float, w_scales: Sequence[float], out_scale: float,
                channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (m_n, s_n) with ``m_n 2^-s_n = x_scale w_scale[n] / out_scale``.

    Raises:
        ValueError: a ratio of 2^30 or more (the op's Prepare fails the same way).
    """
    ms, ss = np.zeros(channels, np.int64), np.zeros(channels, np.int64)
    scales = list(w_scales)
    for n in range(channels):
        mq, s = fixed_point_multiplier(as_float32(x_scale) * as_float32(scales[0 if len(scales) == 1 else n]) / as_float32(out_scale),
                                       31)
        if s < 1:
            raise ValueError("the output scale is too small for the input and weight scales")
        ms[n], ss[n] = (0, 62) if s > 62 else (mq, s)
    return ms, ss


def _windows(x: np.ndarray, w: np.ndarray, kind: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """x as rows of the values each output position reads, and the output shape."""
    n = w.shape[0]
    if kind == FULLY_CONNECTED:
        k = w.shape[1]
        rows = x.reshape(-1, k)
        return rows, (rows.shape[0], n)
    b, h, wd, c = x.shape
    kh, kw = w.shape[1], w.shape[2]
    oh, ow = h - kh + 1, wd - kw + 1
    cols = np.stack([x[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)], axis=3)
    return cols.reshape(b * oh * ow, kh * kw * c), (b, oh, ow, n)


def reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, geometry: Geometry,
              x_q: tuple[float, int], w_scales: Sequence[float], out_q: tuple[float, int]) -> np.ndarray:
    """The op's output, bit for bit. ``x`` int8 [rows, K] (any shape whose size is a
    multiple of K) or [B, H, W, C]; ``w`` int8 [N, K] or [N, KH, KW, C]; ``bias`` int32 [N]
    or None; ``w_scales`` one scale or one per channel (zero points are 0)."""
    x, w = np.asarray(x, np.int8), np.asarray(w, np.int8)
    n = w.shape[0]
    rows, shape = _windows(x, w, geometry.kind)
    w2 = w.reshape(n, -1).astype(np.int64)
    folded = (np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64)) \
        - np.int64(int(x_q[1])) * w2.sum(axis=1)
    acc = rows.astype(np.int64) @ w2.T + folded
    m, s = multipliers(x_q[0], w_scales, out_q[0], n)
    p = acc * m
    q = int(out_q[1]) + ((p + (np.int64(1) << (s - 1)) - (p < 0)) >> s)  # half away from zero
    lo, hi = activation_range(geometry.activation, out_q)
    return np.clip(q, lo, hi).astype(np.int8).reshape(shape)


def int_matmul_model(x_shape: Sequence[int], w: np.ndarray, bias: np.ndarray | None, geometry: Geometry,
                     x_q: tuple[float, int], w_scales: Sequence[float], out_q: tuple[float, int],
                     custom_options: bytes | None = None, w_zero: int = 0, x_type: int | None = None,
                     constant_weights: bool = True) -> bytes:
    """A .tflite holding one ``EdgePqrnnIntMatMul`` node: input ``x``, constant weights and
    bias, output ``y`` (signature ``serving_default``). ``custom_options``, ``w_zero``,
    ``x_type`` and ``constant_weights=False`` (weights as a second input) write invalid
    models for testing the op's Prepare."""
    s = schema()
    w = np.asarray(w, np.int8)
    model, graph = s.ModelT(), s.SubGraphT()
    model.version, model.buffers = 3, [s.BufferT()]
    graph.tensors = []

    def quant(scales: Sequence[float], zeros: Sequence[int]):
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = [float(v) for v in scales], [int(v) for v in zeros], 0
        return q

    def tensor(name: str, shape: Sequence[int], ttype: int, q=None, data: bytes | None = None) -> int:
        t = s.TensorT()
        t.name, t.type, t.shape, t.quantization = name, ttype, [int(d) for d in shape], q
        t.buffer = 0
        if data is not None:
            buf = s.BufferT()
            buf.data = list(data)
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    n = w.shape[0]
    x = tensor("x", x_shape, s.TensorType.INT8 if x_type is None else x_type, quant([x_q[0]], [x_q[1]]))
    wt = tensor("w", w.shape, s.TensorType.INT8, quant(w_scales, [w_zero] * len(w_scales)),
                w.tobytes() if constant_weights else None)
    inputs = [x, wt]
    if bias is not None:
        bias = np.asarray(bias, np.int32)
        inputs.append(tensor("b", [n], s.TensorType.INT32,
                             quant([x_q[0] * ws for ws in w_scales], [0] * len(w_scales)), bias.tobytes()))
    if geometry.kind == CONV_2D and w.ndim == 4 and len(x_shape) == 4:
        out_shape = [x_shape[0], x_shape[1] - w.shape[1] + 1, x_shape[2] - w.shape[2] + 1, n]
    else:  # fully connected (or an invalid conv, for Prepare to refuse): Prepare resizes it
        out_shape = [max(int(np.prod(x_shape)) // int(np.prod(w.shape[1:])), 1), n]
    y = tensor("y", out_shape, s.TensorType.INT8, quant([out_q[0]], [out_q[1]]))
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode, code.version = INT_MATMUL_OP, 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, inputs, [y]
    op.customOptions = list(options_bytes(geometry) if custom_options is None else custom_options)
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    graph_inputs = [x] if constant_weights else [x, wt]
    graph.operators, graph.inputs, graph.outputs = [op], graph_inputs, [y]
    model.operatorCodes, model.subgraphs = [code], [graph]

    model.signatureDefs = [signature_def([(graph.tensors[i].name, i) for i in graph_inputs], [("y", y)])]
    return model_bytes(model)


__all__ = ["CONV_2D", "DEQUANTIZE_OP", "FULLY_CONNECTED", "QUANTIZE_OP", "quantize_reference", "Geometry", "INT_MATMUL_OP", "int_matmul_model", "options_bytes",
           "dequantize_reference", "reference"]
