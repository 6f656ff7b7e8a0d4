"""The benchmark's parts: latency by token count, the op profile, the teacher beside the artifact
(structure only; no timing asserts)."""

from __future__ import annotations

import pytest

from edge_pqrnn.benchmark import TOKEN_COUNTS, latency_by_tokens, text_with_tokens
from edge_pqrnn.projection import project
from edge_pqrnn.run import load_run


def test_teacher_comparison_times_torch_and_onnxruntime_beside_the_artifact(built):
    from edge_pqrnn.benchmark import teacher_comparison
    from edge_pqrnn.distill.teacher import teacher_available

    if not teacher_available():
        pytest.skip('needs the teacher extra: pip install -e ".[teacher]"')
    from edge_pqrnn.distill.teacher.bench import teacher_timer
    from edge_pqrnn.distill.teacher.model import tiny_encoder

    texts = ["flights from boston to denver", "cheapest fare to dallas on monday"]
    encoder, tokenizer = tiny_encoder([ex.text for ex in built.dataset.train])
    result = teacher_comparison(built.artifact, texts, repeats=3, teacher=teacher_timer(encoder, tokenizer),
                                log=lambda _: None)
    assert set(result["p50_ms"]) == {"teacher-torch-fp32", "teacher-ort-int8", "int8"}
    assert result["torch_fp32_over_int8"] == pytest.approx(
        result["p50_ms"]["teacher-torch-fp32"] / result["p50_ms"]["int8"])
    assert all(v > 0 for v in result["p50_ms"].values())
    assert result["params"] == sum(p.numel() for p in encoder.parameters())
    assert result["fp32_bytes_over_int8_bytes"] == pytest.approx(result["params"] * 4 / len(built.artifact))
    assert result["ort_int8_bytes"] > 0 and len(result["subword_tokens"]) == 2


def test_fixed_batch_runner_keeps_its_interpreter_and_matches_the_signature_runner(built):
    import gc
    import weakref

    import numpy as np

    from edge_pqrnn.runtimes import fixed_batch_runner, interpreter, run_signature

    interp = interpreter(built.artifact)
    alive = weakref.ref(interp)
    run = fixed_batch_runner(interp, 2)
    del interp
    gc.collect()
    # The Interpreter owns the op delegate: collecting it under a live runner crashed.
    assert alive() is not None
    texts = ["flights from boston to denver", ""]
    out = run(np.array([t.encode() for t in texts], dtype=object))
    ref = run_signature(interpreter(built.artifact), texts)
    for key, value in ref.items():
        np.testing.assert_array_equal(out[key], value)


def test_texts_have_exactly_the_token_counts_asked(built):
    run = load_run(built.run_dir)
    words = "show me flights to boston".split()
    for count in (2, 4, 8, 16):
        assert project([text_with_tokens(count, run.spec, words)], run.spec).num_tokens[0] == count


def test_latency_by_tokens_times_each_count_up_to_t_beside_the_static_graph(built):
    from edge_pqrnn.converters.tflite_fuse import fuse
    from edge_pqrnn.build import build_metadata
    from edge_pqrnn.quant.ptq import convert, representative_texts

    run = load_run(built.run_dir)
    texts = [ex.text for ex in built.dataset.train]
    body = convert(run.model, run.spec, representative_texts(texts, run.spec, 60, 10), batch_size=None).model
    metadata = build_metadata(run, built.dataset.name, "int8")
    result = latency_by_tokens(fuse(body, run.spec, metadata), fuse(body, run.spec, metadata, static_tokens=True),
                               run.spec, " ".join(texts).split(), texts[:7], repeats=3)
    assert result["tokens"] == [n for n in TOKEN_COUNTS if n <= 16] == [4, 8, 16]
    assert set(result["p50_ms"]) == set(result["static_p50_ms"]) == {4, 8, 16}
    assert all(ms > 0 for ms in [*result["p50_ms"].values(), *result["static_p50_ms"].values()])
    assert result["p50_64_over_8"] == pytest.approx(result["p50_ms"][16] / result["p50_ms"][8])
    assert result["changing_lengths"]["texts"] == 7 and result["changing_lengths"]["p50_ms"] > 0


def test_op_profile_times_every_operator_at_the_texts_rows(built):
    from edge_pqrnn.measure import op_profile
    from edge_pqrnn.format import load_model as _load

    run = load_run(built.run_dir)
    text = "flights to boston"  # 3 words + EOS: 4 rows
    rows = op_profile(built.artifact, text, repeats=5)
    assert [r["index"] for r in rows] == list(range(len(_load(built.artifact).subgraphs[0].operators)))
    assert rows[0]["op"] == "EdgePqrnnProjection"
    assert rows[0]["shape"] == [1, 4, run.spec.feature_size]  # the default artifact computes 4 rows, not T
    assert min(r["us"] for r in rows) == 0 and all(r["us"] >= 0 for r in rows)
    assert {"FULLY_CONNECTED", "CONV_2D", "EdgePqrnnFoPool"} <= {r["op"] for r in rows}


def test_time_variants_reports_the_first_call_of_each_block_as_cold():
    import time

    from edge_pqrnn.measure import time_variants

    last = []

    def model(name):
        def call():
            if last and last[-1] != name:
                time.sleep(0.005)  # caches "evicted" by the other variant: only the turn's first call pays
            last.append(name)
        return call

    timed = time_variants({"a": model("a"), "b": model("b")}, repeats=20, warmup=1, block=4)
    for row in timed.values():
        assert row["cold_p50_ms"] >= 5 > row["p50_ms"]
    single = time_variants({"a": model("a"), "b": model("b")}, repeats=6, warmup=1)
    assert all(row["cold_p50_ms"] == row["p50_ms"] >= 5 for row in single.values())
