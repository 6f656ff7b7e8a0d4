"""One command from a dataset to a distilled int8 artifact, in resumable stages.

:func:`distill_recipe` fine-tunes the teacher on the dataset, labels the training texts
and their augmented copies with it, trains the pQRNN student with the KD loss, exports
and validates the int8 artifact, and compares teacher, student and the TF-IDF baseline on
the held-out split. Everything goes into one output directory::

    OUT/distill.json        the settings and a digest of the data (a rerun must match them)
    OUT/teacher/            1 teacher   (edge_pqrnn.distill.teacher.finetune)
    OUT/labels/             2 labels    (the teacher-logit cache, edge_pqrnn.distill.label)
    OUT/student/            3 student   (a KD run directory, edge_pqrnn.distill.kd)
    OUT/model.int8.tflite   4 export    (edge_pqrnn.export, validated before it is written)
    OUT/summary.json        5 summary   (written last)
    OUT/stages/STAGE.json   a stage's marker: written after its output, with its wall time

Each stage writes its output atomically (a hidden temporary directory or file renamed
into place) and then its marker; a stage counts as done only when both are there. A
rerun skips done stages, and a stage that runs again first removes the markers of the
stages after it, so they run again too. A hidden ``.*.partial`` directory left by a
killed process is removed at the start, never used. The label cache resumes after its
last finished chunk.

A teacher stopped by its budget (``teacher_minutes``) is done like any other (its marker
says ``cut_by_budget``); with ``continue_teacher`` a rerun gives such a teacher another
schedule of the same epochs and budget, starting from its weights
(``finetune(init=...)``), and the later stages run again. A teacher that early stopping
or its epochs ended is not continued.

``overwrite`` with other settings redoes the first stage those settings feed and every
later one (a new student ``epochs`` keeps the teacher and its labels); other data, or a
teacher setting, redoes everything.

Example:
    >>> summary = distill_recipe("csv:reviews.csv", "runs/reviews")  # doctest: +SKIP
    >>> summary["student_int8"]["intent_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn._version import __version__
from edge_pqrnn.data import load_dataset
from edge_pqrnn.data.records import Dataset
from edge_pqrnn.distill.augment import AugmentConfig
from edge_pqrnn.distill.compare import held_out_summary
from edge_pqrnn.errors import AgreementError, ArtifactError, ConfigError
from edge_pqrnn.projection import ProjectionSpec

SETTINGS_FILE = "distill.json"
SUMMARY_FILE = "summary.json"
ARTIFACT_FILE = "model.int8.tflite"
MARKERS_DIR = "stages"
STAGES = ("teacher", "labels", "student", "export", "summary")
#: What each stage writes inside OUT (its marker aside).
OUTPUTS = {"teacher": "teacher", "labels": "labels", "student": "student", "export": ARTIFACT_FILE,
           "summary": SUMMARY_FILE}


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """The settings of a distillation (stored in ``OUT/distill.json``).

    The student's defaults are the recipe that won on ATIS (docs/distillation.md): KL
    weight 0.5 (0.2 for the slot head), temperature 2, two augmented copies per text.

    Args:
        teacher_epochs: the teacher's maximum epochs (early stopping on dev).
        teacher_minutes: the teacher's wall-clock budget for its training steps (None: none).
        epochs: the student's maximum epochs (early stopping on dev).
        augment: augmented copies per training text and their operations (labelled by
            the teacher; its seed is ``seed``).
        kd_weight: weight of the KL-to-teacher term of the intent head.
        kd_slot_weight: the same for the slot head (None: ``kd_weight``).
        kd_temperature: the temperature of the KL term.
        seed: the seed of the teacher, the augmentation and the student.
        encoder: ``"e5"`` (multilingual-e5-small) or ``"tiny"`` (a small random encoder, tests).
        languages: languages of a multilingual dataset (None: all).
        spec: the student's projection.
        student: :class:`edge_pqrnn.model.ModelConfig` fields of the student (bottleneck, ...).
        student_train: more :class:`edge_pqrnn.train.TrainConfig` fields of the student
            (``smooth``, ``patience``).
        regularise: give the student the dropout and early stopping the data calls for
            (:func:`edge_pqrnn.regularise.plan_regularisation`; fields set in ``student``
            or ``student_train`` are kept), as ``edge-pqrnn train`` does.

    Raises:
        ConfigError: a value is out of range (checked by the stage configs they feed).
    """

    teacher_epochs: int = 6
    teacher_minutes: float | None = 60.0
    epochs: int = 10
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    kd_weight: float = 0.5
    kd_slot_weight: float | None = 0.2
    kd_temperature: float = 2.0
    seed: int = 0
    encoder: str = "e5"
    languages: tuple[str, ...] | None = None
    spec: ProjectionSpec = dataclasses.field(default_factory=ProjectionSpec)
    student: dict[str, Any] = dataclasses.field(default_factory=dict)
    student_train: dict[str, Any] = dataclasses.field(default_factory=dict)
    regularise: bool = True

    def __post_init__(self) -> None:
        from edge_pqrnn.train import TrainConfig  # TensorFlow

        TrainConfig(**self.train_options())  # fail fast, before the teacher's hour
        if self.teacher_minutes is not None and not self.teacher_minutes > 0:
            raise ConfigError(f"teacher_minutes must be positive or None, got {self.teacher_minutes!r}")

    def augment_config(self) -> AugmentConfig:
        """The augmentation, seeded with ``seed``."""
        return dataclasses.replace(self.augment, seed=self.seed)

    def train_options(self) -> dict[str, Any]:
        """The student's :class:`edge_pqrnn.train.TrainConfig` fields."""
        return {"epochs": self.epochs, "seed": self.seed, "kd_weight": self.kd_weight,
                "kd_slot_weight": self.kd_slot_weight, "kd_temperature": self.kd_temperature, **self.student_train}

    def settings(self) -> dict[str, Any]:
        """The JSON-ready settings a rerun must repeat."""
        out = dataclasses.asdict(self)
        out.update(augment=self.augment_config().to_dict(), spec=self.spec.to_dict(),
                   languages=list(self.languages) if self.languages else None)
        return out


def data_digest(dataset: Dataset) -> str:
    """A sha256 of every example of every split: a rerun on changed data is refused."""
    h = hashlib.sha256()
    for split in ("train", "dev", "test"):
        for ex in getattr(dataset, split):
            h.update(json.dumps([split, ex.text, ex.intent, [list(s) for s in ex.slots], ex.language],
                                ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class _Out:
    """The output directory: its stage markers, the settings check, the cleaning."""

    def __init__(self, path: Path):
        self.path = path

    def marker(self, stage: str) -> Path:
        return self.path / MARKERS_DIR / f"{stage}.json"

    def done(self, stage: str) -> dict[str, Any] | None:
        """The marker of a finished stage (output and marker both present), else None."""
        if not self.marker(stage).is_file() or not (self.path / OUTPUTS[stage]).exists():
            return None
        return _read_json(self.marker(stage))

    def start(self, stage: str) -> None:
        """Forget this stage and every later one: they run (again) from here."""
        for later in STAGES[STAGES.index(stage):]:
            self.marker(later).unlink(missing_ok=True)

    def finish(self, stage: str, seconds: float, info: dict[str, Any]) -> dict[str, Any]:
        marker = {"stage": stage, "seconds": round(seconds, 1), **info}
        _write_json(self.marker(stage), marker)
        return marker

    def clear(self) -> None:
        """Remove what a distillation writes here (and nothing else)."""
        for name in (SETTINGS_FILE, MARKERS_DIR, *OUTPUTS.values()):
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def sweep_partials(self) -> None:
        """Remove temporary directories a killed stage left behind (never used)."""
        for pattern in (".*.partial", ".*.old"):
            for path in self.path.glob(pattern):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def check_settings(self, record: dict[str, Any], overwrite: bool, log: Callable[[str], None]) -> None:
        """Refuse a directory that holds another distillation (or anything else) unless
        ``overwrite``; then record the settings.

        With ``overwrite``, other data (or an unknown record) clears what a distillation
        wrote; other settings forget the first stage they feed and every later one (a
        new student ``epochs`` keeps the teacher and its labels).
        """
        settings_path = self.path / SETTINGS_FILE
        if settings_path.is_file():
            diff = _differences(_read_json(settings_path), record)
            if diff and not overwrite:
                raise ConfigError(f"{self.path} holds a distillation made with other settings "
                                  f"({'; '.join(diff.values())}); pass --overwrite to redo it there with these, or "
                                  "choose another --out")
            if diff:
                stage = min((_STAGE_OF.get(key, "teacher") for key in diff), key=STAGES.index)
                log(f"--overwrite: {'; '.join(diff.values())}: the stages from {stage} on run again")
                if stage == "teacher":
                    self.clear()
                else:
                    self.start(stage)
                    settings_path.unlink()
        elif any(p.name != ".lock" for p in self.path.iterdir()):
            if not overwrite:
                raise ConfigError(f"{self.path} is not empty and holds no {SETTINGS_FILE}: not a distillation "
                                  "output; choose another --out, or pass --overwrite to write into it")
            self.clear()
        if not settings_path.is_file():
            self.marker("teacher").parent.mkdir(parents=True, exist_ok=True)
            _write_json(settings_path, record)


#: The first stage each setting feeds (the data and anything unknown: the teacher).
_STAGE_OF = {"augment": "labels", "epochs": "student", "kd_weight": "student", "kd_slot_weight": "student",
             "kd_temperature": "student", "student": "student", "student_train": "student", "regularise": "student"}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
    """What differs between two settings records: setting name (``data`` for the data) -> a line."""
    diff = {}
    if old.get("data_sha256") != new["data_sha256"]:
        same_spec = old.get("data") == new["data"]
        diff["data"] = (f"the data of {new['data']} changed since" if same_spec
                        else f"data {old.get('data')} here, {new['data']} now")
    old_settings, new_settings = old.get("settings", {}), new["settings"]
    for key in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(key) != new_settings.get(key):
            diff[key] = f"{key} {json.dumps(old_settings.get(key))} here, {json.dumps(new_settings.get(key))} now"
    return diff


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold OUT's lock: a second distillation into the same directory is refused."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArtifactError(f"another edge-pqrnn distill is writing {out}; wait for it or choose "
                                "another --out") from None
        yield


def distill_recipe(data: str, out_dir: str | Path, config: RecipeConfig | None = None, *, overwrite: bool = False,
                   continue_teacher: bool = False, progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Teacher -> labels -> KD student -> int8 artifact -> summary, resumably, into ``out_dir``.

    Args:
        data: a dataset spec (``atis``, ``snips``, ``multilingual``, ``csv:PATH``, ``jsonl:PATH``...).
        out_dir: the output directory (layout: this module's docstring).
        config: the settings (default :class:`RecipeConfig`); a rerun must repeat them.
        overwrite: in an ``out_dir`` that holds a distillation with other settings, redo
            the first stage they feed and the later ones (other data: all; what a
            distillation wrote there is removed); or write into a non-empty directory
            that holds none.
        continue_teacher: give a finished teacher that its budget cut another schedule
            (same epochs and budget) from its own weights; the later stages then run
            again. Drop it on later reruns, or a teacher cut again trains again.
        progress: progress bars inside the stages.
        log: where the stage lines go.

    Returns:
        The summary (also in ``OUT/summary.json``): held-out scores of the teacher, the
        int8 student and the TF-IDF baseline, ratios, sizes and seconds per stage.

    Raises:
        ConfigError: ``out_dir`` holds another distillation or something else (and
            ``overwrite`` is false), or a setting is out of range.
        ArtifactError: another distillation is writing ``out_dir``.
        DataError: the data cannot be loaded or has no dev split.
        TeacherDependencyError: the teacher extra is not installed.
        AgreementError: the int8 artifact did not pass validation (nothing written; the
            float student is kept).
    """
    config = config or RecipeConfig()
    _finetune_config(config)  # the teacher extra and its settings, before anything is loaded
    dataset = load_dataset(data, languages=list(config.languages) if config.languages else None)
    config = _with_plan(config, dataset, log) if config.regularise else config
    record = {"data": data, "data_sha256": data_digest(dataset), "settings": config.settings(),
              "version": __version__}
    out = _Out(Path(out_dir))
    with _locked(out.path):
        out.check_settings(record, overwrite, log)
        out.sweep_partials()
        return _Recipe(data, dataset, config, out, progress, log).run(continue_teacher)


def _with_plan(config: RecipeConfig, dataset: Dataset, log: Callable[[str], None]) -> RecipeConfig:
    """The student's dropout and early stopping from the data's plan (the teacher labels
    the augmented copies, so the plan's gold-labelled variants, epochs and projection are
    not taken: the recipe's own options set those)."""
    from edge_pqrnn.regularise import plan_regularisation

    plan = plan_regularisation(dataset, {*config.student, *config.student_train}, config.spec)
    model, train = plan.taken(("dropout",)), plan.taken(("smooth", "patience"))
    if model or train:
        log(f"student {plan.describe()} (taken: {', '.join(f'{k} {v}' for k, v in {**model, **train}.items())})")
    return dataclasses.replace(config, student={**model, **config.student},
                               student_train={**train, **config.student_train})


def _finetune_config(config: RecipeConfig) -> Any:
    from edge_pqrnn.distill.teacher.finetune import FinetuneConfig  # torch

    return FinetuneConfig(epochs=config.teacher_epochs, max_minutes=config.teacher_minutes, seed=config.seed,
                          encoder=config.encoder)


def format_seconds(seconds: float) -> str:
    """Seconds as "12.3 s", or "4.5 min" from two minutes on."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _score(m: dict[str, Any]) -> str:
    slot = f", slot F1 {m['slot_f1']:.4f}" if m.get("slot_f1") is not None else ""
    return f"{m['split']} intent {m['intent_accuracy']:.4f}{slot}"


class _Recipe:
    """The five stages over one loaded dataset and output directory."""

    def __init__(self, data: str, dataset: Dataset, config: RecipeConfig, out: _Out, progress: bool,
                 log: Callable[[str], None]):
        self.data, self.dataset, self.config, self.out = data, dataset, config, out
        self.progress, self.log = progress, log
        self.split = "test" if dataset.test else "dev"
        self.teacher_dir, self.labels_dir = out.path / "teacher", out.path / "labels"
        self.student_dir, self.artifact = out.path / "student", out.path / ARTIFACT_FILE
        self.continuing = False

    def run(self, continue_teacher: bool) -> dict[str, Any]:
        teacher = self.out.done("teacher")
        if continue_teacher and teacher is not None and not teacher.get("cut_by_budget"):
            self.log("--continue-teacher: the teacher was not cut by its budget (early stopping or its epochs "
                     "ended it): nothing to continue")
        force = self.continuing = bool(continue_teacher and teacher and teacher.get("cut_by_budget"))
        markers = {
            "teacher": self._stage("teacher", self._teacher, _score, force=force,
                                   what="continuing the teacher from its weights" if force else
                                   f"fine-tuning the {self.config.encoder} teacher"),
            "labels": self._stage("labels", self._labels, lambda m: f"{m['texts']:,} texts labelled",
                                  what="teacher logits for the training texts and their augmented copies"),
            "student": self._stage("student", self._student, _score, what="training the pQRNN student (KD)"),
            "export": self._stage("export", self._export, lambda m: f"{m['bytes']:,} bytes",
                                  what=f"int8 export and validation -> {self.artifact}"),
        }
        self._stage("summary", lambda: self._summary(markers), lambda m: "summary.json", what="held-out comparison")
        return _read_json(self.out.path / SUMMARY_FILE)

    def _stage(self, stage: str, work: Callable[[], dict[str, Any]], describe: Callable[[dict[str, Any]], str],
               what: str, force: bool = False) -> dict[str, Any]:
        """Skip a done stage (saying so), or run it and mark it done; its marker."""
        label = f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage}"
        done = None if force else self.out.done(stage)
        if done is not None:
            self.log(f"{label}: done ({describe(done)}; took {format_seconds(done['seconds'])}), skipping")
            return done
        self.log(f"{label}: {what}")
        self.out.start(stage)
        started = time.monotonic()
        info = work()
        marker = self.out.finish(stage, time.monotonic() - started, info)
        self.log(f"{label}: finished in {format_seconds(marker['seconds'])} ({describe(marker)})")
        return marker

    def _teacher(self) -> dict[str, Any]:
        from edge_pqrnn.distill.teacher.finetune import finetune

        init = self.teacher_dir if self.continuing else None
        config = _finetune_config(self.config)
        result = finetune(self.dataset, self.teacher_dir, config, spec=self.config.spec, progress=self.progress,
                          overwrite=True, log=self.log, init=init)
        shutil.rmtree(self.labels_dir, ignore_errors=True)  # an older teacher's logits are of no use
        m = result.metrics
        held = m.get(self.split) or m["dev"]
        full_steps = -(-len(self.dataset.train) // config.batch_size)
        cut = bool(result.history) and (result.history[-1]["steps"] < full_steps or (
            m["epochs_run"] < config.epochs and m["epochs_run"] - m["best_epoch"] < config.patience))
        return {"split": self.split if self.split in m else "dev", "intent_accuracy": held["intent_accuracy"],
                "macro_f1": held.get("macro_f1"), "slot_f1": held.get("slot_f1"), "epochs_run": m["epochs_run"],
                "best_epoch": m["best_epoch"], "cut_by_budget": cut, "continued": init is not None}

    def _labels(self) -> dict[str, Any]:
        from edge_pqrnn.distill.kd import label_dataset

        labelled = label_dataset(self.dataset, self.teacher_dir, self.config.spec,
                                 augment_config=self.config.augment_config(), cache_dir=self.labels_dir,
                                 progress=self.progress, log=self.log)
        info = labelled.info
        return {"texts": len(labelled.labels.texts), "train_texts": info["train_texts"],
                "augmented_texts": info["augmented_texts"], "labelled_now": info["labelled_now"]}

    def _student(self) -> dict[str, Any]:
        from edge_pqrnn.distill.kd import distill_train

        result = distill_train(self.dataset, self.teacher_dir, self.student_dir, spec=self.config.spec,
                               model_options=self.config.student, train_options=self.config.train_options(),
                               augment_config=self.config.augment_config(), cache_dir=self.labels_dir,
                               overwrite=True, progress=self.progress, log=self.log)
        m = result.metrics
        held = m.get(self.split) or m["dev"]
        return {"split": self.split if self.split in m else "dev", "intent_accuracy": held["intent_accuracy"],
                "slot_f1": held.get("slot_f1"), "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
                "num_params": m["num_params"]}

    def _export(self) -> dict[str, Any]:
        from edge_pqrnn.export import export

        try:
            result = export(self.student_dir, self.artifact, data=self.dataset.name, log=self.log)
        except AgreementError as exc:
            raise AgreementError(
                f"the int8 student did not pass validation, nothing was written; the float student in "
                f"{self.student_dir} is kept. Rerun with more --epochs, or export it yourself: edge-pqrnn export "
                f"{self.student_dir} --out {self.artifact} --scheme int8-per-tensor ({exc})") from exc
        return {"bytes": len(result.artifact)}

    def _summary(self, markers: dict[str, dict[str, Any]]) -> dict[str, Any]:
        summary = held_out_summary(self.dataset, self.split, self.teacher_dir, self.student_dir, self.artifact)
        summary["data"] = self.data
        summary["stage_seconds"] = {stage: markers[stage]["seconds"] for stage in markers}
        summary["teacher"].update(cut_by_budget=markers["teacher"].get("cut_by_budget"))
        _write_json(self.out.path / SUMMARY_FILE, summary)
        return {"split": self.split}


__all__ = ["ARTIFACT_FILE", "RecipeConfig", "SETTINGS_FILE", "STAGES", "SUMMARY_FILE", "data_digest",
           "distill_recipe", "format_seconds"]
