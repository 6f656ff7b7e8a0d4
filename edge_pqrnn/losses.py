"""The compiled training steps: cross-entropy to gold, and the distillation (KD) loss
with the teacher logits it learns from (:class:`Distillation`).

Both steps return ``(loss, intent_loss, slot_loss)``; :func:`edge_pqrnn.train.train`
picks one (KD when it is given a :class:`Distillation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from edge_pqrnn.data.records import Example
from edge_pqrnn.model import INTENT_OUTPUT, SLOT_OUTPUT, ModelConfig


@dataclasses.dataclass
class Distillation:
    """Teacher logits for knowledge distillation (see ``edge_pqrnn.distill``).

    Attributes:
        extra: unlabelled training texts (augmented variants...) appended to the train
            split; their gold labels, if any, are ignored.
        intent: float32 [N, num_intents] teacher intent logits for ``dataset.train``
            followed by ``extra`` (N = len(train) + len(extra)).
        slot_rows: float32 [sum of rows, num_tags] teacher slot logits per token row of
            the student's projection spec; text n owns ``slot_rows[offsets[n]:offsets[n+1]]``.
        offsets: int64 [N + 1].
    """

    extra: Sequence[Example]
    intent: np.ndarray
    slot_rows: np.ndarray
    offsets: np.ndarray

    def slots(self, index: np.ndarray, max_tokens: int) -> np.ndarray:
        """Teacher slot logits of texts ``index`` as float32 [B, max_tokens, tags]."""
        out = np.zeros((len(index), max_tokens, self.slot_rows.shape[1]), np.float32)
        for b, i in enumerate(index):
            rows = self.slot_rows[self.offsets[i] : self.offsets[i + 1]][:max_tokens]
            out[b, : len(rows)] = rows
        return out


class LossSettings(Protocol):
    """The loss fields of :class:`edge_pqrnn.train.TrainConfig` (documented there)."""

    label_smoothing: float
    slot_loss_weight: float
    kd_weight: float
    kd_temperature: float
    kd_slot_weight: float | None


def _cross_entropy(smoothing: float) -> Any:
    """Per-example softmax cross-entropy against (label-smoothed) integer targets."""

    def cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        onehot = tf.one_hot(targets, tf.shape(logits)[-1])
        if smoothing:
            onehot = onehot * (1.0 - smoothing) + smoothing / tf.cast(tf.shape(logits)[-1], tf.float32)
        return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)

    return cross_entropy


def make_train_step(model: keras.Model, optimizer: keras.Optimizer, config: ModelConfig, tc: LossSettings) -> Any:
    """A compiled step: intent CE + weight * slot CE averaged over real (mask=1) tokens."""
    cross_entropy = _cross_entropy(tc.label_smoothing)

    @tf.function(reduce_retracing=True)
    def step(inputs: dict[str, tf.Tensor], intents: tf.Tensor, tags: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            out = model(inputs, training=True)
            intent_loss = tf.reduce_mean(cross_entropy(intents, out[INTENT_OUTPUT]))
            slot_loss = tf.constant(0.0)
            if config.slot_head:
                mask = inputs["mask"]
                slot_loss = tf.reduce_sum(cross_entropy(tags, out[SLOT_OUTPUT]) * mask) / tf.reduce_sum(mask)
            loss = intent_loss + tc.slot_loss_weight * slot_loss
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, intent_loss, slot_loss

    return step


def make_kd_step(model: keras.Model, optimizer: keras.Optimizer, config: ModelConfig, tc: LossSettings) -> Any:
    """A compiled distillation step: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha)
    * gold cross-entropy, for intents and per real token for slots (alpha of the slots:
    ``kd_slot_weight``); texts with gold weight 0 (augmented) contribute the KL term only."""
    alpha, temperature = tc.kd_weight, tc.kd_temperature
    slot_alpha = tc.kd_weight if tc.kd_slot_weight is None else tc.kd_slot_weight
    cross_entropy = _cross_entropy(tc.label_smoothing)

    def kl(teacher: tf.Tensor, student: tf.Tensor) -> tf.Tensor:
        p = tf.nn.softmax(teacher / temperature)
        return tf.reduce_sum(p * (tf.nn.log_softmax(teacher / temperature) - tf.nn.log_softmax(student / temperature)),
                             -1) * (temperature**2)

    @tf.function(reduce_retracing=True)
    def step(inputs: dict[str, tf.Tensor], intents: tf.Tensor, tags: tf.Tensor, gold: tf.Tensor,
             teacher_intent: tf.Tensor, teacher_slots: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            out = model(inputs, training=True)
            n_gold = tf.maximum(tf.reduce_sum(gold), 1.0)
            intent_ce = tf.reduce_sum(cross_entropy(intents, out[INTENT_OUTPUT]) * gold) / n_gold
            intent_kl = tf.reduce_mean(kl(teacher_intent, out[INTENT_OUTPUT]))
            intent_loss = alpha * intent_kl + (1.0 - alpha) * intent_ce
            slot_loss = tf.constant(0.0)
            if config.slot_head:
                mask = inputs["mask"]
                gold_mask = mask * gold[:, None]
                slot_ce = tf.reduce_sum(cross_entropy(tags, out[SLOT_OUTPUT]) * gold_mask) / tf.maximum(
                    tf.reduce_sum(gold_mask), 1.0)
                slot_kl = tf.reduce_sum(kl(teacher_slots, out[SLOT_OUTPUT]) * mask) / tf.reduce_sum(mask)
                slot_loss = slot_alpha * slot_kl + (1.0 - slot_alpha) * slot_ce
            loss = intent_loss + tc.slot_loss_weight * slot_loss
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, intent_loss, slot_loss

    return step
