"""An edge-pqrnn .onnx as an artifact: the checks before it runs, :class:`OnnxArtifact`
(the same ``run`` / ``logits`` / ``predict`` as :class:`edge_pqrnn.artifact.Artifact`),
and :func:`open_artifact`, which opens either kind of file.

Example:
    >>> with open_artifact("atis.onnx") as model:  # doctest: +SKIP
    ...     print(model.predict(["flights from boston to denver"])[0].intent)
    atis_flight
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_pqrnn.artifact import (NUM_TOKENS_OUTPUT, Artifact, Checked, _as_batch, _batch_size, check_outputs,
                                 metadata_contents, read_source, runtime_failure)
from edge_pqrnn.artifact_graph import MAX_INTEGER_CONSTANT, exceeds
from edge_pqrnn.errors import ArtifactError, ConfigError, EdgePqrnnError
from edge_pqrnn.evaluate import Labels
from edge_pqrnn.format import (BODY_INPUTS as INPUTS, DYNAMIC_TOKENS_OPTION, INTENT_OUTPUT, METADATA_NAME as METADATA_KEY,
                               ONNX_DOMAIN as OP_DOMAIN, PROJECTION_OP as OP_NAME, SLOT_OUTPUT, TEXT_INPUT,
                               hash_problem, onnx_text_input as text_input)
from edge_pqrnn.projection.reference import project
from edge_pqrnn.projection.spec import ProjectionSpec
from edge_pqrnn.runtimes.onnxruntime import (RUNTIME, register_op_library, require_onnxruntime, session_options,
                                             text_tensor)

_EXPORT_AGAIN = "export it again with `edge-pqrnn export RUN_DIR --format onnx`"


def is_onnx(source: Any) -> bool:
    """Whether ``source`` (a path or bytes) should be treated as ONNX: a ``.onnx`` path,
    or bytes that are not TFLite and start like an ONNX protobuf (field 1, ir_version)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source[:8])
        return len(data) >= 2 and data[4:8] != b"TFL3" and data[0] == 0x08
    return isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".onnx")


def _initializer_problem(proto: Any) -> str | None:
    """The first initializer that does not decode to its declared size, or an integer
    one (shapes, pads, axes) beyond any size an export has: onnxruntime aborted (an
    assertion) on a Pad of 10^13."""
    from onnx import TensorProto, numpy_helper

    for tensor in proto.graph.initializer:
        try:
            values = numpy_helper.to_array(tensor)
        except Exception as exc:  # raw data of another length than the dims say...
            return f"has an unreadable initializer {tensor.name!r} ({str(exc).strip()[:80]})"
        if tensor.data_type in (TensorProto.INT64, TensorProto.INT32) and exceeds(values, MAX_INTEGER_CONSTANT):
            return f"has an integer initializer {tensor.name!r} with a value beyond {MAX_INTEGER_CONSTANT:,}"
    return None


def check_onnx(source: bytes | str | os.PathLike, name: str | None = None) -> Checked:
    """Check an .onnx without running it: parses, passes ``onnx.checker``, has our metadata
    and the graph inputs/outputs that fit its labels and projection (for a raw-text graph:
    one projection node whose attributes equal the metadata's projection).

    Args:
        source: .onnx bytes or a path.

    Returns:
        A :class:`edge_pqrnn.artifact.Checked` (bytes, name, metadata dict).

    Raises:
        ArtifactError: the first problem found, as one line naming the file and the fix.

    Example:
        >>> check_onnx("atis.onnx").metadata["scheme"]  # doctest: +SKIP
        'float'
    """
    require_onnxruntime()
    import onnx

    data, name = read_source(source, name)
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as exc:  # DecodeError, ValidationError...
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{name} is not a valid ONNX model ({len(data):,} bytes; {first}): "
                            f"copy the file again or {_EXPORT_AGAIN}") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ArtifactError(f"{name} has no edge-pqrnn metadata (metadata_props[{METADATA_KEY!r}]): an ONNX "
                            f"model from another tool? {_EXPORT_AGAIN}")
    try:
        metadata = json.loads(props[METADATA_KEY])
        if not isinstance(metadata, dict):
            raise ValueError(f"a JSON {type(metadata).__name__}, not an object")
    except ValueError as exc:
        raise ArtifactError(f"{name} has unreadable edge-pqrnn metadata ({str(exc)[:80]}): {_EXPORT_AGAIN}") from exc
    # The whole-file hash first, as for a .tflite: a flipped weight bit changes no
    # structure, only logits.
    problem = hash_problem(data, metadata)
    if problem:
        raise ArtifactError(f"{name} {problem}: the file is corrupted: {_EXPORT_AGAIN}")
    contents = metadata_contents(metadata, _EXPORT_AGAIN)
    if isinstance(contents, str):
        raise ArtifactError(f"{name} {contents}")
    spec, intents, tags = contents
    problem = _initializer_problem(proto)
    if problem:
        raise ArtifactError(f"{name} {problem}: the file is corrupted: {_EXPORT_AGAIN}")
    inputs = [i.name for i in proto.graph.input]
    outputs = {o.name: [d.dim_value or -1 for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    expected_inputs = [TEXT_INPUT] if text_input(proto) else list(INPUTS)
    expected = {INTENT_OUTPUT: [-1, len(intents)]}
    if tags:
        expected[SLOT_OUTPUT] = [-1, spec.max_tokens, len(tags)]
    if text_input(proto):
        expected[NUM_TOKENS_OUTPUT] = [-1]
    if inputs != expected_inputs or outputs != expected:
        raise ArtifactError(f"{name} has inputs {inputs} and outputs {outputs}, which do not fit its metadata "
                            f"(expected {expected_inputs} and {expected}): {_EXPORT_AGAIN}")
    if text_input(proto):
        nodes = [n for n in proto.graph.node if n.domain == OP_DOMAIN and n.op_type == OP_NAME]
        options = ({a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute} if len(nodes) == 1
                   else None)
        wanted = {key: int(value) for key, value in spec.op_options().items()}
        # The op's own optional attribute (its outputs follow the longest text) is no part of the spec.
        if options is not None and options.get(DYNAMIC_TOKENS_OPTION, 0) in (0, 1):
            options.pop(DYNAMIC_TOKENS_OPTION, None)
        if options != wanted:
            raise ArtifactError(f"{name}: its projection op node ({len(nodes)} found, attributes {options}) does not "
                                f"match the metadata's projection {wanted}: {_EXPORT_AGAIN}")
    return Checked(data, name, metadata)


class OnnxArtifact(Artifact):
    """An edge-pqrnn .onnx opened in onnxruntime: raw text in, intents and slots out.

    Same interface as :class:`edge_pqrnn.artifact.Artifact` (``run``, ``logits``,
    ``predict``, context manager). A raw-text graph runs the projection op inside
    onnxruntime (the op library is registered on the session); a features-input graph
    gets its inputs from the numpy reference (bit-exact with the op).

    Example:
        >>> with OnnxArtifact.load("atis.onnx") as model:  # doctest: +SKIP
        ...     model.run(["flights to boston"])["intent_logits"].shape
        (1, 22)
    """

    def __init__(self, data: bytes, name: str, metadata: dict[str, Any], session: Any) -> None:  # noqa: D107
        # Not Artifact.__init__: that one reads a TFLite signature.
        self.data, self.name, self.metadata = data, name, metadata
        self.spec = ProjectionSpec.from_dict(metadata["projection"])
        self.labels = Labels(tuple(metadata["intents"]), tuple(metadata["tags"]),
                             tuple(metadata.get("slot_types", ())))
        self.runtime = RUNTIME
        self._interp = session
        self._max_batch = None
        self.text_input = [i.name for i in session.get_inputs()] == [TEXT_INPUT]

    @classmethod
    def load(cls, source: bytes | str | os.PathLike, runtime: str = RUNTIME, *, library: str | None = None,
             num_threads: int = 1, name: str | None = None) -> "OnnxArtifact":
        """Check an .onnx, open it in onnxruntime (CPU) and run it once on an empty text.

        Args:
            source: .onnx bytes or a path.
            runtime: must be ``"onnxruntime"``.
            library: the op library for a raw-text graph (default: the one built by
                ``pip install``, or ``EDGE_PQRNN_OP_LIBRARY``); unused for features input.
            num_threads: onnxruntime intra-op threads.
            name: the name for messages (default: the path, or ``"<bytes>"``).

        Returns:
            The opened :class:`OnnxArtifact`.

        Raises:
            ArtifactError: the file is missing, not ONNX, foreign, or onnxruntime rejects it
                (:class:`OpLibraryMissingError` when the op library is missing or does not
                register).
            ConfigError: another runtime was asked for.
        """
        if runtime != RUNTIME:
            raise ConfigError(f"an .onnx runs in {RUNTIME!r} only, not {runtime!r}: drop --runtime "
                              f"(or export a .tflite with `edge-pqrnn export --format tflite`)")
        data, name, metadata = check_onnx(source, name)
        import onnxruntime as ort

        options = session_options(num_threads)
        if is_text_graph(data):
            register_op_library(options, name, library)
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            artifact = cls(data, name, metadata, session)
            artifact.run([""])
        except EdgePqrnnError:
            raise
        except Exception as exc:  # onnxruntime's own errors (graph, kernels...)
            raise runtime_failure(name, RUNTIME, exc, _EXPORT_AGAIN) from exc
        return artifact

    @property
    def runtime_version(self) -> str:
        """The onnxruntime version."""
        import onnxruntime

        return onnxruntime.__version__

    def run(self, texts: Sequence[str | bytes], batch_size: int = 64) -> dict[str, np.ndarray]:
        """The raw outputs for a batch of texts (see :meth:`edge_pqrnn.artifact.Artifact.run`).

        Raises:
            InputError: ``texts`` is not a list of str/bytes, or ``batch_size`` is not a
                whole number >= 1.
            ArtifactError: the artifact was closed.
        """
        batch = _as_batch(texts)
        batch_size = _batch_size(batch_size)
        if self._interp is None:
            raise ArtifactError(f"{self.name} was closed: load it again with OnnxArtifact.load()")
        names = [o.name for o in self._interp.get_outputs()]
        chunks = []
        try:
            for i in range(0, len(batch), batch_size):
                if self.text_input:
                    values = self._interp.run(names, {TEXT_INPUT: text_tensor(batch[i : i + batch_size])})
                    out = dict(zip(names, values))
                else:
                    p = project(batch[i : i + batch_size], self.spec)
                    values = self._interp.run(names, {"features": p.features, "mask": p.mask,
                                                      "pool_weights": p.pool_weights})
                    out = dict(zip(names, values))
                    out[NUM_TOKENS_OUTPUT] = p.num_tokens
                chunks.append(out)
            if not chunks:
                return self._empty_outputs()
            merged = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
            expected = self._empty_outputs(len(batch))
            if {k: v.shape for k, v in merged.items()} != {k: v.shape for k, v in expected.items()}:
                raise ValueError(f"outputs shaped {({k: v.shape for k, v in merged.items()})}, expected "
                                 f"{({k: v.shape for k, v in expected.items()})}")
        except Exception as exc:  # onnxruntime's own errors, or outputs of another shape
            raise runtime_failure(self.name, self.runtime, exc, _EXPORT_AGAIN) from exc
        check_outputs(self.name, self.runtime, merged, self.spec.max_tokens, _EXPORT_AGAIN)
        return merged




def is_text_graph(data: bytes) -> bool:
    """Whether .onnx bytes hold a raw-text graph (parses the model)."""
    import onnx

    return text_input(onnx.load_from_string(data))


def open_artifact(source: bytes | str | os.PathLike, runtime: str | None = None, *, name: str | None = None,
                  **options: Any) -> Artifact:
    """Open a .tflite (:meth:`Artifact.load`) or an .onnx (:meth:`OnnxArtifact.load`): the one
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
    if is_onnx(source):
        return OnnxArtifact.load(source, runtime=runtime or RUNTIME, name=name, **options)
    return Artifact.load(source, runtime=runtime or "litert", name=name, **options)


__all__ = ["OnnxArtifact", "check_onnx", "is_onnx", "is_text_graph", "open_artifact"]
