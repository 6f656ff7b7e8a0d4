"""Small helpers for editing a TFLite ``ModelT`` (the schema's object tree), shared by
the graph passes of :mod:`edge_pqrnn.converters.tflite_fuse`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_pqrnn.format import builtin_code, schema


def builtin_of(model, op) -> int:
    """The builtin operator code of ``op``."""
    return builtin_code(model.operatorCodes[op.opcodeIndex])


def no_activation(op) -> bool:
    options = op.builtinOptions
    return options is None or getattr(options, "fusedActivationFunction", 0) == 0


def per_tensor_int8(graph, index: int) -> bool:
    s = schema()
    t = graph.tensors[index]
    q = t.quantization
    return (t.type == s.TensorType.INT8 and q is not None and q.scale is not None and len(q.scale) == 1
            and q.zeroPoint is not None and len(q.zeroPoint) == 1)


def drop_unused_tensors(model, graph) -> None:
    """Remove tensors no operator, input or output refers to, and renumber the rest."""
    used: set[int] = set(int(i) for i in graph.inputs) | set(int(i) for i in graph.outputs)
    for op in graph.operators:
        used.update(int(i) for i in op.inputs if int(i) >= 0)
        used.update(int(i) for i in op.outputs)
        if op.intermediates is not None:
            used.update(int(i) for i in op.intermediates)
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}
    graph.tensors = [graph.tensors[i] for i in keep]
    graph.inputs = [new_index[int(i)] for i in graph.inputs]
    graph.outputs = [new_index[int(i)] for i in graph.outputs]
    for op in graph.operators:
        op.inputs = [new_index[int(i)] if int(i) >= 0 else -1 for i in op.inputs]
        op.outputs = [new_index[int(i)] for i in op.outputs]
        if op.intermediates is not None:
            op.intermediates = [new_index[int(i)] for i in op.intermediates]
    subgraph = model.subgraphs.index(graph)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == subgraph:
            for m in [*(sig.inputs or []), *(sig.outputs or [])]:
                m.tensorIndex = new_index[m.tensorIndex]


def int32_constant(model, graph, index: int) -> np.ndarray | None:
    t = graph.tensors[index]
    data = model.buffers[t.buffer].data if t.buffer else None
    if t.type != schema().TensorType.INT32 or data is None or len(data) == 0:
        return None
    return np.frombuffer(bytes(np.asarray(data, np.uint8)), np.int32).reshape(list(t.shape) or []).copy()


def add_int32_constant(model, graph, values) -> int:
    """A new constant int32 tensor (its own buffer, so no other operator sees the change)."""
    s = schema()
    values = np.asarray(values, np.int32)
    buf = s.BufferT()
    buf.data = list(values.tobytes())
    model.buffers.append(buf)
    t = s.TensorT()
    t.name, t.type, t.shape, t.buffer = "", s.TensorType.INT32, list(values.shape), len(model.buffers) - 1
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def add_tensor(graph, shape: Sequence[int], like: int | None = None) -> int:
    """A new activation tensor: int32 of ``shape``, or typed and quantized like ``like``."""
    s = schema()
    t = s.TensorT()
    t.name, t.shape, t.buffer, t.type = "", list(shape), 0, s.TensorType.INT32
    if like is not None:
        t.type, t.quantization = graph.tensors[like].type, graph.tensors[like].quantization
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def builtin_code_index(model, builtin: int) -> int:
    """The index of ``builtin``'s operator code, added when the model has none."""
    s = schema()
    for i, code in enumerate(model.operatorCodes):
        if builtin_code(code) == builtin and code.builtinCode != s.BuiltinOperator.CUSTOM:
            return i
    code = s.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def operator(model, builtin: int, inputs: Sequence[int], outputs: Sequence[int], options_type: int = 0,
              options: Any = None) -> Any:
    op = schema().OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = builtin_code_index(model, builtin), list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def empty_orphan_buffers(model) -> None:
    """Empty the constant buffers no tensor or metadata entry refers to any more (the
    dropped shape ops' constants): they would still be written into the file."""
    used = {int(t.buffer) for graph in model.subgraphs for t in graph.tensors}
    used |= {int(m.buffer) for m in model.metadata or []}
    for index, buffer in enumerate(model.buffers):
        if index not in used:
            buffer.data = None


def drop_dead_operators(graph) -> None:
    """Remove operators whose outputs nothing reads (repeatedly)."""
    while True:
        read = {int(t) for op in graph.operators for t in op.inputs} | {int(t) for t in graph.outputs}
        live = [op for op in graph.operators if any(int(t) in read for t in op.outputs)]
        if len(live) == len(graph.operators):
            return
        graph.operators = live
