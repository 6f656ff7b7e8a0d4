"""ONNX export: tf2onnx float and onnxruntime int8 QDQ with the projection op in the graph
(raw text in), run in real onnxruntime against the run and against the .tflite."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edge_pqrnn.cli import main
from edge_pqrnn.artifact import Artifact
from edge_pqrnn.converters.onnx_export import INPUTS, METADATA_KEY, OP_DOMAIN, TEXT_INPUT, seal_onnx, with_metadata
from edge_pqrnn.onnx_artifact import OnnxArtifact, check_onnx, is_onnx, is_text_graph
from edge_pqrnn.export import export_onnx
from edge_pqrnn.errors import ArtifactError, ConfigError, OpLibraryError
from edge_pqrnn.validate import HOSTILE_TEXTS
from edge_pqrnn.export import export
from edge_pqrnn.run import load_run
from edge_pqrnn.validate import validate

TEXTS = ["flights from boston to denver", "what is the cheapest fare to dallas tomorrow", "", "hi",
         "show me ground transportation in washington please", b"fare \xff\xfe"]


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
    assert {o.domain: o.version for o in proto.opset_import}[OP_DOMAIN] == 1
    # Raw text in: one string input feeding the projection op, whose attributes are the spec's.
    assert [i.name for i in proto.graph.input] == [TEXT_INPUT]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.STRING
    [node] = [n for n in proto.graph.node if n.domain == OP_DOMAIN and n.op_type == "EdgePqrnnProjection"]
    assert list(node.input) == [TEXT_INPUT]
    assert list(node.output) == ["features", "mask", "pool_weights", "num_tokens"]
    # Issue 20, item 3: the op writes the longest text's rows, the body's token axis is
    # symbolic, and each QRNN direction's recurrence is one EdgePqrnnFoPool node.
    assert {a.name: a.i for a in node.attribute} == {**{k: int(v) for k, v in run.spec.op_options().items()},
                                                     "dynamic_tokens": 1}
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.value_info}
    assert shapes["features"] == ["batch", "tokens", run.spec.feature_size] and shapes["mask"] == ["batch", "tokens"]
    pools = [n for n in proto.graph.node if n.op_type == "EdgePqrnnFoPool"]
    assert len(pools) == 2 * run.config.layers and all(n.domain == OP_DOMAIN for n in pools)
    reverse = sorted(a.i for n in pools for a in n.attribute if a.name == "reverse")
    assert reverse == [0] * run.config.layers + [1] * run.config.layers
    assert len(proto.graph.node) < 300  # no unrolled steps (the static graph has ~T nodes per direction)
    slot_dims = [d.dim_value for d in proto.graph.output[1].type.tensor_type.shape.dim[1:]]
    assert slot_dims == [run.spec.max_tokens, len(run.labels.tags)]
    assert [o.name for o in proto.graph.output] == ["intent_logits", "slot_logits", "num_tokens"]
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
    assert "register_custom_ops_library" in props["preprocessing"]
    assert check_onnx(float_onnx).metadata == meta


def test_features_input_variant_matches_the_text_graph(float_onnx, tiny_run, tmp_path):
    # text_input=False: the graph without the op (for consumers that cannot load it).
    result = export_onnx(tiny_run, tmp_path / "features.onnx", check=False, text_input=False, log=lambda _: None)
    proto = onnx.load_from_string(result.artifact)
    assert [i.name for i in proto.graph.input] == list(INPUTS) and not is_text_graph(result.artifact)
    assert all(n.domain != OP_DOMAIN for n in proto.graph.node) and "project(texts" in {
        p.key: p.value for p in proto.metadata_props}["preprocessing"]
    check_onnx(result.artifact)
    with OnnxArtifact.load(result.path) as features, OnnxArtifact.load(float_onnx) as text:
        assert not features.text_input and text.text_input
        a, b = features.run(TEXTS), text.run(TEXTS)
    assert np.array_equal(a["num_tokens"], b["num_tokens"])
    assert np.abs(a["intent_logits"] - b["intent_logits"]).max() < 1e-5


def test_float_onnx_matches_keras_at_any_batch(float_onnx, tiny_run):
    run = load_run(tiny_run)
    ref = run.predict(TEXTS)
    with OnnxArtifact.load(float_onnx) as model:
        for batch_size in (1, 4, 64):
            out = model.run(TEXTS, batch_size=batch_size)
            assert np.abs(out["intent_logits"] - ref.intent).max() < 1e-4
            # The rows a text has; past them the slot logits are 0 (as in the .tflite).
            rows = np.arange(run.spec.max_tokens)[None, :] < out["num_tokens"][:, None]
            assert np.abs(out["slot_logits"] - ref.slots)[rows].max() < 1e-4
            assert not out["slot_logits"][~rows].any()
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
    # The op node's attributes must be the metadata's projection (edited and re-sealed:
    # without the new hash the hash check refuses it first).
    edited = onnx.load(str(float_onnx))
    [node] = [n for n in edited.graph.node if n.op_type == "EdgePqrnnProjection"]
    next(a for a in node.attribute if a.name == "max_tokens").i = 32
    with pytest.raises(ArtifactError, match="does not match the content hash recorded at export"):
        check_onnx(edited.SerializeToString())
    with pytest.raises(ArtifactError, match="projection op node .* does not match the metadata's projection"):
        check_onnx(seal_onnx(with_metadata(edited, check_onnx(float_onnx).metadata)))
    next(a for a in node.attribute if a.name == "max_tokens").i = check_onnx(float_onnx).metadata["projection"][
        "max_tokens"]
    next(a for a in node.attribute if a.name == "dynamic_tokens").i = 2  # the op's own attribute: 0 or 1
    with pytest.raises(ArtifactError, match=r"projection op node .*'dynamic_tokens': 2.* does not match"):
        check_onnx(seal_onnx(with_metadata(edited, check_onnx(float_onnx).metadata)))
    with pytest.raises(OpLibraryError, match="the op library /nonexistent.so does not exist"):
        OnnxArtifact.load(float_onnx, library="/nonexistent.so")
    with pytest.raises(ConfigError, match="runs in 'onnxruntime' only"):
        OnnxArtifact.load(float_onnx, runtime="litert")
    with pytest.raises(ConfigError, match="choose tflite or onnx"):
        export(tiny_run, None, format="pb")
    with pytest.raises(ConfigError, match="--int8.* is for --format onnx"):
        export(tiny_run, None, int8=True)


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_dynamic_token_graph_gives_the_static_graphs_rows(tiny_run, int8):
    # Issue 20, item 3: the default .onnx computes only the rows of the batch's longest
    # text; on every row a text has it gives the static-T graph's logits (an .onnx from
    # before, which still loads and runs), in any batch of mixed lengths.
    from edge_pqrnn.build import build_onnx, calibration_for
    from edge_pqrnn.export import load_run_and_dataset

    run, name, dataset = load_run_and_dataset(tiny_run)
    calibration = calibration_for(run, [ex.text for ex in dataset.train], samples=60, full_length=10) if int8 else ()
    dynamic, static = (build_onnx(run, name, calibration, int8=int8, static_tokens=s).artifact for s in (False, True))
    static_proto = onnx.load_from_string(static)
    [node] = [n for n in static_proto.graph.node if n.op_type == "EdgePqrnnProjection"]
    assert "dynamic_tokens" not in {a.name for a in node.attribute}
    assert not [n for n in static_proto.graph.node if n.op_type == "EdgePqrnnFoPool"]
    texts = [ex.text for ex in dataset.test][:40] + TEXTS + ["flights " * 40]
    T = run.spec.max_tokens
    with OnnxArtifact.load(dynamic) as fast, OnnxArtifact.load(static) as full:
        for batch_size in (1, 3, 64):
            a, b = fast.run(texts, batch_size=batch_size), full.run(texts, batch_size=batch_size)
            assert a["slot_logits"].shape == b["slot_logits"].shape == (len(texts), T, len(run.labels.tags))
            assert np.array_equal(a["num_tokens"], b["num_tokens"])
            rows = np.arange(T)[None, :] < a["num_tokens"][:, None]
            assert not a["slot_logits"][~rows].any()
            assert np.array_equal(a["intent_logits"].argmax(-1), b["intent_logits"].argmax(-1))
            assert np.array_equal(a["slot_logits"].argmax(-1)[rows], b["slot_logits"].argmax(-1)[rows])
            assert np.abs(a["intent_logits"] - b["intent_logits"]).max() < 1e-5
            assert np.abs(a["slot_logits"] - b["slot_logits"])[rows].max() < 1e-5


def test_is_onnx_and_metadata_replacement(float_onnx):
    assert is_onnx(float_onnx) and is_onnx(float_onnx.read_bytes())
    assert not is_onnx("model.tflite") and not is_onnx(b"\x1c\x00\x00\x00TFL3....")
    proto = onnx.load(str(float_onnx))
    proto.metadata_props.add(key="owner", value="kept")
    proto = with_metadata(proto, {"format": "edge-pqrnn/1", "intents": ["a"]})
    keys = [p.key for p in proto.metadata_props]
    assert keys.count(METADATA_KEY) == 1 and "owner" in keys and "tags" not in keys


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_raw_text_onnx_agrees_with_the_tflite_and_the_float_model(built, tmp_path, int8):
    out = tmp_path / ("model.int8.onnx" if int8 else "model.onnx")
    result = export_onnx(built.run_dir, out, int8=int8, calibration_samples=120, log=lambda _: None)
    assert result.validation.passed, result.validation.lines()
    # Version 1 even after sessions in this process registered the domain (onnxruntime's
    # optimizer, run by the int8 quantizer, would write it at 1000).
    assert {o.domain: o.version for o in onnx.load_from_string(result.artifact).opset_import}[OP_DOMAIN] == 1
    texts = [ex.text for ex in built.dataset.test] + list(HOSTILE_TEXTS.values()) + TEXTS
    run = load_run(built.run_dir)
    ref = run.predict(texts)
    with OnnxArtifact.load(out) as model, Artifact.load(built.path) as tflite:
        onnx_out, tflite_out = model.run(texts, batch_size=16), tflite.run(texts)
    # The op inside the graph counts exactly the .tflite op's tokens, hostile texts included.
    assert np.array_equal(onnx_out["num_tokens"], tflite_out["num_tokens"])
    rows = np.arange(run.spec.max_tokens)[None, :] < onnx_out["num_tokens"][:, None]
    for other, name in ((ref.intent, "float"), (tflite_out["intent_logits"], "tflite")):
        intent = float((onnx_out["intent_logits"].argmax(-1) == other.argmax(-1)).mean())
        assert intent >= 0.995, (name, intent)
    for other, name in ((ref.slots, "float"), (tflite_out["slot_logits"], "tflite")):
        slot = float((onnx_out["slot_logits"].argmax(-1) == other.argmax(-1))[rows].mean())
        assert slot >= 0.99, (name, slot)
    if not int8:
        assert np.abs(onnx_out["intent_logits"] - ref.intent).max() < 1e-4


def test_cli_validate_json_and_predict_on_the_raw_text_onnx(built, tmp_path):
    out = tmp_path / "model.onnx"
    export_onnx(built.run_dir, out, check=False, log=lambda _: None)
    runner = CliRunner()
    result = runner.invoke(main, ["validate", str(out), "--reference", str(built.run_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["passed"] and data["intent_agreement"] >= 0.995 and data["slot_agreement"] >= 0.99
    assert data["runtimes"]["onnxruntime"]["loaded"] and data["bytes"] == out.stat().st_size
    result = runner.invoke(main, ["predict", str(out), "show me flights from boston to denver", "--json"])
    assert result.exit_code == 0, result.output
    [prediction] = json.loads(result.output[result.output.index("["):])
    assert prediction["intent"] == "flight" and prediction["num_tokens"] == 8  # 7 words + EOS
    assert {(s["text"], s["type"]) for s in prediction["slots"]} == {("boston", "fromloc"), ("denver", "toloc")}


def test_benchmark_times_onnx_beside_the_tflite(tiny_run, float_onnx):
    from edge_pqrnn.benchmark import benchmark_run

    lines = []
    result = benchmark_run(str(tiny_run), texts=("flights from boston to denver",), repeats=5, batch_sizes=(1, 4),
                           threads=1, onnx=True, log=lines.append)
    for name in ("onnx-float", "onnx-int8"):
        row = result["variants"][name]
        assert row["p50_ms"] > 0 and row["bytes"] > 10_000
        assert result["ratios"][f"{name.replace('-', '_')}_over_int8_latency"] > 0
        assert f"{name}|4" in result["throughput"]
    assert result["onnx"].startswith("exported alongside")
    assert any(line.startswith("onnx_int8_over_int8_latency") for line in lines)
    # Issue 20, item 3: the int8 .onnx by token count, as the .tflite (T=24 here: 4, 8, 16).
    lt = result["latency_by_tokens"]
    assert list(lt["onnx_int8_p50_ms"]) == lt["tokens"] == [4, 8, 16]
    assert all(ms > 0 for ms in lt["onnx_int8_p50_ms"].values())
    assert lt["onnx_int8_64_over_8"] == lt["onnx_int8_p50_ms"][16] / lt["onnx_int8_p50_ms"][8]
    floor = result["compute"]["text_floor_ms"]
    for name in ("onnx_float", "onnx_int8"):
        expected = result["variants"][name.replace("_", "-")]["p50_ms"] / floor if floor else None
        assert result["compute"][f"{name}_over_text_floor"] == expected
    assert any(line.startswith("latency by tokens (onnx-int8") for line in lines)
    # A given .onnx is timed as is (row named after its scheme); onnx=False leaves the rows out.
    given = benchmark_run(str(tiny_run), texts=("hi",), repeats=3, batch_sizes=(1,), threads=1, onnx=str(float_onnx),
                          log=lambda _: None)
    assert set(given["variants"]) == {"int8", "int8-no-xnnpack", "float", "onnx-float"}
    assert given["variants"]["onnx-float"]["bytes"] == float_onnx.stat().st_size and given["onnx"] == str(float_onnx)
    assert set(given["latency_by_tokens"]["onnx_float_p50_ms"]) == {4, 8, 16}
    with pytest.raises(ArtifactError, match="not a valid ONNX model"):
        benchmark_run(str(tiny_run), repeats=1, batch_sizes=(1,), threads=1, onnx=__file__, log=lambda _: None)


# ------------------------------------------------------------------ integrity and the ONNX runtime path (issue 23)


def _weight_offset(data: bytes) -> int:
    """Where the bytes of the largest float initializer start in the file."""
    proto = onnx.load_from_string(data)
    biggest = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    at = data.find(biggest.raw_data)
    assert at > 0 and data.count(biggest.raw_data) == 1
    return at


def test_onnx_content_hash_refuses_a_flipped_weight_bit_in_every_command(float_onnx, tiny_run, tmp_path):
    # Issue 23: one flipped weight bit in an .onnx changed the logits, and predict and
    # validate passed it. The .onnx now carries a content hash like the .tflite.
    data = float_onnx.read_bytes()
    assert len(check_onnx(data).metadata["content_sha256"]) == 64
    flipped = bytearray(data)
    flipped[_weight_offset(data) + 2] ^= 0x10
    bad = tmp_path / "flipped.onnx"
    bad.write_bytes(bytes(flipped))
    message = (f"{bad} does not match the content hash recorded at export (changed after export): the file is "
               "corrupted: export it again with `edge-pqrnn export RUN_DIR --format onnx`")
    with pytest.raises(ArtifactError) as error:
        check_onnx(bad)
    assert str(error.value) == message
    runner = CliRunner()
    for args in (["predict", str(bad), "flights"], ["validate", str(bad), "--reference", str(tiny_run)],
                 ["inspect", str(bad)]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().splitlines()[-1] == f"error: {message}", args


@pytest.mark.parametrize("key, value", [("intents", 5), ("intents", [1, 2]), ("tags", "O"), ("projection", [1]),
                                        ("projection", {"feature_size": "big"}), ("slot_types", {"a": 1}),
                                        ("buckets", "16"), ("format", 7)])
def test_onnx_metadata_of_the_wrong_type_is_one_line(float_onnx, key, value):
    # Issue 23: e.g. intents not a list gave a traceback. Edited and re-sealed, so only
    # the type checks stand between the file and a runtime.
    metadata = dict(check_onnx(float_onnx).metadata, **{key: value})
    data = seal_onnx(with_metadata(onnx.load(str(float_onnx)), metadata))
    with pytest.raises(ArtifactError, match=r"^<bytes> has (incomplete metadata|metadata format)"):
        check_onnx(data)
    with pytest.raises(ArtifactError, match=r"^<bytes> has (incomplete metadata|metadata format)"):
        OnnxArtifact.load(data)


def test_predict_on_onnx_imports_onnxruntime_not_tensorflow_and_honours_runtime(float_onnx, built):
    import os
    import subprocess
    import sys

    # Issue 23: predict on an .onnx imported TensorFlow (tf2onnx), ~7 s per call.
    code = ("import sys\nfrom edge_pqrnn.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code)\nprint(sorted(m for m in ('tensorflow', 'tf2onnx', 'keras', 'onnxruntime') "
            "if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code, "predict", str(float_onnx), "flights to boston"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.stdout.strip().splitlines()[-2:] == ["exit 0", "['onnxruntime']"], proc.stdout + proc.stderr
    runner = CliRunner()
    result = runner.invoke(main, ["predict", str(float_onnx), "hi", "--runtime", "litert"])
    assert result.exit_code == 2
    assert "error: an .onnx runs in 'onnxruntime' only, not 'litert'" in result.output
    result = runner.invoke(main, ["predict", str(float_onnx), "hi", "--runtime", "onnxruntime"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["predict", str(built.path), "hi", "--runtime", "onnxruntime"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {built.path} is a .tflite, which runs in litert or tflite, not onnxruntime: drop --runtime, or run "
        "the .onnx from `edge-pqrnn export --format onnx` in onnxruntime")


def test_inspect_describes_an_onnx(float_onnx):
    result = CliRunner().invoke(main, ["inspect", str(float_onnx), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output[result.output.index("{"):])
    assert info["ops"]["custom"] == {f"{OP_DOMAIN}.EdgePqrnnProjection": 1, f"{OP_DOMAIN}.EdgePqrnnFoPool": 4}
    assert info["metadata"]["hash_ok"] and info["problems"] == []
    assert [i["name"] for i in info["signatures"]["graph"]["inputs"]] == [TEXT_INPUT]


def test_one_onnx_artifact_shared_by_threads_gives_single_thread_bits(float_onnx):
    # The OnnxArtifact shares one session (onnxruntime's run is thread-safe): checked
    # like the .tflite pool in tests/test_concurrency.py, on a smaller count.
    import threading

    batches = [TEXTS[i : i + 1 + i % 3] for i in range(len(TEXTS))]
    with OnnxArtifact.load(float_onnx) as model:
        expected = [model.run(batch) for batch in batches]
        failures: list[str] = []

        def worker(index: int) -> None:
            for call in range(200):
                b = (index + call) % len(batches)
                out = model.run(batches[b])
                if any(not np.array_equal(out[k], v) for k, v in expected[b].items()):
                    failures.append(f"thread {index} call {call}")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert failures == []
