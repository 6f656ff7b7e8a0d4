"""Beam labelling's I/O: the optional apache-beam import, text sources, local or remote
paths (``gs://...``), the cache's parts and keys, the teacher's files for the workers,
and a run's plan and dead letters.

Every write is atomic: a local file through a temp file + rename, a Beam file system
object through a temp object + rename.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn.data import load_dataset
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.distill.label import PART_GLOB, part_bytes, pq
from edge_pqrnn.distill.teacher import TeacherDependencyError
from edge_pqrnn.errors import ArtifactError, DataError
from edge_pqrnn.evaluate import Labels

BEAM_HINT = 'pip install -e ".[beam]"  (apache-beam with protobuf>=6.31.1,<7, plus the teacher extra)'

# Beam warns on import about optional GCP clients ("apitools not found"): noise here.
logging.disable(logging.WARNING)
try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
except ImportError as _exc:  # pragma: no cover - exercised by the error test via require_beam
    beam = None
    _BEAM_IMPORT_ERROR: ImportError | None = _exc
else:
    _BEAM_IMPORT_ERROR = None
finally:
    logging.disable(logging.NOTSET)

#: Where a run keeps its plan and dead letters, inside the cache directory (not matched
#: by the cache's ``part-*.parquet`` glob).
RUNS_DIR = "_beam"
FAILED_FILE = "failed.jsonl"
PLAN_FILE = "plan.json"
TEXT_PREFIX = "text:"
#: Files of a teacher directory a worker needs (copied from a remote path once per worker).
TEACHER_FILES = ("teacher.json", "labels.json", "tokenizer.json", "model.safetensors", "metrics.json")


class BeamDependencyError(TeacherDependencyError):
    """apache-beam (the ``beam`` extra) is not installed."""


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
    dataset = load_dataset(data, languages=languages)
    return list(dataset.train), dataset


# --- the cache, local or on a Beam file system ---------------------------------------------


def is_remote(path: str) -> bool:
    """Whether ``path`` is on a Beam file system (``gs://...``) rather than local."""
    return "://" in path


def join(directory: str, name: str) -> str:
    """``directory/name`` on either kind of path."""
    return FileSystems.join(directory, name) if is_remote(directory) else str(Path(directory) / name)


def write_bytes(path: str, data: bytes) -> None:
    """Atomic write: local via temp file + rename; remote via a temp object + rename."""
    if not is_remote(path):
        atomic_write_bytes(path, data)
        return
    tmp = f"{path}.partial-{os.getpid()}-{time.time_ns()}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    FileSystems.rename([tmp], [path])


def read_bytes(path: str) -> bytes:
    """The content of a local or remote file."""
    if not is_remote(path):
        return Path(path).read_bytes()
    with FileSystems.open(path) as f:
        return f.read()


def cached_keys(cache_dir: str) -> set[str]:
    """The keys already in a cache directory (local or a Beam file system path)."""
    if is_remote(cache_dir):
        matches = FileSystems.match([join(cache_dir, PART_GLOB)])[0].metadata_list
        parts = sorted(m.path for m in matches)
    else:
        parts = sorted(str(p) for p in Path(cache_dir).glob(PART_GLOB))
    keys: set[str] = set()
    for part in parts:
        try:
            keys.update(pq.read_table(io.BytesIO(read_bytes(part)), columns=["key"]).column("key").to_pylist())
        except Exception as exc:
            raise ArtifactError(f"{part} is not a readable Parquet file ({exc}); delete it and label again") from exc
    return keys


def write_part(cache_dir: str, name: str, keys: list[str], texts: list[str], intent: np.ndarray,
               slot_rows: list[np.ndarray]) -> None:
    """One part in the local path's format (``label.part_bytes``), published atomically
    under ``name``: a fixed name per (run, chunk), so a bundle the runner retries
    replaces its part instead of adding a copy."""
    write_bytes(join(cache_dir, name), part_bytes(keys, texts, intent, slot_rows))


def local_teacher(teacher_dir: str, names: Sequence[str] = TEACHER_FILES) -> str:
    """A local directory with the teacher's files (a remote one is copied to a temp dir)."""
    if not is_remote(teacher_dir):
        return teacher_dir
    local = tempfile.mkdtemp(prefix="edge_pqrnn_teacher_")
    for name in names:
        atomic_write_bytes(Path(local) / name, read_bytes(join(teacher_dir, name)))
    return local


def stage_teacher(teacher_dir: str, fingerprint: str, temp_location: str | None) -> str:
    """Where the workers read the teacher: a local directory is copied once to
    ``TEMP_LOCATION/edge_pqrnn_teacher/FINGERPRINT/`` when ``temp_location`` is a remote
    path (``gs://...``: Dataflow workers cannot see this machine's files), as Beam stages
    packages; otherwise the path is used as given (DirectRunner, a shared file system, or
    Flink/Spark with ``environment_type=LOOPBACK``).

    Returns:
        The path to hand to the workers.
    """
    if is_remote(teacher_dir) or not temp_location or not is_remote(temp_location):
        return teacher_dir
    target = join(join(temp_location, "edge_pqrnn_teacher"), fingerprint)
    for name in TEACHER_FILES:
        path = join(target, name)
        if not FileSystems.exists(path):
            write_bytes(path, (Path(teacher_dir) / name).read_bytes())
    return target


def teacher_stand_in(teacher_dir: str) -> Any:
    """What ``label.teacher_fingerprint`` and ``kd.check_labels`` read of a teacher
    (its path and labels), without loading the model."""
    local = local_teacher(teacher_dir, ("teacher.json", "metrics.json", "labels.json"))
    for name in ("metrics.json", "teacher.json", "labels.json"):
        if not (Path(local) / name).is_file():
            raise ArtifactError(f"{Path(teacher_dir) / name} is missing: not a finished teacher directory; run "
                                "`edge-pqrnn teacher finetune --data NAME --out DIR` first")
    labels = Labels.from_dict(json.loads((Path(local) / "labels.json").read_text(encoding="utf-8")))
    return SimpleNamespace(path=Path(local), labels=labels)


def write_failures(failures: list[dict], run_dir: str) -> None:
    """The dead letters of a run, one JSON line each (none: no file)."""
    if failures:
        failures = sorted(failures, key=lambda f: (f["chunk"], f["key"]))
        data = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
        write_bytes(join(run_dir, FAILED_FILE), data.encode("utf-8"))


def write_plan(run_dir: str, plan: dict[str, Any]) -> None:
    """The counts and keys a run planned to label (read back by :func:`read_run`)."""
    write_bytes(join(run_dir, PLAN_FILE), json.dumps(plan).encode("utf-8"))


def read_run(run_dir: str) -> tuple[dict[str, Any], list[dict]]:
    """A finished run's plan and dead letters."""
    plan = json.loads(read_bytes(join(run_dir, PLAN_FILE)))
    failed_path = join(run_dir, FAILED_FILE)
    has_failed = os.path.exists(failed_path) if not is_remote(failed_path) else FileSystems.exists(failed_path)
    failures = [json.loads(line) for line in read_bytes(failed_path).decode("utf-8").splitlines()] \
        if has_failed else []
    return plan, failures
