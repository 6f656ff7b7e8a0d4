"""Tiny trained runs and their int8 artifacts, built once per test process.

Used by tests/test_artifact.py, test_validate.py and test_inspect.py (each wraps
:func:`build` in a session fixture; the result is cached here, so the runs are trained
once however many modules ask). A template dataset with character-span slots gives a
model that really predicts intents and spans in a few seconds of training.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from edge_pqrnn.build import build_tflite, calibration_for
from edge_pqrnn.data import load_dataset
from edge_pqrnn.data.records import Dataset, Example
from edge_pqrnn.model import ModelConfig
from edge_pqrnn.projection import ProjectionSpec
from edge_pqrnn.run import load_run
from edge_pqrnn.train import TrainConfig, train

CITIES = ["boston", "denver", "new york", "san francisco", "dallas", "atlanta", "oakland", "pittsburgh"]
DAYS = ["monday", "tuesday", "friday", "sunday"]
#: A Python -c program that runs the artifact commands as a user would (own process).
CLI = ("import sys, click\nfrom edge_pqrnn.cli_artifact import COMMANDS\n"
       "click.Group('edge-pqrnn', commands={c.name: c for c in COMMANDS})(sys.argv[1:])\n")

TEMPLATES = {
    "flight": ["show me flights from {fromloc} to {toloc}", "i want to fly from {fromloc} to {toloc} on {day}",
               "flights to {toloc} please", "list flights leaving {fromloc} on {day}"],
    "airfare": ["how much is a ticket from {fromloc} to {toloc}", "what is the cheapest fare to {toloc}",
                "price of a {day} ticket to {toloc}", "fares from {fromloc} please"],
    "ground_service": ["ground transportation in {city}", "is there a taxi in {city} on {day}",
                       "rental cars at {city}", "how do i get downtown in {city}"],
}
FILLERS = {"fromloc": CITIES, "toloc": CITIES, "city": CITIES, "day": DAYS}

SPEC = ProjectionSpec(feature_size=64, max_tokens=16)
MODEL = ModelConfig(num_intents=1, num_tags=1, projection=SPEC, bottleneck=24, state=24, layers=1, dropout=0.0)


def examples(count: int, seed: int, templates: dict | None = None, fillers: dict | None = None) -> list[Example]:
    """Template utterances with ``(start, end, type)`` slot spans (default: this module's
    templates and fillers; test_train.py passes its own fillers)."""
    templates, fillers = templates or TEMPLATES, fillers or FILLERS
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        intent = sorted(templates)[int(rng.integers(len(templates)))]
        rest = templates[intent][int(rng.integers(len(templates[intent])))]
        text, slots = "", []
        while "{" in rest:
            before, _, tail = rest.partition("{")
            name, _, rest = tail.partition("}")
            text += before
            value = fillers[name][int(rng.integers(len(fillers[name])))]
            slots.append((len(text), len(text) + len(value), name))
            text += value
        out.append(Example(text + rest, intent, tuple(slots)))
    return out


def dataset(root: Path) -> Dataset:
    """240 train / 40 dev / 60 test template examples, written to ``root/templates.jsonl``
    and loaded from there, so the runs record a dataset name that loads again (as
    ``edge-pqrnn validate`` without ``--data`` needs)."""
    path = root / "templates.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for split, (count, seed) in {"train": (240, 0), "dev": (40, 1), "test": (60, 2)}.items():
            for ex in examples(count, seed):
                f.write(json.dumps({"text": ex.text, "intent": ex.intent, "slots": [list(s) for s in ex.slots],
                                    "split": split}) + "\n")
    return load_dataset(f"jsonl:{path}")


@dataclasses.dataclass(frozen=True)
class Built:
    """What the tests share.

    Attributes:
        run_dir: the reference run (trained 12 epochs, seed 0).
        other_run_dir: another run of the same task and labels (seed 1, 2 epochs): a
            wrong reference for the artifact.
        artifact: the int8 artifact of ``run_dir`` (dynamic batch).
        path: ``artifact`` written to a file.
        batch1_path: the same run exported with a fixed batch of 1.
        dataset: the dataset both runs were trained on.
    """

    run_dir: Path
    other_run_dir: Path
    artifact: bytes
    path: Path
    batch1_path: Path
    dataset: Dataset


_CACHE: dict[str, Built] = {}


def export_bytes(run_dir: Path, data: Dataset, batch_size: int | None = None) -> bytes:
    """Convert (int8, full-length calibration included) and fuse a run into an artifact."""
    run = load_run(run_dir)
    calibration = calibration_for(run, [ex.text for ex in data.train], samples=120, full_length=20)
    return build_tflite(run, data.name, calibration, batch_size=batch_size).artifact


def build(tmp_path_factory) -> Built:
    """Train both runs and export the artifacts once per process (about 20 s)."""
    if "built" not in _CACHE:
        root = tmp_path_factory.mktemp("artifact-fixtures")
        data = dataset(root)
        run_dir, other = root / "run", root / "other-run"
        train(data, MODEL, TrainConfig(epochs=12, batch_size=16, learning_rate=1e-2, patience=12, seed=0), run_dir,
              progress=False)
        train(data, MODEL, TrainConfig(epochs=2, batch_size=16, learning_rate=1e-2, seed=1), other, progress=False)
        artifact = export_bytes(run_dir, data)
        path = root / "tiny.int8.tflite"
        path.write_bytes(artifact)
        batch1 = root / "tiny.batch1.int8.tflite"
        batch1.write_bytes(export_bytes(run_dir, data, batch_size=1))
        _CACHE["built"] = Built(run_dir, other, artifact, path, batch1, data)
    return _CACHE["built"]
