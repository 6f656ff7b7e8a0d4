"""Train a pQRNN on a dataset and write a run directory (its format: :mod:`edge_pqrnn.run`).

Training happens in a hidden temporary directory next to the target, which is renamed
into place only when everything is written; ``metrics.json`` is written last, so an
interrupted run never leaves a directory that looks finished.

Example:
    >>> from edge_pqrnn.data import load_dataset
    >>> from edge_pqrnn.run import load_run
    >>> result = train(load_dataset("fixture:atis"), None, TrainConfig(epochs=2), "runs/demo")  # doctest: +SKIP
    >>> run = load_run("runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import dataclasses
import math
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
from edge_pqrnn.errors import ConfigError, DataError
from edge_pqrnn.evaluate import Labels, Logits, score
from edge_pqrnn.losses import Distillation, make_kd_step, make_train_step
from edge_pqrnn.model import INTENT_OUTPUT, SLOT_OUTPUT, ModelConfig, build_model, count_params
from edge_pqrnn.projection import Projection, ProjectionSpec, Token, project
from edge_pqrnn.run import check_target, concat_logits, model_inputs, save_header, save_run, staging

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
        smooth: stop on the mean dev score of the last ``smooth`` epochs (a moving
            average; 1 = the epoch's own score): one lucky or unlucky epoch on a small,
            noisy dev set neither stops training nor keeps it going. The best single
            epoch's weights are still the ones restored.
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
    smooth: int = 1
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
        for name in ("epochs", "batch_size", "patience", "smooth"):
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
        return model_inputs(features, mask, pool)


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
    check_target(out_dir, overwrite)
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

    with staging(out_dir) as tmp_dir:
        keras.utils.set_random_seed(train_config.seed)
        save_header(tmp_dir, config, labels)
        result = _fit(dataset, config, labels, train_config, tmp_dir, progress, distillation, augmented)
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
    session = _Session(dataset, config, labels, tc, progress, distillation)
    history, best, recent = session.run_epochs(started)
    averaged = session.average(history, best, recent)
    session.model.set_weights(best.weights)
    metrics: dict[str, Any] = {
        "dataset": dataset.name,
        "dev": best.dev,
        "best_epoch": best.epoch,
        "epochs_run": len(history),
        "train_seconds": time.monotonic() - started,
        "num_params": session.num_params,
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
        test_split = _Split(dataset.test, config.projection)
        metrics["test"] = score(dataset.test, session.predict(test_split), test_split.tokens, labels)
    save_run(run_dir, session.model, history, metrics)
    if progress:
        _print_summary(metrics, best, averaged, bool(dataset.test))
    return TrainResult(run_dir, session.model, config, labels, metrics, history)


@dataclasses.dataclass
class _Targets:
    """Per text of the train split: gold intent ids [N], tag ids [N, T] (or None) and,
    with a teacher, the gold weight [N] (0 for extra texts, which have no gold)."""

    intents: np.ndarray
    tags: np.ndarray | None
    gold_weight: np.ndarray | None = None


@dataclasses.dataclass
class _Best:
    """The best weights so far, their early-stopping score, epoch and dev metrics."""

    score: float
    epoch: int
    weights: list[np.ndarray]
    dev: dict[str, Any]


def _training_targets(dataset: Dataset, split: _Split, labels: Labels, config: ModelConfig,
                      distillation: Distillation | None) -> _Targets:
    """Gold targets of the labelled texts (the first len(dataset.train) rows of ``split``);
    extra texts get placeholder ids and gold weight 0 (teacher targets only)."""
    if distillation is not None:
        n = len(split)
        if distillation.intent.shape != (n, config.num_intents) or len(distillation.offsets) != n + 1:
            raise DataError(
                f"teacher logits for {distillation.intent.shape[0]} texts x {distillation.intent.shape[1]} intents, "
                f"expected {n} x {config.num_intents}: label train + extra with the same teacher and dataset"
            )
    intent_ids, tag_ids = _targets(dataset.train, split, labels, config.slot_head)
    if distillation is None:
        return _Targets(intent_ids, tag_ids)
    extra = len(split) - len(dataset.train)
    gold_weight = np.concatenate([np.ones(len(dataset.train)), np.zeros(extra)]).astype(np.float32)
    intent_ids = np.concatenate([intent_ids, np.zeros(extra, np.int32)])
    if tag_ids is not None:
        tag_ids = np.concatenate([tag_ids, np.zeros((extra, tag_ids.shape[1]), np.int32)])
    return _Targets(intent_ids, tag_ids, gold_weight)


class _Session:
    """One training: the projected splits, targets, model, optimiser and compiled steps."""

    def __init__(self, dataset: Dataset, config: ModelConfig, labels: Labels, tc: TrainConfig, progress: bool,
                 distillation: Distillation | None):
        self.dataset, self.config, self.labels, self.tc = dataset, config, labels, tc
        self.progress, self.distillation = progress, distillation
        self.spec = config.projection
        self.rng = np.random.default_rng(tc.seed)
        self.distort = self.spec.distortion > 0
        self.train_examples = list(dataset.train) + list(distillation.extra if distillation else ())
        self.train_split = _Split(self.train_examples, self.spec, self.rng if self.distort else None)
        self.dev_split = _Split(dataset.dev, self.spec)
        self.targets = _training_targets(dataset, self.train_split, labels, config, distillation)

        self.model = build_model(config)
        self.num_params = count_params(config)
        if progress:
            print(f"pQRNN model: {self.num_params:,} parameters "
                  f"({len(dataset.train)} train / {len(dataset.dev)} dev examples)")
        self.steps_per_epoch = math.ceil(len(self.train_split) / tc.batch_size)
        self.schedule = keras.optimizers.schedules.CosineDecay(
            tc.learning_rate, tc.epochs * self.steps_per_epoch, alpha=0.05)
        optimizer = keras.optimizers.Adam(self.schedule, global_clipnorm=tc.clipnorm)
        make_step = make_train_step if distillation is None else make_kd_step
        self.train_step = make_step(self.model, optimizer, config, tc)
        model = self.model
        self.predict_step = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def predict(self, split: _Split) -> Logits:
        """Logits of the current weights for every text of ``split``."""
        intents, slots = [], []
        for i in range(0, len(split), 256):
            out = self.predict_step(split.inputs(np.arange(i, min(i + 256, len(split)))))
            intents.append(out[INTENT_OUTPUT].numpy())
            if self.config.slot_head:
                slots.append(out[SLOT_OUTPUT].numpy())
        return concat_logits(intents, slots, self.config)

    def score_dev(self) -> tuple[dict[str, Any], float, str]:
        """Dev metrics of the current weights, their early-stopping score and log text."""
        dev = score(self.dataset.dev, self.predict(self.dev_split), self.dev_split.tokens, self.labels)
        slot_head = self.config.slot_head
        slot_text = f" slot F1 {dev['slot_f1']:.4f}" if slot_head else ""
        return (dev, dev["intent_accuracy"] + (dev["slot_f1"] if slot_head else 0.0),
                f"dev intent {dev['intent_accuracy']:.4f}{slot_text}")

    def train_epoch(self, epoch: int) -> np.ndarray:
        """One shuffled pass over the train split; the summed (loss, intent, slot) losses."""
        tc, targets, distillation = self.tc, self.targets, self.distillation
        if self.distort and epoch > 1:  # fresh noise each epoch; epoch 1 reuses the first projection
            self.train_split = _Split(self.train_examples, self.spec, self.rng)
        order = self.rng.permutation(len(self.train_split))
        totals = np.zeros(3)
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{tc.epochs}", disable=not self.progress,
                   leave=False)
        for step in range(self.steps_per_epoch):
            index = order[step * tc.batch_size : (step + 1) * tc.batch_size]
            inputs = self.train_split.inputs(index)
            slot_targets = targets.tags[index] if targets.tags is not None else np.zeros((len(index), 1), np.int32)
            if distillation is None:
                losses = self.train_step(inputs, targets.intents[index], slot_targets)
            else:
                teacher_slots = (distillation.slots(index, self.spec.max_tokens) if self.config.slot_head
                                 else np.zeros((len(index), 1, 1), np.float32))
                losses = self.train_step(inputs, targets.intents[index], slot_targets, targets.gold_weight[index],
                                         distillation.intent[index], teacher_slots)
            totals += np.array([float(v) for v in losses])
            bar.update()
            bar.set_postfix(loss=f"{totals[0] / (step + 1):.4f}")
        bar.close()
        return totals

    def run_epochs(self, started: float) -> tuple[list[dict[str, Any]], _Best, collections.deque]:
        """Train until ``epochs``, ``patience`` or ``max_minutes`` stops it.

        Returns:
            The history, the best epoch and the last ``average_last`` end-of-epoch weights.
        """
        tc = self.tc
        history: list[dict[str, Any]] = []
        best = _Best(-math.inf, 0, self.model.get_weights(), {})
        scores: list[float] = []
        best_smoothed = (-math.inf, 0)  # (moving-average dev score, epoch): what patience counts from
        recent: collections.deque = collections.deque(maxlen=tc.average_last or 1)  # end-of-epoch weights
        for epoch in range(1, tc.epochs + 1):
            epoch_start = time.monotonic()
            totals = self.train_epoch(epoch)
            dev, dev_score, dev_text = self.score_dev()
            entry = {
                "epoch": epoch,
                "loss": totals[0] / self.steps_per_epoch,
                "intent_loss": totals[1] / self.steps_per_epoch,
                "slot_loss": totals[2] / self.steps_per_epoch,
                "learning_rate": float(self.schedule(epoch * self.steps_per_epoch)),
                "dev": dev,
                "seconds": time.monotonic() - epoch_start,
            }
            scores.append(dev_score)
            smoothed = float(np.mean(scores[-tc.smooth:]))
            if tc.smooth > 1:
                entry["dev_smoothed"] = smoothed
            best_smoothed = max(best_smoothed, (smoothed, epoch), key=lambda pair: pair[0])
            history.append(entry)
            improved = dev_score > best.score
            if tc.average_last:
                recent.append(self.model.get_weights())
            if improved:
                best = _Best(dev_score, epoch, self.model.get_weights(), dev)
            if self.progress:
                tqdm.write(f"epoch {epoch:>3}: loss {entry['loss']:.4f}  {dev_text}  ({entry['seconds']:.0f}s)"
                           f"{'  *best' if improved else ''}")
            if epoch - best_smoothed[1] >= tc.patience:
                break
            if tc.max_minutes is not None and time.monotonic() - started > 60 * tc.max_minutes:
                break
        return history, best, recent

    def average(self, history: list[dict[str, Any]], best: _Best, recent: collections.deque) -> dict[str, Any] | None:
        """Score the mean of the ``recent`` weights; it replaces ``best``'s weights and dev
        metrics when it scores higher. Returns the ``weight_average`` record (or None)."""
        if not self.tc.average_last or len(recent) < 2:
            return None
        mean = _mean_weights(list(recent))
        self.model.set_weights(mean)
        dev, dev_score, dev_text = self.score_dev()
        epochs = list(range(len(history) - len(recent) + 1, len(history) + 1))
        averaged = {"epochs": epochs, "dev": dev, "used": dev_score > best.score}
        if self.progress:
            tqdm.write(f"mean of epochs {epochs[0]}-{epochs[-1]}: {dev_text}{'  *best' if averaged['used'] else ''}")
        if averaged["used"]:
            best.weights, best.dev = mean, dev
        return averaged


def _print_summary(metrics: dict[str, Any], best: _Best, averaged: dict[str, Any] | None, has_test: bool) -> None:
    summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.get("test", best.dev).items() if isinstance(v, float))
    chosen = (f"mean of epochs {averaged['epochs'][0]}-{averaged['epochs'][-1]}" if averaged and averaged["used"]
              else f"best epoch {best.epoch}")
    print(f"{chosen}; {'test' if has_test else 'dev'}: {summary}")


def _mean_weights(snapshots: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Element-wise mean of float weights; other state (e.g. RNG seeds) from the last snapshot."""
    return [np.mean(group, axis=0).astype(group[-1].dtype) if np.issubdtype(group[-1].dtype, np.floating)
            else group[-1] for group in zip(*snapshots)]
