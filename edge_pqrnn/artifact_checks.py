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

from edge_pqrnn._io import MAX_ARTIFACT_BYTES, read_file
from edge_pqrnn.artifact_graph import builtin_code, graph_problem, op_problem, tensor_shape
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
        buckets = metadata.get("buckets") or []  # length buckets of an older export (retired)
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
    problem = _index_problem(model) or graph_problem(model) or op_problem(model)
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
