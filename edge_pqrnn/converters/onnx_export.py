"""Run directory -> a validated .onnx (float, or int8 QDQ) that takes raw text, for onnxruntime users.

tf2onnx converts a tf.function over the run's Keras model (features -> logits). The
projection then goes in front of that graph as a custom op node,
``ai.edge_pqrnn.EdgePqrnnProjection``, built from the same C core as the TFLite op
(``projection/native/projection_ort.c``, in the op library ``libpqrnn_projection.so``):
one .onnx takes a string tensor of UTF-8 text and returns logits, like the .tflite.
onnxruntime runs it once the library is registered:
``SessionOptions.register_custom_ops_library(edge_pqrnn.op_library())``.

``text_input=False`` keeps the features-input graph (no custom op): for ONNX consumers
that cannot load a custom op library (onnxruntime-web, other ONNX runtimes). Its callers
build the inputs with the numpy reference ``edge_pqrnn.projection.project(texts, spec)``.

Stages, each a function returning data (the caller saves, atomically):

    to_onnx(run)                     -> float ModelProto, features in (opset 17, dynamic batch)
    quantize_int8(float_bytes, ...)  -> int8 QDQ bytes (onnxruntime static quantizer)
    with_text_input(model, spec)     -> the projection op in front: raw text in
    with_metadata(model, metadata)   -> the model with labels/projection/config in metadata_props
    export_onnx(run_dir, out, ...)   -> all of the above, validated, written atomically

:class:`OnnxArtifact` opens an .onnx (either input kind) in onnxruntime with the same
``run`` / ``logits`` / ``predict`` as :class:`edge_pqrnn.artifact.Artifact`.

Example:
    >>> result = export_onnx("runs/atis", "atis.onnx")  # doctest: +SKIP
    >>> with OnnxArtifact.load("atis.onnx") as model:  # doctest: +SKIP
    ...     print(model.predict(["flights from boston to denver"])[0].intent)
    atis_flight
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn._io import in_scratch_tempdir
from edge_pqrnn.artifact import (INTENT_OUTPUT, NUM_TOKENS_OUTPUT, SLOT_OUTPUT, Artifact, Checked,
                                 OpLibraryMissingError, check_outputs, metadata_contents, read_source,
                                 runtime_failure)
from edge_pqrnn.converters.tflite_fuse import HASH_FIELD, hash_problem, seal
from edge_pqrnn.errors import ArtifactError, ConfigError, EdgePqrnnError, OpLibraryError
from edge_pqrnn.evaluate import Labels
from edge_pqrnn.projection.ops import OUTPUT_NAMES
from edge_pqrnn.projection.spec import OP_NAME, ProjectionSpec

#: The opset tf2onnx targets (>= 15 per DESIGN.md §6; 17 is onnxruntime 1.1x's well-trodden one).
OPSET = 17
#: The runtime name used in validation reports.
RUNTIME = "onnxruntime"
#: The features-input graph's inputs, in order: what ``project(texts, spec)`` returns.
INPUTS = ("features", "mask", "pool_weights")
#: The raw-text graph's one input: string [batch] of UTF-8 text.
TEXT_INPUT = "text"
#: The custom op's domain (its node: ``OP_DOMAIN`` / ``OP_NAME``, opset version 1).
OP_DOMAIN = "ai.edge_pqrnn"
#: The whole edge-pqrnn metadata dict, as JSON, under this metadata_props key.
METADATA_KEY = "edge_pqrnn"
#: Fields also written as their own metadata_props (JSON for non-strings), for tools
#: such as Netron that show metadata_props but do not parse our JSON.
METADATA_FIELDS = ("format", "toolkit_version", "intents", "tags", "slot_types", "projection", "model_config",
                   "dataset", "scheme")
#: How a user builds the inputs of the features-input graph (metadata_props["preprocessing"]).
PREPROCESSING = ("edge_pqrnn.projection.project(texts, ProjectionSpec.from_dict(projection)) -> "
                 "features float32 [B,T,F], mask float32 [B,T], pool_weights float32 [B,T]")
#: The same for the raw-text graph: none, but the op library must be registered.
PREPROCESSING_TEXT = ("none: input 'text' is a string tensor [B] of UTF-8 text; register the projection op "
                      "first: SessionOptions.register_custom_ops_library(edge_pqrnn.op_library())")
#: Op types the int8 quantizer touches: the matmuls and convolutions, which hold nearly
#: all weights. Quantizing the QRNN's elementwise gates too (onnxruntime's default)
#: adds a requantization per unrolled step (measured: lower agreement, see docs/onnx.md).
INT8_OP_TYPES = ("MatMul", "Conv", "Gemm")

_EXPORT_AGAIN = "export it again with `edge-pqrnn export RUN_DIR --format onnx`"


def _require_onnx(export: bool = True) -> None:
    """Import what ONNX export needs (onnx, onnxruntime, tf2onnx), or only what reading
    and running an .onnx needs (``export=False``: onnx and onnxruntime; tf2onnx imports
    TensorFlow, seconds of start-up that running a model must not pay)."""
    import importlib

    modules = ("onnx", "onnxruntime", "tf2onnx") if export else ("onnx", "onnxruntime")
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as exc:
        what = "ONNX export needs" if export else "running an .onnx needs"
        raise ConfigError(f"{what} {', '.join(modules)} ({exc}): `pip install {' '.join(modules)}`") from exc


# ----------------------------------------------------------------------------------------
# Conversion stages.


def to_onnx(run: Any, opset: int = OPSET) -> Any:
    """Convert the run's Keras model (features -> logits) to a float ONNX model.

    Args:
        run: a loaded run (:func:`edge_pqrnn.train.load_run`).
        opset: ONNX opset (at least 15).

    Returns:
        An ``onnx.ModelProto`` with inputs :data:`INPUTS` (dynamic batch) and outputs
        ``intent_logits`` [B, num_intents] and (with a slot head) ``slot_logits`` [B, T, num_tags].

    Raises:
        ConfigError: opset below 15, or onnx/tf2onnx missing.

    Example:
        >>> proto = to_onnx(load_run("runs/atis"))  # doctest: +SKIP
    """
    if opset < 15:
        raise ConfigError(f"opset {opset} is too old: pass --opset 15 or newer (default {OPSET})")
    _require_onnx()
    import tensorflow as tf
    import tf2onnx

    T, F = run.spec.max_tokens, run.spec.feature_size
    signature = [tf.TensorSpec([None, T, F], tf.float32, name="features"),
                 tf.TensorSpec([None, T], tf.float32, name="mask"),
                 tf.TensorSpec([None, T], tf.float32, name="pool_weights")]

    @tf.function(input_signature=signature)
    def model_fn(features, mask, pool_weights):
        out = run.model({"features": features, "mask": mask, "pool_weights": pool_weights}, training=False)
        # tf.identity with the output's name: tf2onnx names graph outputs after these.
        return {key: tf.identity(value, name=key) for key, value in out.items()}

    proto, _ = tf2onnx.convert.from_function(model_fn, input_signature=signature, opset=opset)
    _fix_output_dims(proto, T)
    return proto


def _fix_output_dims(proto: Any, max_tokens: int) -> None:
    """tf2onnx leaves every output dim symbolic (``unk__N``); name the batch ``batch`` and
    fix T, so the graph's interface reads like its inputs'."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
        if value.name == SLOT_OUTPUT and len(dims) == 3:
            dims[1].dim_value = max_tokens


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over projected texts."""

    def __init__(self, texts: Sequence[str], spec: ProjectionSpec, batch_size: int = 32) -> None:
        from edge_pqrnn.projection.reference import project

        self._batches = []
        for i in range(0, len(texts), batch_size):
            p = project(list(texts[i : i + batch_size]), spec)
            self._batches.append({"features": p.features, "mask": p.mask, "pool_weights": p.pool_weights})
        self._iter = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def quantize_int8(float_model: bytes, spec: ProjectionSpec, calibration_texts: Sequence[str], *,
                  op_types: Sequence[str] | None = INT8_OP_TYPES, per_channel: bool = True) -> bytes:
    """Static int8 quantization (QDQ format) with onnxruntime's quantizer.

    Activations are calibrated (MinMax) on the projected ``calibration_texts``: the same
    texts the TFLite export calibrates on (:func:`edge_pqrnn.quant.ptq.representative_texts`).

    Args:
        float_model: the float .onnx bytes.
        spec: the run's projection spec (to project the calibration texts).
        calibration_texts: representative texts.
        op_types: op types to quantize (None: onnxruntime's default, every op it can).
        per_channel: per-output-channel weight scales.

    Returns:
        The int8 QDQ .onnx bytes (metadata_props are not carried over: add them again).

    Raises:
        ConfigError: no calibration texts.

    Example:
        >>> int8 = quantize_int8(proto.SerializeToString(), run.spec, texts)  # doctest: +SKIP
    """
    if not calibration_texts:
        raise ConfigError("int8 ONNX needs calibration texts: pass training texts (representative_texts)")
    _require_onnx()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-onnx-") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(float_model)
        # Shape inference + graph cleanup first, as onnxruntime's quantizer recommends.
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, _Calibration(calibration_texts, spec), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=list(op_types) if op_types else None)
        return Path(dst).read_bytes()


def with_text_input(proto: Any, spec: ProjectionSpec) -> Any:
    """Put the projection op in front of a features-input graph: raw text in.

    The graph's inputs (:data:`INPUTS`) become the outputs of one
    ``ai.edge_pqrnn.EdgePqrnnProjection`` node whose attributes are
    ``spec.op_options()``; its input is :data:`TEXT_INPUT` (string [batch]) and its
    ``num_tokens`` (int32 [batch]) becomes a graph output, as in the .tflite.

    Args:
        proto: a features-input ``onnx.ModelProto`` (float or int8 QDQ; changed in place).
        spec: the run's projection spec.

    Returns:
        ``proto``.

    Raises:
        ConfigError: the graph's inputs are not :data:`INPUTS`.

    Example:
        >>> proto = with_text_input(to_onnx(run), run.spec)  # doctest: +SKIP
    """
    from onnx import TensorProto, helper

    graph = proto.graph
    inputs = [i.name for i in graph.input]
    if inputs != list(INPUTS):
        raise ConfigError(f"with_text_input needs a graph with inputs {list(INPUTS)}, got {inputs}")
    # The former inputs keep their types and shapes as value_info of the op's outputs.
    graph.value_info.extend(graph.input)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, ["batch"]))
    attributes = {key: int(value) for key, value in spec.op_options().items()}
    node = helper.make_node(OP_NAME, [TEXT_INPUT], list(OUTPUT_NAMES), name="projection", domain=OP_DOMAIN,
                            **attributes)
    graph.node.insert(0, node)
    graph.output.append(helper.make_tensor_value_info(NUM_TOKENS_OUTPUT, TensorProto.INT32, ["batch"]))
    # Version 1. (A model saved by onnxruntime's optimizer, as the int8 quantizer does,
    # lists every domain registered in the process at version 1000, ours included once a
    # session has registered the op: that entry is replaced.)
    kept = [o for o in proto.opset_import if o.domain != OP_DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(kept + [helper.make_opsetid(OP_DOMAIN, 1)])
    return proto


def projection_onnx(spec: ProjectionSpec, attributes: dict[str, Any] | None = None, *,
                    input_shape: Sequence[str | int] | None = ("batch",)) -> bytes:
    """An .onnx holding only the projection op: ``text`` string [B] -> the op's 4 outputs.

    For tests and for checking an onnxruntime build against the op library (the ONNX
    twin of :func:`edge_pqrnn.projection.ops.projection_model`).

    Args:
        spec: the projection parameters, written as the node's attributes.
        attributes: attributes to write instead (for testing the op's validation).
        input_shape: the declared shape of ``text`` (None: no shape, any rank).

    Returns:
        The serialized model (opset 17 plus ``ai.edge_pqrnn`` 1).
    """
    from onnx import TensorProto, helper

    T, F = spec.max_tokens, spec.feature_size
    if attributes is None:
        attributes = {key: int(value) for key, value in spec.op_options().items()}
    node = helper.make_node(OP_NAME, [TEXT_INPUT], list(OUTPUT_NAMES), name="projection", domain=OP_DOMAIN,
                            **attributes)
    shapes = {"features": (TensorProto.FLOAT, ["batch", T, F]), "mask": (TensorProto.FLOAT, ["batch", T]),
              "pool_weights": (TensorProto.FLOAT, ["batch", T]), "num_tokens": (TensorProto.INT32, ["batch"])}
    graph = helper.make_graph(
        [node], "edge_pqrnn_projection",
        [helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, list(input_shape) if input_shape else None)],
        [helper.make_tensor_value_info(name, *shapes[name]) for name in OUTPUT_NAMES])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(OP_DOMAIN, 1)],
                              producer_name="edge-pqrnn")
    return model.SerializeToString()


def text_input(proto: Any) -> bool:
    """Whether an .onnx graph takes raw text (the projection op inside) rather than features."""
    return [i.name for i in proto.graph.input] == [TEXT_INPUT]


def with_metadata(proto: Any, metadata: dict[str, Any]) -> Any:
    """The model with ``metadata`` in ``metadata_props`` (replacing ours, keeping others').

    The whole dict goes under :data:`METADATA_KEY` as JSON; each of
    :data:`METADATA_FIELDS` also gets its own key, plus ``preprocessing`` (what a caller
    does before the graph: nothing but registering the op library for a raw-text graph).

    Args:
        proto: an ``onnx.ModelProto`` (changed in place and returned).
        metadata: :func:`edge_pqrnn.export.build_metadata` output.

    Returns:
        ``proto``.
    """
    ours = {METADATA_KEY, "preprocessing", *METADATA_FIELDS}
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in ours]
    del proto.metadata_props[:]
    # The content hash's placeholder, filled by seal_onnx() (as for a .tflite: the same
    # JSON key, so edge_pqrnn.converters.tflite_fuse's hash functions read both formats).
    payload = dict(metadata, **{HASH_FIELD: "0" * 64})
    entries = kept + [(METADATA_KEY, json.dumps(payload, ensure_ascii=False, sort_keys=True)),
                      ("preprocessing", PREPROCESSING_TEXT if text_input(proto) else PREPROCESSING)]
    for key in METADATA_FIELDS:
        if key in metadata:
            value = metadata[key]
            entries.append((key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    for key, value in entries:
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    from edge_pqrnn import __version__

    proto.producer_name, proto.producer_version = "edge-pqrnn", __version__
    return proto


def seal_onnx(proto: Any) -> bytes:
    """The serialized model with its content hash written in: sha256 of the whole file
    with the hash's own 64 digits zeroed (graph, weights and metadata alike), checked by
    :func:`check_onnx` as :func:`edge_pqrnn.artifact.check` checks a .tflite's.

    Args:
        proto: a model that went through :func:`with_metadata` last.

    Returns:
        The .onnx bytes.

    Raises:
        ArtifactError: no hash placeholder (``with_metadata`` was not called).

    Example:
        >>> data = seal_onnx(with_metadata(proto, metadata))  # doctest: +SKIP
    """
    return seal(proto.SerializeToString())


def op_counts(proto: Any) -> dict[str, int]:
    """Node count per op type of the main graph, most common first."""
    return dict(Counter(node.op_type for node in proto.graph.node).most_common())


# ----------------------------------------------------------------------------------------
# Reading and running an .onnx.


def is_onnx(source: Any) -> bool:
    """Whether ``source`` (a path or bytes) should be treated as ONNX: a ``.onnx`` path,
    or bytes that are not TFLite and start like an ONNX protobuf (field 1, ir_version)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source[:8])
        return len(data) >= 2 and data[4:8] != b"TFL3" and data[0] == 0x08
    return isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".onnx")


#: Largest integer constant (shape, axis, pad, index) an export holds: below T x F x 2.
MAX_INTEGER_CONSTANT = 2**26


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
        if tensor.data_type in (TensorProto.INT64, TensorProto.INT32) and values.size:
            # int32/int64 extremes are Slice's "to the end" sentinels, which tf2onnx writes
            ordinary = values[~np.isin(values, (2**31 - 1, -(2**31), 2**63 - 1, -(2**63)))]
            if ordinary.size and np.abs(ordinary.astype(np.float64)).max() > MAX_INTEGER_CONSTANT:
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
    _require_onnx(export=False)
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
        from edge_pqrnn.artifact import _as_batch, _batch_size
        from edge_pqrnn.projection.reference import project

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


def text_tensor(texts: Sequence[str | bytes]) -> np.ndarray:
    """A batch as the string tensor onnxruntime's Python API passes intact.

    onnxruntime turns a ``bytes`` element into its ``str()`` (``"b'...'"``), cuts ``S``
    arrays at the first NUL, and rejects a str with lone surrogates. Each text is
    therefore decoded first as the op decodes bytes (invalid UTF-8 and lone surrogates
    dropped, :func:`edge_pqrnn.projection.reference.decode`): the op then sees the same
    characters as from the raw bytes, and the outputs equal the .tflite's.

    Args:
        texts: str or UTF-8 bytes.

    Returns:
        A 1-D object array of str.
    """
    from edge_pqrnn.projection.reference import decode

    array = np.empty(len(texts), dtype=object)
    array[:] = [decode(t) for t in texts]
    return array


def session_options(num_threads: int = 1) -> Any:
    """onnxruntime SessionOptions as edge-pqrnn runs a model: ``num_threads`` intra-op threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def is_text_graph(data: bytes) -> bool:
    """Whether .onnx bytes hold a raw-text graph (parses the model)."""
    import onnx

    return text_input(onnx.load_from_string(data))


def register_op_library(options: Any, name: str = "the model", library: str | None = None) -> str:
    """Register the projection op library on onnxruntime SessionOptions.

    Args:
        options: an ``onnxruntime.SessionOptions``.
        name: the model's name, for messages.
        library: the library path (default: :func:`edge_pqrnn.op_library`).

    Returns:
        The library's path.

    Raises:
        OpLibraryMissingError: the library is missing or onnxruntime cannot register it.

    Example:
        >>> options = onnxruntime.SessionOptions(); register_op_library(options)  # doctest: +SKIP
    """
    from edge_pqrnn.projection.ops import op_library

    if library is None:
        try:
            library = op_library()
        except OpLibraryError as exc:
            raise OpLibraryMissingError(f"cannot open {name}: {exc}") from exc
    elif not os.path.isfile(library):
        raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not exist; pass the path "
                                    "of libpqrnn_projection.so, or none to use the one built by `pip install`")
    try:
        options.register_custom_ops_library(library)
    except Exception as exc:  # onnxruntime's Fail / RuntimeException
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpLibraryMissingError(f"cannot open {name}: onnxruntime cannot register the op library {library} "
                                    f"({first[:160]}); rebuild it with `pip install -e .`") from exc
    return library


# ----------------------------------------------------------------------------------------
# The whole export.


@dataclasses.dataclass
class OnnxExportResult:
    """What :func:`export_onnx` produced.

    Attributes:
        path: where the .onnx was written (None when ``out`` was None).
        artifact: the .onnx bytes.
        scheme: ``"float"`` or ``"int8"`` (QDQ).
        op_counts: node count per op type.
        validation: the validation report (None when skipped).
        seconds: wall time per stage.
    """

    path: Path | None
    artifact: bytes
    scheme: str
    op_counts: dict[str, int]
    validation: Any
    seconds: dict[str, float]


@in_scratch_tempdir
def export_onnx(run_dir: str | Path, out: str | Path | None, *, data: str | None = None, int8: bool = False,
                check: bool = True, calibration_samples: int = 500, thresholds: Any = None, opset: int = OPSET,
                text_input: bool = True, log: Callable[[str], None] = print) -> OnnxExportResult:
    """Export a trained run as a validated .onnx (float, or int8 QDQ with ``int8=True``)
    that takes raw text (the projection op inside the graph).

    Args:
        run_dir: a finished run directory.
        out: destination path (written atomically, only if every check passes), or None.
        data: dataset for calibration and validation (default: the run's own).
        int8: quantize with onnxruntime's static quantizer (QDQ), calibrated on the same
            representative texts as the TFLite export.
        check: validate in onnxruntime against the float reference before writing.
        calibration_samples: random training texts for calibration (plus 50 full-length).
        thresholds: :class:`edge_pqrnn.validate.Thresholds` (default: its defaults).
        opset: ONNX opset (>= 15).
        text_input: put the projection op in the graph (raw text in). False keeps the
            features-input graph, for ONNX consumers that cannot load the op library.
        log: where progress lines go.

    Returns:
        An :class:`OnnxExportResult`.

    Raises:
        ArtifactError: the run directory is missing or incomplete.
        ConfigError: onnx/onnxruntime/tf2onnx missing, or opset below 15.
        AgreementError: a validation check failed; nothing was written (``.report`` attached).

    Example:
        >>> export_onnx("runs/atis", "atis.int8.onnx", int8=True).validation.intent_agreement  # doctest: +SKIP
        0.9989
    """
    import onnx

    from edge_pqrnn._io import atomic_write_bytes
    from edge_pqrnn.export import build_metadata, load_run_and_dataset, validate_or_refuse

    _require_onnx()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    run, dataset_name, dataset = load_run_and_dataset(run_dir, data)
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    log(f"converting to ONNX (tf2onnx, opset {opset})...")
    proto = to_onnx(run, opset=opset)
    seconds["convert"] = time.perf_counter() - start
    scheme = "float"
    if int8:
        from edge_pqrnn.quant.ptq import representative_texts

        start = time.perf_counter()
        calibration = representative_texts([ex.text for ex in dataset.train], run.spec, samples=calibration_samples)
        log(f"quantizing (onnxruntime static QDQ int8, {len(calibration)} calibration texts)...")
        proto = onnx.load_from_string(quantize_int8(proto.SerializeToString(), run.spec, calibration))
        scheme = "int8"
        seconds["quantize"] = time.perf_counter() - start
    if text_input:
        proto = with_text_input(proto, run.spec)
    proto = with_metadata(proto, build_metadata(run, dataset_name, scheme))
    onnx.checker.check_model(proto)
    artifact = seal_onnx(proto)
    counts = op_counts(proto)
    log(f"  {len(artifact):,} bytes, {sum(counts.values())} nodes")

    report = None
    if check:
        start = time.perf_counter()
        report = validate_or_refuse(
            artifact, run_dir, dataset.test, out, log, thresholds=thresholds,
            hint=("try more calibration (--calibration-samples) or the float ONNX (drop --int8)" if int8
                  else "the float ONNX should match: report this as a bug"))
        seconds["validate"] = time.perf_counter() - start
    path = atomic_write_bytes(out, artifact) if out is not None else None
    return OnnxExportResult(path, artifact, scheme, counts, report, seconds)


__all__ = ["INPUTS", "METADATA_KEY", "OPSET", "OP_DOMAIN", "OnnxArtifact", "OnnxExportResult", "RUNTIME", "TEXT_INPUT",
           "check_onnx", "export_onnx", "is_onnx", "is_text_graph", "op_counts", "projection_onnx", "quantize_int8",
           "register_op_library", "seal_onnx", "session_options", "text_input", "text_tensor", "to_onnx", "with_metadata",
           "with_text_input"]
