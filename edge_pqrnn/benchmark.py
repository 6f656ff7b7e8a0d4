"""Latency measured side by side in one run: ratios, not absolute claims.

Machines are noisy, so every number here is taken in the same process, interleaved
round-robin over the variants, and reported with its ratio to a reference variant.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from edge_pqrnn.measure import (int8_macs_per_cycle, invoker, macs_per_utterance, measure_clock_ghz, onnx_invoker,
                                peak_memory_mb, time_variants)

#: ``teacher(texts, log) -> (invokers by name, info)``: see :func:`teacher_comparison`.
TeacherInvokers = Callable[[Sequence[str], Callable[[str], None]], tuple[dict[str, Callable[[], Any]], dict[str, Any]]]

DEFAULT_TEXTS = (
    "show me flights from boston to denver tomorrow morning",
    "what is the cheapest fare",
    "list all american airlines flights leaving from pittsburgh after 5 pm on thursday",
)


def onnx_available() -> bool:
    """Whether ONNX models can be exported here (onnx, onnxruntime and tf2onnx installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "tf2onnx"))


def onnx_models(run: Any, dataset_name: str, calibration: Sequence[str]) -> dict[str, bytes]:
    """The run's raw-text .onnx, float and int8 QDQ, built in memory as ``export --format onnx``
    builds them (no validation), keyed ``onnx-float`` and ``onnx-int8``."""
    from edge_pqrnn.build import build_onnx

    return {f"onnx-{scheme}": build_onnx(run, dataset_name, calibration, int8=scheme == "int8").artifact
            for scheme in ("float", "int8")}


#: Token counts (markers included) that ``latency_by_tokens`` times.
TOKEN_COUNTS = (4, 8, 16, 32, 64)
#: Calls in a row per variant and turn (measure.time_variants): every model is timed warm,
#: as an app serving one request after another runs it; the turn's first call is the cold one.
LATENCY_BLOCK = 10
TEACHER_BLOCK = 5


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


def onnx_latency_by_tokens(model: bytes, spec: Any, words: Sequence[str], counts: Sequence[int] = TOKEN_COUNTS,
                           repeats: int = 200, block: int = 10) -> dict[str, Any]:
    """p50 of a raw-text .onnx on texts of each token count (onnxruntime, 1 thread,
    batch 1, one session as an app holds one, warm blocks as :func:`latency_by_tokens`):
    whether its cost follows the text as the .tflite's does.

    Args:
        model: raw-text .onnx bytes (by default its token axis follows the text).
        spec: the projection spec.
        words: words to build the texts from.
        counts: token counts (those above T are left out).
        repeats: timed calls per count.
        block: calls in a row per count and turn.

    Returns:
        ``{"tokens", "p50_ms": {count: ms}, "p50_64_over_8"}`` (the largest count over 8).
    """
    import onnxruntime as ort

    from edge_pqrnn.runtimes.onnxruntime import register_op_library, session_options, text_tensor

    counts = [n for n in counts if n <= spec.max_tokens]
    options = session_options(1)
    register_op_library(options)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    variants = {}
    for n in counts:
        feed = {"text": text_tensor([text_with_tokens(n, spec, words)])}
        variants[str(n)] = lambda feed=feed: session.run(None, feed)
    timed = time_variants(variants, repeats=repeats, warmup=2, block=block)
    p50 = {n: timed[str(n)]["p50_ms"] for n in counts}
    return {"tokens": counts, "p50_ms": p50, "p50_64_over_8": p50[counts[-1]] / p50[8] if 8 in p50 else None}


def teacher_comparison(int8_artifact: bytes, texts: Sequence[str], repeats: int, teacher: TeacherInvokers,
                       log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The int8 artifact vs the teacher (torch fp32, onnxruntime int8), interleaved in one loop.

    Args:
        teacher: ``teacher(texts, log) -> (invokers, info)``: no-argument callables named
            ``teacher-torch-fp32|TEXT`` and ``teacher-ort-int8|TEXT``, and the teacher's
            ``params``/``fp32_bytes``/``tokens`` (the distill layer's
            :func:`edge_pqrnn.distill.teacher.bench.teacher_invokers`; passed in, so this
            module does not depend on the teacher).
    """
    variants, info = teacher(texts, log)
    variants.update({f"int8|{t}": invoker(int8_artifact, t) for t in texts})
    names = ["teacher-torch-fp32", "teacher-ort-int8", "int8"]
    log(f"timing the teacher beside the int8 artifact ({repeats} calls each, in interleaved blocks)...")
    # Blocks of calls (see time_variants): each model is timed warm, as an app that serves
    # one request after another runs it; a single int8 call right after 470 MB of teacher
    # weights would time cache misses, not the model.
    timed = time_variants(variants, repeats=repeats, warmup=3, block=TEACHER_BLOCK)
    p50 = {name: statistics.mean(timed[f"{name}|{t}"]["p50_ms"] for t in texts) for name in names}
    cold = {name: statistics.mean(timed[f"{name}|{t}"]["cold_p50_ms"] for t in texts) for name in names}
    result = {**{k: v for k, v in info.items() if k != "tokens"}, "subword_tokens": list(info["tokens"].values()),
              "p50_ms": p50, "cold_p50_ms": cold, "block": TEACHER_BLOCK,
              "torch_fp32_over_int8": p50["teacher-torch-fp32"] / p50["int8"],
              "ort_int8_over_int8": p50["teacher-ort-int8"] / p50["int8"],
              "cold": {"torch_fp32_over_int8": cold["teacher-torch-fp32"] / cold["int8"],
                       "ort_int8_over_int8": cold["teacher-ort-int8"] / cold["int8"]},
              "fp32_bytes_over_int8_bytes": info["fp32_bytes"] / len(int8_artifact)}
    return result


def _add_onnx_rows(artifacts: dict[str, bytes], onnx: Any, given_onnx: Any, run: Any, dataset_name: str,
                   calibration: Sequence[str], log: Callable[[str], None]) -> str:
    """Add the ONNX rows to ``artifacts`` (a given .onnx, or float and int8 exported
    alongside) and say what was done."""
    if given_onnx is not None:
        artifacts[f"onnx-{given_onnx.metadata['scheme']}"] = given_onnx.data
        return str(onnx)
    if onnx is False:
        return "skipped (onnx=False)"
    if onnx is None and not onnx_available():
        return "skipped: onnx, onnxruntime and tf2onnx are not all installed (pip install onnx onnxruntime tf2onnx)"
    log("exporting the ONNX rows alongside (float and int8 QDQ, raw text in)...")
    artifacts.update(onnx_models(run, dataset_name, calibration))
    return "exported alongside (float and int8 QDQ, projection op in the graph)"


def _latency_table(artifacts: dict[str, bytes], onnx_names: list[str], texts: Sequence[str], threads: int,
                   repeats: int) -> dict[str, Any]:
    """Batch-1 latency of every variant, interleaved in one loop, with the ratios to int8."""
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
    timed = time_variants(variants, repeats=repeats, block=LATENCY_BLOCK)
    result: dict[str, Any] = {"variants": {}, "ratios": {}, "block": LATENCY_BLOCK}
    for name, (a, _, _) in settings.items():
        p50, p95, cold = (statistics.mean(timed[f"{name}|{t}"][key] for t in texts)
                          for key in ("p50_ms", "p95_ms", "cold_p50_ms"))
        result["variants"][name] = {"p50_ms": p50, "p95_ms": p95, "cold_p50_ms": cold, "bytes": len(artifacts[a])}
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
    return result


def _throughput(artifacts: dict[str, bytes], onnx_names: list[str], dataset: Any, texts: Sequence[str],
                batch_sizes: Sequence[int], threads: int, repeats: int) -> dict[str, Any]:
    """One call on a batch per variant and size; utterances per second at the median call time."""
    pool = [ex.text for ex in (dataset.test or dataset.train)][:max(batch_sizes)] or list(texts)
    batch_variants = {}
    for b in batch_sizes:
        batch = (pool * b)[:b]
        for scheme in ("int8", "float"):
            batch_variants[f"{scheme}|{b}"] = invoker(artifacts[scheme], batch, True, threads)
        for name in onnx_names:
            batch_variants[f"{name}|{b}"] = onnx_invoker(artifacts[name], batch, threads)
    timed_b = time_variants(batch_variants, repeats=max(10, repeats // 8), warmup=3)
    return {name: {"batch": int(name.split("|")[1]), "threads": threads,
                                   "utterances_per_s": int(name.split("|")[1]) * 1000 / row["p50_ms"]}
                            for name, row in timed_b.items()}


def _compute(config: dict[str, Any], mean_tokens: float, int8: dict[str, float], in_turn_p50_ms: float,
             onnx_p50_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """MACs per utterance and the floor they set at the core's int8 peak, at T and at the
    test texts' mean token count, beside the measured int8 p50 (and each ONNX row's p50:
    ``onnx_<scheme>_over_text_floor``, the .onnx against the same per-text floor)."""
    # Compute floor: matmul MACs vs the core's int8 peak, at T (what a static graph
    # computes) and at the test texts' mean token count (what a text needs).
    macs = macs_per_utterance(config)
    text_config = {**config, "projection": {**config["projection"], "max_tokens": mean_tokens}}
    text_macs = macs_per_utterance(text_config)["matmul"]
    ghz, clock_how = measure_clock_ghz()
    per_cycle, isa = int8_macs_per_cycle()
    floor_ms = macs["matmul"] / (per_cycle * ghz * 1e9) * 1000 if ghz else None
    text_floor_ms = text_macs / (per_cycle * ghz * 1e9) * 1000 if ghz else None
    int8_p50_ms = int8["p50_ms"]
    return {"macs": macs, "text_macs": text_macs, "clock_ghz": ghz, "clock_method": clock_how,
                         "int8_macs_per_cycle": per_cycle, "peak_assumption": isa, "floor_ms": floor_ms,
                         "int8_over_floor": int8_p50_ms / floor_ms if floor_ms else None,
                         "text_floor_ms": text_floor_ms,
                         "int8_over_text_floor": int8_p50_ms / text_floor_ms if text_floor_ms else None,
                         # the first call of each block, right after the other variants
                         "int8_cold_over_text_floor": int8["cold_p50_ms"] / text_floor_ms if text_floor_ms else None,
                         # warm, the test texts one after another (re-prepares included)
                         "int8_in_turn_over_text_floor": in_turn_p50_ms / text_floor_ms if text_floor_ms else None,
                         **{f"{name.replace('-', '_')}_over_text_floor": p50 / text_floor_ms if text_floor_ms else None
                            for name, p50 in (onnx_p50_ms or {}).items()}}


def _log_summary(result: dict[str, Any], log: Callable[[str], None]) -> None:
    """The benchmark as lines: latency, ratios, throughput, memory, floors, tokens, teacher."""
    v, threads, c, pad = result["variants"], result["threads"], result["compute"], result["padding"]
    macs, T = c["macs"], pad["T"]
    for name, row in v.items():
        log(f"{name:<16} p50 {row['p50_ms']:7.3f} ms  p95 {row['p95_ms']:7.3f} ms  cold {row['cold_p50_ms']:7.3f} ms  "
            f"{row['bytes']:>10,} bytes")
    for name, ratio in result["ratios"].items():
        log(f"{name:<30} {ratio:6.2f}x")
    for name, row in result["throughput"].items():
        log(f"throughput {name.replace('|', ' batch '):<22} {row['utterances_per_s']:9.0f} utt/s ({threads} threads)")
    for scheme, mb in result["memory_mb"].items():
        log(f"peak memory {scheme:<6} " + (f"+{mb:.1f} MB RSS" if mb is not None else "not measured"))
    log(f"compute: {macs['matmul'] / 1e6:.1f} M int8 MACs/utterance in matmuls ({macs['total'] / 1e6:.1f} M incl. "
        f"element-wise) at T={T}")
    if c["floor_ms"]:
        log(f"floor: {c['floor_ms']:.3f} ms at {c['int8_macs_per_cycle']} MAC/cycle x {c['clock_ghz']:.2f} GHz "
            f"({c['peak_assumption']}; clock: {c['clock_method']}); int8 p50 is {c['int8_over_floor']:.1f}x the floor")
        log(f"text floor: {c['text_floor_ms']:.3f} ms at the test texts' mean {pad['mean_tokens']:.1f} tokens; int8 p50 is "
            f"{c['int8_over_text_floor']:.1f}x the text floor ({c['int8_in_turn_over_text_floor']:.1f}x with the "
            f"test texts in turn, {c['int8_cold_over_text_floor']:.1f}x cold)")
    log(f"padding: texts fill {pad['mean_tokens']:.1f} of T={T} rows on average (p95 {pad['p95_tokens']:.0f}); "
        f"a static-T graph would compute {pad['padded_fraction']:.0%} padding")
    lt = result["latency_by_tokens"]
    log("latency by tokens (int8, 1 thread, p50 ms; static T beside): " + ", ".join(
        f"{n}: {lt['p50_ms'][n]:.3f} ({lt['static_p50_ms'][n]:.3f})" for n in lt["tokens"])
        + (f"; {lt['tokens'][-1]}/8 tokens = {lt['p50_64_over_8']:.2f}x" if lt["p50_64_over_8"] else ""))
    ch = lt["changing_lengths"]
    log(f"  {ch['texts']} test texts in turn on one interpreter (length changes re-prepare): p50 {ch['p50_ms']:.3f} ms "
        f"vs {ch['static_p50_ms']:.3f} ms at static T")
    for key in [k for k in lt if k.startswith("onnx_") and k.endswith("_p50_ms")]:
        ratio = lt.get(f"{key[:-len('_p50_ms')]}_64_over_8")
        log(f"latency by tokens ({key[:-len('_p50_ms')].replace('_', '-', 1)}, onnxruntime, 1 thread, p50 ms): "
            + ", ".join(f"{n}: {ms:.3f}" for n, ms in lt[key].items())
            + (f"; {lt['tokens'][-1]}/8 tokens = {ratio:.2f}x" if ratio else ""))
    for key in [k for k in c if k.startswith("onnx_") and k.endswith("_over_text_floor") and c[k]]:
        log(f"{key:<30} {c[key]:6.1f}x")
    t = result["teacher"]
    if isinstance(t, dict):
        log(f"teacher (multilingual-e5-small encoder, {t['params'] / 1e6:.1f} M params, {t['fp32_bytes'] / 1e6:.0f} MB "
            f"fp32; 1 thread, batch 1): torch fp32 p50 {t['p50_ms']['teacher-torch-fp32']:.2f} ms, onnxruntime int8 "
            f"{t['p50_ms']['teacher-ort-int8']:.2f} ms; int8 .tflite {t['p50_ms']['int8']:.3f} ms = "
            f"{t['torch_fp32_over_int8']:.0f}x / {t['ort_int8_over_int8']:.0f}x faster (cold: "
            f"{t['cold']['torch_fp32_over_int8']:.0f}x / {t['cold']['ort_int8_over_int8']:.0f}x); "
            f"{t['fp32_bytes_over_int8_bytes']:.0f}x smaller than the fp32 teacher")
    else:
        log(f"teacher: {t}")
    log(f"onnx: {result['onnx']}")


def _add_onnx_by_tokens(result: dict[str, Any], artifacts: dict[str, bytes], onnx_names: list[str], spec: Any,
                        words: Sequence[str], repeats: int) -> None:
    """The raw-text .onnx by token count (:func:`onnx_latency_by_tokens`) into
    ``result["latency_by_tokens"]``: ``onnx_<scheme>_p50_ms`` and ``onnx_<scheme>_64_over_8``
    of the int8 row (or of the one raw-text .onnx given)."""
    from edge_pqrnn.onnx_artifact import is_text_graph

    names = [n for n in onnx_names if is_text_graph(artifacts[n])]
    name = "onnx-int8" if "onnx-int8" in names else (names[0] if names else None)
    if name is None:
        return
    timed = onnx_latency_by_tokens(artifacts[name], spec, words, repeats=repeats)
    key = name.replace("-", "_")
    result["latency_by_tokens"][f"{key}_p50_ms"] = timed["p50_ms"]
    # Named like the .tflite's p50_64_over_8: the largest count (64 at the default T) over 8.
    result["latency_by_tokens"][f"{key}_64_over_8"] = timed["p50_64_over_8"]


def _teacher_rows(teacher: TeacherInvokers | str | None, int8: bytes, texts: Sequence[str], repeats: int,
                  log: Callable[[str], None]) -> dict[str, Any] | str:
    """The teacher beside the int8 artifact (:func:`teacher_comparison`), or why not."""
    if teacher is None or teacher is False:
        return "skipped (no teacher given: `edge-pqrnn benchmark` times it when the teacher extra is installed)"
    if isinstance(teacher, str):
        return teacher  # why the caller has no teacher to time
    return teacher_comparison(int8, texts, max(2 * TEACHER_BLOCK, repeats // 10), teacher, log)


def benchmark_run(run_dir: str, texts: Sequence[str] = DEFAULT_TEXTS, repeats: int = 200,
                  batch_sizes: Sequence[int] = (1, 8, 32), threads: int | None = None,
                  onnx: bool | str | os.PathLike | None = None, teacher: TeacherInvokers | str | None = None,
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
        teacher: time the teacher (multilingual-e5-small: torch fp32 and onnxruntime
            int8) beside the int8 artifact with this ``teacher(texts, log)`` (see
            :func:`teacher_comparison`); a str says why there is none; None skips it.
        log: where lines go.

    Returns:
        ``{"variants", "ratios", "throughput", "memory_mb", "compute", "padding",
        "latency_by_tokens", "teacher", "onnx"}``; ratios
        ``onnx_<scheme>_over_int8_latency`` compare each ONNX row with the int8 .tflite;
        ``latency_by_tokens["onnx_int8_p50_ms"]`` and ``["onnx_int8_64_over_8"]`` time the
        int8 .onnx by token count, ``compute["onnx_<scheme>_over_text_floor"]`` sets each
        ONNX row against the per-text floor.

    Raises:
        ConfigError: ``onnx=True`` without the ONNX packages.
        ArtifactError: the ``onnx`` path is not an edge-pqrnn .onnx.
    """
    from edge_pqrnn.build import build_tflite, calibration_for
    from edge_pqrnn.export import load_run_and_dataset
    from edge_pqrnn.projection import project

    threads = threads or os.cpu_count() or 1
    given_onnx = None
    if onnx is not None and not isinstance(onnx, bool):
        from edge_pqrnn.onnx_artifact import check_onnx

        given_onnx = check_onnx(onnx)  # a bad path fails now, before any conversion
    run, dataset_name, dataset = load_run_and_dataset(run_dir)
    calibration = calibration_for(run, [ex.text for ex in dataset.train], samples=200)
    artifacts, bodies = {}, {}
    for scheme in ("int8", "float"):
        built = build_tflite(run, dataset_name, calibration, scheme=scheme)
        artifacts[scheme], bodies[scheme] = built.artifact, built.body
    onnx_note = _add_onnx_rows(artifacts, onnx, given_onnx, run, dataset_name, calibration, log)
    onnx_names = sorted(name for name in artifacts if name.startswith("onnx-"))
    result: dict[str, Any] = {"threads": threads, **_latency_table(artifacts, onnx_names, texts, threads, repeats),
                              "onnx": onnx_note}
    result["throughput"] = _throughput(artifacts, onnx_names, dataset, texts, batch_sizes, threads, repeats)
    result["memory_mb"] = {scheme: peak_memory_mb(artifacts[scheme], 1, max(batch_sizes)) for scheme in ("int8", "float")}
    # Padding: how much of T the texts fill (a static-T graph computes it all).
    test_texts = [ex.text for ex in (dataset.test or dataset.train)]
    counts = project(test_texts, run.spec).num_tokens
    result["padding"] = {"T": run.spec.max_tokens, "mean_tokens": float(np.mean(counts)),
                         "p95_tokens": float(np.percentile(counts, 95)),
                         "padded_fraction": float(1 - np.mean(counts) / run.spec.max_tokens)}
    static_int8 = build_tflite(run, dataset_name, [], body=bodies["int8"], static_tokens=True).artifact
    result["latency_by_tokens"] = latency_by_tokens(
        artifacts["int8"], static_int8, run.spec, " ".join(test_texts[:50]).split(), test_texts,
        repeats=max(20, repeats // 2))

    _add_onnx_by_tokens(result, artifacts, onnx_names, run.spec, " ".join(test_texts[:50]).split(),
                        max(20, repeats // 2))
    result["compute"] = _compute(run.config.to_dict(), float(np.mean(counts)), result["variants"]["int8"],
                                 result["latency_by_tokens"]["changing_lengths"]["p50_ms"],
                                 {name: result["variants"][name]["p50_ms"] for name in onnx_names})
    result["teacher"] = _teacher_rows(teacher, artifacts["int8"], texts, repeats, log)
    _log_summary(result, log)
    return result
