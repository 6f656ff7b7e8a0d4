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
