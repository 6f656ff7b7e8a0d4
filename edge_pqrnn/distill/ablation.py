"""Distillation ablations on the paper's axes: augmentation, temperature, KL/CE weight,
student size.

One centre configuration is trained once; every axis then varies one setting around it
(the centre is a point of every axis), so four axes of three points cost nine student
runs. Every run is a normal ``train --teacher`` run directory under ``RUNS_DIR`` named by
its settings; a finished one (``metrics.json`` present, written last by ``train``) is
reused, so an interrupted sweep resumes where it stopped. Students are scored as float
models on the test split (the int8 artifacts follow the float model within the export's
agreement gates; the headline results score the int8 artifacts).

    edge-pqrnn teacher ablate --data atis --teacher runs/teacher_atis --runs runs/ablate

writes the ``<dataset>.ablations`` entry of ``docs/results.json``, a marked section of
``docs/results.md`` and the plot ``docs/ablations_<dataset>.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_pqrnn._io import atomic_write_bytes
from edge_pqrnn.distill.augment import AugmentConfig
from edge_pqrnn.distill.kd import DISTILL_FILE, distill_train
from edge_pqrnn.distill.results import merge_results
from edge_pqrnn.errors import ConfigError
from edge_pqrnn.run import is_finished, read_metrics

SECTION_BEGIN = "<!-- ablations:begin (edge-pqrnn teacher ablate) -->"
SECTION_END = "<!-- ablations:end -->"

# Student sizes (the projection is fixed, so the teacher-label cache is shared).
SIZES: dict[str, dict[str, int]] = {
    "S": {"bottleneck": 64, "state": 32, "layers": 1},
    "M": {"bottleneck": 96, "state": 64, "layers": 2},
    "L": {"bottleneck": 128, "state": 128, "layers": 2},  # the default student
}


@dataclasses.dataclass(frozen=True)
class Point:
    """One student configuration of the sweep."""

    augment_copies: int = 1
    kd_temperature: float = 2.0
    kd_weight: float = 0.5
    size: str = "L"
    kd_slot_weight: float | None = None  # None: kd_weight (see TrainConfig)

    @property
    def name(self) -> str:
        """The run directory's name."""
        slot = "" if self.kd_slot_weight is None else f"_s{self.kd_slot_weight:g}"
        return f"aug{self.augment_copies}_t{self.kd_temperature:g}_w{self.kd_weight:g}{slot}_{self.size}"


# axis -> (Point field, values). Three points each; the centre's value is one of them.
AXES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "augmentation": ("augment_copies", (0, 1, 2)),
    "temperature": ("kd_temperature", (1.0, 2.0, 4.0)),
    "kd_weight": ("kd_weight", (0.2, 0.5, 0.8)),  # with a centre kd_slot_weight, the intent head's only
    "student_size": ("size", ("S", "M", "L")),
}


def sweep_points(centre: Point, axes: Sequence[str]) -> dict[str, list[Point]]:
    """The points of each axis: the centre with one field changed."""
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise ConfigError(f"unknown ablation axis {', '.join(unknown)}; choose from {', '.join(AXES)}")
    return {axis: [dataclasses.replace(centre, **{AXES[axis][0]: v}) for v in AXES[axis][1]] for axis in axes}


def _run_point(data: str, teacher_dir: Path, runs_dir: Path, point: Point, epochs: int, seed: int,
               progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    run_dir = runs_dir / point.name
    if not is_finished(run_dir):
        log(f"ablation {point.name}: training ({epochs} epochs)")
        distill_train(data, teacher_dir, run_dir, model_options=SIZES[point.size],
                      train_options={"epochs": epochs, "patience": epochs, "seed": seed,
                                     "kd_weight": point.kd_weight, "kd_slot_weight": point.kd_slot_weight,
                                     "kd_temperature": point.kd_temperature},
                      augment_config=AugmentConfig(copies=point.augment_copies, seed=seed),
                      overwrite=run_dir.exists(), progress=progress, log=log)
    else:
        log(f"ablation {point.name}: reusing the finished run")
    metrics = read_metrics(run_dir)
    distill = json.loads((run_dir / DISTILL_FILE).read_text(encoding="utf-8"))
    test = metrics["test"]
    return {
        "run": str(run_dir),
        **dataclasses.asdict(point),
        "intent_accuracy": test["intent_accuracy"],
        "slot_f1": test.get("slot_f1"),
        "exact_match": test.get("exact_match"),
        "params": metrics["num_params"],
        "train_texts": distill.get("train_texts"),
        "augmented_texts": distill.get("augmented_texts"),
        "epochs_run": metrics["epochs_run"],
        "train_seconds": round(metrics["train_seconds"], 1),
    }


def ablate(data: str, teacher_dir: str | Path, runs_dir: str | Path, *, axes: Sequence[str] = tuple(AXES),
           centre: Point = Point(), epochs: int = 6, seed: int = 0, progress: bool = True,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or reuse) every point of ``axes`` and score it on the test split.

    Args:
        data: dataset spec.
        teacher_dir: the fine-tuned teacher.
        runs_dir: where the student run directories go (one per distinct point).
        axes: names of :data:`AXES`.
        centre: the configuration every axis varies around.
        epochs: epochs of every student (no early stop: the points compare at equal cost).
        seed: training and augmentation seed.
        progress: progress bars.
        log: progress lines.

    Returns:
        The ``ablations`` entry: settings, the teacher's test scores and, per axis, the
        points in order.
    """
    teacher_dir, runs_dir = Path(teacher_dir), Path(runs_dir)
    teacher_metrics_file = teacher_dir / "metrics.json"
    if not teacher_metrics_file.is_file():
        raise ConfigError(f"{teacher_dir} is not a finished teacher directory (no metrics.json); "
                          "run `edge-pqrnn teacher finetune` first")
    teacher = json.loads(teacher_metrics_file.read_text(encoding="utf-8"))
    runs_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done: dict[str, dict[str, Any]] = {}
    result_axes: dict[str, list[dict[str, Any]]] = {}
    for axis, points in sweep_points(centre, axes).items():
        rows = []
        for point in points:
            if point.name not in done:
                done[point.name] = _run_point(data, teacher_dir, runs_dir, point, epochs, seed, progress, log)
            rows.append(done[point.name])
        result_axes[axis] = rows
    return {
        "dataset": data,
        "teacher": {"dir": str(teacher_dir), "intent_accuracy": teacher["test"]["intent_accuracy"],
                    "slot_f1": teacher["test"].get("slot_f1")},
        "centre": dataclasses.asdict(centre),
        "sizes": SIZES,
        "epochs": epochs,
        "seed": seed,
        "scored": "float student, test split",
        "axes": result_axes,
        "runs": len(done),
        "train_seconds_total": round(sum(r["train_seconds"] for r in done.values()), 1),
        "seconds_this_call": round(time.monotonic() - started, 1),  # small when the runs were reused
    }


def plot(entry: dict[str, Any], path: str | Path) -> Path:
    """One panel per axis: intent accuracy and slot F1 of the students, the teacher as
    dashed lines. Needs matplotlib (extra ``report``)."""
    try:  # heavy and optional: loaded for the plot only
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("the ablation plot needs matplotlib: pip install 'edge-pqrnn[report]'") from exc
    axes = entry["axes"]
    fig, panels = plt.subplots(1, len(axes), figsize=(3.6 * len(axes), 3.4), squeeze=False)
    teacher = entry["teacher"]
    for panel, (axis, rows) in zip(panels[0], axes.items()):
        field = AXES[axis][0]
        labels = [str(r[field]) for r in rows]
        x = list(range(len(rows)))
        panel.plot(x, [r["intent_accuracy"] for r in rows], "o-", label="student intent acc")
        if rows[0]["slot_f1"] is not None:
            panel.plot(x, [r["slot_f1"] for r in rows], "s-", label="student slot F1")
        panel.axhline(teacher["intent_accuracy"], color="C0", linestyle="--", linewidth=0.8, label="teacher intent")
        if teacher.get("slot_f1") is not None:
            panel.axhline(teacher["slot_f1"], color="C1", linestyle="--", linewidth=0.8, label="teacher slot F1")
        panel.set_xticks(x, labels)
        panel.set_xlabel(field)
        panel.set_title(axis.replace("_", " "))
        panel.grid(alpha=0.3)
    panels[0][0].set_ylabel("test score")
    panels[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{entry['dataset']}: distillation ablations ({entry['epochs']} epochs per student)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def markdown_section(entries: dict[str, dict[str, Any]]) -> str:
    """The ``docs/results.md`` section for the ablation entries (one per dataset)."""
    lines = [SECTION_BEGIN, "## Distillation ablations", "",
             "Generated by `edge-pqrnn teacher ablate`: one setting varied around a centre configuration, "
             "every student trained for the same number of epochs with the same seed and scored as a float "
             "model on the test split. Sizes: "
             + "; ".join(f"{k} = bottleneck {v['bottleneck']}, state {v['state']}, {v['layers']} layer(s)"
                         for k, v in SIZES.items()) + ".", ""]
    for name, e in sorted(entries.items()):
        c = e["centre"]
        lines += [f"### {name}", "",
                  f"Centre: augment copies {c['augment_copies']}, temperature {c['kd_temperature']:g}, "
                  f"KD weight {c['kd_weight']:g}"
                  + (f" (slots {c['kd_slot_weight']:g})" if c.get("kd_slot_weight") is not None else "")
                  + f", size {c['size']}; {e['epochs']} epochs, seed {e['seed']}; "
                  f"teacher intent {e['teacher']['intent_accuracy']:.4f}, slot F1 "
                  f"{(e['teacher']['slot_f1'] or 0):.4f}. {e['runs']} distinct runs, "
                  f"{e['train_seconds_total'] / 60:.1f} min of student training in all.", "",
                  f"![ablations]({Path(e['plot']).name})" if e.get("plot") else "", "",
                  "| axis | value | intent acc | slot F1 | params | train texts | train time |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for axis, rows in e["axes"].items():
            field = AXES[axis][0]
            for r in rows:
                texts = (r["train_texts"] or 0) + (r["augmented_texts"] or 0)
                lines.append(f"| {axis} | {r[field]} | {r['intent_accuracy']:.4f} | "
                             f"{(r['slot_f1'] or 0):.4f} | {r['params']:,} | {texts:,} | "
                             f"{r['train_seconds'] / 60:.1f} min |")
        if e.get("notes"):
            lines += ["", str(e["notes"])]
        lines.append("")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def write_ablations(entry: dict[str, Any], docs_dir: str | Path = "docs", notes: str | None = None) -> list[Path]:
    """Plot, merge ``entry`` into ``docs/results.json`` (key ``<dataset>.ablations``) and
    rewrite the marked section of ``docs/results.md``; everything else is kept."""
    docs_dir = Path(docs_dir)
    docs_dir.mkdir(parents=True, exist_ok=True)
    plot_path = plot(entry, docs_dir / f"ablations_{entry['dataset'].replace(':', '_')}.png")
    entry = dict(entry, plot=plot_path.name, **({"notes": notes} if notes else {}))
    json_path, md_path = merge_results(docs_dir, entry["dataset"], "ablations", entry,
                                       markdown_section, SECTION_BEGIN, SECTION_END)
    return [json_path, md_path, plot_path]


__all__ = ["AXES", "SIZES", "Point", "ablate", "markdown_section", "plot", "sweep_points", "write_ablations"]
