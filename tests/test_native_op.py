"""The native op: bit-exact with the numpy reference directly and inside a .tflite in
every runtime, the ABI header proven against each runtime, bad options refused."""

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hostile_texts import HOSTILE, random_texts

from edge_pqrnn.errors import ConfigError, EdgePqrnnError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import (
    op_library,
    op_options_bytes,
    parse_options_native,
    project_native,
    projection_model,
)
from edge_pqrnn.runtimes import interpreter, legacy_tflite_runtime_python, run_in_subprocess, run_signature

SPECS = [
    ProjectionSpec(feature_size=64, max_tokens=24),
    ProjectionSpec(feature_size=77, max_tokens=16, mode="char", add_bos=True),
    ProjectionSpec(feature_size=512, max_tokens=64, lowercase=False, add_eos=False),
]
TEXTS = random_texts(2000) + list(HOSTILE.values())
OUTPUTS = ("features", "mask", "pool_weights", "num_tokens")


def assert_bit_exact(outputs, ref):
    for name, expected in zip(OUTPUTS, (ref.features, ref.mask, ref.pool_weights, ref.num_tokens)):
        got = np.asarray(outputs[name] if isinstance(outputs, dict) else outputs[OUTPUTS.index(name)])
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        bad = np.flatnonzero(~(got == expected).reshape(len(expected), -1).all(axis=1))
        assert bad.size == 0, f"{name} differs for texts {bad[:10].tolist()}"


@pytest.mark.parametrize("spec", SPECS, ids=["word64", "char77_bos", "word512_cased"])
def test_native_core_is_bit_exact_with_reference(spec):
    assert_bit_exact(project_native(TEXTS, spec), project(TEXTS, spec))


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
@pytest.mark.parametrize("spec", SPECS[:2], ids=["word64", "char77_bos"])
def test_op_in_tflite_is_bit_exact_with_reference(runtime, spec):
    interp = interpreter(projection_model(spec), runtime)
    for start in range(0, len(TEXTS), 250):  # batches > 1, and the shape changes between calls
        batch = TEXTS[start : start + 250]
        assert_bit_exact(run_signature(interp, batch), project(batch, spec))


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_batch_of_one_and_hostile_texts_one_by_one(runtime):
    spec = SPECS[0]
    interp = interpreter(projection_model(spec), runtime)
    for name, text in HOSTILE.items():
        assert_bit_exact(run_signature(interp, [text]), project([text], spec)), name


@pytest.mark.slow
def test_op_in_legacy_tflite_runtime_venv(tmp_path):
    try:
        python = legacy_tflite_runtime_python(log=lambda _: None)
    except EdgePqrnnError as exc:
        pytest.skip(f"tflite-runtime 2.14 venv cannot be built here: {exc}")
    spec = SPECS[1]
    model = tmp_path / "projection.tflite"
    model.write_bytes(projection_model(spec))
    texts = TEXTS[:600]
    out = run_in_subprocess(python, "tflite_runtime.interpreter", str(model), texts)
    assert str(out["__version__"]) == "2.14.0"
    assert_bit_exact(out, project(texts, spec))


def test_abi_fields_are_read_where_the_runtime_writes_them():
    # Output shapes come from the node's custom data (T, F) and the input dims (B);
    # values from the tensor's data/bytes; the op resizes outputs through ResizeTensor.
    spec = ProjectionSpec(feature_size=33, max_tokens=5)
    for runtime in ("litert", "tflite"):
        interp = interpreter(projection_model(spec), runtime)
        out = run_signature(interp, ["a b", "c", "d e f g h i"])
        assert out["features"].shape == (3, 5, 33)
        assert out["num_tokens"].tolist() == [3, 2, 5]


def _model_with_float_input(spec: ProjectionSpec) -> bytes:
    from edge_pqrnn.format import schema

    s = schema()
    model = s.ModelT.InitFromPackedBuf(projection_model(spec), 0)
    model.subgraphs[0].tensors[0].type = s.TensorType.FLOAT32
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_abi_type_field_is_checked(runtime):
    interp = interpreter(_model_with_float_input(SPECS[0]), runtime)
    with pytest.raises(RuntimeError, match="input must be a STRING tensor of UTF-8 text, got TfLiteType 1"):
        interp.allocate_tensors()


@pytest.mark.parametrize(
    "options,message",
    [
        ({"spec_version": 2}, "spec_version 2 is not supported"),
        ({"feature_size": 0}, "feature_size must be 1..8192, got 0"),
        ({"max_tokens": 1}, "max_tokens must be 2..4096, got 1"),
        ({"char_mode": 7}, "'char_mode' must be a boolean, got 7"),
        ({"colour": 1}, "unknown custom option 'colour'"),
        ({"dynamic_tokens": 2}, "'dynamic_tokens' must be a boolean, got 2"),
    ],
)
def test_bad_options_are_refused_with_a_message(options, message):
    from flatbuffers import flexbuffers

    raw = bytes(flexbuffers.Dumps({**SPECS[0].op_options(), **options}))
    with pytest.raises(ConfigError, match=message):
        parse_options_native(raw)
    for runtime in ("litert", "tflite"):
        interp = interpreter(projection_model(SPECS[0], custom_options=raw), runtime)
        with pytest.raises(RuntimeError, match=message):
            interp.allocate_tensors()


def test_missing_option_and_garbage_options():
    from flatbuffers import flexbuffers

    opts = SPECS[0].op_options()
    del opts["lowercase"]
    with pytest.raises(ConfigError, match="missing custom option 'lowercase'"):
        parse_options_native(bytes(flexbuffers.Dumps(opts)))
    with pytest.raises(ConfigError, match="missing custom options"):
        parse_options_native(b"")
    with pytest.raises(ConfigError, match="not a flexbuffer map"):
        parse_options_native(bytes(flexbuffers.Dumps([1, 2, 3])))


def test_corrupted_options_never_crash():
    rng = np.random.default_rng(1)
    good = bytearray(op_options_bytes(SPECS[0]))
    accepted = 0
    for _ in range(5000):
        raw = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        cut = bytes(raw[: int(rng.integers(len(raw) + 1))]) if rng.random() < 0.3 else bytes(raw)
        try:
            parse_options_native(cut)
            accepted += 1
        except ConfigError:
            pass
    assert accepted < 5000  # most corruptions are detected; none crashed the process


def test_library_exports_and_builds_from_pip_install():
    lib = pathlib.Path(op_library())
    assert lib.name == "libpqrnn_projection.so"
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    for name in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate", "PQRNN_Register_PROJECTION",
                 "PQRNN_Register_FO_POOL", "PQRNN_Register_INT_MATMUL", "PQRNN_Register_DEQUANTIZE",
                 "PQRNN_Register_QUANTIZE"):
        assert name in symbols
    # Freestanding core: the only undefined symbols are a few libc allocation calls.
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
    names = {line.split()[-1].split("@")[0] for line in undefined.splitlines() if line.strip()}
    assert names - {"malloc", "calloc", "free", "__cxa_finalize", "_ITM_registerTMCloneTable",
                    "_ITM_deregisterTMCloneTable", "__gmon_start__", "memset", "memcpy"} == set()


def test_unicode_tables_are_generated_from_the_script(tmp_path):
    import unicodedata

    from edge_pqrnn.projection import _unicode_data

    if unicodedata.unidata_version != _unicode_data.UNICODE_VERSION:
        pytest.skip(f"this Python has Unicode {unicodedata.unidata_version}, tables are {_unicode_data.UNICODE_VERSION}")
    root = pathlib.Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("gen", root / "tools" / "gen_unicode_data.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.class_runs() == [tuple(r) for r in _unicode_data.CLASS_RUNS]
    header = (root / "edge_pqrnn/projection/native/unicode_data.h").read_text()
    assert f"PQRNN_CLASS_RUN_COUNT {len(_unicode_data.CLASS_RUNS)}" in header
    assert f"PQRNN_LOWER_PAIR_COUNT {len(_unicode_data.LOWER_PAIRS)}" in header


def test_python_exits_cleanly_after_using_the_delegate():
    code = ("from edge_pqrnn.runtimes import interpreter, run_signature\n"
            "from edge_pqrnn.projection import ProjectionSpec\n"
            "from edge_pqrnn.projection.ops import projection_model\n"
            "for rt in ('litert', 'tflite'):\n"
            "    run_signature(interpreter(projection_model(ProjectionSpec(feature_size=8, max_tokens=4)), rt), ['x'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
