"""The projection as an onnxruntime custom op (projection_ort.c, our own ort_abi.h):
bit-exact with the numpy reference, bad attributes and inputs refused with a message."""

import subprocess
import sys
import threading

import numpy as np
import onnxruntime as ort
import pytest
from hostile_texts import HOSTILE, MIXED, random_texts

from edge_pqrnn.converters.onnx_export import OP_DOMAIN, projection_onnx
from edge_pqrnn.runtimes.onnxruntime import register_op_library, text_tensor
from edge_pqrnn.errors import OpLibraryError
from edge_pqrnn.projection import ProjectionSpec, project
from edge_pqrnn.projection.ops import op_library

SPECS = [
    ProjectionSpec(feature_size=64, max_tokens=24),
    ProjectionSpec(feature_size=77, max_tokens=16, mode="char", add_bos=True),
    ProjectionSpec(feature_size=512, max_tokens=64, lowercase=False, add_eos=False),
]
OUTPUTS = ("features", "mask", "pool_weights", "num_tokens")
TEXTS = random_texts(1200) + list(HOSTILE.values())


def session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    register_op_library(options)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def raw_bytes_tensor(texts: list[bytes]) -> np.ndarray:
    """Raw bytes as onnxruntime passes them intact: a numpy ``S`` array (no NUL inside)."""
    assert all(b"\x00" not in t for t in texts)
    return np.array(texts, dtype=np.bytes_)


def assert_bit_exact(outputs, texts, spec):
    ref = project(texts, spec)
    for name, got, expected in zip(OUTPUTS, outputs, (ref.features, ref.mask, ref.pool_weights, ref.num_tokens)):
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        bad = np.flatnonzero(~(got == expected).reshape(len(expected), -1).all(axis=1))
        assert bad.size == 0, f"{name} differs for texts {bad[:10].tolist()}"


@pytest.mark.parametrize("spec", SPECS, ids=["word64", "char77_bos", "word512_cased"])
def test_ort_op_is_bit_exact_with_reference(spec):
    sess = session(projection_onnx(spec))
    for start in range(0, len(TEXTS), 300):  # batches > 1; the batch size changes between calls
        batch = TEXTS[start : start + 300]
        assert_bit_exact(sess.run(None, {"text": text_tensor(batch)}), batch, spec)


def test_ascii_non_ascii_empty_and_hostile_texts_one_by_one():
    spec = SPECS[0]
    sess = session(projection_onnx(spec))
    named = {"ascii": "show me flights from boston to denver", "non_ascii": "book a flight to Zürich 明天 🙂",
             "mixed": MIXED, "str_lone_surrogate": "x\ud800y", **HOSTILE}
    for name, text in named.items():
        out = sess.run(None, {"text": text_tensor([text])})
        assert_bit_exact(out, [text], spec), name
    assert sess.run(None, {"text": text_tensor(["flights from boston to denver"])})[3].tolist() == [6]


def test_malformed_utf8_bytes_reach_the_op_and_are_dropped_like_the_tflite_op():
    # The op's contract (docs/projection.md, the TFLite op, the numpy reference): invalid
    # UTF-8 bytes are dropped, never an error and never a crash. Raw bytes reach the
    # op through an S array, without decoding in Python.
    spec = SPECS[0]
    sess = session(projection_onnx(spec))
    malformed = [b"fare \xff\xfe to dallas", b"\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80abc\xe2\x82", b"\xff" * 50, b"\xe2",
                 b"caf\xc3", "Zürich".encode("latin-1")]
    raw = [t for t in TEXTS if isinstance(t, bytes) and t and b"\x00" not in t][:200] + malformed
    out = sess.run(None, {"text": raw_bytes_tensor(raw)})
    assert_bit_exact(out, raw, spec)
    # ... and give what their decoded text gives (what OnnxArtifact feeds).
    decoded = sess.run(None, {"text": text_tensor(raw)})
    for a, b in zip(out, decoded):
        assert np.array_equal(a, b)


def test_empty_batch_and_long_batch():
    spec = SPECS[1]
    sess = session(projection_onnx(spec))
    out = sess.run(None, {"text": text_tensor([])})
    assert [o.shape for o in out] == [(0, 16, 77), (0, 16), (0, 16), (0,)]
    batch = TEXTS[:1000]
    assert_bit_exact(sess.run(None, {"text": text_tensor(batch)}), batch, spec)


def test_runs_from_threads_in_parallel():
    spec = SPECS[0]
    sess = session(projection_onnx(spec))
    ref = project(TEXTS[:200], spec)
    failures = []

    def work(offset: int) -> None:
        for k in range(5):
            start = (offset * 37 + k * 11) % 150
            out = sess.run(None, {"text": text_tensor(TEXTS[start : start + 50])})
            if not np.array_equal(out[0], ref.features[start : start + 50]):
                failures.append((offset, k))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


ATTRIBUTES = {key: int(value) for key, value in SPECS[0].op_options().items()}


@pytest.mark.parametrize(("change", "message"), [
    ({"spec_version": 2}, "spec_version 2 is not supported by this op library"),
    ({"feature_size": 0}, "feature_size must be 1..8192, got 0"),
    ({"feature_size": 9000}, "feature_size must be 1..8192, got 9000"),
    ({"max_tokens": 1}, "max_tokens must be 2..4096, got 1"),
    ({"char_mode": 2}, "attribute 'char_mode' must be 0 or 1, got 2"),
    ({"lowercase": -1}, "attribute 'lowercase' must be 0 or 1, got -1"),
    ({"add_eos": None}, "missing or non-integer attribute 'add_eos'"),
    ({"max_tokens": "64"}, "missing or non-integer attribute 'max_tokens'"),
])
def test_bad_attributes_fail_the_session_with_a_message(change, message):
    attributes = {k: v for k, v in {**ATTRIBUTES, **change}.items() if v is not None}
    with pytest.raises(Exception, match="EdgePqrnnProjection: " + message.replace("(", r"\(").replace(".", r"\.")):
        session(projection_onnx(SPECS[0], attributes)).run(None, {"text": text_tensor(["a"])})


@pytest.mark.parametrize("spec", SPECS[:2], ids=["word64", "char77_bos"])
def test_dynamic_tokens_attribute_writes_the_longest_texts_rows_rounded_up_to_4(spec):
    # Issue 20, item 3: with dynamic_tokens=1 the op writes [B, n] rows, n the batch's
    # longest text rounded up to a multiple of 4 (at most T), the TFLite op's rule; each
    # row is the static op's row (texts are never cut below T).
    sess, static = session(projection_onnx(spec, dynamic_tokens=True)), session(projection_onnx(spec))
    batches = [["hi"], ["", ""], ["show me flights from boston to denver", "hi"], TEXTS[:7], TEXTS[100:101],
               ["a " * 200], TEXTS[:300]]
    for batch in batches:
        got, full = sess.run(None, {"text": text_tensor(batch)}), static.run(None, {"text": text_tensor(batch)})
        counts = full[3]
        rows = min(spec.max_tokens, -(-max(1, int(counts.max())) // 4) * 4)
        assert got[0].shape == (len(batch), rows, spec.feature_size) and got[1].shape == got[2].shape == (len(batch), rows)
        assert np.array_equal(got[3], counts)
        for name, a, b in zip(OUTPUTS[:3], got[:3], full[:3]):
            assert np.array_equal(a, b[:, :rows]), name
            assert not b[:, rows:].any(), name
    # An empty batch keeps T rows (nothing to size them by).
    empty = sess.run(None, {"text": text_tensor([])})
    assert empty[0].shape == (0, spec.max_tokens, spec.feature_size)


def test_bad_dynamic_tokens_attribute_fails_the_session():
    with pytest.raises(Exception, match="EdgePqrnnProjection: attribute 'dynamic_tokens' must be 0 or 1, got 2"):
        session(projection_onnx(SPECS[0], {**ATTRIBUTES, "dynamic_tokens": 2})).run(None, {"text": text_tensor(["a"])})


def fo_pool_onnx(reverse: int | None, shape=("batch", "steps", 5)) -> bytes:
    """An .onnx holding one EdgePqrnnFoPool node: z, k, o -> h."""
    from onnx import TensorProto, helper

    attributes = {} if reverse is None else {"reverse": reverse}
    node = helper.make_node("EdgePqrnnFoPool", ["z", "k", "o"], ["h"], domain=OP_DOMAIN, **attributes)
    dims = None if shape is None else list(shape)
    graph = helper.make_graph([node], "fo_pool", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims)
                                                  for n in "zko"],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(OP_DOMAIN, 1)])
    return model.SerializeToString()


@pytest.mark.parametrize("reverse", [0, 1])
def test_fo_pool_op_is_bit_exact_with_its_numpy_twin_and_the_unrolled_steps(reverse):
    from edge_pqrnn.projection.fo_pool import reference_float

    rng = np.random.default_rng(reverse)
    sess = session(fo_pool_onnx(reverse))
    for steps in (1, 3, 17, 64):
        z = np.tanh(rng.normal(size=(3, steps, 5))).astype(np.float32)
        k = (1 / (1 + np.exp(-rng.normal(size=(3, steps, 5))))).astype(np.float32)
        k[:, -2:] = 0  # padded steps: the state is carried unchanged
        o = (1 / (1 + np.exp(-rng.normal(size=(3, steps, 5))))).astype(np.float32)
        [h] = sess.run(None, {"z": z, "k": k, "o": o})
        assert np.array_equal(h, reference_float(z, k, o, bool(reverse)))
        # The recurrence as the Keras model unrolls it (BiQRNN._pool), in float32.
        c, cells = None, np.empty_like(z)
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            c = k[:, t] * z[:, t] if c is None else c + k[:, t] * (z[:, t] - c)
            cells[:, t] = c
        assert np.array_equal(h, o * cells)
    # No attribute: forward; an empty batch: an empty output.
    [h] = session(fo_pool_onnx(None)).run(None, {n: np.zeros((0, 4, 5), np.float32) for n in "zko"})
    assert h.shape == (0, 4, 5)


def test_fo_pool_op_refuses_bad_attributes_and_shapes_with_a_message():
    with pytest.raises(Exception, match="EdgePqrnnFoPool: attribute 'reverse' must be 0 or 1, got 3"):
        session(fo_pool_onnx(3))
    sess = session(fo_pool_onnx(0, shape=None))
    a = np.zeros((1, 4, 5), np.float32)
    with pytest.raises(Exception, match="EdgePqrnnFoPool: inputs z, k, o must have the same shape"):
        sess.run(None, {"z": a, "k": np.zeros((1, 3, 5), np.float32), "o": a})
    with pytest.raises(Exception, match=r"EdgePqrnnFoPool: inputs z, k, o must be float32 \[batch, steps, units\]"):
        sess.run(None, {"z": a[0], "k": a[0], "o": a[0]})


def test_bad_input_rank_and_type_are_refused_with_a_message():
    spec = SPECS[0]
    # An undeclared input shape lets a 2-D tensor reach the op, which names the problem.
    sess = session(projection_onnx(spec, input_shape=None))
    with pytest.raises(Exception, match=r"EdgePqrnnProjection: input must be 1-D \[batch\] text, got rank 2"):
        sess.run(None, {"text": np.array([["a", "b"]], dtype=object)})
    with pytest.raises(Exception, match="EdgePqrnnProjection: input must be 1-D .* got rank 0"):
        sess.run(None, {"text": np.array("a", dtype=object)})
    # A non-string tensor is stopped by onnxruntime's own type check, with its message.
    with pytest.raises(Exception, match=r"expected: \(tensor\(string\)\)"):
        sess.run(None, {"text": np.zeros(2, np.float32)})


def test_unregistered_library_and_missing_library_are_clear():
    model = projection_onnx(SPECS[0])
    with pytest.raises(Exception, match=f"{OP_DOMAIN}:EdgePqrnnProjection.* is not a registered function/op"):
        ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    with pytest.raises(OpLibraryError, match="does not exist"):
        register_op_library(ort.SessionOptions(), "m.onnx", "/nonexistent/libpqrnn_projection.so")
    with pytest.raises(OpLibraryError, match="onnxruntime cannot register the op library"):
        register_op_library(ort.SessionOptions(), "m.onnx", sys.executable)  # a file, but no library


def test_abi_in_a_fresh_process_exits_cleanly():
    # A wrong OrtApi slot or OrtCustomOp offset would crash: do it in a child process
    # that also exits normally after the session is gone (library lifetime).
    code = (
        "import numpy as np, onnxruntime as ort\n"
        "from edge_pqrnn.converters.onnx_export import projection_onnx\n"
        "from edge_pqrnn.runtimes.onnxruntime import register_op_library, text_tensor\n"
        "from edge_pqrnn.projection import ProjectionSpec, project\n"
        "spec = ProjectionSpec(feature_size=40, max_tokens=8)\n"
        "o = ort.SessionOptions(); register_op_library(o)\n"
        "s = ort.InferenceSession(projection_onnx(spec), o, providers=['CPUExecutionProvider'])\n"
        "del o\n"
        "out = s.run(None, {'text': text_tensor(['hello world', ''])})\n"
        "assert np.array_equal(out[0], project(['hello world', ''], spec).features)\n"
        "print(out[3].tolist(), ort.__version__)\n"
        "del s\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("[3, 1]")


def test_library_exports_the_onnxruntime_entry_point():
    import ctypes

    assert hasattr(ctypes.CDLL(op_library()), "RegisterCustomOps")
