"""ONNX export: tf2onnx float and onnxruntime int8 QDQ, run in real onnxruntime against the run."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edge_pqrnn.cli import main
from edge_pqrnn.converters.onnx_export import (INPUTS, METADATA_KEY, OnnxArtifact, check_onnx, export_onnx,
                                               is_onnx, with_metadata)
from edge_pqrnn.errors import ArtifactError, ConfigError
from edge_pqrnn.export import export
from edge_pqrnn.pipeline import train_run
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.train import load_run
from edge_pqrnn.validate import validate

TEXTS = ["flights from boston to denver", "what is the cheapest fare to dallas tomorrow", "", "hi",
         "show me ground transportation in washington please", b"fare \xff\xfe"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("onnx") / "run"
    train_run("fixture:atis", run_dir, spec=ProjectionSpec(feature_size=64, max_tokens=24),
              model_options={"bottleneck": 32, "state": 32}, train_options={"epochs": 4}, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def float_onnx(tiny_run, tmp_path_factory):
    """The float .onnx, made by the CLI (which validates it before writing)."""
    out = tmp_path_factory.mktemp("onnx_out") / "model.onnx"
    result = CliRunner().invoke(main, ["export", str(tiny_run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "✓ intent agreement (onnxruntime vs float)" in result.output
    return out


@pytest.fixture(scope="module")
def int8_onnx(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_int8") / "model.int8.onnx"
    # Validated below with thresholds that fit an under-trained tiny model (near-tied logits).
    return export_onnx(tiny_run, out, int8=True, check=False, calibration_samples=100, log=lambda _: None)


def test_float_onnx_passes_checker_with_metadata_and_dynamic_batch(float_onnx, tiny_run):
    run = load_run(tiny_run)
    proto = onnx.load(str(float_onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 15
    assert [i.name for i in proto.graph.input] == list(INPUTS)
    assert {o.name for o in proto.graph.output} == {"intent_logits", "slot_logits"}
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[METADATA_KEY])
    assert meta["intents"] == list(run.labels.intents) and meta["tags"] == list(run.labels.tags)
    assert meta["projection"] == run.spec.to_dict() and meta["model_config"] == run.config.to_dict()
    assert meta["scheme"] == "float" and meta["toolkit_version"] and meta["dataset"] == "fixture:atis"
    # Each field also under its own key, readable without our JSON.
    assert json.loads(props["intents"]) == list(run.labels.intents)
    assert json.loads(props["projection"]) == run.spec.to_dict()
    assert props["toolkit_version"] == meta["toolkit_version"]
    assert "project(texts" in props["preprocessing"]
    assert check_onnx(float_onnx).metadata == meta


def test_float_onnx_matches_keras_at_any_batch(float_onnx, tiny_run):
    run = load_run(tiny_run)
    ref = run.predict(TEXTS)
    with OnnxArtifact.load(float_onnx) as model:
        for batch_size in (1, 4, 64):
            out = model.run(TEXTS, batch_size=batch_size)
            assert np.abs(out["intent_logits"] - ref.intent).max() < 1e-4
            assert np.abs(out["slot_logits"] - ref.slots).max() < 1e-4
        predictions = model.predict(TEXTS)
    assert [p.intent for p in predictions] == [run.labels.intents[i] for i in ref.intent.argmax(-1)]
    assert predictions[0].num_tokens == 6  # 5 words + EOS


def test_validate_onnx_same_keys_as_tflite(float_onnx, tiny_run):
    report = validate(float_onnx, tiny_run)
    assert set(report.runtimes) == {"onnxruntime"} and report.runtimes["onnxruntime"].loaded
    assert report.passed, report.lines()
    assert report.intent_agreement == 1.0 and report.slot_agreement == 1.0
    assert report.max_abs_diff < 1e-4 and report.bytes == float_onnx.stat().st_size
    keys = set(report.to_dict())
    assert {"intent_agreement", "slot_agreement", "max_abs_diff", "bytes", "runtimes", "accuracy"} <= keys
    # The .tflite report has exactly the same keys.
    tflite = export(tiny_run, None, check=False, log=lambda _: None).artifact
    assert set(validate(tflite, tiny_run, runtimes=("litert",)).to_dict()) == keys


def test_cli_validate_and_predict_onnx(float_onnx, tiny_run):
    runner = CliRunner()
    result = runner.invoke(main, ["validate", str(float_onnx), "--reference", str(tiny_run), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["passed"] and data["intent_agreement"] == 1.0 and "onnxruntime" in data["runtimes"]
    result = runner.invoke(main, ["predict", str(float_onnx), "flights from boston to denver", "--json"])
    assert result.exit_code == 0, result.output
    [prediction] = json.loads(result.output[result.output.index("["):])
    assert prediction["num_tokens"] == 6 and prediction["intent"]


def test_int8_onnx_is_qdq_smaller_and_agrees(int8_onnx, float_onnx, tiny_run):
    proto = onnx.load_from_string(int8_onnx.artifact)
    onnx.checker.check_model(proto)
    assert int8_onnx.scheme == "int8"
    assert int8_onnx.op_counts.get("QuantizeLinear", 0) > 0 and int8_onnx.op_counts.get("DequantizeLinear", 0) > 0
    assert len(int8_onnx.artifact) < float_onnx.stat().st_size
    assert check_onnx(int8_onnx.artifact).metadata["scheme"] == "int8"
    report = validate(int8_onnx.path, tiny_run)
    # A 4-epoch tiny model has near-tied logits; the ATIS numbers are in docs/onnx.md.
    assert report.intent_agreement >= 0.9 and report.slot_agreement >= 0.95, report.lines()
    assert report.snr_db > 20


def test_errors_say_what_to_do(tmp_path, float_onnx, tiny_run):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf model")
    with pytest.raises(ArtifactError, match=r"bad.onnx is not a valid ONNX model .*export RUN_DIR --format onnx"):
        check_onnx(bad)
    foreign = onnx.load(str(float_onnx))
    del foreign.metadata_props[:]
    with pytest.raises(ArtifactError, match="has no edge-pqrnn metadata"):
        check_onnx(foreign.SerializeToString())
    with pytest.raises(ConfigError, match="runs in 'onnxruntime' only"):
        OnnxArtifact.load(float_onnx, runtime="litert")
    with pytest.raises(ConfigError, match="choose tflite or onnx"):
        export(tiny_run, None, format="pb")
    with pytest.raises(ConfigError, match="--int8.* is for --format onnx"):
        export(tiny_run, None, int8=True)


def test_is_onnx_and_metadata_replacement(float_onnx):
    assert is_onnx(float_onnx) and is_onnx(float_onnx.read_bytes())
    assert not is_onnx("model.tflite") and not is_onnx(b"\x1c\x00\x00\x00TFL3....")
    proto = onnx.load(str(float_onnx))
    proto.metadata_props.add(key="owner", value="kept")
    proto = with_metadata(proto, {"format": "edge-pqrnn/1", "intents": ["a"]})
    keys = [p.key for p in proto.metadata_props]
    assert keys.count(METADATA_KEY) == 1 and "owner" in keys and "tags" not in keys
