#!/usr/bin/env bash
# `make image`: build the feature-service image from the project's Dockerfile.
#
# Engine: podman when installed (with runc and explicit ulimits where runc is present, as
# machines without a Docker engine need), else docker when its daemon answers.
# Base: $BASE_IMAGE when set; else python:3.11-slim-bookworm when it is present or can
# be pulled; else (no image registry reachable) a local Debian bookworm + Python 3.11
# base made by image/local-base.sh and cached. RUN steps use the host network (they
# install from PyPI); a CA bundle in $PIP_CERT, if any, reaches pip as a build secret.
#
# Usage: image/build.sh [TAG]   (default feature-service:0.1.0)
set -euo pipefail
cd "$(dirname "$0")/.."
source image/engine.sh

tag=${1:-${IMAGE:-feature-service:0.1.0}}
registry_base=python:3.11-slim-bookworm

if [ -z "${BASE_IMAGE:-}" ]; then
  if "$ENGINE" image inspect "$registry_base" >/dev/null 2>&1 \
    || timeout 120 "$ENGINE" pull --quiet "docker.io/library/$registry_base" >/dev/null 2>&1; then
    BASE_IMAGE=$registry_base
  else
    echo "image: $registry_base cannot be pulled (no registry reachable); using a local base" >&2
    BASE_IMAGE=$(image/local-base.sh "$ENGINE")
  fi
fi

build=(build --network=host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" -f Dockerfile)
if [ "$ENGINE" = podman ]; then
  build+=(--layers --format docker "${ENGINE_LIMITS[@]}")  # docker format keeps HEALTHCHECK
fi
ca=${PIP_CERT:-}
if [ -n "$ca" ] && [ -s "$ca" ]; then
  build+=(--secret "id=pip-ca,src=$ca")
fi

echo "image: building $tag FROM $BASE_IMAGE with $ENGINE" >&2
started=$(date +%s)
"${ENGINE_CMD[@]}" "${build[@]}" .
echo "image: built $tag in $(( $(date +%s) - started ))s;" \
  "$("$ENGINE" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')" >&2
