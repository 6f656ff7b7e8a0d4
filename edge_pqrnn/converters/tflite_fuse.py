"""Fuse the projection op into a converted body: the .tflite then takes raw text.

The body (features, mask, pool_weights -> logits) comes from the standard converter.
These passes run in this order on its flatbuffer and return new bytes (nothing is edited
in place):

0. ``add_zero_biases``: give every int8 FULLY_CONNECTED without a bias a zero int32 one.
   tflite-runtime 2.14 on aarch64 (gemmlowp) reads a missing bias through a null pointer
   and crashes; a zero bias changes no output bit in any runtime. (Before the op is added,
   so only body operators are visited.)
   ``fuse_fo_pooling``: replace each direction's unrolled int8 recurrence (UNPACK of z
   and k -> per step SUB/MUL/ADD -> PACK -> MUL by o) with one ``EdgePqrnnFoPool`` node
   (integer arithmetic in our C, identical on x86 and ARM; the runtimes' int8 MUL rounds
   ties differently per ISA), then drop the tensors nothing uses any more.
   ``use_portable_kernels`` (only with ``portable_kernels=True``, ``export
   --portable-kernels``): replace every int8 FULLY_CONNECTED and CONV_2D with an
   ``EdgePqrnnIntMatMul`` node (one integer rounding rule in our C; tflite-runtime's
   builtin int8 kernels round exact requantisation ties differently on x86 and ARM),
   and every int8 -> float32 DEQUANTIZE with an ``EdgePqrnnDequantize`` (one float
   multiply; tflite-runtime's ARM path fuses a multiply-add and differs by an ulp), and
   every float32 -> int8 QUANTIZE with an ``EdgePqrnnQuantize`` (one division, round half
   away; the ARM path multiplies by 1 / scale and rounds exact ties elsewhere).
   The default keeps them for XNNPACK, which is several times faster.
1. ``prepend_projection``: add the STRING input ``text`` and the CUSTOM projection op
   first, writing into the body's three input tensors; add the ``num_tokens`` output.
   (First, because the later passes rewrite the signature it creates.)
1b. ``dynamic_tokens`` (the default; ``static_tokens=True`` skips it, and a float body,
   whose recurrence stays unrolled over T, and a portable one never get it): the
   projection op gets the option ``dynamic_tokens`` and sizes features, mask and
   pool_weights to the rows of the batch's longest text (n <= T, rounded up to a multiple
   of 4) at invoke time; the runtime re-prepares the nodes after it when n changed since
   the last call (XNNPACK reshapes its subgraphs), so the body computes n rows, not T.
   The constants that pinned the token axis are freed: the slice bound ``xp[:, :T + pad]``
   counts from the end, RESHAPEs that add or drop an axis of 1 become EXPAND_DIMS /
   SQUEEZE, a shape packed with the constant T gets -1; a FULLY_CONNECTED between
   flattening RESHAPEs reads the sequence with keep_num_dims (the runtime shape ops that
   fed the RESHAPEs go too); before their DEQUANTIZE the slot logits' rows past each text
   become the zero point (+0.0, as when the text runs alone) and are PADded back to
   [B, T, tags], so the outputs keep their shapes. Valid rows are bit-identical to the
   static graph: padded steps are exact zeros either way (masking, f=1 carry, zero-point
   padding).
2. ``write_signature``: ``serving_default`` with input ``text`` and outputs
   ``intent_logits``, ``slot_logits`` (when present), ``num_tokens``.
3. ``strip_names``: drop internal tensor names (a third of an unrolled body's bytes).
4. ``attach_metadata`` + ``seal``: labels, projection spec, model config, toolkit
   version and a sha256 of the whole file, as a named metadata buffer (last: the hash
   covers everything, the graph and quantization parameters included).

Length buckets (optional): bodies converted at smaller T go through passes 0-2 on their
own, then ``append_signature`` adds each as one more subgraph with its signature
(``tokens_16``...) and ``share_buffers`` makes identical weight buffers one: the int8
weights of every bucket are quantized from the same float weights, so the file grows
only by the graphs and the per-bucket biases. A caller runs the smallest bucket whose
``num_tokens`` stays below its T (``edge_pqrnn.artifact.Artifact.run``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import flatbuffers
import numpy as np

from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.projection.ops import OUTPUT_NAMES, op_options_bytes, schema
from edge_pqrnn.projection.spec import OP_NAME, ProjectionSpec

METADATA_NAME = "edge_pqrnn"
BODY_INPUTS = ("features", "mask", "pool_weights")
SIGNATURE = "serving_default"


def _load(flatbuffer: bytes):
    s = schema()
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ArtifactError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    try:
        return s.ModelT.InitFromPackedBuf(flatbuffer, 0)
    except Exception as exc:  # corrupt offsets surface as any Python error
        raise ArtifactError(f"corrupt TFLite flatbuffer: {type(exc).__name__}: {exc}") from exc


def model_bytes(model) -> bytes:
    """The serialised .tflite of a ``ModelT``."""
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def signature_def(inputs: Sequence[tuple[str, int]], outputs: Sequence[tuple[str, int]],
                  key: str = SIGNATURE, subgraph: int = 0) -> Any:
    """A ``SignatureDefT`` mapping names to tensor indices of ``subgraph``."""
    s = schema()

    def tensor_map(name: str, index: int) -> Any:
        m = s.TensorMapT()
        m.name, m.tensorIndex = name, index
        return m

    sig = s.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = key, subgraph
    sig.inputs = [tensor_map(n, i) for n, i in inputs]
    sig.outputs = [tensor_map(n, i) for n, i in outputs]
    return sig


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def add_zero_biases(model) -> int:
    """Pass 0 (see the module doc). Returns how many biases were added."""
    s = schema()
    added = 0
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            inputs = [int(i) for i in op.inputs]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != s.BuiltinOperator.FULLY_CONNECTED:
                continue
            if len(inputs) > 2 and inputs[2] >= 0:
                continue
            x, w = graph.tensors[inputs[0]], graph.tensors[inputs[1]]
            if w.type != s.TensorType.INT8 or not (w.quantization and w.quantization.scale is not None
                                                   and x.quantization and x.quantization.scale is not None):
                continue
            units = int(w.shape[0])
            buf = s.BufferT()
            buf.data = list(np.zeros(units, np.int32).tobytes())
            model.buffers.append(buf)
            q = s.QuantizationParametersT()
            # bias scale = input scale x weight scale (per channel), as the kernels expect
            q.scale = [float(x.quantization.scale[0]) * float(ws) for ws in w.quantization.scale]
            q.zeroPoint, q.quantizedDimension = [0] * len(q.scale), 0
            t = s.TensorT()
            t.name, t.type, t.shape, t.buffer, t.quantization = "zero_bias", s.TensorType.INT32, [units], \
                len(model.buffers) - 1, q
            graph.tensors.append(t)
            op.inputs = inputs[:2] + [len(graph.tensors) - 1]
            added += 1
    return added


def _builtin(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _no_activation(op) -> bool:
    options = op.builtinOptions
    return options is None or getattr(options, "fusedActivationFunction", 0) == 0


def _per_tensor_int8(graph, index: int) -> bool:
    s = schema()
    t = graph.tensors[index]
    q = t.quantization
    return (t.type == s.TensorType.INT8 and q is not None and q.scale is not None and len(q.scale) == 1
            and q.zeroPoint is not None and len(q.zeroPoint) == 1)


def _match_recurrence(model, graph, pack: int, producer: dict[int, int],
                      consumers: dict[int, list[int]]) -> tuple[list[int], int, int, int, int, bool] | None:
    """The recurrence feeding the PACK at ``pack``, as (ops to remove, z, k, o, h, reverse),
    or None when the ops around it are not exactly the unrolled fo-pooling."""
    s = schema()
    B = s.BuiltinOperator
    ops = graph.operators
    cells = [int(i) for i in ops[pack].inputs]
    packed = int(ops[pack].outputs[0])
    steps = len(cells)
    if steps < 2 or getattr(ops[pack].builtinOptions, "axis", None) != 1 or packed in graph.outputs:
        return None
    users = consumers.get(packed, [])
    if len(users) != 1 or _builtin(model, ops[users[0]]) != B.MUL or not _no_activation(ops[users[0]]):
        return None
    final = users[0]
    o = [int(i) for i in ops[final].inputs if int(i) != packed]
    if len(o) != 1:
        return None
    o, h = o[0], int(ops[final].outputs[0])

    def op_of(tensor: int, code: int) -> int | None:
        i = producer.get(tensor)
        return i if i is not None and _builtin(model, ops[i]) == code and _no_activation(ops[i]) else None

    for reverse in (False, True):
        order = list(range(steps - 1, -1, -1)) if reverse else list(range(steps))
        first = op_of(cells[order[0]], B.MUL)
        second = op_of(cells[order[1]], B.ADD)
        if first is None or second is None:
            continue
        # step 2: ADD(c, MUL(k_t, SUB(z_t, c))) names which UNPACK is z and which k
        e = [int(i) for i in ops[second].inputs if int(i) != cells[order[0]]]
        mul = op_of(e[0], B.MUL) if len(e) == 1 else None
        if mul is None:
            continue
        d = [int(i) for i in ops[mul].inputs if op_of(int(i), B.SUB) is not None]
        if len(d) != 1:
            continue
        sub = producer[d[0]]
        z_t = int(ops[sub].inputs[0])
        k_t = [int(i) for i in ops[mul].inputs if int(i) != d[0]][0]
        unpack_z, unpack_k = producer.get(z_t), producer.get(k_t)
        if unpack_z is None or unpack_k is None or unpack_z == unpack_k or any(
                _builtin(model, ops[u]) != B.UNPACK or len(ops[u].outputs) != steps
                or getattr(ops[u].builtinOptions, "axis", None) != 1 for u in (unpack_z, unpack_k)):
            continue
        zs, ks = [int(i) for i in ops[unpack_z].outputs], [int(i) for i in ops[unpack_k].outputs]
        chain = [unpack_z, unpack_k, pack, final, first]
        ok = sorted(int(i) for i in ops[first].inputs) == sorted((zs[order[0]], ks[order[0]]))
        for prev, t in zip(order, order[1:]):
            if not ok:
                break
            add = op_of(cells[t], B.ADD)
            ok = add is not None and cells[prev] in [int(i) for i in ops[add].inputs]
            if not ok:
                break
            e = [int(i) for i in ops[add].inputs if int(i) != cells[prev]]
            mul = op_of(e[0], B.MUL) if len(e) == 1 else None
            ok = mul is not None and ks[t] in [int(i) for i in ops[mul].inputs]
            if not ok:
                break
            d = [int(i) for i in ops[mul].inputs if int(i) != ks[t]]
            sub = op_of(d[0], B.SUB) if len(d) == 1 else None
            ok = sub is not None and [int(i) for i in ops[sub].inputs] == [zs[t], cells[prev]]
            chain += [add, mul, sub] if ok else []
        if not ok:
            continue
        # Everything the chain computes must be used only inside it.
        inside = set(chain)
        produced = {int(i) for c in chain if c not in (final,) for i in ops[c].outputs}
        if any(i in graph.outputs or not set(consumers.get(i, [])) <= inside for i in produced):
            continue
        z, k = int(ops[unpack_z].inputs[0]), int(ops[unpack_k].inputs[0])
        shape = list(graph.tensors[h].shape)
        if any(list(graph.tensors[i].shape) != shape or not _per_tensor_int8(graph, i) for i in (z, k, o, h)):
            return None
        return chain, z, k, o, h, reverse
    return None


def fuse_fo_pooling(model) -> int:
    """Pass 0b (see the module doc), on every subgraph. Returns how many recurrences
    became ``EdgePqrnnFoPool`` nodes (2 per bi-QRNN layer in an int8 body; 0 in a float
    one, whose tensors are not int8)."""
    from edge_pqrnn.projection.fo_pool import FO_POOL_OP, options_bytes

    s = schema()
    fused = 0
    code_index = None
    for graph in model.subgraphs:
        producer = {int(o): i for i, op in enumerate(graph.operators) for o in op.outputs}
        consumers: dict[int, list[int]] = {}
        for i, op in enumerate(graph.operators):
            for t in op.inputs:
                consumers.setdefault(int(t), []).append(i)
        remove: set[int] = set()
        replace: dict[int, Any] = {}
        for i, op in enumerate(graph.operators):
            if _builtin(model, op) != s.BuiltinOperator.PACK or i in remove:
                continue
            match = _match_recurrence(model, graph, i, producer, consumers)
            if match is None:
                continue
            chain, z, k, o, h, reverse = match
            if code_index is None:
                code = s.OperatorCodeT()
                code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
                code.customCode, code.version = FO_POOL_OP, 1
                model.operatorCodes.append(code)
                code_index = len(model.operatorCodes) - 1
            node = s.OperatorT()
            node.opcodeIndex, node.inputs, node.outputs = code_index, [z, k, o], [h]
            node.customOptions = list(options_bytes(reverse))
            node.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
            remove.update(chain)
            replace[chain[3]] = node  # where the final MUL ran: z, k and o all exist by then
            fused += 1
        if remove:
            graph.operators = [replace.get(i, op) for i, op in enumerate(graph.operators)
                               if i not in remove or i in replace]
            _drop_unused_tensors(model, graph)
    return fused


def _int_matmul_geometry(model, graph, op):
    """The :class:`~edge_pqrnn.projection.int_matmul.Geometry` of an int8 FULLY_CONNECTED
    or CONV_2D the op can run exactly as the builtin would, else None."""
    from edge_pqrnn.projection.int_matmul import ACTIVATIONS, Geometry

    s = schema()
    B = s.BuiltinOperator
    code, options = _builtin(model, op), op.builtinOptions
    inputs = [int(i) for i in op.inputs]
    if code not in (B.FULLY_CONNECTED, B.CONV_2D) or options is None or len(inputs) not in (2, 3):
        return None
    activation = int(getattr(options, "fusedActivationFunction", 0))
    if activation not in ACTIVATIONS:
        return None
    x, w, out = inputs[0], inputs[1], int(op.outputs[0])
    if not (_per_tensor_int8(graph, x) and _per_tensor_int8(graph, out)):
        return None
    wt = graph.tensors[w]
    wq = wt.quantization
    data = model.buffers[wt.buffer].data if wt.buffer else None
    if (wt.type != s.TensorType.INT8 or data is None or len(data) == 0 or wq is None or wq.scale is None
            or wq.zeroPoint is None or any(int(z) != 0 for z in wq.zeroPoint)
            or (len(wq.scale) > 1 and int(wq.quantizedDimension) != 0)):
        return None
    if len(inputs) == 3 and inputs[2] >= 0:
        bt = graph.tensors[inputs[2]]
        bdata = model.buffers[bt.buffer].data if bt.buffer else None
        if bt.type != s.TensorType.INT32 or bdata is None or len(bdata) == 0:
            return None
    if code == B.FULLY_CONNECTED:
        if len(wt.shape) != 2 or options.keepNumDims or options.weightsFormat != 0:
            return None
        return Geometry.fully_connected(activation)
    if (len(wt.shape) != 4 or options.padding != s.Padding.VALID or (options.strideH, options.strideW) != (1, 1)
            or (options.dilationHFactor, options.dilationWFactor) != (1, 1)):
        return None
    return Geometry.conv_2d(activation)


def use_portable_kernels(model) -> int:
    """Pass 0c (see the module doc), on every subgraph. Returns how many nodes became
    ``EdgePqrnnIntMatMul``, ``EdgePqrnnDequantize`` or ``EdgePqrnnQuantize``.

    Raises:
        ArtifactError: an int8 FULLY_CONNECTED or CONV_2D the op cannot stand in for (the
            artifact would not be portable).
    """
    from edge_pqrnn.projection.int_matmul import (DEQUANTIZE_OP, INT_MATMUL_OP, QUANTIZE_OP, dequantize_options_bytes,
                                                  options_bytes)

    s = schema()
    B = s.BuiltinOperator
    replaced = 0
    codes: dict[str, int] = {}

    def custom_code(name: str) -> int:
        if name not in codes:
            code = s.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = B.CUSTOM
            code.customCode, code.version = name, 1
            model.operatorCodes.append(code)
            codes[name] = len(model.operatorCodes) - 1
        return codes[name]

    for graph in model.subgraphs:
        for i, op in enumerate(graph.operators):
            dequantize = (_builtin(model, op) == B.DEQUANTIZE and _per_tensor_int8(graph, int(op.inputs[0]))
                          and graph.tensors[int(op.outputs[0])].type == s.TensorType.FLOAT32)
            quantize = (_builtin(model, op) == B.QUANTIZE and _per_tensor_int8(graph, int(op.outputs[0]))
                        and graph.tensors[int(op.inputs[0])].type == s.TensorType.FLOAT32)
            if dequantize or quantize:
                node = s.OperatorT()
                node.opcodeIndex = custom_code(DEQUANTIZE_OP if dequantize else QUANTIZE_OP)
                node.inputs, node.outputs = [int(op.inputs[0])], [int(op.outputs[0])]
                node.customOptions = list(dequantize_options_bytes())
                node.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
                graph.operators[i] = node
                replaced += 1
                continue
            if _builtin(model, op) not in (B.FULLY_CONNECTED, B.CONV_2D):
                continue
            geometry = _int_matmul_geometry(model, graph, op)
            if geometry is None:
                raise ArtifactError(f"operator {i} ({'CONV_2D' if _builtin(model, op) == B.CONV_2D else 'FULLY_CONNECTED'}) "
                                    "is not an int8 matmul EdgePqrnnIntMatMul can run (per-tensor int8 input and "
                                    "output, constant symmetric int8 weights, VALID stride-1 convolution): "
                                    "export without --portable-kernels, or with --scheme int8")
            node = s.OperatorT()
            inputs = [int(t) for t in op.inputs]
            node.opcodeIndex = custom_code(INT_MATMUL_OP)
            node.inputs = inputs if len(inputs) == 3 and inputs[2] >= 0 else inputs[:2]
            node.outputs = [int(t) for t in op.outputs]
            node.customOptions = list(options_bytes(geometry))
            node.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
            graph.operators[i] = node
            replaced += 1
    return replaced


def _drop_unused_tensors(model, graph) -> None:
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


def _body_inputs(model) -> list[int]:
    graph = model.subgraphs[0]
    by_name = {_name(graph.tensors[i].name): i for i in graph.inputs}
    missing = [n for n in BODY_INPUTS if n not in by_name]
    if missing:
        raise ArtifactError(f"the body lacks inputs {missing}; it has {sorted(by_name)}")
    return [by_name[n] for n in BODY_INPUTS]


def prepend_projection(model, spec: ProjectionSpec) -> None:
    s = schema()
    graph = model.subgraphs[0]
    body_inputs = _body_inputs(model)
    features = graph.tensors[body_inputs[0]]
    if list(features.shape)[1:] != [spec.max_tokens, spec.feature_size]:
        raise ArtifactError(f"body features shape {list(features.shape)} does not match the projection "
                            f"(T={spec.max_tokens}, F={spec.feature_size})")
    dynamic = features.shapeSignature is not None and list(features.shapeSignature)[0] == -1

    def add_tensor(name: str, ttype: int) -> int:
        t = s.TensorT()
        t.name, t.type, t.shape, t.buffer = name, ttype, [1], 0
        t.shapeSignature = [-1 if dynamic else 1]
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    text = add_tensor("text", s.TensorType.STRING)
    num_tokens = add_tensor("num_tokens", s.TensorType.INT32)
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode, code.version = OP_NAME, 1
    model.operatorCodes.append(code)
    op = s.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = [text], [*body_inputs, num_tokens]
    op.customOptions = list(op_options_bytes(spec))
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    graph.operators.insert(0, op)
    graph.inputs = [text]
    graph.outputs = [*graph.outputs, num_tokens]


def _int32_constant(model, graph, index: int) -> np.ndarray | None:
    t = graph.tensors[index]
    data = model.buffers[t.buffer].data if t.buffer else None
    if t.type != schema().TensorType.INT32 or data is None or len(data) == 0:
        return None
    return np.frombuffer(bytes(np.asarray(data, np.uint8)), np.int32).reshape(list(t.shape) or []).copy()


def _add_int32_constant(model, graph, values) -> int:
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


def _add_tensor(graph, shape: Sequence[int], like: int | None = None) -> int:
    """A new activation tensor: int32 of ``shape``, or typed and quantized like ``like``."""
    s = schema()
    t = s.TensorT()
    t.name, t.shape, t.buffer, t.type = "", list(shape), 0, s.TensorType.INT32
    if like is not None:
        t.type, t.quantization = graph.tensors[like].type, graph.tensors[like].quantization
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _builtin_code(model, builtin: int) -> int:
    """The index of ``builtin``'s operator code, added when the model has none."""
    s = schema()
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin \
                and code.builtinCode != s.BuiltinOperator.CUSTOM:
            return i
    code = s.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _operator(model, builtin: int, inputs: Sequence[int], outputs: Sequence[int], options_type: int = 0,
              options: Any = None) -> Any:
    op = schema().OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = _builtin_code(model, builtin), list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def unrolled_over_tokens(model, spec: ProjectionSpec) -> bool:
    """Whether the first subgraph still has the recurrence unrolled into T steps (an
    UNPACK of T rows: a float body, whose recurrence no pass fuses). Such a body computes
    T rows whatever the text."""
    unpack = schema().BuiltinOperator.UNPACK
    return any(_builtin(model, op) == unpack and getattr(op.builtinOptions, "num", 0) == spec.max_tokens
               for op in model.subgraphs[0].operators)


def dynamic_tokens(model, spec: ProjectionSpec) -> int:
    """Pass 1b (see the module doc), on the first subgraph. Returns how many operators
    were rewritten.

    Raises:
        ArtifactError: a constant shape or slice bound the pass does not know pins the
            token axis to T (the body would fail on shorter texts), or the recurrence is
            unrolled over T (:func:`unrolled_over_tokens`).
    """
    from flatbuffers import flexbuffers

    s = schema()
    B = s.BuiltinOperator
    T = spec.max_tokens
    graph = model.subgraphs[0]
    changed = 0
    projection = graph.operators[0]
    if _name(model.operatorCodes[projection.opcodeIndex].customCode) != OP_NAME:
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
    reshapes_of = {int(op.inputs[1]): op for op in graph.operators
                   if _builtin(model, op) == B.RESHAPE and len(op.inputs) > 1}
    for i, op in enumerate(graph.operators):
        code = _builtin(model, op)
        inputs = [int(t) for t in op.inputs]
        if code == B.STRIDED_SLICE:
            # xp[:, :T + pad] of the padded gate input: an end counted from the front
            # becomes one counted from the back (the same rows at every length).
            x_shape = list(graph.tensors[inputs[0]].shape)
            end = _int32_constant(model, graph, inputs[2])
            if len(x_shape) == 3 and x_shape[1] > T and end is not None and not op.builtinOptions.endMask & 2 \
                    and 0 < end[1] < x_shape[1]:
                end[1] -= x_shape[1]
                inputs[2] = _add_int32_constant(model, graph, end)
                op.inputs = inputs
                changed += 1
        elif code == B.PACK and int(op.outputs[0]) in reshapes_of:
            # a RESHAPE's new shape packed from scalars, one of them the constant T
            values = [_int32_constant(model, graph, t) for t in inputs]
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
                inputs[pinned[0]] = _add_int32_constant(model, graph, np.int32(-1))
                op.inputs = inputs
                changed += 1
        elif code == B.RESHAPE and len(inputs) > 1:
            new_shape = _int32_constant(model, graph, inputs[1])
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
    _drop_dead_operators(graph)  # shape arithmetic that fed a RESHAPE now an EXPAND_DIMS
    changed += _fully_connected_keep_dims(model, graph)
    changed += _pad_slots_to_max_tokens(model, graph, T, int(graph.operators[0].outputs[1]))
    _empty_orphan_buffers(model)
    return changed


def _empty_orphan_buffers(model) -> None:
    """Empty the constant buffers no tensor or metadata entry refers to any more (the
    dropped shape ops' constants): they would still be written into the file."""
    used = {int(t.buffer) for graph in model.subgraphs for t in graph.tensors}
    used |= {int(m.buffer) for m in model.metadata or []}
    for index, buffer in enumerate(model.buffers):
        if index not in used:
            buffer.data = None


def _shape_free_reshape(model, graph, op, max_tokens: int) -> Any | None:
    """An operator doing what a RESHAPE with a constant new shape does, at any token
    count: a SQUEEZE or EXPAND_DIMS when it only drops or adds an axis of 1 (around the
    gate convolution and the mask; a fixed-batch body has these as RESHAPEs to [1, 1,
    T + 2, C]), else the RESHAPE with -1 in place of T when that is its only unknown
    dimension; None when neither fits."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    new_shape = _int32_constant(model, graph, int(op.inputs[1])).tolist()
    unit_axis = _unit_axis_op(model, graph, x, out)
    if unit_axis is not None:
        return unit_axis
    if -1 in new_shape or new_shape.count(max_tokens) != 1 or not graph.tensors[out].shape:
        return None
    new_shape[new_shape.index(max_tokens)] = -1
    return _operator(model, schema().BuiltinOperator.RESHAPE, [x, _add_int32_constant(model, graph, new_shape)], [out])


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
            return _operator(model, B.SQUEEZE, [x], [out], s.BuiltinOptions.SqueezeOptions, options)
    for axis in range(1, len(out_shape)):
        if len(out_shape) == len(in_shape) + 1 and out_shape[axis] == 1 and out_shape[:axis] + out_shape[axis + 1:] \
                == in_shape:
            return _operator(model, B.EXPAND_DIMS, [x, _add_int32_constant(model, graph, np.int32(axis))], [out],
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
        if _builtin(model, op) != B.FULLY_CONNECTED or op.builtinOptions is None or op.builtinOptions.keepNumDims:
            continue
        x, y = int(op.inputs[0]), int(op.outputs[0])
        before = producer.get(x)
        after = consumers.get(y, [])
        if before is None or len(after) != 1 or y in outputs:
            continue
        flatten, unflatten = graph.operators[before], graph.operators[after[0]]
        if _builtin(model, flatten) != B.RESHAPE or _builtin(model, unflatten) != B.RESHAPE:
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
        _drop_dead_operators(graph)  # the flattening RESHAPEs and the shape ops that fed them
        _drop_unused_tensors(model, graph)
    return rewired


def _drop_dead_operators(graph) -> None:
    """Remove operators whose outputs nothing reads (repeatedly)."""
    while True:
        read = {int(t) for op in graph.operators for t in op.inputs} | {int(t) for t in graph.outputs}
        live = [op for op in graph.operators if any(int(t) in read for t in op.outputs)]
        if len(live) == len(graph.operators):
            return
        graph.operators = live


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
        if _builtin(model, dequantize) != B.DEQUANTIZE or not _per_tensor_int8(graph, int(dequantize.inputs[0])):
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
        threshold = _add_tensor(graph, [], like=mask)
        buf = s.BufferT()
        buf.data = list(np.float32(0.0).tobytes())
        model.buffers.append(buf)
        graph.tensors[threshold].buffer = len(model.buffers) - 1
        valid, valid3, kept, padded = (_add_tensor(graph, shape[:2]), _add_tensor(graph, shape[:2] + [1]),
                                       _add_tensor(graph, shape, like=x), _add_tensor(graph, shape, like=x))
        for t in (valid, valid3):
            graph.tensors[t].type = s.TensorType.BOOL
        # paddings [[0, 0], [0, T - n], [0, 0]] from the runtime shape [B, n, tags]
        dims, minus_n, paddings_column, paddings = (_add_tensor(graph, [3]), _add_tensor(graph, [3]),
                                                    _add_tensor(graph, [3]), _add_tensor(graph, [3, 2]))
        shape_options = s.ShapeOptionsT()
        shape_options.outType = s.TensorType.INT32
        pack_options = s.PackOptionsT()
        pack_options.valuesCount, pack_options.axis = 2, 1
        graph.operators[producer:producer] = [
            _operator(model, B.GREATER, [mask, threshold], [valid], s.BuiltinOptions.GreaterOptions,
                      s.GreaterOptionsT()),
            _operator(model, B.EXPAND_DIMS, [valid, _add_int32_constant(model, graph, np.int32(2))], [valid3],
                      s.BuiltinOptions.ExpandDimsOptions, s.ExpandDimsOptionsT()),
            _operator(model, B.SELECT_V2, [valid3, x, zero], [kept], s.BuiltinOptions.SelectV2Options,
                      s.SelectV2OptionsT()),
            _operator(model, B.SHAPE, [kept], [dims], s.BuiltinOptions.ShapeOptions, shape_options),
            _operator(model, B.MUL, [dims, _add_int32_constant(model, graph, [0, -1, 0])], [minus_n],
                      s.BuiltinOptions.MulOptions, s.MulOptionsT()),
            _operator(model, B.ADD, [minus_n, _add_int32_constant(model, graph, [0, max_tokens, 0])],
                      [paddings_column], s.BuiltinOptions.AddOptions, s.AddOptionsT()),
            _operator(model, B.PACK, [_add_int32_constant(model, graph, [0, 0, 0]), paddings_column], [paddings],
                      s.BuiltinOptions.PackOptions, pack_options),
            _operator(model, B.PAD, [kept, paddings], [padded], s.BuiltinOptions.PadOptions, s.PadOptionsT()),
        ]
        dequantize.inputs = [padded]
        added += 8
    return added


def bucket_signature(max_tokens: int) -> str:
    """The signature key of the length bucket with T = ``max_tokens``."""
    return f"tokens_{max_tokens}"


def signature_for(num_tokens: int, buckets: Sequence[int]) -> str:
    """The signature a text of ``num_tokens`` rows runs in: the smallest bucket whose T it
    stays below (filling it may mean truncation), else the full-T ``serving_default``."""
    return next((bucket_signature(t) for t in sorted(buckets) if num_tokens < t), SIGNATURE)


def write_signature(model, key: str = SIGNATURE) -> None:
    """One signature (``serving_default``): ``text`` in; logits named by rank (the
    converter's names are ``Identity*``): rank 2 is intents, rank 3 per-token slots."""
    graph = model.subgraphs[0]
    outputs = []
    for index in graph.outputs:
        rank = len(graph.tensors[index].shape)
        if _name(graph.tensors[index].name) == "num_tokens":
            name = "num_tokens"
        elif rank == 2:
            name = "intent_logits"
        elif rank == 3:
            name = "slot_logits"
        else:
            raise ArtifactError(f"unexpected body output of rank {rank}")
        graph.tensors[index].name = name
        outputs.append((name, index))
    model.signatureDefs = [signature_def([("text", graph.inputs[0])], sorted(outputs), key)]


def append_signature(model, other) -> None:
    """Move the one subgraph and signature of ``other`` (a model that went through passes
    0-2) into ``model``, re-indexing its operator codes and buffers."""
    def code_key(code) -> tuple:
        return code.builtinCode, code.deprecatedBuiltinCode, _name(code.customCode), code.version

    codes = {code_key(c): i for i, c in enumerate(model.operatorCodes)}
    code_map = []
    for code in other.operatorCodes:
        if code_key(code) not in codes:
            model.operatorCodes.append(code)
            codes[code_key(code)] = len(model.operatorCodes) - 1
        code_map.append(codes[code_key(code)])
    buffer_map = {0: 0}  # buffer 0 is the shared empty sentinel
    graph = other.subgraphs[0]
    for tensor in graph.tensors:
        if tensor.buffer not in buffer_map:
            model.buffers.append(other.buffers[tensor.buffer])
            buffer_map[tensor.buffer] = len(model.buffers) - 1
        tensor.buffer = buffer_map[tensor.buffer]
    for op in graph.operators:
        op.opcodeIndex = code_map[op.opcodeIndex]
    model.subgraphs.append(graph)
    signature = other.signatureDefs[0]
    signature.subgraphIndex = len(model.subgraphs) - 1
    model.signatureDefs.append(signature)


def share_buffers(model) -> int:
    """Point tensors with byte-identical constant buffers at one of them and empty the
    others. Returns the bytes saved."""
    first: dict[bytes, int] = {}
    remap: dict[int, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            index = tensor.buffer
            if index == 0 or index in remap:
                continue
            data = model.buffers[index].data
            if data is None or len(data) == 0:
                continue
            key = bytes(np.asarray(data, np.uint8))
            remap[index] = first.setdefault(key, index)
    saved = 0
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if tensor.buffer in remap:
                tensor.buffer = remap[tensor.buffer]
    for index, target in remap.items():
        if target != index:
            saved += len(model.buffers[index].data)
            model.buffers[index].data = None
    return saved


def strip_names(model) -> None:
    for graph in model.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        for i, tensor in enumerate(graph.tensors):
            if i not in keep:
                tensor.name = ""


HASH_FIELD = "content_sha256"
_PLACEHOLDER = b"0" * 64
_HASH_PREFIX = b'"' + HASH_FIELD.encode() + b'": "'


def attach_metadata(model, metadata: dict[str, Any]) -> None:
    """Add (or replace) our metadata buffer, with a zeroed content hash for :func:`seal`."""
    s = schema()
    model.metadata = [m for m in model.metadata or [] if _name(m.name) != METADATA_NAME]
    payload = dict(metadata, **{HASH_FIELD: _PLACEHOLDER.decode()})
    buf = s.BufferT()
    buf.data = list(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    model.buffers.append(buf)
    entry = s.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)


def _hash_slot(artifact: bytes) -> int:
    """Offset of the 64 hex digits of the content hash inside the file (-1: none)."""
    at = artifact.rfind(_HASH_PREFIX)
    return -1 if at < 0 else at + len(_HASH_PREFIX)


def content_hash(artifact: bytes) -> str:
    """sha256 of the whole file with its own hash digits zeroed: covers the graph,
    quantization parameters, weights and metadata alike."""
    slot = _hash_slot(artifact)
    if slot < 0:
        return hashlib.sha256(artifact).hexdigest()
    return hashlib.sha256(artifact[:slot] + _PLACEHOLDER + artifact[slot + 64:]).hexdigest()


def seal(artifact: bytes) -> bytes:
    """Write the content hash into the placeholder left by :func:`attach_metadata`
    (same length, so no offset in the flatbuffer moves)."""
    slot = _hash_slot(artifact)
    if slot < 0 or artifact[slot:slot + 64] != _PLACEHOLDER:
        raise ArtifactError("no content hash placeholder in the metadata: call attach_metadata() first")
    return artifact[:slot] + content_hash(artifact).encode() + artifact[slot + 64:]


def hash_problem(artifact: bytes, metadata: dict[str, Any]) -> str | None:
    """None when the recorded content hash matches the file, else what is wrong."""
    recorded = metadata.get(HASH_FIELD)
    if not isinstance(recorded, str) or len(recorded) != 64:
        return "has no content hash in its metadata"
    if recorded != content_hash(artifact):
        return "does not match the content hash recorded at export (changed after export)"
    return None


def _fused_graph(body: bytes, spec: ProjectionSpec, key: str, portable_kernels: bool = False,
                 dynamic: bool = False):
    """Passes 0-2 on ``body``; returns the model and whether its token axis follows the
    text (``dynamic`` and a recurrence pass 0b fused)."""
    model = _load(body)
    add_zero_biases(model)
    fuse_fo_pooling(model)
    if portable_kernels:
        use_portable_kernels(model)
    prepend_projection(model, spec)
    # A float body keeps its recurrence unrolled over T: it stays at T.
    dynamic = dynamic and not unrolled_over_tokens(model, spec)
    if dynamic:
        dynamic_tokens(model, spec)
    write_signature(model, key)
    return model, dynamic



def fuse(body: bytes, spec: ProjectionSpec, metadata: dict[str, Any], keep_names: bool = False,
         buckets: Mapping[int, bytes] | None = None, portable_kernels: bool = False,
         static_tokens: bool = False) -> bytes:
    """Run the passes above on a converted body.

    Args:
        body: .tflite bytes whose graph inputs are named ``features``, ``mask``,
            ``pool_weights`` (as :func:`edge_pqrnn.quant.convert` makes them).
        spec: the projection spec the body was trained with.
        metadata: what travels inside the file (labels, config, version...).
        keep_names: keep internal tensor names (for debugging).
        buckets: length buckets, T -> a body converted at that T (smaller than the
            spec's); each becomes the signature ``tokens_T`` and ``metadata["buckets"]``
            lists their T.
        portable_kernels: every int8 FULLY_CONNECTED and CONV_2D becomes an
            ``EdgePqrnnIntMatMul``, every QUANTIZE / DEQUANTIZE at the body's edges an
            ``EdgePqrnnQuantize`` / ``EdgePqrnnDequantize`` (bit-exact on every runtime
            and ISA, slower than XNNPACK); ``metadata["portable_kernels"]`` records it.
        static_tokens: keep every shape at T (the body computes all T rows for every
            text); by default ``serving_default`` computes only the rows of the batch's
            longest text (:func:`dynamic_tokens`; not a float body, see
            :func:`unrolled_over_tokens`, nor a portable one); ``metadata["dynamic_tokens"]``
            records which.

    Returns:
        The fused .tflite bytes.

    Raises:
        ArtifactError: the body is not a TFLite model or does not fit the spec, or a
            bucket is not smaller than the spec's T.
    """
    # A portable artifact keeps T: its own matmul kernels gain nothing from fewer rows
    # (measured: 2.68 ms static, 2.79 ms dynamic on ATIS) and XNNPACK cannot reshape
    # what is left of it between them.
    model, dynamic = _fused_graph(body, spec, SIGNATURE, portable_kernels,
                                  dynamic=not static_tokens and not portable_kernels)
    buckets = dict(sorted((buckets or {}).items()))
    for max_tokens, bucket_body in buckets.items():
        if not spec.markers < max_tokens < spec.max_tokens:
            raise ArtifactError(f"length bucket T={max_tokens} must lie between {spec.markers + 1} and "
                                f"{spec.max_tokens - 1} (the model's T is {spec.max_tokens})")
        bucket_spec = dataclasses.replace(spec, max_tokens=max_tokens)
        bucket, _ = _fused_graph(bucket_body, bucket_spec, bucket_signature(max_tokens), portable_kernels)
        append_signature(model, bucket)
    if buckets:
        share_buffers(model)
        metadata = dict(metadata, buckets=list(buckets))
    metadata = dict(metadata, portable_kernels=bool(portable_kernels), dynamic_tokens=dynamic)
    if not keep_names:
        strip_names(model)
    attach_metadata(model, metadata)
    return seal(model_bytes(model))


def read_metadata(artifact: bytes) -> dict[str, Any]:
    """The edge-pqrnn metadata inside an artifact, checked against its content hash.

    Raises:
        ArtifactError: not a TFLite file, no edge-pqrnn metadata, or content that does
            not match the recorded hash (a corrupted file).
    """
    model = _load(artifact)
    entries = [m for m in model.metadata or [] if _name(m.name) == METADATA_NAME]
    if not entries:
        raise ArtifactError("this .tflite has no edge-pqrnn metadata: export it with `edge-pqrnn export`")
    try:
        raw = model.buffers[entries[0].buffer].data
        data = json.loads(bytes(raw).decode("utf-8"))
    except (IndexError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the edge-pqrnn metadata is corrupt: {exc}") from exc
    problem = hash_problem(artifact, data)
    if problem:
        raise ArtifactError(f"the file {problem}: it is corrupted; export it again")
    return data


__all__ = ["METADATA_NAME", "OUTPUT_NAMES", "bucket_signature", "fuse", "read_metadata", "signature_for"]
