"""Gates: TOML parsing and its error messages, pass/fail lines, exit codes, the repo's gates.toml.

No assertion depends on how fast this machine is: latency gates are only checked with
limits no real call can meet (1 ns) or with the ratio's presence, never a pass on time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_pqrnn.cli import main
from edge_pqrnn.errors import ConfigError
from edge_pqrnn.gates import SCHEMA, gate, load_gates, parse_gates

REPO_GATES = Path(__file__).resolve().parent.parent / "gates.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gates.toml"
    path.write_text(text)
    return path


def test_unknown_key_names_the_key_and_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_gates(write(tmp_path, "[latency]\np50 = 1.0\n"))
    message = str(exc.value)
    assert "latency.p50" in message
    for key in SCHEMA["latency"]:
        assert key in message


def test_unknown_section_names_the_allowed_sections(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[speed\]; allowed sections: size, latency, accuracy"):
        load_gates(write(tmp_path, "[speed]\nmax = 1\n"))


@pytest.mark.parametrize("text, pattern", [
    ("[size]\nmax_bytes = \"big\"\n", r"size.max_bytes must be int, got 'big'"),
    ("[size]\nmax_bytes = 1.5\n", r"size.max_bytes must be int"),
    ("[size]\nmax_bytes = 0\n", r"size.max_bytes must be > 0"),
    ("[accuracy]\nmin_intent_agreement = 99.5\n", r"fraction in \(0, 1\]"),
    ("[latency]\nmax_ratio_vs_reference = 0.5\nreference = \"gpu\"\n", r"one of float, workload, got 'gpu'"),
    ("[size\nmax_bytes = 1\n", r"is not valid TOML"),
])
def test_bad_values_and_bad_toml(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_gates(write(tmp_path, text))


def test_missing_file_says_which_flag(tmp_path):
    with pytest.raises(ConfigError, match="pass --gates PATH"):
        load_gates(tmp_path / "nope.toml")


def test_repo_gates_file_parses_and_declares_every_section():
    gates = load_gates(REPO_GATES)
    assert set(gates.sections) == set(SCHEMA)
    assert gates.sections["latency"]["reference"] == "float"
    assert "accuracy.min_intent_agreement" in gates.needs_reference()


def test_reference_needed_is_refused_before_measuring(built):
    gates = parse_gates({"accuracy": {"min_intent_agreement": 0.9}})
    with pytest.raises(ConfigError, match="need the float run: pass --reference RUN_DIR"):
        gate(built.path, gates)


def test_violated_size_gate_fails_with_measured_and_limit(built):
    report = gate(built.path, parse_gates({"size": {"max_bytes": 1000}}))
    assert not report.passed
    assert report.lines()[0] == f"✗ size.max_bytes: {len(built.artifact):,} bytes > 1,000"
    assert report.lines()[-1] == "1 of 1 gates FAILED"


def test_repo_gates_size_passes_on_a_small_artifact(built):
    report = gate(built.path, load_gates(REPO_GATES), only=["size"])
    assert report.passed, report.lines()
    assert report.lines()[0].startswith("✓ size.max_bytes:")


def test_latency_gate_fails_on_an_impossible_limit_and_reports_the_ratio(built):
    gates = parse_gates({"latency": {"p50_ms": 1e-6, "max_ratio_vs_reference": 1e6, "reference": "workload",
                                     "repeats": 5}})
    report = gate(built.path, gates)
    by_name = {r.name: r for r in report.results}
    assert by_name["latency.p50_ms"].passed is False
    assert by_name["latency.p50_ms"].measured > 1e-6
    assert by_name["latency.max_ratio_vs_reference"].measured > 0
    assert "vs workload" in by_name["latency.max_ratio_vs_reference"].line()


def test_accuracy_gates_against_the_reference_run(built):
    gates = parse_gates({"accuracy": {"min_intent_agreement": 0.9, "min_intent_accuracy": 1.0,
                                      "max_accuracy_drop": 0.5}})
    report = gate(built.path, gates, reference=built.run_dir)
    by_name = {r.name: r for r in report.results}
    assert by_name["accuracy.min_intent_agreement"].passed
    assert by_name["accuracy.max_accuracy_drop"].passed
    # Perfect accuracy is the limit: passes only if measured is exactly 1.0.
    acc = by_name["accuracy.min_intent_accuracy"]
    assert acc.passed == (acc.measured == 1.0)
    assert report.measurements["accuracy"]["num_examples"] == len(built.dataset.test)


def test_cli_exit_codes_lines_and_json(built, tmp_path):
    runner = CliRunner()
    bad = write(tmp_path, "[size]\nmax_byte = 5\n")
    result = runner.invoke(main, ["gate", str(built.path), "--gates", str(bad)])
    assert result.exit_code == 2
    assert "unknown key size.max_byte; allowed keys in [size]: max_bytes" in result.output

    small = tmp_path / "small.toml"
    small.write_text("[size]\nmax_bytes = 1000\n")
    result = runner.invoke(main, ["gate", str(built.path), "--gates", str(small)])
    assert result.exit_code == 1
    assert "✗ size.max_bytes:" in result.output

    result = runner.invoke(main, ["gate", str(built.path), "--gates", str(REPO_GATES), "--only", "size", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] is True and data["gates"][0]["name"] == "size.max_bytes"
