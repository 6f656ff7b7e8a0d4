"""The pQRNN network: shapes, size, masking, training-only noise and the int8 path."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import keras
import tensorflow as tf

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.model import INPUT_NAMES, ModelConfig, build_model, count_params
from edge_pqrnn.projection import ProjectionSpec, project

WORDS = "show me flights from boston to denver on monday morning what is the cheapest fare please book a table".split()


def small_config(max_tokens: int = 16, **kwargs) -> ModelConfig:
    spec = ProjectionSpec(feature_size=64, max_tokens=max_tokens)
    values = dict(num_intents=5, num_tags=7, projection=spec, bottleneck=32, state=32)
    values.update(kwargs)
    return ModelConfig(**values)


def randomize(model, seed: int = 0) -> None:
    """Non-zero biases everywhere: with Keras' zero init, relu(bias) on padded rows would
    be 0 and a missing mask could go unnoticed; spread logits also make argmax checks meaningful."""
    rng = np.random.default_rng(seed)
    weights = model.get_weights()
    model.set_weights([w + rng.normal(0.0, 0.5, w.shape).astype(np.float32) if w.ndim == 1 else w for w in weights])


def texts(seed: int, count: int, max_words: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(1, max_words + 1)))) for _ in range(count)]


def inputs(batch_texts: list[str], spec: ProjectionSpec) -> dict[str, np.ndarray]:
    p = project(batch_texts, spec)
    return {"features": p.features, "mask": p.mask, "pool_weights": p.pool_weights}


def test_output_shapes_with_and_without_slot_head():
    cfg = small_config()
    out = build_model(cfg)(inputs(["show me flights", "hi"], cfg.projection))
    assert out["intent_logits"].shape == (2, 5)
    assert out["slot_logits"].shape == (2, 16, 7)

    no_slots = build_model(small_config(slot_head=False, num_tags=0))
    assert set(no_slots(inputs(["hi"], cfg.projection))) == {"intent_logits"}


def test_model_inputs_are_exactly_features_mask_pool_weights():
    model = build_model(small_config())
    assert sorted(model.input) == sorted(INPUT_NAMES)
    assert model.input["features"].shape == (None, 16, 64)
    assert model.input["mask"].shape == (None, 16)
    assert model.input["pool_weights"].shape == (None, 16)


def test_default_size_is_about_one_million_parameters_and_count_matches_keras():
    cfg = ModelConfig(num_intents=26, num_tags=121)  # ATIS-sized heads
    assert 0.9e6 < count_params(cfg) < 1.1e6
    assert count_params(cfg) == build_model(cfg).count_params()
    small = small_config(layers=3, kernel_width=2, slot_head=False, num_tags=0)
    assert count_params(small) == build_model(small).count_params()


def test_padding_does_not_change_outputs():
    short, long = small_config(max_tokens=12), small_config(max_tokens=24)
    m_short, m_long = build_model(short), build_model(long)
    randomize(m_short)
    m_long.set_weights(m_short.get_weights())  # no weight depends on T
    batch = [
        "show me flights from boston to denver",
        "hi",
        "what is the cheapest fare on monday morning please show me",
    ]
    # The last text fills all 12 rows of the short model (no padding there at all).
    assert project(batch, short.projection).num_tokens.tolist() == [8, 2, 12]
    a = m_short(inputs(batch, short.projection), training=False)
    b = m_long(inputs(batch, long.projection), training=False)
    np.testing.assert_allclose(a["intent_logits"], b["intent_logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a["slot_logits"], b["slot_logits"][:, :12], rtol=1e-5, atol=1e-5)


def test_a_text_does_not_depend_on_its_batch_neighbours():
    cfg = small_config()
    model = build_model(cfg)
    randomize(model)
    alone = model(inputs(["hi there"], cfg.projection), training=False)["slot_logits"]
    batched = model(inputs(["hi there", "show me flights from boston to denver"], cfg.projection), training=False)
    np.testing.assert_allclose(alone[0], batched["slot_logits"][0], rtol=1e-5, atol=1e-5)


def test_dropout_and_zoneout_only_in_training():
    cfg = small_config(dropout=0.3, zoneout=0.3)
    model = build_model(cfg)
    x = inputs(texts(1, 4, 10), cfg.projection)
    eval_a = model(x, training=False)["intent_logits"]
    eval_b = model(x, training=False)["intent_logits"]
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a = model(x, training=True)["intent_logits"]
    assert not np.allclose(train_a, eval_a)


def test_zoneout_decays_per_layer():
    cfg = small_config(zoneout=0.1, layers=3)
    assert [cfg.zoneout_of_layer(i) for i in range(3)] == pytest.approx([0.1, 0.01, 0.001])
    assert [layer.zoneout for layer in build_model(cfg).layers if layer.name.startswith("qrnn_")] == pytest.approx(
        [0.1, 0.01, 0.001]
    )


def test_config_round_trip_and_errors():
    cfg = small_config(layers=3, dropout=0.2)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "heads": 2})
    with pytest.raises(ConfigError, match="num_tags must be a positive integer when slot_head is on"):
        ModelConfig(num_intents=3)
    with pytest.raises(ConfigError, match="state must be a positive integer"):
        small_config(state=0)
    with pytest.raises(ConfigError, match=r"zoneout must be in \[0, 1\)"):
        small_config(zoneout=1.0)


# --- The int8 path (DESIGN.md §5): full-integer PTQ of the unrolled graph. ---------------


def convert_int8(model, spec: ProjectionSpec, calibration: list[str]) -> bytes:
    """Full-integer PTQ the way DESIGN.md §5 found to work: a batch-1 tf.function,
    converted from its concrete function (not from the model), a representative dataset
    yielding a list in input order."""
    T, F = spec.max_tokens, spec.feature_size
    signature = [
        tf.TensorSpec([1, T, F], tf.float32, name="features"),
        tf.TensorSpec([1, T], tf.float32, name="mask"),
        tf.TensorSpec([1, T], tf.float32, name="pool_weights"),
    ]

    @tf.function(input_signature=signature)
    def serve(features, mask, pool_weights):
        out = model({"features": features, "mask": mask, "pool_weights": pool_weights}, training=False)
        return out["intent_logits"], out["slot_logits"]  # a tuple fixes the output order

    def representative():
        for text in calibration:
            p = project([text], spec)
            yield [p.features, p.mask, p.pool_weights]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def test_converts_to_a_fully_int8_tflite_graph_that_agrees_with_keras():
    keras.utils.set_random_seed(0)
    cfg = small_config(max_tokens=16, layers=2)
    spec = cfg.projection
    model = build_model(cfg)
    randomize(model, seed=3)
    # Calibration must reach every unrolled step (DESIGN.md §5): include texts that fill
    # all T rows, or the last backward steps get a [0, 0] range and allocation aborts.
    full_length = [" ".join(WORDS[i % len(WORDS)] for i in range(k, k + spec.max_tokens)) for k in range(5)]
    calibration = texts(10, 60, 14) + full_length
    flatbuffer = convert_int8(model, spec, calibration)

    interpreter = tf.lite.Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    graph_outputs = {d["index"] for d in interpreter.get_output_details()}
    op_counts = collections.Counter()
    for op in interpreter._get_ops_details():
        op_counts[op["op_name"]] += 1
        ins = [i for i in op["inputs"] if i >= 0]
        if op["op_name"] == "QUANTIZE":  # only at the float input edge
            assert set(ins) <= graph_inputs
            continue
        if op["op_name"] == "DEQUANTIZE":  # only at the float output edge
            assert set(op["outputs"]) <= graph_outputs
            continue
        for i in op["outputs"]:
            assert tensors[i]["dtype"] == np.int8, (op["op_name"], tensors[i]["name"])
        for i in ins:  # int32 only for biases and shape/axis constants
            assert tensors[i]["dtype"] in (np.int8, np.int32), (op["op_name"], tensors[i]["name"])
    assert op_counts["QUANTIZE"] == 3 and op_counts["DEQUANTIZE"] == 2
    # Unrolled recurrence: one ADD per step and direction after the first, in every layer.
    assert op_counts["ADD"] == cfg.layers * 2 * (spec.max_tokens - 1)

    outputs = sorted(interpreter.get_output_details(), key=lambda d: d["name"])  # Identity, Identity_1
    eval_texts = texts(20, 40, 16) + full_length[:2]
    intent_agree, clear_disagree, slot_tokens = 0, 0, 0
    for text in eval_texts:
        x = inputs([text], spec)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], x[detail["name"]])
        interpreter.invoke()
        intent, slots = (interpreter.get_tensor(d["index"]) for d in outputs)
        ref = model(x, training=False)
        ref_intent, ref_slots = np.asarray(ref["intent_logits"]), np.asarray(ref["slot_logits"])
        n = int(x["mask"].sum())
        # Quantization error small against the logits' spread, on both heads.
        assert np.abs(intent - ref_intent).max() < 0.1 * np.ptp(ref_intent), ("intent", np.abs(intent - ref_intent).max(), np.ptp(ref_intent))
        assert np.abs(slots[0, :n] - ref_slots[0, :n]).max() < 0.1 * np.ptp(ref_slots[0, :n]), "slots"
        intent_agree += int(intent.argmax() == ref_intent.argmax())
        # An untrained model has near-ties between tags; wherever the float winner is
        # clear (margin over the runner-up > 5% of the spread) int8 must pick it too.
        top2 = np.sort(ref_slots[0, :n], axis=-1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 0.05 * np.ptp(ref_slots[0, :n])
        clear_disagree += int((slots[0, :n].argmax(-1) != ref_slots[0, :n].argmax(-1))[clear].sum())
        slot_tokens += int(clear.sum())
    assert intent_agree >= len(eval_texts) - 1, intent_agree
    assert clear_disagree == 0, clear_disagree
    assert slot_tokens >= 100, slot_tokens  # the check is not vacuous
