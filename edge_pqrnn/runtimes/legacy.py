"""Runtimes that cannot live in this process run in another Python through
``runtimes/_worker.py``: tflite-runtime 2.14 (it needs numpy < 2) in a cached venv, and
(through :mod:`edge_pqrnn.runtimes.aarch64`) the emulated aarch64 Pythons.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Callable

import numpy as np

from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.projection.ops import op_library

WORKER = pathlib.Path(__file__).resolve().parent / "_worker.py"
#: The row name of tflite-runtime in validation reports.
LEGACY_RUNTIME = "tflite-runtime"


def run_in_subprocess(python: str, runtime_module: str, model_path: str, texts: Sequence[str | bytes],
                      library: str | None = None, env: dict | None = None, timeout: float = 600,
                      command_prefix: Sequence[str] = (), xnnpack: bool = True) -> dict[str, np.ndarray]:
    """Run texts through a model in another Python (a venv, or an emulated aarch64 one).

    Args:
        python: the interpreter to run ``runtimes/_worker.py`` with.
        runtime_module: ``tflite_runtime.interpreter``, ``ai_edge_litert.interpreter`` or
            ``tensorflow.lite`` as importable in that Python.
        model_path: the .tflite file.
        texts: the batch.
        command_prefix: e.g. ``["qemu-aarch64-static", "-L", rootfs]``.
        xnnpack: keep the runtime's default XNNPACK delegate (False: builtin kernels).

    Raises:
        EdgePqrnnError: the worker failed; the message holds its last error line.
    """
    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-run-") as tmp:
        texts_file = os.path.join(tmp, "texts.json")
        out_file = os.path.join(tmp, "out.npz")
        raw = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else bytes(t) for t in texts]
        with open(texts_file, "w") as f:
            json.dump([base64.b64encode(t).decode("ascii") for t in raw], f)
        cmd = [*command_prefix, python, str(WORKER), "--runtime-module", runtime_module, "--model", model_path,
               "--library", library or op_library(), "--texts", texts_file, "--out", out_file]
        if not xnnpack:
            cmd.append("--no-xnnpack")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            raise EdgePqrnnError(f"{runtime_module} worker failed (exit {proc.returncode}): "
                                 f"{lines[-1] if lines else 'no output'}")
        with np.load(out_file) as data:
            return {k: data[k] for k in data.files}


def default_python() -> str:
    return sys.executable


def cache_dir() -> pathlib.Path:
    """Where edge-pqrnn keeps prepared runtimes (``EDGE_PQRNN_CACHE`` overrides)."""
    return pathlib.Path(os.environ.get("EDGE_PQRNN_CACHE", pathlib.Path.home() / ".cache" / "edge-pqrnn"))


LEGACY_REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy<2")


def legacy_tflite_runtime_python(log=print) -> str:
    """The Python of a cached venv holding tflite-runtime 2.14 (numpy < 2), built once.

    tflite-runtime's last release does not import beside numpy 2, so it lives in its own
    small venv (runtime and numpy only, ~20 MB of downloads).

    Raises:
        EdgePqrnnError: the venv could not be built (the message holds pip's last line).
    """
    venv = cache_dir() / "venvs" / "tflite-runtime-2.14"
    python = venv / "bin" / "python"
    done = venv / ".edge-pqrnn-ready"
    if done.is_file() and python.is_file():
        return str(python)
    log(f"building the tflite-runtime 2.14 venv in {venv} (once)...")
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *LEGACY_REQUIREMENTS]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise EdgePqrnnError(f"cannot build the tflite-runtime venv ({' '.join(cmd[:4])}...): "
                                 f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    done.write_text(" ".join(LEGACY_REQUIREMENTS) + "\n")
    return str(python)


def run_legacy(data: bytes, texts: Sequence[str | bytes], log: Callable[[str], None] = print) -> tuple[dict, str]:
    """Run .tflite bytes in tflite-runtime 2.14 (its venv is built once).

    Returns:
        ``(outputs by name, tflite-runtime's version)``.
    """
    python = legacy_tflite_runtime_python(log=log)
    return run_bytes(data, lambda path: run_in_subprocess(python, "tflite_runtime.interpreter", path, texts))


def run_bytes(data: bytes, run: Callable[[str], dict]) -> tuple[dict, str]:
    """``run(path)`` on .tflite bytes written to a temp file (a worker in another Python
    opens the file, not bytes), with the worker's ``__version__`` split off.

    Returns:
        ``(outputs by name, the runtime's version)``.
    """
    with tempfile.TemporaryDirectory(prefix="edge-pqrnn-run-") as tmp:
        path = os.path.join(tmp, "artifact.tflite")
        pathlib.Path(path).write_bytes(data)
        out = run(path)
    version = str(out.pop("__version__", ""))
    return out, version
