"""Many interpreters in threads, sharing one loaded op library, give exactly the outputs
of one interpreter alone: on a projection-only model and on a small fused artifact, in
ai_edge_litert and tf.lite at once. And the library has no mutable global state."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import threading

import numpy as np
import pytest
from hostile_texts import HOSTILE, random_texts

from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.projection.ops import op_library, projection_model
from edge_pqrnn.runtimes import interpreter, run_signature

RUNTIMES = ("litert", "tflite")
THREADS = 8  # 4 per runtime, on a 2-core machine: plenty of interleaving
ROUNDS = 10


def batches_of(texts: list[bytes], size: int) -> list[list[bytes]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


# Hostile texts spread over the batches so that long and short texts share batches and
# a thread on a 1 MB text overlaps threads on tiny ones.
TEXTS = random_texts(300, seed=7) + list(HOSTILE.values())
BATCHES = batches_of(list(np.random.default_rng(3).permutation(np.array(TEXTS, dtype=object))), 24)


def stress(model: bytes) -> None:
    """Run every batch through THREADS interpreters at once, each in its own order,
    and compare with what one interpreter per runtime gives alone."""
    expected = {rt: [run_signature(interpreter(model, rt), batch) for batch in BATCHES] for rt in RUNTIMES}
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        runtime = RUNTIMES[index % len(RUNTIMES)]
        try:
            # Interpreters (and their delegates) are created concurrently too.
            interp = interpreter(model, runtime)
            start.wait(timeout=120)
            order = np.random.default_rng(index).permutation(len(BATCHES))
            for _ in range(ROUNDS):
                for b in order:
                    out = run_signature(interp, BATCHES[b])
                    for name, value in expected[runtime][b].items():
                        if not np.array_equal(out[name], value):
                            failures.append(f"thread {index} ({runtime}) batch {b}: {name} differs")
        except Exception as exc:  # reported below: a thread's exception would be lost
            failures.append(f"thread {index} ({runtime}): {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert failures == []


@pytest.mark.slow
def test_threads_on_projection_only_model():
    stress(projection_model(ProjectionSpec(feature_size=64, max_tokens=24, add_bos=True)))


@pytest.fixture(scope="module")
def fused_artifact(tmp_path_factory) -> bytes:
    from edge_pqrnn.export import export
    from edge_pqrnn.pipeline import train_run

    run_dir = tmp_path_factory.mktemp("concurrency") / "run"
    train_run("fixture:atis", run_dir, spec=ProjectionSpec(feature_size=32, max_tokens=16),
              model_options={"bottleneck": 16, "state": 16}, train_options={"epochs": 1}, progress=False)
    return export(run_dir, None, check=False, log=lambda _: None).artifact


@pytest.mark.slow
def test_threads_on_fused_artifact(fused_artifact):
    stress(fused_artifact)


def test_library_has_no_mutable_global_state():
    # Writable data (.data, .bss) of our own code: only the registrations returned by
    # PQRNN_Register_PROJECTION(), _FO_POOL(), and the portable artifact's _INT_MATMUL(),
    # _DEQUANTIZE() and _QUANTIZE(), initialised at load time
    # and never written (the runtime copies them). Everything else is the C runtime's
    # start-up bookkeeping.
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    table = subprocess.run(["objdump", "-t", op_library()], capture_output=True, text=True, check=True).stdout
    if "no symbols" in table:
        pytest.skip("the op library is stripped")
    writable = {line.split()[-1].split(".")[0] for line in table.splitlines()
                if len(line.split()) >= 5 and line.split()[-3] in (".data", ".bss")
                and line.split()[2] == "O"}
    assert writable - {"completed", "__dso_handle", "__TMC_END__"} == {"registration"}
    source = (pathlib.Path(__file__).resolve().parent.parent / "edge_pqrnn/projection/native/projection_op.c").read_text()
    assert source.count("static TfLiteRegistration registration") == 5


# ------------------------------------------------------------------ one Artifact, many threads

SHARED_CALLS = 1500  # per thread: 8 x 1,500 = 12,000 calls per runtime (about 2 s each here)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_artifact_shared_by_threads_gives_single_thread_bits(built, runtime):
    # Issue 23: one Artifact shared by threads corrupted memory (glibc aborts, segfaults,
    # "RESHAPE (64 != 8192)") or silently changed logits. Each call now runs on an
    # interpreter no other thread uses meanwhile (a pool).
    from edge_pqrnn.artifact import Artifact

    texts = random_texts(40, seed=11) + [HOSTILE[k] for k in sorted(HOSTILE)[:8]]
    # Batches of 1 to 3 texts: different sizes make every call resize the interpreter.
    batches = [texts[i : i + 1 + i % 3] for i in range(len(texts))]
    model = Artifact.load(built.path, runtime=runtime)
    expected = [model.run(batch) for batch in batches]
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        try:
            rng = np.random.default_rng(index)
            start.wait(timeout=60)
            for call in range(SHARED_CALLS):
                b = int(rng.integers(len(batches)))
                out = model.run(batches[b])
                for name, value in expected[b].items():
                    if not np.array_equal(out[name], value):
                        failures.append(f"thread {index} call {call} batch {b}: {name} differs")
        except Exception as exc:
            failures.append(f"thread {index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert failures == []
    assert 2 <= model._pool.opened <= THREADS  # the pool grew for concurrent calls, within its limit
    model.close()


def test_shared_artifact_interpreter_limit_and_close(built):
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.errors import ArtifactError, ConfigError

    model = Artifact.load(built.path, max_interpreters=1)  # calls take turns on one interpreter
    texts = random_texts(6, seed=2)
    expected = model.run(texts)["intent_logits"]
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(model.run(texts)["intent_logits"])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4 and all(np.array_equal(r, expected) for r in results)
    assert model._pool.opened == 1
    model.close()
    with pytest.raises(ArtifactError, match="was closed: load it again with Artifact.load()"):
        model.run(texts)
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match=r"max_interpreters must be a whole number of at least 1, got "):
            Artifact.load(built.path, max_interpreters=bad)
