"""Latency measured side by side in one run: ratios, not absolute claims.

Machines are noisy, so every number here is taken in the same process, interleaved
round-robin over the variants, and reported with its ratio to a reference variant.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

DEFAULT_TEXTS = (
    "show me flights from boston to denver tomorrow morning",
    "what is the cheapest fare",
    "list all american airlines flights leaving from pittsburgh after 5 pm on thursday",
)


def time_variants(variants: dict[str, Callable[[], Any]], repeats: int = 200, warmup: int = 20) -> dict[str, dict]:
    """Median and p95 milliseconds per call of each variant, interleaved round-robin."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: {"p50_ms": statistics.median(v), "p95_ms": float(np.percentile(v, 95))}
            for name, v in samples.items()}


def _invoker(artifact: bytes, text: str, xnnpack: bool, threads: int = 1) -> Callable[[], Any]:
    from edge_pqrnn.runtimes import interpreter

    interp = interpreter(artifact, "litert", num_threads=threads, xnnpack=xnnpack)
    runner = interp.get_signature_runner("serving_default")
    batch = np.array([text.encode()], dtype=object)
    return lambda: runner(text=batch)


def benchmark_run(run_dir: str, texts: Sequence[str] = DEFAULT_TEXTS, repeats: int = 200,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """int8 vs float artifact latency (1 thread, batch 1), with and without XNNPACK.

    Builds both artifacts in memory from the run (no validation) and times them on the
    same texts in one interleaved loop.

    Returns:
        ``{"variants": {name: {p50_ms, p95_ms, bytes}}, "ratios": {...}}``.
    """
    from edge_pqrnn.converters.tflite_fuse import fuse
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.export import build_metadata
    from edge_pqrnn.quant.ptq import convert, representative_texts
    from edge_pqrnn.train import load_run

    run = load_run(run_dir)
    dataset = load_dataset(run.metrics["dataset"])
    calibration = representative_texts([ex.text for ex in dataset.train], run.spec, samples=200)
    artifacts = {}
    for scheme in ("int8", "float"):
        body = convert(run.model, run.spec, calibration, scheme=scheme, batch_size=None)
        artifacts[scheme] = fuse(body.model, run.spec, build_metadata(run, run.metrics["dataset"], scheme))
    variants = {}
    for text in texts:
        variants[f"int8|{text}"] = _invoker(artifacts["int8"], text, True)
        variants[f"int8-no-xnnpack|{text}"] = _invoker(artifacts["int8"], text, False)
        variants[f"float|{text}"] = _invoker(artifacts["float"], text, True)
    timed = time_variants(variants, repeats=repeats)
    result: dict[str, Any] = {"variants": {}, "ratios": {}}
    for name in ("int8", "int8-no-xnnpack", "float"):
        p50 = statistics.mean(timed[f"{name}|{t}"]["p50_ms"] for t in texts)
        p95 = statistics.mean(timed[f"{name}|{t}"]["p95_ms"] for t in texts)
        size = len(artifacts["float" if name == "float" else "int8"])
        result["variants"][name] = {"p50_ms": p50, "p95_ms": p95, "bytes": size}
    v = result["variants"]
    result["ratios"] = {
        "float_over_int8_latency": v["float"]["p50_ms"] / v["int8"]["p50_ms"],
        "no_xnnpack_over_xnnpack_int8": v["int8-no-xnnpack"]["p50_ms"] / v["int8"]["p50_ms"],
        "float_over_int8_bytes": v["float"]["bytes"] / v["int8"]["bytes"],
    }
    for name, row in v.items():
        log(f"{name:<16} p50 {row['p50_ms']:7.3f} ms  p95 {row['p95_ms']:7.3f} ms  {row['bytes']:>10,} bytes")
    for name, ratio in result["ratios"].items():
        log(f"{name:<30} {ratio:6.2f}x")
    return result
