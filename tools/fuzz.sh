#!/usr/bin/env bash
# Fuzz the projection op's C code with libFuzzer + ASan + UBSan.
#
#   tools/fuzz.sh build            build the sanitized harness, print its path
#   tools/fuzz.sh run N [ARGS...]  build, then run N inputs (one worker) over the repo
#                                  corpus; print the count, exec/s and findings. New
#                                  inputs go to $FUZZ_DIR/corpus, crashers to
#                                  $FUZZ_DIR/findings AND the repo corpus (kept as
#                                  once-crashing inputs). ARGS go to libFuzzer.
#   tools/fuzz.sh merge            add the inputs of $FUZZ_DIR/corpus that reach new
#                                  coverage to the repo corpus (keeps it small)
#   tools/fuzz.sh seed             (re)write the seed inputs into the repo corpus
#   tools/fuzz.sh lib              build the op library itself with ASan + UBSan (a
#                                  shared object for runtimes, not the harness), print its
#                                  path; load it with LD_PRELOAD="$(tools/fuzz.sh preload)"
#                                  and EDGE_PQRNN_OP_LIBRARY=<path> (tests/test_mutation.py)
#   tools/fuzz.sh preload          the sanitizer runtimes to LD_PRELOAD for it
#
# Needs clang with compiler-rt's libFuzzer (Debian: apt-get install clang
# libclang-rt-14-dev). FUZZ_DIR defaults to /tmp/edge-pqrnn-fuzz; CC to clang.
# The input layout is described atop edge_pqrnn/projection/native/fuzz/fuzz_projection.c.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NATIVE="$ROOT/edge_pqrnn/projection/native"
CORPUS="$NATIVE/fuzz/corpus"
FUZZ_DIR="${FUZZ_DIR:-/tmp/edge-pqrnn-fuzz}"
CC="${CC:-clang}"
BIN="$FUZZ_DIR/fuzz_projection"

build() {
  mkdir -p "$FUZZ_DIR"
  # -O2 -g: readable sanitizer reports at the best speed. no-recover: every UBSan report
  # is fatal, so it counts as a finding instead of scrolling past. implicit-integer-*:
  # a silent truncation or sign change (e.g. of a size read from the options) is one too.
  "$CC" -std=c11 -g -O2 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined,float-divide-by-zero,implicit-integer-truncation,implicit-integer-sign-change \
    -fno-sanitize-recover=all \
    -I"$NATIVE" "$NATIVE/fuzz/fuzz_projection.c" "$NATIVE/projection_core.c" "$NATIVE/projection_op.c" "$NATIVE/fo_pool.c" \
    "$NATIVE/int_matmul.c" \
    -o "$BIN"
  echo "$BIN"
}

LIB_CC="${LIB_CC:-gcc}"
LIB="$FUZZ_DIR/libpqrnn_projection_asan.so"

build_lib() {
  mkdir -p "$FUZZ_DIR"
  # The library the runtimes load (load_delegate, register_custom_ops_library), built from
  # the same sources and flags as setup.py plus the sanitizers. gcc: its ASan runtime is a
  # shared library that a Python process can LD_PRELOAD (clang's default is static).
  "$LIB_CC" -std=c11 -g -O1 -fno-omit-frame-pointer -fPIC -shared -fvisibility=hidden -ffreestanding \
    -ffp-contract=off -fsanitize=address,undefined -fno-sanitize-recover=all \
    -I"$NATIVE" "$NATIVE/projection_core.c" "$NATIVE/projection_op.c" "$NATIVE/projection_ort.c" \
    "$NATIVE/fo_pool.c" "$NATIVE/int_matmul.c" -o "$LIB"
  echo "$LIB"
}

case "${1:-}" in
  lib)
    build_lib
    ;;
  preload)
    echo "$("$LIB_CC" -print-file-name=libasan.so) $("$LIB_CC" -print-file-name=libubsan.so)"
    ;;
  build)
    build
    ;;
  run)
    runs="${2:?usage: tools/fuzz.sh run N [libFuzzer args...]}"
    shift 2
    build >/dev/null
    mkdir -p "$FUZZ_DIR/corpus" "$FUZZ_DIR/findings"
    log="$FUZZ_DIR/run.log"
    status=0
    # The first corpus folder receives new inputs; the repo corpus is only read.
    "$BIN" -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$FUZZ_DIR/findings/" "$@" "$FUZZ_DIR/corpus" "$CORPUS" >"$log" 2>&1 || status=$?
    executed="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    seconds="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
    findings=("$FUZZ_DIR"/findings/*)
    [[ -e "${findings[0]}" ]] || findings=()
    for f in "${findings[@]}"; do cp "$f" "$CORPUS/"; done
    echo "runs: ${executed:-?}  seconds: ${seconds:-?}  exec/s: ${rate:-?}  findings: ${#findings[@]}  (log: $log)"
    for f in "${findings[@]}"; do echo "  finding: $f (copied into $CORPUS)"; done
    if (( status != 0 )); then
      grep -m3 -E 'ERROR|runtime error|deadly signal' "$log" || true
      exit "$status"
    fi
    ;;
  merge)
    build >/dev/null
    "$BIN" -merge=1 -max_len=4096 "$CORPUS" "$FUZZ_DIR/corpus" 2>&1 | grep -E '^MERGE-OUTER: [0-9]+ new files' || true
    echo "corpus: $(find "$CORPUS" -type f | wc -l) files, $(du -sk --apparent-size "$CORPUS" | cut -f1) KB"
    ;;
  seed)
    (cd "$ROOT" && python "$NATIVE/fuzz/fuzz_input.py" "$CORPUS")
    ;;
  *)
    sed -n '2,23p' "$0"
    exit 2
    ;;
esac
