"""The Android demo (android_demo/, issue 12): its ci.sh builds the op + JNI library for
arm64-v8a and x86_64, runs them against the Python reference (arm64 under qemu),
type-checks the app, packages and signs an APK, and runs the JUnit tests of the JNI
bridge and app code on the JVM against a real artifact.

Runs when CI=true (ci.sh then installs its Debian packages itself, as root) or when every
tool it needs is already here; otherwise it is skipped, naming what is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPT = ROOT / "android_demo" / "ci.sh"
#: What ci.sh needs (commands, or files that Debian packages install).
TOOLS = ("clang", "ld.lld", "javac", "gcc", "aapt2", "aapt", "zipalign", "apksigner", "keytool",
         "qemu-aarch64-static", "aarch64-linux-gnu-gcc", "debootstrap", "/usr/share/java/junit4.jar",
         "/usr/share/java/hamcrest-core.jar", "/usr/share/android-framework-res/framework-res.apk",
         "/usr/aarch64-linux-gnu/lib/crti.o")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if not (os.path.exists(t) if t.startswith("/") else shutil.which(t))]


def summary(output: str) -> tuple[int, int] | None:
    """The last "N passed, N failed" line of ci.sh's output, as (passed, failed)."""
    found = SUMMARY.findall(output)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def test_summary_parsing() -> None:
    assert summary("x\n3 passed, 0 failed\n") == (3, 0)
    assert summary("1 passed, 2 failed\nmore\n10 passed, 1 failed") == (10, 1)
    assert summary("ci.sh: FAILED at line 3") is None


@pytest.mark.slow
def test_android_demo_ci() -> None:
    missing = missing_tools()
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"android_demo/ci.sh needs {', '.join(missing)} (run it as root, or with CI=true, and it "
                    "installs them with apt-get)")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(CI_SCRIPT)], capture_output=True, text=True, env=env, timeout=1200)
    output = proc.stdout + proc.stderr
    tail = "\n".join(output.strip().splitlines()[-40:])
    result = summary(proc.stdout)
    assert result is not None, f"android_demo/ci.sh printed no JUnit summary (exit {proc.returncode}):\n{tail}"
    passed, failed = result
    assert failed == 0 and proc.returncode == 0, f"android_demo/ci.sh: {passed} passed, {failed} failed:\n{tail}"
    assert passed >= 10, f"android_demo/ci.sh ran only {passed} JUnit tests:\n{tail}"
