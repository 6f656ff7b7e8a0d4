"""The ONNX converter: a run's Keras model -> an .onnx graph that takes raw text (bytes out;
no validation: :func:`edge_pqrnn.export.export_onnx` validates and writes).

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
    (int8: edge_pqrnn.quant.onnx_qdq.quantize_int8, onnxruntime's static QDQ quantizer)
    with_text_input(model, spec)     -> the projection op in front: raw text in
    with_metadata(model, metadata)   -> the model with labels/projection/config in metadata_props
    seal_onnx(model)                 -> the serialized bytes with their content hash
    (edge_pqrnn.build.build_onnx and edge_pqrnn.export.export_onnx put these together)

Reading and running an .onnx is :mod:`edge_pqrnn.onnx_artifact` (``OnnxArtifact``) over
:mod:`edge_pqrnn.runtimes.onnxruntime`.

Example:
    >>> result = edge_pqrnn.export.export_onnx("runs/atis", "atis.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.format import (HASH_FIELD, BODY_INPUTS as INPUTS, METADATA_NAME as METADATA_KEY, ONNX_DOMAIN as OP_DOMAIN,
                               PROJECTION_OP as OP_NAME, PROJECTION_OUTPUTS as OUTPUT_NAMES, TEXT_INPUT,
                               NUM_TOKENS_OUTPUT, SLOT_OUTPUT, onnx_text_input as text_input, seal)
from edge_pqrnn.projection.spec import ProjectionSpec

#: The opset tf2onnx targets (>= 15 per DESIGN.md §6; 17 is onnxruntime 1.1x's well-trodden one).
OPSET = 17
# INPUTS: the features-input graph's inputs, in order (what ``project(texts, spec)``
# returns); TEXT_INPUT: the raw-text graph's one input (string [batch] of UTF-8 text);
# OP_DOMAIN / OP_NAME: the custom node (opset version 1); METADATA_KEY: the
# metadata_props key of the whole edge-pqrnn metadata dict, as JSON.
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

_EXPORT_AGAIN = "export it again with `edge-pqrnn export RUN_DIR --format onnx`"


def _require_onnx(export: bool = True) -> None:
    """Import what ONNX export needs (onnx, onnxruntime, tf2onnx). (Reading and running an
    .onnx needs only onnx and onnxruntime: :mod:`edge_pqrnn.runtimes.onnxruntime`.)"""
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


def with_metadata(proto: Any, metadata: dict[str, Any]) -> Any:
    """The model with ``metadata`` in ``metadata_props`` (replacing ours, keeping others').

    The whole dict goes under :data:`METADATA_KEY` as JSON; each of
    :data:`METADATA_FIELDS` also gets its own key, plus ``preprocessing`` (what a caller
    does before the graph: nothing but registering the op library for a raw-text graph).

    Args:
        proto: an ``onnx.ModelProto`` (changed in place and returned).
        metadata: :func:`edge_pqrnn.build.build_metadata` output.

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
    from edge_pqrnn._version import __version__

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


__all__ = ["INPUTS", "METADATA_KEY", "OPSET", "OP_DOMAIN", "TEXT_INPUT", "op_counts", "projection_onnx", "seal_onnx",
           "text_input", "to_onnx", "with_metadata", "with_text_input"]
