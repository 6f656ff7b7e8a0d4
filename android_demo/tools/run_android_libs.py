"""Run the Android builds of libpqrnn_demo.so against the Python reference outputs.

The arm64-v8a library runs in the emulated aarch64 Python of edge_pqrnn.arm (qemu-user,
QEMU_CPU pinned, ai-edge-litert's aarch64 wheel) and the x86_64 one in this Python, each
loaded as the op-provider delegate with load_delegate(), exactly as the package's own op
library is. A small glibc shim stands in for bionic's libc.so/liblog.so (shim/glibc_shim.c).
Their outputs are compared bit for bit with the x86_64 outputs of the package's own op
library (edge_pqrnn.artifact.Artifact.run), and the arm64 ones are written for the JVM
tests, which decode them with the app's IntentParser.

Usage: python android_demo/tools/run_android_libs.py [--reference DIR] [--out FILE]
Needs: build_native.sh run, tools/make_reference.py run, and the aarch64 matrix
(`python -m edge_pqrnn.arm setup --install`; ci.sh does it). Exit 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn import arm
from edge_pqrnn.runtimes import aarch64
from edge_pqrnn.artifact import Artifact
from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.runtimes import run_in_subprocess

DEMO = Path(__file__).resolve().parents[1]
SHIM_SOURCE = DEMO / "tools" / "shim" / "glibc_shim.c"
#: ISA -> (the Android library, the C compiler for the shim)
TARGETS = {"aarch64": (DEMO / "app/src/main/jniLibs/arm64-v8a/libpqrnn_demo.so", aarch64.CROSS_CC),
           "x86_64": (DEMO / "app/src/main/jniLibs/x86_64/libpqrnn_demo.so", "gcc")}


def build_shim(isa: str, out: Path) -> Path:
    """The folder holding libc.so and liblog.so for ``isa`` (rebuilt every run: ~0.2 s)."""
    compiler = TARGETS[isa][1]
    if shutil.which(compiler) is None:
        raise EdgePqrnnError(f"{compiler} not found: apt-get install -y --no-install-recommends "
                             f"{'gcc-aarch64-linux-gnu libc6-dev-arm64-cross' if isa == 'aarch64' else 'gcc'}")
    folder = out / f"shim-{isa}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, define in (("libc.so", "SHIM_LIBC"), ("liblog.so", "SHIM_LIBLOG")):
        cmd = [compiler, "-shared", "-fPIC", "-O2", f"-D{define}", f"-Wl,-soname,{name}", "-Wl,--no-as-needed",
               "-o", str(folder / name), str(SHIM_SOURCE), "-lc"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgePqrnnError(f"building the {isa} glibc shim failed: {proc.stderr.strip()[-300:]}")
    return folder


def run_target(isa: str, model: Path, texts: list[str], shim: Path) -> dict[str, np.ndarray]:
    """The artifact's outputs with the Android library of ``isa`` as the op."""
    library = TARGETS[isa][0]
    if not library.is_file():
        raise EdgePqrnnError(f"{library} is missing: run android_demo/build_native.sh")
    if isa == "x86_64":
        env = {**os.environ, "LD_LIBRARY_PATH": str(shim)}
        return run_in_subprocess(sys.executable, "ai_edge_litert.interpreter", str(model), texts,
                                 library=str(library), env=env)
    matrix = aarch64.load_matrix()
    if "litert" not in matrix.sites:
        raise EdgePqrnnError(matrix.errors.get("litert", "the aarch64 litert site is not prepared: run "
                                                         "`python -m edge_pqrnn.arm setup --install`"))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "QEMU_CPU": aarch64.QEMU_CPU, "PYTHONNOUSERSITE": "1",
           "PYTHONPATH": str(matrix.sites["litert"]), "LD_LIBRARY_PATH": str(shim), "TF_CPP_MIN_LOG_LEVEL": "2"}
    qemu = shutil.which(aarch64.QEMU) or aarch64.QEMU
    return run_in_subprocess(str(matrix.python), "ai_edge_litert.interpreter", str(model), texts,
                             library=str(library), env=env, command_prefix=[qemu, "-L", str(matrix.rootfs)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=DEMO / "build" / "reference")
    parser.add_argument("--out", type=Path, default=DEMO / "build" / "reference" / "arm64.json")
    args = parser.parse_args(argv)
    model = args.reference / "model.tflite"
    texts = [c["text"] for c in json.loads((args.reference / "expected.json").read_text())["cases"]]
    with Artifact.load(model) as artifact:  # the package's own x86_64 op library
        x86 = artifact.run(texts)
    ok = True
    arm64_outputs: dict[str, np.ndarray] = {}
    summary = ""
    for isa in TARGETS:
        start = time.perf_counter()
        try:
            out = run_target(isa, model, texts, build_shim(isa, args.reference.parent))
        except (EdgePqrnnError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"run_android_libs: {isa}: FAILED: {exc}")
            ok = False
            continue
        seconds = time.perf_counter() - start
        out.pop("__version__", None)
        differing = arm.differing_texts(out, x86)
        diff = arm.max_abs_diff(out, x86)
        line = (f"bit-exact with x86_64 on {len(texts) - differing}/{len(texts)} texts (max abs diff {diff:.3g}), "
                f"{seconds:.1f} s")
        print(f"run_android_libs: {isa} Android libpqrnn_demo.so"
              f"{' under qemu ' + aarch64.QEMU_CPU if isa == 'aarch64' else ' (host)'}: {line}")
        ok = ok and differing == 0
        if isa == "aarch64":
            arm64_outputs, summary = out, line
    if arm64_outputs:
        cases: list[dict[str, Any]] = []
        for i in range(len(texts)):
            slots = arm64_outputs.get("slot_logits")
            cases.append({"intent_logits": arm64_outputs["intent_logits"][i].tolist(),
                          "slot_logits": [] if slots is None else slots[i].tolist(),
                          "num_tokens": int(arm64_outputs["num_tokens"][i])})
        args.out.write_text(json.dumps({"summary": summary, "outputs": cases}) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
