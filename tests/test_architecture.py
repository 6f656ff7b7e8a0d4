"""The package's shape (docs/architecture.md): layers, no import cycles, small parts, one
name in one place. These run the same checks as CI's `lint-imports` and
tools/check_architecture.py, so a change that breaks the shape fails the suite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_architecture  # noqa: E402  (tools/ is not a package)

# Modules and functions allowed over the limits, with their size then: they may only
# shrink or leave this list (empty since issue 21: nothing is over).
OVERSIZE_MODULES: dict[str, int] = {}
OVERSIZE_FUNCTIONS: dict[str, int] = {}


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (pip install -e .[dev])")
def test_layers_contract_of_pyproject_is_kept():
    proc = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_every_module_has_a_layer():
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    top = {name.split(".")[1] for name in check_architecture.modules() if name.count(".") >= 1}
    assert sorted(f"edge_pqrnn.{name}" for name in top if f"edge_pqrnn.{name}" not in named) == []


def test_no_import_cycle_even_through_function_local_imports():
    assert check_architecture.cycles(check_architecture.import_graph()) == []


def test_the_cycle_check_sees_function_local_imports(tmp_path):
    package = tmp_path / "edge_pqrnn"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import edge_pqrnn.b\n")
    (package / "b.py").write_text("def late():\n    from edge_pqrnn import a\n    return a\n")
    assert check_architecture.cycles(check_architecture.import_graph(tmp_path)) == [["edge_pqrnn.a", "edge_pqrnn.b"]]


def test_no_module_or_function_grows_past_the_limits():
    module_lines, function_lines = check_architecture.sizes()
    for label, rows, limit, allowed in (
            ("module", module_lines, check_architecture.MAX_MODULE_LINES, OVERSIZE_MODULES),
            ("function", function_lines, check_architecture.MAX_FUNCTION_LINES, OVERSIZE_FUNCTIONS)):
        over = {name: lines for lines, name in rows if lines > limit}
        new = sorted(set(over) - set(allowed))
        assert not new, f"{label}s over {limit} lines: {new}; split them (docs/architecture.md)"
        grown = {name: (allowed[name], lines) for name, lines in over.items() if lines > allowed[name]}
        assert not grown, f"{label}s on the shrink list grew (was, now): {grown}"


def test_op_names_and_onnx_domain_in_c_are_the_ones_of_format():
    from edge_pqrnn import format

    native = ROOT / "edge_pqrnn" / "projection" / "native"
    text = "".join(p.read_text() for p in sorted(native.glob("*.[ch]")))
    names = set(re.findall(r'"(EdgePqrnn[A-Za-z]*)"', text)) - {"EdgePqrnnProjectionDelegate"}
    assert names == set(format.CUSTOM_OPS)
    assert set(re.findall(r'"(ai\.[a-z_.]+)"', text)) == {format.ONNX_DOMAIN}
