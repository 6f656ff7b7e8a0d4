"""Open an exported .tflite and predict intents and slot spans from raw text.

The file is checked before any interpreter sees it (existence, TFL3 identifier,
flatbuffer structure, exactly one projection op, edge-pqrnn metadata, whole-file content hash, op
options, signature), so a broken or foreign file gives one line saying what is wrong and
what to do, instead of a runtime's stack trace or an abort.

Example:
    >>> with Artifact.load("atis.int8.tflite") as model:  # doctest: +SKIP
    ...     prediction = model.predict(["flights from boston to denver"])[0]
    >>> prediction.intent, prediction.slots  # doctest: +SKIP
    ('atis_flight', (SlotSpan(start=13, end=19, slot_type='fromloc.city_name', text='boston'), ...))
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from typing import Any, NamedTuple

import numpy as np

from edge_pqrnn._io import MAX_ARTIFACT_BYTES, read_file
from edge_pqrnn.converters.tflite_fuse import METADATA_NAME, SIGNATURE, bucket_signature, hash_problem
from edge_pqrnn.data.align import spans_from_tags
from edge_pqrnn.errors import ArtifactError, ConfigError, EdgePqrnnError, InputError, OpLibraryError
from edge_pqrnn.evaluate import Labels, Logits
from edge_pqrnn.projection.ops import op_library, schema
from edge_pqrnn.projection.reference import decode, token_rows
from edge_pqrnn.projection.fo_pool import FO_POOL_OP
from edge_pqrnn.projection.int_matmul import DEQUANTIZE_OP, INT_MATMUL_OP, QUANTIZE_OP
from edge_pqrnn.projection.spec import OP_NAME, ProjectionSpec

#: The metadata ``format`` this module reads.
FORMAT = "edge-pqrnn/1"
#: Runtimes :meth:`Artifact.load` can open in this process.
RUNTIMES = ("litert", "tflite")
INPUT_NAME = "text"
INTENT_OUTPUT, SLOT_OUTPUT, NUM_TOKENS_OUTPUT = "intent_logits", "slot_logits", "num_tokens"

_EXPORT_AGAIN = "export it again with `edge-pqrnn export`"


class OpLibraryMissingError(ArtifactError, OpLibraryError):
    """The op library the artifact needs is missing or not loadable (both an
    :class:`ArtifactError`, since the artifact cannot open, and an :class:`OpLibraryError`)."""


class SlotSpan(NamedTuple):
    """One predicted slot: ``text[start:end]`` is ``text``, of type ``slot_type``."""

    start: int
    end: int
    slot_type: str
    text: str


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the artifact says about one text.

    Attributes:
        text: the text the offsets index: the input ``str`` itself, or for ``bytes``
            input the bytes decoded as UTF-8 with invalid bytes dropped (what the op sees).
        intent: the arg-max intent label.
        score: its softmax probability.
        intent_logits: float32 [num_intents], in the order of ``Artifact.labels.intents``.
        slots: predicted spans, decoded from the arg-max BIO tag of each token row
            (empty without a slot head).
        num_tokens: token rows the op produced (markers included).
    """

    text: str
    intent: str
    score: float
    intent_logits: np.ndarray
    slots: tuple[SlotSpan, ...]
    num_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``slots`` as ``{start, end, type, text}`` objects).

        Lone surrogates (possible in a ``str`` input, never valid UTF-8) become U+FFFD,
        one character for one, so the dict always encodes as UTF-8 and the offsets still
        index ``text``.
        """
        return {
            "text": _utf8_safe(self.text),
            "intent": self.intent,
            "score": self.score,
            "intent_logits": [float(v) for v in self.intent_logits],
            "slots": [{"start": s.start, "end": s.end, "type": s.slot_type, "text": _utf8_safe(s.text)}
                      for s in self.slots],
            "num_tokens": self.num_tokens,
        }


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8_safe(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (same length)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


# ----------------------------------------------------------------------------------------
# Checks on the file, before any interpreter: each returns data or raises one clear line.


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


def decode_name(value: Any) -> str:
    """A flatbuffer string field (bytes or None) as str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


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
    main_tensors = len(model.subgraphs[0].tensors or [])
    checks = [("metadata buffer", bad([m.buffer for m in model.metadata or []], buffers), buffers)]
    for sig in model.signatureDefs or []:
        maps = (sig.inputs or []) + (sig.outputs or [])
        checks.append(("signature tensor", bad([m.tensorIndex for m in maps], main_tensors), main_tensors))
    for what, index, size in checks:
        if index is not None:
            return f"has an out-of-range {what} index ({index}, table size {size})"
    return None


#: Largest integer constant (a shape, axis, padding or slice bound; biases are quantized
#: and not bounded by it) a file may hold: above T x F of the largest spec.
MAX_INTEGER_CONSTANT = 2**26
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
        for i in sorted(constant):
            tensor = tensors[i]
            q = tensor.quantization
            if tensor.type in (2, 4) and (q is None or q.scale is None or not len(q.scale)):  # INT32/INT64
                raw = bytes(np.asarray(buffers[tensor.buffer].data, np.uint8))
                width = 4 if tensor.type == 2 else 8
                values = np.frombuffer(raw[: len(raw) - len(raw) % width], np.int32 if width == 4 else np.int64)
                # Shapes, axes, paddings, slice bounds: an export's reach a few hundred;
                # XNNPACK planned a 2^55-byte arena from an edited shape constant.
                if len(raw) % width or (values.size and np.abs(values.astype(np.float64)).max() > MAX_INTEGER_CONSTANT):
                    return (f"has constant tensor {i} of subgraph {g} with a value beyond {MAX_INTEGER_CONSTANT:,} "
                            "(or a partial element)")
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


def open_artifact(source: bytes | str | os.PathLike, runtime: str | None = None, *, name: str | None = None,
                  **options: Any) -> "Artifact":
    """Open a .tflite (:meth:`Artifact.load`) or an .onnx (``OnnxArtifact.load``): the one
    usability check of ``predict``, ``inspect`` and ``gate`` (checked, opened, run once).

    Args:
        source: a path or the file's bytes (an .onnx is told by its name or first bytes).
        runtime: ``litert``/``tflite`` for a .tflite (default litert), ``onnxruntime`` for
            an .onnx (its default and only one); another is refused with the reason.
        name: the name for messages (default: the path, or ``"<bytes>"``).
        **options: passed to the ``load`` (``library``, ``num_threads``...).

    Returns:
        The opened artifact.

    Raises:
        ArtifactError: the file is not usable (the one-line reason).
        ConfigError: the runtime does not run this kind of file, or is not installed.

    Example:
        >>> with open_artifact("atis.onnx") as model:  # doctest: +SKIP
        ...     model.predict(["flights to boston"])
    """
    from edge_pqrnn.converters.onnx_export import RUNTIME as ONNX_RUNTIME
    from edge_pqrnn.converters.onnx_export import OnnxArtifact, is_onnx

    if is_onnx(source):
        return OnnxArtifact.load(source, runtime=runtime or ONNX_RUNTIME, name=name, **options)
    return Artifact.load(source, runtime=runtime or "litert", name=name, **options)


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


def runtime_version(runtime: str) -> str:
    """The installed version of an in-process runtime (``""`` when not installed)."""
    from importlib import metadata

    package = {"litert": "ai-edge-litert", "tflite": "tensorflow"}.get(runtime)
    if package is None:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def _open_interpreter(data: bytes, name: str, runtime: str, library: str | None, num_threads: int) -> Any:
    """An interpreter with the op delegate, every failure turned into one line."""
    from edge_pqrnn.runtimes import interpreter

    if runtime == "onnxruntime":
        raise ConfigError(f"{name} is a .tflite, which runs in {' or '.join(RUNTIMES)}, not onnxruntime: drop "
                          "--runtime, or run the .onnx from `edge-pqrnn export --format onnx` in onnxruntime")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)} "
                          "(tflite-runtime 2.14 runs only through `edge-pqrnn validate --runtime tflite-runtime`)")
    if library is None:
        try:
            library = op_library()
        except OpLibraryError as exc:
            overridden = "EDGE_PQRNN_OP_LIBRARY" in str(exc)
            hint = ": unset it or point it at a built libpqrnn_projection.so" if overridden else ""
            raise OpLibraryMissingError(f"cannot open {name}: {exc}{hint}") from exc
    elif not os.path.isfile(library):
        raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not exist; pass the path "
                                    "of libpqrnn_projection.so, or none to use the one built by `pip install`")
    # dlopen it first: a runtime's load_delegate on a bad file leaves a half-built
    # Delegate whose __del__ prints a traceback at exit.
    try:
        if not hasattr(ctypes.CDLL(library), "tflite_plugin_create_delegate"):
            raise OSError("it does not export tflite_plugin_create_delegate")
    except OSError as exc:
        raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not load as a TFLite "
                                    f"delegate ({exc}); rebuild it with `pip install -e .`") from exc
    try:
        return interpreter(data, runtime=runtime, num_threads=num_threads, library=library)
    except ImportError as exc:
        raise ConfigError(f"runtime {runtime!r} is not installed ({exc}); `pip install ai-edge-litert` for litert, "
                          "`pip install tensorflow` for tflite") from exc
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Failed to load delegate"):  # load_delegate's own wording
            raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not load as a TFLite "
                                        f"delegate ({first}); rebuild it with `pip install -e .`") from exc
        raise ArtifactError(f"{name} is rejected by {runtime} ({first}): {_EXPORT_AGAIN}") from exc


def _as_batch(texts: Sequence[str | bytes]) -> list[str | bytes]:
    """``texts`` as a list of str/bytes, or one :class:`InputError` saying what to pass.

    Raises:
        InputError: a single text, ``None``, a number, a mapping or set (no defined
            order, and a dict would silently be its keys), a 0-d or multi-dimensional
            array, or an element that is not str/bytes.
    """
    if isinstance(texts, (str, bytes, bytearray, memoryview)):
        raise InputError(f"texts must be a list of str or bytes, got a single {type(texts).__name__}: "
                         "wrap it in a list ([text])")
    if isinstance(texts, (Mapping, Set)):
        raise InputError(f"texts must be a list of str or bytes, got a {type(texts).__name__}: pass a list, "
                         "e.g. list(d.values()) for the texts of a dict")
    if isinstance(texts, np.ndarray) and texts.ndim != 1:
        raise InputError(f"texts must be a list of str or bytes, got a {texts.ndim}-d array: pass a 1-d array "
                         "or a list")
    try:
        batch = list(texts)
    except TypeError:
        raise InputError(f"texts must be a list of str or bytes, got {type(texts).__name__}: pass a list "
                         "([text, ...])") from None
    for i, text in enumerate(batch):
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise InputError(f"texts[{i}] is a {type(text).__name__}; every text must be str or UTF-8 bytes")
    return [bytes(t) if not isinstance(t, str) else t for t in batch]


def _batch_size(value: Any) -> int:
    """``batch_size`` as an int, or an :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"batch_size must be a whole number of at least 1, got {value!r}")
    return int(value)


def _original_offsets(text: str) -> list[int] | None:
    """For a str with lone surrogates (which the op drops), the index in ``text`` of each
    character of the decoded text; None when nothing was dropped."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return None
    # Every other character is valid UTF-8 on its own, so decoding drops exactly the
    # surrogates and keeps the rest in order.
    return [i for i, ch in enumerate(text) if not "\ud800" <= ch <= "\udfff"]


def runtime_failure(name: str, runtime: str, exc: BaseException, export_again: str = _EXPORT_AGAIN) -> ArtifactError:
    """A runtime's own error (invoke, allocation, shapes) as one line naming the file."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ArtifactError(f"{name} does not run in {runtime} ({first[:200]}): {export_again}")


def check_outputs(name: str, runtime: str, out: dict[str, np.ndarray], max_tokens: int,
                  export_again: str = _EXPORT_AGAIN) -> None:
    """Refuse outputs that no intact artifact gives: non-finite logits, token counts
    outside [0, T] (what a file with damaged quantization or shapes can produce).

    Raises:
        ArtifactError: the first such output, as one line.
    """
    for key, value in out.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ArtifactError(f"{name} gives non-finite {key} in {runtime} (damaged quantization parameters or "
                                f"weights): the file is corrupted: {export_again}")
    counts = out.get(NUM_TOKENS_OUTPUT)
    if counts is not None and len(counts) and not ((counts >= 0) & (counts <= max_tokens)).all():
        raise ArtifactError(f"{name} gives token counts outside [0, {max_tokens}] in {runtime}: the file is "
                            f"corrupted: {export_again}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (numerically stable), returned as float32."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def default_max_interpreters() -> int:
    """How many interpreters an :class:`Artifact` opens at most for concurrent calls:
    twice the CPU count (a thread's Python work overlaps another's invoke; measured with
    tools/benchmark_threads.py: on 2 cores, 4 interpreters ran tf.lite 0.97x as fast as one
    object per thread, 2 ran it 0.76x), at least 2."""
    return max(2, 2 * (os.cpu_count() or 1))


class _InterpreterPool:
    """Interpreters of one model, each used by one thread at a time.

    A TFLite interpreter is not thread-safe (its tensors, arena and the op's outputs are
    per interpreter), so a call takes an idle interpreter, or opens another one when all
    are busy (at most ``limit``; beyond that a call waits), and gives it back. Measured
    with tools/benchmark_threads.py (docs/security.md): one shared object runs as fast as
    one object per thread, and a lock would serialise every call.
    """

    def __init__(self, first: Any, open_another: Callable[[], Any], limit: int) -> None:
        self._idle = [first]
        self._open = open_another
        self._opened = 1
        self._limit = limit
        self._closed = False
        self._ready = threading.Condition()

    @property
    def opened(self) -> int:
        """How many interpreters this pool has opened (idle or busy)."""
        return self._opened

    @contextlib.contextmanager
    def take(self, name: str) -> Iterator[Any]:
        """An interpreter for this thread alone until the ``with`` block ends.

        Raises:
            ArtifactError: the artifact was closed.
        """
        with self._ready:
            while not self._closed and not self._idle and self._opened >= self._limit:
                self._ready.wait()
            if self._closed:
                raise ArtifactError(f"{name} was closed: load it again with Artifact.load()")
            interp = self._idle.pop() if self._idle else None
            if interp is None:
                self._opened += 1  # reserved now, opened outside the lock (it takes milliseconds)
        if interp is None:
            try:
                interp = self._open()
            except BaseException:
                with self._ready:
                    self._opened -= 1
                    self._ready.notify()
                raise
        try:
            yield interp
        finally:
            with self._ready:
                if not self._closed:
                    self._idle.append(interp)
                self._ready.notify()

    def close(self) -> None:
        """Drop the idle interpreters; busy ones are dropped when their call ends."""
        with self._ready:
            self._closed = True
            self._idle.clear()
            self._ready.notify_all()


class Artifact:
    """An edge-pqrnn .tflite opened in one runtime: raw text in, intents and slots out.

    Use :meth:`load`; the object is also a context manager that frees the interpreters.

    **Thread safety.** One object may be shared by any number of threads: each call of
    :meth:`run`, :meth:`logits` or :meth:`predict` runs on an interpreter that no other
    thread uses meanwhile, taken from a pool that opens one more interpreter whenever all
    are busy (up to ``max_interpreters``; further calls wait for one to be free). The
    outputs are bit for bit those of a single thread (tests/test_concurrency.py).

    Attributes:
        data: the file's bytes.
        name: its path (or ``"<bytes>"``).
        metadata: the verified metadata dict.
        spec: the projection spec (from the metadata; equal to the op's options).
        labels: intents, tags and slot types (index = logit index).
        runtime: ``"litert"`` or ``"tflite"``.
    """

    def __init__(self, data: bytes, name: str, metadata: dict[str, Any], interp: Any, runtime: str,
                 open_another: Callable[[], Any] | None = None, max_interpreters: int | None = None) -> None:
        self.data = data
        self.name = name
        self.metadata = metadata
        self.spec = ProjectionSpec.from_dict(metadata["projection"])
        self.labels = Labels(tuple(metadata["intents"]), tuple(metadata["tags"]),
                             tuple(metadata.get("slot_types", ())))
        self.runtime = runtime
        self._interp = interp  # the first interpreter (also in the pool)
        limit = max_interpreters or default_max_interpreters()
        self._pool = _InterpreterPool(interp, open_another or (lambda: interp), 1 if open_another is None else limit)
        # A fixed batch dimension (a batch-1 export) caps how many texts go in per call.
        text = interp.get_signature_runner(SIGNATURE).get_input_details()[INPUT_NAME]
        fixed = int(text["shape_signature"][0]) if len(text["shape_signature"]) else -1
        self._max_batch = fixed if fixed > 0 else None
        # Length buckets, smallest first; the full-T signature takes what none holds.
        self.signatures = [(bucket_signature(t), int(t)) for t in sorted(metadata.get("buckets") or ())]
        self.signatures.append((SIGNATURE, self.spec.max_tokens))

    @classmethod
    def load(cls, source: bytes | str | os.PathLike, runtime: str = "litert", *, library: str | None = None,
             num_threads: int = 1, max_interpreters: int | None = None, name: str | None = None) -> "Artifact":
        """Check an artifact, open it in ``runtime`` and run it once on an empty text.

        Args:
            source: .tflite bytes or a path.
            runtime: ``"litert"`` (ai_edge_litert) or ``"tflite"`` (tf.lite).
            library: the op library (default: the one built by ``pip install``, or
                ``EDGE_PQRNN_OP_LIBRARY``).
            num_threads: CPU threads of the builtin kernels (per interpreter).
            max_interpreters: most interpreters opened for calls from concurrent
                threads (default: twice the CPU count); 1 makes calls take turns.
            name: the name for messages (default: the path, or ``"<bytes>"``).

        Returns:
            The opened :class:`Artifact`.

        Raises:
            ArtifactError: the file is missing, not TFLite, truncated, corrupt, foreign,
                or the runtime rejects it (:class:`OpLibraryMissingError` when the op
                library is missing or does not load).
            ConfigError: unknown or uninstalled runtime.

        Example:
            >>> model = Artifact.load("atis.int8.tflite", runtime="tflite")  # doctest: +SKIP
        """
        data, name, metadata = check(source, name)
        if max_interpreters is not None and (isinstance(max_interpreters, bool)
                                             or not isinstance(max_interpreters, int) or max_interpreters < 1):
            raise ConfigError(f"max_interpreters must be a whole number of at least 1, got {max_interpreters!r}")
        interp = _open_interpreter(data, name, runtime, library, num_threads)

        def open_another() -> Any:
            return _open_interpreter(data, name, runtime, library, num_threads)

        try:
            artifact = cls(data, name, metadata, interp, runtime, open_another, max_interpreters)
            artifact.run([""])  # fail now, with the file's name, not at the first real call
        except EdgePqrnnError:
            raise
        except Exception as exc:  # the runtime's own errors (allocation, unresolved op...)
            raise runtime_failure(name, runtime, exc) from exc
        return artifact

    def __enter__(self) -> "Artifact":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the interpreters (also done when the object is garbage collected); calls
        still running finish first on theirs."""
        self._interp = None
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    @property
    def size(self) -> int:
        """Size of the file in bytes."""
        return len(self.data)

    @property
    def runtime_version(self) -> str:
        """Version of the runtime package the artifact runs in."""
        return runtime_version(self.runtime)

    def run(self, texts: Sequence[str | bytes], batch_size: int = 64) -> dict[str, np.ndarray]:
        """The raw outputs for a batch of texts, computed ``batch_size`` texts at a time.

        Args:
            texts: str (encoded as UTF-8; lone surrogates are dropped by the op) or raw
                UTF-8 bytes (invalid bytes are dropped); any length, any content.
            batch_size: texts per interpreter call (bounds memory: the op's features
                are float32 [batch, T, F]).

        Returns:
            ``intent_logits`` float32 [N, num_intents], ``slot_logits`` float32
            [N, T, num_tags] (with a slot head) and ``num_tokens`` int32 [N].

        Raises:
            InputError: ``texts`` is not a list of str/bytes, or ``batch_size`` is not a
                whole number >= 1 (the one error type for bad arguments; it is also a
                ``DataError``, ``ConfigError`` and ``TypeError``).
            ArtifactError: the artifact was closed.

        Example:
            >>> model.run(["flights to boston"])["intent_logits"].shape  # doctest: +SKIP
            (1, 22)
        """
        batch = _as_batch(texts)
        batch_size = _batch_size(batch_size)
        from edge_pqrnn.runtimes import run_signature

        step = min(batch_size, self._max_batch or batch_size)
        out = self._empty_outputs(len(batch))
        pending = np.arange(len(batch))
        with self._pool.take(self.name) as interp:
            try:
                for signature, max_tokens in self.signatures:
                    if not len(pending):
                        break
                    texts = [batch[i] for i in pending]
                    chunks = [run_signature(interp, texts[i : i + step], signature)
                              for i in range(0, len(texts), step)]
                    part = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
                    # A bucket filled to its T may have truncated the text: the next bucket retries it.
                    done = (part[NUM_TOKENS_OUTPUT] < max_tokens) | (signature == SIGNATURE)
                    rows = pending[done]
                    for key, value in part.items():
                        if key == SLOT_OUTPUT:
                            out[key][rows, :max_tokens] = value[done]
                        else:
                            out[key][rows] = value[done]
                    pending = pending[~done]
            except Exception as exc:  # the runtime's own errors, or outputs of another shape
                raise runtime_failure(self.name, self.runtime, exc) from exc
        check_outputs(self.name, self.runtime, out, self.spec.max_tokens)
        return out

    def _empty_outputs(self, n: int = 0) -> dict[str, np.ndarray]:
        out = {INTENT_OUTPUT: np.zeros((n, len(self.labels.intents)), np.float32),
               NUM_TOKENS_OUTPUT: np.zeros((n,), np.int32)}
        if self.labels.tags:
            out[SLOT_OUTPUT] = np.zeros((n, self.spec.max_tokens, len(self.labels.tags)), np.float32)
        return out

    def logits(self, texts: Sequence[str | bytes], batch_size: int = 64) -> Logits:
        """Intent and slot logits as :class:`edge_pqrnn.evaluate.Logits`, so the artifact
        plugs into ``evaluate(artifact.logits, examples, labels=..., spec=...)``."""
        out = self.run(texts, batch_size)
        return Logits(out[INTENT_OUTPUT], out.get(SLOT_OUTPUT))

    def predict(self, texts: Sequence[str | bytes], batch_size: int = 64) -> list[Prediction]:
        """Intent, score and slot spans for each text.

        Slot spans come from the arg-max BIO tag of each token row; the op returns no
        character offsets, so the rows are re-tokenised with the numpy reference under
        the artifact's own projection spec (bit-exact with the op; checked through the
        row count).

        Args:
            texts: str or raw UTF-8 bytes (see :meth:`run`).
            batch_size: texts per interpreter call.

        Returns:
            One :class:`Prediction` per text, in order.

        Raises:
            InputError: ``texts`` is not a list of str/bytes, or ``batch_size`` is not a
                whole number >= 1 (see :meth:`run`).
            ArtifactError: the artifact was closed, or the op's row count differs from the reference tokeniser's
                (an op library from another edge-pqrnn version).

        Example:
            >>> [p.intent for p in model.predict(["flights to boston", b"fare \\xff"])]  # doctest: +SKIP
            ['atis_flight', 'atis_airfare']
        """
        batch = _as_batch(texts)
        out = self.run(batch, batch_size)
        probabilities = softmax(out[INTENT_OUTPUT])
        best = probabilities.argmax(-1)
        slot_logits = out.get(SLOT_OUTPUT)
        predictions = []
        for i, text in enumerate(batch):
            decoded = decode(text)
            n = int(out[NUM_TOKENS_OUTPUT][i])
            shown = text if isinstance(text, str) else decoded
            spans: tuple[SlotSpan, ...] = ()
            if slot_logits is not None:
                index = _original_offsets(text) if isinstance(text, str) else None
                spans = self._spans(shown, decoded, index, slot_logits[i], n)
            predictions.append(Prediction(shown, self.labels.intents[best[i]], float(probabilities[i, best[i]]),
                                          out[INTENT_OUTPUT][i], spans, n))
        return predictions

    def _spans(self, shown: str, decoded: str, index: list[int] | None, slot_logits: np.ndarray,
               n: int) -> tuple[SlotSpan, ...]:
        """Spans of the arg-max tags, mapped from ``decoded`` to ``shown`` offsets by ``index``."""
        rows = token_rows(decoded, self.spec)
        if len(rows) != n:
            raise ArtifactError(
                f"the projection op made {n} token rows where the reference tokeniser makes {len(rows)}: the op "
                f"library is from another edge-pqrnn version; reinstall edge-pqrnn (`pip install -e .`)")
        tags = [self.labels.tags[k] for k in slot_logits[:n].argmax(-1)]
        spans = []
        for start, end, slot_type in spans_from_tags(tags, rows):
            if index is not None:
                start, end = index[start], index[end - 1] + 1
            spans.append(SlotSpan(start, end, slot_type, shown[start:end]))
        return tuple(spans)


__all__ = ["Artifact", "Checked", "FORMAT", "OpLibraryMissingError", "Prediction", "RUNTIMES", "SlotSpan", "check",
           "find_problems", "metadata_contents", "open_artifact", "parse_flatbuffer", "read_metadata", "read_source"]
