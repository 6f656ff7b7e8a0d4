"""Knowledge distillation: the KD loss in train() follows the teacher by kd_weight,
unlabelled extra texts, and the distill_train / `train --teacher` pipeline with a tiny
teacher."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_train import TINY_MODEL, TINY_TRAIN, tiny_dataset

from edge_pqrnn.data.records import Example
from edge_pqrnn.errors import ArtifactError, ConfigError, DataError
from edge_pqrnn.evaluate import evaluate
from edge_pqrnn.projection.reference import token_rows
from edge_pqrnn.losses import Distillation
from edge_pqrnn.run import load_run
from edge_pqrnn.train import TrainConfig, train


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


def fake_teacher(dataset, extra, intent: int, scale: float = 10.0) -> Distillation:
    """A 'teacher' that always says intent ``intent`` and tag "O" everywhere."""
    texts = [ex.text for ex in [*dataset.train, *extra]]
    n_tags = 1 + 2 * len(dataset.slot_types)
    logits = np.zeros((len(texts), len(dataset.intents)), np.float32)
    logits[:, intent] = scale
    counts = [len(token_rows(t, TINY_MODEL.projection)) for t in texts]
    rows = np.zeros((sum(counts), n_tags), np.float32)
    rows[:, 0] = scale
    return Distillation(extra, logits, rows, np.concatenate([[0], np.cumsum(counts)]))


def test_kd_weight_one_follows_the_teacher_zero_follows_gold(dataset, tmp_path):
    ground = dataset.intents.index("ground_service")
    teacher = fake_teacher(dataset, [], ground)
    follow = train(dataset, TINY_MODEL, dataclasses.replace(TINY_TRAIN, kd_weight=1.0), tmp_path / "kd1",
                   progress=False, distillation=teacher)
    predicted = load_run(follow.run_dir).predict([ex.text for ex in dataset.test]).intent.argmax(-1)
    assert (predicted == ground).mean() >= 0.9  # the teacher's (wrong) answer, not gold
    assert follow.metrics["test"]["slot_f1"] <= 0.1  # teacher said "O" everywhere
    gold = train(dataset, TINY_MODEL, dataclasses.replace(TINY_TRAIN, kd_weight=0.0), tmp_path / "kd0",
                 progress=False, distillation=teacher)
    assert gold.metrics["test"]["intent_accuracy"] >= 0.8 and gold.metrics["test"]["slot_f1"] >= 0.6
    assert gold.metrics["distillation"] == {"gold_texts": len(dataset.train), "extra_texts": 0,
                                            "kd_weight": 0.0, "kd_temperature": 2.0}
    # per head: intents from the teacher, slots from gold
    split = train(dataset, TINY_MODEL, dataclasses.replace(TINY_TRAIN, kd_weight=1.0, kd_slot_weight=0.0),
                  tmp_path / "split", progress=False, distillation=teacher)
    predicted = load_run(split.run_dir).predict([ex.text for ex in dataset.test]).intent.argmax(-1)
    assert (predicted == ground).mean() >= 0.9 and split.metrics["test"]["slot_f1"] >= 0.6
    assert split.metrics["distillation"]["kd_slot_weight"] == 0.0


def test_extra_texts_need_no_gold_labels(dataset, tmp_path):
    # extra texts with an intent the dataset does not know (e.g. other-locale sentences)
    extra = [Example("rental cars at boston please", "not_an_intent", ((15, 21, "unknown_slot"),))] * 40
    teacher = fake_teacher(dataset, extra, dataset.intents.index("flight"))
    result = train(dataset, TINY_MODEL, dataclasses.replace(TINY_TRAIN, epochs=1), tmp_path / "extra",
                   progress=False, distillation=teacher)
    assert result.metrics["distillation"]["extra_texts"] == 40


def test_mismatched_teacher_logits_are_refused(dataset, tmp_path):
    teacher = fake_teacher(dataset, [], 0)
    short = Distillation([], teacher.intent[:-1], teacher.slot_rows, teacher.offsets[:-1])
    with pytest.raises(DataError, match="label train \\+ extra with the same teacher"):
        train(dataset, TINY_MODEL, TINY_TRAIN, tmp_path / "bad", progress=False, distillation=short)
    assert not (tmp_path / "bad").exists()


def test_kd_options_are_checked():
    with pytest.raises(ConfigError, match="kd_weight must be in \\[0, 1\\]"):
        TrainConfig(kd_weight=1.5)
    with pytest.raises(ConfigError, match="kd_temperature must be positive"):
        TrainConfig(kd_temperature=0.0)
    with pytest.raises(ConfigError, match="kd_slot_weight must be in \\[0, 1\\] or None"):
        TrainConfig(kd_slot_weight=-0.1)


def test_train_without_teacher_is_unchanged(dataset, tmp_path):
    # same seed, no distillation: the KD fields do not change the plain loss path
    a = train(dataset, TINY_MODEL, dataclasses.replace(TINY_TRAIN, epochs=2), tmp_path / "a", progress=False)
    b = train(dataset, TINY_MODEL, dataclasses.replace(TINY_TRAIN, epochs=2, kd_weight=0.9, kd_temperature=5.0),
              tmp_path / "b", progress=False)
    assert a.history[-1]["loss"] == pytest.approx(b.history[-1]["loss"], rel=1e-5)
    assert "distillation" not in a.metrics


def test_train_cli_adds_gold_labelled_variants_without_a_teacher(tmp_path):
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    args = ["train", "--data", "fixture:atis", "--epochs", "1", "--bottleneck", "16", "--state", "16", "--layers", "1",
            "--feature-size", "64", "--max-tokens", "32"]
    # The 53-text fixture reads as open-vocabulary data (regularise adds word-drop/mask
    # variants); without the data's plan the default is no variants.
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "plain"), "--no-auto-regularise"])
    assert result.exit_code == 0, result.output
    assert "augment" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())  # default: none
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "aug"), "--augment-copies", "2",
                                       "--augment-ops", "reorder=2,drop"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "aug" / "metrics.json").read_text())["augment"]
    assert info["gold_texts"] == 53 and 53 < info["variants"] <= 106
    assert info["config"]["weights"] == {"reorder": 2.0, "drop": 1.0} and info["config"]["copies"] == 2
    assert f"({53 + info['variants']} train" in result.output  # the parameter line counts them
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "bad"), "--augment-ops", "shuffle"])
    assert result.exit_code == 2 and "unknown augmentation ['shuffle']; choose from" in result.output
    assert not (tmp_path / "bad").exists()


def test_distill_pipeline_and_cli_with_a_tiny_teacher(tmp_path):
    pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
    pytest.importorskip("pyarrow", reason='teacher extra not installed: pip install -e ".[teacher]"')
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    runner = CliRunner()
    teacher = tmp_path / "teacher"
    result = runner.invoke(main, ["teacher", "finetune", "--data", "fixture:atis", "--out", str(teacher),
                                  "--encoder", "tiny", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    args = ["train", "--data", "fixture:atis", "--teacher", str(teacher), "--epochs", "1", "--bottleneck", "16",
            "--state", "16", "--layers", "1", "--feature-size", "64", "--max-tokens", "32",
            "--augment-copies", "1", "--kd-weight", "0.7", "--dropout", "0.25"]
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "kd")])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "kd" / "distill.json").read_text())
    assert info["train_texts"] == 53 and 0 < info["augmented_texts"] <= 53
    assert info["labelled_now"] == info["train_texts"] + info["augmented_texts"] - 1  # one duplicate text
    metrics = json.loads((tmp_path / "kd" / "metrics.json").read_text())
    assert metrics["train_config"]["kd_weight"] == 0.7
    assert json.loads((tmp_path / "kd" / "config.json").read_text())["dropout"] == 0.25
    assert metrics["distillation"]["extra_texts"] == info["augmented_texts"]
    # a second student reuses every cached teacher label
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "kd2")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "kd2" / "distill.json").read_text())["labelled_now"] == 0
    # a teacher fine-tuned on other labels is refused with the fix
    result = runner.invoke(main, ["train", "--data", "fixture:snips", "--teacher", str(teacher), "--out",
                                  str(tmp_path / "snips")])
    assert result.exit_code == 2 and "teacher finetune --data fixture:snips" in result.output
    assert evaluate(load_run(tmp_path / "kd"), [Example("flights to boston", "atis_flight")])["num_examples"] == 1


def fake_entry(name: str = "atis") -> dict:
    student = {"int8": {"intent_accuracy": 0.95, "slot_f1": 0.93, "exact_match": 0.8, "n_test": 893},
               "float": {"intent_accuracy": 0.95, "slot_f1": 0.93, "exact_match": 0.8, "n_test": 893},
               "int8_bytes": 1_257_472, "params": 1_003_828, "epochs_run": 10, "best_epoch": 9,
               "train_seconds": 600.0, "export_seconds": 20.0, "train_config": {"kd_weight": 0.5,
                                                                                   "kd_temperature": 2.0}}
    return {"dataset": name,
            "teacher": {"intent_accuracy": 0.97, "slot_f1": 0.94, "exact_match": 0.85, "n_test": 893,
                        "params": 117_575_603, "fp32_bytes": 470_302_412, "finetune_seconds": 1800.0,
                        "epochs_run": 2, "best_epoch": 2},
            "student_hard": student, "student_kd": dict(student, distillation={"train_texts": 4477}),
            "teacher_bytes": 470_302_412, "student_int8_bytes": 1_257_472,
            "ratios": {"kd_intent_of_teacher": 0.9794, "kd_slot_f1_of_teacher": 0.9894,
                       "hard_intent_of_teacher": 0.9794, "hard_slot_f1_of_teacher": 0.9894,
                       "teacher_fp32_over_student_int8_bytes": 374.0}}


def test_write_results_keeps_other_content_and_replaces_its_section(tmp_path):
    from edge_pqrnn.distill.results import SECTION_BEGIN, write_results

    (tmp_path / "results.json").write_text(json.dumps({"atis": {"float": {"intent_accuracy": 0.96}},
                                                       "snips": {"x": 1}}, indent=1) + "\n")
    (tmp_path / "results.md").write_text("# Results\n\nstudent table here\n")
    write_results(fake_entry(), tmp_path, notes="machine load 8")
    write_results(fake_entry(), tmp_path)  # idempotent: one section, replaced
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["atis"]["float"] == {"intent_accuracy": 0.96} and data["snips"] == {"x": 1}
    assert data["atis"]["distillation"]["ratios"]["teacher_fp32_over_student_int8_bytes"] == 374.0
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("# Results\n\nstudent table here\n") and md.count(SECTION_BEGIN) == 1
    assert "dequantised 4-bit weights" in md and "**374x**" in md
    assert "| student_kd (teacher + gold), int8 | 0.9500 | 0.9300 |" in md


def test_seed_runs_are_summarised_and_must_share_their_settings(tmp_path):
    from edge_pqrnn.distill.results import _check_seed_runs, _seed_summary, write_results

    def run(seed: int, accuracy: float, kd_weight: float = 0.5) -> dict:
        return dict(fake_entry()["student_hard"], run=f"runs/s{seed}", int8={"intent_accuracy": accuracy, "slot_f1": None},
                    train_config={"kd_weight": kd_weight, "seed": seed})

    summary = _seed_summary([run(0, 0.97), run(1, 0.98), run(2, 0.99)])
    assert summary["seeds"] == [0, 1, 2] and summary["intent_accuracy_mean"] == 0.98
    assert summary["slot_f1_mean"] is None
    _check_seed_runs([(r["run"], r["train_config"]) for r in (run(0, 0.97), run(1, 0.98), run(2, 0.99))])
    with pytest.raises(ArtifactError, match="runs/s1 was not trained like runs/s0"):
        _check_seed_runs([(r["run"], r["train_config"]) for r in (run(0, 0.97), run(1, 0.98, kd_weight=0.8))])
    entry = fake_entry("snips")
    entry["seeds"] = {"student_hard": summary, "student_kd": _seed_summary([run(0, 0.99), run(1, 0.99)])}
    write_results(entry, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert ("student_hard intent mean **0.9800** (seeds [0, 1, 2]: 0.9700, 0.9800, 0.9900); "
            "student_kd intent mean **0.9900** (seeds [0, 1]: 0.9900, 0.9900).") in md


def test_multilingual_entry_has_per_language_ratios_and_table(tmp_path):
    from edge_pqrnn.distill.results import _per_language_ratios, write_results

    teacher = {"per_language": {"de": {"n": 10, "accuracy": 0.9, "macro_f1": 0.8, "slot_f1": 0.8},
                                "th": {"n": 20, "accuracy": 1.0, "macro_f1": 1.0, "slot_f1": 0.5}}}
    kd = {"per_language": {"de": {"n": 10, "accuracy": 0.9, "macro_f1": 0.8, "slot_f1": 0.4},
                           "th": {"n": 20, "accuracy": 0.8, "macro_f1": 0.7, "slot_f1": 0.5}}}
    ratios = _per_language_ratios(teacher, kd)
    assert ratios == {"de": {"intent": 1.0, "slot_f1": 0.5}, "th": {"intent": 0.8, "slot_f1": 1.0}}
    entry = fake_entry("multilingual")
    entry["teacher"].update(teacher)
    entry["student_kd"] = dict(entry["student_kd"], int8=dict(entry["student_kd"]["int8"], **kd))
    entry["ratios"].update(kd_per_language_of_teacher=ratios, kd_intent_of_teacher_language_mean=0.9,
                           kd_slot_f1_of_teacher_language_mean=0.75)
    write_results(entry, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "mean of student_kd / teacher over 2 languages: intent **0.9000**, slot F1 0.7500" in md
    assert "| th | 20 | 1.0000 | — | 0.8000 | 0.8000 | 0.5000 | 0.5000 | 1.0000 |" in md


def test_ablation_sweep_resumes_and_writes_table_json_and_plot(tmp_path):
    pytest.importorskip("torch", reason='teacher extra not installed: pip install -e ".[teacher]"')
    pytest.importorskip("matplotlib", reason='report extra not installed: pip install -e ".[report]"')
    from click.testing import CliRunner

    from edge_pqrnn.distill.ablation import SECTION_BEGIN, Point, ablate, sweep_points
    from edge_pqrnn.cli import main

    with pytest.raises(ConfigError, match="unknown ablation axis depth; choose from augmentation"):
        sweep_points(Point(), ["depth"])
    points = sweep_points(Point(), ["temperature", "student_size"])
    assert [p.kd_temperature for p in points["temperature"]] == [1.0, 2.0, 4.0]
    assert Point() in points["student_size"]  # the centre is a point of every axis

    runner = CliRunner()
    teacher = tmp_path / "teacher"
    result = runner.invoke(main, ["teacher", "finetune", "--data", "fixture:atis", "--out", str(teacher),
                                  "--encoder", "tiny", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Results\n\nkept\n")
    args = ["teacher", "ablate", "--data", "fixture:atis", "--teacher", str(teacher), "--runs",
            str(tmp_path / "runs"), "--axis", "kd_weight", "--epochs", "1", "--docs", str(docs)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "kd_weight: " in result.output and result.output.count("training (1 epochs)") == 3
    entry = json.loads((docs / "results.json").read_text())["fixture:atis"]["ablations"]
    assert [r["kd_weight"] for r in entry["axes"]["kd_weight"]] == [0.2, 0.5, 0.8]
    assert all(0.0 <= r["intent_accuracy"] <= 1.0 for r in entry["axes"]["kd_weight"])
    assert (docs / entry["plot"]).stat().st_size > 1000
    md = (docs / "results.md").read_text()
    assert md.startswith("# Results\n\nkept\n") and md.count(SECTION_BEGIN) == 1 and "| kd_weight | 0.8 |" in md
    # finished runs are reused: a second sweep trains nothing
    again = ablate("fixture:atis", teacher, tmp_path / "runs", axes=["kd_weight"], epochs=1, log=lambda _: None)
    assert again["axes"] == entry["axes"]
