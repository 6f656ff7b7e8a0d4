#!/usr/bin/env bash
# Build the sdist and the manylinux wheels for x86_64 and aarch64 into dist/ (or --out DIR),
# each with the op library inside (aarch64 cross-built with the matrix's compiler and
# flags) and checked by auditwheel; dist/wheels.json records each policy and the system
# libraries it links. Needs the dev extra (build, wheel, auditwheel) and
# gcc-aarch64-linux-gnu + libc6-dev-arm64-cross (tools/install_system_deps.sh).
#   bash tools/build_wheels.sh [--out DIR] [--isa x86_64|aarch64]...
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m edge_pqrnn.wheels build "$@"
