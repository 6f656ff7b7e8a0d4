"""In-process TFLite runtimes: ``litert`` (ai_edge_litert, the main standalone runtime)
and ``tflite`` (TensorFlow's own ``tf.lite.Interpreter``), each with the op library
loaded as a delegate. :func:`open_interpreter` is the checked way in (every failure one
line); :func:`interpreter` the bare one for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from edge_pqrnn.errors import ArtifactError, ConfigError, OpLibraryError, OpLibraryMissingError
from edge_pqrnn.format import SIGNATURE, TEXT_INPUT
from edge_pqrnn.projection.ops import op_library

IN_PROCESS = ("litert", "tflite")
_EXPORT_AGAIN = "export it again with `edge-pqrnn export`"


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


def run_signature(interp, texts: Sequence[str | bytes], signature: str = SIGNATURE) -> dict[str, np.ndarray]:
    """Run a batch of texts through a signature whose input is ``text``."""
    runner = interp.get_signature_runner(signature)
    batch = np.array([t.encode("utf-8", "surrogatepass") if isinstance(t, str) else bytes(t) for t in texts],
                     dtype=object)
    return {name: np.array(value) for name, value in runner(text=batch).items()}


def fixed_batch_runner(interp, batch_size: int, signature: str = SIGNATURE):
    """A callable ``run(texts) -> outputs`` for batches of exactly ``batch_size`` texts,
    as an app calls a model: inputs resized and tensors allocated once, then set, invoke,
    get per call. (The Python SignatureRunner resizes and re-allocates on every call,
    which costs more than the int8 model itself: 0.7 ms of 1.2 ms on the default ATIS
    artifact here.)"""
    runner = interp.get_signature_runner(signature)
    wrapper, subgraph = runner._interpreter_wrapper, runner._subgraph_index
    text_index = runner._inputs[TEXT_INPUT]
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


def open_interpreter(data: bytes, name: str, runtime: str = "litert", library: str | None = None,
                     num_threads: int = 1) -> Any:
    """An interpreter for .tflite bytes with the op delegate, every failure turned into one line.

    Args:
        data: the .tflite bytes (checked by the caller).
        name: the file's name for messages.
        runtime: one of :data:`IN_PROCESS`.
        library: the op library (default: :func:`op_library`).
        num_threads: CPU threads for the builtin kernels.

    Raises:
        ConfigError: unknown or uninstalled runtime.
        OpLibraryMissingError: the op library is missing or does not load as a delegate.
        ArtifactError: the runtime rejects the model.
    """
    if runtime == "onnxruntime":
        raise ConfigError(f"{name} is a .tflite, which runs in {' or '.join(IN_PROCESS)}, not onnxruntime: drop "
                          "--runtime, or run the .onnx from `edge-pqrnn export --format onnx` in onnxruntime")
    if runtime not in IN_PROCESS:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of {', '.join(IN_PROCESS)} "
                          "(tflite-runtime 2.14 runs only through `edge-pqrnn validate --runtime tflite-runtime`)")
    if library is None:
        try:
            library = op_library()
        except OpLibraryError as exc:
            overridden = "EDGE_PQRNN_OP_LIBRARY" in str(exc)
            hint = ": unset it or point it at a built libpqrnn_projection.so" if overridden else ""
            raise OpLibraryMissingError(f"cannot open {name}: {exc}{hint}") from exc
    elif not os.path.isfile(library):
        raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not exist; pass the path "
                                    "of libpqrnn_projection.so, or none to use the one built by `pip install`")
    # dlopen it first: a runtime's load_delegate on a bad file leaves a half-built
    # Delegate whose __del__ prints a traceback at exit.
    try:
        if not hasattr(ctypes.CDLL(library), "tflite_plugin_create_delegate"):
            raise OSError("it does not export tflite_plugin_create_delegate")
    except OSError as exc:
        raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not load as a TFLite "
                                    f"delegate ({exc}); rebuild it with `pip install -e .`") from exc
    try:
        return interpreter(data, runtime=runtime, num_threads=num_threads, library=library)
    except ImportError as exc:
        raise ConfigError(f"runtime {runtime!r} is not installed ({exc}); `pip install ai-edge-litert` for litert, "
                          "`pip install 'edge-pqrnn[train]'` for tflite") from exc
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Failed to load delegate"):  # load_delegate's own wording
            raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not load as a TFLite "
                                        f"delegate ({first}); rebuild it with `pip install -e .`") from exc
        raise ArtifactError(f"{name} is rejected by {runtime} ({first}): {_EXPORT_AGAIN}") from exc


class InterpreterPool:
    """Interpreters of one model, each used by one thread at a time.

    A TFLite interpreter is not thread-safe (its tensors, arena and the op's outputs are
    per interpreter), so a call takes an idle interpreter, or opens another one when all
    are busy (at most ``limit``; beyond that a call waits), and gives it back. Measured
    with tools/benchmark_threads.py (docs/security.md): one shared object runs as fast as
    one object per thread, and a lock would serialise every call.
    """

    def __init__(self, first: Any, open_another: Callable[[], Any], limit: int) -> None:
        self._idle = [first]
        self._open = open_another
        self._opened = 1
        self._limit = limit
        self._closed = False
        self._ready = threading.Condition()

    @property
    def opened(self) -> int:
        """How many interpreters this pool has opened (idle or busy)."""
        return self._opened

    @contextlib.contextmanager
    def take(self, name: str) -> Iterator[Any]:
        """An interpreter for this thread alone until the ``with`` block ends.

        Raises:
            ArtifactError: the artifact was closed.
        """
        with self._ready:
            while not self._closed and not self._idle and self._opened >= self._limit:
                self._ready.wait()
            if self._closed:
                raise ArtifactError(f"{name} was closed: load it again with Artifact.load()")
            interp = self._idle.pop() if self._idle else None
            if interp is None:
                self._opened += 1  # reserved now, opened outside the lock (it takes milliseconds)
        if interp is None:
            try:
                interp = self._open()
            except BaseException:
                with self._ready:
                    self._opened -= 1
                    self._ready.notify()
                raise
        try:
            yield interp
        finally:
            with self._ready:
                if not self._closed:
                    self._idle.append(interp)
                self._ready.notify()

    def close(self) -> None:
        """Drop the idle interpreters; busy ones are dropped when their call ends."""
        with self._ready:
            self._closed = True
            self._idle.clear()
            self._ready.notify_all()
