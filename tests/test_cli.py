"""The command line, run as a user runs it."""

import json
import subprocess
import sys

from click.testing import CliRunner

from edge_pqrnn.cli import main


def test_project_json_is_valid_and_bit_exact():
    result = CliRunner().invoke(main, ["project", "book a flight to Zürich 明天 🙂", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [t["text"] for t in data["tokens"]] == ["book", "a", "flight", "to", "Zürich", "明", "天", "🙂", "<EOS>"]
    assert data["native_bit_exact"] is True
    assert len(data["tokens"][0]["features"]) == 512


def test_project_table_and_bad_option_message():
    runner = CliRunner()
    table = runner.invoke(main, ["project", "hello world", "--feature-size", "4"])
    assert table.exit_code == 0 and "bit-exact" in table.output
    bad = runner.invoke(main, ["project", "x", "--max-tokens", "1"])
    assert bad.exit_code == 2
    assert "max_tokens must be an integer from 2 to 4096" in bad.output
    assert "Traceback" not in bad.output


def test_console_script_help_reads_well():
    out = subprocess.run([sys.executable, "-m", "edge_pqrnn.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "project" in out.stdout and "raw UTF-8" in out.stdout


def test_eval_shows_the_run_beside_the_baseline(tiny_run):
    runner = CliRunner()
    data = json.loads(runner.invoke(main, ["eval", str(tiny_run), "--json"]).output)
    assert {"intent_accuracy", "macro_f1", "slot_f1", "exact_match", "num_examples"} <= data.keys()
    assert data["baseline"]["split"] == "test" and data["baseline"]["n_test"] == data["num_examples"]
    assert data["baseline"]["features"]["analyzer"] == "word"  # English-only data
    table = runner.invoke(main, ["eval", str(tiny_run), "--split", "dev"])
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == ["metric", "pQRNN", "baseline"]
    alone = json.loads(runner.invoke(main, ["eval", str(tiny_run), "--json", "--no-baseline"]).output)
    assert "baseline" not in alone


def test_eval_table_counts_languages_above_the_baseline():
    from edge_pqrnn.cli import format_metrics

    run = {"intent_accuracy": 0.9, "num_examples": 30, "per_language": {
        "de": {"n": 10, "accuracy": 0.9, "macro_f1": 0.80}, "th": {"n": 20, "accuracy": 0.9, "macro_f1": 0.70}}}
    base = {"intent_accuracy": 0.8, "n_test": 30, "per_language": {
        "de": {"n": 10, "accuracy": 0.8, "macro_f1": 0.75}, "th": {"n": 20, "accuracy": 0.8, "macro_f1": 0.70}}}
    table = format_metrics(run, base)
    assert "de             10    0.9000    0.8000    0.8000    0.7500  +0.0500" in table
    assert table.endswith("macro-F1 above the baseline in 1 of 2 languages (not above: th)")


def test_baseline_command_per_language_and_unknown_data():
    runner = CliRunner()
    result = runner.invoke(main, ["baseline", "--data", "fixture:multilingual"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()[6:10]] == ["de", "en", "th", "zh-CN"]
    assert "majority class: accuracy" in result.output
    bad = runner.invoke(main, ["baseline", "--data", "nope"])
    assert bad.exit_code != 0 and "multilingual" in bad.output and "Traceback" not in bad.output
