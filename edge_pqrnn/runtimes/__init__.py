"""One way to open a .tflite with the projection op in each TFLite runtime.

In-process runtimes: ``litert`` (ai_edge_litert, the main standalone runtime) and
``tflite`` (TensorFlow's own ``tf.lite.Interpreter``). Runtimes that cannot live in this
process (tflite-runtime 2.14 needs numpy < 2) run in their own interpreter through
``edge_pqrnn/_runtime_worker.py`` (see :func:`run_in_subprocess`).
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

import numpy as np

from edge_pqrnn.errors import ConfigError, EdgePqrnnError
from edge_pqrnn.projection.ops import op_library

IN_PROCESS = ("litert", "tflite")
WORKER = pathlib.Path(__file__).resolve().parent / "_runtime_worker.py"


def interpreter(model: bytes | str | os.PathLike, runtime: str = "litert", num_threads: int = 1,
                library: str | None = None, xnnpack: bool = True):
    """An interpreter for ``model`` with the projection op loaded as a delegate.

    Args:
        model: .tflite bytes or a path.
        runtime: ``"litert"`` (ai_edge_litert) or ``"tflite"`` (tf.lite).
        num_threads: CPU threads for the builtin kernels.
        library: op library path (default: :func:`op_library`).
        xnnpack: keep the runtime's default XNNPACK delegate (False: plain builtin
            kernels, for measuring what XNNPACK brings).

    Raises:
        ConfigError: unknown runtime.
    """
    if runtime == "litert":
        from ai_edge_litert import interpreter as mod

        Interpreter, load_delegate, resolvers = mod.Interpreter, mod.load_delegate, mod.OpResolverType
    elif runtime == "tflite":
        import tensorflow as tf

        Interpreter, load_delegate = tf.lite.Interpreter, tf.lite.experimental.load_delegate
        resolvers = tf.lite.experimental.OpResolverType
    else:
        raise ConfigError(f"unknown in-process runtime {runtime!r}; choose one of {', '.join(IN_PROCESS)}")
    delegate = load_delegate(library or op_library())
    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": os.fspath(model)}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(**kwargs, experimental_delegates=[delegate], num_threads=num_threads)


def run_signature(interp, texts: Sequence[str | bytes], signature: str = "serving_default") -> dict[str, np.ndarray]:
    """Run a batch of texts through a signature whose input is ``text``."""
    runner = interp.get_signature_runner(signature)
    batch = np.array([t.encode("utf-8", "surrogatepass") if isinstance(t, str) else bytes(t) for t in texts],
                     dtype=object)
    return {name: np.array(value) for name, value in runner(text=batch).items()}


def fixed_batch_runner(interp, batch_size: int, signature: str = "serving_default"):
    """A callable ``run(texts) -> outputs`` for batches of exactly ``batch_size`` texts,
    as an app calls a model: inputs resized and tensors allocated once, then set, invoke,
    get per call. (The Python SignatureRunner resizes and re-allocates on every call,
    which costs more than the int8 model itself: 0.7 ms of 1.2 ms on the default ATIS
    artifact here.)"""
    runner = interp.get_signature_runner(signature)
    wrapper, subgraph = runner._interpreter_wrapper, runner._subgraph_index
    text_index = runner._inputs["text"]
    outputs = list(runner._outputs)
    wrapper.ResizeInputTensor(text_index, np.array([batch_size], np.int32), False, subgraph)
    wrapper.AllocateTensors(subgraph)

    def run(batch: np.ndarray, _keep=interp) -> dict[str, np.ndarray]:
        # _keep: the Interpreter owns the op delegate; if it were collected while the
        # wrapper lives on, the delegate would be freed under the running graph.
        wrapper.SetTensor(text_index, batch, subgraph)
        wrapper.Invoke(subgraph)
        return {name: wrapper.GetTensor(index, subgraph) for name, index in outputs}

    return run


def run_in_subprocess(python: str, runtime_module: str, model_path: str, texts: Sequence[str | bytes],
                      library: str | None = None, env: dict | None = None, timeout: float = 600,
                      command_prefix: Sequence[str] = (), xnnpack: bool = True) -> dict[str, np.ndarray]:
    """Run texts through a model in another Python (a venv, or an emulated aarch64 one).

    Args:
        python: the interpreter to run ``_runtime_worker.py`` with.
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
