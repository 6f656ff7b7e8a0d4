"""Teacher logits for the student, cached in Parquet by content, resumable.

For each text the cache holds the teacher's intent logits and, per token row of the
*student's* projection spec, its slot logits (the teacher reads the first sub-word of
each row, :func:`edge_pqrnn.distill.teacher.model.encode_batch`), so soft slot targets line up
with the student's rows whatever the two tokenisers do.

The cache is a directory of ``part-*.parquet`` files (zstd), one per labelled chunk,
each written atomically. A row's key is a digest of the teacher (its ``teacher.json`` +
``metrics.json``), the row-relevant spec fields (mode, max_tokens, markers) and the text:
any change of those labels afresh, identical texts are labelled once, and an
interrupted run resumes from the last finished chunk. Columns::

    key: string, text: string, num_rows: int32,
    intent: list<float32> [intents], slots: list<float32> [num_rows * tags]

The texts still to label are cut by :func:`plan_batches` (chunks, then length-sorted
batches) and each batch goes through :func:`label_batch`; the Beam path
(:mod:`edge_pqrnn.distill.beam`) uses the same plan, the same variant choice
(:func:`pick_variants`) and the same part writer, so both write byte-identical parts.

Example:
    >>> labels = label_texts(load_teacher("runs/teacher_atis"), texts, spec, "runs/labels")  # doctest: +SKIP
    >>> labels.intent.shape, labels.slot_rows.shape  # doctest: +SKIP
    ((13431, 22), (231017, 121))
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn.distill.teacher import require
from edge_pqrnn.distill.teacher.model import METRICS_FILE, TEACHER_FILE, Teacher, predict_logits
from edge_pqrnn.errors import ArtifactError, ConfigError
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.projection.reference import decode as decode_text
from edge_pqrnn.projection.reference import token_rows

pa = require("pyarrow")
pq = require("pyarrow.parquet")

PART_GLOB = "part-*.parquet"


@dataclasses.dataclass
class TeacherLabels:
    """Teacher logits for N texts, in the order they were asked for.

    Attributes:
        texts: the texts.
        intent: float32 [N, intents].
        slot_rows: float32 [sum of rows, tags] (``[0, 0]`` without slots): the rows of
            text n are ``slot_rows[offsets[n]:offsets[n + 1]]``.
        offsets: int64 [N + 1].
        labelled: how many texts were labelled now (the rest came from the cache).
        seconds: time spent labelling now.
    """

    texts: list[str]
    intent: np.ndarray
    slot_rows: np.ndarray
    offsets: np.ndarray
    labelled: int = 0
    seconds: float = 0.0

    def slots_dense(self, index: Sequence[int], max_tokens: int) -> np.ndarray:
        """Slot logits of texts ``index`` as float32 [B, max_tokens, tags] (zeros past the rows)."""
        tags = self.slot_rows.shape[1]
        out = np.zeros((len(index), max_tokens, tags), np.float32)
        for b, i in enumerate(index):
            rows = self.slot_rows[self.offsets[i] : self.offsets[i + 1]]
            out[b, : len(rows)] = rows
        return out


def teacher_fingerprint(teacher: Teacher) -> str:
    """A digest of the teacher directory's ``teacher.json`` and ``metrics.json``."""
    if teacher.path is None:
        raise ArtifactError("labelling needs a teacher loaded from a directory (load_teacher(path))")
    digest = hashlib.blake2b(digest_size=16)
    for name in (TEACHER_FILE, METRICS_FILE):
        digest.update((Path(teacher.path) / name).read_bytes())
    return digest.hexdigest()


def cache_key(fingerprint: str, spec: ProjectionSpec, text: str) -> str:
    """The cache key of ``text`` labelled by a teacher for ``spec``'s token rows."""
    rows = f"{spec.mode}|{spec.max_tokens}|{int(spec.add_bos)}|{int(spec.add_eos)}"
    return hashlib.blake2b(f"{fingerprint}|{rows}|{text}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _read_cache(cache_dir: Path, wanted: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    found: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for part in sorted(cache_dir.glob(PART_GLOB)):
        try:
            keys = pq.read_table(part, columns=["key"]).column("key").to_pylist()
            if not wanted.intersection(keys):
                continue
            table = pq.read_table(part)
        except (OSError, pa.ArrowException) as exc:
            raise ArtifactError(f"{part} is not a readable Parquet file ({exc}); delete it and label again") from exc
        intent_values, intent_offsets = _list_column(table, "intent")
        slot_values, slot_offsets = _list_column(table, "slots")
        num_rows = table.column("num_rows").to_numpy()
        for j, key in enumerate(keys):
            if key in wanted:
                found[key] = (
                    intent_values[intent_offsets[j] : intent_offsets[j + 1]],
                    slot_values[slot_offsets[j] : slot_offsets[j + 1]],
                    int(num_rows[j]),
                )
    return found


def _list_column(table: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list<float32> column as (flat values, offsets) without Python lists."""
    column = table.column(name).combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32), column.offsets.to_numpy()


def _list_array(rows: list[np.ndarray]) -> object:
    offsets = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int32)
    values = np.concatenate([r.reshape(-1) for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()))


def part_bytes(keys: list[str], texts: list[str], intent: np.ndarray, slot_rows: list[np.ndarray]) -> bytes:
    """One cache part (zstd Parquet) holding these rows, in this order."""
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "text": pa.array(texts, pa.string()),
            "num_rows": pa.array([len(r) for r in slot_rows], pa.int32()),
            "intent": _list_array(list(intent)),
            "slots": _list_array(slot_rows),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _write_part(cache_dir: Path, keys: list[str], texts: list[str], intent: np.ndarray, slot_rows: list[np.ndarray]) -> None:
    data = part_bytes(keys, texts, intent, slot_rows)
    atomic_write_bytes(cache_dir / f"part-{time.time_ns()}-{keys[0][:12]}.parquet", data)


def split_cached(keys: Sequence[str], texts: Sequence[str], cached: Container[str]) -> tuple[dict[str, str], set[str]]:
    """The texts still to label (key -> text, first occurrence, in order) and the keys
    found in ``cached``."""
    todo: dict[str, str] = {}
    from_cache: set[str] = set()
    for key, text in zip(keys, texts):
        if key in cached:
            from_cache.add(key)
        elif key not in todo:
            todo[key] = text
    return todo, from_cache


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
    """One teacher forward pass: texts of chunk ``chunk`` in the batch order of :func:`plan_batches`.

    Attributes:
        chunk: index of the chunk (one Parquet part).
        positions: each text's position in its chunk (the part's row order).
        keys, texts: the cache keys and texts.
    """

    chunk: int
    positions: tuple[int, ...]
    keys: tuple[str, ...]
    texts: tuple[str, ...]


def plan_batches(todo: Sequence[tuple[str, str]], chunk_size: int, batch_size: int) -> Iterator[PlannedBatch]:
    """Cut ``(key, text)`` pairs into chunks of ``chunk_size`` in order (one Parquet part
    each) and, inside a chunk, texts sorted by length (stable) into batches of
    ``batch_size``: far less padding. A row's logits depend in their last bits on the
    texts it is padded with, so the local and the Beam path both label these batches."""
    for chunk, start in enumerate(range(0, len(todo), chunk_size)):
        items = todo[start : start + chunk_size]
        order = sorted(range(len(items)), key=lambda j: len(items[j][1]))
        for b in range(0, len(order), batch_size):
            index = order[b : b + batch_size]
            yield PlannedBatch(chunk, tuple(index), tuple(items[j][0] for j in index),
                               tuple(items[j][1] for j in index))


def pick_variants(originals: Sequence[str], candidates: Iterable[list[list[str | None]]]) -> list[str]:
    """The augmented texts :func:`edge_pqrnn.distill.augment.augment` returns, from the
    candidates of each example in input order (:func:`~edge_pqrnn.distill.augment.variant_candidates`):
    per copy, the first non-empty text not seen before.

    Raises:
        ConfigError: a candidate ``augment`` would have reached raised.
    """
    seen = set(originals)
    out: list[str] = []
    for per_example in candidates:
        for texts in per_example:
            for text in texts:
                if text is None:
                    raise ConfigError("an augmentation operation failed on a training text; run the local "
                                      "path (without --runner) to see the error")
                if text and text not in seen:
                    seen.add(text)
                    out.append(text)
                    break
    return out


def label_batch(teacher: Any, texts: Sequence[str], spec: ProjectionSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Intent logits [I] and slot rows [rows, tags] per text, from ONE forward pass over
    ``texts`` (a planned batch, already length-sorted: ``predict_logits``' own stable
    sort keeps the order), slot logits cut to each text's token rows."""
    logits = predict_logits(teacher.model, teacher.tokenizer, list(texts), spec, teacher.max_length,
                            batch_size=max(1, len(texts)))
    out = []
    for n, text in enumerate(texts):
        r = len(token_rows(decode_text(text), spec))
        slots = logits.slots[n, :r] if logits.slots is not None else np.zeros((r, 0), np.float32)
        out.append((logits.intent[n], slots))
    return out


def _label_chunk(teacher: Teacher, items: Sequence[tuple[str, str]], spec: ProjectionSpec,
                 batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The rows of one chunk, in the chunk's order, labelled batch by planned batch."""
    rows: list[Any] = [None] * len(items)
    for batch in plan_batches(items, len(items), batch_size):
        for position, row in zip(batch.positions, label_batch(teacher, batch.texts, spec)):
            rows[position] = row
    return rows


def label_texts(
    teacher: Teacher,
    texts: Sequence[str],
    spec: ProjectionSpec,
    cache_dir: str | Path,
    *,
    batch_size: int = 64,
    chunk_size: int = 512,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> TeacherLabels:
    """Teacher logits for ``texts`` over ``spec``'s token rows, via the Parquet cache.

    Args:
        teacher: a loaded teacher (:func:`edge_pqrnn.distill.teacher.model.load_teacher`).
        texts: the texts (duplicates are labelled once).
        spec: the student's projection spec (its rows carry the slot logits).
        cache_dir: the cache directory (created if missing).
        batch_size: texts per teacher forward pass.
        chunk_size: texts per Parquet part (the unit of resumption).
        progress: show a progress bar.
        log: where the summary line goes.

    Returns:
        :class:`TeacherLabels` in the order of ``texts``.

    Raises:
        ArtifactError: an unreadable cache part.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = teacher_fingerprint(teacher)
    keys = [cache_key(fingerprint, spec, t) for t in texts]
    cached = _read_cache(cache_dir, set(keys))
    todo, _ = split_cached(keys, texts, cached)
    started = time.monotonic()
    if todo:
        items = list(todo.items())
        bar = tqdm(total=len(items), desc="teacher labels", disable=not progress, unit="text")
        for i in range(0, len(items), chunk_size):
            chunk = items[i : i + chunk_size]
            rows = _label_chunk(teacher, chunk, spec, batch_size)
            _write_part(cache_dir, [k for k, _ in chunk], [t for _, t in chunk], np.stack([r[0] for r in rows]),
                        [r[1] for r in rows])
            for (key, _), (intent, slot) in zip(chunk, rows):
                cached[key] = (intent, slot.reshape(-1), len(slot))
            bar.update(len(chunk))
        bar.close()
    seconds = time.monotonic() - started
    tags = len(teacher.labels.tags)
    intent = np.stack([cached[k][0] for k in keys]) if keys else np.zeros((0, len(teacher.labels.intents)), np.float32)
    counts = np.array([cached[k][2] for k in keys], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if tags:
        slot_rows = np.concatenate([cached[k][1].reshape(-1, tags) for k in keys]) if keys else np.zeros((0, tags), np.float32)
    else:
        slot_rows = np.zeros((int(offsets[-1]), 0), np.float32)
    if progress:
        log(f"teacher labels: {len(texts)} texts, {len(todo)} labelled now in {seconds:.0f} s, "
            f"{len(texts) - len(todo)} from the cache ({cache_dir})")
    return TeacherLabels(list(texts), intent, slot_rows, offsets, labelled=len(todo), seconds=seconds)
