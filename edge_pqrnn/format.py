"""The artifact format, shared by the writer (converters) and the readers (artifact,
inspect, runtimes): every name a file carries, the TFLite flatbuffer helpers, and the
content hash.

This is the bottom layer with :mod:`edge_pqrnn.errors`: it imports nothing else of ours,
so a module that reads artifacts never has to import the code that writes them. The C
side defines the same op names and ONNX domain once in ``projection/native/op_names.h``
(``tests/test_architecture.py`` checks that the two agree).

Example:
    >>> from edge_pqrnn import format
    >>> format.SIGNATURE, format.TEXT_INPUT, format.PROJECTION_OP
    ('serving_default', 'text', 'EdgePqrnnProjection')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from edge_pqrnn.errors import ArtifactError

#: The metadata ``format`` value of the files this toolkit writes and reads.
FORMAT = "edge-pqrnn/1"
#: Name of the metadata entry (.tflite) and metadata key (.onnx) holding our JSON.
METADATA_NAME = "edge_pqrnn"

# ---- The app's contract: one signature, text in, logits out --------------------------
SIGNATURE = "serving_default"
TEXT_INPUT = "text"
INTENT_OUTPUT, SLOT_OUTPUT, NUM_TOKENS_OUTPUT = "intent_logits", "slot_logits", "num_tokens"


#: Outputs of the projection op, in order (also the body's inputs, then num_tokens).
PROJECTION_OUTPUTS = ("features", "mask", "pool_weights", "num_tokens")
#: The float/int8 body's inputs: what the projection op writes into.
BODY_INPUTS = PROJECTION_OUTPUTS[:3]

# ---- Our custom ops (C: projection/native/op_names.h) ----------------------------------
PROJECTION_OP = "EdgePqrnnProjection"
FO_POOL_OP = "EdgePqrnnFoPool"
INT_MATMUL_OP = "EdgePqrnnIntMatMul"
QUANTIZE_OP = "EdgePqrnnQuantize"
DEQUANTIZE_OP = "EdgePqrnnDequantize"
CUSTOM_OPS = (PROJECTION_OP, FO_POOL_OP, INT_MATMUL_OP, QUANTIZE_OP, DEQUANTIZE_OP)
#: Optional option of the projection op: true sizes its outputs to the longest text of
#: the batch instead of T (C: projection_core.c).
DYNAMIC_TOKENS_OPTION = "dynamic_tokens"
#: The ONNX domain of the projection node (implemented by the same op library).
ONNX_DOMAIN = "ai.edge_pqrnn"

# ---- Content hash: sha256 of the whole file with its own digits zeroed ------------------
HASH_FIELD = "content_sha256"
_PLACEHOLDER = b"0" * 64
_HASH_PREFIX = b'"' + HASH_FIELD.encode() + b'": "'


def onnx_text_input(proto: Any) -> bool:
    """Whether an .onnx graph (a ``ModelProto``) takes raw text (the projection op inside)
    rather than the projection's features."""
    return [i.name for i in proto.graph.input] == [TEXT_INPUT]


def schema() -> Any:
    """TFLite's flatbuffer schema module (from ai_edge_litert, or TensorFlow)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:  # pragma: no cover - depends on what is installed
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def decode_name(value: Any) -> str:
    """A flatbuffer string field (bytes or None) as str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def builtin_code(code: Any) -> int:
    """The builtin operator code of an ``OperatorCodeT``."""
    # Schema v3a stores builtin codes > 127 only in builtinCode, older ones only in the
    # deprecated field: the larger of the two is the real one (as TFLite reads it).
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def load_model(flatbuffer: bytes) -> Any:
    """Unpack .tflite bytes into the schema's object tree (``ModelT``) for editing.

    Raises:
        ArtifactError: no TFL3 identifier, or the flatbuffer does not parse.
    """
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ArtifactError("not a TFLite flatbuffer (missing the TFL3 identifier)")
    try:
        return schema().ModelT.InitFromPackedBuf(flatbuffer, 0)
    except Exception as exc:  # corrupt offsets surface as any Python error
        raise ArtifactError(f"corrupt TFLite flatbuffer: {type(exc).__name__}: {exc}") from exc


def model_bytes(model: Any) -> bytes:
    """The serialised .tflite of a ``ModelT``."""
    import flatbuffers

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


def attach_metadata(model: Any, metadata: dict[str, Any]) -> None:
    """Add (or replace) our metadata buffer, with a zeroed content hash for :func:`seal`."""
    s = schema()
    model.metadata = [m for m in model.metadata or [] if decode_name(m.name) != METADATA_NAME]
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
