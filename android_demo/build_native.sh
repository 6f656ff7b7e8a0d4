#!/usr/bin/env bash
# Builds libpqrnn_demo.so (the projection op + its op-provider delegate + the JNI bridge)
# for Android with clang and lld, without the NDK (DESIGN.md §14):
#
#   app/src/main/jniLibs/arm64-v8a/libpqrnn_demo.so
#   app/src/main/jniLibs/x86_64/libpqrnn_demo.so      (for the emulator)
#
# and, with --host, build/host/libpqrnn_demo.so for the JVM tests (x86_64 Linux, the
# same sources). Needs: clang, lld, a JDK (for jni.h). Run it before opening the project
# in Android Studio; ci.sh runs it too. The outputs are build products: not committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
native="$here/../edge_pqrnn/projection/native"
bridge="$here/app/src/main/cpp/pqrnn_jni.c"
build="$here/build"
API=24

for tool in clang ld.lld javac; do
  command -v "$tool" >/dev/null || { echo "build_native.sh: $tool not found: apt-get install -y --no-install-recommends clang lld default-jdk-headless" >&2; exit 1; }
done
[ -f "$native/projection_core.c" ] || { echo "build_native.sh: no op sources in $native (run it from an edge-pqrnn checkout)" >&2; exit 1; }
java_home="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
jni_include="$java_home/include"
[ -f "$jni_include/jni.h" ] || { echo "build_native.sh: no jni.h under $jni_include: install a JDK (default-jdk-headless)" >&2; exit 1; }

# The op's own flags (setup.py), plus what a shared object for Android wants.
CFLAGS=(-std=c11 -O2 -fPIC -fvisibility=hidden -ffreestanding -ffp-contract=off -DNDEBUG -fwrapv -Wall -Wextra -Werror
        -I"$native" -I"$jni_include" -I"$jni_include/linux")

android() {  # abi triple
  local abi="$1" triple="$2" out="$here/app/src/main/jniLibs/$1" stubs="$build/stubs/$1"
  mkdir -p "$out" "$stubs"
  for lib in libc liblog; do
    local define; define="STUB_$(echo "$lib" | tr '[:lower:]' '[:upper:]')"
    clang --target="$triple$API" -nostdlib -nostdlibinc -ffreestanding -fPIC -shared -fuse-ld=lld -D"$define" \
      -Wl,-soname,"$lib.so" -o "$stubs/$lib.so" "$here/tools/shim/android_stubs.c"
  done
  # -nostdlibinc: no host glibc header may leak into an Android build (clang's own
  # freestanding headers stay); tools/shim holds the empty <stdio.h> jni.h asks for.
  clang --target="$triple$API" -nostdlib -nostdlibinc -isystem "$here/tools/shim" "${CFLAGS[@]}" \
    -shared -fuse-ld=lld -Wl,-soname,libpqrnn_demo.so -Wl,--no-undefined -Wl,-z,max-page-size=16384 \
    -Wl,--build-id=sha1 -Wl,-z,noexecstack -Wl,--hash-style=both \
    -o "$out/libpqrnn_demo.so.partial" "$bridge" "$native/projection_op.c" "$native/fo_pool.c" "$native/int_matmul.c" -L"$stubs" -lc -llog
  mv "$out/libpqrnn_demo.so.partial" "$out/libpqrnn_demo.so"
  echo "built $out/libpqrnn_demo.so ($(stat -c %s "$out/libpqrnn_demo.so") bytes)"
}

android arm64-v8a aarch64-linux-android
android x86_64 x86_64-linux-android

if [ "${1:-}" = "--host" ]; then
  mkdir -p "$build/host"
  clang "${CFLAGS[@]}" -shared -Wl,--no-undefined -o "$build/host/libpqrnn_demo.so" "$bridge" \
    "$native/projection_op.c" "$native/fo_pool.c" "$native/int_matmul.c" -lc
  echo "built $build/host/libpqrnn_demo.so"
fi
