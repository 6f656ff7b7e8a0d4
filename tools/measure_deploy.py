"""Measure the slim install against the full one, side by side (docs/deploy.md).

Installed size (MB of site-packages) of two venvs, ``import edge_pqrnn.artifact`` time
and the wall time from process start to the first prediction (``edge-pqrnn predict``),
interleaved over rounds so that the machine's load hits every row alike; medians. An
aarch64 site (the wheel installed under qemu, as tests/test_deploy.py does) adds
emulated rows.

    python tools/measure_deploy.py --base /tmp/venv-base --full /tmp/venv-train \
        --artifact atis.int8.tflite [--aarch64-site DIR] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_pqrnn.runtimes import aarch64

TEXT = "show me flights from boston to denver tomorrow"
IMPORT = ("import time; t = time.perf_counter(); import edge_pqrnn.artifact; "
          "print(time.perf_counter() - t, edge_pqrnn.__file__)")
ROOT = str(Path(__file__).resolve().parents[1])
IMPORT_TF = "import time; t = time.perf_counter(); import tensorflow; print(time.perf_counter() - t)"


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def megabytes(folder: Path) -> float:
    """Bytes of the files under folder (not following links), in MB (10^6)."""
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


#: The working directory of every run: an empty one, so that ``-m``/``-c`` (which put
#: it first on sys.path) cannot pick up a source tree instead of the installed package.
CWD = tempfile.mkdtemp(prefix="measure-deploy-")


def wall(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=CWD)
    return time.perf_counter() - start


def printed(cmd: list[str], env: dict) -> float:
    """The seconds the command printed first; a second word, a module path, must be installed code."""
    words = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=CWD).stdout.split()
    if len(words) > 1 and words[1].startswith(ROOT):
        raise SystemExit(f"{cmd[0]} imported the source tree ({words[1]}), not the installed package")
    return float(words[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="venv with the wheel, no extra")
    parser.add_argument("--full", type=Path, required=True, help="venv with the wheel and [train]")
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--aarch64-site", type=Path, help="folder the aarch64 wheel was pip-installed into")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    envs = {name: {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
                   "TF_CPP_MIN_LOG_LEVEL": "2"} for name, venv in (("base", args.base), ("full", args.full))}
    python = {name: str(venv / "bin" / "python") for name, venv in (("base", args.base), ("full", args.full))}
    rows: dict[str, list[float]] = {}
    cases = {
        "base: import edge_pqrnn.artifact": lambda: printed([python["base"], "-c", IMPORT], envs["base"]),
        "full: import edge_pqrnn.artifact": lambda: printed([python["full"], "-c", IMPORT], envs["full"]),
        "full: import tensorflow": lambda: printed([python["full"], "-c", IMPORT_TF], envs["full"]),
        "base: predict (litert), x86_64 native": lambda: wall(
            [python["base"], "-m", "edge_pqrnn.cli", "predict", args.artifact, TEXT], envs["base"]),
        "full: predict (litert), x86_64 native": lambda: wall(
            [python["full"], "-m", "edge_pqrnn.cli", "predict", args.artifact, TEXT], envs["full"]),
        "full: predict --runtime tflite (tf.lite), x86_64 native": lambda: wall(
            [python["full"], "-m", "edge_pqrnn.cli", "predict", "--runtime", "tflite", args.artifact, TEXT],
            envs["full"]),
    }
    if args.aarch64_site:
        matrix = aarch64.load_matrix()
        qemu = [shutil.which(aarch64.QEMU) or aarch64.QEMU, "-L", str(matrix.rootfs), str(matrix.python)]
        guest = aarch64._guest_env(args.aarch64_site)
        cases["base: import edge_pqrnn.artifact, aarch64 under qemu"] = lambda: printed([*qemu, "-c", IMPORT], guest)
        cases["base: predict (litert), aarch64 under qemu"] = lambda: wall(
            [*qemu, "-m", "edge_pqrnn.cli", "predict", args.artifact, TEXT], guest)
    for name, case in cases.items():  # one warm-up each: page cache and .pyc files
        case()
    for _ in range(args.rounds):
        for name, case in cases.items():
            rows.setdefault(name, []).append(case())

    sizes = {name: megabytes(site_packages(venv)) for name, venv in (("base", args.base), ("full", args.full))}
    print("| install | site-packages MB |\n|---|---|")
    for name, size in sizes.items():
        print(f"| {name} | {size:.1f} |")
    print(f"full / base = {sizes['full'] / sizes['base']:.1f}x\n")
    print(f"| measurement (median of {args.rounds}, s) | seconds | min | max |\n|---|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    med = {name: statistics.median(values) for name, values in rows.items()}
    base = med["base: predict (litert), x86_64 native"]
    print(f"\nfull (litert) / base = {med['full: predict (litert), x86_64 native'] / base:.2f}x; "
          f"full (tf.lite) / base = {med['full: predict --runtime tflite (tf.lite), x86_64 native'] / base:.2f}x")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
