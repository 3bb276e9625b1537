# Sourced by image/*.sh: which container engine to use, and how, on this machine.
#   ENGINE         podman or docker ($CONTAINER_ENGINE to choose)
#   ENGINE_CMD     the engine with its global options (podman: --runtime runc when present)
#   ENGINE_LIMITS  options for build/run: explicit ulimits where podman runs with runc,
#                  which cannot raise the limits it inherits on these machines
# Exits 3 with the reason when no engine can run containers here.
ENGINE=${CONTAINER_ENGINE:-}
if [ -z "$ENGINE" ]; then
  if command -v podman >/dev/null 2>&1; then
    ENGINE=podman
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    echo "no container engine: install podman (apt-get install podman runc) or start Docker" >&2
    exit 3
  fi
fi
ENGINE_CMD=("$ENGINE")
ENGINE_LIMITS=()
if [ "$ENGINE" = podman ] && command -v runc >/dev/null 2>&1; then
  ENGINE_CMD+=(--runtime runc)
  ENGINE_LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
fi
