"""The one build stage: a trained run -> artifact bytes (.tflite or .onnx), in memory.

quantize (quant) -> fuse the projection op (converters) -> metadata -> sealed bytes. No
validation and no file write: :mod:`edge_pqrnn.export` validates and writes, and
benchmark, gates, report and the test fixtures call the same functions, so every
artifact anyone measures is built the way ``edge-pqrnn export`` builds it.

Example:
    >>> from edge_pqrnn.run import load_run  # doctest: +SKIP
    >>> run = load_run("runs/atis")  # doctest: +SKIP
    >>> built = build_tflite(run, "atis", calibration_for(run, texts))  # doctest: +SKIP
    >>> len(built.artifact)  # doctest: +SKIP
    1069264
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Callable

from edge_pqrnn._version import __version__
from edge_pqrnn.format import FORMAT


@dataclasses.dataclass
class Built:
    """An artifact built in memory.

    Attributes:
        artifact: the .tflite (or .onnx) bytes, metadata attached and sealed.
        scheme: the quantization scheme (``int8``, ``float``...).
        body: the converted body (:class:`edge_pqrnn.quant.ptq.QuantizationResult`) of a
            .tflite; None for an .onnx.
        seconds: wall time per stage (``quantize``, ``fuse``; ``convert`` for ONNX).
    """

    artifact: bytes
    scheme: str
    body: Any = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def build_metadata(run: Any, dataset_name: str, scheme: str) -> dict[str, Any]:
    """What travels inside the artifact so an app needs nothing else."""
    return {
        "format": FORMAT,
        "toolkit_version": __version__,
        "projection": run.spec.to_dict(),
        "model_config": run.config.to_dict(),
        "intents": list(run.labels.intents),
        "tags": list(run.labels.tags),
        "slot_types": list(run.labels.slot_types),
        "dataset": dataset_name,
        "scheme": scheme,
    }


def calibration_for(run: Any, texts: Sequence[str], samples: int = 500, full_length: int = 50) -> list[str]:
    """Calibration texts for ``run``: ``samples`` random training texts plus ``full_length``
    texts of the run's full T (:func:`edge_pqrnn.quant.ptq.representative_texts`)."""
    from edge_pqrnn.quant.ptq import representative_texts

    return representative_texts(list(texts), run.spec, samples=samples, full_length=full_length)


def build_tflite(run: Any, dataset_name: str, calibration: Sequence[str], *, scheme: str = "int8",
                 keep_names: bool = False, portable_kernels: bool = False,
                 static_tokens: bool = False, batch_size: int | None = None, body: Any = None,
                 log: Callable[[str], None] = lambda _: None) -> Built:
    """Quantize a run's body and fuse the projection op: the .tflite ``export`` writes.

    Args:
        run: a loaded run (:func:`edge_pqrnn.run.load_run`).
        dataset_name: recorded in the metadata.
        calibration: representative texts (:func:`calibration_for`); unused for ``float``.
        scheme: one of :data:`edge_pqrnn.quant.ptq.SCHEMES`.
        keep_names: keep internal tensor names (bigger file, easier debugging).
        portable_kernels: matmuls and edge (de)quantization in the op library's C.
        static_tokens: keep the token axis at T (by default an int8 body computes only
            the rows the text has; see :func:`edge_pqrnn.converters.tflite_fuse.fuse`).
        batch_size: the body's fixed batch (None: dynamic).
        body: a body already converted from this run with this scheme (a
            :class:`~edge_pqrnn.quant.ptq.QuantizationResult`): fused again without
            converting (e.g. the same body at a static T).
        log: where progress lines go.

    Returns:
        A :class:`Built` with the sealed .tflite bytes and the converted body.

    Raises:
        ConfigError: an unknown scheme; ArtifactError: the body does not fit the spec.
    """
    from edge_pqrnn.converters.tflite_fuse import fuse
    from edge_pqrnn.quant.ptq import convert

    seconds = {}
    if body is None:
        start = time.perf_counter()
        log(f"converting ({scheme}, {len(calibration)} calibration texts)...")
        body = convert(run.model, run.spec, calibration, scheme=scheme, batch_size=batch_size)
        log(f"  body: {body.bytes:,} bytes, {sum(body.op_counts.values())} ops, float ops inside: {body.float_ops}")
        seconds["quantize"] = time.perf_counter() - start
    start = time.perf_counter()
    artifact = fuse(body.model, run.spec, build_metadata(run, dataset_name, scheme), keep_names=keep_names,
                    portable_kernels=portable_kernels, static_tokens=static_tokens)
    seconds["fuse"] = time.perf_counter() - start
    log(f"  fused artifact: {len(artifact):,} bytes")
    return Built(artifact, scheme, body, seconds)


def build_onnx(run: Any, dataset_name: str, calibration: Sequence[str] = (), *, int8: bool = False,
               opset: int | None = None, text_input: bool = True, static_tokens: bool = False,
               log: Callable[[str], None] = lambda _: None) -> Built:
    """Convert a run to ONNX (float, or int8 QDQ with ``int8=True``) with its metadata.

    Args:
        run: a loaded run.
        dataset_name: recorded in the metadata.
        calibration: representative texts (needed for ``int8``).
        int8: quantize with onnxruntime's static QDQ quantizer.
        opset: ONNX opset (default: the converter's).
        text_input: put the projection op in the graph (raw text in).
        static_tokens: keep the token axis at T, the recurrence unrolled over it. By
            default a raw-text graph computes only the rows of the batch's longest text
            (:func:`edge_pqrnn.converters.onnx_export.to_onnx` ``dynamic_tokens``); a
            features-input graph always keeps T (it holds no op of ours).
        log: where progress lines go.

    Returns:
        A :class:`Built` with the sealed .onnx bytes (``body`` None).
    """
    import onnx

    from edge_pqrnn.converters import onnx_export
    from edge_pqrnn.quant.onnx_qdq import quantize_int8

    seconds = {}
    start = time.perf_counter()
    opset = opset or onnx_export.OPSET
    dynamic = text_input and not static_tokens
    log(f"converting to ONNX (tf2onnx, opset {opset}, {'dynamic' if dynamic else 'static'} token axis)...")
    proto = onnx_export.to_onnx(run, opset=opset, dynamic_tokens=dynamic)
    seconds["convert"] = time.perf_counter() - start
    scheme = "float"
    if int8:
        start = time.perf_counter()
        log(f"quantizing (onnxruntime static QDQ int8, {len(calibration)} calibration texts)...")
        proto = onnx.load_from_string(quantize_int8(proto.SerializeToString(), run.spec, calibration))
        scheme = "int8"
        seconds["quantize"] = time.perf_counter() - start
    if text_input:
        proto = onnx_export.with_text_input(proto, run.spec)
    proto = onnx_export.with_metadata(proto, build_metadata(run, dataset_name, scheme))
    onnx.checker.check_model(proto)
    return Built(onnx_export.seal_onnx(proto), scheme, None, seconds)
