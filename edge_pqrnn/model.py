"""The pQRNN network in Keras: projection features -> bottleneck -> bi-QRNN -> heads.

Every choice here serves one goal besides accuracy: the float model must convert to a
*fully* int8 TFLite graph with plain full-integer post-training quantization
(DESIGN.md §5). Hence:

- the recurrence is unrolled over the fixed T in Python (no while loop, scan or RNN
  layer, which have no int8 kernels);
- the gate is parameterised as ``k = 1 - f`` and the cell update is written as
  ``c_t = c_{t-1} + k_t * (z_t - c_{t-1})``, so masking padded steps (``k = 0``: state
  carried unchanged) needs only MUL/SUB/ADD, never NEG or DIV;
- pooling weights ``mask / num_tokens`` come in as an input, so the graph has no DIV;
- no softmax over time (see :class:`GatedMeanPooling` for why and what replaces it).

Example:
    >>> cfg = ModelConfig(num_intents=3, num_tags=5)
    >>> count_params(cfg)
    955017
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from edge_pqrnn.errors import ConfigError
from edge_pqrnn.projection import ProjectionSpec

#: The model's input names, in the order a converted graph takes them.
INPUT_NAMES = ("features", "mask", "pool_weights")
INTENT_OUTPUT = "intent_logits"
SLOT_OUTPUT = "slot_logits"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network's hyper-parameters (defaults: DESIGN.md §11, about 1M parameters).

    Args:
        num_intents: size of the intent head (number of intent labels).
        num_tags: size of the per-token slot head (BIO tag vocabulary incl. ``"O"``);
            ignored when ``slot_head`` is off.
        projection: the projection spec; fixes T (``max_tokens``) and F (``feature_size``).
        bottleneck: width of the dense ReLU layer applied to each token's features.
        state: QRNN state size per direction (a layer outputs ``2 * state``).
        layers: number of stacked bidirectional QRNN layers.
        kernel_width: width of the gate convolutions (causal forward, anti-causal backward).
        zoneout: zoneout probability p of the first layer; layer i uses ``p ** (i + 1)``.
        dropout: dropout rate on the bottleneck and between layers (training only).
        slot_head: whether the model has the per-token slot head.

    Raises:
        ConfigError: a value is out of range.
    """

    num_intents: int
    num_tags: int = 0
    projection: ProjectionSpec = dataclasses.field(default_factory=ProjectionSpec)
    bottleneck: int = 128
    state: int = 128
    layers: int = 2
    kernel_width: int = 3
    zoneout: float = 0.01
    dropout: float = 0.1
    slot_head: bool = True

    def __post_init__(self) -> None:
        for name in ("num_intents", "bottleneck", "state", "layers", "kernel_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model {name} must be a positive integer, got {value!r}")
        if self.slot_head and (not isinstance(self.num_tags, int) or self.num_tags < 1):
            raise ConfigError(
                f"num_tags must be a positive integer when slot_head is on, got {self.num_tags!r}; "
                "pass the tag vocabulary size or slot_head=False"
            )
        if not 0.0 <= self.zoneout < 1.0:
            raise ConfigError(f"zoneout must be in [0, 1), got {self.zoneout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.projection, ProjectionSpec):
            raise ConfigError(f"projection must be a ProjectionSpec, got {type(self.projection).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the projection spec nested under ``"projection"``)."""
        data = dataclasses.asdict(self)
        data["projection"] = self.projection.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: unknown keys, or invalid values.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}; allowed: {sorted(fields)}")
        values = dict(data)
        if isinstance(values.get("projection"), dict):
            values["projection"] = ProjectionSpec.from_dict(values["projection"])
        try:
            return cls(**values)
        except TypeError as exc:  # a required key is missing
            raise ConfigError(f"invalid model config: {exc}") from exc

    def zoneout_of_layer(self, index: int) -> float:
        """Zoneout probability of layer ``index`` (0-based): ``p ** (index + 1)``."""
        return self.zoneout ** (index + 1) if self.zoneout > 0 else 0.0


class BiQRNN(keras.layers.Layer):
    """One bidirectional QRNN layer with fo-pooling, unrolled over the fixed T.

    Gates come from width-``kernel_width`` convolutions: causal (``t-k+1..t``) for the
    forward direction, anti-causal (``t..t+k-1``) for the backward one, so neither
    direction sees the other side of the sequence. Per direction, with ``k = 1 - f``:
    ``z = tanh``, ``k = sigmoid``, ``o = sigmoid``; ``c_t = c_{t-1} + k_t (z_t - c_{t-1})``
    (equal to ``f c_{t-1} + (1 - f) z``) and ``h_t = o_t c_t``.

    Padded steps get ``k = 0``, so the state is carried unchanged: forward the last real
    state flows on, backward (which starts at the padded end) the state stays exactly 0
    until the first real token. Outputs at padded steps are zeroed, so the next layer's
    convolutions read zeros past the text whatever T is.

    Zoneout (training only) keeps each unit's previous state with probability p, which is
    ``k * Bernoulli(1 - p)``; at inference ``k`` is scaled by its expectation ``1 - p``
    (as in salesforce/pytorch-qrnn).

    Args:
        state: state size per direction.
        kernel_width: gate convolution width.
        zoneout: zoneout probability for this layer.
    """

    def __init__(self, state: int, kernel_width: int, zoneout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.kernel_width = kernel_width
        self.zoneout = zoneout
        # One convolution per direction producing z, k and o together: 3 * state channels.
        self.forward_gates = keras.layers.Conv1D(3 * state, kernel_width, name="forward_gates")
        self.backward_gates = keras.layers.Conv1D(3 * state, kernel_width, name="backward_gates")
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape: Any) -> None:
        x_shape = input_shape[0]
        padded = (x_shape[0], x_shape[1] + self.kernel_width - 1, x_shape[2])
        self.forward_gates.build(padded)
        self.backward_gates.build(padded)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        x_shape = input_shape[0]
        return (x_shape[0], x_shape[1], 2 * self.state)

    def _gates(self, conv: keras.layers.Conv1D, x: Any, mask3: Any, training: bool) -> tuple[Any, Any, Any]:
        a = conv(x)
        a_z, a_k, a_o = ops.split(a, 3, axis=-1)
        k = ops.sigmoid(a_k) * mask3  # k = 1 - f; 0 at padded steps
        if self.zoneout > 0:
            if training:
                keep = keras.random.uniform(ops.shape(k), seed=self.seed_generator) >= self.zoneout
                k = k * ops.cast(keep, k.dtype)
            else:
                k = k * (1.0 - self.zoneout)
        return ops.tanh(a_z), k, ops.sigmoid(a_o)

    @staticmethod
    def _pool(z: Any, k: Any, o: Any, reverse: bool) -> Any:
        """fo-pooling over time; the Python loop unrolls into T copies of SUB/MUL/ADD."""
        zs, ks = ops.unstack(z, axis=1), ops.unstack(k, axis=1)
        steps = range(len(zs) - 1, -1, -1) if reverse else range(len(zs))
        cells: list[Any] = [None] * len(zs)
        c = None
        for t in steps:
            # The first step starts from state 0: c = k * z, with no zeros tensor to build.
            c = ks[t] * zs[t] if c is None else c + ks[t] * (zs[t] - c)
            cells[t] = c
        return o * ops.stack(cells, axis=1)

    def call(self, inputs: tuple[Any, Any], training: bool | None = None) -> Any:
        x, seq_mask = inputs
        mask3 = ops.expand_dims(seq_mask, -1)
        pad = self.kernel_width - 1
        # Pad both ends once; each direction slices its own window (PAD + STRIDED_SLICE
        # + CONV_2D all have int8 kernels).
        xp = ops.pad(x, ((0, 0), (pad, pad), (0, 0)))
        steps = x.shape[1]
        forward = self._pool(*self._gates(self.forward_gates, xp[:, : steps + pad], mask3, bool(training)), False)
        backward = self._pool(*self._gates(self.backward_gates, xp[:, pad:], mask3, bool(training)), True)
        return ops.concatenate([forward, backward], axis=-1) * mask3

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "state": self.state, "kernel_width": self.kernel_width, "zoneout": self.zoneout}


class GatedMeanPooling(keras.layers.Layer):
    """Attention-like pooling without softmax: ``[sum_t w_t h_t, sum_t w_t sigmoid(a_t) h_t]``.

    Softmax attention over time needs masking of padded steps by adding a large negative
    number before the softmax, which wrecks the int8 range of the scores, and a
    normalising DIV. Instead each token gets an independent sigmoid gate on ``a_t = u . h_t + b``
    applied to the masked-mean weights ``w_t = mask_t / n`` (an input, so no DIV); the
    gated sum is not normalised, so the plain masked mean is concatenated beside it to
    keep the "average of all tokens" signal. Padded steps have ``w_t = 0``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.score = keras.layers.Dense(1, name="score")

    def build(self, input_shape: Any) -> None:
        self.score.build(input_shape[0])

    def compute_output_shape(self, input_shape: Any) -> tuple:
        h_shape = input_shape[0]
        return (h_shape[0], 2 * h_shape[2])

    def call(self, inputs: tuple[Any, Any]) -> Any:
        h, pool_weights = inputs
        w = ops.expand_dims(pool_weights, -1)
        mean = ops.sum(h * w, axis=1)
        gated = ops.sum(h * (w * ops.sigmoid(self.score(h))), axis=1)
        return ops.concatenate([mean, gated], axis=-1)


def build_model(config: ModelConfig) -> keras.Model:
    """Build the (untrained) pQRNN Keras model for ``config``.

    Args:
        config: the model configuration.

    Returns:
        A functional ``keras.Model`` taking a dict with ``features`` float32 [B, T, F],
        ``mask`` float32 [B, T] and ``pool_weights`` float32 [B, T] (as produced by
        :func:`edge_pqrnn.projection.project`), returning a dict with
        ``intent_logits`` [B, num_intents] and, with the slot head, ``slot_logits``
        [B, T, num_tags].

    Example:
        >>> model = build_model(ModelConfig(num_intents=3, num_tags=5))
        >>> {name: tensor.shape for name, tensor in model.output.items()}
        {'intent_logits': (None, 3), 'slot_logits': (None, 64, 5)}
    """
    T, F = config.projection.max_tokens, config.projection.feature_size
    features = keras.Input((T, F), name="features")
    seq_mask = keras.Input((T,), name="mask")
    pool_weights = keras.Input((T,), name="pool_weights")

    x = keras.layers.Dense(config.bottleneck, activation="relu", name="bottleneck")(features)
    # Padded rows are 0 in the features but relu(bias) after the bottleneck: zero them so
    # the gate convolutions read the same thing past the text whatever T is.
    x = keras.layers.Multiply(name="bottleneck_mask")([x, keras.layers.Reshape((T, 1))(seq_mask)])
    for i in range(config.layers):
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
        x = BiQRNN(config.state, config.kernel_width, config.zoneout_of_layer(i), name=f"qrnn_{i}")((x, seq_mask))
    x = keras.layers.Dropout(config.dropout, name="dropout_out")(x)

    pooled = GatedMeanPooling(name="pooling")((x, pool_weights))
    outputs = {INTENT_OUTPUT: keras.layers.Dense(config.num_intents, name=INTENT_OUTPUT)(pooled)}
    if config.slot_head:
        outputs[SLOT_OUTPUT] = keras.layers.Dense(config.num_tags, name=SLOT_OUTPUT)(x)
    inputs = {"features": features, "mask": seq_mask, "pool_weights": pool_weights}
    return keras.Model(inputs=inputs, outputs=outputs, name="pqrnn")


def count_params(config: ModelConfig) -> int:
    """Number of trainable parameters of ``build_model(config)``, without building it.

    Args:
        config: the model configuration.

    Returns:
        The parameter count (int8 weight bytes are about the same number).

    Example:
        >>> count_params(ModelConfig(num_intents=22, num_tags=157))  # ATIS: 22 intents, 78 slot types
        1003828
    """
    total = config.projection.feature_size * config.bottleneck + config.bottleneck
    width = config.bottleneck
    for _ in range(config.layers):
        total += 2 * (config.kernel_width * width * 3 * config.state + 3 * config.state)
        width = 2 * config.state
    total += width + 1  # pooling score
    total += 2 * width * config.num_intents + config.num_intents
    if config.slot_head:
        total += width * config.num_tags + config.num_tags
    return total
