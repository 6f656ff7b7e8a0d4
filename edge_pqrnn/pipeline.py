"""The one orchestration of the stages that the CLI, tests and notebooks call."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge_pqrnn.projection import ProjectionSpec

if TYPE_CHECKING:
    from edge_pqrnn.distill.augment import AugmentConfig


def train_run(data: str, out_dir: str | Path, *, spec: ProjectionSpec | None = None,
              languages: list[str] | None = None, model_options: dict[str, Any] | None = None,
              train_options: dict[str, Any] | None = None, augment_config: AugmentConfig | None = None,
              overwrite: bool = False, progress: bool = True, explicit: Collection[str] | None = None):
    """Load ``data`` and train a run into ``out_dir``.

    Args:
        data: dataset spec (``atis``, ``snips``, ``multilingual``, ``csv:PATH``...).
        out_dir: the run directory to create.
        spec: projection parameters (default :class:`ProjectionSpec`).
        languages: languages of a multilingual dataset.
        model_options: :class:`edge_pqrnn.model.ModelConfig` fields.
        train_options: :class:`edge_pqrnn.train.TrainConfig` fields.
        augment_config: with ``copies`` > 0, augmented variants of the training texts are
            added with their gold labels (the intent, and slot spans mapped through the
            edits); recorded under ``augment`` in the run's metrics.
        explicit: when given, the settings the data calls for
            (:func:`edge_pqrnn.regularise.plan_regularisation`) replace the passed ones,
            except the options named here (e.g. ``{"dropout"}``: the user's own); the
            plan is printed. ``None`` trains with exactly the passed settings.

    Returns:
        The :class:`edge_pqrnn.train.TrainResult`.
    """
    from edge_pqrnn.distill.augment import augment
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.model import ModelConfig
    from edge_pqrnn.train import TrainConfig, train

    train_config = TrainConfig(**(train_options or {}))  # fail fast on bad options, before loading data
    dataset = load_dataset(data, languages=languages)
    spec = spec or ProjectionSpec()
    if explicit is not None:
        spec, model_options, train_options, augment_config = _apply_plan(
            dataset, explicit, spec, dict(model_options or {}), dict(train_options or {}), augment_config, progress)
        train_config = TrainConfig(**train_options)
    augmented = None
    if augment_config is not None and augment_config.copies:
        variants = augment(dataset.train, augment_config)
        augmented = {"gold_texts": len(dataset.train), "variants": len(variants), "config": augment_config.to_dict()}
        dataset = dataclasses.replace(dataset, train=[*dataset.train, *variants])
    model_config = ModelConfig(num_intents=max(1, len(dataset.intents)), num_tags=1,
                               projection=spec, **(model_options or {}))
    return train(dataset, model_config, train_config, out_dir, progress=progress, overwrite=overwrite,
                 augmented=augmented)


def _apply_plan(dataset: Any, explicit: Collection[str], spec: ProjectionSpec, model_options: dict[str, Any],
                train_options: dict[str, Any], augment_config: AugmentConfig | None, progress: bool):
    """The options with the data's regularisation plan applied (explicit options kept)."""
    from edge_pqrnn.distill.augment import AugmentConfig
    from edge_pqrnn.regularise import plan_regularisation

    plan = plan_regularisation(dataset, explicit, spec)
    if progress:
        print(plan.describe())
    settings = plan.settings
    spec = dataclasses.replace(spec, **plan.taken(("max_tokens", "mode")))
    model_options.update(plan.taken(("dropout",)))
    train_options.update(plan.taken(("smooth", "patience", "epochs")))
    if "augment_copies" in settings or "augment_ops" in settings:
        base = augment_config or AugmentConfig(copies=0)
        weights = ({op: 1.0 for op in settings["augment_ops"].split(",")} if "augment_ops" in settings
                   else base.weights)
        augment_config = dataclasses.replace(base, copies=settings.get("augment_copies", base.copies),
                                             weights=weights)
    return spec, model_options, train_options, augment_config


def evaluate_run(run_dir: str | Path, data: str | None = None, split: str = "test",
                 baseline: bool = False) -> dict[str, Any]:
    """Metrics of a run on a split of its dataset (or of ``data``).

    With ``baseline``, the TF-IDF + logistic-regression baseline is trained on the same
    dataset's train split and scored on the same split, under ``"baseline"``.
    """
    from edge_pqrnn.evaluate import evaluate
    from edge_pqrnn.export import load_run_and_dataset

    run, _, dataset = load_run_and_dataset(run_dir, data)
    metrics = evaluate(run, getattr(dataset, split))
    if baseline:
        from edge_pqrnn.baseline import run_baseline

        metrics["baseline"] = run_baseline(dataset, split)
    return metrics


def baseline_comparison(run_dir: str | Path, data: str | None = None,
                        languages: list[str] | None = None) -> dict[str, Any]:
    """The run beside the TF-IDF + logistic-regression baseline on the same held-out split
    (test, else dev) of its dataset (or ``data``, in ``languages``), with what to try when
    the student is below it.

    Returns:
        ``{"split", "student": {"intent_accuracy", "macro_f1"}, "baseline": {...},
        "below_baseline": bool, "advice": str | None}``: below means a lower intent
        macro-F1 or accuracy than the baseline's.

    Raises:
        ArtifactError: the run is missing or names no dataset.
        DataError: the dataset has neither a test nor a dev split.
    """
    from edge_pqrnn.baseline import run_baseline
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.errors import ArtifactError, DataError
    from edge_pqrnn.evaluate import evaluate
    from edge_pqrnn.run import load_run

    run = load_run(run_dir)
    name = data or run.metrics.get("dataset")
    if not name:
        raise ArtifactError(f"{run_dir}: the run does not record its dataset; pass data=NAME")
    dataset = load_dataset(name, languages=languages)
    split = "test" if dataset.test else "dev" if dataset.dev else None
    if split is None:
        raise DataError(f"{dataset.name}: no test or dev split to compare the run with the baseline on")
    metrics, base = evaluate(run, getattr(dataset, split)), run_baseline(dataset, split)
    student = {k: metrics[k] for k in ("intent_accuracy", "macro_f1")}
    base = {k: base[k] for k in ("intent_accuracy", "macro_f1")}
    below = student["macro_f1"] < base["macro_f1"] or student["intent_accuracy"] < base["intent_accuracy"]
    advice = None
    if below:
        advice = ("the pQRNN student is below the TF-IDF baseline on this data. Try, in this order: distil from the "
                  f"teacher (`edge-pqrnn teacher finetune --data {name} --out TEACHER`, then `edge-pqrnn train "
                  f"--data {name} --teacher TEACHER ...`), gold-label augmentation (--augment-copies 2), a higher "
                  "--dropout (0.3-0.5) and --average-last 3; longer texts may need a larger --max-tokens")
    return {"split": split, "student": student, "baseline": base, "below_baseline": below, "advice": advice}


def quickstart(data: str = "atis", out_dir: str | Path = "runs/quickstart", max_minutes: float = 12.0,
               log: Callable[[str], None] = print) -> Path:
    """Train on ``data``, export the int8 artifact, validate it, and return its path."""
    from edge_pqrnn.export import export

    out_dir = Path(out_dir)
    run_dir = out_dir / "run"
    started = time.perf_counter()
    if not (run_dir / "metrics.json").is_file():
        train_run(data, run_dir, train_options={"max_minutes": max_minutes}, overwrite=True)
    else:
        log(f"reusing the finished run in {run_dir}")
    artifact = out_dir / f"{data.split(':')[0]}.int8.tflite"
    export(run_dir, artifact, data=data, log=log)
    log(f"done in {time.perf_counter() - started:.0f} s")
    return artifact


__all__ = ["evaluate_run", "quickstart", "train_run"]
