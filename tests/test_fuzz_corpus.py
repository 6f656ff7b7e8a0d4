"""Replay the fuzz corpus (edge_pqrnn/projection/native/fuzz/corpus), and pin the fuzz
findings with tests that fail without their fixes.

Every corpus file goes through the plain op library (ctypes) and, where its options are
valid, is compared bit for bit with the numpy reference; when clang with libFuzzer is
installed, the files also go through the ASan/UBSan harness built by tools/fuzz.sh.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import op_library, parse_options_native, project_native, projection_model
from edge_pqrnn.runtimes import interpreter, run_signature

ROOT = pathlib.Path(__file__).resolve().parent.parent
FUZZ = ROOT / "edge_pqrnn" / "projection" / "native" / "fuzz"
CORPUS = sorted(p for p in (FUZZ / "corpus").iterdir() if p.is_file())


def _load_fuzz_input():
    # fuzz_input.py lives beside the C harness (it is not part of the installed package).
    spec = importlib.util.spec_from_file_location("fuzz_input", FUZZ / "fuzz_input.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_input"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fuzz_input = _load_fuzz_input()


class _Options(ctypes.Structure):
    """pqrnn_options, filled by hand the way an app might (target 1 of the harness)."""

    _fields_ = [(name, ctypes.c_int) for name in fuzz_input.STRUCT_FIELDS]


def _project_text_raw():
    """PQRNN_ProjectText with raw pointers, so a test can hand it any struct and buffer."""
    lib = ctypes.CDLL(op_library())
    fn = lib.PQRNN_ProjectText
    fn.argtypes = [ctypes.POINTER(_Options), ctypes.c_char_p, ctypes.c_size_t] + [ctypes.c_void_p] * 3
    fn.restype = ctypes.c_int
    return fn


def assert_same_projection(spec: ProjectionSpec, text: bytes, name: str) -> None:
    native = project_native([text], spec)
    ref = project([text], spec)
    for got, expected, output in zip(native, (ref.features, ref.mask, ref.pool_weights, ref.num_tokens),
                                     ("features", "mask", "pool_weights", "num_tokens")):
        assert got.dtype == expected.dtype and np.array_equal(got, expected), f"{name}: {output} differs ({spec})"


def test_corpus_is_small_and_holds_the_seeds_and_findings():
    names = {p.name for p in CORPUS}
    # The seeds include the inputs of the two findings (seed-struct-no-room,
    # seed-kernel-empty-batch): the harness traps on them without the fixes.
    assert set(fuzz_input.seeds()) <= names, "run `tools/fuzz.sh seed`"
    assert sum(p.stat().st_size for p in CORPUS) < 400_000


def test_input_layout_round_trips():
    spec = ProjectionSpec(feature_size=77, max_tokens=16, mode="char", add_bos=True, lowercase=False)
    data = fuzz_input.encode(spec, b"text", b"opts", target=fuzz_input.KERNEL)
    assert fuzz_input.decode(data) == fuzz_input.FuzzInput(spec, fuzz_input.KERNEL, b"opts", b"text")
    # Short inputs read missing header bytes as 0 and are still meaningful.
    assert fuzz_input.decode(b"").spec == ProjectionSpec(feature_size=1, max_tokens=1, add_eos=False,
                                                         lowercase=False)
    with pytest.raises(ValueError, match="budget"):
        fuzz_input.encode(ProjectionSpec(feature_size=8192, max_tokens=2), b"")


def test_corpus_replays_through_the_plain_library_bit_exact_with_the_reference():
    project_raw = _project_text_raw()
    accepted = 0
    for path in CORPUS:
        case = fuzz_input.decode(path.read_bytes())
        assert_same_projection(case.spec, case.text, path.name)
        try:
            parsed = parse_options_native(case.options)
        except ConfigError as exc:
            assert str(exc), path.name  # refused with a message
        else:
            accepted += 1
            spec = ProjectionSpec(feature_size=parsed["feature_size"], max_tokens=parsed["max_tokens"],
                                  mode="char" if parsed["char_mode"] else "word", add_bos=bool(parsed["add_bos"]),
                                  add_eos=bool(parsed["add_eos"]), lowercase=bool(parsed["lowercase"]))
            if spec.feature_size * spec.max_tokens <= fuzz_input.BUDGET:
                assert_same_projection(spec, case.text, path.name)
        if case.target == fuzz_input.UNCHECKED_STRUCT:
            fields = case.unchecked_struct()
            try:
                spec = ProjectionSpec(feature_size=fields["feature_size"], max_tokens=fields["max_tokens"],
                                      mode="char" if fields["char_mode"] == 1 else "word",
                                      add_bos=fields["add_bos"] == 1, add_eos=fields["add_eos"] == 1,
                                      lowercase=fields["lowercase"] == 1)
                valid = all(fields[k] in (0, 1) for k in fuzz_input.STRUCT_FIELDS[2:])
            except ConfigError:
                valid = False
            if valid:
                assert_same_projection(spec, case.text, path.name)
            else:
                assert project_raw(_Options(**fields), case.text, len(case.text), None, None, None) == 0, path.name
    assert accepted >= len(fuzz_input.seeds()) // 2  # the seeds' valid options were parsed


def _sanitized_harness(tmp_path: pathlib.Path) -> pathlib.Path:
    """Build the ASan/UBSan harness with tools/fuzz.sh, or skip when clang/libFuzzer is absent."""
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (Debian: apt-get install clang libclang-rt-14-dev)")
    proc = subprocess.run(["bash", str(ROOT / "tools" / "fuzz.sh"), "build"], capture_output=True, text=True,
                          env={**os.environ, "FUZZ_DIR": str(tmp_path)}, timeout=300)
    if proc.returncode != 0 and "libclang_rt.fuzzer" in proc.stderr:  # the linker cannot find libFuzzer
        pytest.skip(f"clang has no libFuzzer runtime here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pathlib.Path(proc.stdout.strip())


@pytest.mark.slow
def test_corpus_replays_through_the_sanitized_harness(tmp_path):
    harness = _sanitized_harness(tmp_path)
    proc = subprocess.run([str(harness), *map(str, CORPUS)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Executed ") == len(CORPUS)


# ------------------------------------------------------------------ findings


@pytest.mark.parametrize("fields", [
    (16, 2, 0, 1, 1, 1),     # max_tokens leaves no room for a word between BOS and EOS
    (16, 1, 0, 0, 1, 1),     # ... nor after EOS
    (16, 8, 0, 2, 1, 1),     # a "boolean" of 2
    (0, 8, 0, 0, 1, 1),      # feature_size 0
    (8193, 8, 0, 0, 1, 1),   # feature_size above 8192
    (16, 4097, 0, 0, 1, 1),  # max_tokens above 4096
    (16, -3, 0, 0, 0, 1),
])
def test_hand_filled_struct_out_of_range_writes_nothing(fields):
    # Finding 1 (fuzz corpus seed-struct-no-room): PQRNN_ProjectText trusted its struct
    # and wrote rows past max_tokens. Now it returns 0 and leaves the buffers alone.
    rows = 64
    features = np.full((rows, 8193), 7.0, np.float32)
    mask, pool = np.full(rows, 7.0, np.float32), np.full(rows, 7.0, np.float32)
    text = b"many words here to fill more rows than there is room for " * 4
    got = _project_text_raw()(_Options(*fields), text, len(text), features.ctypes.data, mask.ctypes.data,
                              pool.ctypes.data)
    assert got == 0
    assert (features == 7).all() and (mask == 7).all() and (pool == 7).all()


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_empty_batch_gives_empty_outputs(runtime):
    # Finding 2 (fuzz corpus seed-kernel-empty-batch): a batch of 0 texts failed with
    # "output buffer too small", because 0-byte outputs have no data pointer.
    spec = ProjectionSpec(feature_size=16, max_tokens=6)
    out = run_signature(interpreter(projection_model(spec), runtime), [])
    assert {name: value.shape for name, value in out.items()} == {
        "features": (0, 6, 16), "mask": (0, 6), "pool_weights": (0, 6), "num_tokens": (0,)}
