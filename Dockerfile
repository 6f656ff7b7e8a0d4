# edge-pqrnn: train, export and validate the default model inside a container.
#   docker build -t edge-pqrnn .                 # python:3.11-slim
#   docker build --build-arg BASE=my/base -t edge-pqrnn .   # any Debian-like base with python3.11 + pip
#   docker run --rm -v "$PWD/runs:/home/app/runs" edge-pqrnn   # runs `edge-pqrnn quickstart`
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# The train extra: quickstart trains, exports and validates (docs/deploy.md has the
# runtime-only install). A C compiler builds the projection op library during `pip install`. Versions follow
# the base image's Debian release, so they are not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY edge_pqrnn ./edge_pqrnn
RUN python3 -m pip install ".[train]" && useradd --create-home --uid 10001 app

USER 10001
WORKDIR /home/app
CMD ["edge-pqrnn", "quickstart"]
