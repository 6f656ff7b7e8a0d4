"""The run directory: what :func:`edge_pqrnn.train.train` writes and every stage reads.

A run directory holds::

    config.json        the ModelConfig (projection spec included)
    labels.json        intents, tag vocabulary, slot types
    model.weights.h5   the Keras weights (best dev epoch)
    history.json       one entry per epoch: losses, learning rate, dev metrics, seconds
    metrics.json       dev (and test) metrics, best epoch, time, parameter count

A run is written in a hidden temporary directory next to the target (:func:`staging`),
which is renamed into place only when everything is written; ``metrics.json`` is
written last (:func:`save_run`), so an interrupted run never leaves a directory that
looks finished.

Example:
    >>> run = load_run("runs/atis")  # doctest: +SKIP
    >>> read_metrics("runs/atis")["best_epoch"]  # doctest: +SKIP
    9
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge_pqrnn._io import MAX_RUN_FILE_BYTES, MAX_WEIGHTS_BYTES, check_file, destination_mode, read_file
from edge_pqrnn.errors import ArtifactError, ConfigError
from edge_pqrnn.evaluate import Labels, Logits
from edge_pqrnn.model import INTENT_OUTPUT, SLOT_OUTPUT, ModelConfig, build_model
from edge_pqrnn.projection import ProjectionSpec, project

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
WEIGHTS_FILE = "model.weights.h5"
HISTORY_FILE = "history.json"
#: Written last: its presence marks a finished run.
METRICS_FILE = "metrics.json"


@dataclasses.dataclass
class Run:
    """A finished run loaded by :func:`load_run`; also a predictor for ``evaluate()``.

    Attributes:
        path: the run directory.
        config: the model configuration.
        labels: the label vocabularies.
        model: the Keras model with the run's weights.
        metrics: the content of ``metrics.json``.
    """

    path: Path
    config: ModelConfig
    labels: Labels
    model: keras.Model
    metrics: dict[str, Any]

    @property
    def spec(self) -> ProjectionSpec:
        """The projection spec the model was trained with."""
        return self.config.projection

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> Logits:
        """Float logits for raw texts (numpy projection -> Keras model).

        Args:
            texts: the utterances.
            batch_size: texts per model call.

        Returns:
            Intent logits [N, num_intents] and slot logits [N, T, num_tags] (or None).
        """
        intents, slots = [], []
        for i in range(0, len(texts), batch_size):
            p = project(list(texts[i : i + batch_size]), self.spec)
            out = self.model(model_inputs(p.features, p.mask, p.pool_weights), training=False)
            intents.append(np.asarray(out[INTENT_OUTPUT]))
            if SLOT_OUTPUT in out:
                slots.append(np.asarray(out[SLOT_OUTPUT]))
        return concat_logits(intents, slots, self.config)


def model_inputs(features: np.ndarray, mask: np.ndarray, pool_weights: np.ndarray) -> dict[str, np.ndarray]:
    """The Keras model's input dict from a projection's arrays."""
    return {"features": features, "mask": mask, "pool_weights": pool_weights}


def concat_logits(intents: list[np.ndarray], slots: list[np.ndarray], config: ModelConfig) -> Logits:
    """Batches of model outputs joined into one :class:`Logits` (empty-safe)."""
    T = config.projection.max_tokens
    intent = np.concatenate(intents) if intents else np.zeros((0, config.num_intents), np.float32)
    if not config.slot_head:
        return Logits(intent, None)
    slot = np.concatenate(slots) if slots else np.zeros((0, T, config.num_tags), np.float32)
    return Logits(intent, slot)


def write_json(path: Path, data: Any) -> None:
    """Write one of the run's JSON files (indented, UTF-8, trailing newline)."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path, what: str) -> Any:
    """Read one of the run's JSON files.

    Args:
        path: the file.
        what: why it matters, appended to the message when the file is missing.

    Raises:
        ArtifactError: the file is missing or not JSON.
    """
    if not path.exists() and not path.is_symlink():
        raise ArtifactError(f"{path} is missing: {what}")
    data = read_file(path, limit=MAX_RUN_FILE_BYTES, error=ArtifactError, what="a run file", fix=what)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{path} is not readable JSON ({exc}); re-run training") from exc


def is_finished(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a finished run (its ``metrics.json`` exists)."""
    return (Path(run_dir) / METRICS_FILE).is_file()


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The content of a finished run's ``metrics.json``.

    Raises:
        ArtifactError: the run did not finish, or the file is not JSON.
    """
    return read_json(Path(run_dir) / METRICS_FILE,
                     "the run did not finish (interrupted or still training); re-run training")


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse to train into ``out_dir`` when that would destroy something.

    Raises:
        ArtifactError: ``out_dir`` is a file, a finished run (without ``overwrite``) or
            a non-empty directory (without ``overwrite``).
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ArtifactError(f"{out_dir} exists and is not a directory; choose another output directory")
    if (out_dir / METRICS_FILE).exists() and not overwrite:
        raise ArtifactError(
            f"{out_dir} already holds a finished run; pass overwrite=True (CLI: --overwrite) to "
            "replace it, or choose another output directory"
        )
    if any(out_dir.iterdir()) and not overwrite:
        raise ArtifactError(
            f"{out_dir} exists, is not empty and is not a finished run; remove it, pass "
            "overwrite=True (CLI: --overwrite) or choose another output directory"
        )


@contextlib.contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A hidden temporary directory next to ``out_dir``, moved into place on success.

    On any exception (Ctrl-C included) the temporary directory is removed and an old
    run at ``out_dir`` is left untouched.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield tmp_dir
        _publish(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _publish(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished temporary run into place, replacing any old one (whose mode it
    takes; a new run gets 0777 minus the umask, not the temp folder's 0700)."""
    os.chmod(tmp_dir, destination_mode(out_dir, directory=True))
    old = None
    if out_dir.exists():
        # rename() cannot replace a non-empty directory: move the old one aside first.
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        out_dir.rename(old / "run")
    tmp_dir.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_header(run_dir: Path, config: ModelConfig, labels: Labels) -> None:
    """Write ``config.json`` and ``labels.json`` (before training starts)."""
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_json(run_dir / LABELS_FILE, labels.to_dict())


def save_run(run_dir: Path, model: keras.Model, history: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    """Write the weights, ``history.json`` and, last, ``metrics.json`` (marks the run finished)."""
    model.save_weights(run_dir / WEIGHTS_FILE)
    write_json(run_dir / HISTORY_FILE, history)
    write_json(run_dir / METRICS_FILE, metrics)


def load_run(run_dir: str | Path) -> Run:
    """Load a finished run directory written by :func:`edge_pqrnn.train.train`.

    Args:
        run_dir: the run directory.

    Returns:
        A :class:`Run` with the configuration, labels, metrics and Keras model.

    Raises:
        ArtifactError: the directory does not exist, is unfinished (no metrics.json),
            or a file is missing, corrupt or does not match the configuration.

    Example:
        >>> run = load_run("runs/atis")  # doctest: +SKIP
        >>> run.labels.intents[run.predict(["flights to boston"]).intent.argmax()]  # doctest: +SKIP
        'atis_flight'
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist; train one with edge_pqrnn.train.train()")
    metrics = read_metrics(run_dir)
    try:
        config = ModelConfig.from_dict(read_json(run_dir / CONFIG_FILE, "not a run directory written by train()"))
        labels = Labels.from_dict(read_json(run_dir / LABELS_FILE, "not a run directory written by train()"))
    except ConfigError as exc:
        raise ArtifactError(f"{run_dir}: invalid config or labels ({exc}); re-run training") from exc
    if len(labels.intents) != config.num_intents or (config.slot_head and len(labels.tags) != config.num_tags):
        raise ArtifactError(
            f"{run_dir}: labels.json ({len(labels.intents)} intents, {len(labels.tags)} tags) does not match "
            f"config.json ({config.num_intents} intents, {config.num_tags} tags); re-run training"
        )
    weights = run_dir / WEIGHTS_FILE
    if not weights.exists() and not weights.is_symlink():
        raise ArtifactError(f"{weights} is missing; re-run training")
    check_file(weights, limit=MAX_WEIGHTS_BYTES, error=ArtifactError, what="model weights", fix="re-run training")
    model = build_model(config)
    try:
        model.load_weights(weights)
    except Exception as exc:  # h5py/keras raise several types for corrupt or mismatched files
        raise ArtifactError(f"{weights} cannot be loaded into the configured model ({exc}); re-run training") from exc
    return Run(run_dir, config, labels, model, metrics)
