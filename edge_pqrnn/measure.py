"""Timing primitives for measurements taken side by side: interleaved calls of several
variants in one process, invokers that hold an interpreter as an app does, the core's
clock and int8 peak, MACs per utterance and peak memory. :mod:`edge_pqrnn.benchmark`,
gates and report measure through them.
"""

from __future__ import annotations

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


def time_variants(variants: dict[str, Callable[[], Any]], repeats: int = 200, warmup: int = 20,
                  block: int = 1) -> dict[str, dict]:
    """Median and p95 milliseconds per call of each variant, interleaved round-robin.

    ``block`` > 1: each turn of a variant is one first call then ``block`` timed calls in a
    row (``repeats`` timed calls in all): its caches are warm and a change of input shape
    is paid by the first call, as when an app calls one model again and again. The first
    calls, each made right after the other variants ran, are reported apart as
    ``cold_p50_ms`` (a small model's weights evicted by the others). With ``block`` 1
    every call is such a call and ``cold_p50_ms`` is ``p50_ms``."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    cold: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, repeats // block)):
        for name, fn in variants.items():
            if block > 1:
                cold[name].append(_timed_ms(fn))
            for _ in range(block):
                samples[name].append(_timed_ms(fn))
    return {name: {"p50_ms": statistics.median(v), "p95_ms": float(np.percentile(v, 95)),
                   "cold_p50_ms": statistics.median(cold[name] or v)}
            for name, v in samples.items()}


def _timed_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def invoker(artifact: bytes, text: str | Sequence[str], xnnpack: bool = True, threads: int = 1,
            signature: str = "serving_default") -> Callable[[], Any]:
    """A no-argument callable running ``artifact`` (ai_edge_litert) on one text or a batch,
    allocated once as an app would (:func:`edge_pqrnn.runtimes.fixed_batch_runner`).

    Args:
        artifact: .tflite bytes.
        text: one utterance (batch 1) or a list (one call on the whole batch).
        xnnpack: keep XNNPACK (False: plain builtin kernels).
        threads: interpreter threads.
        signature: the signature to run.
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

    from edge_pqrnn.onnx_artifact import check_onnx, is_text_graph
    from edge_pqrnn.runtimes.onnxruntime import register_op_library, session_options, text_tensor
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

    from edge_pqrnn.converters.tflite_graph import builtin_of
    from edge_pqrnn.format import decode_name, load_model, model_bytes, schema
    from edge_pqrnn.projection.ops import op_library

    s = schema()
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    model = load_model(artifact)
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
        code = builtin_of(model, op)
        name = decode_name(model.operatorCodes[op.opcodeIndex].customCode) if code == s.BuiltinOperator.CUSTOM else names[code]
        rows.append({"index": index, "op": name, "shape": [int(d) for d in np.shape(values.get(int(op.outputs[0]), []))],
                     "us": statistics.median(samples)})
    overhead = min(r["us"] for r in rows)
    for r in rows:
        r["us"] -= overhead
    return rows
