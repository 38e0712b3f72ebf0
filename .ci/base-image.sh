#!/usr/bin/env bash
# A local Python base image for the container environment kind's tests, made without a registry (none is
# reachable here): a Debian minbase root file system from debootstrap with python3 and venv, imported as
# local/debian-python:bookworm. The root file system is cached as a tar by a hash of this script, so only
# the first run pays debootstrap's ~2 minutes. Usage: .ci/base-image.sh [image tag]
set -euo pipefail
tag="${1:-local/debian-python:bookworm}"
engine="${VOICEGEN_CONTAINER_ENGINE:-docker}"
if "$engine" image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag is present"; exit 0
fi
hash=$(sha256sum "$0" | cut -c1-12)
cache="${VOICEGEN_BASE_CACHE:-$HOME/.cache/voicegen}/base-rootfs-$hash.tar"
if [ ! -s "$cache" ]; then
  command -v debootstrap >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "making the base root file system with debootstrap (about 2 minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  # HTTPS from here goes through a TLS-inspecting proxy: the host's extra CA certificates go in too.
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  mkdir -p "$(dirname "$cache")"
  tar -C "$rootfs" -cf "$cache.partial" .
  mv "$cache.partial" "$cache"
fi
"$engine" import -c 'ENV LANG=C.UTF-8' "$cache" "$tag" >/dev/null
echo "base image $tag imported from $cache"
