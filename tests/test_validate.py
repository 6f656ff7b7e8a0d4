"""validate(): a good artifact against its own run, wrong references, failing runtimes,
the aarch64 rows of the matrix, and the ``validate`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import artifact_fixtures
from edge_pqrnn.artifact import Artifact
from edge_pqrnn.runtimes import aarch64
from edge_pqrnn.cli_artifact import RUNTIME_CHOICES, validate_command
from edge_pqrnn.errors import ArtifactError, ConfigError, EdgePqrnnError
from edge_pqrnn.runtimes import cache_dir
from edge_pqrnn.validate import AARCH64_RUNTIMES, ALL_RUNTIMES, HOSTILE_TEXTS, Thresholds, validate

CI = os.environ.get("CI") == "true"
#: The keys every runtime row of the JSON report has (issue 7), beside the older ones.
ROW_KEYS = {"runtime", "version", "isa", "loaded", "error", "intent_agreement", "slot_agreement",
            "bit_exact_vs_x86", "differing_texts", "seconds", "name", "identical_to_litert", "max_abs_diff"}
LEGACY_VENV_READY = (cache_dir() / "venvs" / "tflite-runtime-2.14" / ".edge-pqrnn-ready").is_file()

CLI = artifact_fixtures.CLI


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
    # Issue 23: the line showed two identical summaries (3 intents, 9 tags, T=16, F=64).
    first, last = labels["intents"][0], labels["intents"][-1]
    assert labels_check.line == ("labels and projection: the artifact does not match the reference run (intents: the "
                                 f"same 3 in another order (#0: {last!r} vs {first!r})): pass the run it was exported "
                                 "from")


def test_reference_with_other_lower_casing_names_the_difference(built, tmp_path):
    other = tmp_path / "cased-run"
    shutil.copytree(built.run_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["projection"]["lowercase"] = not config["projection"]["lowercase"]
    (other / "config.json").write_text(json.dumps(config))
    report = validate(built.path, other, runtimes=("litert",))
    labels_check = next(c for c in report.checks if c.name == "labels")
    assert labels_check.passed is False
    assert labels_check.line == ("labels and projection: the artifact does not match the reference run (projection "
                                 f"lowercase: {not config['projection']['lowercase']!r} vs "
                                 f"{config['projection']['lowercase']!r}): pass the run it was exported from")


def test_validate_names_an_unloadable_artifact_by_its_path(built, tmp_path):
    # Issue 23: the runtime row said "<bytes> does not run in litert".
    import artifact_mutation

    bad = tmp_path / "bad-options.tflite"
    bad.write_bytes(artifact_mutation.bad_runtime_options(built.artifact))
    report = validate(bad, built.run_dir, runtimes=("litert",))
    line = next(c.line for c in report.checks if c.name == "runtime:litert")
    assert line.startswith("runtime litert") and f"not loaded: {bad} does not run in litert" in line
    assert "<bytes>" not in "\n".join(report.lines())


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
@pytest.mark.skipif(not LEGACY_VENV_READY,
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


# ------------------------------------------------------------- the x86 x aarch64 matrix


def test_runtime_names_are_one_list():
    assert RUNTIME_CHOICES == (*ALL_RUNTIMES, "all")
    assert ALL_RUNTIMES[0] == "litert"  # the primary of --runtime all
    assert AARCH64_RUNTIMES == tuple(f"{name}@aarch64" for name in aarch64.aarch64_runtimes())


def test_missing_qemu_is_a_row_with_the_apt_line(built, monkeypatch, tmp_path):
    # A real missing binary: PATH holds only an empty folder, so qemu-aarch64-static is
    # not found (the in-process litert row needs no PATH).
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which(aarch64.QEMU) is None
    report = validate(built.path, built.run_dir, examples=built.dataset.test[:5], runtimes=("litert", "litert@aarch64"))
    row = report.runtimes["litert@aarch64"]
    assert (row.loaded, row.runtime, row.isa, row.seconds) == (False, "litert", "aarch64", None)
    assert "apt-get install -y --no-install-recommends qemu-user-static" in row.error
    assert row.bit_exact_vs_x86 is None and row.differing_texts is None and "neoverse-n1" in row.emulator
    # The x86 row stands and stays the primary; the matrix fails on the row that did not load.
    assert report.primary == "litert" and report.runtimes["litert"].loaded and report.runtimes["litert"].isa == "x86_64"
    assert [c.name for c in report.failures] == ["runtime:litert@aarch64"]
    assert not any(c.name == "isa:litert@aarch64" for c in report.checks)  # no bits to compare
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert all(set(r) >= ROW_KEYS for r in data["runtimes"].values())


def test_validate_command_rows_without_qemu(built, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = CliRunner().invoke(validate_command, [str(built.path), "--reference", str(built.run_dir), "--runtime",
                                                   "litert", "--runtime", "tflite-runtime@aarch64", "--json"],
                                env={"PATH": str(empty)})
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert list(data["runtimes"]) == ["litert", "tflite-runtime@aarch64"]
    row = data["runtimes"]["tflite-runtime@aarch64"]
    assert set(row) >= ROW_KEYS and row["loaded"] is False and row["isa"] == "aarch64"
    assert "apt-get install" in row["error"] and "qemu-user-static" in row["error"]
    assert data["runtimes"]["litert"]["loaded"] is True and data["runtimes"]["litert"]["seconds"] > 0


def test_an_unprepared_matrix_is_a_row_that_says_how_to_prepare_it(built, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_PQRNN_CACHE", str(tmp_path / "empty-cache"))
    report = validate(built.path, built.run_dir, texts=["flights to boston"], runtimes=("litert@aarch64",))
    row = report.runtimes["litert@aarch64"]
    assert not row.loaded and not report.passed and report.primary is None
    # Where qemu is installed: the matrix is not prepared; where it is not: the apt line.
    assert "edge_pqrnn.arm setup" in row.error or "apt-get install" in row.error
    assert f"✗ runtime litert@aarch64 ({row.emulator}): not loaded: {row.error}" in report.lines()


@pytest.fixture(scope="module")
def matrix():
    """The prepared aarch64 matrix: set up with apt-get in CI, skipped elsewhere only
    when it cannot be set up here (the reason holds the apt-get line)."""
    start = time.perf_counter()
    try:
        prepared = aarch64.setup_matrix(install=CI, log=print, runtimes=["litert", "tflite-runtime"])
    except EdgePqrnnError as exc:
        if CI:
            raise
        pytest.skip(f"the aarch64 matrix cannot be set up on this machine: {exc}")
    print(f"aarch64 matrix setup: {time.perf_counter() - start:.1f} s")
    return prepared


@pytest.mark.slow
def test_aarch64_litert_row_through_validate(built, matrix):
    assert "litert" in matrix.sites, matrix.errors
    report = validate(built.path, built.run_dir, runtimes=("litert", "litert@aarch64"))
    print("\n" + report.markdown_table())
    x86, row = report.runtimes["litert"], report.runtimes["litert@aarch64"]
    assert row.loaded, row.error
    assert (row.runtime, row.isa, x86.isa) == ("litert", "aarch64", "x86_64")
    assert row.version == x86.version and "QEMU_CPU=neoverse-n1" in row.emulator
    # The gate, on the aarch64 row as on every row: agreement with the float reference.
    assert report.passed and report.primary == "litert"
    assert row.intent_agreement >= 0.995 and row.slot_agreement >= 0.99
    assert row.finite and row.num_tokens_match == report.num_texts  # hostile texts included
    # Bits against litert on x86 (informational in the report, exact since issue 7: the
    # recurrence runs in our integer EdgePqrnnFoPool op; docs/matrix.md).
    assert row.differing_texts == 0 and row.bit_exact_vs_x86 is True
    assert row.max_abs_diff_vs_x86 == 0 and row.decisions_differing_vs_x86 == 0
    assert row.identical_to_litert is None and x86.bit_exact_vs_x86 is None
    assert row.seconds > 0 and x86.seconds > 0
    isa = next(c for c in report.checks if c.name == "isa:litert@aarch64")
    assert isa.passed is None and isa.line.startswith("litert@aarch64 vs litert x86_64: ")
    assert "litert@aarch64" in next(c.line for c in report.checks if c.name == "hostile_texts")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(data["runtimes"]["litert@aarch64"]) >= ROW_KEYS
    assert len(report.markdown_table().splitlines()) == 4


@pytest.mark.slow
@pytest.mark.skipif(not LEGACY_VENV_READY,
                    reason="no tflite-runtime 2.14 venv (edge_pqrnn.runtimes.legacy_tflite_runtime_python builds it)")
def test_aarch64_row_is_compared_with_its_own_runtime_on_x86(built, matrix):
    # tflite-runtime x86 is not a row here: it runs only as the bits to compare with.
    if "tflite-runtime" not in matrix.sites:
        pytest.skip(f"tflite-runtime is not prepared for aarch64: {matrix.errors.get('tflite-runtime')}")
    report = validate(built.path, built.run_dir, examples=built.dataset.test[:20],
                      runtimes=("litert", "tflite-runtime@aarch64"))
    row = report.runtimes["tflite-runtime@aarch64"]
    assert list(report.runtimes) == ["litert", "tflite-runtime@aarch64"]
    assert row.loaded and row.version == "2.14.0" and report.passed, row.error
    assert row.differing_texts is not None and row.bit_exact_vs_x86 is (row.differing_texts == 0)


@pytest.mark.slow
@pytest.mark.skipif(not LEGACY_VENV_READY,
                    reason="no tflite-runtime 2.14 venv (edge_pqrnn.runtimes.legacy_tflite_runtime_python builds it)")
def test_matrix_table_command_prints_every_row(built, matrix):
    from edge_pqrnn.cli import main

    result = CliRunner().invoke(main, ["matrix", "table", str(built.path), "--reference", str(built.run_dir)])
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(ALL_RUNTIMES)
    isas = [(cells[1].strip(), cells[3].strip()) for cells in (line.split("|") for line in table[2:])]
    assert isas == [("litert", "x86_64"), ("tflite", "x86_64"), ("tflite-runtime", "x86_64"),
                    ("litert", "aarch64"), ("tflite-runtime", "aarch64")]
    assert "· litert@aarch64 vs litert x86_64: " in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not LEGACY_VENV_READY,
                    reason="no tflite-runtime 2.14 venv (edge_pqrnn.runtimes.legacy_tflite_runtime_python builds it)")
def test_portable_artifact_is_bit_exact_on_every_aarch64_row(built, matrix, tmp_path):
    # export --portable-kernels: every int8 FC/CONV_2D runs in our integer C, so
    # tflite-runtime 2.14 on aarch64 gives x86's bits too, not only litert (issue 7).
    from edge_pqrnn.export import export

    if "tflite-runtime" not in matrix.sites:
        pytest.skip(f"tflite-runtime is not prepared for aarch64: {matrix.errors.get('tflite-runtime')}")
    path = export(built.run_dir, tmp_path / "portable.tflite", check=False, portable_kernels=True,
                  calibration_samples=120, log=lambda _: None).path
    report = validate(path, built.run_dir, examples=built.dataset.test[:40], runtimes=ALL_RUNTIMES)
    print("\n" + report.markdown_table())
    assert report.passed, [c.line for c in report.failures]
    for name in AARCH64_RUNTIMES:
        row = report.runtimes[name]
        assert row.loaded and row.differing_texts == 0 and row.bit_exact_vs_x86 is True, (name, row.error)


def test_near_ties_within_the_int8_noise_count_as_agreeing_and_clear_flips_do_not():
    import numpy as np

    from edge_pqrnn.validate import _near_ties

    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, size=(400, 2)).astype(np.float32)
    ref[:, 1] = ref[:, 0] + np.where(np.arange(400) % 2, 2.0, -2.0)  # clear decisions, margin 2
    ref[0] = [0.111, 0.121]  # a near-tie: margin 0.01
    out = ref + rng.normal(0, 0.05, size=ref.shape).astype(np.float32)  # int8-like noise
    out[0] = [0.13, 0.12]  # the near-tie flips
    ties, gated = _near_ties(out, ref)
    assert (ties, gated) == (1, 1.0)
    out[1] = ref[1][::-1]  # a clear flip (margin 2 >> noise) still counts against agreement
    ties, gated = _near_ties(out, ref)
    assert ties == 1 and gated == (399 / 400)
    other_model = rng.normal(0, 3, size=ref.shape).astype(np.float32)  # ~0 dB: every flip counts
    ties, gated = _near_ties(other_model, ref)
    assert ties == 0 and gated == float((other_model.argmax(-1) == ref.argmax(-1)).mean()) < 0.7
