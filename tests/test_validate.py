"""validate(): a good artifact against its own run, wrong references, failing runtimes,
and the ``validate`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import artifact_fixtures
from edge_pqrnn.artifact import Artifact
from edge_pqrnn.cli_artifact import validate_command
from edge_pqrnn.errors import ArtifactError, ConfigError
from edge_pqrnn.runtimes import cache_dir
from edge_pqrnn.validate import HOSTILE_TEXTS, Thresholds, validate

CLI = ("import sys, click\nfrom edge_pqrnn.cli_artifact import COMMANDS\n"
       "click.Group('edge-pqrnn', commands={c.name: c for c in COMMANDS})(sys.argv[1:])\n")


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return artifact_fixtures.build(tmp_path_factory)


@pytest.fixture(scope="module")
def own(built):
    """The artifact validated against the run it was exported from (its test split)."""
    return validate(built.path, built.run_dir)


def test_artifact_against_its_own_run_passes_with_numbers(own, built):
    assert own.passed and not own.failures
    n_test = len(built.dataset.test)
    assert (own.num_examples, own.num_texts) == (n_test, n_test + len(HOSTILE_TEXTS))
    assert own.intent_agreement == 1.0 and own.slot_agreement >= 0.99
    assert 0 < own.max_abs_diff < 5 and own.snr_db > 20  # int8 noise, not another model
    assert own.accuracy["int8"]["intent_accuracy"] == own.accuracy["float"]["intent_accuracy"] == 1.0
    assert own.bytes == len(built.artifact) and own.primary == "litert"
    assert set(own.runtimes) == {"litert", "tflite"}
    litert, tflite = own.runtimes["litert"], own.runtimes["tflite"]
    assert litert.loaded and tflite.loaded and litert.version and tflite.version
    assert litert.num_tokens_match == tflite.num_tokens_match == own.num_texts
    assert litert.identical_to_litert is None and tflite.identical_to_litert is True


def test_report_lines_and_json(own):
    lines = own.lines()
    assert len(lines) == len(own.checks) and all(line[:2] in ("✓ ", "· ") for line in lines)
    assert lines[1] == f"✓ intent agreement (litert vs float): 1.0000 (0 of {own.num_texts} texts differ) >= 0.995"
    assert any(line.startswith("✓ runtime tflite ") and line.endswith("bit-identical to litert") for line in lines)
    assert any(line.startswith("✓ hostile texts: 12 texts") for line in lines)
    data = json.loads(json.dumps(own.to_dict(), allow_nan=False))
    assert data["passed"] is True and data["thresholds"] == {"intent_agreement": 0.995, "slot_agreement": 0.99,
                                                             "max_accuracy_drop": 0.005}
    assert set(data) >= {"intent_agreement", "slot_agreement", "max_abs_diff", "bytes", "runtimes", "accuracy"}
    assert set(data["runtimes"]["tflite"]) >= {"loaded", "version", "intent_agreement", "slot_agreement",
                                               "identical_to_litert", "error"}


def test_weights_of_another_run_fail_agreement(built):
    report = validate(built.path, built.other_run_dir, runtimes=("litert",))
    assert not report.passed
    failed = {c.name for c in report.failures}
    assert {"intent_agreement", "slot_agreement", "runtime:litert"} <= failed
    assert "labels" not in failed  # same task, same labels: only the numbers tell
    assert report.snr_db < 10
    assert any(line.startswith("✗ slot agreement (litert vs float, per token row): ") for line in report.lines())


def test_reference_with_other_labels_fails_the_labels_check(built, tmp_path):
    swapped = tmp_path / "swapped-run"
    shutil.copytree(built.run_dir, swapped)
    labels = json.loads((swapped / "labels.json").read_text())
    labels["intents"] = labels["intents"][::-1]
    (swapped / "labels.json").write_text(json.dumps(labels))
    report = validate(built.path, swapped, runtimes=("litert",))
    labels_check = next(c for c in report.checks if c.name == "labels")
    assert labels_check.passed is False
    assert labels_check.line.endswith("does not match the reference run (3 intents, 9 tags, T=16, F=64): pass the "
                                      "run it was exported from")


def test_texts_only_measure_agreement_not_accuracy(built):
    report = validate(built.path, built.run_dir, texts=["flights to boston", b"\xff"], runtimes=("tflite",))
    assert report.passed and report.accuracy is None and report.num_examples == 0
    assert report.num_texts == 2 + len(HOSTILE_TEXTS) and report.primary == "tflite"
    assert "· accuracy: not measured (no labelled examples)" in report.lines()


def test_thresholds_decide(built):
    report = validate(built.path, built.run_dir, examples=built.dataset.test[:10], runtimes=("litert",),
                      thresholds=Thresholds(intent_agreement=1.0, slot_agreement=1.01))
    assert [c.name for c in report.failures] == ["slot_agreement", "runtime:litert"]


def test_a_runtime_that_cannot_load_is_a_failed_row_not_an_exception(built, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_PQRNN_OP_LIBRARY", str(tmp_path / "missing.so"))
    report = validate(built.path, built.run_dir, examples=built.dataset.test[:5])
    assert not report.passed and report.primary is None and report.intent_agreement is None
    for name in ("litert", "tflite"):
        row = report.runtimes[name]
        assert row.loaded is False and "EDGE_PQRNN_OP_LIBRARY points to" in row.error
    assert f"✗ runtime litert: not loaded: {report.runtimes['litert'].error}" in report.lines()


def test_broken_inputs_raise_with_the_fix(built, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist; train one with"):
        validate(built.path, tmp_path / "no-run")
    with pytest.raises(ArtifactError, match="is not a TFLite model"):
        validate(b"garbage!", built.run_dir)
    with pytest.raises(ConfigError, match=r"unknown runtimes \['onnx'\]; choose from litert, tflite"):
        validate(built.path, built.run_dir, runtimes=("onnx",))


def test_an_open_artifact_can_be_validated(built):
    with Artifact.load(built.path) as model:
        report = validate(model, built.run_dir, texts=["flights to denver"], runtimes=("litert",))
    assert report.passed and report.artifact == str(built.path)


@pytest.mark.slow
@pytest.mark.skipif(not (cache_dir() / "venvs" / "tflite-runtime-2.14" / ".edge-pqrnn-ready").is_file(),
                    reason="no tflite-runtime 2.14 venv (edge_pqrnn.runtimes.legacy_tflite_runtime_python builds it)")
def test_legacy_tflite_runtime_row(built):
    report = validate(built.path, built.run_dir, runtimes=("litert",), legacy=True)
    row = report.runtimes["tflite-runtime"]
    assert report.passed and row.loaded and row.version == "2.14.0"
    assert row.intent_agreement == 1.0 and row.num_tokens_match == report.num_texts
    assert row.identical_to_litert in (True, False)  # measured, not required
    assert np.isfinite(row.max_abs_diff)


def test_validate_command_exit_codes_and_lines(built):
    runner = CliRunner()
    good = runner.invoke(validate_command, [str(built.path), "--reference", str(built.run_dir), "--runtime", "litert"])
    assert good.exit_code == 0, good.output
    assert good.output.splitlines()[-1] == "passed"
    assert "✓ runtime litert" in good.output and "runtime tflite" not in good.output
    bad = runner.invoke(validate_command, [str(built.path), "--reference", str(built.other_run_dir), "--json"])
    assert bad.exit_code == 1
    data = json.loads(bad.output)
    assert data["passed"] is False and set(data["runtimes"]) == {"litert", "tflite"}


def test_validate_command_errors_are_one_line(built, tmp_path):
    proc = subprocess.run([sys.executable, "-c", CLI, "validate", str(built.path), "--reference",
                           str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"error: run directory {tmp_path / 'nowhere'} does not exist; "
                                                    "train one with edge_pqrnn.train.train()")


def test_export_gates_on_this_validation(built, tmp_path):
    from edge_pqrnn.export import export

    lines: list[str] = []
    result = export(built.run_dir, tmp_path / "gated.tflite", runtimes=("litert",), calibration_samples=100,
                    log=lines.append)
    assert result.validation.passed and result.path.is_file()
    assert result.validation.lines()[0] in lines and any(line.startswith("✓ intent agreement") for line in lines)
