"""Fuse the projection op into a converted body: the .tflite then takes raw text.

The body (features, mask, pool_weights -> logits) comes from the standard converter.
These passes run in this order on its flatbuffer and return new bytes (nothing is edited
in place). The larger passes have their own modules: ``tflite_recurrence`` (0b),
``tflite_portable`` (0c), ``tflite_dynamic`` (1b); ``tflite_graph`` holds the helpers
they share; :func:`fuse` is the one ordered list.

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

(Length buckets, extra ``tokens_T`` signatures at smaller T, were retired when pass 1b
made the default artifact compute only the rows a text has: docs/benchmark.md.)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edge_pqrnn.converters.tflite_dynamic import dynamic_tokens, unrolled_over_tokens
from edge_pqrnn.converters.tflite_graph import builtin_of
from edge_pqrnn.converters.tflite_portable import use_portable_kernels
from edge_pqrnn.converters.tflite_recurrence import fuse_fo_pooling
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.format import (BODY_INPUTS, METADATA_NAME, PROJECTION_OP, SIGNATURE, attach_metadata,
                               decode_name, hash_problem, load_model, model_bytes, schema, seal, signature_def)
from edge_pqrnn.projection.ops import op_options_bytes
from edge_pqrnn.projection.spec import ProjectionSpec


def add_zero_biases(model) -> int:
    """Pass 0 (see the module doc). Returns how many biases were added."""
    s = schema()
    added = 0
    for graph in model.subgraphs:
        for op in graph.operators:
            inputs = [int(i) for i in op.inputs]
            if builtin_of(model, op) != s.BuiltinOperator.FULLY_CONNECTED:
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


def _body_inputs(model) -> list[int]:
    graph = model.subgraphs[0]
    by_name = {decode_name(graph.tensors[i].name): i for i in graph.inputs}
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
    code.customCode, code.version = PROJECTION_OP, 1
    model.operatorCodes.append(code)
    op = s.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = [text], [*body_inputs, num_tokens]
    op.customOptions = list(op_options_bytes(spec))
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    graph.operators.insert(0, op)
    graph.inputs = [text]
    graph.outputs = [*graph.outputs, num_tokens]


def write_signature(model, key: str = SIGNATURE) -> None:
    """One signature (``serving_default``): ``text`` in; logits named by rank (the
    converter's names are ``Identity*``): rank 2 is intents, rank 3 per-token slots."""
    graph = model.subgraphs[0]
    outputs = []
    for index in graph.outputs:
        rank = len(graph.tensors[index].shape)
        if decode_name(graph.tensors[index].name) == "num_tokens":
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


def strip_names(model) -> None:
    for graph in model.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        for i, tensor in enumerate(graph.tensors):
            if i not in keep:
                tensor.name = ""


def _fused_graph(body: bytes, spec: ProjectionSpec, key: str, portable_kernels: bool = False,
                 dynamic: bool = False):
    """Passes 0-2 on ``body``; returns the model and whether its token axis follows the
    text (``dynamic`` and a recurrence pass 0b fused)."""
    model = load_model(body)
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
         portable_kernels: bool = False, static_tokens: bool = False) -> bytes:
    """Run the passes above on a converted body.

    Args:
        body: .tflite bytes whose graph inputs are named ``features``, ``mask``,
            ``pool_weights`` (as :func:`edge_pqrnn.quant.convert` makes them).
        spec: the projection spec the body was trained with.
        metadata: what travels inside the file (labels, config, version...).
        keep_names: keep internal tensor names (for debugging).
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
        ArtifactError: the body is not a TFLite model or does not fit the spec.
    """
    # A portable artifact keeps T: its own matmul kernels gain nothing from fewer rows
    # (measured: 2.68 ms static, 2.79 ms dynamic on ATIS) and XNNPACK cannot reshape
    # what is left of it between them.
    model, dynamic = _fused_graph(body, spec, SIGNATURE, portable_kernels,
                                  dynamic=not static_tokens and not portable_kernels)
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
    model = load_model(artifact)
    entries = [m for m in model.metadata or [] if decode_name(m.name) == METADATA_NAME]
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


__all__ = ["add_zero_biases", "dynamic_tokens", "fuse", "fuse_fo_pooling", "prepend_projection", "read_metadata",
           "strip_names", "use_portable_kernels", "write_signature"]
