"""Checks on an artifact file before any interpreter sees it: each returns data or raises
one clear line.

In order: the file itself (a regular file under the size limit, :mod:`edge_pqrnn._io`),
the TFL3 identifier and flatbuffer structure, every table index in range, the graph's
tensors, quantization and ops (only what an export holds), exactly one projection op,
the edge-pqrnn metadata and its field types, and the whole-file content hash. A broken,
truncated, crafted or foreign file gives one line saying what is wrong and what to do,
instead of a runtime's stack trace or an abort. :func:`check` runs them all.

Example:
    >>> check("atis.int8.tflite").metadata["intents"][:2]  # doctest: +SKIP
    ['atis_abbreviation', 'atis_aircraft']
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, NamedTuple

import numpy as np

from edge_pqrnn._io import MAX_ARTIFACT_BYTES, read_file
from edge_pqrnn.errors import ArtifactError, EdgePqrnnError, InputError
from edge_pqrnn.format import (DEQUANTIZE_OP, FO_POOL_OP, FORMAT, INT_MATMUL_OP, INTENT_OUTPUT, METADATA_NAME,
                               NUM_TOKENS_OUTPUT, PROJECTION_OP as OP_NAME, QUANTIZE_OP, SIGNATURE, SLOT_OUTPUT,
                               TEXT_INPUT as INPUT_NAME, decode_name, hash_problem, schema)
from edge_pqrnn.projection.spec import ProjectionSpec

_EXPORT_AGAIN = "export it again with `edge-pqrnn export`"


def read_source(source: bytes | str | os.PathLike, name: str | None = None) -> tuple[bytes, str]:
    """The bytes of an artifact and a name for messages.

    Args:
        source: .tflite bytes or a path.
        name: the name for messages (default: the path, or ``"<bytes>"`` for bytes).

    Returns:
        ``(data, name)``.

    Raises:
        ArtifactError: the path does not exist, is a directory, a FIFO, a device, a
            symbolic link loop, bigger than ``MAX_ARTIFACT_BYTES``, or cannot be read
            (see :func:`edge_pqrnn._io.read_file`).
        InputError: ``source`` is neither bytes nor a path.

    Example:
        >>> read_source(b"abc")
        (b'abc', '<bytes>')
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"source must be a path or the artifact's bytes, got {type(source).__name__}")
    data = read_file(source, limit=MAX_ARTIFACT_BYTES, error=ArtifactError, what="an artifact",
                     fix="pass the path of a .tflite written by `edge-pqrnn export`",
                     directory="pass the .tflite file itself (a run directory goes to --reference)")
    return data, name or str(source)


def parse_flatbuffer(data: bytes, name: str = "<bytes>") -> Any:
    """Parse TFLite flatbuffer bytes into the schema's object tree (``ModelT``).

    Args:
        data: the file's bytes.
        name: the file name used in messages.

    Returns:
        The ``ModelT`` object.

    Raises:
        ArtifactError: no ``TFL3`` identifier (not TFLite, or a damaged header), or the
            structure does not parse (truncated or corrupt).

    Example:
        >>> try:
        ...     parse_flatbuffer(b"not a model")
        ... except ArtifactError as exc:
        ...     print(str(exc)[:56])
        <bytes> is not a TFLite model (11 bytes, no TFL3 identif
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ArtifactError(
            f"{name} is not a TFLite model ({len(data):,} bytes, no TFL3 identifier at byte 4): pass a .tflite "
            f"written by `edge-pqrnn export`; if it was one, its header is damaged: {_EXPORT_AGAIN}"
        )
    try:
        model = schema().ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # out-of-range offsets surface as struct.error, IndexError, ValueError...
        needed = re.search(r"at least (\d+) bytes", str(exc))
        detail = (f"it refers to byte {int(needed.group(1)):,}" if needed
                  else f"{type(exc).__name__}: {str(exc).strip()[:60]}")
        raise ArtifactError(
            f"{name} is truncated or corrupt ({len(data):,} bytes; the flatbuffer does not parse, {detail}): "
            f"copy the file again or {_EXPORT_AGAIN}"
        ) from exc
    # Buffers of >2 GB models live after the flatbuffer (offset/size): a cut file loses them.
    for buf in model.buffers or []:
        if buf.offset > 1 and buf.offset + buf.size > len(data):
            raise ArtifactError(f"{name} is truncated ({len(data):,} bytes; a weight buffer ends at byte "
                                f"{buf.offset + buf.size:,}): copy the file again or {_EXPORT_AGAIN}")
    return model


def builtin_code(code: Any) -> int:
    """The builtin operator code of an ``OperatorCodeT``."""
    # Schema v3a stores builtin codes > 127 only in builtinCode, older ones only in the
    # deprecated field: the larger of the two is the real one (as TFLite reads it).
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def projection_ops(model: Any) -> list[Any]:
    """The operators of the main subgraph that are the edge-pqrnn projection op."""
    custom = schema().BuiltinOperator.CUSTOM
    codes = model.operatorCodes or []
    graph = (model.subgraphs or [None])[0]
    return [op for op in (graph.operators or []) if builtin_code(codes[op.opcodeIndex]) == custom
            and decode_name(codes[op.opcodeIndex].customCode) == OP_NAME] if graph else []


def read_metadata(model: Any, data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The edge-pqrnn metadata of a parsed model, without raising.

    Args:
        model: a parsed ``ModelT``.
        data: the file's bytes (for the content hash).

    Returns:
        ``(metadata, problem)``: the metadata dict (None when absent or unreadable) and
        a one-line problem (None when the metadata is present, readable and its
        content hash matches the file).
    """
    entries = [m for m in model.metadata or [] if decode_name(m.name) == METADATA_NAME]
    if not entries:
        return None, (f"has no edge-pqrnn metadata (a .tflite exported by another tool, or a bare projection "
                      f"model?): {_EXPORT_AGAIN}")
    try:
        metadata = json.loads(bytes(model.buffers[entries[0].buffer].data).decode("utf-8"))
        if not isinstance(metadata, dict):
            raise ValueError(f"a JSON {type(metadata).__name__}, not an object")
    except (IndexError, TypeError, ValueError) as exc:
        return None, f"has unreadable edge-pqrnn metadata ({str(exc)[:80]}): the file is corrupted: {_EXPORT_AGAIN}"
    problem = hash_problem(data, metadata)
    if problem:
        return metadata, f"{problem}: the file is corrupted: {_EXPORT_AGAIN}"
    return metadata, None


def metadata_contents(metadata: dict[str, Any], export_again: str = _EXPORT_AGAIN
                      ) -> tuple[ProjectionSpec, list[str], list[str]] | str:
    """The projection spec, intents and tags of an artifact's metadata, every field's
    type checked (a .tflite's and an .onnx's alike).

    Args:
        metadata: the decoded metadata JSON object.
        export_again: the fix that ends most messages.

    Returns:
        ``(spec, intents, tags)``, or the one-line problem (ending in the fix): another
        format, a missing or mistyped field (``intents``, ``tags``, ``slot_types`` lists
        of strings; ``projection`` a valid spec; ``buckets`` a list of token counts
        below T), or malformed labels.
    """
    if metadata.get("format") != FORMAT:
        return (f"has metadata format {metadata.get('format')!r}, this edge-pqrnn reads {FORMAT!r}: install the "
                f"edge-pqrnn version that wrote it ({metadata.get('toolkit_version', '?')}) or export it again")
    try:
        projection = metadata["projection"]
        if not isinstance(projection, dict):
            raise TypeError(f"projection must be an object, got a JSON {type(projection).__name__}")
        spec = ProjectionSpec.from_dict(projection)
        intents, tags, slot_types = metadata["intents"], metadata["tags"], metadata.get("slot_types", [])
        lists = (intents, tags, slot_types)
        if not all(isinstance(x, list) and all(isinstance(label, str) for label in x) for x in lists):
            raise TypeError("intents, tags and slot_types must be lists of strings")
        buckets = metadata.get("buckets") or []
        if not isinstance(buckets, list) or not all(isinstance(t, int) and not isinstance(t, bool)
                                                    and 1 < t < spec.max_tokens for t in buckets):
            raise TypeError(f"buckets must be a list of token counts below {spec.max_tokens}")
    except (KeyError, TypeError, ValueError, EdgePqrnnError) as exc:
        return f"has incomplete metadata ({str(exc)[:80]}): {export_again}"
    bad_tags = [t for t in tags if t != "O" and not (len(t) > 2 and t[:2] in ("B-", "I-"))]
    if not intents or bad_tags:
        return f"has malformed labels ({len(intents)} intents, bad tags {bad_tags[:3]}): {export_again}"
    return spec, intents, tags


def _signature(model: Any) -> Any | None:
    return next((s for s in model.signatureDefs or [] if decode_name(s.signatureKey) == SIGNATURE), None)


def tensor_shape(tensor: Any) -> list[int]:
    """A tensor's shape with -1 for dynamic dimensions (its shape signature if any)."""
    shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    return [int(v) for v in (shape if shape is not None else [])]


def _index_problem(model: Any) -> str | None:
    """The first index (op code, tensor, buffer) pointing outside its table, if any: a
    damaged table must not crash the checks below (nor reach a runtime)."""
    codes, buffers = len(model.operatorCodes or []), len(model.buffers or [])
    fully_connected = schema().BuiltinOperator.FULLY_CONNECTED
    if not model.subgraphs:
        return "has no subgraph"

    def bad(indices: Any, size: int) -> int | None:
        return next((int(i) for i in (indices if indices is not None else []) if not 0 <= i < size), None)

    for graph in model.subgraphs:
        tensors = len(graph.tensors or [])
        checks = [("graph input", bad(graph.inputs, tensors), tensors),
                  ("graph output", bad(graph.outputs, tensors), tensors),
                  ("tensor buffer", bad([t.buffer for t in graph.tensors or []], buffers), buffers)]
        for op in graph.operators or []:
            # No omitted (-1) input but a float FULLY_CONNECTED's bias: litert crashed on an
            # omitted RESHAPE shape.
            inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            if (len(inputs) > 2 and inputs[2] == -1 and 0 <= op.opcodeIndex < codes
                    and builtin_code(model.operatorCodes[op.opcodeIndex]) == fully_connected):
                inputs = inputs[:2] + inputs[3:]
            checks += [("op code", bad([op.opcodeIndex], codes), codes),
                       ("op input", bad(inputs, tensors), tensors),
                       ("op output", bad(op.outputs, tensors), tensors)]
        for what, index, size in checks:
            if index is not None:
                return f"has an out-of-range {what} index ({index}, table size {size})"
    checks = [("metadata buffer", bad([m.buffer for m in model.metadata or []], buffers), buffers)]
    for sig in model.signatureDefs or []:
        # each signature indexes the tensors of its own subgraph (a length bucket's may
        # have more than the main graph)
        index = int(sig.subgraphIndex or 0)
        checks.append(("signature subgraph", bad([index], len(model.subgraphs)), len(model.subgraphs)))
        if checks[-1][1] is not None:
            break
        maps = (sig.inputs or []) + (sig.outputs or [])
        tensors = len(model.subgraphs[index].tensors or [])
        checks.append(("signature tensor", bad([m.tensorIndex for m in maps], tensors), tensors))
    for what, index, size in checks:
        if index is not None:
            return f"has an out-of-range {what} index ({index}, table size {size})"
    return None


#: The quantization scales accepted (far around what an export writes).
MIN_SCALE, MAX_SCALE = 1e-9, 1e3
#: Most that two scales of one op's int8 tensors may differ by (a runtime's rescaling
#: multipliers are their ratios: litert aborted at 4.6e5; the ATIS export's reach 378).
MAX_SCALE_RATIO = 2.0**16
#: The zero-point range of each quantized tensor type (schema TensorType codes).
_ZERO_POINTS = {9: (-128, 127), 3: (0, 255), 7: (0, 0), 2: (0, 0), 4: (0, 0)}  # INT8, UINT8, INT16, INT32, INT64


def _graph_problem(model: Any) -> str | None:
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
            ordinary = values[~np.isin(values, (2**31 - 1, -(2**31), 2**63 - 1, -(2**63)))]
            limit = MAX_SIZE_CONSTANT if i in sizes else MAX_INTEGER_CONSTANT
            if ordinary.size and np.abs(ordinary.astype(np.float64)).max() > limit:
                return f"has tensor {i} of subgraph {g}, an integer constant beyond {limit:,}"
    return None


#: The builtin ops an export can hold, with their (inputs, outputs) counts (None: given
#: by the op's options; a tuple: any of these). A runtime trusts both: litert crashed on
#: a MUL recoded as a STRIDED_SLICE and on a SPLIT whose numSplits was not its outputs.
_BUILTIN_ARITY: dict[str, tuple[Any, Any]] = {
    **{op: (2, 1) for op in ("ADD", "SUB", "MUL", "DIV", "GATHER", "REDUCE_PROD", "SUM", "MEAN", "REDUCE_MAX",
                             "EXPAND_DIMS", "PAD", "TRANSPOSE", "BATCH_MATMUL", "MAXIMUM", "MINIMUM",
                             "SQUARED_DIFFERENCE")},
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


def _op_problem(model: Any) -> str | None:
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


def find_problems(model: Any, data: bytes) -> list[str]:
    """Everything that stops a parsed model from being a usable edge-pqrnn artifact.

    Checked in this order (the first one is what :meth:`Artifact.load` raises): exactly
    one projection op and no other custom op; metadata present, readable, of a known
    format and matching the file's content hash; its fields of the right types and the
    labels well-formed (:func:`metadata_contents`); the op's options valid and equal to
    the metadata's projection; a ``serving_default`` signature with a
    STRING ``text`` input and outputs shaped like the labels.

    Args:
        model: a parsed ``ModelT`` (see :func:`parse_flatbuffer`).
        data: the bytes it was parsed from (for the content hash).

    Returns:
        One-line problems, each ending in what to do; empty for a good artifact.
    """
    s = schema()
    problem = _index_problem(model) or _graph_problem(model) or _op_problem(model)
    if problem:
        return [f"{problem}: the file is corrupted: {_EXPORT_AGAIN}"]
    problems: list[str] = []
    ops = projection_ops(model)
    if not ops:
        problems.append(f"has no {OP_NAME} op, so it does not take raw text (a model body or another tool's "
                        f"model?): {_EXPORT_AGAIN}")
    elif len(ops) > 1:
        problems.append(f"has {len(ops)} {OP_NAME} ops where exactly one is expected: {_EXPORT_AGAIN}")
    others = sorted({decode_name(c.customCode) for c in model.operatorCodes or []
                     if builtin_code(c) == s.BuiltinOperator.CUSTOM
                     and decode_name(c.customCode) not in (OP_NAME, FO_POOL_OP, INT_MATMUL_OP, DEQUANTIZE_OP,
                                                                 QUANTIZE_OP)})
    if others:
        problems.append(f"uses custom ops {others} that edge-pqrnn's op library does not provide: "
                        f"{_EXPORT_AGAIN}")
    metadata, problem = read_metadata(model, data)
    if problem:
        problems.append(problem)
    if metadata is None:
        return problems
    contents = metadata_contents(metadata, _EXPORT_AGAIN)
    if isinstance(contents, str):
        problems.append(contents)
        return problems
    spec, intents, tags = contents
    if len(ops) == 1:
        options = bytes(ops[0].customOptions if ops[0].customOptions is not None else b"")
        try:
            from flatbuffers import flexbuffers

            # Decoded in Python (no op library needed): keys, version and values must be
            # exactly what the exporter wrote, which is also what the op accepts.
            op_spec = ProjectionSpec.from_op_options(flexbuffers.Loads(options))
        except Exception as exc:  # damaged flexbuffer bytes fail in many ways
            problems.append(f"has invalid {OP_NAME} options ({str(exc)[:80]}): the file is corrupted: "
                            f"{_EXPORT_AGAIN}")
        else:
            if op_spec != dataclasses.replace(spec, distortion=0.0):
                problems.append(f"has {OP_NAME} options {op_spec.op_options()} that differ from its metadata's "
                                f"projection {spec.op_options()} (edited after export?): {_EXPORT_AGAIN}")
    signature = _signature(model)
    graph = model.subgraphs[0]  # present: _index_problem checked it
    if signature is None:
        problems.append(f"has no {SIGNATURE!r} signature: {_EXPORT_AGAIN}")
        return problems
    inputs = {decode_name(m.name): graph.tensors[m.tensorIndex] for m in signature.inputs or []}
    outputs = {decode_name(m.name): graph.tensors[m.tensorIndex] for m in signature.outputs or []}
    if list(inputs) != [INPUT_NAME] or inputs[INPUT_NAME].type != s.TensorType.STRING:
        problems.append(f"has signature inputs {sorted(inputs)} where one STRING input {INPUT_NAME!r} is expected: "
                        f"{_EXPORT_AGAIN}")
    expected = {INTENT_OUTPUT: [-1, len(intents)], NUM_TOKENS_OUTPUT: [-1]}
    if tags:
        expected[SLOT_OUTPUT] = [-1, spec.max_tokens, len(tags)]
    found = {name: tensor_shape(t) for name, t in outputs.items()}
    # The batch dimension may be fixed (a batch-1 export) or dynamic (-1): compare the rest.
    if sorted(found) != sorted(expected) or any(found[k][1:] != v[1:] or len(found[k]) != len(v)
                                                for k, v in expected.items()):
        problems.append(f"has outputs {found} that do not fit its labels and projection (expected {expected}): "
                        f"the file is corrupted: {_EXPORT_AGAIN}")
    return problems


class Checked(NamedTuple):
    """A file that passed :func:`check`: its bytes, name and verified metadata."""

    data: bytes
    name: str
    metadata: dict[str, Any]


def check(source: bytes | str | os.PathLike, name: str | None = None) -> Checked:
    """Check an artifact file without running it.

    Args:
        source: .tflite bytes or a path.
        name: the name for messages (default: the path, or ``"<bytes>"``).

    Returns:
        A :class:`Checked` (bytes, name for messages, verified metadata).

    Raises:
        ArtifactError: the first problem found (missing file, not TFLite, truncated,
            corrupt, foreign, hash mismatch...), as one line naming the file and the fix.

    Example:
        >>> check("atis.int8.tflite").metadata["intents"][:2]  # doctest: +SKIP
        ['atis_abbreviation', 'atis_aircraft']
    """
    data, name = read_source(source, name)
    model = parse_flatbuffer(data, name)
    problems = find_problems(model, data)
    if problems:
        raise ArtifactError(f"{name} {problems[0]}")
    metadata, _ = read_metadata(model, data)
    return Checked(data, name, metadata)


__all__ = ["Checked", "builtin_code", "check", "decode_name", "find_problems", "metadata_contents", "parse_flatbuffer",
           "projection_ops", "read_metadata", "read_source", "tensor_shape"]
