"""Prebuilt manylinux wheels with the op library inside, for x86_64 and aarch64 Linux.

The wheels hold the package and a ready ``libpqrnn_projection.so`` compiled by
:func:`edge_pqrnn.runtimes.toolchain.compile_op_library` (setup.py's flags, the matrix's build), so
installing one needs no compiler. The library uses no Python C API: one ``py3-none``
wheel per platform serves every CPython 3.11+. Each wheel is checked with auditwheel
(its manylinux policy and external libraries) and tagged for that policy. The sdist
is built first and both wheels are built from it, so the sdist is what ships the sources.

``tools/build_wheels.sh`` is the command; ``python -m edge_pqrnn.wheels deps`` fills the
wheelhouse of the base install's dependencies that the install tests use offline.

Example:
    >>> built = build_all("dist")  # doctest: +SKIP
    >>> [(w.isa, w.policy) for w in built.wheels]  # doctest: +SKIP
    [('x86_64', 'manylinux_2_17_x86_64'), ('aarch64', 'manylinux_2_17_aarch64')]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edge_pqrnn.runtimes import aarch64, toolchain
from edge_pqrnn.errors import EdgePqrnnError
from edge_pqrnn.projection.ops import LIBRARY_NAME
from edge_pqrnn.runtimes import cache_dir

ROOT = Path(__file__).resolve().parents[1]
#: ISA -> (C compiler, Debian package of it). The host is x86_64 Linux; aarch64 is the
#: matrix's cross compiler.
COMPILERS = {"x86_64": ("x86_64-linux-gnu-gcc", "gcc"), "aarch64": (toolchain.CROSS_CC, "gcc-aarch64-linux-gnu")}
#: The base install's packages, pinned to this machine's versions in the wheelhouse (the
#: same runtime on both sides of a bit-for-bit comparison).
BASE_REQUIREMENTS = ("numpy", "ai-edge-litert", "click", "flatbuffers")
#: In a wheelhouse: the pins it was downloaded for (a stale one is not used).
PINS_FILE = "pins.txt"


@dataclasses.dataclass(frozen=True)
class Wheel:
    """One built platform wheel.

    Attributes:
        isa: ``x86_64`` or ``aarch64``.
        path: the manylinux wheel.
        policy: the manylinux policy auditwheel found (the wheel's platform tag).
        external_libraries: shared libraries it needs from the system, beyond the policy's
            (auditwheel's list; empty for a wheel that fits its policy as it is).
        libraries: the system libraries the op library links against (DT_NEEDED).
        versioned_symbols: auditwheel's line on the system libraries' symbol versions used.
    """

    isa: str
    path: Path
    policy: str
    external_libraries: tuple[str, ...]
    libraries: tuple[str, ...]
    versioned_symbols: str


@dataclasses.dataclass(frozen=True)
class Built:
    """What :func:`build_all` made: the sdist and one wheel per ISA."""

    sdist: Path
    wheels: tuple[Wheel, ...]

    def to_dict(self) -> dict:
        """JSON-ready (paths as file names)."""
        return {"sdist": self.sdist.name,
                "wheels": [{**dataclasses.asdict(w), "path": w.path.name,
                            "external_libraries": list(w.external_libraries), "libraries": list(w.libraries)}
                           for w in self.wheels]}


def build_sdist(out_dir: str | os.PathLike) -> Path:
    """Build the source distribution (``python -m build --sdist``, no network).

    Raises:
        EdgePqrnnError: ``build`` is not installed (it is in the dev extra) or failed.
    """
    out = Path(out_dir)
    before = set(out.glob("*.tar.gz"))
    toolchain.run_command([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(ROOT)],
             "building the sdist failed (`build` is in the dev extra: pip install -e '.[dev]')")
    made = sorted(set(out.glob("*.tar.gz")) - before) or sorted(out.glob("edge_pqrnn-*.tar.gz"))
    return made[-1]


def auditwheel_show(wheel: Path) -> dict:
    """auditwheel's analysis of a wheel: its policy and external libraries.

    Returns:
        ``{"policy": "manylinux_2_5_x86_64", "external_libraries": [...] (to graft: none
        wanted), "versioned_symbols": "libc.so.6 with versions {'GLIBC_2.2.5'}"}``.

    Raises:
        EdgePqrnnError: auditwheel is not installed, or found no manylinux policy.
    """
    if not _has_module("auditwheel"):
        raise EdgePqrnnError("auditwheel is not installed: pip install auditwheel (it is in the dev extra)")
    proc = toolchain.run_command([sys.executable, "-m", "auditwheel", "show", str(wheel)], f"auditwheel show {wheel.name} failed")
    text = " ".join(proc.stdout.split())
    marker = 'is consistent with the following platform tag: "'
    if marker not in text:
        raise EdgePqrnnError(f"auditwheel found no manylinux policy for {wheel.name}: {text[:300]}")
    policy = text.split(marker, 1)[1].split('"', 1)[0]
    versioned = text.split("system-provided shared libraries:", 1)[1].split(" The ", 1)[0].strip() \
        if "system-provided shared libraries:" in text else ""
    external: list[str] = []
    if "requires no external shared libraries" not in text:
        listed = text.split("required by the wheel:", 1)[-1]
        external = sorted({word.strip("{}',:\"") for word in listed.split() if ".so" in word})
    return {"policy": policy, "external_libraries": external, "versioned_symbols": versioned}


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _needed(library: Path) -> tuple[str, ...]:
    """The DT_NEEDED entries of a shared object (pyelftools comes with auditwheel)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(library, "rb") as f:
        sections = [s for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection)]
        return tuple(t.needed for s in sections for t in s.iter_tags() if t.entry.d_tag == "DT_NEEDED")


def build_wheel(isa: str, sdist: Path, out_dir: str | os.PathLike) -> Wheel:
    """Build one platform wheel from the sdist with the op library compiled for ``isa``.

    Args:
        isa: ``x86_64`` or ``aarch64``.
        sdist: the source distribution (:func:`build_sdist`).
        out_dir: where the manylinux wheel goes.

    Returns:
        The wheel, retagged for the policy auditwheel found.

    Raises:
        EdgePqrnnError: the compiler, pip or auditwheel failed or is missing (the
            message holds the apt or pip line).
    """
    cc, package = COMPILERS[isa]
    toolchain.require_tools({cc: package})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"edge-pqrnn-wheel-{isa}-") as tmp:
        library = toolchain.compile_op_library(cc, Path(tmp) / "op" / LIBRARY_NAME, isa)
        env = {**os.environ, "EDGE_PQRNN_PREBUILT_OP": str(library), "EDGE_PQRNN_WHEEL_PLATFORM": f"linux_{isa}"}
        toolchain.run_command([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                  "--no-build-isolation", "-w", str(Path(tmp) / "raw"), str(sdist)],
                 f"building the {isa} wheel from {sdist.name} failed", env=env)
        raw = next((Path(tmp) / "raw").glob("*.whl"))
        shown = auditwheel_show(raw)
        if shown["external_libraries"]:
            raise EdgePqrnnError(f"the {isa} op library needs {', '.join(shown['external_libraries'])} beyond "
                                 f"{shown['policy']}: it must link libc only")
        # Nothing to graft (the library needs libc alone): retag for the policy found, then
        # check that auditwheel agrees with the new tag.
        retagged = toolchain.run_command([sys.executable, "-m", "wheel", "tags", "--platform-tag", shown["policy"], str(raw)],
                            f"retagging {raw.name} failed (`wheel` is in the dev extra)").stdout.split()[-1]
        target = out / retagged
        shutil.move(str(raw.parent / retagged), target)
        if auditwheel_show(target)["policy"] != shown["policy"]:
            raise EdgePqrnnError(f"auditwheel does not confirm {target.name}")
        return Wheel(isa, target, shown["policy"], tuple(shown["external_libraries"]), _needed(library),
                     shown["versioned_symbols"])


def build_all(out_dir: str | os.PathLike = ROOT / "dist", isas: Sequence[str] = tuple(COMPILERS),
              log=print) -> Built:
    """The sdist and one manylinux wheel per ISA, with ``wheels.json`` describing them.

    Args:
        out_dir: where the sdist, the wheels and ``wheels.json`` go.
        isas: which platform wheels to build.
        log: progress lines.

    Raises:
        EdgePqrnnError: a step failed (the message says which and how to fix it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sdist = build_sdist(out)
    log(f"sdist: {sdist}")
    wheels = []
    for isa in isas:
        wheel = build_wheel(isa, sdist, out)
        log(f"{isa}: {wheel.path}\n  auditwheel: {wheel.policy}; links {', '.join(wheel.libraries) or 'nothing'} "
            f"({wheel.versioned_symbols or 'no versioned symbols'}); external libraries to graft: "
            f"{', '.join(wheel.external_libraries) or 'none'}")
        wheels.append(wheel)
    built = Built(sdist, tuple(wheels))
    (out / "wheels.json").write_text(json.dumps(built.to_dict(), indent=1) + "\n")
    return built


def wheelhouse(isa: str, cache: str | os.PathLike | None = None) -> Path:
    """Where :func:`prepare_wheelhouse` puts the base install's dependency wheels for ``isa``."""
    return Path(cache if cache is not None else cache_dir()) / "wheelhouse" / isa


def python_tag(isa: str) -> str:
    """The CPython the wheelhouse is for: the matrix rootfs's on aarch64, this one's on x86_64."""
    version = aarch64.PYTHON_VERSION if isa == "aarch64" else f"{sys.version_info.major}.{sys.version_info.minor}"
    return "cp" + version.replace(".", "")


def base_pins(isa: str) -> list[str]:
    """What a wheelhouse for ``isa`` holds: the base requirements pinned to this machine's
    versions (e.g. ``ai-edge-litert==2.3.0``) and the CPython tag (``cp311``)."""
    return [*(aarch64._host_pin(name) for name in BASE_REQUIREMENTS), python_tag(isa)]


def prepare_wheelhouse(isa: str, cache: str | os.PathLike | None = None, log=print) -> Path:
    """Download the base install's dependency wheels for ``isa``, for offline installs.

    The install tests install the built wheel from here with ``--no-index``: no network
    at test time. aarch64 also gets pip's own wheel (the rootfs Python has no pip; pip
    runs from its wheel there).

    Raises:
        EdgePqrnnError: pip could not download them (the message holds pip's last line).
    """
    dest = wheelhouse(isa, cache)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    *requirements, tag = base_pins(isa)
    platforms = tuple(p.replace("aarch64", isa) for p in aarch64.PLATFORMS)  # the matrix's tags, for this ISA
    flags = ["--only-binary=:all:", "--python-version", tag[2:3] + "." + tag[3:], "--implementation", "cp",
             "--abi", tag, *(a for p in platforms for a in ("--platform", p))]
    log(f"wheelhouse {isa} ({tag}): pip download {' '.join(requirements)}")
    toolchain.run_command([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *flags,
              "-d", str(partial), *requirements], f"pip download of the {isa} wheels failed")
    if isa == "aarch64":
        toolchain.run_command([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                  "--only-binary=:all:", "-d", str(partial), aarch64._host_pin("pip")], "pip download of pip failed")
    (partial / PINS_FILE).write_text("\n".join(base_pins(isa)) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge_pqrnn.wheels build [--out DIR] [--isa ISA]... | deps [--isa ISA]...``."""
    parser = argparse.ArgumentParser(prog="python -m edge_pqrnn.wheels", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="the sdist and the manylinux wheels, checked by auditwheel")
    build.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default: dist/)")
    deps = commands.add_parser("deps", help="download the base install's wheels for the offline install tests")
    for sub in (build, deps):
        sub.add_argument("--isa", action="append", choices=tuple(COMPILERS), help="repeatable (default: both)")
    args = parser.parse_args(argv)
    isas = args.isa or tuple(COMPILERS)
    try:
        if args.command == "build":
            build_all(args.out, isas)
        else:
            for isa in isas:
                print(prepare_wheelhouse(isa))
        return 0
    except EdgePqrnnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
