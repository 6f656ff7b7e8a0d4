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

import ctypes
import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge_pqrnn.converters.tflite_fuse import METADATA_NAME, SIGNATURE, bucket_signature, hash_problem
from edge_pqrnn.data.align import spans_from_tags
from edge_pqrnn.errors import ArtifactError, ConfigError, DataError, EdgePqrnnError, OpLibraryError
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
        """A JSON-ready dict (``slots`` as ``{start, end, type, text}`` objects)."""
        return {
            "text": self.text,
            "intent": self.intent,
            "score": self.score,
            "intent_logits": [float(v) for v in self.intent_logits],
            "slots": [{"start": s.start, "end": s.end, "type": s.slot_type, "text": s.text} for s in self.slots],
            "num_tokens": self.num_tokens,
        }


# ----------------------------------------------------------------------------------------
# Checks on the file, before any interpreter: each returns data or raises one clear line.


def read_source(source: bytes | str | os.PathLike) -> tuple[bytes, str]:
    """The bytes of an artifact and a name for messages.

    Args:
        source: .tflite bytes or a path.

    Returns:
        ``(data, name)``; the name is the path, or ``"<bytes>"``.

    Raises:
        ArtifactError: the path does not exist, is a directory or cannot be read.

    Example:
        >>> read_source(b"abc")
        (b'abc', '<bytes>')
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = Path(source)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist: pass the path of a .tflite written by `edge-pqrnn export`")
    if path.is_dir():
        raise ArtifactError(f"{path} is a directory: pass the .tflite file itself "
                            "(a run directory goes to --reference)")
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise ArtifactError(f"{path} cannot be read ({exc.strerror}): check its permissions") from exc


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
    if not model.subgraphs:
        return "has no subgraph"

    def bad(indices: Any, size: int, optional: bool = False) -> int | None:
        low = -1 if optional else 0  # -1 marks an omitted optional op input
        return next((int(i) for i in (indices if indices is not None else []) if not low <= i < size), None)

    for graph in model.subgraphs:
        tensors = len(graph.tensors or [])
        checks = [("graph input", bad(graph.inputs, tensors), tensors),
                  ("graph output", bad(graph.outputs, tensors), tensors),
                  ("tensor buffer", bad([t.buffer for t in graph.tensors or []], buffers), buffers)]
        for op in graph.operators or []:
            checks += [("op code", bad([op.opcodeIndex], codes), codes),
                       ("op input", bad(op.inputs, tensors, optional=True), tensors),
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
    format and matching the file's content hash; the op's options valid and equal to the
    metadata's projection; labels well-formed; a ``serving_default`` signature with a
    STRING ``text`` input and outputs shaped like the labels.

    Args:
        model: a parsed ``ModelT`` (see :func:`parse_flatbuffer`).
        data: the bytes it was parsed from (for the content hash).

    Returns:
        One-line problems, each ending in what to do; empty for a good artifact.
    """
    s = schema()
    problem = _index_problem(model)
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
    if metadata.get("format") != FORMAT:
        problems.append(f"has metadata format {metadata.get('format')!r}, this edge-pqrnn reads {FORMAT!r}: "
                        f"install the edge-pqrnn version that wrote it ({metadata.get('toolkit_version', '?')}) "
                        "or export it again")
        return problems
    try:
        spec = ProjectionSpec.from_dict(metadata["projection"])
        intents, tags, slot_types = metadata["intents"], metadata["tags"], metadata.get("slot_types", [])
        lists = (intents, tags, slot_types)
        if not all(isinstance(x, list) and all(isinstance(label, str) for label in x) for x in lists):
            raise TypeError("intents, tags and slot_types must be lists of strings")
    except (KeyError, TypeError, EdgePqrnnError) as exc:
        problems.append(f"has incomplete metadata ({str(exc)[:80]}): {_EXPORT_AGAIN}")
        return problems
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
    bad_tags = [t for t in tags if t != "O" and not (len(t) > 2 and t[:2] in ("B-", "I-"))]
    if not intents or bad_tags:
        problems.append(f"has malformed labels ({len(intents)} intents, bad tags {bad_tags[:3]}): {_EXPORT_AGAIN}")
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


def check(source: bytes | str | os.PathLike) -> Checked:
    """Check an artifact file without running it.

    Args:
        source: .tflite bytes or a path.

    Returns:
        A :class:`Checked` (bytes, name for messages, verified metadata).

    Raises:
        ArtifactError: the first problem found (missing file, not TFLite, truncated,
            corrupt, foreign, hash mismatch...), as one line naming the file and the fix.

    Example:
        >>> check("atis.int8.tflite").metadata["intents"][:2]  # doctest: +SKIP
        ['atis_abbreviation', 'atis_aircraft']
    """
    data, name = read_source(source)
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
    if isinstance(texts, (str, bytes, bytearray)):
        raise DataError(f"texts must be a list of str or bytes, got a single {type(texts).__name__}: "
                        "wrap it in a list ([text])")
    batch = list(texts)
    for i, text in enumerate(batch):
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise DataError(f"texts[{i}] is a {type(text).__name__}; every text must be str or UTF-8 bytes")
    return [bytes(t) if not isinstance(t, str) else t for t in batch]


def _original_offsets(text: str) -> list[int] | None:
    """For a str with lone surrogates (which the op drops), the index in ``text`` of each
    character of the decoded text; None when nothing was dropped."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return None
    # Every other character is valid UTF-8 on its own, so decoding drops exactly the
    # surrogates and keeps the rest in order.
    return [i for i, ch in enumerate(text) if not "\ud800" <= ch <= "\udfff"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (numerically stable), returned as float32."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


class Artifact:
    """An edge-pqrnn .tflite opened in one runtime: raw text in, intents and slots out.

    Use :meth:`load`; the object is also a context manager that frees the interpreter.

    Attributes:
        data: the file's bytes.
        name: its path (or ``"<bytes>"``).
        metadata: the verified metadata dict.
        spec: the projection spec (from the metadata; equal to the op's options).
        labels: intents, tags and slot types (index = logit index).
        runtime: ``"litert"`` or ``"tflite"``.
    """

    def __init__(self, data: bytes, name: str, metadata: dict[str, Any], interp: Any, runtime: str) -> None:
        self.data = data
        self.name = name
        self.metadata = metadata
        self.spec = ProjectionSpec.from_dict(metadata["projection"])
        self.labels = Labels(tuple(metadata["intents"]), tuple(metadata["tags"]),
                             tuple(metadata.get("slot_types", ())))
        self.runtime = runtime
        self._interp = interp
        # A fixed batch dimension (a batch-1 export) caps how many texts go in per call.
        text = interp.get_signature_runner(SIGNATURE).get_input_details()[INPUT_NAME]
        fixed = int(text["shape_signature"][0]) if len(text["shape_signature"]) else -1
        self._max_batch = fixed if fixed > 0 else None
        # Length buckets, smallest first; the full-T signature takes what none holds.
        self.signatures = [(bucket_signature(t), int(t)) for t in sorted(metadata.get("buckets") or ())]
        self.signatures.append((SIGNATURE, self.spec.max_tokens))

    @classmethod
    def load(cls, source: bytes | str | os.PathLike, runtime: str = "litert", *, library: str | None = None,
             num_threads: int = 1) -> "Artifact":
        """Check an artifact, open it in ``runtime`` and run it once on an empty text.

        Args:
            source: .tflite bytes or a path.
            runtime: ``"litert"`` (ai_edge_litert) or ``"tflite"`` (tf.lite).
            library: the op library (default: the one built by ``pip install``, or
                ``EDGE_PQRNN_OP_LIBRARY``).
            num_threads: CPU threads of the builtin kernels.

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
        data, name, metadata = check(source)
        interp = _open_interpreter(data, name, runtime, library, num_threads)
        try:
            artifact = cls(data, name, metadata, interp, runtime)
            artifact.run([""])  # fail now, with the file's name, not at the first real call
        except EdgePqrnnError:
            raise
        except Exception as exc:  # the runtime's own errors (allocation, unresolved op...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"{name} does not run in {runtime} ({first}): {_EXPORT_AGAIN}") from exc
        return artifact

    def __enter__(self) -> "Artifact":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the interpreter (also done when the object is garbage collected)."""
        self._interp = None

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
            DataError: ``texts`` is not a list of str/bytes.
            ConfigError: ``batch_size`` below 1.
            ArtifactError: the artifact was closed.

        Example:
            >>> model.run(["flights to boston"])["intent_logits"].shape  # doctest: +SKIP
            (1, 22)
        """
        batch = _as_batch(texts)
        if self._interp is None:
            raise ArtifactError(f"{self.name} was closed: load it again with Artifact.load()")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        from edge_pqrnn.runtimes import run_signature

        step = min(batch_size, self._max_batch or batch_size)
        out = self._empty_outputs(len(batch))
        pending = np.arange(len(batch))
        for signature, max_tokens in self.signatures:
            if not len(pending):
                break
            texts = [batch[i] for i in pending]
            chunks = [run_signature(self._interp, texts[i : i + step], signature) for i in range(0, len(texts), step)]
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
            DataError: ``texts`` is not a list of str/bytes.
            ArtifactError: the op's row count differs from the reference tokeniser's
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
           "find_problems", "parse_flatbuffer", "read_metadata", "read_source"]
