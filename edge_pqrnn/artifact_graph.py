"""The rules every exported graph follows, which a runtime trusts: found crashing litert,
tf.lite or onnxruntime by the mutation campaign (tests/test_mutation.py) on resealed
files. Each check returns the first break as one line, or None;
:func:`edge_pqrnn.artifact_checks.find_problems` runs them after the table indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_pqrnn.format import builtin_code, schema


def tensor_shape(tensor: Any) -> list[int]:
    """A tensor's shape with -1 for dynamic dimensions (its shape signature if any)."""
    shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    return [int(v) for v in (shape if shape is not None else [])]


#: The quantization scales accepted (far around what an export writes).
MIN_SCALE, MAX_SCALE = 1e-9, 1e3
#: Most that two scales of one op's int8 tensors may differ by (a runtime's rescaling
#: multipliers are their ratios: litert aborted at 4.6e5; the ATIS export's reach 378).
MAX_SCALE_RATIO = 2.0**16
#: The zero-point range of each quantized tensor type (schema TensorType codes).
_ZERO_POINTS = {9: (-128, 127), 3: (0, 255), 7: (0, 0), 2: (0, 0), 4: (0, 0)}  # INT8, UINT8, INT16, INT32, INT64


def graph_problem(model: Any) -> str | None:
    """The first break of the rules every exported graph follows, which a runtime trusts
    (found crashing litert by tests/test_mutation.py): each op reads only graph inputs,
    constants or outputs of earlier ops, and writes tensors nothing else writes; each
    quantized tensor has finite positive scales, zero points in its type's range, and
    one scale per tensor or per channel of a dimension it has."""
    for g, graph in enumerate(model.subgraphs):
        tensors = graph.tensors or []
        buffers = model.buffers or []
        constant = {i for i, t in enumerate(tensors) if 0 < t.buffer < len(buffers)
                    and buffers[t.buffer].data is not None and len(buffers[t.buffer].data)}
        ready = set(int(i) for i in (graph.inputs if graph.inputs is not None else [])) | constant
        for n, op in enumerate(graph.operators or []):
            inputs = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
            missing = [i for i in inputs if i not in ready]
            if missing:
                return f"has op {n} of subgraph {g} reading tensor {missing[0]}, which nothing before it writes"
            outputs = [int(o) for o in (op.outputs if op.outputs is not None else [])]
            ranged = [float(np.max(tensors[i].quantization.scale)) for i in inputs + outputs
                      if 0 <= i < len(tensors) and tensors[i].type in (3, 9)  # UINT8, INT8
                      and tensors[i].quantization is not None and tensors[i].quantization.scale is not None
                      and len(tensors[i].quantization.scale)]
            if ranged and np.isfinite(ranged).all() and min(ranged) > 0 and max(ranged) / min(ranged) > MAX_SCALE_RATIO:
                return (f"has op {n} of subgraph {g} whose int8 tensors' quantization scales differ by more than "
                        f"{MAX_SCALE_RATIO:g}x")
            for i in outputs:
                if i in ready:
                    return f"has op {n} of subgraph {g} writing tensor {i}, which is already written or constant"
                ready.add(i)
        for i, tensor in enumerate(tensors):
            q = tensor.quantization
            scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float64)
            zeros = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
            if not len(scales) and not len(zeros):
                continue
            low, high = _ZERO_POINTS.get(tensor.type, (-(2**31), 2**31 - 1))
            shape = tensor_shape(tensor)
            channels = shape[q.quantizedDimension] if 0 <= q.quantizedDimension < len(shape) else None
            # Real scales of an export lie in 1e-6..1 (ATIS: int8 2e-4..0.22, int32 biases
            # 6e-6..3e-4); litert aborted on an activation scale of 1e-19.
            if not (np.isfinite(scales).all() and (scales >= MIN_SCALE).all() and (scales <= MAX_SCALE).all()):
                return (f"has tensor {i} of subgraph {g} with a quantization scale that is not a finite positive number "
                        f"in [{MIN_SCALE:g}, {MAX_SCALE:g}]")
            if len(zeros) != len(scales) or not ((zeros >= low) & (zeros <= high)).all():
                return f"has tensor {i} of subgraph {g} with zero points outside [{low}, {high}] or of another count"
            if len(scales) > 1 and len(scales) != channels:
                return (f"has tensor {i} of subgraph {g} with {len(scales)} scales for dimension "
                        f"{q.quantizedDimension} of shape {shape}")
    return _constant_problem(model)


#: Largest integer constant (a shape, axis, padding, slice bound) an export holds: below
#: T x F x 2. A resealed PAD of 10^9 rows made the runtime allocate until it aborted.
MAX_INTEGER_CONSTANT = 2**26
#: The builtin ops whose third input is an int32 bias (any value), not a size.
_BIASED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
#: Ops whose integer constants are row or padding counts (PAD's paddings; the int32
#: arithmetic that sizes a padding from the token count): at most the largest T. A
#: resealed padding of 10^7 made tf.lite allocate until it aborted.
_SIZE_OPS = ("PAD", "PADV2", "ADD", "SUB", "MUL")
MAX_SIZE_CONSTANT = 4096  # projection.spec.MAX_TOKENS_LIMIT


def exceeds(values: np.ndarray, limit: float) -> bool:
    """Whether an integer constant holds a value beyond ``limit`` in magnitude. The int32
    and int64 extremes are exempt: slice bounds meaning "to the end" (tf2onnx and the
    TFLite converter write them)."""
    ordinary = values[~np.isin(values, (2**31 - 1, -(2**31), 2**63 - 1, -(2**63)))]
    return bool(ordinary.size) and float(np.abs(ordinary.astype(np.float64)).max()) > limit


def _constant_problem(model: Any) -> str | None:
    """The first int32/int64 constant other than a bias with a value beyond
    :data:`MAX_INTEGER_CONSTANT` (int32 extremes excepted: "to the end" slice bounds)."""
    names = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    buffers = model.buffers or []
    for g, graph in enumerate(model.subgraphs):
        kinds = [(names.get(builtin_code(model.operatorCodes[op.opcodeIndex])), [int(i) for i in op.inputs])
                 for op in graph.operators or [] if op.inputs is not None]
        biases = {inputs[2] for kind, inputs in kinds if kind in _BIASED_OPS and len(inputs) > 2}
        sizes = {i for kind, inputs in kinds if kind in _SIZE_OPS for i in inputs}
        for i, tensor in enumerate(graph.tensors or []):
            if tensor.type not in (2, 4) or i in biases or not 0 < tensor.buffer < len(buffers):  # INT32, INT64
                continue
            data = buffers[tensor.buffer].data
            raw = bytes(np.asarray(data if data is not None else [], np.uint8))
            width = 4 if tensor.type == 2 else 8
            if len(raw) % width:
                return f"has tensor {i} of subgraph {g}, an integer constant with a partial element"
            values = np.frombuffer(raw, np.int32 if width == 4 else np.int64)
            limit = MAX_SIZE_CONSTANT if i in sizes else MAX_INTEGER_CONSTANT
            if exceeds(values, limit):
                return f"has tensor {i} of subgraph {g}, an integer constant beyond {limit:,}"
    return None


#: The builtin ops an export can hold, with their (inputs, outputs) counts (None: given
#: by the op's options; a tuple: any of these). A runtime trusts both: litert crashed on
#: a MUL recoded as a STRIDED_SLICE and on a SPLIT whose numSplits was not its outputs.
_BUILTIN_ARITY: dict[str, tuple[Any, Any]] = {
    **{op: (2, 1) for op in ("ADD", "SUB", "MUL", "DIV", "GATHER", "REDUCE_PROD", "SUM", "MEAN", "REDUCE_MAX",
                             "EXPAND_DIMS", "PAD", "TRANSPOSE", "BATCH_MATMUL", "MAXIMUM", "MINIMUM",
                             "SQUARED_DIFFERENCE", "GREATER")},
    **{op: (1, 1) for op in ("QUANTIZE", "DEQUANTIZE", "SHAPE", "SQUEEZE", "LOGISTIC", "TANH", "RELU", "CAST",
                             "SOFTMAX", "RSQRT", "SQRT", "NEG")},
    **{op: (3, 1) for op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "SLICE", "PADV2", "SELECT_V2")},
    "STRIDED_SLICE": (4, 1), "RESHAPE": ((1, 2), 1), "SPLIT": (2, None), "SPLIT_V": (3, None),
    "UNPACK": (1, None), "PACK": (None, 1), "CONCATENATION": (None, 1),
}
#: Options whose value counts the op's outputs (or inputs, for PACK).
_COUNT_OPTIONS = {"SPLIT": ("numSplits", "outputs"), "SPLIT_V": ("numSplits", "outputs"),
                  "UNPACK": ("num", "outputs"), "PACK": ("valuesCount", "inputs")}
#: Ranges of the options fields a runtime indexes or loops with (name: (low, high)).
_OPTION_RANGES = {"fusedActivationFunction": (0, 5), "padding": (0, 1), "strideW": (1, 64), "strideH": (1, 64),
                  "dilationWFactor": (1, 64), "dilationHFactor": (1, 64), "axis": (-8, 8), "batchDims": (-8, 8),
                  "beginMask": (0, 255), "endMask": (0, 255), "ellipsisMask": (0, 0), "newAxisMask": (0, 255),
                  "shrinkAxisMask": (0, 255), "weightsFormat": (0, 0), "depthMultiplier": (1, 1 << 16),
                  "quantizedBiasType": (0, 20)}


def op_problem(model: Any) -> str | None:
    """The first builtin op that is not one an export holds, has another number of inputs
    or outputs than its kind takes (or its options say), or options out of range."""
    names = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    for g, graph in enumerate(model.subgraphs):
        for n, op in enumerate(graph.operators or []):
            name = names.get(builtin_code(model.operatorCodes[op.opcodeIndex]), "?")
            if name == "CUSTOM":
                continue  # ours only (checked below), and our op library checks its own options
            where = f"op {n} of subgraph {g} ({name})"
            if name not in _BUILTIN_ARITY:
                return f"has {where}, a builtin op no edge-pqrnn export holds"
            counts = {"inputs": len(op.inputs if op.inputs is not None else []),
                      "outputs": len(op.outputs if op.outputs is not None else [])}
            options = vars(op.builtinOptions) if op.builtinOptions is not None else {}
            for side, want in zip(("inputs", "outputs"), _BUILTIN_ARITY[name]):
                if name in _COUNT_OPTIONS and _COUNT_OPTIONS[name][1] == side:
                    want = options.get(_COUNT_OPTIONS[name][0])
                    if not isinstance(want, int) or want < 1:
                        return f"has {where} with {_COUNT_OPTIONS[name][0]} {want!r}"
                if want is None:
                    if counts[side] < 1:
                        return f"has {where} with no {side}"
                elif counts[side] not in (want if isinstance(want, tuple) else (want,)):
                    return f"has {where} with {counts[side]} {side} where it takes {want}"
            for key, value in options.items():
                low, high = _OPTION_RANGES.get(key, (None, None))
                if low is not None and isinstance(value, (int, float)) and not low <= value <= high:
                    return f"has {where} with option {key} = {value!r} outside [{low}, {high}]"
    return None


__all__ = ["MAX_INTEGER_CONSTANT", "builtin_code", "exceeds", "graph_problem", "op_problem", "tensor_shape"]
