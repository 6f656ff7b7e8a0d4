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
    GroupByKey(chunk) -> WritePart    one Parquet part per chunk (label.part_bytes), atomic
    failed -> WriteFailures           dead-letter rows, one JSONL file the driver reports

Why planned batches and not ``BatchElements``: a row's logits depend in their last bits
on the texts it is padded with (measured on the tiny teacher: up to 1.2e-7 apart for
another batch composition), so bit-identical rows need the local path's batches: both
paths cut them with :func:`edge_pqrnn.distill.label.plan_batches` and pick the variants
with :func:`~edge_pqrnn.distill.label.pick_variants`. The teacher (>99% of the time)
runs in parallel; the plan is one pass over strings.

Modules: this one builds and runs the pipeline and reads its result;
:mod:`edge_pqrnn.distill.beam_steps` holds the steps the workers run;
:mod:`edge_pqrnn.distill.beam_io` the paths, parts, teacher files and dead letters.

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
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.distill import beam_steps
from edge_pqrnn.distill.augment import AugmentConfig, active_operations, other_locale_examples
from edge_pqrnn.distill.beam_io import (
    FAILED_FILE,
    PLAN_FILE,
    RUNS_DIR,
    TEXT_PREFIX,
    BeamDependencyError,
    beam,
    cached_keys,
    is_remote,
    join,
    load_examples,
    read_run,
    require_beam,
    stage_teacher,
    teacher_stand_in,
    write_failures,
)
from edge_pqrnn.distill.kd import LABELS_CACHE, check_labels, label_dataset
from edge_pqrnn.distill.label import teacher_fingerprint
from edge_pqrnn.distill.teacher.model import torch
from edge_pqrnn.errors import ConfigError, EdgePqrnnError
from edge_pqrnn.projection import ProjectionSpec

if beam is not None:
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

#: The local runner, default of :func:`beam_label`.
DEFAULT_RUNNER = "DirectRunner"


class LabelFailuresError(EdgePqrnnError):
    """Some texts could not be labelled; their rows are not in the cache."""


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
    augment_config = augment_config or AugmentConfig()
    if batch_size < 1 or chunk_size < 1:
        raise ConfigError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    flags = pipeline_flags(runner, num_workers, pipeline_options)
    job = _prepare(data, str(teacher_dir), spec, flags, augment_config, other_locales, other_per_intent, languages,
                   cache_dir, runner, num_workers, threads_per_worker, batch_size, chunk_size)
    started = time.monotonic()
    try:
        with beam.Pipeline(options=PipelineOptions(flags)) as p:
            _build_pipeline(p, job)
    except EdgePqrnnError:
        raise
    except Exception as exc:
        raise EdgePqrnnError(
            f"the Beam pipeline failed on {runner} ({type(exc).__name__}: {str(exc)[:2000]}); parts finished "
            f"before the failure stay in {job.cache}: run the same command again to resume"
        ) from exc
    seconds = time.monotonic() - started
    return _collect(job.cache, job.run_dir, runner, num_workers, seconds, log)


@dataclasses.dataclass(frozen=True)
class _Job:
    """What the driver settles before the pipeline runs (see :func:`beam_label`)."""

    examples: list[Example]
    others: list[Example]
    spec: ProjectionSpec
    augment_config: AugmentConfig
    fingerprint: str
    worker_teacher: str
    cache: str
    run_id: str
    run_dir: str
    threads_per_worker: int | None
    batch_size: int
    chunk_size: int


def _prepare(data: str | Dataset, teacher_dir: str, spec: ProjectionSpec, flags: list[str],
             augment_config: AugmentConfig, other_locales: Sequence[str], other_per_intent: int,
             languages: list[str] | None, cache_dir: str | Path | None, runner: str, num_workers: int,
             threads_per_worker: int | None, batch_size: int, chunk_size: int) -> _Job:
    """Check the teacher against the data, fingerprint and stage it, load the texts and
    make the run's directory: everything the driver does before the pipeline."""
    cache = str(cache_dir) if cache_dir is not None else join(teacher_dir, LABELS_CACHE)
    stand_in = teacher_stand_in(teacher_dir)
    examples, dataset = load_examples(data, languages)
    if dataset is not None:
        check_labels(stand_in, dataset)
    fingerprint = teacher_fingerprint(stand_in)
    if is_remote(teacher_dir):
        shutil.rmtree(stand_in.path, ignore_errors=True)  # the json files copied for the fingerprint
    all_options = PipelineOptions(flags).get_all_options()
    worker_teacher = stage_teacher(teacher_dir, fingerprint, all_options.get("temp_location"))
    others = other_locale_examples(other_locales, exclude=dataset.languages if dataset else (),
                                   per_intent=other_per_intent, seed=augment_config.seed)
    if threads_per_worker is None and runner.rsplit(".", 1)[-1] == "DirectRunner":
        threads_per_worker = max(1, (os.cpu_count() or 1) // num_workers)
    if not is_remote(cache):
        Path(cache).mkdir(parents=True, exist_ok=True)
    run_id = str(time.time_ns())
    run_dir = join(join(cache, RUNS_DIR), f"run-{run_id}")
    if not is_remote(run_dir):
        Path(run_dir).mkdir(parents=True)
    return _Job(examples, others, spec, augment_config, fingerprint, worker_teacher, cache, run_id, run_dir,
                threads_per_worker, batch_size, chunk_size)


def _build_pipeline(p: Any, job: _Job) -> None:
    """Wire the named transforms of the module docstring onto pipeline ``p``."""
    steps = beam_steps
    config = job.augment_config
    substitute = config.copies > 0 and "substitute" in active_operations(config)[0]
    indexed = p | "Examples" >> beam.Create(list(enumerate(job.examples)), reshuffle=True)
    values = (indexed | "SlotValues" >> beam.CombineGlobally(steps.SlotValues())) if substitute else \
        (p | "NoSlotValues" >> beam.Create([{}]))
    candidates = indexed | "Candidates" >> beam.Map(steps.example_candidates, config, pool=beam.pvalue.AsSingleton(values))
    labelled = (
        candidates
        | "AllCandidates" >> beam.combiners.ToList()
        | "Plan" >> beam.ParDo(steps.Plan(job.fingerprint, job.spec.to_dict(), job.cache,
                                          [ex.text for ex in job.others], job.chunk_size, job.batch_size,
                                          job.run_dir))
        | "Spread" >> beam.Reshuffle()
        | "LabelBatch" >> beam.ParDo(steps.LabelBatch(job.worker_teacher, job.spec.to_dict(), job.threads_per_worker))
        .with_outputs(steps.LabelBatch.FAILED, main="rows")
    )
    _ = labelled.rows | "ByChunk" >> beam.GroupByKey() | "WritePart" >> beam.ParDo(steps.WritePart(job.cache, job.run_id))
    _ = (labelled[steps.LabelBatch.FAILED] | "AllFailures" >> beam.combiners.ToList()
         | "WriteFailures" >> beam.Map(write_failures, job.run_dir))


def _collect(cache: str, run_dir: str, runner: str, num_workers: int, seconds: float,
             log: Callable[[str], None]) -> BeamLabelResult:
    """Read the run's plan and dead letters back; check that no planned key went missing."""
    plan, failures = read_run(run_dir)
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
    if not failures and is_remote(run_dir):
        FileSystems.delete([join(run_dir, PLAN_FILE)])  # object stores have no directories to remove
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
    "DEFAULT_RUNNER",
    "BeamDependencyError",
    "BeamLabelResult",
    "LabelFailuresError",
    "beam_label",
    "benchmark_label",
    "pipeline_flags",
]
