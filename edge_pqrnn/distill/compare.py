"""What `edge-pqrnn distill` reports at the end: the teacher, the int8 student and the
TF-IDF baseline on one held-out split, with ratios, sizes and, for data in several
languages, the same per language."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn.data.records import Dataset


def _scores(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("intent_accuracy", "macro_f1", "slot_f1")}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def held_out_summary(dataset: Dataset, split: str, teacher_dir: Path, student_dir: Path,
                     artifact: Path) -> dict[str, Any]:
    """Teacher, int8 student and TF-IDF baseline on ``dataset``'s ``split``, with ratios and sizes.

    Args:
        dataset: the loaded dataset.
        split: ``"test"`` or ``"dev"`` (the student picks its epoch on dev: prefer test).
        teacher_dir: a finished teacher directory (its scores are read from its metrics).
        student_dir: the student's run directory.
        artifact: the student's int8 artifact (scored here, as it ships).

    Returns:
        ``{"split", "n", "teacher", "student_int8", "baseline", "ratios", "below_baseline"}``,
        and for data in several languages ``"per_language"`` (see :func:`_per_language`).
    """
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.baseline import run_baseline
    from edge_pqrnn.evaluate import evaluate

    examples = getattr(dataset, split)
    teacher_metrics = json.loads((teacher_dir / "metrics.json").read_text(encoding="utf-8"))
    teacher_held = teacher_metrics.get(split) or teacher_metrics["dev"]
    teacher = dict(_scores(teacher_held), params=teacher_metrics["num_params"],
                   fp32_bytes=teacher_metrics["fp32_bytes"])
    with Artifact.load(artifact) as loaded:
        int8 = evaluate(loaded.logits, examples, labels=loaded.labels, spec=loaded.spec)
    student_metrics = json.loads((student_dir / "metrics.json").read_text(encoding="utf-8"))
    student = dict(_scores(int8), params=student_metrics["num_params"], bytes=artifact.stat().st_size)
    base_metrics = run_baseline(dataset, split)
    base = _scores(base_metrics)
    base.pop("slot_f1")
    ratios = {
        "student_of_teacher_intent": _ratio(student["intent_accuracy"], teacher["intent_accuracy"]),
        "student_of_teacher_slot_f1": _ratio(student["slot_f1"], teacher["slot_f1"]),
        "student_minus_baseline_intent": round(student["intent_accuracy"] - base["intent_accuracy"], 4),
        "student_minus_baseline_macro_f1": round(student["macro_f1"] - base["macro_f1"], 4),
        "teacher_fp32_over_student_int8_bytes": round(teacher["fp32_bytes"] / student["bytes"], 1),
    }
    below = student["macro_f1"] < base["macro_f1"] or student["intent_accuracy"] < base["intent_accuracy"]
    summary = {"split": split, "n": len(examples), "teacher": teacher, "student_int8": student, "baseline": base,
               "ratios": ratios, "below_baseline": below}
    languages = _per_language(teacher_held.get("per_language"), int8.get("per_language"),
                              base_metrics.get("per_language"))
    if languages:
        summary["per_language"] = languages
    return summary


def _per_language(teacher: dict[str, Any] | None, student: dict[str, Any] | None,
                  baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per language, the three models' scores and two summaries a multilingual user asks
    for: the student's intent accuracy over the teacher's, averaged over languages (each
    language counts once, however many texts it has), and the languages whose student
    macro-F1 is not above the baseline's. None for data in one language."""
    if not student or not teacher or not baseline:
        return None
    languages = sorted(set(student) & set(teacher) & set(baseline))
    rows = {lang: {"n": student[lang]["n"], "teacher": teacher[lang], "student_int8": student[lang],
                   "baseline": baseline[lang]} for lang in languages}
    of_teacher = [r for r in (_ratio(student[lang]["accuracy"], teacher[lang]["accuracy"]) for lang in languages)
                  if r is not None]
    margins = {lang: round(student[lang]["macro_f1"] - baseline[lang]["macro_f1"], 4) for lang in languages}
    return {
        "languages": rows,
        "student_of_teacher_intent_mean": round(float(np.mean(of_teacher)), 4) if of_teacher else None,
        "macro_f1_above_baseline": sum(m > 0 for m in margins.values()),
        "macro_f1_margins": margins,
    }


__all__ = ["held_out_summary"]
