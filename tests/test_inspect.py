"""inspect(): signature, ops, tensor types, metadata, bytes per block; the ``inspect``
command; and docs/troubleshooting.md covering every message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import artifact_fixtures
import artifact_mutation
from edge_pqrnn.cli_artifact import inspect_command
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.inspect_artifact import inspect, render
from edge_pqrnn.model import ModelConfig, count_params
from edge_pqrnn.projection import OP_NAME, ProjectionSpec
from edge_pqrnn.projection.fo_pool import FO_POOL_OP
from edge_pqrnn.projection.ops import projection_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def info(built):
    return inspect(built.path)


def test_signature_ops_and_tensor_types(info, built):
    assert info["file"] == {"name": str(built.path), "bytes": len(built.artifact)}
    assert info["signatures"] == {"serving_default": {
        "inputs": [{"name": "text", "dtype": "STRING", "shape": [-1]}],
        "outputs": [{"name": "intent_logits", "dtype": "FLOAT32", "shape": [-1, 3]},
                    {"name": "num_tokens", "dtype": "INT32", "shape": [-1]},
                    {"name": "slot_logits", "dtype": "FLOAT32", "shape": [-1, 16, 9]}]}}
    # the projection, and one fo-pooling op per direction of the fixture's one QRNN layer
    assert info["ops"]["custom"] == {OP_NAME: 1, FO_POOL_OP: 2 * artifact_fixtures.MODEL.layers}
    assert {"FULLY_CONNECTED", "CONV_2D", "QUANTIZE", "DEQUANTIZE"} <= set(info["ops"]["builtin"])
    types = info["tensor_types"]
    # Fully int8: float only at the edges (the op's 3 outputs, the 2 dequantized logits, and
    # the 0.0 the mask is compared with before the slot logits' PAD back to T).
    # (~65 int8 tensors: the fo-pooling ops left no per-step tensors of the recurrence)
    assert types["INT8"] > 50 and types["FLOAT32"] == 6 and types["STRING"] == 1
    assert info["problems"] == []


def test_metadata_summary(info, built):
    meta = info["metadata"]
    assert meta["hash_ok"] is True and meta["format"] == "edge-pqrnn/1" and meta["scheme"] == "int8"
    assert (meta["intents"], meta["tags"], meta["slot_types"]) == (3, 9, 4)
    assert meta["projection"] == artifact_fixtures.SPEC.to_dict()
    assert meta["model_config"]["state"] == 24 and "projection" not in meta["model_config"]
    assert meta["dynamic_tokens"] is True and meta["portable_kernels"] is False  # the default export


def test_bytes_per_block_add_up_and_name_the_layers(info, built):
    blocks = info["bytes"]
    assert set(blocks["weights"]) == {"bottleneck", "qrnn_0", "pooling", "intent_head", "slot_head"}
    total = (blocks["projection_op_options"] + sum(blocks["weights"].values()) + blocks["other_constants"]
             + blocks["edge_pqrnn_metadata"] + blocks["other_metadata"] + blocks["graph"])
    assert total == len(built.artifact) and blocks["graph"] > 0 and blocks["edge_pqrnn_metadata"] > 0
    config = ModelConfig.from_dict(json.loads((built.run_dir / "config.json").read_text()))
    # int8 weights: one byte per parameter, int32 biases four; within that band.
    params, weights = count_params(config), sum(blocks["weights"].values())
    assert params <= weights <= 4 * params
    assert blocks["weights"]["bottleneck"] >= 64 * 24  # F x bottleneck int8 kernel


def test_foreign_files_are_described_with_their_problems():
    info = inspect(projection_model(ProjectionSpec(feature_size=8, max_tokens=4)))
    assert info["metadata"] is None and info["ops"]["custom"] == {OP_NAME: 1}
    assert info["problems"] == ["<bytes> has no edge-pqrnn metadata (a .tflite exported by another tool, or a bare "
                                "projection model?): export it again with `edge-pqrnn export`"]
    assert "metadata: none (not an edge-pqrnn artifact)" in render(info)
    with pytest.raises(ArtifactError, match="is not a TFLite model"):
        inspect(b"\x00" * 64)


def test_render_is_a_readable_table(info):
    text = render(info)
    assert re.search(r"input\s+text\s+STRING\s+\[-1\]", text)
    assert re.search(rf"\n\s+1  {OP_NAME}  \(custom\)\n", text)
    assert re.search(r"\n\s+[\d,]+\s+[\d.]+%  weights: qrnn_0\n", text)
    assert "content hash: ok" in text and "labels: 3 intents, 9 tags, 4 slot types" in text


def test_inspect_command(built, tmp_path):
    runner = CliRunner()
    table = runner.invoke(inspect_command, [str(built.path)])
    assert table.exit_code == 0 and "signature 'serving_default'" in table.output
    as_json = runner.invoke(inspect_command, [str(built.path), "--json"])
    assert json.loads(as_json.output)["metadata"]["hash_ok"] is True
    foreign = tmp_path / "projection.tflite"
    foreign.write_bytes(projection_model(ProjectionSpec(feature_size=8, max_tokens=4)))
    problem = runner.invoke(inspect_command, [str(foreign)])
    # exit-code contract (issue 23): an unusable file is 2, as for predict
    assert problem.exit_code == 2 and "✗ " in problem.output
    assert problem.output.strip().splitlines()[-1].startswith(f"error: {foreign} has no edge-pqrnn metadata")
    missing = runner.invoke(inspect_command, [str(tmp_path / "none.tflite")])
    assert missing.exit_code == 2
    assert missing.output == f"error: {tmp_path / 'none.tflite'} does not exist: pass the path of a .tflite written " \
                             "by `edge-pqrnn export`\n"


def test_inspect_gate_and_predict_refuse_a_file_that_fails_only_at_run_time(built, tmp_path):
    # Issue 23: a crafted artifact (an op's options edited, content hash re-sealed)
    # passes every check made before a runtime; inspect and `gate --only size` passed it
    # and gate on latency printed a traceback. All three now share predict's check.
    from edge_pqrnn.cli import main

    bad = tmp_path / "bad-options.tflite"
    bad.write_bytes(artifact_mutation.bad_runtime_options(built.artifact))
    assert inspect(bad, check_runtime=False)["problems"] == []  # the static checks alone pass it
    gates = tmp_path / "gates.toml"
    gates.write_text("[size]\nmax_bytes = 10_000_000\n[latency]\np50_ms = 1000.0\nrepeats = 3\n")
    expected = (f"error: {bad} does not run in litert (EdgePqrnnFoPool: unsupported version of the fo-pool options "
                "(this op library implements version 1)")
    runner = CliRunner()
    for args in (["inspect", str(bad)], ["predict", str(bad), "flights"], ["gate", str(bad), "--gates", str(gates)],
                 ["gate", str(bad), "--gates", str(gates), "--only", "size"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().splitlines()[-1].startswith(expected), (args, result.output)
        assert "Traceback" not in result.output


# Every message artifact.py / validate.py raise, by a phrase that stays fixed (the ones
# they pass through from other modules, e.g. "run directory ... does not exist", are
# documented too but not listed here).
MESSAGE_PHRASES = [
    "pass the path of a .tflite written by", "pass the .tflite file itself", "does not exist: ",
    "is a directory: ", "cannot be read", "a named pipe (FIFO)", "a character device", "not a regular file",
    "is a symbolic link loop", "which does not exist", "bytes edge-pqrnn reads as", "is not a usable path", "is not a TFLite model", "is truncated or corrupt", "is truncated (",
    "has an out-of-range", "op, so it does not take raw text", "ops where exactly one is expected",
    "uses custom ops", "has no edge-pqrnn metadata", "has unreadable edge-pqrnn metadata",
    "does not match the content hash recorded at export", "has metadata format", "has incomplete metadata",
    "has invalid", "that differ from its metadata's projection",
    "has malformed labels", "has no 'serving_default' signature",
    "has signature inputs", "that do not fit its labels and projection", "unknown runtime",
    "is not installed", "unset it or point it at a built libpqrnn_projection.so",
    "does not load as a TFLite delegate", "is rejected by", "does not run in", "texts must be a list",
    "every text must be str or UTF-8 bytes", "was closed", "token rows where the reference tokeniser makes",
    "does not match the reference run", "cannot load the dataset", "neither the run nor the artifact names",
    "has no test or dev examples", "no runtime to validate in", "not loaded:",
    # issue 23
    "which nothing before it writes", "which is already written or constant",
    "with a quantization scale that is not a finite positive number", "with zero points outside",
    "a builtin op no edge-pqrnn export holds", "where it takes", "gives non-finite", "gives token counts outside",
    "is a .tflite, which runs in", "max_interpreters must be a whole number of at least 1",
    "batch_size must be a whole number of at least 1", "-d array: pass a 1-d array", "is a symbolic link to",
]


def test_every_message_is_in_the_code_and_in_troubleshooting():
    code = "".join((ROOT / "edge_pqrnn" / name).read_text()
                   for name in ("artifact.py", "artifact_checks.py", "artifact_graph.py", "onnx_artifact.py", "validate.py",
                                "format.py", "converters/tflite_fuse.py", "_io.py", "runtimes/tflite.py",
                                "runtimes/onnxruntime.py"))
    docs = (ROOT / "docs" / "troubleshooting.md").read_text()
    flat_code = re.sub(r'"\s*\n\s*f?"', "", code)  # join implicitly concatenated string literals
    for phrase in MESSAGE_PHRASES:
        assert phrase.replace("'serving_default'", "{SIGNATURE!r}") in flat_code or phrase in flat_code, phrase
        assert phrase in docs, f"docs/troubleshooting.md lacks {phrase!r}"


def test_damaged_files_never_raise_anything_but_artifact_error(built):
    """Random bit flips and cuts (seeded) and metadata values of the wrong JSON type: the
    checks and inspect() either describe the file or raise ArtifactError, nothing else."""
    import random

    import flatbuffers

    from edge_pqrnn.artifact import check
    from edge_pqrnn.converters.tflite_fuse import read_metadata
    from edge_pqrnn.format import attach_metadata
    from edge_pqrnn.format import schema

    rng = random.Random(7)
    damaged = []
    for _ in range(40):
        data = bytearray(built.artifact)
        for _ in range(rng.choice([1, 2, 8])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        damaged.append(bytes(data[: rng.randrange(len(data))] if rng.random() < 0.1 else data))
    metadata = read_metadata(built.artifact)
    for key in ("intents", "tags", "slot_types", "projection", "model_config", "format"):
        for value in (None, 3, "x", [1], {"a": 1}):
            model = schema().ModelT.InitFromPackedBuf(built.artifact, 0)
            attach_metadata(model, dict(metadata, **{key: value}))
            builder = flatbuffers.Builder(1 << 16)
            builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
            damaged.append(bytes(builder.Output()))
    outcomes = {"ok": 0, "refused": 0}
    for data in damaged:
        for function in (check, inspect):
            try:
                function(data)
                outcomes["ok"] += 1
            except ArtifactError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > len(damaged) // 2  # most damage is caught before any runtime
