"""CI gates: refuse an artifact that got too big, too slow or too wrong.

Gates are declared in a TOML file with three optional sections::

    [size]
    max_bytes = 1_600_000

    [latency]                     # batch 1, measured here, interleaved round-robin
    p50_ms = 1.0
    p95_ms = 2.0
    max_ratio_vs_reference = 0.6  # artifact p50 / reference p50, same run
    reference = "float"           # "float" (needs --reference) or "workload"
    threads = 1
    repeats = 200

    [accuracy]                    # needs --reference RUN_DIR (the float run)
    min_intent_agreement = 0.995
    min_slot_agreement = 0.99
    min_intent_accuracy = 0.95
    min_slot_f1 = 0.90
    max_accuracy_drop = 0.005

Absolute latency limits only mean something on the machine they were set on; the ratio
gate does not depend on the machine's speed because the artifact and the reference
(the same run's float artifact, or a fixed numpy workload) are timed side by side in
one interleaved loop.

Example:
    >>> report = gate("atis.tflite", load_gates("gates.toml"), reference="runs/atis")  # doctest: +SKIP
    >>> print("\\n".join(report.lines()))  # doctest: +SKIP
    ✓ size.max_bytes: 1,262,344 bytes <= 1,600,000
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn.errors import ArtifactError, ConfigError

#: Allowed keys per section and their types (``float`` accepts ints too).
SCHEMA: dict[str, dict[str, type]] = {
    "size": {"max_bytes": int},
    "latency": {"p50_ms": float, "p95_ms": float, "max_ratio_vs_reference": float, "reference": str,
                "threads": int, "repeats": int},
    "accuracy": {"min_intent_agreement": float, "min_slot_agreement": float, "min_intent_accuracy": float,
                 "min_slot_f1": float, "max_accuracy_drop": float},
}
#: What ``latency.max_ratio_vs_reference`` is measured against.
LATENCY_REFERENCES = ("float", "workload")
#: Default text timed by the latency gates (a typical ATIS utterance).
LATENCY_TEXT = "show me flights from boston to denver tomorrow morning"


@dataclasses.dataclass(frozen=True)
class Gates:
    """The parsed gate file: ``{section: {key: value}}`` with only allowed keys."""

    sections: dict[str, dict[str, Any]]
    source: str = "<dict>"

    def needs_reference(self) -> list[str]:
        """The gates that need a reference run directory (``--reference``)."""
        keys = [f"accuracy.{k}" for k in self.sections.get("accuracy", {})]
        latency = self.sections.get("latency", {})
        if "max_ratio_vs_reference" in latency and latency.get("reference", "float") == "float":
            keys.append("latency.max_ratio_vs_reference (reference = \"float\")")
        return keys


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One gate: what was measured, the limit, and whether it passed."""

    name: str
    measured: float | None
    limit: float
    passed: bool
    comparison: str  # "<=" or ">="
    unit: str = ""
    note: str = ""

    def line(self) -> str:
        """``✓ size.max_bytes: 1,262,344 bytes <= 1,600,000`` (``✗`` and ``>`` when failed)."""
        def fmt(value: float | None) -> str:
            if value is None:
                return "not measured"
            if float(value).is_integer() and abs(value) >= 1000:
                return f"{int(value):,}"
            return f"{value:.4g}"

        shown = self.comparison if self.passed else {"<=": ">", ">=": "<"}[self.comparison]
        unit = f" {self.unit}" if self.unit else ""
        note = f" ({self.note})" if self.note else ""
        return f"{'✓' if self.passed else '✗'} {self.name}: {fmt(self.measured)}{unit} {shown} {fmt(self.limit)}{note}"


@dataclasses.dataclass
class GateReport:
    """All gate results for one artifact."""

    artifact: str
    results: list[GateResult]
    measurements: dict[str, Any]

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(r.passed for r in self.results)

    def lines(self) -> list[str]:
        """One ✓/✗ line per gate, then a summary line."""
        failed = sum(not r.passed for r in self.results)
        summary = (f"all {len(self.results)} gates passed" if not failed
                   else f"{failed} of {len(self.results)} gates FAILED")
        return [r.line() for r in self.results] + [summary]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``artifact``, ``passed``, ``gates`` (one dict per gate), ``measurements``."""
        return {"artifact": self.artifact, "passed": self.passed,
                "gates": [dataclasses.asdict(r) for r in self.results], "measurements": self.measurements}


def parse_gates(data: dict[str, Any], source: str = "<dict>") -> Gates:
    """Check a gate table (as read from TOML) against :data:`SCHEMA`.

    Args:
        data: ``{section: {key: value}}``.
        source: where it came from, for messages.

    Returns:
        The :class:`Gates`.

    Raises:
        ConfigError: an unknown section or key (the message names the allowed ones), a
            value of the wrong type, a non-positive limit or an unknown latency reference.
    """
    sections: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]; allowed sections: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section} must be a table ([{section}]), got {type(table).__name__}")
        allowed = SCHEMA[section]
        for key, value in table.items():
            if key not in allowed:
                raise ConfigError(f"{source}: unknown key {section}.{key!s}; allowed keys in [{section}]: "
                                  f"{', '.join(allowed)}")
            want = allowed[key]
            ok = (isinstance(value, str) if want is str
                  else isinstance(value, int) and not isinstance(value, bool) if want is int
                  else isinstance(value, (int, float)) and not isinstance(value, bool))
            if not ok:
                raise ConfigError(f"{source}: {section}.{key} must be {'a number' if want is float else want.__name__}, "
                                  f"got {value!r}")
            if want is not str and value <= 0:
                raise ConfigError(f"{source}: {section}.{key} must be > 0, got {value!r}")
            if section == "accuracy" and key.startswith("min_") and value > 1:
                raise ConfigError(f"{source}: {section}.{key} is a fraction in (0, 1], got {value!r}")
        if section == "latency" and table.get("reference", "float") not in LATENCY_REFERENCES:
            raise ConfigError(f"{source}: latency.reference must be one of {', '.join(LATENCY_REFERENCES)}, "
                              f"got {table['reference']!r}")
        sections[section] = dict(table)
    return Gates(sections, source)


def load_gates(path: str | os.PathLike) -> Gates:
    """Read and check a gates TOML file.

    Raises:
        ConfigError: the file is missing, not a regular file, too big, not UTF-8, not
            valid TOML, or has unknown keys/sections or bad values (see :func:`parse_gates`).

    Example:
        >>> load_gates("gates.toml").sections["size"]  # doctest: +SKIP
        {'max_bytes': 1600000}
    """
    from edge_pqrnn._io import MAX_CONFIG_BYTES, read_file

    path = Path(path)
    raw = read_file(path, limit=MAX_CONFIG_BYTES, error=ConfigError, what="a gates file",
                    fix="pass --gates PATH to a TOML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); TOML files are "
                          "UTF-8: re-save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_gates(data, str(path))


def reference_workload(size: int = 192) -> Callable[[], Any]:
    """A fixed CPU workload (float32 matmul, 1 BLAS thread) to time beside an artifact.

    Its latency tracks the machine's single-core speed, so ``artifact / workload`` is a
    number that moves when the model gets slower, not when the CI runner does.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)

    def run() -> Any:
        with threadpool_limits(1):
            return a @ b

    return run


def float_artifact(run_dir: str | os.PathLike) -> bytes:
    """The float32 .tflite of a run (same graph and op, float body), built in memory."""
    from edge_pqrnn.build import build_tflite
    from edge_pqrnn.run import load_run

    run = load_run(run_dir)
    return build_tflite(run, run.metrics.get("dataset", "unknown"), [], scheme="float").artifact


def _limit(name: str, measured: float | None, limit: float, comparison: str, unit: str = "",
           note: str = "") -> GateResult:
    if measured is None:
        return GateResult(name, None, limit, False, comparison, unit, note or "not measured")
    passed = measured <= limit if comparison == "<=" else measured >= limit
    return GateResult(name, float(measured), float(limit), bool(passed), comparison, unit, note)


def _latency_gates(latency: dict[str, Any], data: bytes, name: str, reference: str | os.PathLike | None, text: str,
                   results: list[GateResult], log: Callable[[str], None]) -> dict[str, Any]:
    """Time the artifact (and its reference) and append the latency gates; returns what was measured."""
    from edge_pqrnn.measure import invoker, time_variants

    threads, repeats = latency.get("threads", 1), latency.get("repeats", 200)
    try:  # one call first: a runtime failure is an unusable artifact, not a traceback
        variants = {"artifact": invoker(data, text, xnnpack=True, threads=threads)}
        variants["artifact"]()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{name} does not run in litert on the latency text ({first[:160]}): export it "
                            "again with `edge-pqrnn export`") from exc
    ref_kind = latency.get("reference", "float")
    if "max_ratio_vs_reference" in latency:
        if ref_kind == "float":
            log("building the float reference artifact...")
            variants["reference"] = invoker(float_artifact(reference), text, xnnpack=True, threads=threads)
        else:
            variants["reference"] = reference_workload()
    log(f"timing {', '.join(variants)} ({repeats} interleaved calls each, {threads} thread(s))...")
    timed = time_variants(variants, repeats=repeats)
    measured = {**timed, "threads": threads, "text": text, "reference": ref_kind}
    if "p50_ms" in latency:
        results.append(_limit("latency.p50_ms", timed["artifact"]["p50_ms"], latency["p50_ms"], "<=", "ms"))
    if "p95_ms" in latency:
        results.append(_limit("latency.p95_ms", timed["artifact"]["p95_ms"], latency["p95_ms"], "<=", "ms"))
    if "max_ratio_vs_reference" in latency:
        ratio = timed["artifact"]["p50_ms"] / timed["reference"]["p50_ms"]
        measured["ratio_vs_reference"] = ratio
        results.append(_limit("latency.max_ratio_vs_reference", ratio, latency["max_ratio_vs_reference"], "<=",
                              "x", f"p50 {timed['artifact']['p50_ms']:.3f} ms vs {ref_kind} "
                                   f"{timed['reference']['p50_ms']:.3f} ms"))
    return measured


def _accuracy_gates(accuracy: dict[str, Any], data: bytes, reference: str | os.PathLike | None,
                    results: list[GateResult], log: Callable[[str], None]) -> dict[str, Any]:
    """Validate against the reference run and append the accuracy gates; returns what was measured."""
    from edge_pqrnn.validate import validate

    log("validating against the reference run...")
    report = validate(data, reference, runtimes=("litert",))
    acc = report.accuracy or {}
    int8, flt = acc.get("int8", {}), acc.get("float", {})
    drop = (flt["intent_accuracy"] - int8["intent_accuracy"]
            if int8.get("intent_accuracy") is not None and flt.get("intent_accuracy") is not None else None)
    values = {"intent_agreement": report.intent_agreement, "slot_agreement": report.slot_agreement,
              "intent_accuracy": int8.get("intent_accuracy"), "slot_f1": int8.get("slot_f1"),
              "accuracy_drop": drop}
    measured = {**values, "float": flt, "num_examples": report.num_examples}
    for key, limit in accuracy.items():
        if key == "max_accuracy_drop":
            results.append(_limit(f"accuracy.{key}", drop, limit, "<=", note="float - int8 intent accuracy"))
        else:
            results.append(_limit(f"accuracy.{key}", values[key.removeprefix("min_")], limit, ">="))
    return measured


def gate(artifact: str | os.PathLike | bytes, gates: Gates, *, reference: str | os.PathLike | None = None,
         only: Sequence[str] | None = None, text: str = LATENCY_TEXT,
         log: Callable[[str], None] = lambda _: None) -> GateReport:
    """Measure an artifact and check it against the gates.

    Args:
        artifact: the .tflite path or bytes.
        gates: from :func:`load_gates`.
        reference: the run directory the artifact was exported from (accuracy gates and
            the float latency reference need it).
        only: check only these sections (default: every section in ``gates``).
        text: the utterance timed by the latency gates.
        log: progress lines.

    Returns:
        A :class:`GateReport`; a gate that cannot be measured fails (it is not skipped).

    Raises:
        ConfigError: a needed ``reference`` is missing, or ``only`` names an unknown section
            (checked before any slow work).
        ArtifactError: the artifact is not usable (:meth:`edge_pqrnn.artifact.Artifact.load`).
    """
    from edge_pqrnn.artifact import Artifact

    sections = list(only) if only else list(gates.sections)
    unknown = [s for s in sections if s not in SCHEMA]
    if unknown:
        raise ConfigError(f"unknown gate sections {unknown}; allowed: {', '.join(SCHEMA)}")
    active = Gates({s: gates.sections[s] for s in sections if s in gates.sections}, gates.source)
    if reference is None and active.needs_reference():
        raise ConfigError(f"gates {', '.join(active.needs_reference())} need the float run: pass --reference RUN_DIR "
                          "(or drop them from the gates file, or use --only)")
    # The usability check of `predict`: checked, opened and run once (a file that passes
    # the checks but fails at run time is refused here, not as a failed gate).
    with Artifact.load(artifact) as opened:
        data, name = opened.data, opened.name
    results: list[GateResult] = []
    measured: dict[str, Any] = {"bytes": len(data)}

    size = active.sections.get("size", {})
    if "max_bytes" in size:
        results.append(_limit("size.max_bytes", len(data), size["max_bytes"], "<=", "bytes"))

    latency = active.sections.get("latency", {})
    if latency:
        measured["latency"] = _latency_gates(latency, data, name, reference, text, results, log)
    accuracy = active.sections.get("accuracy", {})
    if accuracy:
        measured["accuracy"] = _accuracy_gates(accuracy, data, reference, results, log)
    return GateReport(name, results, measured)
