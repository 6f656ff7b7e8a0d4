#!/usr/bin/env bash
# Builds and checks everything of the Android demo that this kind of machine can build
# (DESIGN.md §14: no NDK, android.jar, d8 or LiteRT AAR here), on a fresh Debian 12
# machine as root, and ends with the JUnit line "N passed, N failed":
#
#   1. Debian packages (apt-get update + install, once: skipped when all are there)
#   2. libpqrnn_demo.so for arm64-v8a and x86_64 (clang/lld, no NDK) + the host build
#   3. a small trained int8 artifact and the Python reference (tools/make_reference.py)
#   4. the Android libraries run against the reference: arm64-v8a under qemu, x86_64 here
#   5. resources (aapt2) and the app's Java type-checked against compile-only stubs
#   6. an APK: aapt2 link + native libs + model -> zipalign -> apksigner sign/verify
#   7. JUnit 4 on the JVM: the JNI bridge + app code against the real artifact
#
# Idempotent: re-running reuses the trained artifact, the aarch64 rootfs and the keystore
# (about 40 s warm). Everything it writes is under android_demo/build/ and
# app/src/main/jniLibs/ (both git-ignored).
set -euo pipefail
demo="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$demo")"
build="$demo/build"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || PYTHON=python
started=$SECONDS
step() { echo "== [$(( SECONDS - started ))s] $*"; }
quiet() { sed -e '/^W0000 /d' -e '/^INFO: /d'; }  # TensorFlow's start-up chatter
trap 'echo "ci.sh: FAILED at line $LINENO (exit $?): see the output above" >&2' ERR

# ---------------------------------------------------------------- 1. system packages
# tool (command or file) -> Debian package
declare -A NEED=(
  [clang]=clang [ld.lld]=lld [javac]=default-jdk-headless [keytool]=default-jdk-headless [gcc]=gcc
  [/usr/share/java/junit4.jar]=junit4 [/usr/share/java/hamcrest-core.jar]=libhamcrest-java
  [aapt2]=aapt [aapt]=aapt [zipalign]=zipalign [apksigner]=apksigner
  [/usr/share/android-framework-res/framework-res.apk]=android-framework-res
  [qemu-aarch64-static]=qemu-user-static [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
  [/usr/aarch64-linux-gnu/lib/crti.o]=libc6-dev-arm64-cross [debootstrap]=debootstrap
)
missing=()
for tool in "${!NEED[@]}"; do
  if [[ "$tool" == /* ]]; then [ -e "$tool" ] || missing+=("${NEED[$tool]}")
  else command -v "$tool" >/dev/null || missing+=("${NEED[$tool]}"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  packages="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  if [ "$(id -u)" != 0 ]; then
    echo "ci.sh: missing Debian packages; run as root: apt-get update && apt-get install -y --no-install-recommends $packages" >&2
    exit 1
  fi
  step "apt-get install $packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
if ! "$PYTHON" -c "import edge_pqrnn, ai_edge_litert" 2>/dev/null; then
  step "pip install -e $repo"
  "$PYTHON" -m pip install --disable-pip-version-check -q -e "$repo"
fi

# ---------------------------------------------------------------- 2. native libraries
step "build libpqrnn_demo.so (arm64-v8a, x86_64, host)"
nice -n 10 "$demo/build_native.sh" --host
# What Android's dynamic linker and Play require of the .so, checked on the ELF:
# no text relocations, only bionic's libc/liblog needed, nothing undefined that bionic
# lacks, the JNI + delegate entry points exported, 16 KB page-aligned segments.
for abi in arm64-v8a x86_64; do
  so="$demo/app/src/main/jniLibs/$abi/libpqrnn_demo.so"
  problems=""
  readelf -d "$so" | grep -q TEXTREL && problems+=" text-relocations"
  needed="$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')"
  [ "$needed" = "libc.so liblog.so " ] || problems+=" needs:[$needed]"
  undefined="$(nm -D --undefined-only "$so" | awk '{print $2}' | grep -v -x -e malloc -e calloc -e free -e memset \
    -e memcpy -e memmove -e __android_log_write | tr '\n' ' ' || true)"
  [ -z "$undefined" ] || problems+=" undefined:[$undefined]"
  for symbol in tflite_plugin_create_delegate tflite_plugin_destroy_delegate PQRNN_Register_PROJECTION PQRNN_Register_FO_POOL PQRNN_Register_INT_MATMUL \
      PQRNN_Register_DEQUANTIZE PQRNN_Register_QUANTIZE \
      Java_org_edgepqrnn_demo_PqrnnNative_createDelegate Java_org_edgepqrnn_demo_PqrnnNative_deleteDelegate \
      Java_org_edgepqrnn_demo_PqrnnNative_tokenRows; do
    nm -D --defined-only "$so" | grep -q " T $symbol\$" || problems+=" missing:$symbol"
  done
  readelf -lW "$so" | awk '$1 == "LOAD" && $NF != "0x4000" {bad = 1} END {exit bad}' || problems+=" LOAD-alignment"
  [ -z "$problems" ] || { echo "ci.sh: $so is not a valid Android library:$problems" >&2; exit 1; }
  echo "checked $abi/libpqrnn_demo.so: no TEXTREL, needs $needed, 16 KB LOAD alignment, JNI + delegate symbols"
done

# ---------------------------------------------------------------- 3. artifact + reference
step "artifact and Python reference"
nice -n 10 "$PYTHON" "$demo/tools/make_reference.py" --out "$build/reference" 2>&1 | quiet

# ---------------------------------------------------------------- 4. Android libraries run
step "aarch64 matrix (debootstrap rootfs + aarch64 ai-edge-litert, cached)"
nice -n 10 "$PYTHON" -c "from edge_pqrnn.arm import setup_matrix; setup_matrix(runtimes=['litert'], install=True)"
step "Android libraries against the reference (arm64-v8a under qemu, x86_64 here)"
nice -n 10 "$PYTHON" "$demo/tools/run_android_libs.py" --reference "$build/reference" \
  --out "$build/reference/arm64.json" 2>&1 | quiet

# ---------------------------------------------------------------- 5. resources + type check
step "aapt2 resources, javac type-check of the app against compile-only stubs"
java_home="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
FRAMEWORK=/usr/share/android-framework-res/framework-res.apk   # API 29 resources (Debian)
APP_ID=org.edgepqrnn.demo; MIN_SDK=24; TARGET_SDK=29; VERSION_CODE=1; VERSION_NAME=0.1.0  # = app/build.gradle
apk="$build/apk"
rm -rf "$apk" "$build/classes" && mkdir -p "$apk/gen" "$apk/assets" "$build/classes/stubs" "$build/classes/app" "$build/classes/test"
aapt2 compile --dir "$demo/app/src/main/res" -o "$apk/res.zip"
# What Gradle's manifest merger does: the package name from build.gradle.
sed "s|<manifest xmlns:android=\"http://schemas.android.com/apk/res/android\">|<manifest xmlns:android=\"http://schemas.android.com/apk/res/android\" package=\"$APP_ID\">|" \
  "$demo/app/src/main/AndroidManifest.xml" > "$apk/AndroidManifest.xml"
grep -q "package=\"$APP_ID\"" "$apk/AndroidManifest.xml" || { echo "ci.sh: could not set the package in the manifest" >&2; exit 1; }
cp "$build/reference/model.tflite" "$apk/assets/model.tflite"
aapt2 link -o "$apk/base.apk" -I "$FRAMEWORK" --manifest "$apk/AndroidManifest.xml" --java "$apk/gen" \
  --min-sdk-version $MIN_SDK --target-sdk-version $TARGET_SDK --version-code $VERSION_CODE \
  --version-name $VERSION_NAME -A "$apk/assets" --no-compress-regex '\.tflite$' "$apk/res.zip"  # Debian's aapt2 ignores -0 for assets
javac --release 11 -Xlint:all -Werror -d "$build/classes/stubs" $(find "$demo/tools/stubs" -name '*.java')
# The app exactly as Android Studio compiles it (+ the R class aapt2 generated), against the stubs.
javac --release 11 -Xlint:all -Xlint:-options -Werror -cp "$build/classes/stubs" -d "$build/classes/app" \
  $(find "$demo/app/src/main/java" "$apk/gen" -name '*.java')
echo "type-checked $(find "$demo/app/src/main/java" -name '*.java' | wc -l) app sources + R.java: OK"

# ---------------------------------------------------------------- 6. APK
step "APK: native libs, zipalign, apksigner"
"$PYTHON" - "$apk/base.apk" "$demo/app/src/main/jniLibs" <<'PY'
import sys, zipfile, pathlib
apk, libs = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(apk, "a") as z:  # stored: Android maps them from the APK (page-aligned by zipalign -p)
    for so in sorted(libs.glob("*/libpqrnn_demo.so")):
        z.write(so, f"lib/{so.parent.name}/{so.name}", compress_type=zipfile.ZIP_STORED)
PY
zipalign -f -p 4 "$apk/base.apk" "$apk/aligned.apk"
zipalign -c -p 4 "$apk/aligned.apk"
keystore="$build/debug.keystore"
[ -f "$keystore" ] || keytool -genkeypair -keystore "$keystore" -storepass android -keypass android \
  -alias androiddebugkey -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
apksigner sign --ks "$keystore" --ks-pass pass:android --ks-key-alias androiddebugkey \
  --min-sdk-version $MIN_SDK --out "$apk/edge-pqrnn-demo.apk" "$apk/aligned.apk"
apksigner verify --min-sdk-version $MIN_SDK --verbose "$apk/edge-pqrnn-demo.apk" | grep -E '^Verifie[sd]'
aapt dump badging "$apk/edge-pqrnn-demo.apk" | grep -E "^(package|sdkVersion|targetSdkVersion|launchable-activity|native-code)"
echo "APK: $apk/edge-pqrnn-demo.apk ($(stat -c %s "$apk/edge-pqrnn-demo.apk") bytes) - signed and verified, but it" \
     "has NO classes.dex: no Java->dex compiler (d8/dx) exists on Debian, PyPI or npm, so it does not run; Android" \
     "Studio builds the runnable APK"

# ---------------------------------------------------------------- 7. JUnit on the JVM
step "JNI host runtime + JUnit 4"
PY_INC="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
PY_LIBDIR="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
PY_SONAME="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("INSTSONAME"))')"
PY_LDVERSION="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LDVERSION"))')"
[ -f "$PY_INC/Python.h" ] && [ -e "$PY_LIBDIR/$PY_SONAME" ] || {
  echo "ci.sh: the JVM tests embed Python, which needs Python.h and a shared $PY_SONAME (in $PY_LIBDIR):" \
       "use a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared) or install python3-dev" >&2
  exit 1; }
gcc -O2 -Wall -Wextra -Werror -shared -fPIC -I"$PY_INC" -I"$java_home/include" -I"$java_home/include/linux" \
  -DPY_LIBRARY="\"$PY_SONAME\"" "$demo/jvm_tests/native/host_litert.c" -L"$PY_LIBDIR" -lpython"$PY_LDVERSION" \
  -Wl,-rpath,"$PY_LIBDIR" -ldl -o "$build/host/libpqrnn_host_litert.so"
CP_JUNIT=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
javac --release 11 -Xlint:all -Xlint:-options -Werror -cp "$build/classes/stubs:$CP_JUNIT" -d "$build/classes/test" \
  $(find "$demo/app/src/main/java" "$apk/gen" "$demo/jvm_tests/java" -name '*.java')
echo "ci.sh: $(( SECONDS - started )) s before the JUnit run"
trap - ERR  # from here the JUnit summary is the last line, pass or fail
# The stubs are on the run classpath only for org.tensorflow.lite.Delegate (an interface).
PYTHONHOME="$("$PYTHON" -c 'import sys; print(sys.base_prefix)')" \
PYTHONPATH="$("$PYTHON" -c 'import os, site; print(os.pathsep.join(site.getsitepackages()))')" \
TF_CPP_MIN_LOG_LEVEL=2 java -Djava.library.path="$build/host" -Dpqrnn.reference="$build/reference" \
  -Dpqrnn.arm64="$build/reference/arm64.json" -Dpqrnn.apk="$apk/edge-pqrnn-demo.apk" \
  -Dpqrnn.jnilibs="$demo/app/src/main/jniLibs" \
  -cp "$build/classes/test:$build/classes/stubs:$CP_JUNIT" org.edgepqrnn.demo.TestMain
