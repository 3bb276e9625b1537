#!/usr/bin/env bash
# Make the local base image the Dockerfile builds FROM where no image registry is
# reachable: Debian bookworm (debootstrap, minbase) with Debian's python3 (3.11, the
# same minor version as python:3.11-slim-bookworm), python3-venv, CA certificates,
# netbase and tzdata, imported with `tar -C ROOTFS -c . | ENGINE import - TAG`.
#
# Cached twice, outside the checkout: the image itself (a second run only checks that it
# exists) and the root file system's tarball under ~/.cache/feature-service/base (the
# image is re-imported from it if it was removed). The tag carries a hash of this
# script, so a change here makes a new base.
#
# Usage: image/local-base.sh ENGINE   (prints the base image's tag on stdout)
set -euo pipefail

engine=${1:?usage: image/local-base.sh podman|docker}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,ca-certificates,netbase,tzdata
cache=${FS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/feature-service}/base
key=$(sha256sum "$0" | cut -c1-12)
tag=localhost/feature-service-base:$suite-py3.11-$key
tarball=$cache/rootfs-$suite-$key.tar

say() { echo "local-base: $*" >&2; }

if "$engine" image inspect "$tag" >/dev/null 2>&1; then
  say "cached $tag"
  echo "$tag"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    say "error: debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  [ "$(id -u)" = 0 ] || { say "error: debootstrap needs root"; exit 1; }
  mkdir -p "$cache"
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs" "$tarball.part"' EXIT
  say "debootstrap $suite ($packages) from $mirror; a few minutes, once"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || {
    say "error: debootstrap failed; see $cache/debootstrap.log"; exit 1; }
  # What python:slim leaves out too: package lists, caches, docs, man pages.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
  # debootstrap copies the host's resolver and names; the engine provides its own.
  rm -f "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
  tar --numeric-owner -C "$rootfs" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi

say "importing $tarball as $tag"
"$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$tarball" "$tag" >/dev/null
echo "$tag"
