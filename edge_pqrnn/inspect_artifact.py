"""What is inside a .tflite: signature, ops, tensor types, metadata, and where the bytes go.

Reads the flatbuffer (or the ONNX protobuf) first, so it also explains files that
:meth:`edge_pqrnn.artifact.Artifact.load` refuses: their ``problems`` are listed. A file
that passes those checks then gets ``predict``'s usability check (opened in litert or
onnxruntime and run once), so ``inspect`` never passes a file ``predict`` refuses.

Example:
    >>> info = inspect("atis.int8.tflite")  # doctest: +SKIP
    >>> info["ops"]["custom"]  # doctest: +SKIP
    {'EdgePqrnnProjection': 1}
    >>> print(render(info))  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import os
from typing import Any

from edge_pqrnn.artifact_checks import (builtin_code, decode_name, find_problems, parse_flatbuffer, projection_ops,
                                        read_metadata, read_source, tensor_shape)
from edge_pqrnn.format import HASH_FIELD, INT_MATMUL_OP, METADATA_NAME, hash_problem, schema

#: Ops whose constant inputs are a layer's weights (the rest are shapes, paddings...).
WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
#: Ops that only reshape: a bias ADD behind them still belongs to the layer before.
RESHAPING_OPS = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE")


def _names(enum: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _signatures(model: Any, type_names: dict[int, str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    graph = model.subgraphs[0]

    def describe(maps: Any) -> list[dict[str, Any]]:
        return [{"name": decode_name(m.name), "dtype": type_names.get(graph.tensors[m.tensorIndex].type, "?"),
                 "shape": tensor_shape(graph.tensors[m.tensorIndex])} for m in maps or []]

    return {decode_name(s.signatureKey): {"inputs": describe(s.inputs), "outputs": describe(s.outputs)}
            for s in model.signatureDefs or []}


def _layer_name(op_name: str, shape: list[int], config: Any, seen: collections.Counter) -> str:
    """Which pQRNN layer a weighted op belongs to, from its weight shape and the model
    config (tensor names are stripped at export, so shapes are what is left)."""
    seen[op_name] += 1
    fallback = f"{op_name.lower()}_{seen[op_name] - 1}"
    try:
        width = 2 * config["state"]
        features, bottleneck = config["projection"]["feature_size"], config["bottleneck"]
        intents, tags = config["num_intents"], config["num_tags"]
    except (KeyError, TypeError):  # no (or damaged) metadata: name by op type only
        return fallback
    if op_name == "CONV_2D":  # forward and backward gates of each layer, in graph order
        return f"qrnn_{(seen[op_name] - 1) // 2}"
    if op_name == "FULLY_CONNECTED" and len(shape) == 2:
        out, inp = shape
        if inp == features and out == bottleneck:
            return "bottleneck"
        if out == 1:
            return "pooling"
        if inp == 2 * width and out == intents:
            return "intent_head"
        if inp == width and out == tags:
            return "slot_head"
    return fallback


def _byte_blocks(model: Any, data: bytes, op_names: dict[int, str], config: dict[str, Any] | None) -> dict[str, Any]:
    """Bytes per block: op options, weights per layer, other constants, metadata, graph."""
    graph = model.subgraphs[0]
    codes = model.operatorCodes
    size = {i: len(b.data) if b.data is not None else 0 for i, b in enumerate(model.buffers or [])}
    meta_buffers = {m.buffer for m in model.metadata or []}
    edge_meta = {m.buffer for m in model.metadata or [] if decode_name(m.name) == METADATA_NAME}
    weights: dict[str, int] = collections.defaultdict(int)
    owned: set[int] = set()
    seen: collections.Counter = collections.Counter()
    produced_by: dict[int, str] = {}  # output tensor of a weighted op -> its layer
    for op in graph.operators or []:
        name = op_names.get(builtin_code(codes[op.opcodeIndex]), "?")
        inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outputs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        if name in RESHAPING_OPS and inputs and inputs[0] in produced_by:
            produced_by.update({i: produced_by[inputs[0]] for i in outputs})
            continue
        consts = [i for i in inputs if i >= 0 and size.get(graph.tensors[i].buffer, 0)]
        if not consts:
            continue
        if name == "CUSTOM" and decode_name(codes[op.opcodeIndex].customCode) == INT_MATMUL_OP:
            # a portable artifact's stand-in for an int8 FC or CONV_2D: same weights
            name = "CONV_2D" if len(tensor_shape(graph.tensors[consts[0]])) == 4 else "FULLY_CONNECTED"
        if name in WEIGHTED_OPS:
            layer = _layer_name(name, tensor_shape(graph.tensors[consts[0]]), config, seen)
            produced_by.update({i: layer for i in outputs})
        elif name == "ADD" and any(i in produced_by for i in inputs):
            # The converter may split a Dense bias into an ADD after the FULLY_CONNECTED.
            layer = next(produced_by[i] for i in inputs if i in produced_by)
        else:
            continue
        for i in consts:  # kernel and bias of the layer
            buffer = graph.tensors[i].buffer
            if buffer not in owned:
                owned.add(buffer)
                weights[layer] += size[buffer]
    options = sum(len(op.customOptions) for op in projection_ops(model) if op.customOptions is not None)
    constants = sum(n for i, n in size.items() if i not in owned and i not in meta_buffers)
    metadata = sum(size[i] for i in edge_meta)
    other_metadata = sum(size[i] for i in meta_buffers - edge_meta)
    blocks = {"projection_op_options": options, "weights": dict(weights), "other_constants": constants,
              "edge_pqrnn_metadata": metadata, "other_metadata": other_metadata}
    # Everything else: the tables (ops, tensors with their quantization parameters, names).
    blocks["graph"] = len(data) - options - sum(weights.values()) - constants - metadata - other_metadata
    return blocks


def inspect(source: bytes | str | os.PathLike, check_runtime: bool = True) -> dict[str, Any]:
    """Describe a .tflite (or, through :func:`inspect_onnx`, an .onnx) file.

    Args:
        source: a path or .tflite bytes.
        check_runtime: when the static checks pass, also open the file in litert and run
            it once (the usability check of ``predict``): a file that only fails at run
            time then has a problem too. False: the flatbuffer alone, no runtime.

    Returns:
        A JSON-ready dict: ``file`` (name, bytes), ``signatures`` (inputs/outputs with
        dtype and shape, -1 = dynamic), ``ops`` (``builtin`` and ``custom`` counts),
        ``tensor_types`` (counts), ``metadata`` (summary, or None), ``bytes`` (per
        block: projection op options, weights per layer, other constants, metadata,
        graph tables) and ``problems`` (why :meth:`Artifact.load` refuses it; empty
        for a usable artifact).

    Raises:
        ArtifactError: the file is missing, not TFLite or does not parse.

    Example:
        >>> inspect("atis.int8.tflite")["metadata"]["hash_ok"]  # doctest: +SKIP
        True
    """
    from edge_pqrnn.onnx_artifact import is_onnx

    if is_onnx(source):
        return inspect_onnx(source, check_runtime)
    data, name = read_source(source)
    model = parse_flatbuffer(data, name)
    problems = find_problems(model, data)
    if problems and "out-of-range" in problems[0]:
        # The tables cannot be walked safely; say so and stop.
        return {"file": {"name": name, "bytes": len(data)}, "signatures": {}, "ops": {}, "tensor_types": {},
                "metadata": None, "bytes": {}, "problems": [f"{name} {p}" for p in problems]}
    s = schema()
    op_names, type_names = _names(s.BuiltinOperator), _names(s.TensorType)
    ops: dict[str, collections.Counter] = {"builtin": collections.Counter(), "custom": collections.Counter()}
    types: collections.Counter = collections.Counter()
    for graph in model.subgraphs:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            if builtin_code(code) == s.BuiltinOperator.CUSTOM:
                ops["custom"][decode_name(code.customCode)] += 1
            else:
                ops["builtin"][op_names.get(builtin_code(code), f"#{builtin_code(code)}")] += 1
        for tensor in graph.tensors or []:
            types[type_names.get(tensor.type, f"#{tensor.type}")] += 1
    metadata, _ = read_metadata(model, data)
    summary = _summary(metadata, data)
    problems = [f"{name} {p}" for p in problems]
    if not problems and check_runtime:
        problems += _usability_problems(data, name, onnx=False)
    return {
        "file": {"name": name, "bytes": len(data)},
        "signatures": _signatures(model, type_names),
        "ops": {kind: dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))) for kind, counter in ops.items()},
        "tensor_types": dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        "metadata": summary,
        "bytes": _byte_blocks(model, data, op_names, (metadata or {}).get("model_config")),
        "problems": problems,
    }


def _summary(metadata: dict[str, Any] | None, data: bytes) -> dict[str, Any] | None:
    """The metadata as :func:`inspect` shows it (None without metadata)."""
    if metadata is None:
        return None

    # Damaged metadata may hold any JSON: summarise what has the expected type (the
    # problems list says what is wrong).
    def count(key: str) -> int:
        return len(metadata[key]) if isinstance(metadata.get(key), list) else 0

    def table(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    return {
        "format": metadata.get("format"),
        "toolkit_version": metadata.get("toolkit_version"),
        "dataset": metadata.get("dataset"),
        "scheme": metadata.get("scheme"),
        "portable_kernels": bool(metadata.get("portable_kernels", False)),
        "dynamic_tokens": bool(metadata.get("dynamic_tokens", False)),
        "intents": count("intents"),
        "tags": count("tags"),
        "slot_types": count("slot_types"),
        "projection": table(metadata.get("projection")),
        "model_config": {k: v for k, v in table(metadata.get("model_config")).items() if k != "projection"},
        "content_sha256": metadata.get(HASH_FIELD),
        "hash_ok": hash_problem(data, metadata) is None,
    }


def _usability_problems(data: bytes, name: str, onnx: bool) -> list[str]:
    """What `predict` would refuse on a file that passed the static checks: it is opened
    in litert (or onnxruntime) and run once, as :func:`edge_pqrnn.onnx_artifact.open_artifact`
    does for `predict` and `gate`."""
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.errors import ArtifactError

    try:
        if onnx:
            from edge_pqrnn.onnx_artifact import OnnxArtifact

            OnnxArtifact.load(data, name=name).close()
        else:
            Artifact.load(data, name=name).close()
    except ArtifactError as exc:
        return [str(exc)]
    return []


def inspect_onnx(source: bytes | str | os.PathLike, check_runtime: bool = True) -> dict[str, Any]:
    """:func:`inspect` for an .onnx: graph inputs/outputs, op counts (custom domains
    apart), initializer types, metadata (content hash checked) and problems.

    Args:
        source: a path or .onnx bytes.
        check_runtime: also open it in onnxruntime and run it once (the usability check).

    Returns:
        The same keys as :func:`inspect` (``bytes`` is empty: ONNX has no block table).

    Raises:
        ArtifactError: the file is missing or not an ONNX model at all.
    """
    import json

    import onnx

    from edge_pqrnn.format import METADATA_NAME as METADATA_KEY
    from edge_pqrnn.onnx_artifact import check_onnx
    from edge_pqrnn.errors import ArtifactError

    data, name = read_source(source)
    problems: list[str] = []
    try:
        check_onnx(data, name)
    except ArtifactError as exc:
        if "is not a valid ONNX model" in str(exc):
            raise
        problems.append(str(exc))
    if not problems and check_runtime:
        problems += _usability_problems(data, name, onnx=True)
    proto = onnx.load_from_string(data)
    elem = onnx.TensorProto.DataType.Name

    def describe(values: Any) -> list[dict[str, Any]]:
        return [{"name": v.name, "dtype": elem(v.type.tensor_type.elem_type),
                 "shape": [d.dim_value or -1 for d in v.type.tensor_type.shape.dim]} for v in values]

    ops: dict[str, collections.Counter] = {"builtin": collections.Counter(), "custom": collections.Counter()}
    for node in proto.graph.node:
        if node.domain in ("", "ai.onnx"):
            ops["builtin"][node.op_type] += 1
        else:
            ops["custom"][f"{node.domain}.{node.op_type}"] += 1
    types = collections.Counter(elem(t.data_type) for t in proto.graph.initializer)
    metadata = None
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        loaded = json.loads(props.get(METADATA_KEY, "null"))
        metadata = loaded if isinstance(loaded, dict) else None
    except ValueError:
        pass
    return {
        "file": {"name": name, "bytes": len(data)},
        "signatures": {"graph": {"inputs": describe(proto.graph.input), "outputs": describe(proto.graph.output)}},
        "ops": {kind: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for kind, c in ops.items()},
        "tensor_types": dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        "metadata": _summary(metadata, data),
        "bytes": {},
        "problems": problems,
    }


def render(info: dict[str, Any]) -> str:
    """The :func:`inspect` dict as aligned text tables.

    Args:
        info: what :func:`inspect` returned.

    Returns:
        Multi-line text (no trailing newline).

    Example:
        >>> print(render(inspect("atis.int8.tflite")))  # doctest: +SKIP
        atis.int8.tflite: 1,257,472 bytes
        ...
    """
    lines = [f"{info['file']['name']}: {info['file']['bytes']:,} bytes"]
    for key, sig in info["signatures"].items():
        lines.append(f"\nsignature {key!r}")
        for kind in ("inputs", "outputs"):
            for t in sig[kind]:
                lines.append(f"  {kind[:-1]:<7} {t['name']:<16} {t['dtype']:<8} {t['shape']}")
    if info["ops"]:
        total = sum(info["ops"]["builtin"].values()) + sum(info["ops"]["custom"].values())
        lines.append(f"\nops ({total})")
        for kind in ("custom", "builtin"):
            for name, count in info["ops"][kind].items():
                lines.append(f"  {count:>6}  {name}{'  (custom)' if kind == 'custom' else ''}")
        lines.append("\ntensor types")
        lines += [f"  {count:>6}  {name}" for name, count in info["tensor_types"].items()]
    meta = info["metadata"]
    if meta:
        p = meta["projection"]
        lines.append("\nmetadata")
        lines.append(f"  format {meta['format']}, toolkit {meta['toolkit_version']}, dataset {meta['dataset']}, "
                     f"scheme {meta['scheme']}"
                     + (", portable kernels (EdgePqrnnIntMatMul)" if meta.get("portable_kernels") else "")
                     + (", computes the rows of the longest text (dynamic tokens)" if meta.get("dynamic_tokens")
                        else ", computes all T rows"))
        lines.append(f"  labels: {meta['intents']} intents, {meta['tags']} tags, {meta['slot_types']} slot types")
        lines.append("  projection: " + ", ".join(f"{k}={v}" for k, v in p.items()))
        lines.append("  model: " + ", ".join(f"{k}={v}" for k, v in meta["model_config"].items()))
        digest = (meta["content_sha256"] or "")[:16]
        lines.append(f"  content hash: {'ok' if meta['hash_ok'] else 'MISMATCH'} ({digest}...)")
    else:
        lines.append("\nmetadata: none (not an edge-pqrnn artifact)")
    blocks = info["bytes"]
    if blocks:
        total = info["file"]["bytes"]
        rows = [("projection op options", blocks["projection_op_options"])]
        rows += [(f"weights: {layer}", n) for layer, n in blocks["weights"].items()]
        rows += [("other constants", blocks["other_constants"]), ("edge-pqrnn metadata", blocks["edge_pqrnn_metadata"]),
                 ("other metadata", blocks["other_metadata"]), ("graph tables", blocks["graph"])]
        lines.append("\nbytes")
        lines += [f"  {n:>12,}  {100 * n / total:5.1f}%  {label}" for label, n in rows]
    if info["problems"]:
        lines.append("\nproblems")
        lines += [f"  ✗ {p}" for p in info["problems"]]
    return "\n".join(lines)


__all__ = ["inspect", "inspect_onnx", "render"]
