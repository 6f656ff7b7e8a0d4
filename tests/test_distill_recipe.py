"""`edge-pqrnn distill`: one resumable command from a CSV to a distilled int8 artifact
(edge_pqrnn.distill.recipe), with the tiny teacher encoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from artifact_fixtures import examples

from edge_pqrnn.distill.recipe import STAGES

#: A tiny student, teacher and schedule: the whole command runs in well under a minute.
TINY = ["--encoder", "tiny", "--teacher-epochs", "1", "--epochs", "5", "--augment-copies", "1",
        "--bottleneck", "24", "--state", "24", "--layers", "1", "--feature-size", "64", "--max-tokens", "16"]


def write_csv(path: Path, seed: int) -> str:
    """A 3-class text,label CSV with a split column (160 / 30 / 40 rows); its --data spec."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "split"])
        for split, count, offset in (("train", 160, 0), ("dev", 30, 1), ("test", 40, 2)):
            for ex in examples(count, seed + offset):
                writer.writerow([ex.text, ex.intent, split])
    return f"csv:{path}?label=label"


def outputs(out: Path) -> dict[str, int]:
    """The mtime of each stage's output and marker."""
    paths = [out / "teacher" / "metrics.json", out / "student" / "metrics.json", out / "model.int8.tflite",
             out / "summary.json", *(out / "stages" / f"{stage}.json" for stage in STAGES)]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in paths}


def test_distill_runs_end_to_end_resumes_and_refuses_other_data(tmp_path):
    pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
    pytest.importorskip("pyarrow", reason='teacher extra not installed: pip install -e ".[teacher]"')
    from click.testing import CliRunner

    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.cli import main

    data, out = write_csv(tmp_path / "reviews.csv", seed=0), tmp_path / "out"
    args = ["distill", "--data", data, "--out", str(out), *TINY]
    runner = CliRunner()
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    for number, stage in enumerate(STAGES, 1):
        assert f"[{number}/5] {stage}: finished in " in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == data and summary["split"] == "test" and summary["n"] == 40
    assert set(summary["stage_seconds"]) == {"teacher", "labels", "student", "export"}
    assert summary["student_int8"]["bytes"] == (out / "model.int8.tflite").stat().st_size
    assert summary["ratios"]["teacher_fp32_over_student_int8_bytes"] == round(
        summary["teacher"]["fp32_bytes"] / summary["student_int8"]["bytes"], 1)
    assert summary["baseline"]["intent_accuracy"] > 0.5  # the TF-IDF baseline learns the templates
    assert "student (int8)" in result.output and "TF-IDF baseline" in result.output
    with Artifact.load(out / "model.int8.tflite") as artifact:
        assert artifact.labels.intents == ("airfare", "flight", "ground_service")
    settings = json.loads((out / "distill.json").read_text())
    assert settings["settings"]["epochs"] == 5 and settings["settings"]["kd_slot_weight"] == 0.2

    # a rerun skips every stage and touches nothing; a killed stage's leftover is removed, never used
    (out / ".student.abc.partial").mkdir()
    before = outputs(out)
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    for stage in STAGES:
        assert f"{stage}: done (" in result.output and "), skipping" in result.output
    assert "finished in" not in result.output and outputs(out) == before
    assert not (out / ".student.abc.partial").exists()
    assert "student (int8)" in result.output  # the table again, from summary.json

    # without the student's marker, the student and everything after it run again, nothing before
    (out / "stages" / "student.json").unlink()
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "teacher: done (" in result.output and "labels: done (" in result.output
    for stage in ("student", "export", "summary"):
        assert f"{stage}: finished in " in result.output
    after = outputs(out)
    for name in ("teacher/metrics.json", "stages/teacher.json", "stages/labels.json"):
        assert after[name] == before[name]
    for name in ("student/metrics.json", "model.int8.tflite", "summary.json", "stages/export.json"):
        assert after[name] > before[name]

    # other data in the same --out is refused with the fix, and nothing changes
    other = write_csv(tmp_path / "other.csv", seed=7)
    result = runner.invoke(main, ["distill", "--data", other, "--out", str(out), *TINY])
    assert result.exit_code == 2
    assert (f"holds a distillation made with other settings (data {data} here, {other} now); pass --overwrite "
            "to redo it there with these, or choose another --out") in result.output
    assert outputs(out) == after

    # other student settings: refused too; with --overwrite only the student and later stages run again
    longer = [*args[:-len(TINY)], *TINY[:5], "6", *TINY[6:]]
    result = runner.invoke(main, longer)
    assert result.exit_code == 2 and "epochs 5 here, 6 now" in result.output
    result = runner.invoke(main, [*longer, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "--overwrite: epochs 5 here, 6 now: the stages from student on run again" in result.output
    assert "teacher: done (" in result.output and "labels: done (" in result.output
    assert "student: finished in " in result.output
    assert json.loads((out / "distill.json").read_text())["settings"]["epochs"] == 6
    assert outputs(out)["teacher/metrics.json"] == before["teacher/metrics.json"]


def test_distill_refuses_a_foreign_directory(tmp_path):
    pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["distill", "--data", "fixture:atis", "--out", str(tmp_path / "out"), *TINY])
    assert result.exit_code == 2
    assert "is not empty and holds no distill.json: not a distillation output; choose another --out" in result.output
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
