"""Train a pQRNN on a dataset and write a run directory; load it back.

A run directory holds::

    config.json        the ModelConfig (projection spec included)
    labels.json        intents, tag vocabulary, slot types
    model.weights.h5   the Keras weights (best dev epoch)
    history.json       one entry per epoch: losses, learning rate, dev metrics, seconds
    metrics.json       dev (and test) metrics, best epoch, time, parameter count

Training happens in a hidden temporary directory next to the target, which is renamed
into place only when everything is written; ``metrics.json`` is written last, so an
interrupted run never leaves a directory that looks finished.

Example:
    >>> from edge_pqrnn.data import load_dataset
    >>> result = train(load_dataset("fixture:atis"), None, TrainConfig(epochs=2), "runs/demo")  # doctest: +SKIP
    >>> run = load_run("runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from edge_pqrnn.data.align import bio_tags, tag_vocabulary
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.errors import ArtifactError, ConfigError, DataError
from edge_pqrnn.evaluate import Labels, Logits, score
from edge_pqrnn.model import INTENT_OUTPUT, SLOT_OUTPUT, ModelConfig, build_model, count_params
from edge_pqrnn.projection import Projection, ProjectionSpec, Token, project

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "model.weights.h5"
HISTORY_FILE = "history.json"
#: Written last: its presence marks a finished run.
METRICS_FILE = "metrics.json"

_PROJECT_CHUNK = 512  # texts projected at once (bounds the float32 [B, T, F] buffer)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Args:
        epochs: maximum number of passes over the training set.
        batch_size: examples per step.
        learning_rate: peak Adam learning rate (cosine decay to 5% over ``epochs``).
        patience: stop after this many epochs without a better dev score
            (intent accuracy + slot F1); the best epoch's weights are restored.
        seed: seeds shuffling, initialisation, dropout/zoneout and distortion.
        label_smoothing: label smoothing of both cross-entropies.
        slot_loss_weight: weight of the slot loss against the intent loss.
        clipnorm: global gradient-norm clip.
        max_minutes: optional wall-clock budget; training stops after the epoch that
            exceeds it (the best epoch so far is kept).
        kd_weight: with a teacher (``train(..., distillation=...)``), the weight alpha of
            the distillation term: loss = alpha * T^2 * KL(teacher_T || student_T)
            + (1 - alpha) * cross-entropy to gold, for intents and per token for slots.
            Texts without gold labels (augmented) get the KL term only.
        kd_temperature: the temperature T of both softmaxes in the KL term.
        kd_slot_weight: alpha of the slot head alone (default: ``kd_weight``); lower it
            when the teacher's slot F1 is below what the student reaches on gold labels.
        average_last: with N >= 2, also score the mean of the weights at the end of the
            last N epochs run (checkpoint averaging); it replaces the best epoch's
            weights when its dev score is higher. 0 turns it off.

    Raises:
        ConfigError: a value is out of range.
    """

    epochs: int = 25
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 8
    seed: int = 0
    label_smoothing: float = 0.0
    slot_loss_weight: float = 1.0
    clipnorm: float = 5.0
    max_minutes: float | None = None
    kd_weight: float = 0.5
    kd_temperature: float = 2.0
    kd_slot_weight: float | None = None
    average_last: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"train {name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not self.slot_loss_weight >= 0:
            raise ConfigError(f"slot_loss_weight must be >= 0, got {self.slot_loss_weight!r}")
        if not self.clipnorm > 0:
            raise ConfigError(f"clipnorm must be positive, got {self.clipnorm!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be positive or None, got {self.max_minutes!r}")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ConfigError(f"kd_weight must be in [0, 1] (1 = teacher only), got {self.kd_weight!r}")
        if self.kd_slot_weight is not None and not 0.0 <= self.kd_slot_weight <= 1.0:
            raise ConfigError(f"kd_slot_weight must be in [0, 1] or None (= kd_weight), got {self.kd_slot_weight!r}")
        if not self.kd_temperature > 0:
            raise ConfigError(f"kd_temperature must be positive, got {self.kd_temperature!r}")
        if isinstance(self.average_last, bool) or not isinstance(self.average_last, int) or self.average_last < 0 \
                or self.average_last == 1:
            raise ConfigError(f"average_last must be 0 (off) or an integer >= 2, got {self.average_last!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (recorded in ``metrics.json``)."""
        return dataclasses.asdict(self)


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


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the finished run directory.
        model: the trained Keras model (best dev weights).
        config: the model configuration used.
        labels: the label vocabularies.
        metrics: the content of ``metrics.json``.
        history: the content of ``history.json``.
    """

    run_dir: Path
    model: keras.Model
    config: ModelConfig
    labels: Labels
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


@dataclasses.dataclass
class Run:
    """A finished run loaded by :func:`load_run`; also a predictor for ``evaluate()``.

    Attributes:
        path: the run directory.
        config: the model configuration.
        labels: the label vocabularies.
        model: the Keras model with the run's weights.
        metrics: the content of ``metrics.json``.
    """

    path: Path
    config: ModelConfig
    labels: Labels
    model: keras.Model
    metrics: dict[str, Any]

    @property
    def spec(self) -> ProjectionSpec:
        """The projection spec the model was trained with."""
        return self.config.projection

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> Logits:
        """Float logits for raw texts (numpy projection -> Keras model).

        Args:
            texts: the utterances.
            batch_size: texts per model call.

        Returns:
            Intent logits [N, num_intents] and slot logits [N, T, num_tags] (or None).
        """
        intents, slots = [], []
        for i in range(0, len(texts), batch_size):
            p = project(list(texts[i : i + batch_size]), self.spec)
            out = self.model(_model_inputs(p.features, p.mask, p.pool_weights), training=False)
            intents.append(np.asarray(out[INTENT_OUTPUT]))
            if SLOT_OUTPUT in out:
                slots.append(np.asarray(out[SLOT_OUTPUT]))
        return _concat_logits(intents, slots, self.config)


class _Split:
    """A split projected once: token feature rows kept compactly as int8.

    The dense float32 [N, T, F] array would be ~0.6 GB for ATIS train at T=64, F=512;
    the text's rows alone are ~5x smaller in int8 and batches are re-padded on demand.
    """

    def __init__(self, examples: Sequence[Example], spec: ProjectionSpec, rng: np.random.Generator | None = None):
        self.spec = spec
        chunks: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        self.tokens: list[list[Token]] = []
        for i in range(0, len(examples), _PROJECT_CHUNK):
            p: Projection = project([ex.text for ex in examples[i : i + _PROJECT_CHUNK]], spec, rng=rng)
            chunks += [p.features[b, : p.num_tokens[b]].astype(np.int8) for b in range(len(p.num_tokens))]
            counts.append(p.num_tokens)
            self.tokens += p.tokens
        self.rows = np.concatenate(chunks) if chunks else np.zeros((0, spec.feature_size), np.int8)
        self.num_tokens = np.concatenate(counts) if counts else np.zeros((0,), np.int32)
        self.offsets = np.concatenate([[0], np.cumsum(self.num_tokens)])

    def __len__(self) -> int:
        return len(self.num_tokens)

    def inputs(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Model inputs of the examples at ``index``, exactly as ``project()`` builds them."""
        T, F = self.spec.max_tokens, self.spec.feature_size
        features = np.zeros((len(index), T, F), np.float32)
        for b, i in enumerate(index):
            features[b, : self.num_tokens[i]] = self.rows[self.offsets[i] : self.offsets[i + 1]]
        n = self.num_tokens[index]
        mask = (np.arange(T)[None, :] < n[:, None]).astype(np.float32)
        # float32 1/n, as project() computes it, so cached and fresh inputs are identical.
        pool = mask * (np.float32(1.0) / n.astype(np.float32))[:, None]
        return _model_inputs(features, mask, pool)


def _model_inputs(features: np.ndarray, mask: np.ndarray, pool_weights: np.ndarray) -> dict[str, np.ndarray]:
    return {"features": features, "mask": mask, "pool_weights": pool_weights}


def _concat_logits(intents: list[np.ndarray], slots: list[np.ndarray], config: ModelConfig) -> Logits:
    T = config.projection.max_tokens
    intent = np.concatenate(intents) if intents else np.zeros((0, config.num_intents), np.float32)
    if not config.slot_head:
        return Logits(intent, None)
    slot = np.concatenate(slots) if slots else np.zeros((0, T, config.num_tags), np.float32)
    return Logits(intent, slot)


def _targets(
    examples: Sequence[Example], split: _Split, labels: Labels, with_slots: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Intent ids [N] and tag ids [N, T] (0 = "O" on padded rows, masked in the loss)."""
    intent_index = {name: i for i, name in enumerate(labels.intents)}
    unknown = sorted({ex.intent for ex in examples} - set(intent_index))
    if unknown:
        raise DataError(f"training intents {unknown[:5]} are missing from dataset.intents; rebuild the dataset")
    intents = np.array([intent_index[ex.intent] for ex in examples], np.int32)
    if not with_slots:
        return intents, None
    tag_index = {tag: i for i, tag in enumerate(labels.tags)}
    tags = np.zeros((len(examples), split.spec.max_tokens), np.int32)
    for n, (ex, rows) in enumerate(zip(examples, split.tokens)):
        for t, tag in enumerate(bio_tags(ex, rows)):
            if tag not in tag_index:
                raise DataError(
                    f"training tag {tag!r} (in {ex.text!r}) is not in the tag vocabulary built from "
                    "dataset.slot_types; rebuild the dataset"
                )
            tags[n, t] = tag_index[tag]
    return intents, tags


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ArtifactError(f"{out_dir} exists and is not a directory; choose another output directory")
    if (out_dir / METRICS_FILE).exists() and not overwrite:
        raise ArtifactError(
            f"{out_dir} already holds a finished run; pass overwrite=True (CLI: --overwrite) to "
            "replace it, or choose another output directory"
        )
    if any(out_dir.iterdir()) and not overwrite:
        raise ArtifactError(
            f"{out_dir} exists, is not empty and is not a finished run; remove it, pass "
            "overwrite=True (CLI: --overwrite) or choose another output directory"
        )


def _publish(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished temporary run into place, replacing any old one (whose mode it
    takes; a new run gets 0777 minus the umask, not the temp folder's 0700)."""
    from edge_pqrnn._io import destination_mode

    os.chmod(tmp_dir, destination_mode(out_dir, directory=True))
    old = None
    if out_dir.exists():
        # rename() cannot replace a non-empty directory: move the old one aside first.
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        out_dir.rename(old / "run")
    tmp_dir.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train(
    dataset: Dataset,
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    out_dir: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    distillation: Distillation | None = None,
    augmented: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a pQRNN on ``dataset`` and write a finished run directory.

    Args:
        dataset: the dataset (its train split trains, dev selects the epoch, test is
            scored at the end when not empty).
        model_config: the model; ``None`` uses the defaults. Its ``num_intents`` /
            ``num_tags`` / ``slot_head`` are set from the dataset's labels.
        train_config: optimisation settings; ``None`` uses the defaults.
        out_dir: the run directory to create.
        progress: show the parameter count, a progress bar and one line per epoch.
        overwrite: replace an existing run directory.
        distillation: teacher logits; the loss then mixes KL to the teacher with
            cross-entropy to gold (``train_config.kd_weight``/``kd_temperature``).
        augmented: how the train split was augmented with gold-labelled variants
            (counts and settings), stored under ``augment`` in ``metrics.json``.

    Returns:
        A :class:`TrainResult` with the model (best dev weights) and its metrics.

    Raises:
        ArtifactError: ``out_dir`` already holds a run and ``overwrite`` is false.
        DataError: the dataset has no dev examples or inconsistent labels.
        ConfigError: invalid settings.

    Example:
        >>> result = train(load_dataset("atis"), None, TrainConfig(max_minutes=10), "runs/atis")  # doctest: +SKIP
        >>> result.metrics["test"]["intent_accuracy"]  # doctest: +SKIP
        0.964
    """
    train_config = train_config or TrainConfig()
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    if not dataset.dev:
        raise DataError(f"{dataset.name}: the dev split is empty; early stopping needs dev examples")
    labels = Labels(
        intents=tuple(dataset.intents),
        tags=tuple(tag_vocabulary(dataset.slot_types)) if dataset.has_slots else (),
        slot_types=tuple(dataset.slot_types) if dataset.has_slots else (),
    )
    base = model_config or ModelConfig(num_intents=len(labels.intents), slot_head=False)
    config = dataclasses.replace(
        base, num_intents=len(labels.intents), num_tags=len(labels.tags), slot_head=dataset.has_slots
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        keras.utils.set_random_seed(train_config.seed)
        _write_json(tmp_dir / CONFIG_FILE, config.to_dict())
        _write_json(tmp_dir / LABELS_FILE, labels.to_dict())
        result = _fit(dataset, config, labels, train_config, tmp_dir, progress, distillation, augmented)
        _publish(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    result.run_dir = out_dir
    return result


def _fit(
    dataset: Dataset,
    config: ModelConfig,
    labels: Labels,
    tc: TrainConfig,
    run_dir: Path,
    progress: bool,
    distillation: Distillation | None = None,
    augmented: dict[str, Any] | None = None,
) -> TrainResult:
    """The training loop proper; writes weights, history and (last) metrics into run_dir."""
    started = time.monotonic()
    spec = config.projection
    rng = np.random.default_rng(tc.seed)
    distort = spec.distortion > 0
    train_examples = list(dataset.train) + list(distillation.extra if distillation else ())
    train_split = _Split(train_examples, spec, rng if distort else None)
    dev_split = _Split(dataset.dev, spec)
    if distillation is not None:
        n = len(train_examples)
        if distillation.intent.shape != (n, config.num_intents) or len(distillation.offsets) != n + 1:
            raise DataError(
                f"teacher logits for {distillation.intent.shape[0]} texts x {distillation.intent.shape[1]} intents, "
                f"expected {n} x {config.num_intents}: label train + extra with the same teacher and dataset"
            )
    # Gold targets of the labelled texts: the first len(dataset.train) rows of the split.
    intent_ids, tag_ids = _targets(dataset.train, train_split, labels, config.slot_head)
    if distillation is not None:  # extra texts: no gold (weight 0), teacher targets only
        extra = len(train_examples) - len(dataset.train)
        gold_weight = np.concatenate([np.ones(len(dataset.train)), np.zeros(extra)]).astype(np.float32)
        intent_ids = np.concatenate([intent_ids, np.zeros(extra, np.int32)])
        if tag_ids is not None:
            tag_ids = np.concatenate([tag_ids, np.zeros((extra, tag_ids.shape[1]), np.int32)])

    model = build_model(config)
    num_params = count_params(config)
    if progress:
        print(f"pQRNN model: {num_params:,} parameters ({len(dataset.train)} train / {len(dataset.dev)} dev examples)")

    steps_per_epoch = math.ceil(len(train_split) / tc.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(tc.learning_rate, tc.epochs * steps_per_epoch, alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=tc.clipnorm)
    train_step = _make_train_step(model, optimizer, config, tc) if distillation is None else (
        _make_kd_step(model, optimizer, config, tc))
    predict_step = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def predict_split(split: _Split) -> Logits:
        intents, slots = [], []
        for i in range(0, len(split), 256):
            out = predict_step(split.inputs(np.arange(i, min(i + 256, len(split)))))
            intents.append(out[INTENT_OUTPUT].numpy())
            if config.slot_head:
                slots.append(out[SLOT_OUTPUT].numpy())
        return _concat_logits(intents, slots, config)

    def score_dev() -> tuple[dict[str, Any], float, str]:
        """Dev metrics of the current weights, their early-stopping score and log text."""
        dev = score(dataset.dev, predict_split(dev_split), dev_split.tokens, labels)
        slot_text = f" slot F1 {dev['slot_f1']:.4f}" if config.slot_head else ""
        return (dev, dev["intent_accuracy"] + (dev["slot_f1"] if config.slot_head else 0.0),
                f"dev intent {dev['intent_accuracy']:.4f}{slot_text}")

    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_weights, best_dev = -math.inf, 0, model.get_weights(), {}
    recent: collections.deque = collections.deque(maxlen=tc.average_last or 1)  # end-of-epoch weights
    for epoch in range(1, tc.epochs + 1):
        epoch_start = time.monotonic()
        if distort and epoch > 1:  # fresh noise each epoch; epoch 1 reuses the first projection
            train_split = _Split(train_examples, spec, rng)
        order = rng.permutation(len(train_split))
        totals = np.zeros(3)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{tc.epochs}", disable=not progress, leave=False)
        for step in range(steps_per_epoch):
            index = order[step * tc.batch_size : (step + 1) * tc.batch_size]
            inputs = train_split.inputs(index)
            slot_targets = tag_ids[index] if tag_ids is not None else np.zeros((len(index), 1), np.int32)
            if distillation is None:
                losses = np.array([float(v) for v in train_step(inputs, intent_ids[index], slot_targets)])
            else:
                teacher_slots = (distillation.slots(index, spec.max_tokens) if config.slot_head
                                 else np.zeros((len(index), 1, 1), np.float32))
                losses = np.array([float(v) for v in train_step(
                    inputs, intent_ids[index], slot_targets, gold_weight[index],
                    distillation.intent[index], teacher_slots)])
            totals += losses
            bar.update()
            bar.set_postfix(loss=f"{totals[0] / (step + 1):.4f}")
        bar.close()
        dev, dev_score, dev_text = score_dev()
        entry = {
            "epoch": epoch,
            "loss": totals[0] / steps_per_epoch,
            "intent_loss": totals[1] / steps_per_epoch,
            "slot_loss": totals[2] / steps_per_epoch,
            "learning_rate": float(schedule(epoch * steps_per_epoch)),
            "dev": dev,
            "seconds": time.monotonic() - epoch_start,
        }
        history.append(entry)
        improved = dev_score > best_score
        if tc.average_last:
            recent.append(model.get_weights())
        if improved:
            best_score, best_epoch, best_weights, best_dev = dev_score, epoch, model.get_weights(), dev
        if progress:
            tqdm.write(f"epoch {epoch:>3}: loss {entry['loss']:.4f}  {dev_text}  ({entry['seconds']:.0f}s)"
                       f"{'  *best' if improved else ''}")
        if epoch - best_epoch >= tc.patience:
            break
        if tc.max_minutes is not None and time.monotonic() - started > 60 * tc.max_minutes:
            break

    averaged = None
    if tc.average_last and len(recent) >= 2:
        mean = _mean_weights(list(recent))
        model.set_weights(mean)
        dev, dev_score, dev_text = score_dev()
        epochs = list(range(len(history) - len(recent) + 1, len(history) + 1))
        averaged = {"epochs": epochs, "dev": dev, "used": dev_score > best_score}
        if progress:
            tqdm.write(f"mean of epochs {epochs[0]}-{epochs[-1]}: {dev_text}{'  *best' if averaged['used'] else ''}")
        if averaged["used"]:
            best_weights, best_dev = mean, dev
    model.set_weights(best_weights)
    model.save_weights(run_dir / WEIGHTS_FILE)
    _write_json(run_dir / HISTORY_FILE, history)
    metrics: dict[str, Any] = {
        "dataset": dataset.name,
        "dev": best_dev,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_seconds": time.monotonic() - started,
        "num_params": num_params,
        "train_config": tc.to_dict(),
    }
    if distillation is not None:
        metrics["distillation"] = {"gold_texts": len(dataset.train), "extra_texts": len(distillation.extra),
                                   "kd_weight": tc.kd_weight, "kd_temperature": tc.kd_temperature,
                                   **({"kd_slot_weight": tc.kd_slot_weight} if tc.kd_slot_weight is not None else {})}
    if augmented is not None:
        metrics["augment"] = augmented
    if averaged is not None:
        metrics["weight_average"] = averaged
    if dataset.test:
        test_split = _Split(dataset.test, spec)
        metrics["test"] = score(dataset.test, predict_split(test_split), test_split.tokens, labels)
    _write_json(run_dir / METRICS_FILE, metrics)  # last: marks the run finished
    if progress:
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.get("test", best_dev).items() if isinstance(v, float))
        chosen = (f"mean of epochs {averaged['epochs'][0]}-{averaged['epochs'][-1]}" if averaged and averaged["used"]
                  else f"best epoch {best_epoch}")
        print(f"{chosen}; {'test' if dataset.test else 'dev'}: {summary}")
    return TrainResult(run_dir, model, config, labels, metrics, history)


def _mean_weights(snapshots: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of float weights; other state (e.g. RNG seeds) from the last snapshot."""
    return [np.mean(group, axis=0).astype(group[-1].dtype) if np.issubdtype(group[-1].dtype, np.floating)
            else group[-1] for group in zip(*snapshots)]


def _cross_entropy(smoothing: float) -> Any:
    """Per-example softmax cross-entropy against (label-smoothed) integer targets."""

    def cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        onehot = tf.one_hot(targets, tf.shape(logits)[-1])
        if smoothing:
            onehot = onehot * (1.0 - smoothing) + smoothing / tf.cast(tf.shape(logits)[-1], tf.float32)
        return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)

    return cross_entropy


def _make_train_step(model: keras.Model, optimizer: keras.Optimizer, config: ModelConfig, tc: TrainConfig) -> Any:
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


def _make_kd_step(model: keras.Model, optimizer: keras.Optimizer, config: ModelConfig, tc: TrainConfig) -> Any:
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


def _read_json(path: Path, what: str) -> Any:
    from edge_pqrnn._io import MAX_RUN_FILE_BYTES, read_file

    if not path.exists() and not path.is_symlink():
        raise ArtifactError(f"{path} is missing: {what}")
    data = read_file(path, limit=MAX_RUN_FILE_BYTES, error=ArtifactError, what="a run file", fix=what)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{path} is not readable JSON ({exc}); re-run training") from exc


def load_run(run_dir: str | Path) -> Run:
    """Load a finished run directory written by :func:`train`.

    Args:
        run_dir: the run directory.

    Returns:
        A :class:`Run` with the configuration, labels, metrics and Keras model.

    Raises:
        ArtifactError: the directory does not exist, is unfinished (no metrics.json),
            or a file is missing, corrupt or does not match the configuration.

    Example:
        >>> run = load_run("runs/atis")  # doctest: +SKIP
        >>> run.labels.intents[run.predict(["flights to boston"]).intent.argmax()]  # doctest: +SKIP
        'atis_flight'
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist; train one with edge_pqrnn.train.train()")
    metrics = _read_json(
        run_dir / METRICS_FILE, "the run did not finish (interrupted or still training); re-run training"
    )
    try:
        config = ModelConfig.from_dict(_read_json(run_dir / CONFIG_FILE, "not a run directory written by train()"))
        labels = Labels.from_dict(_read_json(run_dir / LABELS_FILE, "not a run directory written by train()"))
    except ConfigError as exc:
        raise ArtifactError(f"{run_dir}: invalid config or labels ({exc}); re-run training") from exc
    if len(labels.intents) != config.num_intents or (config.slot_head and len(labels.tags) != config.num_tags):
        raise ArtifactError(
            f"{run_dir}: labels.json ({len(labels.intents)} intents, {len(labels.tags)} tags) does not match "
            f"config.json ({config.num_intents} intents, {config.num_tags} tags); re-run training"
        )
    weights = run_dir / WEIGHTS_FILE
    if not weights.exists() and not weights.is_symlink():
        raise ArtifactError(f"{weights} is missing; re-run training")
    from edge_pqrnn._io import MAX_WEIGHTS_BYTES, check_file

    check_file(weights, limit=MAX_WEIGHTS_BYTES, error=ArtifactError, what="model weights", fix="re-run training")
    model = build_model(config)
    try:
        model.load_weights(weights)
    except Exception as exc:  # h5py/keras raise several types for corrupt or mismatched files
        raise ArtifactError(f"{weights} cannot be loaded into the configured model ({exc}); re-run training") from exc
    return Run(run_dir, config, labels, model, metrics)
