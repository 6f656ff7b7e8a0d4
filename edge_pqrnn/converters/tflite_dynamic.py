"""Pass 1b: the token axis follows the text. The projection op sizes its outputs to the
batch's longest text and the constants that pinned the body to T are freed; see
:mod:`edge_pqrnn.converters.tflite_fuse` for what each rewrite does and the pass order."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_pqrnn.converters.tflite_graph import (add_int32_constant, add_tensor, builtin_of, drop_dead_operators,
                                              drop_unused_tensors, empty_orphan_buffers, int32_constant, operator,
                                              per_tensor_int8)
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.format import PROJECTION_OP, decode_name, schema
from edge_pqrnn.projection.ops import op_options_bytes
from edge_pqrnn.projection.spec import ProjectionSpec


def unrolled_over_tokens(model, spec: ProjectionSpec) -> bool:
    """Whether the first subgraph still has the recurrence unrolled into T steps (an
    UNPACK of T rows: a float body, whose recurrence no pass fuses). Such a body computes
    T rows whatever the text."""
    unpack = schema().BuiltinOperator.UNPACK
    return any(builtin_of(model, op) == unpack and getattr(op.builtinOptions, "num", 0) == spec.max_tokens
               for op in model.subgraphs[0].operators)


def _resize_projection_outputs(model, graph, spec: ProjectionSpec) -> None:
    """The projection op gets the ``dynamic_tokens`` option and its features, mask and
    pool_weights a -1 token axis.

    Raises:
        ArtifactError: the first operator is not the projection, or the recurrence is
            unrolled over T.
    """
    from flatbuffers import flexbuffers

    projection = graph.operators[0]
    if decode_name(model.operatorCodes[projection.opcodeIndex].customCode) != PROJECTION_OP:
        raise ArtifactError("dynamic_tokens runs after prepend_projection (the projection op comes first)")
    if unrolled_over_tokens(model, spec):
        raise ArtifactError(f"the recurrence is unrolled over T={spec.max_tokens} steps (a float body?): its "
                            "token axis cannot follow the text")
    options = flexbuffers.Loads(bytes(np.asarray(projection.customOptions, np.uint8)))
    projection.customOptions = list(op_options_bytes(ProjectionSpec.from_op_options(options), dynamic_tokens=True))
    for index in projection.outputs[:3]:  # features, mask, pool_weights: [B, n(, F)]
        tensor = graph.tensors[int(index)]
        tensor.shapeSignature = [-1 if i == 1 else (list(tensor.shapeSignature)[i] if tensor.shapeSignature is not None
                                                    else d) for i, d in enumerate(tensor.shape)]


def dynamic_tokens(model, spec: ProjectionSpec) -> int:
    """Pass 1b (see the module doc), on the first subgraph. Returns how many operators
    were rewritten.

    Raises:
        ArtifactError: a constant shape or slice bound the pass does not know pins the
            token axis to T (the body would fail on shorter texts), or the recurrence is
            unrolled over T (:func:`unrolled_over_tokens`).
    """
    s = schema()
    B = s.BuiltinOperator
    T = spec.max_tokens
    graph = model.subgraphs[0]
    changed = 0
    _resize_projection_outputs(model, graph, spec)
    reshapes_of = {int(op.inputs[1]): op for op in graph.operators
                   if builtin_of(model, op) == B.RESHAPE and len(op.inputs) > 1}
    for i, op in enumerate(graph.operators):
        code = builtin_of(model, op)
        inputs = [int(t) for t in op.inputs]
        if code == B.STRIDED_SLICE:
            # xp[:, :T + pad] of the padded gate input: an end counted from the front
            # becomes one counted from the back (the same rows at every length).
            x_shape = list(graph.tensors[inputs[0]].shape)
            end = int32_constant(model, graph, inputs[2])
            if len(x_shape) == 3 and x_shape[1] > T and end is not None and not op.builtinOptions.endMask & 2 \
                    and 0 < end[1] < x_shape[1]:
                end[1] -= x_shape[1]
                inputs[2] = add_int32_constant(model, graph, end)
                op.inputs = inputs
                changed += 1
        elif code == B.PACK and int(op.outputs[0]) in reshapes_of:
            # a RESHAPE's new shape packed from scalars, one of them the constant T
            values = [int32_constant(model, graph, t) for t in inputs]
            pinned = [k for k, v in enumerate(values) if v is not None and v.size == 1 and int(v.reshape(-1)[0]) == T]
            reshape = reshapes_of[int(op.outputs[0])]
            unit_axis = _unit_axis_op(model, graph, int(reshape.inputs[0]), int(reshape.outputs[0])) if pinned else None
            if unit_axis is not None:
                # the mask's [B, T] -> [B, T, 1]: an EXPAND_DIMS (a -1 could not be
                # resolved in an empty batch); the PACK and what fed it are dropped below
                graph.operators[graph.operators.index(reshape)] = unit_axis
                changed += 1
            elif pinned:
                if len(pinned) != 1 or any(v is not None and int(v.reshape(-1)[0]) == -1 for v in values):
                    raise ArtifactError(f"operator {i} (PACK) builds a shape with T={T} the token axis cannot be "
                                        "freed from")
                inputs[pinned[0]] = add_int32_constant(model, graph, np.int32(-1))
                op.inputs = inputs
                changed += 1
        elif code == B.RESHAPE and len(inputs) > 1:
            new_shape = int32_constant(model, graph, inputs[1])
            if new_shape is None:
                continue
            replacement = _shape_free_reshape(model, graph, op, T)
            # rows of the token axis: T, or T plus the gate convolutions' padding
            pinned = any(T <= d <= T + 4 for d in new_shape.tolist())
            if replacement is None and not pinned:
                continue
            if replacement is None:
                raise ArtifactError(f"operator {i} (RESHAPE) has the constant shape {new_shape.tolist()} that pins "
                                    f"the token axis to T={T}")
            graph.operators[i] = replacement
            changed += 1
    drop_dead_operators(graph)  # shape arithmetic that fed a RESHAPE now an EXPAND_DIMS
    changed += _fully_connected_keep_dims(model, graph)
    changed += _pad_slots_to_max_tokens(model, graph, T, int(graph.operators[0].outputs[1]))
    empty_orphan_buffers(model)
    return changed


def _shape_free_reshape(model, graph, op, max_tokens: int) -> Any | None:
    """An operator doing what a RESHAPE with a constant new shape does, at any token
    count: a SQUEEZE or EXPAND_DIMS when it only drops or adds an axis of 1 (around the
    gate convolution and the mask; a fixed-batch body has these as RESHAPEs to [1, 1,
    T + 2, C]), else the RESHAPE with -1 in place of T when that is its only unknown
    dimension; None when neither fits."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    new_shape = int32_constant(model, graph, int(op.inputs[1])).tolist()
    unit_axis = _unit_axis_op(model, graph, x, out)
    if unit_axis is not None:
        return unit_axis
    if -1 in new_shape or new_shape.count(max_tokens) != 1 or not graph.tensors[out].shape:
        return None
    new_shape[new_shape.index(max_tokens)] = -1
    return operator(model, schema().BuiltinOperator.RESHAPE, [x, add_int32_constant(model, graph, new_shape)], [out])


def _unit_axis_op(model, graph, x: int, out: int) -> Any | None:
    """A SQUEEZE or EXPAND_DIMS from ``x`` to ``out`` when their shapes differ by one axis
    of 1 (not the batch axis), else None."""
    s = schema()
    B = s.BuiltinOperator
    in_shape, out_shape = list(graph.tensors[x].shape), list(graph.tensors[out].shape)
    # never axis 0: the batch, whose 1 in a dynamic-batch body's shape is only a placeholder
    for axis in range(1, len(out_shape)):
        if len(out_shape) == len(in_shape) - 1 and in_shape[axis] == 1 and in_shape[:axis] + in_shape[axis + 1:] \
                == out_shape:
            options = s.SqueezeOptionsT()
            options.squeezeDims = [axis]
            return operator(model, B.SQUEEZE, [x], [out], s.BuiltinOptions.SqueezeOptions, options)
    for axis in range(1, len(out_shape)):
        if len(out_shape) == len(in_shape) + 1 and out_shape[axis] == 1 and out_shape[:axis] + out_shape[axis + 1:] \
                == in_shape:
            return operator(model, B.EXPAND_DIMS, [x, add_int32_constant(model, graph, np.int32(axis))], [out],
                             s.BuiltinOptions.ExpandDimsOptions, s.ExpandDimsOptionsT())
    return None


def _fully_connected_keep_dims(model, graph) -> int:
    """A FULLY_CONNECTED between two RESHAPEs ([B, n, K] -> [B*n, K] -> FC -> [B*n, N] ->
    [B, n, N], the converter's Dense on a sequence) reads the rank-3 input directly with
    ``keep_num_dims``: the same arithmetic per row, and the runtime shape ops that fed the
    RESHAPEs (SHAPE, GATHER, REDUCE_PROD, PACK, CONCATENATION) go with them. Returns
    how many FULLY_CONNECTEDs were rewired."""
    B = schema().BuiltinOperator
    producer = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(graph.operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(i)
    outputs = {int(t) for t in graph.outputs}
    rewired = 0
    unflattens = set()
    for op in graph.operators:
        if builtin_of(model, op) != B.FULLY_CONNECTED or op.builtinOptions is None or op.builtinOptions.keepNumDims:
            continue
        x, y = int(op.inputs[0]), int(op.outputs[0])
        before = producer.get(x)
        after = consumers.get(y, [])
        if before is None or len(after) != 1 or y in outputs:
            continue
        flatten, unflatten = graph.operators[before], graph.operators[after[0]]
        if builtin_of(model, flatten) != B.RESHAPE or builtin_of(model, unflatten) != B.RESHAPE:
            continue
        x3, y3 = int(flatten.inputs[0]), int(unflatten.outputs[0])
        if len(graph.tensors[x3].shape) != 3 or len(graph.tensors[y3].shape) != 3 \
                or list(graph.tensors[x3].shape)[:2] != list(graph.tensors[y3].shape)[:2]:
            continue
        op.inputs = [x3, *[int(t) for t in op.inputs[1:]]]
        op.outputs = [y3]
        op.builtinOptions.keepNumDims = True
        unflattens.add(after[0])
        rewired += 1
    if rewired:
        graph.operators = [op for i, op in enumerate(graph.operators) if i not in unflattens]
        drop_dead_operators(graph)  # the flattening RESHAPEs and the shape ops that fed them
        drop_unused_tensors(model, graph)
    return rewired


def _pad_slots_to_max_tokens(model, graph, max_tokens: int, mask: int) -> int:
    """Before the DEQUANTIZE of each rank-3 graph output (the slot logits [B, n, tags]):
    rows where the projection's float ``mask`` is 0 (past each text) become the zero point
    (SELECT: valid rows keep their bits; padding dequantizes to exactly +0.0, as when the
    text runs alone), then a PAD back to T rows. The outputs keep their shape [B, T, tags]
    and stay the DEQUANTIZE's, which the runtime allocates even for an empty batch (a PAD
    with runtime paddings leaves an empty output without data). Returns how many
    operators were added.

    Raises:
        ArtifactError: a rank-3 output that is not dequantized from int8.
    """
    s = schema()
    B = s.BuiltinOperator
    added = 0
    for output in [int(t) for t in graph.outputs]:
        shape = list(graph.tensors[output].shape)
        producer = next((i for i, op in enumerate(graph.operators) if output in [int(t) for t in op.outputs]), None)
        if len(shape) != 3 or producer is None:
            continue
        dequantize = graph.operators[producer]
        if builtin_of(model, dequantize) != B.DEQUANTIZE or not per_tensor_int8(graph, int(dequantize.inputs[0])):
            raise ArtifactError("the slot logits are not dequantized from per-tensor int8: only an int8 body's "
                                "token axis can follow the text")
        x = int(dequantize.inputs[0])
        quant = graph.tensors[x].quantization
        zero = s.TensorT()
        zero.name, zero.type, zero.shape, zero.quantization = "", s.TensorType.INT8, [1], quant
        buf = s.BufferT()
        buf.data = list(np.int8(quant.zeroPoint[0]).tobytes())
        model.buffers.append(buf)
        zero.buffer = len(model.buffers) - 1
        graph.tensors.append(zero)
        zero = len(graph.tensors) - 1
        threshold = add_tensor(graph, [], like=mask)
        buf = s.BufferT()
        buf.data = list(np.float32(0.0).tobytes())
        model.buffers.append(buf)
        graph.tensors[threshold].buffer = len(model.buffers) - 1
        valid, valid3, kept, padded = (add_tensor(graph, shape[:2]), add_tensor(graph, shape[:2] + [1]),
                                       add_tensor(graph, shape, like=x), add_tensor(graph, shape, like=x))
        for t in (valid, valid3):
            graph.tensors[t].type = s.TensorType.BOOL
        # paddings [[0, 0], [0, T - n], [0, 0]] from the runtime shape [B, n, tags]
        dims, minus_n, paddings_column, paddings = (add_tensor(graph, [3]), add_tensor(graph, [3]),
                                                    add_tensor(graph, [3]), add_tensor(graph, [3, 2]))
        shape_options = s.ShapeOptionsT()
        shape_options.outType = s.TensorType.INT32
        pack_options = s.PackOptionsT()
        pack_options.valuesCount, pack_options.axis = 2, 1
        graph.operators[producer:producer] = [
            operator(model, B.GREATER, [mask, threshold], [valid], s.BuiltinOptions.GreaterOptions,
                      s.GreaterOptionsT()),
            operator(model, B.EXPAND_DIMS, [valid, add_int32_constant(model, graph, np.int32(2))], [valid3],
                      s.BuiltinOptions.ExpandDimsOptions, s.ExpandDimsOptionsT()),
            operator(model, B.SELECT_V2, [valid3, x, zero], [kept], s.BuiltinOptions.SelectV2Options,
                      s.SelectV2OptionsT()),
            operator(model, B.SHAPE, [kept], [dims], s.BuiltinOptions.ShapeOptions, shape_options),
            operator(model, B.MUL, [dims, add_int32_constant(model, graph, [0, -1, 0])], [minus_n],
                      s.BuiltinOptions.MulOptions, s.MulOptionsT()),
            operator(model, B.ADD, [minus_n, add_int32_constant(model, graph, [0, max_tokens, 0])],
                      [paddings_column], s.BuiltinOptions.AddOptions, s.AddOptionsT()),
            operator(model, B.PACK, [add_int32_constant(model, graph, [0, 0, 0]), paddings_column], [paddings],
                      s.BuiltinOptions.PackOptions, pack_options),
            operator(model, B.PAD, [kept, paddings], [padded], s.BuiltinOptions.PadOptions, s.PadOptionsT()),
        ]
        dequantize.inputs = [padded]
        added += 8
    return added
