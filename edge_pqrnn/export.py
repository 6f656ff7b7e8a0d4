"""Run directory -> one validated int8 .tflite that takes raw text.

convert (quant) -> fuse the projection op + metadata (converters) -> validate against the
float reference -> atomic write. A failed check raises and leaves any previous artifact
at the destination untouched.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from edge_pqrnn._io import in_scratch_tempdir
from edge_pqrnn.errors import AgreementError, ArtifactError, ConfigError


@dataclasses.dataclass
class ExportResult:
    """What :func:`export` produced.

    Attributes:
        path: where the artifact was written (None when ``out`` was None).
        artifact: the .tflite bytes.
        quantization: the body's conversion result (op and tensor type counts).
        validation: the validation report (None when skipped).
        seconds: wall time per stage.
    """

    path: Path | None
    artifact: bytes
    quantization: Any
    validation: Any
    seconds: dict[str, float]


def load_run_and_dataset(run_dir: str | Path, data: str | None = None):
    """A finished run and the dataset it was trained on (or ``data``).

    Returns:
        ``(run, dataset_name, dataset)``.

    Raises:
        ArtifactError: the run is missing/incomplete, or records no dataset and ``data``
            is None.
    """
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.run import load_run

    run = load_run(run_dir)
    dataset_name = data or run.metrics.get("dataset")
    if not dataset_name:
        raise ArtifactError(f"{run_dir}: the run does not record its dataset; pass --data NAME")
    return run, dataset_name, load_dataset(dataset_name)


def validate_or_refuse(artifact: Any, run_dir: str | Path, examples: Any, out: str | Path | None,
                       log: Callable[[str], None], hint: str, **options: Any) -> Any:
    """Validate an export before it is written; log one line per check.

    Returns:
        The validation report (it passed).

    Raises:
        AgreementError: a check failed; the message says nothing was written and ``hint``;
            the report is attached as ``.report``.
    """
    from edge_pqrnn.validate import validate

    report = validate(artifact, run_dir, examples=examples, **options)
    for line in report.lines():
        log(line)
    if not report.passed:
        error = AgreementError(
            "validation failed, nothing was written"
            + (f" ({out} is unchanged)" if out and Path(out).exists() else "") + f"; {hint}")
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _check_options(format: str, scheme: str, int8: bool, portable_kernels: bool) -> None:
    """Refuse option combinations that do not apply, before any slow work."""
    if format not in ("tflite", "onnx"):
        raise ConfigError(f"unknown format {format!r}; choose tflite or onnx (--format)")
    if format == "onnx" and portable_kernels:
        raise ConfigError("--portable-kernels is for .tflite artifacts (it replaces TFLite builtin ops)")
    if format == "tflite" and int8:
        raise ConfigError("int8=True (--int8) is for --format onnx; a .tflite takes --scheme int8 (the default)")
    if portable_kernels and scheme not in ("int8", "int8-per-tensor"):
        raise ConfigError(f"portable_kernels (--portable-kernels) replaces int8 matmuls; --scheme {scheme} has none "
                          "to replace: use --scheme int8 or int8-per-tensor")


@in_scratch_tempdir
def export(run_dir: str | Path, out: str | Path | None, *, data: str | None = None, scheme: str = "int8",
           check: bool = True, runtimes: tuple[str, ...] = ("litert", "tflite"), keep_names: bool = False,
           calibration_samples: int = 500, thresholds: Any = None,
           log: Callable[[str], None] = print, format: str = "tflite", int8: bool = False,
           portable_kernels: bool = False) -> Any:
    """Export a trained run as one fused, quantized, validated .tflite.

    Args:
        run_dir: a finished run directory (``edge-pqrnn train``).
        out: destination path (written atomically, only if every check passes), or None.
        data: dataset spec for calibration and validation (default: the run's own).
        scheme: quantization scheme (see :data:`edge_pqrnn.quant.SCHEMES`).
        check: validate against the float reference before writing.
        runtimes: runtimes the validation runs the artifact in.
        keep_names: keep internal tensor names (bigger file, easier debugging).
        calibration_samples: random training texts for calibration (plus 50 full-length).
        thresholds: :class:`edge_pqrnn.validate.Thresholds` (default: its defaults).
        log: where progress lines go.
        format: ``"tflite"`` (this function) or ``"onnx"``
            (:func:`export_onnx`, which ignores
            ``scheme``, ``runtimes`` and ``keep_names``).
        int8: ONNX only: int8 QDQ instead of float.
        portable_kernels: replace every int8 FULLY_CONNECTED and CONV_2D with the op
            library's ``EdgePqrnnIntMatMul`` (one integer rounding rule), and the body's
            QUANTIZE / DEQUANTIZE with ``EdgePqrnnQuantize`` / ``EdgePqrnnDequantize``:
            bit-exact across ISAs in every runtime, tflite-runtime 2.14 included, at ~5x
            the default's latency (portable C instead of XNNPACK; docs/matrix.md).
            Recorded in the metadata.

    Returns:
        An :class:`ExportResult` (an ``OnnxExportResult`` for ONNX).

    Raises:
        ArtifactError: the run directory is missing or incomplete.
        AgreementError: a validation check failed; nothing was written. The report is
            attached as ``.report``.
    """
    _check_options(format, scheme, int8, portable_kernels)
    if format == "onnx":
        return export_onnx(run_dir, out, data=data, int8=int8, check=check, thresholds=thresholds,
                           calibration_samples=calibration_samples, log=log)
    from edge_pqrnn.build import build_tflite, calibration_for

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    run, dataset_name, dataset = load_run_and_dataset(run_dir, data)
    seconds["load"] = time.perf_counter() - start

    texts = [ex.text for ex in dataset.train]
    built = build_tflite(run, dataset_name, calibration_for(run, texts, calibration_samples), scheme=scheme,
                         keep_names=keep_names, portable_kernels=portable_kernels, log=log)
    seconds.update(built.seconds)
    artifact, body = built.artifact, built.body

    report = None
    if check:
        start = time.perf_counter()
        report = validate_or_refuse(
            artifact, run_dir, dataset.test, out, log,
            hint="try --scheme int8-per-tensor, more calibration (--calibration-samples), or retrain",
            runtimes=runtimes, thresholds=thresholds)
        seconds["validate"] = time.perf_counter() - start
    path = None
    if out is not None:
        from edge_pqrnn._io import atomic_write_bytes

        path = atomic_write_bytes(out, artifact)
    return ExportResult(path, artifact, body, report, seconds)


@dataclasses.dataclass
class OnnxExportResult:
    """What :func:`export_onnx` produced.

    Attributes:
        path: where the .onnx was written (None when ``out`` was None).
        artifact: the .onnx bytes.
        scheme: ``"float"`` or ``"int8"`` (QDQ).
        op_counts: node count per op type.
        validation: the validation report (None when skipped).
        seconds: wall time per stage.
    """

    path: Path | None
    artifact: bytes
    scheme: str
    op_counts: dict[str, int]
    validation: Any
    seconds: dict[str, float]


@in_scratch_tempdir
def export_onnx(run_dir: str | Path, out: str | Path | None, *, data: str | None = None, int8: bool = False,
                check: bool = True, calibration_samples: int = 500, thresholds: Any = None, opset: int | None = None,
                text_input: bool = True, static_tokens: bool = False,
                log: Callable[[str], None] = print) -> OnnxExportResult:
    """Export a trained run as a validated .onnx (float, or int8 QDQ with ``int8=True``)
    that takes raw text (the projection op inside the graph).

    Args:
        run_dir: a finished run directory.
        out: destination path (written atomically, only if every check passes), or None.
        data: dataset for calibration and validation (default: the run's own).
        int8: quantize with onnxruntime's static quantizer (QDQ), calibrated on the same
            representative texts as the TFLite export.
        check: validate in onnxruntime against the float reference before writing.
        calibration_samples: random training texts for calibration (plus 50 full-length).
        thresholds: :class:`edge_pqrnn.validate.Thresholds` (default: its defaults).
        opset: ONNX opset (>= 15; default: the converter's, 17).
        text_input: put the projection op in the graph (raw text in). False keeps the
            features-input graph, for ONNX consumers that cannot load the op library.
        static_tokens: keep the raw-text graph's token axis at T (the recurrence unrolled
            over it); by default it computes only the rows of the batch's longest text.
        log: where progress lines go.

    Returns:
        An :class:`OnnxExportResult`.

    Raises:
        ArtifactError: the run directory is missing or incomplete.
        ConfigError: onnx/onnxruntime/tf2onnx missing, or opset below 15.
        AgreementError: a validation check failed; nothing was written (``.report`` attached).

    Example:
        >>> export_onnx("runs/atis", "atis.int8.onnx", int8=True).validation.intent_agreement  # doctest: +SKIP
        0.9989
    """
    import onnx

    from edge_pqrnn._io import atomic_write_bytes
    from edge_pqrnn.build import build_onnx, calibration_for
    from edge_pqrnn.converters.onnx_export import op_counts

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    run, dataset_name, dataset = load_run_and_dataset(run_dir, data)
    seconds["load"] = time.perf_counter() - start

    calibration = calibration_for(run, [ex.text for ex in dataset.train], calibration_samples) if int8 else []
    built = build_onnx(run, dataset_name, calibration, int8=int8, opset=opset, text_input=text_input,
                       static_tokens=static_tokens, log=log)
    seconds.update(built.seconds)
    artifact = built.artifact
    counts = op_counts(onnx.load_from_string(artifact))
    log(f"  {len(artifact):,} bytes, {sum(counts.values())} nodes")

    report = None
    if check:
        start = time.perf_counter()
        report = validate_or_refuse(
            artifact, run_dir, dataset.test, out, log, thresholds=thresholds,
            hint=("try more calibration (--calibration-samples) or the float ONNX (drop --int8)" if int8
                  else "the float ONNX should match: report this as a bug"))
        seconds["validate"] = time.perf_counter() - start
    path = atomic_write_bytes(out, artifact) if out is not None else None
    return OnnxExportResult(path, artifact, built.scheme, counts, report, seconds)
