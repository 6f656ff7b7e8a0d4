"""Length buckets: extra signatures at smaller T sharing the weights of the full-T body."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from edge_pqrnn.artifact import Artifact, parse_flatbuffer
from edge_pqrnn.cli import main
from edge_pqrnn.converters.tflite_fuse import read_metadata
from edge_pqrnn.errors import ConfigError
from edge_pqrnn.export import export
from edge_pqrnn.model import unrolled_at
from edge_pqrnn.projection import project
from edge_pqrnn.run import load_run

BUCKET = 8  # the fixture's T is 16; its texts have 5-12 tokens with markers


@pytest.fixture(scope="module")
def bucketed(built):
    return export(built.run_dir, None, buckets=(BUCKET,), runtimes=("litert",), calibration_samples=120,
                  log=lambda _: None)


def texts_of(built) -> list[str]:
    return [ex.text for ex in built.dataset.test] + ["", "boston", "fly " * 40]


def test_bucket_model_gives_the_full_model_float_logits_for_texts_that_fit(built):
    run = load_run(built.run_dir)
    model, config = unrolled_at(run.model, run.config, BUCKET)
    texts = texts_of(built)
    full = project(texts, run.spec)
    small = project(texts, config.projection)
    fits = full.num_tokens < BUCKET
    assert 0 < fits.sum() < len(texts)  # both kinds are in the test
    inputs = lambda p: {"features": p.features, "mask": p.mask, "pool_weights": p.pool_weights}  # noqa: E731
    a = run.model(inputs(full), training=False)
    b = model(inputs(small), training=False)
    np.testing.assert_allclose(np.asarray(a["intent_logits"])[fits], np.asarray(b["intent_logits"])[fits],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(a["slot_logits"])[fits, :BUCKET], np.asarray(b["slot_logits"])[fits],
                               rtol=1e-4, atol=1e-4)


def test_bucketed_artifact_has_both_signatures_and_shares_weights(built, bucketed):
    meta = read_metadata(bucketed.artifact)
    assert meta["buckets"] == [BUCKET]
    with Artifact.load(bucketed.artifact) as artifact:
        assert artifact.signatures == [(f"tokens_{BUCKET}", BUCKET), ("serving_default", 16)]
        assert set(artifact._interp.get_signature_list()) == {f"tokens_{BUCKET}", "serving_default"}
    # Shared weights: the bucket adds its graph and biases, not another copy of the weights.
    model = parse_flatbuffer(bucketed.artifact)
    used = [[t.buffer for t in graph.tensors] for graph in model.subgraphs]
    big = {b for b in used[0] if model.buffers[b].data is not None and len(model.buffers[b].data) >= 512}
    assert big and big <= set(used[1])  # every weight matrix of the full graph is the bucket's too
    contents = [bytes(np.asarray(b.data, np.uint8)) for b in model.buffers if b.data is not None and len(b.data)]
    assert len(contents) == len(set(contents))
    assert bucketed.validation.passed


def test_each_text_runs_in_the_smallest_bucket_that_holds_it(built, bucketed):
    texts = texts_of(built)
    with Artifact.load(bucketed.artifact) as artifact, Artifact.load(built.artifact) as plain:
        out, ref = artifact.run(texts, batch_size=7), plain.run(texts)
        from edge_pqrnn.runtimes import run_signature

        small = run_signature(artifact._interp, texts, f"tokens_{BUCKET}")
    np.testing.assert_array_equal(out["num_tokens"], ref["num_tokens"])
    assert out["slot_logits"].shape == ref["slot_logits"].shape
    fits = ref["num_tokens"] < BUCKET
    # Texts that fit come from the bucket, bit for bit; the others from the full-T graph.
    np.testing.assert_array_equal(out["intent_logits"][fits], small["intent_logits"][fits])
    np.testing.assert_array_equal(out["slot_logits"][fits, BUCKET:], 0)
    assert (small["num_tokens"][~fits] == BUCKET).all()
    agree = (out["intent_logits"].argmax(-1) == ref["intent_logits"].argmax(-1)).mean()
    assert agree >= 0.98


def test_buckets_must_be_below_the_models_T(built):
    for bad in ((16,), (40,), (1,)):
        with pytest.raises(ConfigError, match="length bucket"):
            export(built.run_dir, None, buckets=bad, check=False, log=lambda _: None)


def test_cli_buckets_option(built, tmp_path):
    out = tmp_path / "b.tflite"
    result = CliRunner().invoke(main, ["export", str(built.run_dir), "--out", str(out), "--buckets", "8",
                                       "--calibration-samples", "60"])
    assert result.exit_code == 0, result.output
    assert "bucket T=8" in result.output
    assert read_metadata(out.read_bytes())["buckets"] == [8]
    bad = CliRunner().invoke(main, ["export", str(built.run_dir), "--out", str(out), "--buckets", "8,x"])
    assert bad.exit_code == 2 and "comma-separated" in bad.output


def test_bucket_config_is_the_same_model_at_another_T(built):
    run = load_run(built.run_dir)
    _, config = unrolled_at(run.model, run.config, BUCKET)
    assert config == dataclasses.replace(run.config, projection=dataclasses.replace(run.spec, max_tokens=BUCKET))
