"""Mutation test for artifact loading (issue 23): thousands of random mutants of a valid
.tflite and .onnx (bits flipped, cut, spliced, or a field edited and the content hash
re-sealed; tests/artifact_mutation.py). Each one either runs with finite outputs or is
refused with one line; none crashes, hangs or leaks. Run once with the plain op library
and once (a smaller count) with the op library built with ASan + UBSan.

``EDGE_PQRNN_MUTANTS`` (per format, default 1,500; a third of it under the sanitizers) and ``EDGE_PQRNN_MUTATION_SEED``
(default 0) set the campaign; docs/security.md has the counts of the longer runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import artifact_mutation

ROOT = Path(__file__).resolve().parent.parent
COUNT = int(os.environ.get("EDGE_PQRNN_MUTANTS", "1500"))
SANITIZED_COUNT = max(1, COUNT // 3)
SEED = int(os.environ.get("EDGE_PQRNN_MUTATION_SEED", "0"))


@pytest.fixture(scope="module")
def sources(built, tmp_path_factory) -> tuple[str, str]:
    from edge_pqrnn.export import export_onnx

    onnx_path = tmp_path_factory.mktemp("mutation") / "tiny.onnx"
    export_onnx(built.run_dir, onnx_path, check=False, log=lambda _: None)
    return str(built.path), str(onnx_path)


def assert_clean(result: dict, count: int, rss: bool = True) -> None:
    assert result["crashes"] == [], f"crashed or hung: {result['crashes']}"
    assert result["bad"] == [], "\n".join(result["bad"][:10])
    assert sum(result["outcomes"].values()) == 2 * count  # every mutant of both formats ran to an outcome
    kinds = result["by_kind"]
    for fmt in ("tflite", "onnx"):
        # Edits pass the hash check and meet the deeper checks and the runtime: some load
        # and run, some are refused by something other than the hash.
        assert kinds.get(f"{fmt} edit ok", 0) > 0, kinds
        assert kinds.get(f"{fmt} edit refused", 0) > 0, kinds
        for kind in ("flip", "truncate", "splice"):
            assert sum(n for k, n in kinds.items() if k.startswith(f"{fmt} {kind} ")) > 0, kinds
    growth_kb, fds_before, fds_after, threads_before, threads_after = result["resources"]
    assert fds_after == fds_before and threads_after == threads_before, result["resources"]
    if rss:  # not under ASan: its quarantine holds freed memory back on purpose
        assert growth_kb < 40_000, f"RSS grew by {growth_kb} KB over the campaign"


@pytest.mark.slow
def test_mutants_run_finite_or_are_refused_in_one_line(sources, tmp_path):
    tflite, onnx = sources
    result = artifact_mutation.campaign(tflite, onnx, COUNT, seed=SEED, keep=str(tmp_path / "crashers"))
    assert_clean(result, COUNT)


def _sanitized_library(tmp_path: Path) -> tuple[str, str]:
    """The op library built with ASan + UBSan by tools/fuzz.sh, and what to LD_PRELOAD."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    env = {**os.environ, "FUZZ_DIR": str(tmp_path)}
    built = subprocess.run(["bash", str(ROOT / "tools" / "fuzz.sh"), "lib"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    preload = subprocess.run(["bash", str(ROOT / "tools" / "fuzz.sh"), "preload"], capture_output=True, text=True,
                             env=env, timeout=60).stdout.split()
    if not all(os.path.isfile(p) for p in preload):
        pytest.skip(f"gcc's sanitizer runtimes are not installed ({preload})")
    return built.stdout.strip(), " ".join(preload)


@pytest.mark.slow
def test_mutants_under_the_sanitized_op_library(sources, tmp_path):
    tflite, onnx = sources
    library, preload = _sanitized_library(tmp_path)
    env = {"EDGE_PQRNN_OP_LIBRARY": library, "LD_PRELOAD": preload,
           # Python and the runtimes keep memory until exit by design: leaks are measured
           # by the campaign (RSS, descriptors, threads), not LeakSanitizer.
           # allocator_may_return_null: a too-big allocation returns NULL, as malloc does
           # without ASan (the runtime then fails with a message), instead of aborting.
           "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:exitcode=86:allocator_may_return_null=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    result = artifact_mutation.campaign(tflite, onnx, SANITIZED_COUNT, seed=SEED + 1, env=env,
                                        keep=str(tmp_path / "crashers"))
    assert result["library"] == [library, "1"]  # the sanitized library, with ASan loaded
    assert_clean(result, SANITIZED_COUNT, rss=False)
