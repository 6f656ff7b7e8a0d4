"""aarch64 under qemu (edge_pqrnn.arm): the cross-built op is bit-exact with the numpy
reference, an int8 artifact gives x86's answers, and what cannot run is a row, not a crash.

The slow tests prepare the matrix with setup_matrix(install=CI): CI installs the system
tools with apt-get; elsewhere they are skipped (with the apt line) only when the matrix
cannot be prepared on this machine.
"""

import ast
import os
import pathlib
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hostile_texts import HOSTILE, MIXED, random_texts

from edge_pqrnn import arm
from edge_pqrnn.runtimes import aarch64, toolchain
from edge_pqrnn.cli import main as cli
from edge_pqrnn.data import load_dataset
from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.export import export
from edge_pqrnn.pipeline import train_run
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import OUTPUT_NAMES, projection_model
from edge_pqrnn.runtimes import interpreter, run_signature

CI = os.environ.get("CI") == "true"
ROOT = pathlib.Path(__file__).resolve().parents[1]
EM_AARCH64 = 183  # ELF e_machine


def non_ascii_texts() -> list[str]:
    """Every text of the multilingual fixture (de, fr, ru, zh, ... beside en) and MIXED."""
    data = load_dataset("fixture:multilingual")
    return [ex.text for ex in data.train + data.test] + [MIXED]


def lsb(values: np.ndarray) -> float:
    """The quantisation step of a dequantised int8 output: its smallest gap between values."""
    return float(np.diff(np.unique(values.astype(np.float64))).min())


# ----------------------------------------------------------------- no toolchain needed


def test_cross_build_uses_setup_pys_sources_and_flags():
    # The aarch64 build must compile what `pip install` compiles, or bit-exactness on ARM
    # proves nothing about the x86 library.
    tree = ast.parse((ROOT / "setup.py").read_text())
    ext = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "id", None) == "Extension")
    kwargs = {kw.arg: kw.value for kw in ext.keywords}
    sources = [pathlib.PurePath(ast.literal_eval(s) if isinstance(s, ast.Constant) else s.values[-1].value).name
               for s in kwargs["sources"].elts]
    assert tuple(sources) == toolchain.SOURCES
    assert tuple(ast.literal_eval(kwargs["extra_compile_args"])) == toolchain.SETUP_FLAGS
    assert "-ffast-math" not in toolchain.SETUP_FLAGS + toolchain.HOST_FLAGS


def test_a_missing_tool_raises_with_the_exact_apt_line(monkeypatch, tmp_path):
    with pytest.raises(EdgePqrnnError) as info:
        toolchain.require_tools({"edge-pqrnn-no-such-tool": "pkg-a", "/no/such/crti.o": "pkg-b"})
    assert "`apt-get install -y --no-install-recommends pkg-a pkg-b`" in str(info.value)
    assert "install=True" in str(info.value)

    monkeypatch.setattr(aarch64.shutil, "which", lambda name: None)
    with pytest.raises(EdgePqrnnError) as info:
        aarch64.setup_matrix(cache=tmp_path, log=lambda _: None)
    assert "apt-get install -y --no-install-recommends qemu-user-static gcc-aarch64-linux-gnu" in str(info.value)
    assert "debootstrap" in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing prepared, nothing installed


def test_matrix_setup_command_says_how_to_install_a_missing_tool(tmp_path):
    empty = tmp_path / "empty-bin"  # a real missing qemu: nothing on PATH
    empty.mkdir()
    result = CliRunner().invoke(cli, ["matrix", "setup"],
                                env={"PATH": str(empty), "EDGE_PQRNN_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: the aarch64 matrix needs qemu-user-static")
    assert "apt-get install -y --no-install-recommends qemu-user-static" in result.output
    assert not (tmp_path / "cache").exists()


def test_an_unprepared_matrix_gives_rows_that_say_why(tmp_path):
    model = tmp_path / "projection.tflite"
    model.write_bytes(projection_model(ProjectionSpec(feature_size=8, max_tokens=4)))
    rows = arm.matrix_rows(model, ["hello"], {}, cache=tmp_path / "empty-cache")
    assert [r["runtime"] for r in rows] == ["litert", "tflite-runtime"]
    for row in rows:
        assert row["loaded"] is False and row["bit_exact_vs_x86"] is None and row["isa"] == "aarch64"
        # Either qemu is missing (the apt line) or the matrix is not prepared (the command).
        assert "apt-get install" in row["error"] or "python -m edge_pqrnn.arm setup" in row["error"]
    assert len(arm.markdown_table(rows).splitlines()) == 2 + len(rows)


def test_differing_texts_compares_bits_per_text():
    ref = {"a": np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]], np.float32), "n": np.array([1, 2, 3], np.int32)}
    same = {k: v.copy() for k, v in ref.items()}
    assert arm.differing_texts(same, ref) == 0  # identical NaN bits count as equal
    signed_zero = {**same, "a": same["a"].copy()}
    signed_zero["a"][0, 0] = -0.0
    assert arm.differing_texts(signed_zero, ref) == 1
    counts = {**same, "n": np.array([1, 2, 4], np.int32)}
    assert arm.differing_texts(counts, ref) == 1
    assert arm.differing_texts({"a": same["a"]}, ref) == 3  # a missing output: every text differs
    assert arm.max_abs_diff(counts, ref) == 0.0  # only float outputs are differences in value


# ------------------------------------------------------------------ the real matrix


@pytest.fixture(scope="module")
def matrix():
    start = time.perf_counter()
    try:
        prepared = aarch64.setup_matrix(install=CI, log=print)
    except EdgePqrnnError as exc:
        if CI:
            raise
        pytest.skip(f"the aarch64 matrix is not prepared and cannot be here: {exc}")
    print(f"aarch64 matrix setup: {time.perf_counter() - start:.1f} s")
    return prepared


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("arm") / "run"
    train_run("fixture:atis", run_dir, spec=ProjectionSpec(feature_size=64, max_tokens=24),
              model_options={"bottleneck": 32, "state": 32}, train_options={"epochs": 4}, progress=False)
    return export(run_dir, run_dir.parent / "model.tflite", check=False, log=lambda _: None).path


@pytest.fixture(scope="module")
def artifact_texts():
    return [ex.text for ex in load_dataset("fixture:atis").test] + non_ascii_texts() + list(HOSTILE.values())


@pytest.mark.slow
def test_setup_is_fast_when_warm(matrix):
    lines = []
    start = time.perf_counter()
    again = aarch64.setup_matrix(log=lines.append)
    assert time.perf_counter() - start < 10
    assert again.errors == {} and set(again.sites) == {"litert", "tflite-runtime"}
    assert not [ln for ln in lines if "rootfs" in ln or "wheels" in ln], lines  # nothing re-done


@pytest.mark.slow
def test_matrix_setup_command_when_warm(matrix):
    result = CliRunner().invoke(cli, ["matrix", "setup"])
    assert result.exit_code == 0, result.output
    assert f"aarch64 matrix ready in {matrix.root}" in result.output and "not ready" not in result.output


@pytest.mark.slow
def test_cross_built_library_is_an_aarch64_op_provider(matrix):
    data = matrix.library.read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == EM_AARCH64
    for symbol in (b"tflite_plugin_create_delegate", b"tflite_plugin_destroy_delegate", b"PQRNN_Register_PROJECTION",
                   b"PQRNN_Register_FO_POOL"):
        assert symbol in data
    assert aarch64.build_aarch64_library() == matrix.library  # cached by sources and flags


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
@pytest.mark.parametrize("spec", [ProjectionSpec(feature_size=64, max_tokens=24),
                                  ProjectionSpec(feature_size=77, max_tokens=16, mode="char", add_bos=True)],
                         ids=["word", "char"])
def test_projection_op_on_aarch64_is_bit_exact_with_the_numpy_reference(matrix, runtime, spec, tmp_path):
    # The op is ours: on ARM it must give exactly the reference's bits (seq_flow_lite's
    # did not: it hashed non-ASCII bytes through a signed char on x86 only).
    texts = random_texts(3000, seed=7) + list(HOSTILE.values()) + non_ascii_texts()
    model = tmp_path / "projection.tflite"
    model.write_bytes(projection_model(spec))
    out = aarch64.run_aarch64(model, texts, runtime)
    ref = project(texts, spec)
    assert out["__version__"]
    for name in OUTPUT_NAMES:
        expected = getattr(ref, name)
        assert out[name].dtype == expected.dtype and out[name].shape == expected.shape, name
    assert arm.differing_texts(out, {name: getattr(ref, name) for name in OUTPUT_NAMES}) == 0


#: Runs every N.tflite of a folder in the emulated Python (the runtime worker takes text
#: only), one start-up for all: argv = module, library, folder, output name; reads the
#: signature's inputs from N.in.npz and writes that output to N.out.npy.
OP_MODELS_GUEST = """
import importlib, os, sys
import numpy as np
mod = importlib.import_module(sys.argv[1])
delegate = mod.load_delegate(sys.argv[2])
folder, output = sys.argv[3], sys.argv[4]
for name in sorted(f[:-7] for f in os.listdir(folder) if f.endswith(".tflite")):
    interp = mod.Interpreter(model_path=os.path.join(folder, name + ".tflite"), experimental_delegates=[delegate])
    with np.load(os.path.join(folder, name + ".in.npz")) as data:
        result = interp.get_signature_runner()(**dict(data))
    np.save(os.path.join(folder, name + ".out.npy"), result[output])
"""


def run_op_models_on_aarch64(matrix, runtime: str, cases: list[tuple[bytes, dict]], output: str,
                             folder) -> list[np.ndarray]:
    """The ``output`` of each (model bytes, inputs) case, run by ``runtime`` under qemu."""
    import shutil
    import subprocess

    if runtime not in matrix.sites:
        pytest.skip(matrix.errors[runtime])
    for i, (model, inputs) in enumerate(cases):
        (folder / f"{i:03d}.tflite").write_bytes(model)
        np.savez(folder / f"{i:03d}.in.npz", **inputs)
    cmd = [shutil.which(aarch64.QEMU) or aarch64.QEMU, "-L", str(matrix.rootfs), str(matrix.python), "-c", OP_MODELS_GUEST,
           aarch64.aarch64_runtimes()[runtime].module, str(matrix.library), str(folder), output]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=aarch64._guest_env(matrix.sites[runtime]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [np.load(folder / f"{i:03d}.out.npy") for i in range(len(cases))]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
def test_fo_pool_op_on_aarch64_is_bit_exact_with_the_numpy_reference(matrix, runtime, tmp_path):
    from edge_pqrnn.projection.fo_pool import Quantization, fo_pool_model, reference

    rng = np.random.default_rng(11)
    quantizations = [Quantization(z=(0.0078125, 0), k=(0.003882353, -128), o=(0.00390625, -128),
                                  out=(0.007843138, -1)),
                     Quantization(z=(1.0, -128), k=(1 / 64, -128), o=(1.0, 127), out=(1e-3, 127))]
    quantizations += [Quantization(*[(float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128)))
                                     for _ in range(4)]) for _ in range(4)]
    cases, expected = [], []
    for q in quantizations:
        for reverse in (False, True):
            z, k, o = (rng.integers(-128, 128, (2, 33, 7)).astype(np.int8) for _ in range(3))
            z[0, :5], k[0, :5], o[0, :5] = -128, 127, 127  # the extreme codes
            cases.append((fo_pool_model(z.shape, q, reverse), {"z": z, "k": k, "o": o}))
            expected.append(reference(z, k, o, q, reverse))
    for i, out in enumerate(run_op_models_on_aarch64(matrix, runtime, cases, "h", tmp_path)):
        np.testing.assert_array_equal(out, expected[i], err_msg=str(i))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
def test_int_matmul_op_on_aarch64_is_bit_exact_with_the_numpy_reference(matrix, runtime, tmp_path):
    from edge_pqrnn.projection.int_matmul import Geometry, int_matmul_model, reference
    from test_int_matmul import random_case

    rng = np.random.default_rng(13)
    params = [random_case(rng, kind) for kind in ("fc", "conv") for _ in range(5)]
    # extremes: every product at its bound, and exact .5 ties of both signs (x / 2)
    x = np.arange(-128, 128, dtype=np.int8).reshape(64, 4)
    w = np.array([[1, 0, 0, 0], [-128, -128, -128, -128], [127, 127, 127, 127]], np.int8)
    params.append((x, w, np.array([0, 1, -1], np.int32), Geometry.fully_connected(), (0.5, 0), [0.5], (0.5, 0)))
    params.append((x, w, None, Geometry.fully_connected(1), (1.0, 127), [1e-3, 1e-2, 1e-4], (1e-2, -128)))
    cases = [(int_matmul_model(x.shape, w, bias, geometry, x_q, w_scales, out_q), {"x": x})
             for x, w, bias, geometry, x_q, w_scales, out_q in params]
    for i, out in enumerate(run_op_models_on_aarch64(matrix, runtime, cases, "y", tmp_path)):
        np.testing.assert_array_equal(out, reference(*params[i]), err_msg=str(i))


@pytest.mark.slow
def test_int8_artifact_on_aarch64_litert_gives_x86s_answers(matrix, artifact, artifact_texts):
    x86 = run_signature(interpreter(artifact, "litert"), artifact_texts)
    (row,) = arm.matrix_rows(artifact, artifact_texts, {"litert": x86}, runtimes=["litert"])
    print("\n" + arm.markdown_table([row]))
    assert row["loaded"], row["error"]
    out = aarch64.run_aarch64(artifact, artifact_texts, "litert")
    # Bit-exact (issue 7): the recurrence and its o * c product run in our integer C op
    # (EdgePqrnnFoPool), where XNNPACK's x86 and ARM int8 MUL kernels rounded exact .5
    # ties apart; the rest of the int8 body is the same on both ISAs (docs/matrix.md).
    for name in ("num_tokens", "intent_logits", "slot_logits"):
        assert np.array_equal(out[name], x86[name]), name
    assert row["differing_texts"] == 0 and row["bit_exact_vs_x86"] is True


@pytest.mark.slow
def test_int8_artifact_runs_in_aarch64_tflite_runtime(matrix, artifact, artifact_texts):
    from edge_pqrnn.runtimes import legacy_tflite_runtime_python, run_in_subprocess

    x86 = run_in_subprocess(legacy_tflite_runtime_python(), "tflite_runtime.interpreter", str(artifact),
                            artifact_texts)
    x86.pop("__version__")
    (row,) = arm.matrix_rows(artifact, artifact_texts, {"tflite-runtime": x86}, runtimes=["tflite-runtime"])
    print("\n" + arm.markdown_table([row]))
    assert row["loaded"], row["error"]
    out = aarch64.run_aarch64(artifact, artifact_texts, "tflite-runtime")
    assert np.array_equal(out["num_tokens"], x86["num_tokens"])
    # tflite-runtime 2.14 runs its builtin int8 FULLY_CONNECTED / CONV_2D kernels (ruy,
    # gemmlowp) on both ISAs, and they round requantisation ties differently on ARM (NEON)
    # than on x86: the one row that is still not bit-exact (docs/matrix.md).
    for name in ("intent_logits", "slot_logits"):
        assert np.abs(out[name].astype(np.float64) - x86[name]).max() <= 4 * lsb(x86[name]) + 1e-6, name
    assert (out["intent_logits"].argmax(-1) == x86["intent_logits"].argmax(-1)).mean() >= 0.95


@pytest.fixture(scope="module")
def portable_artifact(artifact):
    # the same run as `artifact`, exported with every int8 FC/CONV_2D as EdgePqrnnIntMatMul
    return export(artifact.parent / "run", artifact.parent / "portable.tflite", check=False, portable_kernels=True,
                  log=lambda _: None).path


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "tflite-runtime"])
def test_portable_artifact_on_aarch64_gives_x86s_answers_in_every_runtime(matrix, portable_artifact, artifact_texts,
                                                                         runtime):
    from edge_pqrnn.runtimes import legacy_tflite_runtime_python, run_in_subprocess

    if runtime not in matrix.sites:
        pytest.skip(matrix.errors[runtime])
    if runtime == "litert":
        x86 = run_signature(interpreter(portable_artifact, "litert"), artifact_texts)
    else:
        x86 = run_in_subprocess(legacy_tflite_runtime_python(), "tflite_runtime.interpreter", str(portable_artifact),
                                artifact_texts)
        x86.pop("__version__")
    (row,) = arm.matrix_rows(portable_artifact, artifact_texts, {runtime: x86}, runtimes=[runtime])
    print("\n" + arm.markdown_table([row]))
    assert row["loaded"], row["error"]
    # Bit-exact in tflite-runtime 2.14 too (issue 7): its builtin int8 FC/CONV_2D, which
    # round ties differently on ARM, are our integer op in a portable artifact.
    assert row["differing_texts"] == 0 and row["bit_exact_vs_x86"] is True, row
