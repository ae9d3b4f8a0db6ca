#!/usr/bin/env bash
# A stand-in for python:3.11-slim where no container registry can be reached: Debian bookworm
# (minbase) with Python 3.11 and a venv first on PATH (so a bare `pip install` works, as in the
# official image), made with mmdebstrap (from DEBIAN_MIRROR, default deb.debian.org), then imported.
#   serving/deploy/base-image.sh [image-name]      (default localhost/debian-base:bookworm)
# Needs root (or fakeroot) for mmdebstrap, and podman or docker.
set -euo pipefail
name="${1:-localhost/debian-base:bookworm}"
engine="${CONTAINER_ENGINE:-$(command -v podman || command -v docker)}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
  --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
  bookworm "$work/rootfs.tar" "$mirror"
"$engine" import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$name" >/dev/null
echo "$name"
