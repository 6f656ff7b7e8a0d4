"""SIGKILL an export at random points: the previous artifact stays intact and nothing
half-written looks finished.

A child process exports the same run over and over to the same path; the test kills
it at points spread over one export's run time, and once while the new artifact sits
complete in its temp file just before the rename (the moment a careless writer would
leave a finished-looking file behind). After every kill the destination holds the
previous artifact byte for byte (its metadata and weights hash still check out), and
every other file in the folder is a temp file: a dot name ending in ``.partial``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_pqrnn.converters.tflite_fuse import read_metadata
from edge_pqrnn.projection import ProjectionSpec

# The child: import everything export needs, say "ready" and wait for "go" (so the
# test can start all children at once and pay the imports in parallel), then export
# forever, printing a line before and after each export. With "pause", the rename that
# publishes the artifact waits instead, so the kill lands with the temp file complete.
CHILD = r"""
import os, sys, time
import tensorflow
import edge_pqrnn.converters.tflite_fuse, edge_pqrnn.quant.ptq, edge_pqrnn.run
from edge_pqrnn.export import export

run_dir, out, mode = sys.argv[1:4]
if mode == "pause":
    real_replace = os.replace
    def paused(src, dst):  # only the rename that publishes the artifact
        if not str(src).endswith(".partial"):
            return real_replace(src, dst)
        print("renaming", flush=True)
        time.sleep(600)
    os.replace = paused
print("ready", flush=True)
sys.stdin.readline()
while True:
    print("start", time.monotonic(), flush=True)
    export(run_dir, out, check=False, log=lambda _: None)
    print("done", time.monotonic(), flush=True)
"""

TEMP_FILE = re.compile(r"^\.model\.tflite\..+\.partial$")


class Child:
    """The exporting child, with its output lines readable with a timeout."""

    def __init__(self, run_dir: Path, out: Path, mode: str = "loop", env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(run_dir), str(out), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("exited")

    def wait_for(self, word: str, timeout: float = 120) -> float:
        """Wait for the next line starting with ``word``; returns its timestamp, if any."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line == "exited":
                raise AssertionError(f"the export child exited (code {self.proc.wait()}) before '{word}'")
            if line.startswith(word):
                parts = line.split()
                return float(parts[1]) if len(parts) > 1 else time.monotonic()

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL


def assert_intact(out: Path, previous: bytes, when: str) -> list[str]:
    """The destination is the previous artifact; returns the temp files beside it."""
    assert out.read_bytes() == previous, f"the artifact changed ({when})"
    read_metadata(out.read_bytes())  # metadata and weights hash still check out
    others = sorted(p.name for p in out.parent.iterdir() if p.name != out.name)
    assert all(TEMP_FILE.match(name) for name in others), f"unexpected files {others} ({when})"
    return others


def train_tiny_run(path: Path) -> None:
    from edge_pqrnn.pipeline import train_run

    train_run("fixture:atis", path, spec=ProjectionSpec(feature_size=32, max_tokens=16),
              model_options={"bottleneck": 16, "state": 16}, train_options={"epochs": 1}, progress=False)


@pytest.mark.slow
def test_sigkill_during_export_leaves_the_previous_artifact(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "out" / "model.tflite"
    rng = np.random.default_rng()
    # One kill in each third of an export (and a little past its end, where the kill
    # may land after the rename: then the new, identical artifact is there).
    fractions = [rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.7), rng.uniform(0.7, 1.05)]
    # The children import TensorFlow while this process trains the run they export.
    children = [Child(run_dir, out) for _ in fractions] + [Child(run_dir, out, mode="pause")]
    try:
        train_tiny_run(run_dir)
        for child in children:
            child.wait_for("ready")
        first = children[0]
        first.go()
        started = first.wait_for("start")
        seconds = first.wait_for("done") - started  # one export, measured under today's load
        previous = out.read_bytes()
        assert_intact(out, previous, "after a complete export")
        for child, fraction in zip(children, fractions):
            if child is not first:
                child.go()
            child.wait_for("start")
            time.sleep(fraction * seconds)
            child.kill()
            assert_intact(out, previous, f"killed at {fraction:.2f} of an export of {seconds:.1f} s")

        # Killed with the new artifact complete in its temp file, not yet renamed.
        before = set(assert_intact(out, previous, "before the rename kill"))
        children[-1].go()
        children[-1].wait_for("renaming")
        children[-1].kill()
        leftovers = set(assert_intact(out, previous, "killed just before the rename")) - before
        assert len(leftovers) == 1
        temp = out.parent / leftovers.pop()
        assert temp.read_bytes() == previous  # complete, yet named so that nothing takes it for finished
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.kill()


def test_killed_export_leaves_no_autograph_files_once_the_next_one_starts(tmp_path):
    # Issue 23: TensorFlow's autograph writes each traced function to a
    # __autograph_generated_file*.py in the temp folder and removes them only at a clean
    # exit; a killed export left them there for good. They now go to a per-process
    # scratch folder, which the next export removes once its process is gone.
    from edge_pqrnn._io import SCRATCH_PREFIX, sweep_scratch

    run_dir, out, temp = tmp_path / "run", tmp_path / "out" / "model.tflite", tmp_path / "tmp"
    temp.mkdir()
    child = Child(run_dir, out, env={"TMPDIR": str(temp)})
    try:
        train_tiny_run(run_dir)
        child.wait_for("ready")
        child.go()
        child.wait_for("start")
        deadline = time.monotonic() + 120
        while not list(temp.rglob("__autograph_generated_file*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        child.kill()
    finally:
        if child.proc.poll() is None:
            child.kill()
    leftovers = list(temp.rglob("__autograph_generated_file*"))
    assert leftovers, "the export traced no function before the kill"
    assert all(p.parent.name == f"{SCRATCH_PREFIX}{child.proc.pid}" for p in leftovers), leftovers
    assert sweep_scratch(temp) == [temp / f"{SCRATCH_PREFIX}{child.proc.pid}"]
    assert list(temp.iterdir()) == []
