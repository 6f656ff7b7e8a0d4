"""onnxruntime: a session for an edge-pqrnn .onnx, with the op library registered for a
raw-text graph. Imports onnx and onnxruntime only (tf2onnx would pull in TensorFlow,
seconds of start-up that running a model must not pay).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_pqrnn.errors import ConfigError, OpLibraryError, OpLibraryMissingError

#: The runtime's row name in validation reports.
RUNTIME = "onnxruntime"


def require_onnxruntime() -> None:
    """Import what reading and running an .onnx needs.

    Raises:
        ConfigError: onnx or onnxruntime is missing (the message says what to install).
    """
    import importlib

    modules = ("onnx", "onnxruntime")
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"running an .onnx needs {', '.join(modules)} ({exc}): `pip install {' '.join(modules)}`") from exc


def text_tensor(texts: Sequence[str | bytes]) -> np.ndarray:
    """A batch as the string tensor onnxruntime's Python API passes intact.

    onnxruntime turns a ``bytes`` element into its ``str()`` (``"b'...'"``), cuts ``S``
    arrays at the first NUL, and rejects a str with lone surrogates. Each text is
    therefore decoded first as the op decodes bytes (invalid UTF-8 and lone surrogates
    dropped, :func:`edge_pqrnn.projection.reference.decode`): the op then sees the same
    characters as from the raw bytes, and the outputs equal the .tflite's.

    Args:
        texts: str or UTF-8 bytes.

    Returns:
        A 1-D object array of str.
    """
    from edge_pqrnn.projection.reference import decode

    array = np.empty(len(texts), dtype=object)
    array[:] = [decode(t) for t in texts]
    return array


def session_options(num_threads: int = 1) -> Any:
    """onnxruntime SessionOptions as edge-pqrnn runs a model: ``num_threads`` intra-op threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def register_op_library(options: Any, name: str = "the model", library: str | None = None) -> str:
    """Register the projection op library on onnxruntime SessionOptions.

    Args:
        options: an ``onnxruntime.SessionOptions``.
        name: the model's name, for messages.
        library: the library path (default: :func:`edge_pqrnn.op_library`).

    Returns:
        The library's path.

    Raises:
        OpLibraryMissingError: the library is missing or onnxruntime cannot register it.

    Example:
        >>> options = onnxruntime.SessionOptions(); register_op_library(options)  # doctest: +SKIP
    """
    from edge_pqrnn.projection.ops import op_library

    if library is None:
        try:
            library = op_library()
        except OpLibraryError as exc:
            raise OpLibraryMissingError(f"cannot open {name}: {exc}") from exc
    elif not os.path.isfile(library):
        raise OpLibraryMissingError(f"cannot open {name}: the op library {library} does not exist; pass the path "
                                    "of libpqrnn_projection.so, or none to use the one built by `pip install`")
    try:
        options.register_custom_ops_library(library)
    except Exception as exc:  # onnxruntime's Fail / RuntimeException
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpLibraryMissingError(f"cannot open {name}: onnxruntime cannot register the op library {library} "
                                    f"({first[:160]}); rebuild it with `pip install -e .`") from exc
    return library
