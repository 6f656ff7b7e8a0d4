"""The fo-pooling op ``EdgePqrnnFoPool``: its options, a numpy twin of its C arithmetic,
and a .tflite holding only the op (for tests and for checking a runtime).

The op replaces one direction of one QRNN layer's unrolled int8 recurrence
(``c_t = c_{t-1} + k_t (z_t - c_{t-1})``, ``h_t = o_t c_t``; see
:class:`edge_pqrnn.model.BiQRNN`) with integer arithmetic that is the same on every ISA.
:func:`reference` is that arithmetic in numpy, step for step, so tests can demand
bit-exact equality with the C op (``native/fo_pool.c``).

Example:
    >>> q = Quantization(z=(1 / 128, 0), k=(1 / 256, -128), o=(1 / 256, -128), out=(1 / 128, 0))
    >>> z = np.full((1, 3, 1), 64, np.int8); k = np.full((1, 3, 1), 0, np.int8)  # k = 0.5
    >>> o = np.full((1, 3, 1), 127, np.int8)  # o ~ 1
    >>> reference(z, k, o, q)[0, :, 0].tolist()  # c = 0.25, 0.375, 0.4375 (z = 0.5)
    [32, 48, 56]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_pqrnn.format import FO_POOL_OP, model_bytes, schema, signature_def

#: The options version this toolkit writes and its C op accepts.
FO_POOL_VERSION = 1
STATE_BITS = 16  # the state is kept in units of z_scale / 2^16
GATE_BITS = 24  # k as a Q24 fraction, clamped to [0, 1]: a gate


@dataclasses.dataclass(frozen=True)
class Quantization:
    """(scale, zero point) of the op's int8 tensors: inputs z, k, o and output h."""

    z: tuple[float, int]
    k: tuple[float, int]
    o: tuple[float, int]
    out: tuple[float, int]


def options_bytes(reverse: bool) -> bytes:
    """The op's custom options: a flexbuffer map ``{"version": 1, "reverse": 0|1}``."""
    from flatbuffers import flexbuffers

    return bytes(flexbuffers.Dumps({"version": FO_POOL_VERSION, "reverse": int(bool(reverse))}))


def round_half_away(x: float) -> int:
    # C: x >= 0 ? (int64_t)(x + 0.5) : -(int64_t)(-x + 0.5), on the same doubles.
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def as_float32(value: float) -> float:
    # The op reads float32 scales from the tensor; widen exactly as C's (double) does.
    return float(np.float32(value))


def fixed_point_multiplier(m: float, bits: int) -> tuple[int, int]:
    """(mq, n) with mq in [2^(bits-1), 2^bits) and mq 2^-n = m, rounded half away from
    zero, by the doubling loop of the C ops (so twin and op agree bit for bit)."""
    low, high = float(1 << (bits - 1)), float(1 << bits)
    n = 0
    while m < low and n < 200:
        m, n = m * 2.0, n + 1
    while m >= high and n > -200:
        m, n = m * 0.5, n - 1
    mq = round_half_away(m)
    if mq == 1 << bits:
        mq, n = 1 << (bits - 1), n - 1
    return mq, n


def integer_params(q: Quantization) -> tuple[np.ndarray, int, int]:
    """The op's integer parameters: the Q24 gate of every int8 code (index q + 128), the
    output multiplier and shift (``o_scale z_scale / (out_scale 2^16) = m 2^-n``).

    Raises:
        ValueError: the output scale is too small for the inputs' scales (the op's Prepare
            fails the same way).
    """
    k_scale, k_zero = as_float32(q.k[0]), int(q.k[1])
    limit = 1 << GATE_BITS
    gate = np.array([min(max(round_half_away(k_scale * float(code - k_zero) * float(limit)), 0), limit)
                     for code in range(-128, 128)], np.int64)
    mq, n = fixed_point_multiplier((as_float32(q.o[0]) * as_float32(q.z[0])) / (as_float32(q.out[0]) * float(1 << STATE_BITS)), 24)
    if n < 1:
        raise ValueError("the output scale is too small for the inputs' scales")
    return gate, (0 if n > 62 else mq), min(n, 63)


def _shift_round(x: np.ndarray, n: int) -> np.ndarray:
    return (x + (np.int64(1) << np.int64(n - 1))) >> np.int64(n)  # arithmetic shift: floor


def reference(z: np.ndarray, k: np.ndarray, o: np.ndarray, q: Quantization, reverse: bool = False) -> np.ndarray:
    """The op's output for int8 ``z``, ``k``, ``o`` of shape [B, T, H], bit for bit."""
    gate, multiplier, shift = integer_params(q)
    z, k, o = (np.asarray(a, np.int8) for a in (z, k, o))
    out = np.empty(z.shape, np.int8)
    c = np.zeros((z.shape[0], z.shape[2]), np.int64)
    steps = range(z.shape[1] - 1, -1, -1) if reverse else range(z.shape[1])
    for t in steps:
        target = (z[:, t].astype(np.int64) - int(q.z[1])) << np.int64(STATE_BITS)
        # k in [0, 1]: c moves towards z and never past it, so no product leaves int64
        c = c + _shift_round(gate[k[:, t].astype(np.int64) + 128] * (target - c), GATE_BITS)
        h = int(q.out[1]) + _shift_round((o[:, t].astype(np.int64) - int(q.o[1])) * np.int64(multiplier) * c,
                                         min(shift, 62))
        out[:, t] = np.clip(h, -128, 127)
    return out


def reference_float(z: np.ndarray, k: np.ndarray, o: np.ndarray, reverse: bool = False) -> np.ndarray:
    """The float op of an .onnx (``ai.edge_pqrnn.EdgePqrnnFoPool``, ``native/projection_ort.c``)
    for float32 ``z``, ``k``, ``o`` of shape [B, T, H], bit for bit: the same float32 steps
    as the unrolled graph (``c = k z`` at the first step, then ``c + k (z - c)``; ``h = o c``)."""
    z, k, o = (np.asarray(a, np.float32) for a in (z, k, o))
    cells = np.empty(z.shape, np.float32)
    steps = range(z.shape[1] - 1, -1, -1) if reverse else range(z.shape[1])
    c = None
    for t in steps:
        c = k[:, t] * z[:, t] if c is None else c + k[:, t] * (z[:, t] - c)
        cells[:, t] = c
    return o * cells


def fo_pool_model(shape: tuple[int, int, int], q: Quantization, reverse: bool = False,
                  custom_options: bytes | None = None, input_type: int | None = None,
                  quantize_output: bool = True) -> bytes:
    """A .tflite holding one ``EdgePqrnnFoPool`` node: inputs ``z``, ``k``, ``o``, output ``h``
    (signature ``serving_default``).

    Args:
        shape: [B, T, H] of every tensor.
        q: the tensors' quantization.
        reverse: walk the steps from T-1 down to 0.
        custom_options: raw options to write instead (for testing the op's validation).
        input_type: a TensorType for the inputs other than INT8 (for testing Prepare).
        quantize_output: False leaves the output without quantization (for testing Prepare).
    """
    s = schema()
    model, graph = s.ModelT(), s.SubGraphT()
    model.version, model.buffers = 3, [s.BufferT()]
    graph.tensors = []

    def tensor(name: str, scale_zero: tuple[float, int] | None, ttype: int) -> int:
        t = s.TensorT()
        t.name, t.type, t.shape, t.buffer = name, ttype, list(shape), 0
        if scale_zero is not None:
            t.quantization = s.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [float(scale_zero[0])], [int(scale_zero[1])]
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    in_type = s.TensorType.INT8 if input_type is None else input_type
    inputs = [tensor(name, value, in_type) for name, value in (("z", q.z), ("k", q.k), ("o", q.o))]
    output = tensor("h", q.out if quantize_output else None, s.TensorType.INT8)
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode, code.version = FO_POOL_OP, 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, inputs, [output]
    op.customOptions = list(options_bytes(reverse) if custom_options is None else custom_options)
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    graph.operators, graph.inputs, graph.outputs = [op], inputs, [output]
    model.operatorCodes, model.subgraphs = [code], [graph]

    model.signatureDefs = [signature_def(list(zip(("z", "k", "o"), inputs)), [("h", output)])]
    return model_bytes(model)


__all__ = ["FO_POOL_OP", "Quantization", "fo_pool_model", "options_bytes", "reference", "reference_float"]
