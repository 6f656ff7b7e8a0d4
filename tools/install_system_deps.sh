#!/usr/bin/env bash
# System packages the full test suite uses (Debian, as root): clang + its runtime for the
# sanitized fuzz-corpus replay; the aarch64 cross compiler, qemu and debootstrap for the
# ARM matrix. Without them those tests skip with a reason (the rest needs only pip).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  clang libclang-rt-14-dev \
  qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross debootstrap >/dev/null
