"""Random mutants of a valid .tflite and .onnx, and a worker that loads and runs each.

Used by tests/test_mutation.py; also a script for longer campaigns:

    python tests/artifact_mutation.py --tflite A.tflite --onnx A.onnx --count 10000 --seed 1

Each mutant is one of:

* ``flip``: 1 to 16 random bits flipped;
* ``truncate``: cut at a random length;
* ``splice``: a random run of bytes copied over another place, inserted or deleted;
* ``edit``: the file parsed, one field changed (an op's options, a tensor's shape, type or
  quantization, a weight buffer, an op's inputs or code, a builtin option, an ONNX node
  attribute or initializer, a metadata field...), then its metadata attached again and
  the content hash re-sealed, so that the mutant passes the hash check and reaches the
  deeper checks and the runtime.

The worker runs mutant after mutant in one process and prints one line per mutant:
``start I KIND`` before, then ``ok I KIND`` (loaded, and every output finite on the
texts), ``refused I KIND MESSAGE`` (an edge-pqrnn error of one line) or ``BAD I KIND
...`` (another exception, a message of several lines, non-finite outputs). A crash or a
hang leaves a ``start`` line without its end: the parent knows which mutant it was.
At the end it prints ``resources RSS_GROWTH_KB FDS_BEFORE FDS_AFTER THREADS_BEFORE
THREADS_AFTER`` (leaks).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

KINDS = ("flip", "truncate", "splice", "edit")
#: Texts every loaded mutant runs: empty, ordinary, long, invalid UTF-8, many tokens.
TEXTS = ["", "show me flights from boston to denver", "x" * 3000, b"fare \xff\xfe to \xed\xa0\x80 dallas",
         " ".join(["word"] * 500), "🙂 Zürich 明天"]


def resealed(data: bytes, edit, metadata: dict | None = None) -> bytes:
    """``data`` parsed, changed in place by ``edit(model)``, its metadata attached again
    (``metadata``, default the file's own) and the content hash sealed: a crafted file
    that passes the hash check, as an attacker (or a buggy tool) would write it."""
    from edge_pqrnn.converters.tflite_fuse import read_metadata
    from edge_pqrnn.format import HASH_FIELD, attach_metadata, model_bytes, schema, seal

    model = schema().ModelT.InitFromPackedBuf(data, 0)
    edit(model)
    meta = dict(read_metadata(data) if metadata is None else metadata)
    meta.pop(HASH_FIELD, None)
    for entry in model.metadata or []:  # empty the old metadata buffer: one hash slot in the file
        if entry.name in (b"edge_pqrnn", "edge_pqrnn"):
            model.buffers[entry.buffer].data = None
    attach_metadata(model, meta)
    return seal(model_bytes(model))


def bad_runtime_options(data: bytes) -> bytes:
    """The artifact with one EdgePqrnnFoPool op's options set to an unknown version: it
    passes every check made before a runtime, and fails when the runtime prepares it."""
    from flatbuffers import flexbuffers

    from edge_pqrnn.artifact_checks import builtin_code, decode_name
    from edge_pqrnn.projection.fo_pool import FO_POOL_OP

    def edit(model) -> None:
        for op in model.subgraphs[0].operators:
            code = model.operatorCodes[op.opcodeIndex]
            if builtin_code(code) == 32 and decode_name(code.customCode) == FO_POOL_OP:  # 32: CUSTOM
                op.customOptions = list(flexbuffers.Dumps({"version": 99, "reverse": 0}))
                return
        raise AssertionError("no EdgePqrnnFoPool op")

    return resealed(data, edit)


def _bytes_mutant(data: bytes, kind: str, rng: random.Random) -> bytes:
    out = bytearray(data)
    if kind == "flip":
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "truncate":
        return bytes(out[: rng.randrange(len(out))])
    n = rng.choice([1, 4, 16, 64, 512])
    src, dst = rng.randrange(len(out)), rng.randrange(len(out))
    chunk = bytes(out[src : src + n])
    how = rng.choice(["overwrite", "insert", "delete"])
    if how == "overwrite":
        out[dst : dst + len(chunk)] = chunk
        return bytes(out[: len(data)])
    if how == "insert":
        return bytes(out[:dst] + chunk + out[dst:])
    return bytes(out[:dst] + out[dst + n :])


def _odd_int(rng: random.Random) -> int:
    return rng.choice([0, 1, -1, 2, 3, 7, 255, 256, 4096, 4097, 8192, 8193, 65535, 2**31 - 1, -(2**31), 2**32 + 5,
                       rng.randrange(-1000, 1000)])


def _odd_float(rng: random.Random) -> float:
    return rng.choice([0.0, -0.0, -1.0, 1e-45, 1e-38, 1e-19, 1e-9, 1e-7, 1e-5, 1e-3, 10.0, 900.0, 1e4, 1e30, 3.4e38, float("inf"), float("-inf"), float("nan"),
                       rng.uniform(-10, 10)])


def _odd_json(rng: random.Random) -> Any:
    return rng.choice([None, 0, -3, 2**40, 1.5, "", "x", [], [1], ["a", "b"], {}, {"a": 1}, True,
                       ["O", "B-x", "I-x"], [16], [1, 2, 3]])


def _edit_metadata(metadata: dict, rng: random.Random) -> dict:
    metadata = json.loads(json.dumps(metadata))
    key = rng.choice(["intents", "tags", "slot_types", "projection", "format", "buckets", "model_config",
                      "portable_kernels", "projection_field"])
    if key == "projection_field" and isinstance(metadata.get("projection"), dict) and metadata["projection"]:
        field = rng.choice(sorted(metadata["projection"]))
        metadata["projection"][field] = rng.choice([_odd_int(rng), _odd_json(rng)])
    elif key in ("intents", "tags") and isinstance(metadata.get(key), list) and rng.random() < 0.5:
        labels = metadata[key]
        rng.shuffle(labels) if rng.random() < 0.5 else labels.append(f"extra{rng.randrange(9)}")
    else:
        metadata[key] = _odd_json(rng)
    return metadata


def tflite_edit(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One field of the parsed .tflite changed, metadata re-attached, hash re-sealed."""
    from flatbuffers import flexbuffers

    from edge_pqrnn.converters.tflite_fuse import read_metadata
    from edge_pqrnn.format import HASH_FIELD

    metadata = read_metadata(data)
    metadata.pop(HASH_FIELD, None)
    what = rng.choice(["custom_options", "custom_options", "shape", "type", "quantization", "buffer", "op_inputs",
                       "opcode", "builtin_options", "metadata", "metadata", "signature", "graph_io"])

    def edit(model: Any) -> None:
        graph = model.subgraphs[rng.randrange(len(model.subgraphs))]
        ops = graph.operators or []
        tensors = graph.tensors or []
        if what == "custom_options":
            custom = [op for op in ops if op.customOptions is not None]
            op = rng.choice(custom)
            if rng.random() < 0.3:
                op.customOptions = [rng.randrange(256) for _ in range(rng.randrange(40))]
            else:
                options = flexbuffers.Loads(bytes(op.customOptions))
                key = rng.choice(sorted(options) + ["unknown_key"])
                if rng.random() < 0.2:
                    options.pop(key, None)
                else:
                    options[key] = _odd_int(rng)
                op.customOptions = list(flexbuffers.Dumps(options))
        elif what == "shape":
            tensor = rng.choice(tensors)
            shape = list(tensor.shape if tensor.shape is not None else [])
            if shape and rng.random() < 0.8:
                shape[rng.randrange(len(shape))] = _odd_int(rng)
            else:
                shape.append(_odd_int(rng))
            tensor.shape = shape
            if rng.random() < 0.5:
                tensor.shapeSignature = list(shape)
        elif what == "type":
            rng.choice(tensors).type = rng.randrange(0, 20)
        elif what == "quantization":
            quantized = [t for t in tensors if t.quantization is not None and t.quantization.scale is not None]
            q = rng.choice(quantized).quantization
            if rng.random() < 0.5:
                q.scale = [_odd_float(rng) for _ in range(len(q.scale) if rng.random() < 0.8 else rng.randrange(5))]
            else:
                q.zeroPoint = [_odd_int(rng) for _ in range(len(q.zeroPoint) if q.zeroPoint is not None else 1)]
            if rng.random() < 0.1:
                q.quantizedDimension = _odd_int(rng)
        elif what == "buffer":
            filled = [b for b in model.buffers if b.data is not None and len(b.data) > 0]
            buf = rng.choice(filled)
            raw = bytearray(bytes(np.asarray(buf.data, np.uint8)))
            if rng.random() < 0.7:
                for _ in range(rng.randrange(1, 9)):
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            else:
                raw = raw[: rng.randrange(len(raw))]
            buf.data = list(raw)
        elif what == "op_inputs":
            op = rng.choice(ops)
            field = "inputs" if rng.random() < 0.7 else "outputs"
            indices = list(getattr(op, field) if getattr(op, field) is not None else [])
            if indices:
                indices[rng.randrange(len(indices))] = rng.choice([-1, rng.randrange(len(tensors))])
            setattr(op, field, indices)
        elif what == "opcode":
            code = rng.choice(model.operatorCodes)
            code.builtinCode = rng.randrange(0, 210)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        elif what == "builtin_options":
            with_options = [op for op in ops if op.builtinOptions is not None]
            op = rng.choice(with_options)
            fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, float, bool))]
            if fields:
                setattr(op.builtinOptions, rng.choice(fields), _odd_int(rng))
        elif what == "signature":
            sig = rng.choice(model.signatureDefs)
            maps = (sig.inputs or []) + (sig.outputs or [])
            m = rng.choice(maps)
            if rng.random() < 0.5:
                m.tensorIndex = rng.randrange(len(model.subgraphs[0].tensors))
            else:
                m.name = rng.choice([b"text", b"intent_logits", b"slot_logits", b"num_tokens", b"other"])
        elif what == "graph_io":
            field = rng.choice(["inputs", "outputs"])
            indices = list(getattr(graph, field))
            indices[rng.randrange(len(indices))] = rng.randrange(len(tensors))
            setattr(graph, field, indices)

    meta = _edit_metadata(metadata, rng) if what == "metadata" else metadata
    return what, resealed(data, edit if what != "metadata" else (lambda model: None), meta)


def onnx_edit(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One field of the parsed .onnx changed, metadata re-attached, hash re-sealed."""
    import onnx

    from edge_pqrnn.converters.onnx_export import METADATA_KEY, OP_DOMAIN, seal_onnx, with_metadata
    from edge_pqrnn.format import HASH_FIELD

    proto = onnx.load_from_string(data)
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    metadata.pop(HASH_FIELD, None)
    what = rng.choice(["attribute", "attribute", "initializer", "dims", "node_input", "op_type", "metadata",
                       "metadata", "output_dims"])
    graph = proto.graph
    if what == "attribute":
        node = rng.choice([n for n in graph.node if n.domain == OP_DOMAIN])  # the projection or a fo-pool
        attribute = rng.choice(list(node.attribute))
        attribute.i = _odd_int(rng) % (2**63) if rng.random() < 0.5 else _odd_int(rng)
        if rng.random() < 0.5:  # the metadata's projection agrees, so the op itself must refuse it
            key = attribute.name if attribute.name in metadata["projection"] else None
            if key:
                metadata["projection"][key] = attribute.i
    elif what in ("initializer", "dims"):
        tensor = rng.choice([t for t in graph.initializer if len(t.raw_data) or len(t.dims)])
        if what == "dims" and len(tensor.dims):
            tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice([0, 1, 2, 3, 1000, 2**31])
        elif len(tensor.raw_data):
            raw = bytearray(tensor.raw_data)
            if rng.random() < 0.7:
                for _ in range(rng.randrange(1, 9)):
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            else:
                raw = raw[: rng.randrange(len(raw))]
            tensor.raw_data = bytes(raw)
        else:
            tensor.data_type = rng.randrange(1, 17)
    elif what == "node_input":
        node = rng.choice(list(graph.node))
        names = [v.name for v in graph.value_info] + [t.name for t in graph.initializer] + [i.name for i in graph.input]
        if len(node.input):
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
    elif what == "op_type":
        node = rng.choice(list(graph.node))
        node.op_type = rng.choice(["Add", "Mul", "MatMul", "Relu", "Identity", "Reshape", "Transpose", "Cast",
                                   "EdgePqrnnProjection"])
    elif what == "output_dims":
        out = rng.choice(list(graph.output))
        dims = out.type.tensor_type.shape.dim
        if len(dims):
            dims[rng.randrange(len(dims))].dim_value = rng.choice([1, 2, 3, 7, 64, 1000])
    if what == "metadata":
        metadata = _edit_metadata(metadata, rng)
    return what, seal_onnx(with_metadata(proto, metadata))


def mutant(data: bytes, fmt: str, index: int, seed: int) -> tuple[str, bytes]:
    """The ``index``-th mutant of ``data`` (deterministic in ``seed``) and its kind."""
    rng = random.Random(f"{seed}:{fmt}:{index}")
    kind = KINDS[index % len(KINDS)]
    if kind == "edit":
        for _ in range(20):  # an edit that does not apply (e.g. no such field) draws again
            try:
                what, edited = (tflite_edit if fmt == "tflite" else onnx_edit)(data, rng)
                return f"edit:{what}", edited
            except (IndexError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
                continue
        kind = "flip"
    return kind, _bytes_mutant(data, kind, rng)


def _resources() -> tuple[int, int, int]:
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/self/fd")), threading.active_count()


def run_one(data: bytes, fmt: str) -> tuple[str, str]:
    """Load and run one mutant: ``("ok", "")``, ``("refused", message)`` or ``("BAD", why)``."""
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.onnx_artifact import OnnxArtifact
    from edge_pqrnn.errors import EdgePqrnnError

    opener: Callable[..., Any] = Artifact.load if fmt == "tflite" else OnnxArtifact.load
    try:
        with opener(data) as model:
            out = model.run(TEXTS)
            model.predict(TEXTS[:2])
    except EdgePqrnnError as exc:
        message = str(exc)
        if "\n" in message or not message.strip():
            return "BAD", f"{type(exc).__name__} of {message.count(chr(10)) + 1} lines: {message[:300]!r}"
        return "refused", message
    except Exception as exc:  # noqa: BLE001 (the point: nothing but our one-line errors)
        return "BAD", f"{type(exc).__name__}: {str(exc)[:300]!r}"
    bad = [k for k, v in out.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        return "BAD", f"non-finite outputs {bad}"
    return "ok", ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", required=True)
    parser.add_argument("--onnx")
    parser.add_argument("--count", type=int, default=1000, help="mutants per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first mutant index (to resume after a crash)")
    parser.add_argument("--warmup", type=int, default=50, help="mutants before the resource baseline")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # artifact_fixtures
    sources = {"tflite": open(args.tflite, "rb").read()}
    if args.onnx:
        sources["onnx"] = open(args.onnx, "rb").read()
    from edge_pqrnn.projection.ops import op_library

    with open("/proc/self/maps") as f:
        sanitized = int("libasan" in f.read())
    print(f"library {op_library()} {sanitized}", flush=True)
    baseline = None
    for i in range(args.start, args.start + args.count):
        if i - args.start == args.warmup:
            baseline = _resources()
        for fmt, data in sources.items():
            kind, mutated = mutant(data, fmt, i, args.seed)
            print(f"start {fmt} {i} {kind}", flush=True)
            outcome, detail = run_one(mutated, fmt)
            print(f"{outcome} {fmt} {i} {kind} {detail}", flush=True)
    end = _resources()
    baseline = baseline or end
    print(f"resources {end[0] - baseline[0]} {baseline[1]} {end[1]} {baseline[2]} {end[2]}", flush=True)


if __name__ == "__main__":
    main()


def campaign(tflite: str, onnx: str | None, count: int, seed: int = 0, env: dict[str, str] | None = None,
             hang_seconds: float = 60, keep: str | None = None) -> dict[str, Any]:
    """Run ``count`` mutants per format in worker processes; a crash or hang is recorded
    (with the mutant saved under ``keep``) and the next worker resumes after it.

    Returns:
        ``{"outcomes": {outcome: n}, "by_kind": {"FORMAT KIND OUTCOME [hash]": n},
        "bad": [lines], "crashes": [(fmt, index, kind, how)], "resources": [growth_kb,
        fds_before, fds_after, threads_before, threads_after] (of the last worker),
        "library": [op library path, "1" if ASan is loaded]}``.
    """
    import queue
    import subprocess
    from collections import Counter

    outcomes: Counter = Counter()
    by_kind: Counter = Counter()
    library: list[str] = []
    bad: list[str] = []
    crashes: list[tuple[str, int, str, str]] = []
    resources: list[int] = []
    start = 0
    while start < count:
        cmd = [sys.executable, os.path.abspath(__file__), "--tflite", tflite, "--count", str(count - start), "--seed",
               str(seed), "--start", str(start), "--warmup", str(min(50, max(0, count - start - 1)))]
        if onnx:
            cmd += ["--onnx", onnx]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
        stderr_tail: list[str] = []
        threading.Thread(target=lambda: [stderr_tail.append(x) for x in proc.stderr], daemon=True).start()
        current = None
        while True:
            try:
                line = lines.get(timeout=hang_seconds)
            except queue.Empty:
                proc.kill()
                crashes.append((current[0], current[1], current[2], f"hang > {hang_seconds:.0f} s") if current
                               else ("?", start, "?", "hang"))
                break
            if line is None:
                break
            parts = line.rstrip("\n").split(" ", 4)
            if parts[0] == "start":
                current = (parts[1], int(parts[2]), parts[3])
            elif parts[0] == "resources":
                resources = [int(v) for v in line.split()[1:]]
            elif parts[0] == "library":
                library = line.split()[1:]
            else:
                outcomes[parts[0]] += 1
                hashed = "hash" if "content hash recorded at export" in line else ""
                by_kind[" ".join([parts[1], parts[3].split(":")[0], parts[0], hashed]).strip()] += 1
                if parts[0] == "BAD":
                    bad.append(line.strip())
                current = None
        code = proc.wait()
        if current is not None:  # died (or hung) inside a mutant
            if not crashes or crashes[-1][:2] != current[:2]:
                detail = next((x.strip() for x in reversed(stderr_tail) if "ERROR" in x or "error" in x), "")
                crashes.append((*current, f"exit {code} {detail[:200]}"))
            if keep:
                source = open(tflite if current[0] == "tflite" else onnx, "rb").read()
                os.makedirs(keep, exist_ok=True)
                with open(os.path.join(keep, f"{current[0]}-{seed}-{current[1]}.bin"), "wb") as f:
                    f.write(mutant(source, current[0], current[1], seed)[1])
            start = current[1] + 1
        else:
            break
    return {"outcomes": dict(outcomes), "by_kind": dict(sorted(by_kind.items())), "bad": bad, "crashes": crashes,
            "resources": resources, "library": library}
