"""A Markdown report with plots for a run or an artifact: what people look at first.

``build_report(source, out_dir)`` writes ``report.md`` and PNGs into ``out_dir``:
intent confusion matrix, per-intent (and per-language) scores, batch-1 latency histogram
(int8, and float beside it when the run is known), bytes per block, and agreement of the
int8 artifact with the float reference. It needs matplotlib (the ``report`` extra).

Example:
    >>> build_report("runs/atis", "reports/atis")  # doctest: +SKIP
    PosixPath('reports/atis/report.md')
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn.errors import ConfigError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the report needs matplotlib: pip install 'edge-pqrnn[report]' "
                          "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_label_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per gold or predicted label.

    Example:
        >>> per_label_scores(["a", "a", "b"], ["a", "b", "b"])["b"]
        {'precision': 0.5, 'recall': 1.0, 'f1': 0.6666666666666666, 'support': 1}
    """
    tp: collections.Counter = collections.Counter()
    n_gold = collections.Counter(gold)
    n_pred = collections.Counter(pred)
    for g, p in zip(gold, pred):
        tp[g] += g == p
    rows = {}
    for label in sorted(set(n_gold) | set(n_pred)):
        precision = tp[label] / n_pred[label] if n_pred[label] else 0.0
        recall = tp[label] / n_gold[label] if n_gold[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold[label]}
    return rows


def _short(label: str, width: int = 28) -> str:
    label = label.removeprefix("atis_").replace(";atis_", ";")
    return label if len(label) <= width else label[: width - 1] + "…"


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, write (110 dpi) and close a figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(gold: Sequence[str], pred: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (colour) with counts written in non-empty cells."""
    plt = _pyplot()
    support = collections.Counter(gold)
    labels = sorted(set(gold) | set(pred), key=lambda lab: (-support[lab], lab))
    index = {lab: i for i, lab in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), int)
    for g, p in zip(gold, pred):
        counts[index[g], index[p]] += 1
    rows = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    size = max(6.0, 0.38 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), [_short(lab) for lab in labels], rotation=70, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), [f"{_short(lab)} ({support[lab]})" for lab in labels], fontsize=8)
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6.5,
                color="white" if norm[i, j] > 0.6 else ("black" if i == j else "#b00000"))
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("gold intent (test examples)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.035, label="fraction of the gold row")
    return _save(plt, fig, path)


def plot_per_label(scores: dict[str, dict[str, dict[str, float]]], path: Path, title: str,
                   xlabel: str = "F1") -> Path:
    """Horizontal bars of F1 per label, one bar per model side (``{side: per_label_scores}``)."""
    plt = _pyplot()
    first = next(iter(scores.values()))
    labels = sorted((lab for lab in first if first[lab]["support"]), key=lambda lab: (-first[lab]["support"], lab))
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.32 * len(labels) + 1.2)))
    height = 0.8 / len(scores)
    colors = {"int8": "#1f77b4", "float": "#ff7f0e"}
    for k, (side, rows) in enumerate(scores.items()):
        y = np.arange(len(labels)) + k * height
        ax.barh(y, [rows.get(lab, {}).get("f1", 0.0) for lab in labels], height=height, label=side,
                color=colors.get(side))
    ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2,
                  [f"{_short(lab)} (n={first[lab]['support']})" for lab in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(title)
    return _save(plt, fig, path)


def plot_latency(samples: dict[str, list[float]], path: Path, title: str) -> Path:
    """Histogram of per-call milliseconds per variant, with p50 and p95 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    every = np.concatenate([np.asarray(v) for v in samples.values()])
    # Log-spaced bins: the body (sub-ms) and a busy machine's tail (tens of ms) both show.
    bins = np.geomspace(max(float(every.min()), 1e-3) * 0.9, float(every.max()) * 1.1, 60)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    for (name, values), color in zip(samples.items(), colors):
        p50, p95 = np.percentile(values, [50, 95])
        ax.hist(values, bins=bins, alpha=0.6, color=color,
                label=f"{name}: p50 {p50:.3f} ms, p95 {p95:.3f} ms")
        ax.axvline(p50, color=color, lw=1.5)
        ax.axvline(p95, color=color, lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per call (batch 1, 1 thread; log scale)")
    ax.set_ylabel("calls")
    ax.legend()
    ax.set_title(title)
    return _save(plt, fig, path)


def plot_latency_by_tokens(p50_ms: dict[int, float], floor_ms: dict[int, float] | None, path: Path,
                           title: str) -> Path:
    """p50 per call against the text's token count, with the compute floor as a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    tokens = sorted(p50_ms)
    ax.plot(tokens, [p50_ms[n] for n in tokens], "o-", label="int8 artifact p50 (1 thread, batch 1)")
    if floor_ms:
        ax.plot(tokens, [floor_ms[n] for n in tokens], "--", color="gray", label="compute floor (int8 peak)")
    ax.set_xlabel("token rows of the text")
    ax.set_ylabel("milliseconds per call")
    ax.set_xticks(tokens)
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(title)
    return _save(plt, fig, path)


def plot_bytes(blocks: dict[str, Any], total: int, path: Path, title: str) -> Path:
    """Bytes per block of the artifact (weights per layer, constants, metadata, graph)."""
    plt = _pyplot()
    flat = {f"weights: {k}": v for k, v in blocks.get("weights", {}).items()}
    flat.update({k.replace("_", " "): v for k, v in blocks.items() if k != "weights" and isinstance(v, int)})
    items = sorted(((k, v) for k, v in flat.items() if v > 0), key=lambda kv: -kv[1])
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(items) + 1.2)))
    ax.barh([k for k, _ in items], [v / 1024 for _, v in items], color="#4c72b0")
    for i, (_, v) in enumerate(items):
        ax.text(v / 1024, i, f" {v:,} B ({v / total:.1%})", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("KiB")
    ax.set_xlim(0, max(v for _, v in items) / 1024 * 1.35)
    ax.set_title(title)
    return _save(plt, fig, path)


def plot_agreement(gold: Sequence[str], int8: Sequence[str], flt: Sequence[str], diffs: np.ndarray,
                   path: Path, title: str) -> Path:
    """Left: per-intent share of texts where int8 and float pick the same intent.
    Right: histogram of each text's max |int8 - float| intent logit difference."""
    plt = _pyplot()
    support = collections.Counter(gold)
    labels = sorted(support, key=lambda lab: (-support[lab], lab))
    same = collections.Counter(g for g, a, b in zip(gold, int8, flt) if a == b)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(3.5, 0.3 * len(labels) + 1.2)),
                                      gridspec_kw={"width_ratios": [3, 2]})
    rates = [same[lab] / support[lab] for lab in labels]
    left.barh(range(len(labels)), rates, color=["#2ca02c" if r == 1 else "#d62728" for r in rates])
    left.set_yticks(range(len(labels)), [f"{_short(lab)} (n={support[lab]})" for lab in labels], fontsize=8)
    left.invert_yaxis()
    left.set_xlim(min(0.9, min(rates) - 0.02), 1.0)
    left.set_xlabel("intent agreement int8 vs float (red: some texts differ)")
    right.hist(diffs, bins=40, color="#9467bd")
    right.set_xlabel("max |int8 - float| intent logit, per text")
    right.set_ylabel("texts")
    fig.suptitle(title)
    return _save(plt, fig, path)


def _latency_samples(artifacts: dict[str, bytes], texts: Sequence[str], repeats: int) -> dict[str, list[float]]:
    """Per-call ms of each artifact, interleaved round-robin over varied texts."""
    from edge_pqrnn.measure import invoker

    calls = {name: [invoker(data, t) for t in texts] for name, data in artifacts.items()}
    for fns in calls.values():
        for fn in fns:
            fn()
    samples: dict[str, list[float]] = {name: [] for name in artifacts}
    for i in range(repeats):
        for name, fns in calls.items():
            fn = fns[i % len(fns)]
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return samples


def _source_bytes(source: Path, log: Callable[[str], None]) -> tuple[bytes, str]:
    """The artifact of a report: a .tflite as it is, a run directory exported in memory."""
    if source.is_dir():
        from edge_pqrnn.export import export

        log(f"exporting {source} to int8 in memory (not validated)...")
        return (export(source, None, check=False, log=lambda _: None).artifact,
                f"{source.name} (int8, exported for this report)")
    from edge_pqrnn.artifact_checks import read_source

    return read_source(source, source.name)


def _per_label_sections(gold: list[str], int8_pred: list[str], float_pred: list[str] | None, examples: Sequence[Any],
                        languages: list[str], out: Path) -> list[str]:
    """Per-intent precision/recall/F1 (int8, and float F1 beside it) and, for several
    languages, the intent accuracy per language; each with its plot."""
    scores = {"int8": per_label_scores(gold, int8_pred)}
    if float_pred is not None:
        scores["float"] = per_label_scores(gold, float_pred)
    plot_per_label(scores, out / "per_intent.png", "F1 per intent")
    sections = ["## Per-intent scores", "", "![per intent](per_intent.png)", "",
                "| intent | support | int8 P | int8 R | int8 F1 |" + (" float F1 |" if float_pred else ""),
                "|---|---|---|---|---|" + ("---|" if float_pred else "")]
    for lab, r in sorted(scores["int8"].items(), key=lambda kv: -kv[1]["support"]):
        extra = f" {scores['float'][lab]['f1']:.3f} |" if float_pred else ""
        sections.append(f"| {lab} | {r['support']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |{extra}")
    sections.append("")
    if len(languages) > 1:
        by_lang = {"int8": {lang: {"f1": float(np.mean([g == p for g, p, ex in zip(gold, int8_pred, examples)
                                                      if ex.language == lang])),
                                   "support": sum(ex.language == lang for ex in examples)} for lang in languages}}
        plot_per_label(by_lang, out / "per_language.png", "Intent accuracy per language (int8)", "accuracy")
        sections += ["## Per-language intent accuracy", "", "![per language](per_language.png)", ""]
    return sections


def _latency_section(artifacts: dict[str, bytes], texts: list[str], repeats: int, out: Path) -> list[str]:
    """Batch-1 latency of each artifact, interleaved, as a histogram and a table."""
    samples = _latency_samples(artifacts, texts, repeats)
    plot_latency(samples, out / "latency.png", "Batch-1 latency, ai_edge_litert + XNNPACK, interleaved")
    return ["## Latency", "", "![latency](latency.png)", "",
            "| variant | p50 ms | p95 ms |", "|---|---|---|",
            *[f"| {k} | {np.percentile(v, 50):.3f} | {np.percentile(v, 95):.3f} |" for k, v in samples.items()],
            "", "Timed in one process, interleaved, on varied test texts; compare the ratio, not the absolute "
            "numbers, across machines.", ""]


def _agreement_section(gold: list[str], int8_pred: list[str], float_pred: list[str], int8_logits: np.ndarray,
                       float_logits: np.ndarray, agree: float, out: Path) -> list[str]:
    """Where int8 and float disagree, and by how much (largest logit difference per text)."""
    diffs = np.abs(int8_logits - float_logits).max(1)
    plot_agreement(gold, int8_pred, float_pred, diffs, out / "agreement.png",
                   f"int8 vs float: {agree:.2%} same intent, median max|Δlogit| {np.median(diffs):.3f}")
    return ["## Agreement with float", "", "![agreement](agreement.png)", ""]


def _float_side(run_dir: Path, texts: list[str], log: Callable[[str], None]) -> tuple[Any, np.ndarray, list[str], bytes]:
    """The reference run, its intent logits and predictions on ``texts``, and its float artifact."""
    from edge_pqrnn.gates import float_artifact
    from edge_pqrnn.run import load_run

    run = load_run(run_dir)
    float_logits = np.asarray(run.predict(texts).intent)
    float_pred = [run.labels.intents[i] for i in float_logits.argmax(1)]
    log("building the float artifact for the latency comparison...")
    return run, float_logits, float_pred, float_artifact(run_dir)


def _latency_by_tokens_section(data: bytes, spec: Any, config: dict[str, Any] | None, texts: list[str], repeats: int,
                               out: Path) -> list[str]:
    """p50 of the artifact on texts of 4..64 token rows, with the compute floor of each."""
    from edge_pqrnn.benchmark import latency_by_tokens
    from edge_pqrnn.measure import floor_ms_at

    by_tokens = latency_by_tokens(data, None, spec, " ".join(texts[:50]).split(), repeats=max(20, repeats // 3))
    floors = {n: floor_ms_at(config, n) for n in by_tokens["tokens"]} if config else None
    floors = floors if floors and None not in floors.values() else None
    plot_latency_by_tokens(by_tokens["p50_ms"], floors, out / "latency_by_tokens.png",
                           "Latency against the text's token count")
    return ["## Latency by token count", "", "![latency by tokens](latency_by_tokens.png)", "",
            "| tokens | p50 ms | floor ms |", "|---|---|---|",
            *[f"| {n} | {by_tokens['p50_ms'][n]:.3f} | " + (f"{floors[n]:.4f} |" if floors else "— |")
              for n in by_tokens["tokens"]],
            "", "Warm calls in blocks on one interpreter; the floor is the matmul MACs of that many rows at the "
            "core's int8 peak.", ""]


def _metrics_table(gold: list[str], int8_pred: list[str], float_pred: list[str] | None) -> list[str]:
    """Intent accuracy of int8 (and float, and their agreement) as a Markdown table."""
    acc8 = float(np.mean([g == p for g, p in zip(gold, int8_pred)]))
    rows = [("int8 intent accuracy", f"{acc8:.4f}")]
    if float_pred is not None:
        accf = float(np.mean([g == p for g, p in zip(gold, float_pred)]))
        agree = float(np.mean([a == b for a, b in zip(int8_pred, float_pred)]))
        rows += [("float intent accuracy", f"{accf:.4f}"), ("intent agreement int8 vs float", f"{agree:.4f}")]
    return ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]


def build_report(source: str | os.PathLike, out_dir: str | os.PathLike, *, reference: str | os.PathLike | None = None,
                 repeats: int = 300, log: Callable[[str], None] = print) -> Path:
    """Write ``report.md`` and its PNGs for a run directory or an artifact.

    Args:
        source: a run directory (exported to int8 in memory, unvalidated) or a .tflite.
        out_dir: where the report goes (created).
        reference: for an artifact source, the run it came from (adds float scores,
            agreement and the float latency beside int8). A run source is its own reference.
        repeats: timed calls per variant for the latency histogram.
        log: progress lines.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: matplotlib is missing, or the data set to score on cannot be found.
        ArtifactError: the artifact or run does not load.
    """
    from edge_pqrnn.artifact import INTENT_OUTPUT, Artifact
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.inspect_artifact import inspect

    _pyplot()  # fail fast without matplotlib
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(source)
    run_dir = source if source.is_dir() else (Path(reference) if reference else None)
    data, name = _source_bytes(source, log)
    art = Artifact.load(data, name=name)
    meta = art.metadata
    dataset = load_dataset(meta.get("dataset") or "")
    examples = dataset.test or dataset.dev
    if not examples:
        raise ConfigError(f"dataset {meta.get('dataset')!r} has no test or dev split to score the report on")
    texts = [ex.text for ex in examples]
    gold = [ex.intent for ex in examples]
    log(f"scoring {len(texts)} {dataset.name} examples...")
    int8_logits = art.run(texts)[INTENT_OUTPUT]
    intents = list(art.labels.intents)
    int8_pred = [intents[i] for i in int8_logits.argmax(1)]

    run, float_logits, float_pred, artifacts = None, None, None, {"int8": data}
    if run_dir is not None:
        run, float_logits, float_pred, artifacts["float"] = _float_side(run_dir, texts, log)
    languages = sorted({ex.language for ex in examples})

    sections = [f"# edge-pqrnn report: {name}", "",
                f"Dataset `{dataset.name}`, {len(examples)} held-out examples; artifact {len(data):,} bytes, "
                f"scheme `{meta.get('scheme')}`, T={art.spec.max_tokens}, F={art.spec.feature_size}.", ""]
    sections += _metrics_table(gold, int8_pred, float_pred)

    log("plotting...")
    plot_confusion(gold, int8_pred, out / "confusion.png", f"Intent confusion, int8 artifact ({dataset.name} test)")
    sections += ["## Confusion matrix (intents, int8)", "", "![confusion](confusion.png)", "",
                 "Rows: gold intent with its count; red numbers are errors.", ""]

    sections += _per_label_sections(gold, int8_pred, float_pred, examples, languages, out)
    log(f"timing {', '.join(artifacts)} ({repeats} calls each)...")
    sections += _latency_section(artifacts, texts[:50], repeats, out)

    log("timing int8 by token count...")
    sections += _latency_by_tokens_section(data, art.spec, meta.get("model_config"), texts, repeats, out)

    info = inspect(data)
    plot_bytes(info["bytes"], len(data), out / "bytes.png", f"Bytes per block ({len(data):,} bytes in all)")
    sections += ["## Bytes per block", "", "![bytes](bytes.png)", ""]

    if float_pred is not None and run is not None:
        agree = float(np.mean([a == b for a, b in zip(int8_pred, float_pred)]))
        sections += _agreement_section(gold, int8_pred, float_pred, int8_logits, float_logits, agree, out)
    else:
        sections += ["## Agreement with float", "",
                     "Not measured: pass `--reference RUN_DIR` (the run this artifact was exported from).", ""]
    art.close()
    path = out / "report.md"
    path.write_text("\n".join(sections), encoding="utf-8")
    return path
