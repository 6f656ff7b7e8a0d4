"""The aarch64 matrix: does an artifact give x86's bits on aarch64 (qemu-user)?

Rows per runtime, the Markdown table of docs/matrix.md, and the command
``python -m edge_pqrnn.arm setup [--install] | build-op | table ARTIFACT [--data NAME]``.
Running on aarch64 itself is :mod:`edge_pqrnn.runtimes.aarch64`.

Example:
    >>> setup_matrix()  # doctest: +SKIP
    >>> rows = matrix_rows("atis.int8.tflite", texts, x86_outputs)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_pqrnn.errors import ConfigError, EdgePqrnnError
from edge_pqrnn.runtimes.aarch64 import (QEMU, QEMU_CPU, aarch64_runtimes, build_aarch64_library, run_aarch64,
                                         setup_matrix)

__all__ = ["differing_texts", "markdown_table", "matrix_rows", "main", "max_abs_diff", "setup_matrix"]


def differing_texts(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> int:
    """How many texts (rows of axis 0) have any output whose bits differ from ``reference``.

    Bits, not values: -0.0 vs 0.0 or two different NaNs count as different. A missing
    output or another shape makes every text differ.
    """
    counts = {len(v) for k, v in reference.items() if k != "__version__"}
    n = counts.pop() if len(counts) == 1 else 0
    differ = np.zeros(n, bool)
    for name, expected in reference.items():
        if name == "__version__":
            continue
        got = outputs.get(name)
        if got is None or got.shape != expected.shape or got.dtype != expected.dtype:
            return n
        a = np.ascontiguousarray(got).reshape(n, -1).view(np.uint8)
        b = np.ascontiguousarray(expected).reshape(n, -1).view(np.uint8)
        differ |= (a != b).any(axis=1)
    return int(differ.sum())


def max_abs_diff(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float | None:
    """The largest absolute difference over the float outputs both have (None if none).

    NaN on both sides is no difference; NaN on one side only is an infinite one.
    """
    diffs = []
    for name, expected in reference.items():
        got = outputs.get(name)
        if got is None or got.shape != expected.shape or not np.issubdtype(expected.dtype, np.floating):
            continue
        diff = np.abs(got.astype(np.float64) - expected)
        diff[np.isnan(got) & np.isnan(expected)] = 0.0
        diffs.append(float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
    return max(diffs) if diffs else None


def matrix_rows(artifact_path: str | os.PathLike, texts: Sequence[str | bytes],
                reference_outputs: Mapping[str, Mapping[str, np.ndarray]], cache: str | os.PathLike | None = None,
                runtimes: Sequence[str] | None = None, qemu_cpu: str = QEMU_CPU) -> list[dict[str, Any]]:
    """One row per aarch64 runtime: did the artifact run, and are its outputs x86's bits?

    Each runtime is compared with the same runtime on x86: runtimes differ from each
    other on x86 already (other XNNPACK releases), which is not an ISA difference.

    Args:
        artifact_path: the .tflite.
        texts: the texts the references were computed on.
        reference_outputs: x86 outputs by runtime name, e.g. ``{"litert": {...},
            "tflite-runtime": {...}}``; a runtime without one is run but not compared.
        cache: the edge-pqrnn cache folder holding the prepared matrix.
        runtimes: aarch64 runtimes to run (default: all of :func:`aarch64_runtimes`).
        qemu_cpu: the emulated CPU.

    Returns:
        Rows (JSON-ready dicts) with ``runtime``, ``version``, ``isa`` (``aarch64``),
        ``emulator``, ``loaded``, ``error``, ``reference`` (the x86 runtime compared
        with), ``bit_exact_vs_x86``, ``differing_texts``, ``max_abs_diff_vs_x86``,
        ``num_texts`` and ``seconds`` (wall time of the emulated run, start-up
        included). A runtime that cannot run is a row with ``loaded: False`` and the
        reason in ``error``, never an exception.

    Example:
        >>> x86 = {"litert": run_signature(interpreter(path), texts)}  # doctest: +SKIP
        >>> [(r["runtime"], r["differing_texts"]) for r in matrix_rows(path, texts, x86)]  # doctest: +SKIP
        [('litert', 2), ('tflite-runtime', None)]
    """
    rows = []
    for name in aarch64_runtimes() if runtimes is None else runtimes:
        reference = reference_outputs.get(name)
        row: dict[str, Any] = {"runtime": name, "version": "", "isa": "aarch64",
                               "emulator": f"{QEMU} QEMU_CPU={qemu_cpu}", "loaded": False, "error": None,
                               "reference": f"{name} x86_64" if reference is not None else None,
                               "bit_exact_vs_x86": None, "differing_texts": None, "max_abs_diff_vs_x86": None,
                               "num_texts": len(texts), "seconds": None}
        start = time.perf_counter()
        try:
            out = run_aarch64(artifact_path, texts, name, cache=cache, qemu_cpu=qemu_cpu)
        except (EdgePqrnnError, OSError, subprocess.TimeoutExpired) as exc:
            row["error"] = str(exc)
        else:
            row["seconds"] = round(time.perf_counter() - start, 3)
            row["version"] = str(out.pop("__version__", ""))
            row["loaded"] = True
            if reference is not None:
                row["differing_texts"] = differing_texts(out, reference)
                row["bit_exact_vs_x86"] = row["differing_texts"] == 0
                row["max_abs_diff_vs_x86"] = max_abs_diff(out, reference)
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as the Markdown table docs/matrix.md shows."""
    lines = ["| runtime | version | isa | loaded | compared with | bit-exact | texts differing | max abs diff "
             "| seconds | error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        exact = "n/a" if r.get("bit_exact_vs_x86") is None else ("yes" if r["bit_exact_vs_x86"] else "no")
        differing = "" if r.get("differing_texts") is None else f"{r['differing_texts']} / {r['num_texts']}"
        diff = "" if r.get("max_abs_diff_vs_x86") is None else f"{r['max_abs_diff_vs_x86']:.3g}"
        seconds = "" if r.get("seconds") is None else f"{r['seconds']:.2f}"
        lines.append(f"| {r['runtime']} | {r['version']} | {r['isa']} | {'yes' if r['loaded'] else 'no'} | "
                     f"{r.get('reference') or ''} | {exact} | {differing} | {diff} | {seconds} | "
                     f"{(r.get('error') or '').replace('|', '/')} |")
    return "\n".join(lines)


def _table(artifact: str, data: str | None) -> str:
    """The aarch64 rows of an artifact on its dataset's test split, after the x86 rows."""
    from edge_pqrnn.artifact import check
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.runtimes import interpreter, legacy_tflite_runtime_python, run_in_subprocess, run_signature

    name = data or check(artifact).metadata.get("dataset")
    if not name:
        raise ConfigError(f"{artifact} names no dataset: pass --data NAME")
    texts = [ex.text for ex in load_dataset(name).test]
    x86_rows, references = [], {}
    for runtime in aarch64_runtimes():
        start = time.perf_counter()
        if runtime == "litert":
            out = run_signature(interpreter(artifact, "litert"), texts)
            version = importlib.metadata.version("ai-edge-litert")
        else:
            out = run_in_subprocess(legacy_tflite_runtime_python(), aarch64_runtimes()[runtime].module,
                                    artifact, texts)
            version = str(out.pop("__version__", ""))
        references[runtime] = out
        x86_rows.append({"runtime": runtime, "version": version, "isa": "x86_64", "loaded": True,
                         "num_texts": len(texts), "seconds": time.perf_counter() - start})
    return markdown_table([*x86_rows, *matrix_rows(artifact, texts, references)])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge_pqrnn.arm setup [--install] | build-op | table ARTIFACT [--data NAME]``."""
    parser = argparse.ArgumentParser(prog="python -m edge_pqrnn.arm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="prepare the aarch64 rootfs, wheels and op library once")
    setup.add_argument("--install", action="store_true", help="apt-get missing system tools (needs root)")
    commands.add_parser("build-op", help="cross-build the aarch64 op library and print its path")
    table = commands.add_parser("table", help="run an artifact on aarch64 and print the Markdown matrix")
    table.add_argument("artifact")
    table.add_argument("--data", help="dataset whose test split to run (default: the artifact's)")
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            matrix = setup_matrix(install=args.install)
            return 1 if matrix.errors else 0
        if args.command == "build-op":
            print(build_aarch64_library(log=print))
            return 0
        print(_table(args.artifact, args.data))
        return 0
    except EdgePqrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
