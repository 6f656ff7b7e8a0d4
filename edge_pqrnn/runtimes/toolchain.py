"""The system tools edge-pqrnn's native builds and the aarch64 matrix need, and the one
place the op library's C flags meet a compiler outside setup.py (the aarch64 matrix and
the prebuilt wheels of both ISAs build through :func:`compile_op_library`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_pqrnn.errors import EdgePqrnnError, OpLibraryError

Log = Callable[[str], None]

QEMU = "qemu-aarch64-static"
CROSS_CC = "aarch64-linux-gnu-gcc"

#: System tools (an executable, or a file for the cross libc) -> the Debian package.
#: libc6-dev-arm64-cross is only a Recommends of the cross compiler, but linking a
#: shared object needs its crti.o, so it is checked and installed explicitly.
CROSS_TOOLS = {CROSS_CC: "gcc-aarch64-linux-gnu", "/usr/aarch64-linux-gnu/lib/crti.o": "libc6-dev-arm64-cross"}
SYSTEM_TOOLS = {QEMU: "qemu-user-static", **CROSS_TOOLS, "debootstrap": "debootstrap"}

NATIVE = Path(__file__).resolve().parents[1] / "projection" / "native"
SOURCES = ("projection_core.c", "projection_op.c", "projection_ort.c", "fo_pool.c", "int_matmul.c")
HEADERS = ("projection_core.h", "tflite_abi.h", "ort_abi.h", "unicode_data.h", "fo_pool.h",
           "int_matmul.h", "pqrnn_common.h")
#: setup.py's ``extra_compile_args`` (tests/test_arm.py fails if the two drift apart).
SETUP_FLAGS = ("-std=c11", "-O2", "-fvisibility=hidden", "-ffreestanding", "-ffp-contract=off", "-Wall", "-Wextra")
#: What setuptools adds to them on the host: ``-fPIC`` for a shared object, and from
#: CPython's sysconfig CFLAGS ``-DNDEBUG -fwrapv``; the same here, so both builds
#: compile the same program.
HOST_FLAGS = ("-fPIC", "-DNDEBUG", "-fwrapv")


def apt_install_line(packages: Sequence[str]) -> str:
    """The command that installs ``packages`` (what error messages tell the user to run)."""
    return "apt-get install -y --no-install-recommends " + " ".join(packages)


def missing_packages(tools: Mapping[str, str] = SYSTEM_TOOLS) -> list[str]:
    """The Debian packages of ``tools`` (tool -> package) that are not on this machine."""
    missing = []
    for tool, package in tools.items():
        present = os.path.exists(tool) if os.path.isabs(tool) else shutil.which(tool) is not None
        if not present and package not in missing:
            missing.append(package)
    return missing


def require_tools(tools: Mapping[str, str] = SYSTEM_TOOLS, install: bool = False, log: Log = print) -> None:
    """Check that the system tools are there; install them only when asked.

    Args:
        tools: tool (executable name or absolute file) -> Debian package.
        install: run ``apt-get update`` and ``apt-get install`` for the missing ones.
        log: progress lines.

    Raises:
        EdgePqrnnError: a tool is missing and ``install`` is False (the message holds the
            exact ``apt-get install`` line), or the installation failed.
    """
    packages = missing_packages(tools)
    if not packages:
        return
    line = apt_install_line(packages)
    if not install:
        raise EdgePqrnnError(
            f"the aarch64 matrix needs {', '.join(packages)}: run `{line}` as root (after `apt-get update` on a "
            "fresh machine), or prepare it with install=True (`python -m edge_pqrnn.arm setup --install`)")
    if os.geteuid() != 0:
        raise EdgePqrnnError(f"installing {', '.join(packages)} needs root: run `sudo {line}`")
    log(f"aarch64 matrix: installing {' '.join(packages)} with apt-get...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        run_command(cmd, f"`{' '.join(cmd)}` failed", env=env)
    still = missing_packages(tools)
    if still:
        raise EdgePqrnnError(f"apt-get ran but {', '.join(still)} is still missing: run `{apt_install_line(still)}`")


def run_command(cmd: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its last output line (the useful one)."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + "\n" + proc.stdout).strip().splitlines() if ln.strip()]
        raise EdgePqrnnError(f"{what} (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
    return proc


def compile_op_library(cc: str, out: Path, isa: str) -> Path:
    """Compile the op library with ``cc`` and setup.py's flags (plus what setuptools adds).

    The one place the flags meet a compiler outside setup.py: the aarch64 matrix and the
    prebuilt wheels of both ISAs (:mod:`edge_pqrnn.wheels`) build through it.

    Args:
        cc: the C compiler (``gcc``, ``aarch64-linux-gnu-gcc``).
        out: the shared object to write (atomically: temp file + rename).
        isa: the target, for the error message.

    Returns:
        ``out``.

    Raises:
        OpLibraryError: the compiler failed (the message holds its last error line).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    cmd = [cc, *HOST_FLAGS, *SETUP_FLAGS, f"-I{NATIVE}", "-shared", "-o", str(tmp),
           *(str(NATIVE / s) for s in SOURCES)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        errors = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.strip().splitlines()
        raise OpLibraryError(f"building the op library for {isa} with {cc} failed: {errors[-1] if errors else ''}")
    os.replace(tmp, out)  # atomic: a concurrent build never sees half a library
    return out
