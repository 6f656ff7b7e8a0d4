"""The default artifact computes only the token rows of the batch's longest text.

The same int8 body fused twice (``static_tokens=True``: every shape at T; default: the
projection op sizes its outputs to the longest text and the body follows) must give the
same bits on every row a text has, in every in-process runtime, whatever the order of
lengths (each change of length re-prepares the nodes after the op).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_pqrnn.build import build_metadata
from edge_pqrnn.converters.tflite_fuse import dynamic_tokens, fuse, prepend_projection, read_metadata
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.format import load_model as _load
from edge_pqrnn.quant.ptq import convert, representative_texts
from edge_pqrnn.runtimes import fixed_batch_runner, interpreter
from edge_pqrnn.run import load_run

WORDS = "show me flights from boston to denver on monday and fares to dallas please".split()


@pytest.fixture(scope="module")
def pair(built):
    """(run, static artifact, dynamic artifact) fused from one int8 body."""
    run = load_run(built.run_dir)
    calibration = representative_texts([ex.text for ex in built.dataset.train], run.spec, samples=120,
                                       full_length=20)
    body = convert(run.model, run.spec, calibration, scheme="int8", batch_size=None).model
    metadata = build_metadata(run, built.dataset.name, "int8")
    return run, fuse(body, run.spec, metadata, static_tokens=True), fuse(body, run.spec, metadata)


def text(words: int) -> str:
    return " ".join((WORDS * 4)[:words])


def assert_same_rows(static: dict, dynamic: dict, max_tokens: int) -> None:
    np.testing.assert_array_equal(dynamic["num_tokens"], static["num_tokens"])
    np.testing.assert_array_equal(dynamic["intent_logits"], static["intent_logits"])
    assert dynamic["slot_logits"].shape == static["slot_logits"].shape
    assert dynamic["slot_logits"].shape[1] == max_tokens  # padded back to T: the contract's shape
    for row, count in enumerate(static["num_tokens"]):
        np.testing.assert_array_equal(dynamic["slot_logits"][row, :count], static["slot_logits"][row, :count])
        # rows past the text are +0.0 (not -0.0): the same bits as when it runs alone
        assert not dynamic["slot_logits"][row, count:].any()
        assert not np.signbit(dynamic["slot_logits"][row, count:]).any()


@pytest.mark.parametrize("runtime", ["litert", "tflite"])
def test_dynamic_artifact_gives_the_static_bits_at_every_length(pair, runtime):
    run, static, dynamic = pair
    T = run.spec.max_tokens
    one = [fixed_batch_runner(interpreter(a, runtime), 1) for a in (static, dynamic)]
    # lengths up and down, repeats, empty, and longer than T (truncated at T)
    for words in [3, 9, 1, 14, 14, 0, 2, 30, 6, 15, 4]:
        batch = np.array([text(words).encode()], dtype=object)
        assert_same_rows(one[0](batch), one[1](batch), T)
    # a fresh interpreter whose first text fills T: the op's buffers exist before any resize
    batch = np.array([text(T - 1).encode()], dtype=object)
    fresh = [fixed_batch_runner(interpreter(a, runtime), 1)(batch) for a in (static, dynamic)]
    assert fresh[0]["num_tokens"][0] == T
    assert_same_rows(*fresh, T)
    four = [fixed_batch_runner(interpreter(a, runtime), 4) for a in (static, dynamic)]
    for lengths in ([2, 7, 1, 4], [12, 3, 3, 0], [1, 1, 1, 1], [40, 2, 9, 5]):
        batch = np.array([text(w).encode() for w in lengths], dtype=object)
        assert_same_rows(four[0](batch), four[1](batch), T)


def test_metadata_records_whether_the_tokens_follow_the_text(pair, built):
    run, static, dynamic = pair
    assert read_metadata(dynamic)["dynamic_tokens"] is True
    assert read_metadata(static)["dynamic_tokens"] is False


def test_the_default_graph_has_no_shape_ops_and_a_portable_one_keeps_t(pair, built):
    from edge_pqrnn.quant.ptq import analyse

    run, static, dynamic = pair
    ops = analyse(dynamic)[0]
    # FULLY_CONNECTEDs read the sequence with keep_num_dims: no runtime shape arithmetic
    # for them (a SHAPE is left for the mask's RESHAPE and one for the slot logits' PAD)
    assert "GATHER" not in ops and "REDUCE_PROD" not in ops and ops["SHAPE"] <= 2
    assert sum(ops.values()) < sum(analyse(static)[0].values())
    calibration = representative_texts([ex.text for ex in built.dataset.train], run.spec, samples=60, full_length=10)
    body = convert(run.model, run.spec, calibration, scheme="int8", batch_size=None).model
    portable = fuse(body, run.spec, build_metadata(run, built.dataset.name, "int8"), portable_kernels=True)
    assert read_metadata(portable)["dynamic_tokens"] is False


def test_a_float_body_stays_at_t_and_the_pass_says_why(built):
    run = load_run(built.run_dir)
    body = convert(run.model, run.spec, scheme="float", batch_size=None).model
    artifact = fuse(body, run.spec, build_metadata(run, built.dataset.name, "float"))
    assert read_metadata(artifact)["dynamic_tokens"] is False
    model = _load(body)
    prepend_projection(model, run.spec)
    with pytest.raises(ArtifactError, match=r"the recurrence is unrolled over T=16 steps \(a float body\?\): its "
                                            "token axis cannot follow the text"):
        dynamic_tokens(model, run.spec)
