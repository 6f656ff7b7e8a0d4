"""Compare an int8 artifact with its float reference, in every runtime: data, not a bool.

The reference is the run the artifact was exported from: its Keras float32 model fed by
the numpy projection (bit-exact with the op). Both see the same texts: the run's test
split (or the texts/examples given) plus :data:`HOSTILE_TEXTS`. The report holds the
numbers (agreement, logit differences, accuracy, bytes, one row per runtime) and one
✓/✗ line per check; the caller decides what is fatal (``edge-pqrnn export`` refuses to
write a failing artifact, ``edge-pqrnn validate`` exits 1).

The runtimes (:data:`ALL_RUNTIMES`): ``litert`` and ``tflite`` (tf.lite) in this
process, ``tflite-runtime`` (2.14, in its own venv), and ``NAME@aarch64`` for each
runtime of :func:`edge_pqrnn.runtimes.aarch64.aarch64_runtimes` run on aarch64 Linux under qemu-user
(prepared once by ``edge-pqrnn matrix setup``). Every row is gated on its agreement with
the float reference; an aarch64 row is also compared bit by bit with the same runtime on
x86 (``bit_exact_vs_x86``, ``differing_texts``: informational, docs/matrix.md says why
a few texts differ by one int8 step).

Example:
    >>> report = validate("atis.int8.tflite", "runs/atis")  # doctest: +SKIP
    >>> print("\\n".join(report.lines()))  # doctest: +SKIP
    ✓ labels and projection: the artifact matches the reference run (22 intents, 121 tags, T=64, F=512)
    ✓ intent agreement (litert vs float): 1.0000 (0 of 905 texts differ) >= 0.995
    ...
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_pqrnn.arm import differing_texts, max_abs_diff
from edge_pqrnn.artifact import INTENT_OUTPUT, NUM_TOKENS_OUTPUT, SLOT_OUTPUT, Artifact, check
from edge_pqrnn.data.records import Example
from edge_pqrnn.errors import ConfigError, DataError, EdgePqrnnError
from edge_pqrnn.evaluate import Labels, Logits, score
from edge_pqrnn.projection import ProjectionSpec, Token
from edge_pqrnn.projection.reference import decode, token_rows
from edge_pqrnn.onnx_artifact import OnnxArtifact, check_onnx, is_onnx
from edge_pqrnn.runtimes import IN_PROCESS, LEGACY_RUNTIME, run_legacy
from edge_pqrnn.runtimes.aarch64 import QEMU, QEMU_CPU, aarch64_runtimes, run_aarch64_bytes
from edge_pqrnn.runtimes.onnxruntime import RUNTIME as ONNX_RUNTIME
from edge_pqrnn.validation_report import (AARCH64, MIN_TIE_SNR_DB, TIE_NOISE_MULTIPLE, Check, RuntimeResult, Thresholds,
                                          ValidationReport, host_isa)

#: The in-process runtimes, and the legacy one that runs in its own venv.
RUNTIMES = IN_PROCESS


def _aarch64_runtimes() -> tuple[str, ...]:
    return tuple(name + AARCH64 for name in aarch64_runtimes())


#: The aarch64 rows, one per runtime of :func:`edge_pqrnn.runtimes.aarch64.aarch64_runtimes`.
AARCH64_RUNTIMES = _aarch64_runtimes()
#: Every row of the matrix (``--runtime all``), in report order: litert first, so that it
#: stays the primary runtime.
ALL_RUNTIMES = (*RUNTIMES, LEGACY_RUNTIME, *AARCH64_RUNTIMES)


#: Texts that try to break the projection; every runtime must give finite outputs and
#: the reference's token count for each (the test suite uses the same set).
HOSTILE_TEXTS: dict[str, bytes] = {
    "empty": b"",
    "whitespace_only": " \t\n\r\x0b\x0c\u00a0\u3000\u2028".encode(),
    "nul_bytes": b"abc\x00def\x00\x00",
    "invalid_utf8": b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80abc\xe2\x82",
    "lone_surrogates": "x\ud800y\udfffz".encode("utf-8", "surrogatepass"),
    "rtl_and_marks": "שָׁלוֹם عَرَبِيّ \u200f\u202eabc\u202c".encode(),
    "combining_only": "\u0301\u0308\u0327".encode(),
    "emoji_zwj": "👨‍👩‍👧‍👦 🇩🇪 👍🏽".encode(),
    "cjk_thai": "明天去北京 สวัสดีครับ\u200bวันนี้ 안녕하세요".encode(),
    "long_token": ("a" * 100_000).encode(),
    "many_tokens": ("word " * 20_000).encode(),
    "huge_mixed": ("Zürich 明天 🙂, ok? " * 6_000).encode(),
}


def _resolve_examples(run: Any, metadata: dict[str, Any], texts: Sequence[str | bytes] | None,
                      examples: Sequence[Example] | None) -> list[Example]:
    """The labelled examples to score: given ones, else the test (or dev) split of the
    dataset the run (or the artifact) names; none when only texts were given."""
    if examples is not None:
        return list(examples)
    if texts is not None:
        return []
    from edge_pqrnn.data import load_dataset

    name = run.metrics.get("dataset") or metadata.get("dataset")
    if not name:
        raise ConfigError(f"{run.path}: neither the run nor the artifact names its dataset; pass examples= or "
                          "texts= (CLI: --data NAME)")
    try:
        dataset = load_dataset(name)
    except DataError as exc:
        raise DataError(f"cannot load the dataset {name!r} the run names ({exc}); pass examples= or texts= "
                        "(CLI: --data NAME)") from exc
    split = dataset.test or dataset.dev
    if not split:
        raise DataError(f"dataset {name!r} has no test or dev examples to validate on; pass examples= or texts= "
                        "(CLI: --data NAME)")
    return list(split)


def _spec_without_distortion(spec: ProjectionSpec) -> ProjectionSpec:
    # Distortion is training-only noise: the op never applies it, so it is no mismatch.
    return dataclasses.replace(spec, distortion=0.0)


def _near_ties(out: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """Differing texts whose float margin is within the int8 noise, and the agreement
    that counts them as agreeing (see ``RuntimeResult.intent_near_ties``)."""
    if not len(ref):
        return 0, 1.0
    got, want = out.argmax(-1), ref.argmax(-1)
    rows = np.arange(len(ref))
    margin = ref[rows, want] - ref[rows, got]  # 0 where they agree
    noise = float(np.sqrt(np.mean((out.astype(np.float64) - ref) ** 2)))
    signal = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
    if noise > signal * 10 ** (-MIN_TIE_SNR_DB / 20):
        return 0, float((got == want).mean())  # not int8 noise: every flip counts
    ties = (got != want) & (margin <= TIE_NOISE_MULTIPLE * noise)
    return int(ties.sum()), float(((got == want) | ties).mean())


def _compare(out: dict[str, np.ndarray], ref: dict[str, np.ndarray], ref_counts: np.ndarray,
             result: RuntimeResult) -> None:
    """Fill ``result`` with agreement and differences of ``out`` against the float ``ref``."""
    counts = np.asarray(out[NUM_TOKENS_OUTPUT])
    result.num_tokens_match = int((counts == ref_counts).sum())
    result.finite = bool(all(np.isfinite(v).all() for k, v in out.items() if k != NUM_TOKENS_OUTPUT))
    if out[INTENT_OUTPUT].shape != ref[INTENT_OUTPUT].shape:
        return  # other labels: nothing to compare; the labels check says why
    result.intent_agreement = float((out[INTENT_OUTPUT].argmax(-1) == ref[INTENT_OUTPUT].argmax(-1)).mean())
    result.intent_near_ties, result.intent_agreement_gated = _near_ties(out[INTENT_OUTPUT], ref[INTENT_OUTPUT])
    signal = [ref[INTENT_OUTPUT].ravel()]
    noise = [(out[INTENT_OUTPUT] - ref[INTENT_OUTPUT]).ravel()]
    if SLOT_OUTPUT in out and SLOT_OUTPUT in ref and out[SLOT_OUTPUT].shape == ref[SLOT_OUTPUT].shape:
        # Rows under the reference's mask: padding is excluded, markers (EOS) count.
        rows = np.arange(ref[SLOT_OUTPUT].shape[1])[None, :] < ref_counts[:, None]
        same = out[SLOT_OUTPUT].argmax(-1) == ref[SLOT_OUTPUT].argmax(-1)
        result.slot_agreement = float(same[rows].mean()) if rows.any() else 1.0
        signal.append(ref[SLOT_OUTPUT][rows].ravel())
        noise.append((out[SLOT_OUTPUT] - ref[SLOT_OUTPUT])[rows].ravel())
    noise_all = np.concatenate(noise).astype(np.float64)
    signal_power = float((np.concatenate(signal).astype(np.float64) ** 2).sum())
    noise_power = float((noise_all**2).sum())
    result.max_abs_diff = float(np.abs(noise_all).max(initial=0.0))
    # Floors keep the value finite (JSON has no Infinity) for identical or all-zero logits.
    result.snr_db = float(10 * np.log10(max(signal_power, 1e-30) / max(noise_power, 1e-30)))


def _run_in_process(data: bytes, name: str, texts: list[str | bytes], batch_size: int,
                    artifact_name: str) -> tuple[dict, str]:
    opener = Artifact
    if name == ONNX_RUNTIME:  # an .onnx (edge_pqrnn.onnx_artifact)
        opener = OnnxArtifact
    with opener.load(data, runtime=name, name=artifact_name) as artifact:
        return artifact.run(texts, batch_size), artifact.runtime_version


def _run(runtime: str, data: bytes, texts: list[str | bytes], batch_size: int,
         log: Callable[[str], None], artifact_name: str = "<bytes>") -> tuple[dict, str]:
    """The artifact's outputs in one runtime (a row name) and that runtime's version.

    Raises:
        EdgePqrnnError: it could not be prepared, loaded or run (the message says why,
            with the command that fixes it where there is one).
    """
    try:
        if runtime.endswith(AARCH64):
            log(f"validate: running the artifact on {runtime} under qemu ({len(texts)} texts)...")
            # Emulation runs ~100x slower than x86 (the ATIS test split: 1.5-5 min on 2 busy
            # cores): aarch64's 10-minute default is too tight for large text sets.
            return run_aarch64_bytes(data, runtime[: -len(AARCH64)], texts, timeout=600 + 1.0 * len(texts))
        if runtime == LEGACY_RUNTIME:
            return run_legacy(data, texts, log)
        return _run_in_process(data, runtime, texts, batch_size, artifact_name)
    except subprocess.TimeoutExpired as exc:
        raise EdgePqrnnError(f"{runtime} did not finish within {exc.timeout:.0f} s") from exc
    except OSError as exc:  # e.g. qemu present but not executable, a full disk
        raise EdgePqrnnError(f"{runtime} could not run: {exc}") from exc


class _TokenRows:
    """The reference tokeniser's rows of every text, per projection spec (computed once)."""

    def __init__(self, texts: list[str | bytes]) -> None:
        self._texts, self._by_spec = texts, {}

    def __call__(self, spec: ProjectionSpec) -> list[list[Token]]:
        key = _spec_without_distortion(spec)
        if key not in self._by_spec:
            self._by_spec[key] = [token_rows(decode(t), key) for t in self._texts]
        return self._by_spec[key]


def _check_runtimes(runtimes: Sequence[str], legacy: bool) -> None:
    unknown = [r for r in runtimes if r not in ALL_RUNTIMES]
    if unknown:
        raise ConfigError(f"unknown runtimes {unknown}; choose from {', '.join(ALL_RUNTIMES)}")
    if not runtimes and not legacy:
        raise ConfigError(f"no runtime to validate in: pass runtimes from {', '.join(ALL_RUNTIMES)} or legacy=True")


def _float_outputs(run: Any, texts: list[str | bytes]) -> dict[str, np.ndarray]:
    """The float reference's logits, keyed like the artifact's outputs."""
    logits = run.predict(texts, batch_size=256)
    ref = {INTENT_OUTPUT: np.asarray(logits.intent)}
    if logits.slots is not None:
        ref[SLOT_OUTPUT] = np.asarray(logits.slots)
    return ref


def _run_rows(plan: list[str], data: bytes, name: str, texts: list[str | bytes], ref: dict[str, np.ndarray],
              ref_counts: np.ndarray, batch_size: int,
              log: Callable[[str], None]) -> tuple[dict[str, RuntimeResult], dict[str, dict[str, np.ndarray]]]:
    """Run the artifact in each row of ``plan`` and compare it with the float reference;
    aarch64 rows also with the same runtime on x86, the other rows with litert."""
    results: dict[str, RuntimeResult] = {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for runtime in plan:
        start = time.perf_counter()
        try:
            out, version = _run(runtime, data, texts, batch_size, log, name)
        except EdgePqrnnError as exc:
            results[runtime] = RuntimeResult(runtime, loaded=False, error=str(exc))
            continue
        result = RuntimeResult(runtime, loaded=True, version=version,
                               seconds=round(time.perf_counter() - start, 3))
        _compare(out, ref, ref_counts, result)
        results[runtime] = result
        outputs[runtime] = out
    x86_only: dict[str, dict[str, np.ndarray] | None] = {}  # x86 references that are not rows
    for runtime, result in results.items():
        if runtime.endswith(AARCH64):
            _compare_with_x86(result, outputs, x86_only, data, texts, batch_size, log, name)
    if "litert" in outputs:
        for runtime, out in outputs.items():
            if runtime != "litert" and not runtime.endswith(AARCH64):
                results[runtime].identical_to_litert = all(
                    key in out and np.array_equal(value, out[key]) for key, value in outputs["litert"].items())
    return results, outputs


def _accuracy(labelled: Sequence[Example], out: dict[str, np.ndarray], rows: list[list[Token]],
              labels: Labels) -> dict[str, Any]:
    """Intent accuracy and slot F1 of one side's outputs on the labelled texts (first in ``out``)."""
    n = len(labelled)
    logits = Logits(out[INTENT_OUTPUT][:n], out[SLOT_OUTPUT][:n] if SLOT_OUTPUT in out else None)
    metrics = score(labelled, logits, rows[:n], labels)
    return {"intent_accuracy": metrics["intent_accuracy"], "slot_f1": metrics["slot_f1"]}


def validate(artifact: Artifact | bytes | str | os.PathLike, reference_run_dir: str | os.PathLike, *,
             texts: Sequence[str | bytes] | None = None, examples: Sequence[Example] | None = None,
             runtimes: Sequence[str] = RUNTIMES, legacy: bool = False, thresholds: Thresholds | None = None,
             batch_size: int = 64, log: Callable[[str], None] = lambda _: None) -> ValidationReport:
    """Run an artifact and its float reference on the same texts and compare them.

    Args:
        artifact: an :class:`Artifact`, .tflite bytes or a path.
        reference_run_dir: the run the artifact was exported from.
        texts: extra texts to compare (no accuracy for these).
        examples: labelled examples; default (with ``texts`` also None): the test split
            (or dev) of the dataset the run names.
        runtimes: rows to run the artifact in, from :data:`ALL_RUNTIMES`: ``litert``,
            ``tflite`` (in this process), ``tflite-runtime`` (2.14 in its cached venv),
            ``litert@aarch64``, ``tflite-runtime@aarch64`` (under qemu, in the matrix
            ``edge-pqrnn matrix setup`` prepared). The first that loads is the primary.
        legacy: also run it in tflite-runtime 2.14 (same as adding ``tflite-runtime``).
        thresholds: pass marks (default :class:`Thresholds`).
        batch_size: texts per interpreter call (in-process runtimes).
        log: progress lines (building the legacy venv, the emulated runs).

    Returns:
        A :class:`ValidationReport`; a runtime that fails to load or run (or cannot be
        prepared: no qemu, no matrix) is a row with ``loaded=False`` and its ``error``,
        and a failed check, not an exception. An aarch64 row is also compared bit by
        bit with the same runtime on x86 (run for that purpose when it is not a row).

    Raises:
        ArtifactError: the artifact or the run directory is missing or broken.
        ConfigError: an unknown runtime, or no dataset to validate on.

    Example:
        >>> report = validate("atis.int8.tflite", "runs/atis", runtimes=("litert",))  # doctest: +SKIP
        >>> report.passed, report.intent_agreement  # doctest: +SKIP
        (True, 1.0)
    """
    from edge_pqrnn.run import load_run

    _check_runtimes(runtimes, legacy)
    thresholds = thresholds or Thresholds()
    # An .onnx is checked as ONNX and runs in one row, onnxruntime; the report keys are the same.
    onnx_file = is_onnx(artifact.data if isinstance(artifact, Artifact) else artifact)
    if onnx_file:
        runtimes, legacy = (ONNX_RUNTIME,), False
    data, name, metadata = (check_onnx if onnx_file else check)(
        artifact.data if isinstance(artifact, Artifact) else artifact,
        artifact.name if isinstance(artifact, Artifact) else None)
    run = load_run(reference_run_dir)
    labelled = _resolve_examples(run, metadata, texts, examples)
    all_texts: list[str | bytes] = [ex.text for ex in labelled] + list(texts or []) + list(HOSTILE_TEXTS.values())
    n_labelled, n_hostile = len(labelled), len(HOSTILE_TEXTS)

    art_spec = ProjectionSpec.from_dict(metadata["projection"])
    art_labels = Labels(tuple(metadata["intents"]), tuple(metadata["tags"]), tuple(metadata.get("slot_types", ())))
    rows = _TokenRows(all_texts)
    ref = _float_outputs(run, all_texts)
    # The op's token count must equal the reference tokeniser's under the artifact's spec.
    ref_counts = np.array([len(r) for r in rows(art_spec)], np.int32)

    plan = list(dict.fromkeys([*runtimes, *([LEGACY_RUNTIME] if legacy else [])]))
    results, outputs = _run_rows(plan, data, name, all_texts, ref, ref_counts, batch_size, log)
    primary = next(iter(outputs), None)
    main = results[primary] if primary else RuntimeResult("none", loaded=False)
    accuracy = None
    if n_labelled and primary:
        # Each side is scored with its own labels and tokens, so a mismatched reference
        # still gets meaningful accuracies.
        accuracy = {"float": _accuracy(labelled, ref, rows(run.spec), run.labels),
                    "int8": _accuracy(labelled, outputs[primary], rows(art_spec), art_labels)}

    labels_match = (art_labels.intents, art_labels.tags, _spec_without_distortion(art_spec)) == (
        run.labels.intents, run.labels.tags, _spec_without_distortion(run.spec))
    checks = _checks(labels_match, art_labels, art_spec, run, main, primary, len(all_texts), n_hostile,
                     accuracy, results, outputs, ref_counts, thresholds, len(data))
    return ValidationReport(
        artifact=name, reference=str(reference_run_dir), num_texts=len(all_texts), num_examples=n_labelled,
        intent_agreement=main.intent_agreement, slot_agreement=main.slot_agreement,
        max_abs_diff=main.max_abs_diff, snr_db=main.snr_db, primary=primary, bytes=len(data), runtimes=results,
        accuracy=accuracy, thresholds=thresholds, checks=checks)


def _compare_with_x86(result: RuntimeResult, outputs: dict[str, dict[str, np.ndarray]],
                      extra: dict[str, dict[str, np.ndarray] | None], data: bytes, texts: list[str | bytes],
                      batch_size: int, log: Callable[[str], None], name: str) -> None:
    """Fill an aarch64 row's ``*_vs_x86`` fields: its outputs against the same runtime on
    this machine (run once into ``extra`` when it is not a row itself; if that fails,
    they stay None)."""
    result.emulator = f"{QEMU} QEMU_CPU={QEMU_CPU}"
    out = outputs.get(result.name)
    if out is None:
        return
    x86 = outputs.get(result.runtime)
    if x86 is None and result.runtime not in extra:
        try:
            extra[result.runtime] = _run(result.runtime, data, texts, batch_size, log, name)[0]
        except EdgePqrnnError:
            extra[result.runtime] = None  # only the comparison is missing; the row itself stands
    x86 = x86 if x86 is not None else extra.get(result.runtime)
    if x86 is None:
        return
    result.differing_texts = differing_texts(out, x86)
    result.bit_exact_vs_x86 = result.differing_texts == 0
    result.max_abs_diff_vs_x86 = max_abs_diff(out, x86)
    if out[INTENT_OUTPUT].shape == x86[INTENT_OUTPUT].shape:
        differ = out[INTENT_OUTPUT].argmax(-1) != x86[INTENT_OUTPUT].argmax(-1)
        if SLOT_OUTPUT in out and SLOT_OUTPUT in x86 and out[SLOT_OUTPUT].shape == x86[SLOT_OUTPUT].shape:
            rows = np.arange(x86[SLOT_OUTPUT].shape[1])[None, :] < np.asarray(x86[NUM_TOKENS_OUTPUT])[:, None]
            differ |= ((out[SLOT_OUTPUT].argmax(-1) != x86[SLOT_OUTPUT].argmax(-1)) & rows).any(-1)
        result.decisions_differing_vs_x86 = int(differ.sum())


def _fmt(value: float | None) -> str:
    # Truncated, not rounded: 0.99495 must not print as "0.9950" beside a failed ">= 0.995".
    return "n/a" if value is None else f"{math.floor(value * 10_000) / 10_000:.4f}"


def _differences(art_labels: Labels, art_spec: ProjectionSpec, run: Any) -> list[str]:
    """What differs between the artifact's labels and projection and the run's, each as
    ``what: artifact vs run`` (two summaries of counts alone can be identical: intents
    in another order, another lower-casing)."""
    out = []
    for what in ("intents", "tags"):
        mine, theirs = getattr(art_labels, what), getattr(run.labels, what)
        if len(mine) != len(theirs):
            out.append(f"{what}: {len(mine)} vs {len(theirs)}")
        elif sorted(mine) == sorted(theirs) and list(mine) != list(theirs):
            first = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
            out.append(f"{what}: the same {len(mine)} in another order (#{first}: {mine[first]!r} vs {theirs[first]!r})")
        elif list(mine) != list(theirs):
            first = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
            out.append(f"{what}: other labels (#{first}: {mine[first]!r} vs {theirs[first]!r})")
    mine, theirs = _spec_without_distortion(art_spec), _spec_without_distortion(run.spec)
    for field in dataclasses.fields(mine):
        a, b = getattr(mine, field.name), getattr(theirs, field.name)
        if a != b:
            out.append(f"projection {field.name}: {a!r} vs {b!r}")
    return out or ["no difference found"]


def _ties(r: RuntimeResult) -> str:
    return f" ({r.intent_near_ties} near-ties)" if r.intent_near_ties else ""


def _runtime_checks(results: dict[str, RuntimeResult], n_texts: int, th: Thresholds) -> list[Check]:
    """One check per runtime row (gated on agreement), and for an aarch64 row one line on
    its bits against the same runtime on x86 (informational)."""
    checks: list[Check] = []
    for name, r in results.items():
        label = f"runtime {name}{' ' + r.version if r.version else ''}{f' ({r.emulator})' if r.emulator else ''}"
        if not r.loaded:
            checks.append(Check(f"runtime:{name}", False, f"{label}: not loaded: {r.error}"))
            continue
        ok = (r.finite and r.num_tokens_match == n_texts and r.intent_agreement_gated is not None
              and r.intent_agreement_gated >= th.intent_agreement
              and (r.slot_agreement is None or r.slot_agreement >= th.slot_agreement))
        identical = {True: "; bit-identical to litert", False: "; differs from litert", None: ""}[r.identical_to_litert]
        checks.append(Check(f"runtime:{name}", bool(ok),
                            f"{label}: intent agreement {_fmt(r.intent_agreement)}{_ties(r)}, slot agreement "
                            f"{_fmt(r.slot_agreement)}, token counts {r.num_tokens_match}/{n_texts} equal to the "
                            f"reference{'' if r.finite else ', NON-FINITE outputs'}{identical}"))
        if r.isa == "aarch64":
            # Not a gate: XNNPACK's int8 MUL rounds near-.5 ties differently on ARM, so a
            # few texts may differ by one step (docs/matrix.md); agreement above is the gate.
            x86 = f"{name} vs {r.runtime} {host_isa()}"
            if r.differing_texts is None:
                line = f"{x86}: not compared ({r.runtime} did not run on {host_isa()})"
            elif r.bit_exact_vs_x86:
                line = f"{x86}: bit-exact on all {n_texts} texts"
            else:
                line = (f"{x86}: {r.differing_texts} of {n_texts} texts differ in some output bit"
                        + ("" if r.max_abs_diff_vs_x86 is None else f" (max |diff| {r.max_abs_diff_vs_x86:.4g})")
                        + ("" if r.decisions_differing_vs_x86 is None else
                           f", {r.decisions_differing_vs_x86} in an intent or slot decision"))
            checks.append(Check(f"isa:{name}", None, line))
    return checks


def _checks(labels_match: bool, art_labels: Labels, art_spec: ProjectionSpec, run: Any, main: RuntimeResult,
            primary: str | None, n_texts: int, n_hostile: int, accuracy: dict | None,
            results: dict[str, RuntimeResult], outputs: dict[str, dict], ref_counts: np.ndarray,
            th: Thresholds, size: int) -> list[Check]:
    """The report's checks, in order: labels, agreement, accuracy, hostile texts, runtimes, size."""
    checks: list[Check] = []
    if labels_match:
        checks.append(Check("labels", True, f"labels and projection: the artifact matches the reference run "
                                            f"({len(art_labels.intents)} intents, {len(art_labels.tags)} tags, "
                                            f"T={art_spec.max_tokens}, F={art_spec.feature_size})"))
    else:
        checks.append(Check("labels", False, (
            f"labels and projection: the artifact does not match the reference run "
            f"({'; '.join(_differences(art_labels, art_spec, run))}): pass the run it was exported from")))
    who = f"{primary} vs float" if primary else "no runtime loaded"
    differ = None if main.intent_agreement is None else round((1 - main.intent_agreement) * n_texts)
    checks.append(Check(
        "intent_agreement",
        main.intent_agreement_gated is not None and main.intent_agreement_gated >= th.intent_agreement,
        f"intent agreement ({who}): {_fmt(main.intent_agreement)}"
        + (f" ({differ} of {n_texts} texts differ)" if differ is not None else "")
        + (f"; {_fmt(main.intent_agreement_gated)} with the {main.intent_near_ties} near-ties (float margin within "
           f"{TIE_NOISE_MULTIPLE:g}x the int8 noise) counted as agreeing" if main.intent_near_ties else "")
        + f" >= {th.intent_agreement}"))
    if art_labels.tags or run.labels.tags:
        real_rows = int(ref_counts.sum())
        differ = None if main.slot_agreement is None else round((1 - main.slot_agreement) * real_rows)
        checks.append(Check(
            "slot_agreement", main.slot_agreement is not None and main.slot_agreement >= th.slot_agreement,
            f"slot agreement ({who}, per token row): {_fmt(main.slot_agreement)}"
            + (f" ({differ} of {real_rows} rows differ)" if differ is not None else "")
            + f" >= {th.slot_agreement}"))
    if accuracy is not None:
        flt, int8 = accuracy["float"]["intent_accuracy"], accuracy["int8"]["intent_accuracy"]
        drop = flt - int8
        checks.append(Check("accuracy", drop <= th.max_accuracy_drop,
                            f"int8 intent accuracy {int8:.4f} vs float {flt:.4f} "
                            f"(drop {drop:+.4f} <= {th.max_accuracy_drop})"))
        if accuracy["float"]["slot_f1"] is not None or accuracy["int8"]["slot_f1"] is not None:
            checks.append(Check("slot_f1", None, f"slot F1: int8 {_fmt(accuracy['int8']['slot_f1'])}, "
                                                 f"float {_fmt(accuracy['float']['slot_f1'])}"))
    else:
        checks.append(Check("accuracy", None, "accuracy: not measured (no labelled examples)"))
    checks.append(Check("max_abs_diff", None, f"logits ({who}): max |diff| {_fmt(main.max_abs_diff)}, "
                                              f"SNR {'n/a' if main.snr_db is None else f'{main.snr_db:.1f} dB'}"))

    hostile = slice(n_texts - n_hostile, n_texts)
    bad = {name: int((out[NUM_TOKENS_OUTPUT][hostile] != ref_counts[hostile]).sum()
                     + (~np.isfinite(out[INTENT_OUTPUT][hostile])).any(-1).sum())
           for name, out in outputs.items()}
    checks.append(Check("hostile_texts", bool(outputs) and not any(bad.values()),
                        f"hostile texts: {n_hostile} texts (empty, NUL, invalid UTF-8, 100k-char...) give finite "
                        f"outputs and the reference's token count in {', '.join(outputs) or 'no runtime'}"
                        + ("" if not any(bad.values()) else f"; failures per runtime: {bad}")))

    checks += _runtime_checks(results, n_texts, th)
    checks.append(Check("bytes", None, f"size: {size:,} bytes"))
    return checks


__all__ = ["AARCH64_RUNTIMES", "ALL_RUNTIMES", "HOSTILE_TEXTS", "RUNTIMES", "Check", "RuntimeResult", "Thresholds",
           "ValidationReport", "host_isa", "validate"]
