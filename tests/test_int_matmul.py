"""The EdgePqrnnIntMatMul op of portable artifacts (issue 7): bit-exact with its numpy
twin in real runtimes (random and extreme values, every activation, FC and conv), its
Prepare refuses bad graphs with a message, and `export --portable-kernels` leaves no
FULLY_CONNECTED or CONV_2D in any subgraph while the default export keeps them."""

from __future__ import annotations

import numpy as np
import pytest
from flatbuffers import flexbuffers

import artifact_fixtures
from edge_pqrnn.projection.int_matmul import (DEQUANTIZE_OP, INT_MATMUL_OP, QUANTIZE_OP, Geometry,
                                              dequantize_reference, int_matmul_model, quantize_reference, reference)
from edge_pqrnn.format import schema
from edge_pqrnn.runtimes import interpreter
from test_fo_pool import op_counts


def run_op(runtime: str, model: bytes, x: np.ndarray) -> np.ndarray:
    return interpreter(model, runtime).get_signature_runner()(x=x)["y"]


def random_case(rng: np.random.Generator, kind: str):
    """(x, w, bias, geometry, x_q, w_scales, out_q) with random shapes, codes and scales."""
    n = int(rng.integers(1, 40))
    activation = int(rng.integers(0, 4))
    if kind == "fc":
        k = int(rng.integers(1, 70))
        x = rng.integers(-128, 128, (int(rng.integers(1, 9)), k))
        w = rng.integers(-127, 128, (n, k))
        geometry = Geometry.fully_connected(activation)
    else:
        c, kw = int(rng.integers(1, 20)), int(rng.integers(1, 4))
        kh = int(rng.integers(1, 3))
        x = rng.integers(-128, 128, (int(rng.integers(1, 3)), kh + int(rng.integers(0, 3)), kw + int(rng.integers(0, 9)), c))
        w = rng.integers(-127, 128, (n, kh, kw, c))
        geometry = Geometry.conv_2d(activation)
    per_channel = bool(rng.integers(0, 2))
    w_scales = [float(np.float32(10 ** rng.uniform(-4, -1))) for _ in range(n if per_channel else 1)]
    x_q = (float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128)))
    out_q = (float(np.float32(10 ** rng.uniform(-2, 1))), int(rng.integers(-128, 128)))
    bias = rng.integers(-(2 ** 20), 2 ** 20, n).astype(np.int32) if rng.integers(0, 4) else None
    return x.astype(np.int8), w.astype(np.int8), bias, geometry, x_q, w_scales, out_q


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_op_is_bit_exact_with_the_numpy_reference(runtime, kind):
    rng = np.random.default_rng(11 + (kind == "conv"))
    for _ in range(16):
        x, w, bias, geometry, x_q, w_scales, out_q = random_case(rng, kind)
        model = int_matmul_model(x.shape, w, bias, geometry, x_q, w_scales, out_q)
        np.testing.assert_array_equal(run_op(runtime, model, x), reference(x, w, bias, geometry, x_q, w_scales, out_q),
                                      err_msg=f"{geometry} {x.shape} {w.shape} {x_q} {out_q}")


def test_the_atis_gate_convolution_shape():
    # [1, 1, 66, 128] * [384, 1, 3, 128] -> [1, 1, 64, 384], as the converter wrote the
    # default model's layer-0 gates (per-channel weights, zero point -128 input).
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (1, 1, 66, 128)).astype(np.int8)
    w = rng.integers(-127, 128, (384, 1, 3, 128)).astype(np.int8)
    bias = rng.integers(-30000, 30000, 384).astype(np.int32)
    w_scales = [float(np.float32(v)) for v in 10 ** rng.uniform(-3, -2, 384)]
    args = (Geometry.conv_2d(), (0.03, -128), w_scales, (0.198, 11))
    got = run_op("litert", int_matmul_model(x.shape, w, bias, *args), x)
    assert got.shape == (1, 1, 64, 384)
    np.testing.assert_array_equal(got, reference(x, w, bias, *args))


def test_extreme_values_and_ties():
    # All-extreme codes (|acc| at its bound), multipliers at both ends, and scales whose
    # ratio is an exact power of two so that half of the products are exact .5 ties,
    # negative ones included: the rounding rule shows in every output.
    cases = []
    k = 512
    for xv, wv in [(-128, -127), (127, 127), (-128, 127)]:
        x = np.full((3, k), xv, np.int8)
        w = np.full((4, k), wv, np.int8)
        cases.append((x, w, np.array([2 ** 31 - 1, -(2 ** 31), 0, 7], np.int32), (1.0, 127), [1e-9], (100.0, -128)))
        cases.append((x, w, None, (1e-3, -128), [1e-3], (1e-2, 0)))
    x = np.arange(-128, 128, dtype=np.int8).reshape(64, 4)
    w = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]], np.int8)
    cases.append((x, w, np.array([0, 1, -1], np.int32), (0.5, 0), [0.5], (0.5, 0)))  # x / 2: ties
    cases.append((x, w, None, (0.25, 3), [1.0], (1.0, -3)))  # x / 4: quarter steps, ties too
    for x, w, bias, x_q, w_scales, out_q in cases:
        for activation in range(4):
            geometry = Geometry.fully_connected(activation)
            model = int_matmul_model(x.shape, w, bias, geometry, x_q, w_scales, out_q)
            np.testing.assert_array_equal(run_op("litert", model, x),
                                          reference(x, w, bias, geometry, x_q, w_scales, out_q))
    # the tie rule itself: -1.5 -> -2 and 1.5 -> 2 (half away from zero)
    x = np.array([[-3], [3], [-1], [1]], np.int8)
    y = reference(x, np.array([[1]], np.int8), None, Geometry.fully_connected(), (0.5, 0), [1.0], (1.0, 0))
    assert y[:, 0].tolist() == [-2, 2, -1, 1]


def dequantize_model(shape: tuple[int, ...], scale: float, zero: int, options: bytes | None = None,
                     output_type: int | None = None, quantize: bool = False) -> bytes:
    """A .tflite holding one EdgePqrnnDequantize node: int8 ``x`` -> float32 ``y`` (or with
    ``quantize`` one EdgePqrnnQuantize: float32 ``x`` -> int8 ``y``)."""
    import flatbuffers

    from edge_pqrnn.projection.int_matmul import dequantize_options_bytes

    s = schema()
    model, graph = s.ModelT(), s.SubGraphT()
    model.version, model.buffers = 3, [s.BufferT()]
    q = s.QuantizationParametersT()
    q.scale, q.zeroPoint = [scale], [zero]
    x, y = s.TensorT(), s.TensorT()
    x.name, x.type, x.shape, x.buffer, x.quantization = "x", s.TensorType.INT8, list(shape), 0, q
    y.name, y.type, y.shape, y.buffer = "y", s.TensorType.FLOAT32 if output_type is None else output_type, list(shape), 0
    if quantize:
        x.type, x.quantization, y.quantization = s.TensorType.FLOAT32, None, q
        y.type = s.TensorType.INT8 if output_type is None else output_type
    graph.tensors = [x, y]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode, code.version = QUANTIZE_OP if quantize else DEQUANTIZE_OP, 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.customOptions = list(dequantize_options_bytes() if options is None else options)
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    graph.operators, graph.inputs, graph.outputs = [op], [0], [1]
    model.operatorCodes, model.subgraphs = [code], [graph]
    sig = s.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs, sig.outputs = [s.TensorMapT()], [s.TensorMapT()]
    sig.inputs[0].name, sig.inputs[0].tensorIndex, sig.outputs[0].name, sig.outputs[0].tensorIndex = "x", 0, "y", 1
    model.signatureDefs = [sig]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_dequantize_is_bit_exact_with_the_numpy_reference(runtime):
    rng = np.random.default_rng(17)
    x = np.arange(-128, 128, dtype=np.int8).reshape(2, 8, 16)
    for scale, zero in [(0.12731011, -10), (0.10270836, -16), (1e-30, 127), (3e30, -128)] + [
            (float(np.float32(10 ** rng.uniform(-4, 1))), int(rng.integers(-128, 128))) for _ in range(8)]:
        scale = float(np.float32(scale))
        got = run_op(runtime, dequantize_model(x.shape, scale, zero), x)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), dequantize_reference(x, scale, zero).view(np.uint32))
    s = schema()
    for model, message in [(dequantize_model((2, 3), 0.1, 0, output_type=s.TensorType.INT8), "float32"),
                           (dequantize_model((2, 3), 0.1, 0, options=bytes(flexbuffers.Dumps({"version": 2}))),
                            "unsupported version"),
                           (dequantize_model((2, 3), 0.0, 0), "finite scale > 0")]:
        with pytest.raises(RuntimeError, match=f"EdgePqrnnDequantize: .*{message}"):
            interpreter(model, runtime).allocate_tensors()


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_quantize_is_bit_exact_with_the_numpy_reference(runtime):
    # pool weights 1/n, ternary features, exact .5 ties of both signs, extremes and NaN
    rng = np.random.default_rng(19)
    x = np.concatenate([1.0 / np.arange(1, 65), [-1.0, 0.0, 1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1e30, -1e30,
                                                 np.inf, -np.inf, np.nan], rng.normal(0, 3, 50)]).astype(np.float32)
    for scale, zero in [(0.0039215689, -128), (1.0, 0), (0.5, 3), (1 / 3, -7)] + [
            (float(np.float32(10 ** rng.uniform(-4, 0))), int(rng.integers(-128, 128))) for _ in range(6)]:
        scale = float(np.float32(scale))
        got = run_op(runtime, dequantize_model(x.shape, scale, zero, quantize=True), x)
        np.testing.assert_array_equal(got, quantize_reference(x, scale, zero), err_msg=f"{scale} {zero}")
    assert quantize_reference(np.array([0.5, -0.5, 1.5, -1.5], np.float32), 1.0, 0).tolist() == [1, -1, 2, -2]
    with pytest.raises(RuntimeError, match="EdgePqrnnQuantize: .*int8"):
        interpreter(dequantize_model((2,), 0.1, 0, quantize=True, output_type=schema().TensorType.FLOAT32),
                    runtime).allocate_tensors()


def test_prepare_refuses_bad_graphs_with_a_message():
    s = schema()
    x = np.zeros((2, 4), np.int8)
    w = np.ones((3, 4), np.int8)
    fc = Geometry.fully_connected()
    good = ((0.1, 0), [0.01], (0.1, 0))

    def options(**values):
        return bytes(flexbuffers.Dumps({"version": 1, "kind": 0, "activation": 0, **values}))

    bad = {
        "float input": (int_matmul_model(x.shape, w, None, fc, *good, x_type=s.TensorType.FLOAT32),
                        "must be int8 tensors"),
        "asymmetric weights": (int_matmul_model(x.shape, w, None, fc, *good, w_zero=3), "symmetric"),
        "weights as an input": (int_matmul_model(x.shape, w, None, fc, *good, constant_weights=False),
                                "constant tensor"),
        "zero scale": (int_matmul_model(x.shape, w, None, fc, (0.0, 0), [0.01], (0.1, 0)), "finite scale > 0"),
        "zero weight scale": (int_matmul_model(x.shape, w, None, fc, (0.1, 0), [0.0], (0.1, 0)), "finite and > 0"),
        "tiny output scale": (int_matmul_model(x.shape, w, None, fc, (100.0, 0), [100.0], (1e-9, 0)),
                              "output scale is too small"),
        "fc x not a multiple": (int_matmul_model((2, 5), w, None, fc, *good), "multiple of the weights"),
        "conv with 2-D weights": (int_matmul_model(x.shape, w, None, Geometry.conv_2d(), *good), "rank 4"),
        "conv kernel too wide": (int_matmul_model((1, 1, 2, 4), np.ones((3, 1, 3, 4), np.int8), None,
                                                  Geometry.conv_2d(), *good), "at least as large as the kernel"),
        "unknown option": (int_matmul_model(x.shape, w, None, fc, *good, custom_options=options(colour=1)),
                           "unknown custom option 'colour'"),
        "kind 2": (int_matmul_model(x.shape, w, None, fc, *good, custom_options=options(kind=2)), "'kind' must be"),
        "activation tanh": (int_matmul_model(x.shape, w, None, fc, *good, custom_options=options(activation=4)),
                            "'activation' must be"),
        "version 2": (int_matmul_model(x.shape, w, None, fc, *good, custom_options=options(version=2)),
                      "unsupported version"),
        "no options": (int_matmul_model(x.shape, w, None, fc, *good, custom_options=b""), "missing custom options"),
    }
    for runtime in ("litert", "tflite"):
        for name, (model, message) in bad.items():
            interp = interpreter(model, runtime)
            with pytest.raises(RuntimeError, match=f"EdgePqrnnIntMatMul: .*{message}"):
                interp.allocate_tensors()


def test_corrupted_options_never_crash():
    from edge_pqrnn.projection.int_matmul import options_bytes

    rng = np.random.default_rng(3)
    good = bytearray(options_bytes(Geometry.conv_2d(1)))
    x, w = np.zeros((1, 1, 4, 2), np.int8), np.ones((2, 1, 2, 2), np.int8)
    for _ in range(200):
        raw = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        model = int_matmul_model(x.shape, w, None, Geometry.conv_2d(), (0.1, 0), [0.1], (0.1, 0),
                                 custom_options=bytes(raw))
        interp = interpreter(model, "litert")
        try:
            interp.allocate_tensors()
            interp.get_signature_runner()(x=x)
        except (RuntimeError, ValueError):
            pass  # refused with a message; the point is that the process lives on


# ------------------------------------------------------------------ the export's surgery


@pytest.fixture(scope="module")
def portable(built):
    from edge_pqrnn.export import export

    return export(built.run_dir, None, runtimes=("litert", "tflite"), calibration_samples=120,
                  portable_kernels=True, log=lambda _: None)


def test_portable_export_has_no_builtin_matmul_in_any_subgraph(built, portable):
    from edge_pqrnn.artifact import Artifact
    from edge_pqrnn.converters.tflite_fuse import read_metadata

    counts = op_counts(portable.artifact)
    assert len(counts) == 1  # serving_default
    layers = artifact_fixtures.MODEL.layers
    for count in counts:
        assert count["FULLY_CONNECTED"] == 0 and count["CONV_2D"] == 0 and count["DEQUANTIZE"] == 0, count
        assert count[DEQUANTIZE_OP] >= 1, count  # the logits' int8 -> float32
        assert count["QUANTIZE"] == 0 and count[QUANTIZE_OP] == 3, count  # features, mask, pool weights
        # bottleneck, attention score, intent head, slot head + two gate convs per layer
        assert count[INT_MATMUL_OP] == 4 + 2 * layers, count
    assert read_metadata(portable.artifact)["portable_kernels"] is True
    assert portable.validation.passed  # the export's gates against the float reference
    # The default export is unchanged: XNNPACK's FC/CONV_2D, no matmul op.
    for count in op_counts(built.artifact):
        assert count[INT_MATMUL_OP] == 0 and count["FULLY_CONNECTED"] == 4 and count["CONV_2D"] == 2 * layers, count
    assert read_metadata(built.artifact)["portable_kernels"] is False
    # litert and tf.lite give the same bits (our op in both).
    texts = [ex.text for ex in built.dataset.test[:40]]
    with Artifact.load(portable.artifact, runtime="litert") as a, Artifact.load(portable.artifact, runtime="tflite") as b:
        got, ref = b.run(texts), a.run(texts)
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key])


def test_inspect_shows_portable_kernels(portable, tmp_path):
    from edge_pqrnn.inspect_artifact import inspect, render

    path = tmp_path / "portable.tflite"
    path.write_bytes(portable.artifact)
    info = inspect(path)
    assert info["metadata"]["portable_kernels"] is True
    assert info["ops"]["custom"][INT_MATMUL_OP] == 4 + 2 * artifact_fixtures.MODEL.layers  # one subgraph
    assert "portable kernels (EdgePqrnnIntMatMul)" in render(info)
    # the matmul weights are counted per layer, as in a default artifact
    assert {"bottleneck", "qrnn_0", "slot_head"} <= set(info["bytes"]["weights"]), info["bytes"]["weights"]
    assert not info["problems"]


def test_portable_kernels_need_an_int8_tflite(built):
    from edge_pqrnn.errors import ConfigError
    from edge_pqrnn.export import export

    with pytest.raises(ConfigError, match="--scheme int8"):
        export(built.run_dir, None, scheme="float", portable_kernels=True, check=False, log=lambda _: None)
    with pytest.raises(ConfigError, match=".tflite"):
        export(built.run_dir, None, format="onnx", portable_kernels=True, check=False, log=lambda _: None)
