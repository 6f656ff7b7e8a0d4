"""aarch64 Linux on an x86 machine: the op library cross-built from the same C sources,
an arm64 Debian rootfs with Python 3.11 run under ``qemu-aarch64-static``, and the
aarch64 wheels of each TFLite runtime: set up once, then :func:`run_aarch64` runs an
artifact there. (:mod:`edge_pqrnn.arm` turns runs into the matrix rows and is the
``python -m edge_pqrnn.arm`` command.)

Everything lives in the cache (``runtimes.cache_dir() / "aarch64"``), never in the repo::

    rootfs/                            arm64 bookworm (minbase, first stage) + python3.11
    site/litert/                       unpacked aarch64 wheels: ai-edge-litert + numpy
    site/tflite-runtime/               tflite-runtime 2.14 + numpy<2
    op/<key>/libpqrnn_projection.so    the cross-built op, keyed by its sources and flags
    ready.json                         the marker: what is ready, and from which inputs

Nothing is installed silently: a missing system tool raises :class:`EdgePqrnnError`
with the exact ``apt-get install`` line, unless ``install=True`` (what CI uses).
DESIGN.md §7 has the facts this follows (pin ``QEMU_CPU=neoverse-n1``: with ``max``,
SVE is on and XNNPACK's int8 results differ from x86).

Example:
    >>> matrix = setup_matrix()  # doctest: +SKIP
    >>> out = run_aarch64("atis.int8.tflite", ["flights to boston"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_pqrnn.errors import ConfigError, EdgePqrnnError
from edge_pqrnn.projection.ops import LIBRARY_NAME
from edge_pqrnn.runtimes.legacy import LEGACY_REQUIREMENTS, cache_dir, run_bytes, run_in_subprocess
from edge_pqrnn.runtimes.toolchain import (CROSS_CC, CROSS_TOOLS, HEADERS, HOST_FLAGS, NATIVE, QEMU, SETUP_FLAGS, SOURCES,
                                           SYSTEM_TOOLS, Log, compile_op_library, run_command, require_tools)

#: The emulated CPU. Bit-exactness with x86 was measured with this one (ARMv8.2 with
#: dot-product, no SVE); ``max`` turns SVE/i8mm on, XNNPACK then picks other int8
#: kernels and the logits differ.
QEMU_CPU = "neoverse-n1"

#: The rootfs's Debian release: bookworm is the one whose python3 is 3.11, the version
#: the aarch64 wheels are downloaded for (whatever the host's release is).
SUITE = "bookworm"
#: The Debian mirror for debootstrap (``EDGE_PQRNN_DEBIAN_MIRROR`` overrides).
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: The packages unpacked over the first-stage rootfs: the interpreter and its stdlib
#: (debootstrap resolves their dependencies: libssl3, libffi8, libexpat1, ...).
PYTHON_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib")
PYTHON_VERSION = "3.11"
#: Wheel tags pip would accept inside the rootfs (glibc 2.36): pip given one
#: ``--platform`` does not fall back to older manylinux tags, and the wheels needed span
#: manylinux2014 (numpy<2), _2_27 (ai-edge-litert) and _2_34 (tflite-runtime 2.14).
PLATFORMS = tuple(f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)) + ("manylinux2014_aarch64",)

#: A /proc/cpuinfo entry for a Neoverse-N1 (MIDR 0x414fd0c1), with the features
#: qemu's neoverse-n1 model reports in AT_HWCAP. qemu-user passes the host's x86
#: /proc/cpuinfo through; XNNPACK's cpuinfo library then fails to initialise (no
#: XNNPACK, and a segfault at exit). qemu's ``-L`` prefix is searched first for every
#: path, so ROOTFS/proc/cpuinfo is what the guest reads.
CPUINFO_ENTRY = """processor\t: {index}
BogoMIPS\t: 50.00
Features\t: fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0c
CPU revision\t: 1

"""

MARKER = "ready.json"
#: Bump when the layout or a step changes: an older marker is then ignored.
MARKER_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Aarch64Runtime:
    """A TFLite runtime as it runs in the emulated aarch64 Python.

    Attributes:
        name: the row's ``runtime`` (the same name as the x86 row).
        module: the module the worker imports (``Interpreter``, ``load_delegate``).
        requirements: what ``pip download`` fetches for it.
    """

    name: str
    module: str
    requirements: tuple[str, ...]


def _host_pin(distribution: str) -> str:
    # The same release as on x86, so that a difference is the ISA's, not a version's.
    try:
        return f"{distribution}=={importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return distribution


def aarch64_runtimes() -> dict[str, Aarch64Runtime]:
    """The aarch64 runtimes, by row name: the one place a runtime is added (docs/matrix.md)."""
    return {
        "litert": Aarch64Runtime("litert", "ai_edge_litert.interpreter", (_host_pin("ai-edge-litert"), "numpy")),
        # Its last release (2.14) does not import beside numpy 2, as on x86 (DESIGN.md §2).
        "tflite-runtime": Aarch64Runtime("tflite-runtime", "tflite_runtime.interpreter", LEGACY_REQUIREMENTS),
    }


@dataclasses.dataclass(frozen=True)
class Matrix:
    """A prepared aarch64 matrix.

    Attributes:
        root: its cache folder.
        rootfs: the arm64 Debian root (qemu's ``-L`` prefix).
        library: the cross-built op library.
        sites: runtime name -> the folder of its unpacked wheels (PYTHONPATH).
        errors: runtime name -> why it is not ready (not prepared, no wheel, ...).
    """

    root: Path
    rootfs: Path
    library: Path
    sites: dict[str, Path]
    errors: dict[str, str]

    @property
    def python(self) -> Path:
        """The aarch64 interpreter inside the rootfs."""
        return self.rootfs / "usr" / "bin" / f"python{PYTHON_VERSION}"


def matrix_root(cache: str | os.PathLike | None = None) -> Path:
    """The aarch64 folder inside the edge-pqrnn cache (default :func:`runtimes.cache_dir`)."""
    return Path(cache if cache is not None else cache_dir()) / "aarch64"


def _build_key() -> str:
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        digest.update(name.encode() + b"\0" + (NATIVE / name).read_bytes() + b"\0")
    digest.update(" ".join((*HOST_FLAGS, *SETUP_FLAGS)).encode())
    return digest.hexdigest()[:16]


def build_aarch64_library(cache: str | os.PathLike | None = None, log: Log = lambda _: None) -> Path:
    """Cross-build the op library for aarch64 Linux from the package's own C sources.

    The flags are setup.py's (``-std=c11 -O2 -fvisibility=hidden -ffreestanding
    -ffp-contract=off``, no ``-ffast-math``: the pool weights must round like numpy's
    float32, and no fused multiply-add on aarch64 only). The result is
    cached under a key of the sources and flags, so an edited source is rebuilt and an
    unchanged one costs nothing.

    Args:
        cache: the edge-pqrnn cache folder (default :func:`runtimes.cache_dir`).
        log: progress lines.

    Returns:
        The path of the aarch64 ``libpqrnn_projection.so``.

    Raises:
        EdgePqrnnError: the cross compiler is missing (the message holds the apt line).
        OpLibraryError: the compiler failed.

    Example:
        >>> build_aarch64_library()  # doctest: +SKIP
        PosixPath('/root/.cache/edge-pqrnn/aarch64/op/3f2a.../libpqrnn_projection.so')
    """
    out = matrix_root(cache) / "op" / _build_key() / LIBRARY_NAME
    if out.is_file():
        return out
    require_tools(CROSS_TOOLS)
    log(f"aarch64 matrix: cross-building {LIBRARY_NAME} with {CROSS_CC}")
    return compile_op_library(CROSS_CC, out, "aarch64")


def _mirror() -> str:
    return os.environ.get("EDGE_PQRNN_DEBIAN_MIRROR", DEFAULT_MIRROR)


def _unpack_deb(deb: Path, target: Path) -> None:
    # Not `dpkg-deb -x`: it replaces the merged-/usr symlinks (lib -> usr/lib) with real
    # folders, and then the dynamic loader is not found at /lib/ld-linux-aarch64.so.1.
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as deb_tar:
        run_command(["tar", "-x", "--keep-directory-symlink", "-C", str(target)], f"cannot unpack {deb.name}",
             stdin=deb_tar.stdout)
    if deb_tar.returncode != 0:
        raise EdgePqrnnError(f"cannot read {deb}: dpkg-deb exit {deb_tar.returncode}")


def _write_cpuinfo(rootfs: Path) -> None:
    proc = rootfs / "proc"
    if proc.is_symlink():  # debootstrap links proc -> /proc: qemu would then read the host's
        proc.unlink()
    proc.mkdir(exist_ok=True)
    count = os.cpu_count() or 1
    (proc / "cpuinfo").write_text("".join(CPUINFO_ENTRY.format(index=i) for i in range(count)))


def _guest_env(site: Path | None, qemu_cpu: str = QEMU_CPU) -> dict[str, str]:
    # A clean environment: the host's PYTHONPATH, PYTHONHOME or LD_LIBRARY_PATH would
    # point the aarch64 Python at x86 files.
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "QEMU_CPU": qemu_cpu, "PYTHONNOUSERSITE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def _guest_python_version(rootfs: Path, qemu: str) -> str:
    python = rootfs / "usr" / "bin" / f"python{PYTHON_VERSION}"
    proc = run_command([qemu, "-L", str(rootfs), str(python), "-c", "import platform; print(platform.python_version())"],
                "the aarch64 python3.11 does not start under qemu", env=_guest_env(None), timeout=120)
    return proc.stdout.strip()


def _prepare_rootfs(root: Path, qemu: str) -> dict[str, str]:
    """Bootstrap the arm64 rootfs into root/rootfs; return its marker entry."""
    partial = root / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    # --foreign: only the first stage, which needs no arm64 code to run (the second
    # stage would run maintainer scripts through binfmt_misc, not set up in containers).
    run_command(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", f"--include={','.join(PYTHON_PACKAGES)}",
          SUITE, str(partial), _mirror()], f"debootstrap of arm64 {SUITE} from {_mirror()} failed "
         "(set EDGE_PQRNN_DEBIAN_MIRROR for another mirror)")
    # The first stage unpacks only the required set; the --include packages and their
    # dependencies ("base") are downloaded but left as .debs.
    meta = partial / "debootstrap"
    debs = dict(line.split(maxsplit=1) for line in (meta / "debpaths").read_text().splitlines() if line.strip())
    for package in (meta / "base").read_text().split():
        _unpack_deb(partial / debs[package].lstrip("/"), partial)
    # The .debs and apt's package lists (~110 MB) only served debootstrap's second stage,
    # which never runs here.
    for leftover in [*(partial / "var/cache/apt/archives").glob("*.deb"), *(partial / "var/lib/apt/lists").glob("*_*")]:
        leftover.unlink()
    _write_cpuinfo(partial)
    version = _guest_python_version(partial, qemu)
    shutil.rmtree(root / "rootfs", ignore_errors=True)
    os.replace(partial, root / "rootfs")
    return {"suite": SUITE, "mirror": _mirror(), "python": version}


def _prepare_site(root: Path, runtime: Aarch64Runtime) -> dict[str, Any]:
    """Download the runtime's aarch64 wheels and unpack them into root/site/NAME."""
    wheels = root / "wheels" / runtime.name
    partial = root / "site" / f"{runtime.name}.partial"
    for folder in (wheels, partial):
        shutil.rmtree(folder, ignore_errors=True)
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    run_command([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
          *platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp",
          "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "-d", str(wheels), *runtime.requirements],
         f"no aarch64 cp311 wheels for {' '.join(runtime.requirements)}")
    names = sorted(p.name for p in wheels.glob("*.whl"))
    for name in names:  # a wheel is a zip laid out as site-packages: unpacking is installing
        with zipfile.ZipFile(wheels / name) as wheel:
            wheel.extractall(partial)
    shutil.rmtree(wheels)
    site = root / "site" / runtime.name
    shutil.rmtree(site, ignore_errors=True)
    os.replace(partial, site)
    return {"requirements": list(runtime.requirements), "wheels": names}


def _read_marker(root: Path) -> dict[str, Any]:
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return marker if marker.get("format") == MARKER_FORMAT else {}


def _write_marker(root: Path, marker: dict[str, Any]) -> None:
    tmp = root / f".{MARKER}.partial"
    tmp.write_text(json.dumps({**marker, "format": MARKER_FORMAT}, indent=1) + "\n")
    os.replace(tmp, root / MARKER)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    # Two setups at once (parallel test runs) must not bootstrap into the same folders.
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _chosen_runtimes(known: Mapping[str, Aarch64Runtime], runtimes: Sequence[str] | None) -> list[str]:
    chosen = list(known) if runtimes is None else list(runtimes)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ConfigError(f"unknown aarch64 runtimes {unknown}; choose from {', '.join(known)}")
    return chosen


def _run_steps(steps: Sequence[tuple[str, Callable[[], str | None]]], log: Log) -> None:
    """Run the setup steps in order with a numbered progress line and the time of each."""
    for i, (title, step) in enumerate(steps, 1):
        start = time.perf_counter()
        log(f"aarch64 matrix [{i}/{len(steps)}] {title}...")
        error = step()
        log(f"aarch64 matrix [{i}/{len(steps)}] {'failed: ' + error if error else 'done'} "
            f"({time.perf_counter() - start:.1f} s)")


def setup_matrix(cache: str | os.PathLike | None = None, log: Log = print, install: bool = False,
                 runtimes: Sequence[str] | None = None) -> Matrix:
    """Prepare the aarch64 matrix once: tools, op library, rootfs, runtime wheels.

    Each step is skipped when the marker says it is ready from the same inputs (a warm
    run takes about a second); progress lines say what runs and how long it took. A
    runtime whose wheels cannot be had (e.g. no aarch64 build for it) is not an error
    here: it is listed in ``Matrix.errors`` and its row will say why.

    Args:
        cache: the edge-pqrnn cache folder (default :func:`runtimes.cache_dir`).
        log: progress lines.
        install: install missing system tools with apt-get (CI); otherwise their absence
            raises with the exact ``apt-get install`` line.
        runtimes: which aarch64 runtimes to prepare (default: all of :func:`aarch64_runtimes`).

    Returns:
        The prepared :class:`Matrix`.

    Raises:
        EdgePqrnnError: a system tool is missing (and ``install`` is False), or the
            rootfs could not be bootstrapped (the message holds the failing line).
        ConfigError: an unknown runtime name.

    Example:
        >>> setup_matrix(install=True).errors  # doctest: +SKIP
        {}
    """
    known = aarch64_runtimes()
    chosen = _chosen_runtimes(known, runtimes)
    require_tools(SYSTEM_TOOLS, install=install, log=log)
    root = matrix_root(cache)
    qemu = shutil.which(QEMU) or QEMU
    with _locked(root):
        marker = _read_marker(root)
        # Each step returns None when done, or why its runtime is not ready.
        steps: list[tuple[str, Callable[[], str | None]]] = []

        def build() -> None:
            build_aarch64_library(cache)

        def rootfs() -> None:
            marker["rootfs"] = _prepare_rootfs(root, qemu)
            marker.pop("sites", None)  # the wheels were unpacked for the old rootfs's Python
            _write_marker(root, marker)

        def site(runtime: Aarch64Runtime) -> str | None:
            try:
                entry = _prepare_site(root, runtime)
            except EdgePqrnnError as exc:
                # Recorded, so that its rows give the reason; the next setup retries it.
                entry = {"requirements": list(runtime.requirements), "error": str(exc)}
            marker.setdefault("sites", {})[runtime.name] = entry
            _write_marker(root, marker)
            return entry.get("error")

        steps.append((f"op library for aarch64 ({CROSS_CC})", build))
        rootfs_ready = (marker.get("rootfs", {}).get("suite") == SUITE
                        and (root / "rootfs" / "usr" / "bin" / f"python{PYTHON_VERSION}").is_file())
        if not rootfs_ready:
            steps.append((f"arm64 {SUITE} rootfs (debootstrap minbase + python{PYTHON_VERSION})", rootfs))
        for name in chosen:
            runtime = known[name]
            entry = marker.get("sites", {}).get(name, {}) if rootfs_ready else {}
            if (entry.get("requirements") != list(runtime.requirements) or "error" in entry
                    or not (root / "site" / name).is_dir()):
                steps.append((f"aarch64 wheels for {name} ({' '.join(runtime.requirements)})",
                              functools.partial(site, runtime)))
        _run_steps(steps, log)
        _write_cpuinfo(root / "rootfs")  # cheap, and follows this machine's core count
    matrix = load_matrix(cache)
    log(f"aarch64 matrix ready in {matrix.root}"
        + "".join(f"\n  not ready: {name}: {why}" for name, why in matrix.errors.items() if name in chosen))
    return matrix


def load_matrix(cache: str | os.PathLike | None = None) -> Matrix:
    """The matrix as :func:`setup_matrix` left it; downloads nothing.

    The op library is (re)built when its sources changed since the last build, which
    needs only the cross compiler.

    Raises:
        EdgePqrnnError: the rootfs is not prepared (the message says how to prepare it),
            or the cross compiler is missing.
    """
    root = matrix_root(cache)
    marker = _read_marker(root)
    rootfs = root / "rootfs"
    if "rootfs" not in marker or not rootfs.is_dir():
        raise EdgePqrnnError(f"the aarch64 matrix is not prepared in {root}: run `python -m edge_pqrnn.arm setup` "
                             "(add --install to apt-get the system tools) or call edge_pqrnn.arm.setup_matrix()")
    sites, errors = {}, {}
    for name, runtime in aarch64_runtimes().items():
        entry = marker.get("sites", {}).get(name)
        if entry is not None and "error" in entry:
            errors[name] = entry["error"]
        elif entry is None or not (root / "site" / name).is_dir():
            errors[name] = f"{name} is not prepared for aarch64: run `python -m edge_pqrnn.arm setup`"
        elif entry.get("requirements") != list(runtime.requirements):
            errors[name] = (f"{name} for aarch64 was prepared for {' '.join(entry['requirements'])}, not "
                            f"{' '.join(runtime.requirements)}: run `python -m edge_pqrnn.arm setup` again")
        else:
            sites[name] = root / "site" / name
    return Matrix(root=root, rootfs=rootfs, library=build_aarch64_library(cache), sites=sites, errors=errors)


def run_aarch64(model_path: str | os.PathLike, texts: Sequence[str | bytes], runtime: str = "litert",
                cache: str | os.PathLike | None = None, qemu_cpu: str = QEMU_CPU,
                timeout: float = 600, xnnpack: bool = True) -> dict[str, np.ndarray]:
    """Run texts through a .tflite in an emulated aarch64 Python with the aarch64 op.

    Args:
        model_path: the .tflite file (an artifact, or a projection-only model).
        texts: the batch (str or raw bytes).
        runtime: ``"litert"`` or ``"tflite-runtime"``.
        cache: the edge-pqrnn cache folder holding the prepared matrix.
        qemu_cpu: the emulated CPU; only the default is known to be bit-exact with x86.
        timeout: seconds before the emulated run is abandoned.
        xnnpack: keep the runtime's default XNNPACK delegate (False: builtin kernels).

    Returns:
        The signature's outputs by name, plus ``__version__`` (the runtime's version).

    Raises:
        EdgePqrnnError: the matrix or this runtime is not prepared, qemu is missing, or
            the emulated run failed (the message holds its last error line).
        ConfigError: an unknown runtime name.
        subprocess.TimeoutExpired: the run took longer than ``timeout``.

    Example:
        >>> run_aarch64("atis.int8.tflite", ["flights to boston"])["intent_logits"].shape  # doctest: +SKIP
        (1, 22)
    """
    known = aarch64_runtimes()
    if runtime not in known:
        raise ConfigError(f"unknown aarch64 runtime {runtime!r}; choose from {', '.join(known)}")
    require_tools({QEMU: SYSTEM_TOOLS[QEMU]})
    matrix = load_matrix(cache)
    if runtime not in matrix.sites:
        raise EdgePqrnnError(matrix.errors[runtime])
    return run_in_subprocess(str(matrix.python), known[runtime].module, os.fspath(model_path), texts,
                             library=str(matrix.library), env=_guest_env(matrix.sites[runtime], qemu_cpu),
                             timeout=timeout, command_prefix=[shutil.which(QEMU) or QEMU, "-L", str(matrix.rootfs)],
                             xnnpack=xnnpack)


def run_aarch64_bytes(data: bytes, runtime: str, texts: Sequence[str | bytes], timeout: float) -> tuple[dict, str]:
    """Run .tflite bytes on aarch64 (a temp file for the emulated Python to open).

    Returns:
        ``(outputs by name, the runtime's version)``.
    """
    return run_bytes(data, lambda path: run_aarch64(path, texts, runtime, timeout=timeout))
