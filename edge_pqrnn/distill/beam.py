"""Teacher labelling scaled out on Apache Beam: the same Parquet cache as the local path.

``edge-pqrnn teacher label --runner DirectRunner`` (or ``DataflowRunner``, ``FlinkRunner``,
``SparkRunner``...) labels a dataset's train split and its augmented variants with the
teacher on a Beam runner and writes the cache that :func:`edge_pqrnn.distill.label.label_texts`
writes and reads (same keys, same columns, same chunks, bit-identical logits), so a later
``edge-pqrnn train --teacher`` finds every row in the cache. Needs the ``beam`` extra::

    pip install -e ".[beam]"

The pipeline (each step a named transform)::

    Examples            the train split (+ text files), loaded by the driver, indexed
    SlotValues          CombineGlobally: the substitute pool (augment.slot_values), side input
    Candidates          per example and copy k, every variant augment() could pick, in its
                        fallback order, from the same seeded generator       [parallel]
    Plan                one step: pick the variants exactly as augment() does (first one not
                        seen), append other-locale texts, key them (label.cache_key), drop
                        cached keys and duplicates, cut the rest into the local path's chunks
                        and length-sorted batches
    Reshuffle -> LabelBatch   the teacher, loaded once per worker in ``setup``   [parallel]
    GroupByKey(chunk) -> WritePart    one Parquet part per chunk (label._write_part), atomic
    failed -> WriteFailures           dead-letter rows, one JSONL file the driver reports

Why planned batches and not ``BatchElements``: a row's logits depend in their last bits
on the texts it is padded with (measured on the tiny teacher: up to 1.2e-7 apart for
another batch composition), so bit-identical rows need the local path's batches. The
teacher (>99% of the time) runs in parallel; the plan is one pass over strings.

Failures are never dropped: a batch that raises is run again once; if it still fails,
each text is run alone to find the culprits, the others are labelled together, and each
culprit goes to the dead-letter output (key, text, error). The driver then checks that
every planned key is in the cache or in the dead letters, reports the count and the first
errors, and :meth:`BeamLabelResult.raise_for_failures` raises (the CLI exits non-zero).
Running the same command again resumes: only missing keys are labelled.

Example:
    >>> result = beam_label("atis", "runs/teacher_atis", ProjectionSpec(), num_workers=2)  # doctest: +SKIP
    >>> result.raise_for_failures(); result.labelled  # doctest: +SKIP
    13380
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import io
import json
import logging
import os
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn.distill.augment import OPERATIONS, AugmentConfig, augment_one, other_locale_examples, slot_values
from edge_pqrnn.data.records import Dataset, Example, stable_seed
from edge_pqrnn.errors import ConfigError, DataError, EdgePqrnnError
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.projection.reference import decode as decode_text
from edge_pqrnn.projection.reference import token_rows
from edge_pqrnn.distill.teacher import TeacherDependencyError

BEAM_HINT = 'pip install -e ".[beam]"  (apache-beam with protobuf>=6.31.1,<7, plus the teacher extra)'

# Beam warns on import about optional GCP clients ("apitools not found"): noise here.
logging.disable(logging.WARNING)
try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
except ImportError as _exc:  # pragma: no cover - exercised by the error test via require_beam
    beam = None
    _BEAM_IMPORT_ERROR: ImportError | None = _exc
else:
    _BEAM_IMPORT_ERROR = None
finally:
    logging.disable(logging.NOTSET)

#: The local runner, default of :func:`beam_label`.
DEFAULT_RUNNER = "DirectRunner"
#: Where a run keeps its plan and dead letters, inside the cache directory (not matched
#: by the cache's ``part-*.parquet`` glob).
RUNS_DIR = "_beam"
FAILED_FILE = "failed.jsonl"
PLAN_FILE = "plan.json"
TEXT_PREFIX = "text:"
#: Files of a teacher directory a worker needs (copied from a remote path once per worker).
_TEACHER_FILES = ("teacher.json", "labels.json", "tokenizer.json", "model.safetensors", "metrics.json")


class BeamDependencyError(TeacherDependencyError):
    """apache-beam (the ``beam`` extra) is not installed."""


class LabelFailuresError(EdgePqrnnError):
    """Some texts could not be labelled; their rows are not in the cache."""


def require_beam() -> Any:
    """The ``apache_beam`` module, or :class:`BeamDependencyError` with the pip line.

    Raises:
        BeamDependencyError: apache-beam is not installed.
    """
    if beam is None:
        raise BeamDependencyError(
            f"scale-out labelling (--runner) needs apache-beam, which is not installed "
            f"({_BEAM_IMPORT_ERROR or 'No module named apache_beam'}); install the beam extra: {BEAM_HINT}"
        )
    return beam


# --- sources ----------------------------------------------------------------------------


def read_text_files(pattern: str) -> list[Example]:
    """One example per non-empty line of the files matching ``pattern`` (comma-separated
    globs; files in sorted order), without labels (``intent=""``, no slots).

    Raises:
        DataError: no file matches or a file is not UTF-8.
    """
    paths: list[str] = []
    for part in pattern.split(","):
        matched = sorted(globlib.glob(os.path.expanduser(part.strip())))
        if not matched:
            raise DataError(f"no file matches {part.strip()!r} (--data text:GLOB[,GLOB]: one text per line)")
        paths += matched
    examples: list[Example] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 ({exc}); convert it, e.g. iconv -t UTF-8") from exc
        examples += [Example(line.strip(), "") for line in lines if line.strip()]
    return examples


def load_examples(data: str | Dataset, languages: list[str] | None = None) -> tuple[list[Example], Dataset | None]:
    """The examples to label: a dataset's train split, or the lines of text files.

    Args:
        data: a dataset spec (as for ``train --data``), a loaded :class:`Dataset`, or
            ``text:GLOB[,GLOB]`` (one unlabelled text per line).
        languages: languages of a multilingual dataset.

    Returns:
        ``(examples, dataset)`` (``dataset`` is None for text files).
    """
    if isinstance(data, Dataset):
        return list(data.train), data
    if data.startswith(TEXT_PREFIX):
        return read_text_files(data[len(TEXT_PREFIX):]), None
    from edge_pqrnn.data import load_dataset

    dataset = load_dataset(data, languages=languages)
    return list(dataset.train), dataset


# --- augmentation, split into a parallel part and one ordered pass ------------------------


def _operations(config: AugmentConfig) -> tuple[list[str], list[float]]:
    operations = [op for op in OPERATIONS if config.weights.get(op, 0) > 0]
    return operations, [config.weights[op] for op in operations]


def variant_candidates(example: Example, config: AugmentConfig, values: Mapping) -> list[list[str | None]]:
    """For each copy ``k``, the texts :func:`edge_pqrnn.distill.augment.augment` would try for
    ``example``, in its order (the drawn operation, then the fallbacks), from the same
    generator seeded by ``(config.seed, text, k)``.

    Computing every fallback eagerly consumes the generator in the same order as
    ``augment`` does lazily, so candidate ``i`` is the text ``augment`` gets if the
    first ``i`` are rejected. An operation that raises ends the list with ``None``.
    """
    if not config.copies:
        return []
    operations, weights = _operations(config)
    out: list[list[str | None]] = []
    for k in range(config.copies):
        rng = random.Random(stable_seed(config.seed, example.text, k))
        first = rng.choices(operations, weights)[0]
        texts: list[str | None] = []
        for operation in [first] + [op for op in operations if op != first]:
            try:
                texts.append(augment_one(example, operation, rng, config, values).text)
            except Exception:  # noqa: BLE001 - augment() would raise only if it got here
                texts.append(None)
                break
        out.append(texts)
    return out


def pick_variants(originals: Sequence[str], candidates: Iterable[list[list[str | None]]]) -> list[str]:
    """The augmented texts :func:`edge_pqrnn.distill.augment.augment` returns, from the candidates
    of each example in input order: per copy, the first non-empty text not seen before.

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


# --- the cache, local or on a Beam file system ---------------------------------------------


def _is_remote(path: str) -> bool:
    return "://" in path


def _join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name) if _is_remote(directory) else str(Path(directory) / name)


def _write_bytes(path: str, data: bytes) -> None:
    """Atomic write: local via temp file + rename; remote via a temp object + rename."""
    if not _is_remote(path):
        atomic_write_bytes(path, data)
        return
    tmp = f"{path}.partial-{os.getpid()}-{time.time_ns()}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    FileSystems.rename([tmp], [path])


def _read_bytes(path: str) -> bytes:
    if not _is_remote(path):
        return Path(path).read_bytes()
    with FileSystems.open(path) as f:
        return f.read()


def cached_keys(cache_dir: str) -> set[str]:
    """The keys already in a cache directory (local or a Beam file system path)."""
    from edge_pqrnn.errors import ArtifactError
    from edge_pqrnn.distill.label import PART_GLOB, pq

    if _is_remote(cache_dir):
        matches = FileSystems.match([_join(cache_dir, PART_GLOB)])[0].metadata_list
        parts = sorted(m.path for m in matches)
    else:
        parts = sorted(str(p) for p in Path(cache_dir).glob(PART_GLOB))
    keys: set[str] = set()
    for part in parts:
        try:
            keys.update(pq.read_table(io.BytesIO(_read_bytes(part)), columns=["key"]).column("key").to_pylist())
        except Exception as exc:
            raise ArtifactError(f"{part} is not a readable Parquet file ({exc}); delete it and label again") from exc
    return keys


def _write_part(cache_dir: str, name: str, keys: list[str], texts: list[str], intent: np.ndarray,
                slot_rows: list[np.ndarray]) -> None:
    """One part in the local path's format (``label._write_part`` itself), published
    atomically under ``name``: a fixed name per (run, chunk), so a bundle the runner
    retries replaces its part instead of adding a copy."""
    from edge_pqrnn.distill import label

    local = not _is_remote(cache_dir)
    # A local part is made inside the cache directory: same file system, so the rename is atomic.
    with tempfile.TemporaryDirectory(prefix=".part-", dir=cache_dir if local else None) as tmp:
        label._write_part(Path(tmp), keys, texts, intent, slot_rows)
        [part] = Path(tmp).glob(label.PART_GLOB)
        if local:
            os.replace(part, Path(cache_dir) / name)
        else:
            _write_bytes(_join(cache_dir, name), part.read_bytes())


def _local_teacher(teacher_dir: str, names: Sequence[str] = _TEACHER_FILES) -> str:
    """A local directory with the teacher's files (a remote one is copied to a temp dir)."""
    if not _is_remote(teacher_dir):
        return teacher_dir
    local = tempfile.mkdtemp(prefix="edge_pqrnn_teacher_")
    for name in names:
        atomic_write_bytes(Path(local) / name, _read_bytes(_join(teacher_dir, name)))
    return local


# --- the pipeline's steps -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
    """One teacher forward pass: texts of chunk ``chunk`` in the local path's batch order.

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
    """Cut ``(key, text)`` pairs into the chunks and batches ``label_texts`` uses: chunks of
    ``chunk_size`` in order; inside a chunk, texts sorted by length (stable), batches of
    ``batch_size`` (``Teacher.predict`` -> ``predict_logits``)."""
    for chunk, start in enumerate(range(0, len(todo), chunk_size)):
        items = todo[start : start + chunk_size]
        order = sorted(range(len(items)), key=lambda j: len(items[j][1]))
        for b in range(0, len(order), batch_size):
            index = order[b : b + batch_size]
            yield PlannedBatch(chunk, tuple(index), tuple(items[j][0] for j in index),
                               tuple(items[j][1] for j in index))


if beam is not None:

    class _SlotValues(beam.CombineFn):
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

    class _Plan(beam.DoFn):
        """The one ordered pass: variants, keys, resume, chunks and batches."""

        def __init__(self, fingerprint: str, spec: dict, cache_dir: str, others: list[str], chunk_size: int,
                     batch_size: int, run_dir: str):
            self.fingerprint, self.spec, self.cache_dir, self.others = fingerprint, spec, cache_dir, others
            self.chunk_size, self.batch_size, self.run_dir = chunk_size, batch_size, run_dir

        def process(self, candidates: list[tuple[int, str, list]]) -> Iterator[PlannedBatch]:
            from edge_pqrnn.distill.label import cache_key

            candidates = sorted(candidates, key=lambda c: c[0])
            originals = [text for _, text, _ in candidates]
            variants = pick_variants(originals, (c for _, _, c in candidates))
            texts = originals + variants + self.others
            spec = ProjectionSpec.from_dict(self.spec)
            cached = cached_keys(self.cache_dir)
            todo: dict[str, str] = {}
            from_cache: set[str] = set()
            for text in texts:
                key = cache_key(self.fingerprint, spec, text)
                if key in cached:
                    from_cache.add(key)
                elif key not in todo:
                    todo[key] = text
            plan = {"texts": len(texts), "train": len(originals), "augmented": len(variants),
                    "other_locale": len(self.others), "unique": len(todo) + len(from_cache),
                    "from_cache": len(from_cache), "todo_keys": list(todo)}
            _write_bytes(_join(self.run_dir, PLAN_FILE), json.dumps(plan).encode("utf-8"))
            yield from plan_batches(list(todo.items()), self.chunk_size, self.batch_size)

    class _LabelBatch(beam.DoFn):
        """Runs the teacher on planned batches; the model is loaded once per worker."""

        FAILED = "failed"

        def __init__(self, teacher_dir: str, spec: dict, threads: int | None):
            self.teacher_dir, self.spec, self.threads = teacher_dir, spec, threads
            self.labelled = Metrics.counter("edge_pqrnn", "texts_labelled")
            self.failed = Metrics.counter("edge_pqrnn", "texts_failed")
            self.retried = Metrics.counter("edge_pqrnn", "batches_retried")

        def setup(self) -> None:
            from edge_pqrnn.distill.teacher.model import load_teacher, torch

            if self.threads:
                torch.set_num_threads(self.threads)
            self._local = _local_teacher(self.teacher_dir)
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

    class _WritePart(beam.DoFn):
        """One chunk's rows, in the chunk's order, as one Parquet part."""

        def __init__(self, cache_dir: str, run_id: str):
            self.cache_dir, self.run_id = cache_dir, run_id
            self.parts = Metrics.counter("edge_pqrnn", "parts_written")

        def process(self, element: tuple[int, Iterable[tuple]]) -> Iterator[int]:
            chunk, rows = element
            rows = sorted(rows, key=lambda r: r[0])
            name = f"part-{self.run_id}-{chunk:06d}-{rows[0][1][:12]}.parquet"
            _write_part(self.cache_dir, name, [r[1] for r in rows], [r[2] for r in rows],
                        np.stack([r[3] for r in rows]), [r[4] for r in rows])
            self.parts.inc()
            yield len(rows)

    def _write_failures(failures: list[dict], run_dir: str) -> None:
        if failures:
            failures = sorted(failures, key=lambda f: (f["chunk"], f["key"]))
            data = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
            _write_bytes(_join(run_dir, FAILED_FILE), data.encode("utf-8"))


def _candidates(item: tuple[int, Example], config: AugmentConfig, pool: Mapping) -> tuple[int, str, list]:
    return item[0], item[1].text, variant_candidates(item[1], config, pool)


def label_batch(teacher: Any, texts: Sequence[str], spec: ProjectionSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Intent logits [I] and slot rows [rows, tags] per text, from ONE forward pass over
    ``texts`` (already length-sorted: ``predict_logits``' own stable sort keeps them), cut
    exactly as ``label_texts`` cuts them."""
    from edge_pqrnn.distill.teacher.model import predict_logits

    logits = predict_logits(teacher.model, teacher.tokenizer, list(texts), spec, teacher.max_length,
                            batch_size=max(1, len(texts)))
    out = []
    for n, text in enumerate(texts):
        r = len(token_rows(decode_text(text), spec))
        slots = logits.slots[n, :r] if logits.slots is not None else np.zeros((r, 0), np.float32)
        out.append((logits.intent[n], slots))
    return out


# --- the driver -----------------------------------------------------------------------------


@dataclasses.dataclass
class BeamLabelResult:
    """What :func:`beam_label` did.

    Attributes:
        cache_dir: the Parquet cache.
        runner, num_workers: how it ran.
        texts: texts asked for (train + augmented + other-locale, with repeats).
        train, augmented, other_locale: their origins.
        unique: distinct keys.
        from_cache: keys already cached before the run.
        labelled: texts labelled now.
        failures: dead-letter rows (``key``, ``text``, ``chunk``, ``error``, ``traceback``).
        seconds: wall-clock time of the pipeline (worker start-up and model loads included).
        run_dir: where the plan and dead letters are kept (removed after a clean run).
    """

    cache_dir: str
    runner: str
    num_workers: int
    texts: int
    train: int
    augmented: int
    other_locale: int
    unique: int
    from_cache: int
    labelled: int
    failures: list[dict]
    seconds: float
    run_dir: str | None

    @property
    def texts_per_second(self) -> float:
        """Texts labelled now per wall-clock second."""
        return self.labelled / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for humans."""
        workers = f"{self.num_workers} worker{'s' if self.num_workers != 1 else ''}"
        return (f"teacher labels ({self.runner}, {workers}): {self.texts} texts "
                f"({self.train} train + {self.augmented} augmented + {self.other_locale} other-locale), "
                f"{self.labelled} labelled now in {self.seconds:.1f} s ({self.texts_per_second:.1f} texts/s), "
                f"{self.from_cache} from the cache, {len(self.failures)} failed ({self.cache_dir})")

    def raise_for_failures(self, show: int = 3) -> None:
        """Raise :class:`LabelFailuresError` (count + first errors) if any text failed."""
        if not self.failures:
            return
        first = "; ".join(f"{f['text'][:60]!r}: {f['error']}" for f in self.failures[:show])
        where = f"{self.run_dir}/{FAILED_FILE}" if self.run_dir else "the dead-letter file"
        raise LabelFailuresError(
            f"{len(self.failures)} of {self.labelled + len(self.failures)} texts failed in the teacher and are not "
            f"in the cache (first {min(show, len(self.failures))}: {first}); all of them with tracebacks in {where}. "
            f"Fix the cause and run the same command again: the cache resumes and labels only the missing texts"
        )


def pipeline_flags(runner: str = DEFAULT_RUNNER, num_workers: int = 2,
                   options: Sequence[str] | Mapping[str, str] = ()) -> list[str]:
    """Beam command-line flags for ``runner`` with ``num_workers`` and pass-through options.

    ``num_workers`` becomes ``--direct_num_workers`` (DirectRunner, with
    ``--direct_running_mode=multi_processing``), ``--num_workers`` (DataflowRunner) or
    ``--parallelism`` (FlinkRunner, SparkRunner ignores it: set executors with
    ``--pipeline-option``). ``options`` (``KEY=VALUE`` strings or a mapping) come last, so
    they override the defaults.

    Raises:
        ConfigError: an option that is not ``KEY=VALUE`` or ``num_workers < 1``.

    Example:
        >>> pipeline_flags("DirectRunner", 2, ["direct_running_mode=in_memory"])[-1]
        '--direct_running_mode=in_memory'
    """
    if num_workers < 1:
        raise ConfigError(f"--num-workers must be >= 1, got {num_workers}")
    flags = [f"--runner={runner}"]
    name = runner.rsplit(".", 1)[-1]
    if name == "DirectRunner":
        # The worker processes log at INFO by default: a screenful per worker start.
        flags += [f"--direct_num_workers={num_workers}", "--direct_running_mode=multi_processing",
                  "--default_sdk_harness_log_level=ERROR"]
    elif name == "DataflowRunner":
        flags += [f"--num_workers={num_workers}"]
    elif name == "FlinkRunner":
        flags += [f"--parallelism={num_workers}"]
    items = options.items() if isinstance(options, Mapping) else [_split_option(o) for o in options]
    flags += [f"--{key.lstrip('-')}={value}" for key, value in items]
    return flags


def _split_option(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep or not key.strip("-"):
        raise ConfigError(f"--pipeline-option takes KEY=VALUE (a Beam pipeline option without the leading --), "
                          f"got {option!r}; e.g. --pipeline-option project=my-project")
    return key, value


def stage_teacher(teacher_dir: str, fingerprint: str, temp_location: str | None) -> str:
    """Where the workers read the teacher: a local directory is copied once to
    ``TEMP_LOCATION/edge_pqrnn_teacher/FINGERPRINT/`` when ``temp_location`` is a remote
    path (``gs://...``: Dataflow workers cannot see this machine's files), as Beam stages
    packages; otherwise the path is used as given (DirectRunner, a shared file system, or
    Flink/Spark with ``environment_type=LOOPBACK``).

    Returns:
        The path to hand to the workers.
    """
    if _is_remote(teacher_dir) or not temp_location or not _is_remote(temp_location):
        return teacher_dir
    target = _join(_join(temp_location, "edge_pqrnn_teacher"), fingerprint)
    for name in _TEACHER_FILES:
        path = _join(target, name)
        if not FileSystems.exists(path):
            _write_bytes(path, (Path(teacher_dir) / name).read_bytes())
    return target


def _teacher_stand_in(teacher_dir: str) -> Any:
    """What ``label.teacher_fingerprint`` and ``kd.check_labels`` read of a teacher
    (its path and labels), without loading the model."""
    from edge_pqrnn.evaluate import Labels

    local = _local_teacher(teacher_dir, ("teacher.json", "metrics.json", "labels.json"))
    for name in ("metrics.json", "teacher.json", "labels.json"):
        if not (Path(local) / name).is_file():
            from edge_pqrnn.errors import ArtifactError

            raise ArtifactError(f"{Path(teacher_dir) / name} is missing: not a finished teacher directory; run "
                                "`edge-pqrnn teacher finetune --data NAME --out DIR` first")
    labels = Labels.from_dict(json.loads((Path(local) / "labels.json").read_text(encoding="utf-8")))
    return SimpleNamespace(path=Path(local), labels=labels)


def beam_label(
    data: str | Dataset,
    teacher_dir: str | Path,
    spec: ProjectionSpec,
    *,
    augment_config: AugmentConfig | None = None,
    other_locales: Sequence[str] = (),
    other_per_intent: int = 20,
    languages: list[str] | None = None,
    cache_dir: str | Path | None = None,
    runner: str = DEFAULT_RUNNER,
    num_workers: int = 2,
    pipeline_options: Sequence[str] | Mapping[str, str] = (),
    threads_per_worker: int | None = None,
    batch_size: int = 64,
    chunk_size: int = 512,
    log: Callable[[str], None] = print,
) -> BeamLabelResult:
    """Label a dataset's train split and augmented variants with the teacher on a Beam
    runner, into the same Parquet cache as the local path (``label_dataset``).

    Args:
        data: a dataset spec, a loaded :class:`Dataset`, or ``text:GLOB[,GLOB]``.
        teacher_dir: a fine-tuned teacher directory (local, or a path of a Beam file
            system such as ``gs://``: each worker copies it once). A local one is staged
            under the ``temp_location`` option when that is remote (:func:`stage_teacher`).
        spec: the student's projection spec (its token rows carry the slot logits).
        augment_config: augmentation (default :class:`AugmentConfig`, as the local path).
        other_locales: multilingual locales whose sentences are added unlabelled.
        other_per_intent: their cap per (language, intent).
        languages: languages of a multilingual dataset.
        cache_dir: the cache (default ``TEACHER_DIR/labels``); on a cluster, a path all
            workers can write (``gs://...``).
        runner: a Beam runner (``DirectRunner``, ``DataflowRunner``, ``FlinkRunner``,
            ``SparkRunner``, ...).
        num_workers: worker processes (see :func:`pipeline_flags`).
        pipeline_options: pass-through Beam options, ``KEY=VALUE``.
        threads_per_worker: torch threads per worker (default: DirectRunner shares this
            machine's cores among its workers; other runners keep torch's choice).
        batch_size: texts per forward pass (as ``label_texts``).
        chunk_size: texts per Parquet part (as ``label_texts``).
        log: where the summary line goes.

    Returns:
        A :class:`BeamLabelResult`; call :meth:`~BeamLabelResult.raise_for_failures`.

    Raises:
        BeamDependencyError: apache-beam is not installed (says the pip line).
        ConfigError: bad options; DataError: bad data or labels that do not match the
            teacher's; ArtifactError: not a teacher directory or a corrupt cache part.
        EdgePqrnnError: the runner failed (its error, and that the cache resumes).
    """
    require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    from edge_pqrnn.distill.kd import LABELS_CACHE, check_labels
    from edge_pqrnn.distill.label import teacher_fingerprint

    augment_config = augment_config or AugmentConfig()
    if batch_size < 1 or chunk_size < 1:
        raise ConfigError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    flags = pipeline_flags(runner, num_workers, pipeline_options)
    teacher_dir = str(teacher_dir)
    cache = str(cache_dir) if cache_dir is not None else _join(teacher_dir, LABELS_CACHE)
    stand_in = _teacher_stand_in(teacher_dir)
    examples, dataset = load_examples(data, languages)
    if dataset is not None:
        check_labels(stand_in, dataset)
    fingerprint = teacher_fingerprint(stand_in)
    if _is_remote(teacher_dir):
        shutil.rmtree(stand_in.path, ignore_errors=True)  # the json files copied for the fingerprint
    all_options = PipelineOptions(flags).get_all_options()
    worker_teacher = stage_teacher(teacher_dir, fingerprint, all_options.get("temp_location"))
    others = other_locale_examples(other_locales, exclude=dataset.languages if dataset else (),
                                   per_intent=other_per_intent, seed=augment_config.seed)
    if threads_per_worker is None and runner.rsplit(".", 1)[-1] == "DirectRunner":
        threads_per_worker = max(1, (os.cpu_count() or 1) // num_workers)
    if not _is_remote(cache):
        Path(cache).mkdir(parents=True, exist_ok=True)
    run_id = str(time.time_ns())
    run_dir = _join(_join(cache, RUNS_DIR), f"run-{run_id}")
    if not _is_remote(run_dir):
        Path(run_dir).mkdir(parents=True)
    substitute = augment_config.copies > 0 and "substitute" in _operations(augment_config)[0]

    started = time.monotonic()
    try:
        with beam.Pipeline(options=PipelineOptions(flags)) as p:
            indexed = p | "Examples" >> beam.Create(list(enumerate(examples)), reshuffle=True)
            values = (indexed | "SlotValues" >> beam.CombineGlobally(_SlotValues())) if substitute else \
                (p | "NoSlotValues" >> beam.Create([{}]))
            candidates = indexed | "Candidates" >> beam.Map(_candidates, augment_config,
                                                            pool=beam.pvalue.AsSingleton(values))
            labelled = (
                candidates
                | "AllCandidates" >> beam.combiners.ToList()
                | "Plan" >> beam.ParDo(_Plan(fingerprint, spec.to_dict(), cache, [ex.text for ex in others],
                                            chunk_size, batch_size, run_dir))
                | "Spread" >> beam.Reshuffle()
                | "LabelBatch" >> beam.ParDo(_LabelBatch(worker_teacher, spec.to_dict(), threads_per_worker))
                .with_outputs(_LabelBatch.FAILED, main="rows")
            )
            _ = labelled.rows | "ByChunk" >> beam.GroupByKey() | "WritePart" >> beam.ParDo(_WritePart(cache, run_id))
            _ = (labelled[_LabelBatch.FAILED] | "AllFailures" >> beam.combiners.ToList()
                 | "WriteFailures" >> beam.Map(_write_failures, run_dir))
    except EdgePqrnnError:
        raise
    except Exception as exc:
        raise EdgePqrnnError(
            f"the Beam pipeline failed on {runner} ({type(exc).__name__}: {str(exc)[:2000]}); parts finished "
            f"before the failure stay in {cache}: run the same command again to resume"
        ) from exc
    seconds = time.monotonic() - started
    return _collect(cache, run_dir, runner, num_workers, seconds, log)


def _collect(cache: str, run_dir: str, runner: str, num_workers: int, seconds: float,
             log: Callable[[str], None]) -> BeamLabelResult:
    """Read the run's plan and dead letters back; check that no planned key went missing."""
    plan = json.loads(_read_bytes(_join(run_dir, PLAN_FILE)))
    failed_path = _join(run_dir, FAILED_FILE)
    has_failed = os.path.exists(failed_path) if not _is_remote(failed_path) else FileSystems.exists(failed_path)
    failures = [json.loads(line) for line in _read_bytes(failed_path).decode("utf-8").splitlines()] \
        if has_failed else []
    present = cached_keys(cache)
    failed_keys = {f["key"] for f in failures}
    lost = [k for k in plan["todo_keys"] if k not in present and k not in failed_keys]
    for key in lost:  # a runner that dropped output silently would land here
        failures.append({"key": key, "text": "?", "chunk": -1, "traceback": "",
                         "error": "planned but neither in the cache nor in the dead letters (lost by the runner)"})
    result = BeamLabelResult(
        cache_dir=cache, runner=runner, num_workers=num_workers, texts=plan["texts"], train=plan["train"],
        augmented=plan["augmented"], other_locale=plan["other_locale"], unique=plan["unique"],
        from_cache=plan["from_cache"], labelled=len(plan["todo_keys"]) - len(failures), failures=failures,
        seconds=seconds, run_dir=run_dir if failures else None)
    if not failures and _is_remote(run_dir):
        FileSystems.delete([_join(run_dir, PLAN_FILE)])  # object stores have no directories to remove
    elif not failures:
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            os.rmdir(Path(run_dir).parent)  # _beam/, when no other run keeps files there
        except OSError:
            pass
    log(result.summary())
    return result


def benchmark_label(
    data: str | Dataset,
    teacher_dir: str | Path,
    spec: ProjectionSpec,
    *,
    workers: Sequence[int] = (1, 2),
    augment_config: AugmentConfig | None = None,
    languages: list[str] | None = None,
    limit: int | None = None,
    pipeline_options: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Texts per second of the local path and of DirectRunner with each worker count, in
    one run, each into a fresh cache (so every arm labels everything), on the same texts.

    The local arm is ``label_dataset`` (teacher load included); a Beam arm is the whole
    pipeline (worker start-up and one model load per worker included). Each Beam cache is
    compared with the local one, part file by part file.

    Args:
        data: a dataset spec or a loaded dataset (its train split + augmented variants).
        teacher_dir: a teacher directory.
        spec: the projection spec.
        workers: DirectRunner worker counts to time, in this order (repeats allowed).
        augment_config: augmentation (default :class:`AugmentConfig`).
        languages: languages of a multilingual dataset.
        limit: keep the first ``limit`` training examples.
        pipeline_options: extra Beam options for every Beam arm.
        log: where progress lines go.

    Returns:
        One dict per arm: ``path``, ``workers``, ``threads_per_worker``, ``texts``,
        ``seconds``, ``texts_per_second``, ``identical_to_local`` (Beam arms),
        ``load_average`` (the machine's 1-minute load before and after the arm: other
        processes skew a timing on a shared machine), and for the local arm
        ``label_seconds`` (without the teacher load).
    """
    from edge_pqrnn.distill import label_dataset

    augment_config = augment_config or AugmentConfig()
    if isinstance(data, str) and data.startswith(TEXT_PREFIX):
        raise ConfigError("the benchmark takes a dataset (atis, csv:PATH, ...), not text:GLOB")
    _, dataset = load_examples(data, languages)
    assert dataset is not None  # a dataset spec or Dataset always gives one
    if limit is not None:
        dataset = dataclasses.replace(dataset, train=list(dataset.train[:limit]))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge_pqrnn_label_bench_") as tmp:
        local_cache = Path(tmp) / "local"
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        local = label_dataset(dataset, teacher_dir, spec, augment_config=augment_config, cache_dir=local_cache,
                              progress=False, log=lambda _: None)
        seconds = time.monotonic() - started
        import torch

        rows.append({"path": "local", "workers": 1, "threads_per_worker": torch.get_num_threads(),
                     "texts": local.labels.labelled, "seconds": seconds,
                     "texts_per_second": local.labels.labelled / seconds, "label_seconds": local.labels.seconds,
                     "load_average": [load_before, os.getloadavg()[0]]})
        log(f"local: {local.labels.labelled} texts in {seconds:.1f} s ({rows[-1]['texts_per_second']:.1f} texts/s)")
        reference = sorted(p.read_bytes() for p in local_cache.glob("part-*.parquet"))
        for i, n in enumerate(workers):  # a count may repeat (ABBA order against drifting load)
            cache = Path(tmp) / f"beam-{i}-{n}"
            threads = max(1, (os.cpu_count() or 1) // n)
            load_before = os.getloadavg()[0]
            result = beam_label(dataset, teacher_dir, spec, augment_config=augment_config, cache_dir=cache,
                                num_workers=n, pipeline_options=pipeline_options, threads_per_worker=threads,
                                log=lambda _: None)
            result.raise_for_failures()
            identical = sorted(p.read_bytes() for p in cache.glob("part-*.parquet")) == reference
            rows.append({"path": "DirectRunner", "workers": n, "threads_per_worker": threads,
                         "texts": result.labelled, "seconds": result.seconds,
                         "texts_per_second": result.texts_per_second, "identical_to_local": identical,
                         "load_average": [load_before, os.getloadavg()[0]]})
            log(f"DirectRunner x{n}: {result.labelled} texts in {result.seconds:.1f} s "
                f"({result.texts_per_second:.1f} texts/s), cache identical to local: {identical}")
    return rows


__all__ = [
    "BEAM_HINT",
    "DEFAULT_RUNNER",
    "BeamDependencyError",
    "BeamLabelResult",
    "LabelFailuresError",
    "PlannedBatch",
    "beam_label",
    "benchmark_label",
    "cached_keys",
    "label_batch",
    "load_examples",
    "pick_variants",
    "pipeline_flags",
    "plan_batches",
    "read_text_files",
    "require_beam",
    "stage_teacher",
    "variant_candidates",
]
