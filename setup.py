"""Builds the projection op library (plain C, no TensorFlow or onnxruntime headers or ABI) on install.

The library is a normal shared object named libpqrnn_projection.so (not a Python
extension module): TFLite runtimes load it with load_delegate(), onnxruntime with
SessionOptions.register_custom_ops_library() (projection_ort.c), apps with dlopen().
"""

import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

NATIVE = "edge_pqrnn/projection/native"
#: Set only by the prebuilt-wheel builder (edge_pqrnn/wheels.py, tools/build_wheels.sh):
#: package this already compiled library (e.g. cross-built for aarch64) and tag the wheel
#: for that platform. Unset (pip install, the sdist), the library is compiled here.
PREBUILT = os.environ.get("EDGE_PQRNN_PREBUILT_OP")
PLATFORM = os.environ.get("EDGE_PQRNN_WHEEL_PLATFORM")


class BuildOpLibrary(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        # edge_pqrnn.projection.libpqrnn_projection -> edge_pqrnn/projection/libpqrnn_projection.so
        return fullname.replace(".", "/") + ".so"

    def get_export_symbols(self, ext):  # no PyInit_*: this is not a Python module
        return []

    def build_extension(self, ext):
        if not PREBUILT:
            return super().build_extension(ext)
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(PREBUILT, target)


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        # The library uses no Python C API: one wheel serves every CPython 3 (py3-none),
        # for one platform.
        _, _, platform = super().get_tag()
        return "py3", "none", PLATFORM or platform


setup(
    ext_modules=[
        Extension(
            "edge_pqrnn.projection.libpqrnn_projection",
            sources=[f"{NATIVE}/projection_core.c", f"{NATIVE}/projection_op.c", f"{NATIVE}/projection_ort.c",
                     f"{NATIVE}/fo_pool.c", f"{NATIVE}/int_matmul.c"],
            depends=[f"{NATIVE}/projection_core.h", f"{NATIVE}/tflite_abi.h", f"{NATIVE}/ort_abi.h",
                     f"{NATIVE}/unicode_data.h", f"{NATIVE}/fo_pool.h",
                     f"{NATIVE}/int_matmul.h", f"{NATIVE}/pqrnn_common.h"],
            include_dirs=[NATIVE],
            # -ffreestanding: the core must not lean on libc (Android/aarch64 builds);
            # no -ffast-math: the pool weights must round exactly like numpy's float32;
            # -ffp-contract=off: no fused multiply-add on one ISA only (aarch64 has FMA).
            extra_compile_args=["-std=c11", "-O2", "-fvisibility=hidden", "-ffreestanding", "-ffp-contract=off",
                                "-Wall", "-Wextra"],
        )
    ],
    cmdclass={"build_ext": BuildOpLibrary, "bdist_wheel": PlatformWheel},
)
