"""The EdgePqrnnFoPool op (issue 7): bit-exact with its numpy twin in real runtimes, its
Prepare refuses bad graphs with a message, and the export's graph surgery leaves no
unrolled SUB/MUL/ADD recurrence behind."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from flatbuffers import flexbuffers

import artifact_fixtures
from edge_pqrnn.artifact import parse_flatbuffer
from edge_pqrnn.projection.fo_pool import FO_POOL_OP, Quantization, fo_pool_model, reference
from edge_pqrnn.projection.ops import schema
from edge_pqrnn.runtimes import interpreter

#: What the converter gave the default ATIS model's first backward direction.
ATIS = Quantization(z=(0.0078125, 0), k=(0.003882353, -128), o=(0.00390625, -128), out=(0.007843138, -1))


def run_op(runtime: str, q: Quantization, z: np.ndarray, k: np.ndarray, o: np.ndarray, reverse: bool) -> np.ndarray:
    interp = interpreter(fo_pool_model(z.shape, q, reverse), runtime)
    return interp.get_signature_runner()(z=z, k=k, o=o)["h"]


def random_quantization(rng: np.random.Generator) -> Quantization:
    def pick(low: float, high: float) -> tuple[float, int]:
        return float(np.float32(10 ** rng.uniform(low, high))), int(rng.integers(-128, 128))

    return Quantization(z=pick(-3, 0), k=pick(-3, -2), o=pick(-3, -1), out=pick(-3, 0))


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_op_is_bit_exact_with_the_numpy_reference(runtime, reverse):
    rng = np.random.default_rng(7 + reverse)
    cases = [(ATIS, (3, 64, 16))] + [(random_quantization(rng), (2, 9, 5)) for _ in range(12)]
    for q, shape in cases:
        z, k, o = (rng.integers(-128, 128, shape).astype(np.int8) for _ in range(3))
        got = run_op(runtime, q, z, k, o, reverse)
        np.testing.assert_array_equal(got, reference(z, k, o, q, reverse), err_msg=str(q))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
def test_extreme_codes_and_scales(reverse):
    # Every code at both ends, a gate that saturates at 1 (k scale 1/64 with zero -128),
    # a state driven to its clamp and an output multiplier so small only rounding is left.
    extremes = np.array([-128, 127, -1, 0, 1], np.int8)
    z = np.tile(extremes, (2, 20, 1))
    k = np.roll(z, 1, axis=2)
    o = np.roll(z, 2, axis=2)
    for q in [ATIS,
              Quantization(z=(1.0, -128), k=(1 / 64, -128), o=(1.0, 127), out=(1e-3, 127)),
              Quantization(z=(1e-3, 127), k=(1e-3, 127), o=(1e-3, -128), out=(100.0, 0)),
              Quantization(z=(3e-7, 0), k=(0.5, 0), o=(2e-6, 0), out=(1.0, 0))]:
        got = run_op("litert", q, z, k, o, reverse)
        np.testing.assert_array_equal(got, reference(z, k, o, q, reverse), err_msg=str(q))


def test_direction_and_the_recurrence():
    # k = 1 copies z into the state; k = 0 keeps it: the walking order shows in the output.
    q = Quantization(z=(1 / 128, 0), k=(1 / 255, -128), o=(1 / 255, -128), out=(1 / 128, 0))
    z = np.array([[[10], [20], [30], [40]]], np.int8)
    k = np.array([[[127], [-128], [127], [-128]]], np.int8)  # k = 1, 0, 1, 0
    o = np.full((1, 4, 1), 127, np.int8)  # o = 1
    assert run_op("litert", q, z, k, o, False)[0, :, 0].tolist() == [10, 10, 30, 30]
    assert run_op("litert", q, z, k, o, True)[0, :, 0].tolist() == [10, 30, 30, 0]  # from t=3 down


def test_prepare_refuses_bad_graphs_with_a_message():
    s = schema()
    shape = (1, 4, 3)
    bad = {
        "float inputs": (fo_pool_model(shape, ATIS, input_type=s.TensorType.FLOAT32), "must be int8 tensors"),
        "no output quantization": (fo_pool_model(shape, ATIS, quantize_output=False), "quantization parameters"),
        "zero scale": (fo_pool_model(shape, Quantization(z=(0.0, 0), k=ATIS.k, o=ATIS.o, out=ATIS.out)),
                       "finite scale > 0"),
        "tiny output scale": (fo_pool_model(shape, Quantization(z=(100.0, 0), k=ATIS.k, o=(100.0, 0), out=(1e-9, 0))),
                              "output scale is too small"),
        "unknown option": (fo_pool_model(shape, ATIS, custom_options=bytes(flexbuffers.Dumps(
            {"version": 1, "reverse": 0, "colour": 1}))), "unknown custom option 'colour'; allowed: version, reverse"),
        "reverse 2": (fo_pool_model(shape, ATIS, custom_options=bytes(flexbuffers.Dumps(
            {"version": 1, "reverse": 2}))), "'reverse' must be a boolean"),
        "version 2": (fo_pool_model(shape, ATIS, custom_options=bytes(flexbuffers.Dumps(
            {"version": 2, "reverse": 0}))), "unsupported version"),
        "no options": (fo_pool_model(shape, ATIS, custom_options=b""), "missing custom options"),
    }
    for runtime in ("litert", "tflite"):
        for name, (model, message) in bad.items():
            interp = interpreter(model, runtime)
            with pytest.raises(RuntimeError, match=f"EdgePqrnnFoPool: .*{message}"):  # errors name their op
                interp.allocate_tensors()
    # Shapes that disagree: resize one input only.
    interp = interpreter(fo_pool_model(shape, ATIS), "litert")
    interp.resize_tensor_input(interp.get_input_details()[1]["index"], [1, 5, 3])
    with pytest.raises(RuntimeError, match="same shape"):
        interp.allocate_tensors()


def test_corrupted_options_never_crash():
    from edge_pqrnn.projection.fo_pool import options_bytes

    rng = np.random.default_rng(3)
    good = bytearray(options_bytes(True))
    for _ in range(300):
        raw = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        interp = interpreter(fo_pool_model((1, 3, 2), ATIS, custom_options=bytes(raw)), "litert")
        try:
            interp.allocate_tensors()
        except RuntimeError:
            pass  # refused with a message; the point is that the process lives on


# ------------------------------------------------------------------ the export's surgery


def op_counts(artifact: bytes) -> list[collections.Counter]:
    s = schema()
    model = parse_flatbuffer(artifact)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    counts = []
    for graph in model.subgraphs:
        count: collections.Counter = collections.Counter()
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            count[name if name != "CUSTOM" else code.customCode.decode()] += 1
        counts.append(count)
    return counts


def test_surgery_leaves_no_recurrence_chain(built):
    layers = artifact_fixtures.MODEL.layers
    (count,) = op_counts(built.artifact)  # one subgraph: serving_default
    assert count[FO_POOL_OP] == 2 * layers, count
    # the recurrence was SUB/UNPACK per step; what is left of MUL/ADD is masking, the
    # gates, the pooling head and the slot logits' mask and PAD back to T in the default
    # graph (a handful, not T per direction)
    assert count["SUB"] == 0 and count["UNPACK"] == 0, count
    assert count["MUL"] <= 8 * layers + 6 and count["ADD"] <= 5, count


def test_float_body_is_left_alone(built):
    from edge_pqrnn.converters.tflite_fuse import fuse_fo_pooling
    from edge_pqrnn.format import load_model as _load
    from edge_pqrnn.quant import convert
    from edge_pqrnn.run import load_run

    run = load_run(built.run_dir)
    body = convert(run.model, run.spec, [], scheme="float")
    assert fuse_fo_pooling(_load(body.model)) == 0  # float tensors: nothing to fuse
