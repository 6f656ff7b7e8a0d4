"""The native projection op: where its library is, a direct ctypes binding, and a
.tflite that holds only the op (for tests and for checking a runtime)."""

from __future__ import annotations

import ctypes
import functools
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from edge_pqrnn.errors import ConfigError, OpLibraryError
from edge_pqrnn.format import (DYNAMIC_TOKENS_OPTION, PROJECTION_OP, PROJECTION_OUTPUTS as OUTPUT_NAMES, TEXT_INPUT,
                               model_bytes, schema, signature_def)
from edge_pqrnn.projection.spec import ProjectionSpec

LIBRARY_NAME = "libpqrnn_projection.so"
_HERE = pathlib.Path(__file__).resolve().parent


def op_library() -> str:
    """Path of the op library (an op-provider delegate for ``load_delegate``).

    ``EDGE_PQRNN_OP_LIBRARY`` overrides the location (e.g. an aarch64 build).

    Returns:
        The absolute path of ``libpqrnn_projection.so``.

    Raises:
        OpLibraryError: the library was not built.

    Example:
        >>> import tensorflow as tf
        >>> delegate = tf.lite.experimental.load_delegate(op_library())  # doctest: +SKIP
    """
    override = os.environ.get("EDGE_PQRNN_OP_LIBRARY")
    if override:
        if not os.path.isfile(override):
            raise OpLibraryError(f"EDGE_PQRNN_OP_LIBRARY points to {override}, which does not exist")
        return override
    path = _HERE / LIBRARY_NAME
    if not path.is_file():
        raise OpLibraryError(
            f"the projection op library {path} is missing: it is built by `pip install .` "
            "(or `pip install -e .` in a checkout; needs a C compiler such as gcc)"
        )
    return str(path)


class _Options(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in
                ("feature_size", "max_tokens", "char_mode", "add_bos", "add_eos", "lowercase")]


@functools.lru_cache(maxsize=None)
def _library(path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise OpLibraryError(f"cannot load the projection op library {path}: {exc}") from exc
    lib.PQRNN_ParseOptions.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Options), ctypes.c_char_p]
    lib.PQRNN_ParseOptions.restype = ctypes.c_int
    lib.PQRNN_ProjectText.argtypes = [ctypes.POINTER(_Options), ctypes.c_char_p, ctypes.c_size_t] + [
        np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")] * 3
    lib.PQRNN_ProjectText.restype = ctypes.c_int
    return lib


def op_options_bytes(spec: ProjectionSpec, dynamic_tokens: bool = False) -> bytes:
    """The op's custom options: a flexbuffer map of ``spec.op_options()``, plus
    ``dynamic_tokens: true`` when the op is to size its outputs to the longest text of the
    batch (rows up to T) instead of T."""
    from flatbuffers import flexbuffers

    options = spec.op_options()
    if dynamic_tokens:
        options[DYNAMIC_TOKENS_OPTION] = True
    return bytes(flexbuffers.Dumps(options))


def parse_options_native(options: bytes, library: str | None = None) -> dict[str, int]:
    """Parse custom options with the op's own C parser (what the op would accept).

    Raises:
        ConfigError: the op rejects the options; the message is the op's.
    """
    lib = _library(library or op_library())
    parsed = _Options()
    error = ctypes.create_string_buffer(256)
    if lib.PQRNN_ParseOptions(options, len(options), ctypes.byref(parsed), error) != 0:
        raise ConfigError(error.value.decode("utf-8", "replace"))
    return {name: getattr(parsed, name) for name, _ in _Options._fields_}


def project_native(
    texts: Sequence[str | bytes], spec: ProjectionSpec, library: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the C projection directly (no TFLite): features, mask, pool_weights, num_tokens."""
    lib = _library(library or op_library())
    options = _Options(spec.feature_size, spec.max_tokens, int(spec.mode == "char"),
                       int(spec.add_bos), int(spec.add_eos), int(spec.lowercase))
    B, T, F = len(texts), spec.max_tokens, spec.feature_size
    features = np.empty((B, T, F), np.float32)
    mask = np.empty((B, T), np.float32)
    pool = np.empty((B, T), np.float32)
    counts = np.empty((B,), np.int32)
    for b, text in enumerate(texts):
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
        counts[b] = lib.PQRNN_ProjectText(ctypes.byref(options), data, len(data), features[b], mask[b], pool[b])
    return features, mask, pool, counts


def projection_model(spec: ProjectionSpec, custom_options: bytes | None = None) -> bytes:
    """A .tflite holding only the projection op: ``text`` STRING [B] -> the 4 outputs.

    Args:
        spec: the projection parameters written as the op's options.
        custom_options: raw options to write instead (for testing the op's validation).

    Returns:
        The flatbuffer bytes, with a ``serving_default`` signature.
    """
    s = schema()
    T, F = spec.max_tokens, spec.feature_size

    def tensor(name: str, ttype: int, shape: list[int], signature: list[int]) -> object:
        t = s.TensorT()
        t.name, t.type, t.shape, t.shapeSignature, t.buffer = name, ttype, shape, signature, 0
        return t

    sub = s.SubGraphT()
    sub.name = "main"
    sub.tensors = [
        tensor("text", s.TensorType.STRING, [1], [-1]),
        tensor("features", s.TensorType.FLOAT32, [1, T, F], [-1, T, F]),
        tensor("mask", s.TensorType.FLOAT32, [1, T], [-1, T]),
        tensor("pool_weights", s.TensorType.FLOAT32, [1, T], [-1, T]),
        tensor("num_tokens", s.TensorType.INT32, [1], [-1]),
    ]
    sub.inputs, sub.outputs = [0], [1, 2, 3, 4]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1, 2, 3, 4]
    op.customOptions = list(custom_options if custom_options is not None else op_options_bytes(spec))
    op.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
    sub.operators = [op]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode, code.version = PROJECTION_OP, 1
    model = s.ModelT()
    model.version, model.description = 3, "edge-pqrnn projection"
    model.operatorCodes, model.subgraphs, model.buffers = [code], [sub], [s.BufferT()]
    model.signatureDefs = [signature_def([(TEXT_INPUT, 0)], [(name, i + 1) for i, name in enumerate(OUTPUT_NAMES)])]
    return model_bytes(model)
