"""The repo's own gates.toml on the default model, end to end, as CI runs it.

Trains the default ATIS model with `edge-pqrnn quickstart` (about 10 minutes on 2 idle
cores), then runs `edge-pqrnn gate` with the repo's gates.toml. Runs in CI (CI=true) or
with EDGE_PQRNN_DEFAULT_GATE=1; elsewhere it skips, saying how to run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENABLED = os.environ.get("CI") == "true" or os.environ.get("EDGE_PQRNN_DEFAULT_GATE") == "1"
CLI = [sys.executable, "-m", "edge_pqrnn.cli"]


def gate(artifact: Path, run_dir: Path) -> tuple[int, dict]:
    proc = subprocess.run([*CLI, "gate", str(artifact), "--gates", str(ROOT / "gates.toml"), "--reference",
                           str(run_dir), "--json"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not ENABLED, reason="trains the default ATIS model (~10 min on 2 cores): runs in CI (CI=true) "
                                        "or with EDGE_PQRNN_DEFAULT_GATE=1")
def test_default_model_passes_the_repos_gates(tmp_path):
    out_dir = tmp_path / "quickstart"
    proc = subprocess.run([*CLI, "quickstart", "--out-dir", str(out_dir)], capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    artifact, run_dir = out_dir / "atis.int8.tflite", out_dir / "run"
    code, report = gate(artifact, run_dir)
    failed = [r for r in report["gates"] if not r["passed"]]
    if failed and all(r["name"].startswith("latency.") for r in failed):
        # Latency is the one noisy measurement: one more interleaved round before failing.
        code, report = gate(artifact, run_dir)
        failed = [r for r in report["gates"] if not r["passed"]]
    print(json.dumps(report, indent=1)[:4000])
    assert code == 0 and not failed, failed
    names = {r["name"] for r in report["gates"]}
    assert {"size.max_bytes", "latency.max_ratio_vs_reference", "accuracy.min_intent_agreement",
            "accuracy.min_intent_accuracy"} <= names
