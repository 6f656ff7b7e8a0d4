"""Distillation: teacher logits on the training set and augmented texts -> a pQRNN student.

The composed stage over :mod:`edge_pqrnn.distill.teacher` (fine-tuned teacher, label cache),
:mod:`edge_pqrnn.distill.augment` (new texts) and :func:`edge_pqrnn.train.train` (the KD loss of
:mod:`edge_pqrnn.losses`: ``kd_weight * T^2 * KL(teacher_T || student_T) + (1 - kd_weight) * CE(gold)``).

The teacher (torch, pyarrow) and the student's trainer (TensorFlow) are imported by the
functions that use them, so importing this module, and the package, stays light.

    edge-pqrnn teacher finetune --data atis --out runs/teacher_atis
    edge-pqrnn teacher label --teacher runs/teacher_atis --data atis      # optional: warms the cache
    edge-pqrnn train --data atis --teacher runs/teacher_atis --out runs/atis_kd

Example:
    >>> result = distill_train("atis", "runs/teacher_atis", "runs/atis_kd")  # doctest: +SKIP
    >>> result.metrics["test"]["intent_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn.data import load_dataset
from edge_pqrnn.data.align import tag_vocabulary
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.distill.augment import AugmentConfig, augment, other_locale_examples
from edge_pqrnn.errors import DataError
from edge_pqrnn.projection import ProjectionSpec

DISTILL_FILE = "distill.json"
LABELS_CACHE = "labels"  # default cache folder inside the teacher directory


@dataclasses.dataclass
class LabelledSet:
    """What :func:`label_dataset` returns.

    Attributes:
        dataset: the loaded dataset.
        extra: augmented (and other-locale) texts after ``dataset.train``.
        labels: the teacher's logits for train + extra (:class:`edge_pqrnn.distill.label.TeacherLabels`).
        info: counts, settings and seconds, for ``distill.json``.
    """

    dataset: Dataset
    extra: list[Example]
    labels: Any
    info: dict[str, Any]


def check_labels(teacher: Any, dataset: Dataset) -> None:
    """Refuse a teacher fine-tuned on other intents or tags than ``dataset``'s.

    Args:
        teacher: a loaded teacher, or anything with its ``path`` and ``labels``.
        dataset: the dataset to label.

    Raises:
        DataError: the label vocabularies differ (the message says how to fine-tune one).
    """
    intents = tuple(dataset.intents)
    tags = tuple(tag_vocabulary(dataset.slot_types)) if dataset.has_slots else ()
    if teacher.labels.intents != intents or teacher.labels.tags != tags:
        raise DataError(
            f"the teacher in {teacher.path} was fine-tuned on labels that differ from {dataset.name!r} "
            f"({len(teacher.labels.intents)} intents / {len(teacher.labels.tags)} tags vs {len(intents)} / "
            f"{len(tags)}); fine-tune a teacher on this dataset: edge-pqrnn teacher finetune --data {dataset.name}"
        )


def label_dataset(
    data: str | Dataset,
    teacher_dir: str | Path,
    spec: ProjectionSpec,
    *,
    augment_config: AugmentConfig | None = None,
    other_locales: Sequence[str] = (),
    other_per_intent: int = 20,
    languages: list[str] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> LabelledSet:
    """Teacher logits for a dataset's train split and its augmented variants (cached).

    Args:
        data: a dataset spec or a loaded dataset.
        teacher_dir: a fine-tuned teacher directory.
        spec: the student's projection spec (its token rows carry the slot logits).
        augment_config: augmentation settings (default :class:`AugmentConfig`;
            ``copies=0`` for none).
        other_locales: multilingual locales whose sentences are added unlabelled.
        other_per_intent: their cap per (language, intent).
        languages: languages of a multilingual dataset.
        cache_dir: the Parquet cache (default ``TEACHER_DIR/labels``).
        progress: progress bars.
        log: where summary lines go.

    Returns:
        A :class:`LabelledSet`.

    Raises:
        DataError: the teacher's labels do not match the dataset's.
        TeacherDependencyError: the teacher extra is not installed.
    """
    from edge_pqrnn.distill.label import label_texts  # torch, pyarrow
    from edge_pqrnn.distill.teacher.model import load_teacher

    augment_config = augment_config or AugmentConfig()
    dataset = data if isinstance(data, Dataset) else load_dataset(data, languages=languages)
    started = time.monotonic()
    teacher = load_teacher(teacher_dir)
    load_seconds = time.monotonic() - started
    check_labels(teacher, dataset)
    extra = augment(dataset.train, augment_config)
    others = other_locale_examples(other_locales, exclude=dataset.languages, per_intent=other_per_intent,
                                   seed=augment_config.seed)
    extra += others
    log(f"distillation texts: {len(dataset.train)} train + {len(extra) - len(others)} augmented + "
        f"{len(others)} other-locale")
    texts = [ex.text for ex in dataset.train] + [ex.text for ex in extra]
    cache = Path(cache_dir) if cache_dir is not None else Path(teacher_dir) / LABELS_CACHE
    labels = label_texts(teacher, texts, spec, cache, progress=progress, log=log)
    info = {
        "teacher": str(teacher_dir),
        "teacher_test": teacher.metrics.get("test"),
        "dataset": dataset.name,
        "train_texts": len(dataset.train),
        "augmented_texts": len(extra) - len(others),
        "other_locale_texts": len(others),
        "other_locales": list(other_locales),
        "augment": augment_config.to_dict(),
        "cache": str(cache),
        "teacher_load_seconds": load_seconds,
        "labelled_now": labels.labelled,
        "label_seconds": labels.seconds,
    }
    return LabelledSet(dataset, extra, labels, info)


def distill_train(
    data: str,
    teacher_dir: str | Path,
    out_dir: str | Path,
    *,
    spec: ProjectionSpec | None = None,
    languages: list[str] | None = None,
    model_options: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
    augment_config: AugmentConfig | None = None,
    other_locales: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Any:
    """Label (or reuse cached labels) and train a student with the KD loss.

    Args:
        data: dataset spec.
        teacher_dir: a fine-tuned teacher directory.
        out_dir: the student's run directory.
        spec: projection parameters (default :class:`ProjectionSpec`).
        languages: languages of a multilingual dataset.
        model_options: :class:`edge_pqrnn.model.ModelConfig` fields.
        train_options: :class:`edge_pqrnn.train.TrainConfig` fields, incl. ``kd_weight``
            and ``kd_temperature``.
        augment_config: augmentation settings.
        other_locales: multilingual locales added as unlabelled texts.
        cache_dir: the teacher-label cache (default ``TEACHER_DIR/labels``).
        overwrite: replace an existing run directory.
        progress: progress bars.
        log: where summary lines go.

    Returns:
        The :class:`edge_pqrnn.train.TrainResult`; the run directory also gets
        ``distill.json`` (teacher, augmentation, label counts and seconds).
    """
    from edge_pqrnn.losses import Distillation  # TensorFlow
    from edge_pqrnn.model import ModelConfig
    from edge_pqrnn.train import TrainConfig, train

    spec = spec or ProjectionSpec()
    train_config = TrainConfig(**(train_options or {}))  # fail fast on bad options, before labelling
    labelled = label_dataset(data, teacher_dir, spec, augment_config=augment_config, other_locales=other_locales,
                             languages=languages, cache_dir=cache_dir, progress=progress, log=log)
    dataset = labelled.dataset
    model_config = ModelConfig(num_intents=max(1, len(dataset.intents)), num_tags=1, projection=spec,
                               **(model_options or {}))
    distillation = Distillation(labelled.extra, labelled.labels.intent, labelled.labels.slot_rows,
                                labelled.labels.offsets)
    started = time.monotonic()
    result = train(dataset, model_config, train_config, out_dir, progress=progress, overwrite=overwrite,
                   distillation=distillation)
    info = dict(labelled.info, student_train_seconds=time.monotonic() - started)
    atomic_write_bytes(Path(result.run_dir) / DISTILL_FILE,
                       (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return result


__all__ = ["DISTILL_FILE", "LABELS_CACHE", "LabelledSet", "check_labels", "distill_train", "label_dataset"]
