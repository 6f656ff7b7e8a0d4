"""export: a trained run becomes one int8 .tflite that takes raw text, written atomically."""

import numpy as np
import pytest
from hostile_texts import HOSTILE

from edge_pqrnn.converters.tflite_fuse import read_metadata
from edge_pqrnn.data import load_dataset
from edge_pqrnn.errors import ArtifactError
from edge_pqrnn.export import export
from edge_pqrnn.quant.ptq import analyse
from edge_pqrnn.runtimes import interpreter, run_signature
from edge_pqrnn.run import load_run


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifact") / "model.tflite"
    return export(tiny_run, out, check=False, log=lambda _: None)


def test_artifact_is_int8_with_text_signature_and_metadata(exported, tiny_run):
    run = load_run(tiny_run)
    assert exported.path.read_bytes() == exported.artifact
    assert exported.quantization.float_ops == 0
    ops, types, _ = analyse(exported.artifact)
    # the projection op (its 3 float outputs then enter int8), and one EdgePqrnnFoPool per
    # direction and QRNN layer in place of the unrolled recurrence
    assert ops["CUSTOM"] == 1 + 2 * run.config.layers and ops["QUANTIZE"] == 3
    assert "SUB" not in ops and "UNPACK" not in ops
    meta = read_metadata(exported.artifact)
    assert meta["intents"] == list(run.labels.intents) and meta["tags"] == list(run.labels.tags)
    assert meta["projection"] == run.spec.to_dict() and meta["dataset"] == "fixture:atis"
    runner = interpreter(exported.artifact).get_signature_runner("serving_default")
    details = runner.get_input_details()
    assert list(details) == ["text"] and details["text"]["dtype"] == np.bytes_
    assert sorted(runner.get_output_details()) == ["intent_logits", "num_tokens", "slot_logits"]


def test_int8_agrees_with_float_and_runtimes_agree_exactly(exported, tiny_run):
    run = load_run(tiny_run)
    texts = [ex.text for ex in load_dataset("fixture:atis").test]
    reference = run.predict(texts)
    outs = {rt: run_signature(interpreter(exported.artifact, rt), texts) for rt in ("litert", "tflite")}
    for name in outs["litert"]:
        assert np.array_equal(outs["litert"][name], outs["tflite"][name]), name
    agreement = (outs["litert"]["intent_logits"].argmax(1) == reference.intent.argmax(1)).mean()
    assert agreement >= 0.9
    assert np.abs(outs["litert"]["intent_logits"] - reference.intent).max() < 0.5


def test_batch_and_one_by_one_give_identical_outputs_on_hostile_texts(exported):
    texts = list(HOSTILE.values())
    for runtime in ("litert", "tflite"):
        interp = interpreter(exported.artifact, runtime)
        batch = run_signature(interp, texts)
        for i, text in enumerate(texts):
            single = run_signature(interp, [text])
            for name in batch:
                assert np.array_equal(batch[name][i], single[name][0]), (runtime, name, i)
        assert np.isfinite(batch["intent_logits"]).all()


def test_export_of_a_missing_run_fails_clearly(tmp_path):
    with pytest.raises(ArtifactError):
        export(tmp_path / "nope", tmp_path / "x.tflite", check=False, log=lambda _: None)
    assert not (tmp_path / "x.tflite").exists()


def test_failed_validation_writes_nothing_and_keeps_the_previous_artifact(exported, tiny_run, tmp_path):
    from edge_pqrnn.errors import AgreementError
    from edge_pqrnn.validate import Thresholds

    out = tmp_path / "model.tflite"
    out.write_bytes(exported.artifact)
    with pytest.raises(AgreementError, match=r"validation failed, nothing was written \(.*model.tflite is unchanged\)"):
        export(tiny_run, out, thresholds=Thresholds(intent_agreement=1.01), runtimes=("litert",), log=lambda _: None)
    assert out.read_bytes() == exported.artifact
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temp file left



def test_every_fully_connected_has_a_bias(exported):
    # tflite-runtime 2.14 on aarch64 crashes on a bias-less int8 FULLY_CONNECTED.
    from edge_pqrnn.format import schema

    s = schema()
    model = s.ModelT.InitFromPackedBuf(exported.artifact, 0)
    graph = model.subgraphs[0]
    fc = [op for op in graph.operators
          if model.operatorCodes[op.opcodeIndex].builtinCode == s.BuiltinOperator.FULLY_CONNECTED]
    assert fc and all(len(op.inputs) == 3 and op.inputs[2] >= 0 for op in fc)
    assert all(graph.tensors[op.inputs[2]].type == s.TensorType.INT32 for op in fc)
