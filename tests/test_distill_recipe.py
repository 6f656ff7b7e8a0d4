"""`edge-pqrnn distill`: one resumable command from a CSV to a distilled int8 artifact
(edge_pqrnn.distill.recipe), with the tiny teacher encoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from artifact_fixtures import examples

from edge_pqrnn.distill.recipe import STAGES
from edge_pqrnn.errors import ConfigError

#: A tiny student, teacher and schedule: the whole command runs in well under a minute. The
#: teacher's budget (6 ms) cuts it in its first epoch.
TINY = ["--encoder", "tiny", "--teacher-epochs", "2", "--teacher-minutes", "0.0001", "--epochs", "5",
        "--augment-copies", "1",
        "--bottleneck", "24", "--state", "24", "--layers", "1", "--feature-size", "64", "--max-tokens", "16"]


def write_csv(path: Path, seed: int) -> str:
    """A 3-class text,label CSV with a split column (160 / 30 / 600 rows: the int8 check allows 0.5% of its texts to flip, here 2); its --data spec."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "split"])
        for split, count, offset in (("train", 160, 0), ("dev", 30, 1), ("test", 600, 2)):
            for ex in examples(count, seed + offset):
                writer.writerow([ex.text, ex.intent, split])
    return f"csv:{path}?label=label"


def outputs(out: Path) -> dict[str, int]:
    """The mtime of each stage's output and marker."""
    paths = [out / "teacher" / "metrics.json", out / "student" / "metrics.json", out / "model.int8.tflite",
             out / "summary.json", *(out / "stages" / f"{stage}.json" for stage in STAGES)]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in paths}


@pytest.mark.slow
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
    assert summary["data"] == data and summary["split"] == "test" and summary["n"] == 600
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

    # other student settings: refused too (what --overwrite then redoes: the test below)
    longer = list(args)
    longer[longer.index("--epochs") + 1] = "6"
    result = runner.invoke(main, longer)
    assert result.exit_code == 2 and "(epochs 5 here, 6 now); pass --overwrite" in result.output

    # a teacher cut by its budget is done, and --continue-teacher trains it on from its weights
    assert json.loads((out / "stages" / "teacher.json").read_text())["cut_by_budget"] is True
    result = runner.invoke(main, [*args, "--continue-teacher"])
    assert result.exit_code == 0, result.output
    assert "[1/5] teacher: continuing the teacher from its weights" in result.output
    assert "continued from " in json.loads((out / "teacher" / "metrics.json").read_text())["source"]
    assert json.loads((out / "stages" / "teacher.json").read_text())["continued"] is True
    for stage in STAGES[1:]:
        assert f"{stage}: finished in " in result.output


def test_overwrite_redoes_the_first_stage_the_changed_settings_feed(tmp_path):
    from edge_pqrnn.distill.recipe import SETTINGS_FILE, _Out

    def record(data: str = "csv:a.csv", digest: str = "d1", **settings) -> dict:
        return {"data": data, "data_sha256": digest, "settings": {"epochs": 10, "seed": 0, **settings}}

    def prepare() -> _Out:
        out = _Out(tmp_path / "out")
        for stage in STAGES:
            out.marker(stage).parent.mkdir(parents=True, exist_ok=True)
            out.marker(stage).write_text("{}")
        (out.path / "teacher").mkdir(exist_ok=True)
        (out.path / SETTINGS_FILE).write_text(json.dumps(record()))
        return out

    lines: list[str] = []
    out = prepare()
    out.check_settings(record(), overwrite=False, log=lines.append)  # the same: nothing to do
    assert all(out.marker(stage).is_file() for stage in STAGES) and not lines
    out.check_settings(record(epochs=12), overwrite=True, log=lines.append)
    assert [out.marker(s).is_file() for s in STAGES] == [True, True, False, False, False]
    assert lines == ["--overwrite: epochs 10 here, 12 now: the stages from student on run again"]
    assert json.loads((out.path / SETTINGS_FILE).read_text())["settings"]["epochs"] == 12
    out = prepare()
    out.check_settings(record(seed=1), overwrite=True, log=lines.append)  # the teacher's seed: everything
    assert not any(out.marker(s).exists() for s in STAGES) and not (out.path / "teacher").exists()
    out = prepare()
    with pytest.raises(ConfigError, match=r"\(the data of csv:a.csv changed since\); pass --overwrite"):
        out.check_settings(record(digest="d2"), overwrite=False, log=lines.append)


def test_distill_help_has_an_example():
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    result = CliRunner().invoke(main, ["distill", "--help"])
    assert result.exit_code == 0
    assert "edge-pqrnn distill --data csv:reviews.csv --out runs/reviews" in result.output
    assert "distill" in CliRunner().invoke(main, ["--help"]).output


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


def test_the_student_takes_the_datas_dropout_and_early_stop_unless_given():
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.distill.recipe import RecipeConfig, _with_plan
    from edge_pqrnn.regularise import plan_regularisation

    dataset = load_dataset("fixture:atis")  # 53 texts: reads as open vocabulary
    plan = plan_regularisation(dataset).settings
    lines = []
    planned = _with_plan(RecipeConfig(encoder="tiny"), dataset, lines.append)
    assert planned.student["dropout"] == plan["dropout"] and planned.train_options()["smooth"] == plan["smooth"]
    assert planned.train_options()["patience"] == plan["patience"] and "epochs" not in planned.student_train
    assert lines and lines[0].startswith("student regularisation: ")
    given = _with_plan(RecipeConfig(encoder="tiny", student={"dropout": 0.05}), dataset, lines.append)
    assert given.student["dropout"] == 0.05


def test_multilingual_summary_gives_per_language_ratio_and_languages_below_the_baseline():
    from edge_pqrnn.distill.compare import _per_language

    def lang(n, accuracy, macro_f1):
        return {"n": n, "accuracy": accuracy, "macro_f1": macro_f1}

    teacher = {"de": lang(10, 1.0, 1.0), "th": lang(30, 0.8, 0.8)}
    student = {"de": lang(10, 0.9, 0.9), "th": lang(30, 0.8, 0.7)}
    baseline = {"de": lang(10, 0.8, 0.8), "th": lang(30, 0.9, 0.7)}
    out = _per_language(teacher, student, baseline)
    assert out["student_of_teacher_intent_mean"] == 0.95  # (0.9 + 1.0) / 2: each language once
    assert out["macro_f1_margins"] == {"de": 0.1, "th": 0.0}
    assert out["macro_f1_above_baseline"] == 1  # a tie is not above
    assert out["languages"]["th"]["baseline"] == baseline["th"]
    assert _per_language(None, student, baseline) is None
