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

By default (``build_onnx``) the raw-text graph's token axis follows the text, as the
.tflite's does: the op (attribute ``dynamic_tokens``) writes only the rows of the batch's
longest text, the body is converted at a symbolic token axis ``tokens``, each QRNN
direction's recurrence is one ``ai.edge_pqrnn.EdgePqrnnFoPool`` node (float, O(n), in
the same op library) instead of T unrolled steps, and the slot logits are padded back to
T (rows past a text are 0). ``static_tokens=True`` keeps the earlier graph at T.

Stages, each a function returning data (the caller saves, atomically):

    to_onnx(run, dynamic_tokens=...) -> float ModelProto, features in (opset 17, dynamic batch)
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
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.format import (DYNAMIC_TOKENS_OPTION, FO_POOL_OP, HASH_FIELD, BODY_INPUTS as INPUTS, INTENT_OUTPUT,
                               METADATA_NAME as METADATA_KEY, ONNX_DOMAIN as OP_DOMAIN, PROJECTION_OP as OP_NAME,
                               PROJECTION_OUTPUTS as OUTPUT_NAMES, TEXT_INPUT, NUM_TOKENS_OUTPUT, SLOT_OUTPUT,
                               onnx_text_input as text_input, seal)
from edge_pqrnn.projection.spec import ProjectionSpec

#: The opset tf2onnx targets (>= 15 per DESIGN.md §6; 17 is onnxruntime 1.1x's well-trodden one).
OPSET = 17
# INPUTS: the features-input graph's inputs, in order (what ``project(texts, spec)``
# returns); TEXT_INPUT: the raw-text graph's one input (string [batch] of UTF-8 text);
# OP_DOMAIN / OP_NAME: the custom node (opset version 1); METADATA_KEY: the
# metadata_props key of the whole edge-pqrnn metadata dict, as JSON.
#: The symbolic name of the token axis of a graph with dynamic tokens.
TOKENS_DIM = "tokens"
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


def to_onnx(run: Any, opset: int = OPSET, *, dynamic_tokens: bool = False) -> Any:
    """Convert the run's Keras model (features -> logits) to a float ONNX model.

    Args:
        run: a loaded run (:func:`edge_pqrnn.train.load_run`).
        opset: ONNX opset (at least 15).
        dynamic_tokens: a token axis of any length n (``tokens``) instead of T: the body
            computes n rows, each QRNN direction's recurrence is one
            ``ai.edge_pqrnn.EdgePqrnnFoPool`` node (O(n), in the op library) instead of T
            unrolled steps, and ``slot_logits`` rows past each text are 0, padded back to
            T. For the raw-text graph: :func:`with_text_input` then gives the projection
            node ``dynamic_tokens=1``.

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
    from onnx import helper

    T, F = run.spec.max_tokens, run.spec.feature_size
    n = None if dynamic_tokens else T
    signature = [tf.TensorSpec([None, n, F], tf.float32, name="features"),
                 tf.TensorSpec([None, n], tf.float32, name="mask"),
                 tf.TensorSpec([None, n], tf.float32, name="pool_weights")]
    body = _any_length_body(run) if dynamic_tokens else (
        lambda f, m, w: run.model({"features": f, "mask": m, "pool_weights": w}, training=False))

    @tf.function(input_signature=signature)
    def model_fn(features, mask, pool_weights):
        out = body(features, mask, pool_weights)
        # tf.identity with the output's name: tf2onnx names graph outputs after these.
        return {key: tf.identity(value, name=key) for key, value in out.items()}

    extra = {"custom_op_handlers": {"PyFuncStateless": (_fo_pool_node, [])},
             "extra_opset": [helper.make_opsetid(OP_DOMAIN, 1)]} if dynamic_tokens else {}
    # tf2onnx warns that the numpy functions' outputs have no shape (expected: EnsureShape
    # gives them one right after); the warning would only puzzle the user.
    shape_log = logging.getLogger("tf2onnx.shape_inference")
    level = shape_log.level
    shape_log.setLevel(logging.ERROR)
    try:
        proto, _ = tf2onnx.convert.from_function(model_fn, input_signature=signature, opset=opset, **extra)
    finally:
        shape_log.setLevel(level)
    _fix_output_dims(proto, T, run.config.num_tags)
    return proto


def _any_length_body(run: Any) -> Any:
    """The run's model as a function of n token rows (any n <= T), from its own layers:
    ``build_model`` and ``BiQRNN.call`` step for step (dropout is the identity at
    inference), but the fo-pooling is one marked node per direction (:func:`_fo_pool`)
    rather than T unrolled steps, and the slot logits of the rows past each text are +0.0,
    padded back to T (as the .tflite's dynamic token axis does). Rows a text has get the
    static graph's values: padded steps are exact zeros either way."""
    import tensorflow as tf

    model, T = run.model, run.spec.max_tokens

    def qrnn(layer: Any, x: Any, mask3: Any) -> Any:
        pad = layer.kernel_width - 1
        xp = tf.pad(x, [[0, 0], [pad, pad], [0, 0]])
        # The forward window ends pad rows before the end: a constant end, no shape arithmetic.
        forward = _fo_pool(*layer._gates(layer.forward_gates, xp[:, :-pad] if pad else xp, mask3, False),
                           reverse=False)
        backward = _fo_pool(*layer._gates(layer.backward_gates, xp[:, pad:], mask3, False), reverse=True)
        return tf.concat([forward, backward], axis=-1) * mask3

    def body(features: Any, mask: Any, pool_weights: Any) -> dict[str, Any]:
        mask3 = tf.expand_dims(mask, -1)
        x = model.get_layer("bottleneck")(features) * mask3
        for i in range(run.config.layers):
            x = qrnn(model.get_layer(f"qrnn_{i}"), x, mask3)
        pooled = model.get_layer("pooling")((x, pool_weights))
        out = {INTENT_OUTPUT: model.get_layer(INTENT_OUTPUT)(pooled)}
        if run.config.slot_head:
            slots = model.get_layer(SLOT_OUTPUT)(x)
            slots = tf.where(mask3 > 0, slots, tf.zeros_like(slots))
            out[SLOT_OUTPUT] = tf.pad(slots, [[0, 0], [0, T - tf.shape(slots)[1]], [0, 0]])
        return out

    return body


def _fo_pool(z: Any, k: Any, o: Any, reverse: bool) -> Any:
    """One direction's fo-pooling as a node that tf2onnx turns into ``EdgePqrnnFoPool``
    (:func:`_fo_pool_node`): a stateless numpy function (its float twin, so the
    tf.function also runs in TensorFlow) whose last input is the direction."""
    import tensorflow as tf

    from edge_pqrnn.projection.fo_pool import reference_float

    out = tf.numpy_function(lambda z, k, o, r: reference_float(z, k, o, bool(r)), [z, k, o, tf.constant(int(reverse))],
                            tf.float32, stateful=False)
    # EnsureShape gives the output z's shape in the frozen graph, for tf2onnx's shape
    # inference of the nodes after it (it becomes an Identity, which tf2onnx removes).
    return tf.ensure_shape(out, z.shape)


def _fo_pool_node(ctx: Any, node: Any, name: str, args: Any) -> Any:
    """tf2onnx handler: the marked numpy function of :func:`_fo_pool` -> our op node with
    inputs z, k, o and the int attribute ``reverse``."""
    reverse = int(node.inputs[3].get_tensor_value())
    ctx.replace_inputs(node, node.input[:3])
    node.type, node.domain = FO_POOL_OP, OP_DOMAIN
    for key in list(node.attr):
        del node.attr[key]
    node.set_attr("reverse", reverse)
    # The numpy function's output has no shape in the frozen graph: z's.
    ctx.set_shape(node.output[0], ctx.get_shape(node.input[0]))
    ctx.set_dtype(node.output[0], ctx.get_dtype(node.input[0]))
    return node


def _fix_output_dims(proto: Any, max_tokens: int, num_tags: int) -> None:
    """tf2onnx leaves every output dim symbolic (``unk__N``); name the batch ``batch``,
    an unknown token axis ``tokens``, and fix T of the slot logits, so the graph's
    interface reads like its inputs'."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
        if value.name in INPUTS and len(dims) > 1 and not dims[1].dim_value:
            dims[1].dim_param = TOKENS_DIM
        if value.name == SLOT_OUTPUT and len(dims) == 3:
            dims[1].dim_value, dims[2].dim_value = max_tokens, num_tags


def with_text_input(proto: Any, spec: ProjectionSpec) -> Any:
    """Put the projection op in front of a features-input graph: raw text in.

    The graph's inputs (:data:`INPUTS`) become the outputs of one
    ``ai.edge_pqrnn.EdgePqrnnProjection`` node whose attributes are
    ``spec.op_options()``; its input is :data:`TEXT_INPUT` (string [batch]) and its
    ``num_tokens`` (int32 [batch]) becomes a graph output, as in the .tflite. A body whose
    token axis is symbolic (``to_onnx(..., dynamic_tokens=True)``) gets the op with
    ``dynamic_tokens=1``: it then writes only the rows of the batch's longest text.

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
    dynamic = not graph.input[0].type.tensor_type.shape.dim[1].dim_value
    # The former inputs keep their types and shapes as value_info of the op's outputs.
    graph.value_info.extend(graph.input)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, ["batch"]))
    attributes = op_attributes(spec, dynamic_tokens=dynamic)
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


def op_attributes(spec: ProjectionSpec, dynamic_tokens: bool = False) -> dict[str, int]:
    """The projection node's int attributes: ``spec.op_options()``, plus
    ``dynamic_tokens=1`` when its outputs follow the longest text (absent otherwise, as
    in an .onnx from before dynamic tokens)."""
    attributes = {key: int(value) for key, value in spec.op_options().items()}
    if dynamic_tokens:
        attributes[DYNAMIC_TOKENS_OPTION] = 1
    return attributes


def projection_onnx(spec: ProjectionSpec, attributes: dict[str, Any] | None = None, *,
                    input_shape: Sequence[str | int] | None = ("batch",), dynamic_tokens: bool = False) -> bytes:
    """An .onnx holding only the projection op: ``text`` string [B] -> the op's 4 outputs.

    For tests and for checking an onnxruntime build against the op library (the ONNX
    twin of :func:`edge_pqrnn.projection.ops.projection_model`).

    Args:
        spec: the projection parameters, written as the node's attributes.
        attributes: attributes to write instead (for testing the op's validation).
        input_shape: the declared shape of ``text`` (None: no shape, any rank).
        dynamic_tokens: the op sizes its outputs to the longest text's rows (the
            ``dynamic_tokens`` attribute; output shapes [B, ``tokens``, ...]).

    Returns:
        The serialized model (opset 17 plus ``ai.edge_pqrnn`` 1).
    """
    from onnx import TensorProto, helper

    T, F = TOKENS_DIM if dynamic_tokens else spec.max_tokens, spec.feature_size
    if attributes is None:
        attributes = op_attributes(spec, dynamic_tokens)
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


__all__ = ["INPUTS", "METADATA_KEY", "OPSET", "OP_DOMAIN", "TEXT_INPUT", "TOKENS_DIM", "op_attributes", "op_counts",
           "projection_onnx", "seal_onnx",
           "text_input", "to_onnx", "with_metadata", "with_text_input"]
