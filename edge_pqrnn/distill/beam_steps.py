"""The steps of the Beam labelling pipeline that run on the workers (DoFns).

* :class:`SlotValues`: ``augment.slot_values`` as a combine (the ``substitute`` pool).
* :func:`example_candidates`: per example, every variant ``augment()`` could pick (parallel).
* :class:`Plan`: the one ordered pass: pick the variants, key the texts, drop cached
  ones, cut the rest into the local path's chunks and batches (:mod:`edge_pqrnn.distill.label`).
* :class:`LabelBatch`: the teacher on one planned batch; failures go to a tagged output.
* :class:`WritePart`: one chunk's rows as one Parquet part.

The pipeline that wires them: :func:`edge_pqrnn.distill.beam.beam_label`.
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edge_pqrnn.data.records import Example
from edge_pqrnn.distill.augment import AugmentConfig, slot_values, variant_candidates
from edge_pqrnn.distill.beam_io import beam, cached_keys, local_teacher, write_part, write_plan
from edge_pqrnn.distill.label import PlannedBatch, cache_key, label_batch, pick_variants, plan_batches, split_cached
from edge_pqrnn.distill.teacher.model import load_teacher, torch
from edge_pqrnn.projection import ProjectionSpec

if beam is not None:
    from apache_beam.metrics import Metrics

    class SlotValues(beam.CombineFn):
        """``augment.slot_values`` over a PCollection of examples."""

        def create_accumulator(self) -> dict:
            return {}

        def add_input(self, acc: dict, element: tuple[int, Example]) -> dict:
            for key, values in slot_values([element[1]]).items():
                acc.setdefault(key, set()).update(values)
            return acc

        def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
            merged: dict = {}
            for acc in accumulators:
                for key, values in acc.items():
                    merged.setdefault(key, set()).update(values)
            return merged

        def extract_output(self, acc: dict) -> dict:
            return {key: sorted(values) for key, values in acc.items()}

    class Plan(beam.DoFn):
        """The one ordered pass: variants, keys, resume, chunks and batches."""

        def __init__(self, fingerprint: str, spec: dict, cache_dir: str, others: list[str], chunk_size: int,
                     batch_size: int, run_dir: str):
            self.fingerprint, self.spec, self.cache_dir, self.others = fingerprint, spec, cache_dir, others
            self.chunk_size, self.batch_size, self.run_dir = chunk_size, batch_size, run_dir

        def process(self, candidates: list[tuple[int, str, list]]) -> Iterator[PlannedBatch]:
            candidates = sorted(candidates, key=lambda c: c[0])
            originals = [text for _, text, _ in candidates]
            variants = pick_variants(originals, (c for _, _, c in candidates))
            texts = originals + variants + self.others
            spec = ProjectionSpec.from_dict(self.spec)
            keys = [cache_key(self.fingerprint, spec, text) for text in texts]
            todo, from_cache = split_cached(keys, texts, cached_keys(self.cache_dir))
            plan = {"texts": len(texts), "train": len(originals), "augmented": len(variants),
                    "other_locale": len(self.others), "unique": len(todo) + len(from_cache),
                    "from_cache": len(from_cache), "todo_keys": list(todo)}
            write_plan(self.run_dir, plan)
            yield from plan_batches(list(todo.items()), self.chunk_size, self.batch_size)

    class LabelBatch(beam.DoFn):
        """Runs the teacher on planned batches; the model is loaded once per worker."""

        FAILED = "failed"

        def __init__(self, teacher_dir: str, spec: dict, threads: int | None):
            self.teacher_dir, self.spec, self.threads = teacher_dir, spec, threads
            self.labelled = Metrics.counter("edge_pqrnn", "texts_labelled")
            self.failed = Metrics.counter("edge_pqrnn", "texts_failed")
            self.retried = Metrics.counter("edge_pqrnn", "batches_retried")

        def setup(self) -> None:
            if self.threads:
                torch.set_num_threads(self.threads)
            self._local = local_teacher(self.teacher_dir)
            self.teacher = load_teacher(self._local)
            self._spec = ProjectionSpec.from_dict(self.spec)

        def teardown(self) -> None:
            if getattr(self, "_local", self.teacher_dir) != self.teacher_dir:  # a copy of a remote teacher
                shutil.rmtree(self._local, ignore_errors=True)

        def _rows(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
            return label_batch(self.teacher, texts, self._spec)

        def process(self, batch: PlannedBatch) -> Iterator[Any]:
            items = list(zip(batch.positions, batch.keys, batch.texts))
            try:
                rows = self._rows(batch.texts)
            except Exception:  # noqa: BLE001 - one retry of the whole batch (transient)
                self.retried.inc()
                try:
                    rows = self._rows(batch.texts)
                except Exception:  # noqa: BLE001 - isolate the culprits
                    yield from self._isolate(batch.chunk, items)
                    return
            for (position, key, text), (intent, slots) in zip(items, rows):
                yield (batch.chunk, (position, key, text, intent, slots))
            self.labelled.inc(len(items))

        def _isolate(self, chunk: int, items: list[tuple[int, str, str]]) -> Iterator[Any]:
            good: list[tuple[int, str, str]] = []
            for item in items:
                try:
                    self._rows([item[2]])
                    good.append(item)
                except Exception as exc:  # noqa: BLE001 - reported through the dead-letter output
                    self.failed.inc()
                    yield beam.pvalue.TaggedOutput(self.FAILED, {
                        "key": item[1], "text": item[2], "chunk": chunk,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": "".join(traceback.format_exception(exc))[-2000:],
                    })
            if good:  # the others together, in their batch order, as one pass
                try:
                    rows = self._rows([t for _, _, t in good])
                except Exception as exc:  # noqa: BLE001 - fails only together: report them all
                    for _, key, text in good:
                        self.failed.inc()
                        yield beam.pvalue.TaggedOutput(self.FAILED, {
                            "key": key, "text": text, "chunk": chunk,
                            "error": f"{type(exc).__name__} in a batch (each text alone passed): {exc}",
                            "traceback": "".join(traceback.format_exception(exc))[-2000:]})
                    return
                for (position, key, text), (intent, slots) in zip(good, rows):
                    yield (chunk, (position, key, text, intent, slots))
                self.labelled.inc(len(good))

    class WritePart(beam.DoFn):
        """One chunk's rows, in the chunk's order, as one Parquet part."""

        def __init__(self, cache_dir: str, run_id: str):
            self.cache_dir, self.run_id = cache_dir, run_id
            self.parts = Metrics.counter("edge_pqrnn", "parts_written")

        def process(self, element: tuple[int, Iterable[tuple]]) -> Iterator[int]:
            chunk, rows = element
            rows = sorted(rows, key=lambda r: r[0])
            name = f"part-{self.run_id}-{chunk:06d}-{rows[0][1][:12]}.parquet"
            write_part(self.cache_dir, name, [r[1] for r in rows], [r[2] for r in rows],
                        np.stack([r[3] for r in rows]), [r[4] for r in rows])
            self.parts.inc()
            yield len(rows)


def example_candidates(item: tuple[int, Example], config: AugmentConfig, pool: Mapping) -> tuple[int, str, list]:
    """``(index, text, variant candidates)`` of one indexed example (``pool``: the slot values)."""
    return item[0], item[1].text, variant_candidates(item[1], config, pool)


