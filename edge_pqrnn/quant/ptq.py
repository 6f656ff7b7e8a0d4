"""Post-training quantization of the Keras features -> logits model into a .tflite body.

Recipe (measured, see DESIGN notes): a tf.function with a fixed input signature is
converted from its concrete function WITHOUT the model object (with it, variables are
not frozen and calibration fails in READ_VARIABLE); the representative dataset yields a
list in input order. Calibration must reach every unrolled time step: texts of full
length T are added, otherwise some states never leave 0, get a [0, 0] range and the
int8 kernels abort in allocate_tensors().
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection import ProjectionSpec, project

#: Quantization schemes; ``int8`` (full-integer, per-channel weights) is the default.
SCHEMES = ("int8", "int8-per-tensor", "dynamic", "float")
INPUT_NAMES = ("features", "mask", "pool_weights")


@dataclasses.dataclass
class QuantizationResult:
    """A converted body (features, mask, pool_weights -> logits).

    Attributes:
        model: the .tflite flatbuffer bytes.
        scheme: one of :data:`SCHEMES`.
        op_counts: builtin op name -> count.
        tensor_types: tensor type name -> count (int8 bodies: only INT8 and INT32 biases,
            plus the float edge tensors).
        float_ops: ops computing in float between the edge QUANTIZE/DEQUANTIZE (0 for int8).
    """

    model: bytes
    scheme: str
    op_counts: dict[str, int]
    tensor_types: dict[str, int]
    float_ops: int

    @property
    def bytes(self) -> int:
        return len(self.model)


def representative_texts(texts: Sequence[str], spec: ProjectionSpec, samples: int = 500,
                         full_length: int = 50, seed: int = 0) -> list[str]:
    """Calibration texts: random training texts plus full-length ones (T - markers tokens)
    made by concatenating training texts, so every unrolled step sees real values."""
    if not texts:
        raise ConfigError("calibration needs at least one training text")
    rng = np.random.default_rng(seed)
    chosen = [texts[i] for i in rng.choice(len(texts), size=min(samples, len(texts)), replace=False)]
    need = spec.max_tokens - spec.markers
    long_texts = []
    for _ in range(full_length):
        words: list[str] = []
        while len(words) < need:
            words += texts[int(rng.integers(len(texts)))].split()
        long_texts.append(" ".join(words[: max(need, 1)]))
    return chosen + long_texts


def convert(model, spec: ProjectionSpec, calibration_texts: Iterable[str] = (), scheme: str = "int8",
            batch_size: int | None = 1) -> QuantizationResult:
    """Convert a features -> logits Keras model into a .tflite body.

    Args:
        model: the Keras model (inputs ``features``, ``mask``, ``pool_weights``).
        spec: its projection spec (fixes T and F).
        calibration_texts: representative texts (see :func:`representative_texts`);
            required for the int8 schemes.
        scheme: one of :data:`SCHEMES`.
        batch_size: fixed batch of the signature (1 is what the int8 kernels are proven
            with), or None for a dynamic batch.

    Returns:
        A :class:`QuantizationResult`.

    Raises:
        ConfigError: unknown scheme, or no calibration texts for an int8 scheme.
    """
    import tensorflow as tf

    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    T, F = spec.max_tokens, spec.feature_size
    signature = [tf.TensorSpec([batch_size, T, F], tf.float32, name="features"),
                 tf.TensorSpec([batch_size, T], tf.float32, name="mask"),
                 tf.TensorSpec([batch_size, T], tf.float32, name="pool_weights")]

    @tf.function(input_signature=signature)
    def serve(features, mask, pool_weights):
        return model({"features": features, "mask": mask, "pool_weights": pool_weights}, training=False)

    import absl.logging

    # Passing the model object as trackable_obj breaks calibration (see the module doc);
    # silence the converter's warning that recommends it.
    absl.logging.set_verbosity(absl.logging.ERROR)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    if scheme != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme.startswith("int8"):
        texts = list(calibration_texts)
        if not texts:
            raise ConfigError(f"scheme {scheme!r} needs calibration texts (training texts of the run)")
        projected = project(texts, spec)

        def dataset():
            for i in range(len(texts)):
                yield [projected.features[i : i + 1], projected.mask[i : i + 1], projected.pool_weights[i : i + 1]]

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if scheme == "int8-per-tensor":
            converter._experimental_disable_per_channel = True
    flatbuffer = converter.convert()
    return QuantizationResult(flatbuffer, scheme, *analyse(flatbuffer))


def analyse(flatbuffer: bytes) -> tuple[dict[str, int], dict[str, int], int]:
    """Op counts, tensor type counts and the number of float-computing ops of a body."""
    from edge_pqrnn.format import schema

    s = schema()
    model = s.Model.GetRootAsModel(flatbuffer, 0)
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    ops: collections.Counter = collections.Counter()
    types: collections.Counter = collections.Counter()
    float_ops = 0
    graph = model.Subgraphs(0)
    for i in range(graph.TensorsLength()):
        types[type_names.get(graph.Tensors(i).Type(), "?")] += 1
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = op_names.get(codes[op.OpcodeIndex()], "?")
        ops[name] += 1
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outs = [graph.Tensors(op.Outputs(j)).Type() for j in range(op.OutputsLength())]
        float_ops += any(t == s.TensorType.FLOAT32 for t in outs)
    return dict(ops), dict(types), float_ops
